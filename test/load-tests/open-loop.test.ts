import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { parseHead, runLoad, runQueueWaitMs } from '../../load-tests/lib/open-loop.js';

const head = (text: string): [Buffer, number] => {
  const b = Buffer.from(text, 'latin1');
  return [b, b.indexOf('\r\n\r\n')];
};

test('open-loop: the head is read from its bytes (status, content-length as written in any case)', () => {
  assert.deepEqual(parseHead(...head('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 517\r\n\r\n{')), { status: 200, length: 517 });
  assert.deepEqual(parseHead(...head('HTTP/1.1 404 Not Found\r\nContent-Length:12\r\nx: y\r\n\r\n')), { status: 404, length: 12 });
  assert.deepEqual(parseHead(...head('HTTP/1.1 429 Too Many Requests\r\nCONTENT-LENGTH:  0\r\n\r\n')), { status: 429, length: 0 });
  assert.equal(parseHead(...head('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n')), undefined);
  // A content-length of the next answer (after this head) is not this one's.
  const [b, end] = head('HTTP/1.1 200 OK\r\nx: 1\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n');
  assert.equal(parseHead(b, end), undefined);
});

test('open-loop: fixed rate counts every answer, its status and its latency; split answers are joined', async (t) => {
  // A raw server answering in two writes (head, then body a moment later), capitalized header names, 404 for /missing.
  const net = createNetServer((s) => {
    s.setNoDelay(true);
    let pending = '';
    s.on('data', (d) => {
      pending += d.toString('latin1');
      for (let i = pending.indexOf('\r\n\r\n'); i >= 0; i = pending.indexOf('\r\n\r\n')) {
        const req = pending.slice(0, i);
        pending = pending.slice(i + 4);
        const missing = req.startsWith('GET /missing');
        const body = missing ? '{"error":1}' : '{"ok":true,"pad":"' + 'x'.repeat(300) + '"}';
        s.write(`HTTP/1.1 ${missing ? '404 Not Found' : '200 OK'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
        setTimeout(() => s.write(body), 2);
      }
    });
  });
  await new Promise<void>((r) => net.listen(0, '127.0.0.1', r));
  t.after(() => net.close());
  const port = (net.address() as AddressInfo).port;
  const r = await runLoad({ host: '127.0.0.1', port, paths: ['/a', '/b', '/missing'], seconds: 1, rate: 300, connections: 8 });
  // Every due request answered; on a loaded machine a few may still wait for a connection when the run ends
  // (counted as late, not sent).
  if (r.late === 0) assert.equal(r.requests, 300, JSON.stringify(r));
  else assert.ok(r.requests >= 300 - r.late && r.requests <= 300, JSON.stringify(r));
  assert.ok(Math.abs(r.non2xx - r.requests / 3) <= 1, JSON.stringify(r));
  assert.equal(r.errors, 0);
  assert.ok(r.p50 >= 1.5 && r.p50 < 200, `p50 ${r.p50} ms includes the 2 ms the body waits`);
  assert.ok(r.max >= r.p99 && r.p99 >= r.p50);
  assert.ok(r.gcPauses >= 0 && r.gcMs >= 0 && r.gcMaxMs <= r.gcMs);
  if (process.platform === 'linux') assert.ok(r.runQueueMs >= 0, 'run-queue wait read from /proc');
});

test('open-loop: flat out against node:http, and the run-queue wait of a thread', async (t) => {
  const server = createHttpServer((req, res) => {
    const body = JSON.stringify({ url: req.url });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const r = await runLoad({ host: '127.0.0.1', port, paths: ['/x'], seconds: 0.5, rate: 0, connections: 4 });
  assert.ok(r.requests > 50, `${r.requests} answers`);
  assert.equal(r.non2xx + r.errors + r.late, 0);
  if (process.platform === 'linux') {
    assert.ok(runQueueWaitMs(process.pid) >= 0);
    assert.ok(Number.isNaN(runQueueWaitMs(process.pid, 1 << 30)), 'no such thread');
  }
});
