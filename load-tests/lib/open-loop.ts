/**
 * A small HTTP/1.1 load generator, run as its own process (so it does not share an event loop with what it
 * measures): GETs over keep-alive connections (raw sockets, request bytes built once per path).
 *
 *   - fixed rate (`rate` > 0): open loop. Request i is due at start + i / rate whatever the answers do; a due
 *     request goes out on an idle connection, or waits for one (counted as `late`). Latency runs from the
 *     moment the request is written to the last byte of its answer: **no latency correction** (the time a due
 *     request waited for a connection is reported apart, as `lateWaitP99Ms`).
 *   - flat out (`rate` = 0): closed loop, each connection sends its next request when the answer is in.
 *
 * Input: one JSON argument (or @file holding it) {host, port, paths, headers, seconds, rate, connections}. Output: one JSON line on
 * stdout {requests, seconds, reqPerSec, p50, p90, p99, p999, max (ms), non2xx, errors, late, lateWaitP99Ms}.
 *
 *   node --import tsx load-tests/lib/open-loop.ts '{"host":"127.0.0.1","port":9464,"paths":["/x"],"seconds":10,"rate":2000}'
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';

export interface LoadSpec {
  readonly host: string;
  readonly port: number;
  readonly paths: readonly string[];
  readonly headers?: Readonly<Record<string, string>>;
  readonly seconds: number;
  /** Requests per second; 0 = flat out (closed loop). */
  readonly rate: number;
  readonly connections?: number;
}

export interface LoadResult {
  readonly requests: number;
  readonly seconds: number;
  readonly reqPerSec: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly late: number;
  readonly lateWaitP99Ms: number;
}

const CRLF2 = Buffer.from('\r\n\r\n');

class Conn {
  busy = false;
  sentAt = 0;
  #buf: Buffer = Buffer.alloc(0);
  #need = -1;
  #status = 0;
  constructor(
    readonly socket: Socket,
    readonly onDone: (c: Conn, status: number, latencyNs: number) => void,
    readonly onError: (c: Conn, err: Error) => void,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.#data(d));
    socket.on('error', (err) => this.onError(this, err));
  }
  send(req: Buffer): void {
    this.busy = true;
    this.sentAt = Number(process.hrtime.bigint());
    this.socket.write(req);
  }
  #data(d: Buffer): void {
    this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
    for (;;) {
      if (this.#need < 0) {
        const end = this.#buf.indexOf(CRLF2);
        if (end < 0) return;
        const head = this.#buf.toString('latin1', 0, end);
        this.#status = Number(head.slice(9, 12));
        const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        if (!m) {
          this.onError(this, new Error(`answer without content-length: ${head.slice(0, 200)}`));
          return;
        }
        this.#need = end + 4 + Number(m[1]);
      }
      if (this.#buf.length < this.#need) return;
      this.#buf = this.#buf.subarray(this.#need);
      this.#need = -1;
      this.busy = false;
      this.onDone(this, this.#status, Number(process.hrtime.bigint()) - this.sentAt);
      if (this.#buf.length === 0) return;
    }
  }
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const headerText = Object.entries(spec.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const requests = spec.paths.map((p) => Buffer.from(`GET ${p} HTTP/1.1\r\nhost: ${spec.host}:${spec.port}\r\n${headerText}\r\n`, 'latin1'));
  const n = spec.connections ?? 64;
  const latencies: number[] = [];
  const waits: number[] = [];
  let non2xx = 0;
  let errors = 0;
  let late = 0;
  let next = 0;
  let stopping = false;
  const idle: Conn[] = [];
  const queue: number[] = []; // due times (ns) of requests waiting for a connection
  const nextRequest = (): Buffer => requests[next++ % requests.length] as Buffer;
  let closedLoopSend: (c: Conn) => void = () => undefined;
  const onDone = (c: Conn, status: number, ns: number): void => {
    latencies.push(ns / 1e6);
    if (status < 200 || status >= 300) non2xx++;
    if (stopping) return;
    if (spec.rate === 0) return closedLoopSend(c);
    const due = queue.shift();
    if (due !== undefined) {
      waits.push((Number(process.hrtime.bigint()) - due) / 1e6);
      c.send(nextRequest());
    } else idle.push(c);
  };
  const onError = (_c: Conn, err: Error): void => {
    errors++;
    if (errors === 1) process.stderr.write(`open-loop: ${err.message}\n`);
  };
  const conns = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Conn>((resolve, reject) => {
          const s = connect(spec.port, spec.host, () => resolve(new Conn(s, onDone, onError)));
          s.once('error', reject);
        }),
    ),
  );
  const t0 = Number(process.hrtime.bigint());
  const endNs = t0 + spec.seconds * 1e9;
  if (spec.rate === 0) {
    closedLoopSend = (c) => {
      if (Number(process.hrtime.bigint()) < endNs) c.send(nextRequest());
    };
    for (const c of conns) c.send(nextRequest());
    await new Promise((r) => setTimeout(r, spec.seconds * 1000));
  } else {
    idle.push(...conns);
    const interval = 1e9 / spec.rate;
    let sent = 0;
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = Number(process.hrtime.bigint());
        const dueCount = Math.min(Math.floor((Math.min(now, endNs) - t0) / interval), Math.floor(spec.seconds * spec.rate));
        while (sent < dueCount) {
          const dueAt = t0 + sent * interval;
          sent++;
          const c = idle.pop();
          if (c) c.send(nextRequest());
          else {
            late++;
            queue.push(dueAt);
          }
        }
        if (now >= endNs) resolve();
        // Not a busy loop (the machine's other cores belong to what is measured): check again in about 1 ms,
        // sending what fell due meanwhile in one go.
        else setTimeout(tick, 1);
      };
      tick();
    });
  }
  stopping = true;
  const elapsed = (Number(process.hrtime.bigint()) - t0) / 1e9;
  // Let answers in flight arrive (they count), then close.
  const drainUntil = Date.now() + 2000;
  while (conns.some((c) => c.busy) && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));
  for (const c of conns) c.socket.destroy();
  const sorted = Float64Array.from(latencies).sort();
  const sortedWaits = Float64Array.from(waits).sort();
  const r3 = (x: number): number => Math.round(x * 1000) / 1000;
  return {
    requests: latencies.length,
    seconds: r3(elapsed),
    reqPerSec: Math.round(latencies.length / elapsed),
    p50: r3(quantile(sorted, 0.5)),
    p90: r3(quantile(sorted, 0.9)),
    p99: r3(quantile(sorted, 0.99)),
    p999: r3(quantile(sorted, 0.999)),
    max: r3(sorted.length ? (sorted[sorted.length - 1] as number) : 0),
    non2xx,
    errors,
    late,
    lateWaitP99Ms: r3(quantile(sortedWaits, 0.99)),
  };
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\u0000')) {
  const arg = process.argv[2] ?? '{}';
  const spec = JSON.parse(arg.startsWith('@') ? readFileSync(arg.slice(1), 'utf8') : arg) as LoadSpec;
  runLoad(spec).then(
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (err: unknown) => {
      process.stderr.write(`open-loop: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
