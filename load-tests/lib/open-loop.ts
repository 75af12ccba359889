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
 * stdout {requests, seconds, reqPerSec, p50, p90, p99, p999, max (ms), non2xx, errors, late, lateWaitP99Ms, and the
 * generator's own delays: gcMs, gcMaxMs, gcPauses (its GC pauses during the run), runQueueMs (time its main thread
 * was ready but not running, from /proc/self/task/<pid>/schedstat; -1 where not readable)}. A pause or a wait of the
 * generator while answers arrive is counted in their latency, so these say how much of a tail may be the generator's
 * (or the machine's) rather than the server's. Per answer the generator allocates little (no string of the head, no
 * BigInt, latencies in a Float64Array), so its own scavenges stay rare.
 *
 *   node --import tsx load-tests/lib/open-loop.ts '{"host":"127.0.0.1","port":9464,"paths":["/x"],"seconds":10,"rate":2000}'
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { PerformanceObserver, performance } from 'node:perf_hooks';

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
  /** The generator's GC pauses during the run: total, longest (ms), how many. */
  readonly gcMs: number;
  readonly gcMaxMs: number;
  readonly gcPauses: number;
  /** Time the generator's main thread waited for a CPU during the run (ms); -1 where not known. */
  readonly runQueueMs: number;
}

/** Run-queue wait of a thread so far (ms; /proc/<pid>/task/<tid>/schedstat, second field, ns), or NaN. */
export function runQueueWaitMs(pid: number, tid: number = pid): number {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ')[1]) / 1e6;
  } catch {
    return Number.NaN;
  }
}

const CRLF2 = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = Buffer.from('\r\ncontent-length:', 'latin1');

/**
 * The status and body length of an answer's head (`head`: the bytes before the blank line), read from the bytes:
 * `content-length` as servers write it in lowercase, else by a case-insensitive search of the head's text.
 * Undefined when the head has no content-length.
 */
export function parseHead(buf: Buffer, headEnd: number): { status: number; length: number } | undefined {
  const status = (buf[9] as number) * 100 + (buf[10] as number) * 10 + (buf[11] as number) - 111 * 48;
  let at = buf.indexOf(CONTENT_LENGTH);
  let from: number;
  if (at >= 0 && at < headEnd) from = at + CONTENT_LENGTH.length;
  else {
    const m = /\r\ncontent-length:/i.exec(buf.toString('latin1', 0, headEnd));
    if (!m) return undefined;
    at = m.index;
    from = at + m[0].length;
  }
  let length = 0;
  let digits = 0;
  for (let i = from; i < headEnd; i++) {
    const c = buf[i] as number;
    if (c === 32 || c === 9) {
      if (digits === 0) continue;
      break;
    }
    if (c < 48 || c > 57) break;
    length = length * 10 + (c - 48);
    digits++;
  }
  return digits === 0 ? undefined : { status, length };
}

class Conn {
  busy = false;
  sentAt = 0;
  #buf: Buffer = Buffer.alloc(0);
  #need = -1;
  #status = 0;
  constructor(
    readonly socket: Socket,
    readonly onDone: (c: Conn, status: number, latencyMs: number) => void,
    readonly onError: (c: Conn, err: Error) => void,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.#data(d));
    socket.on('error', (err) => this.onError(this, err));
  }
  send(req: Buffer): void {
    this.busy = true;
    this.sentAt = performance.now();
    this.socket.write(req);
  }
  #data(d: Buffer): void {
    this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
    for (;;) {
      if (this.#need < 0) {
        const end = this.#buf.indexOf(CRLF2);
        if (end < 0) return;
        const head = parseHead(this.#buf, end);
        if (head === undefined) {
          this.onError(this, new Error(`answer without content-length: ${this.#buf.toString('latin1', 0, Math.min(end, 200))}`));
          return;
        }
        this.#status = head.status;
        this.#need = end + 4 + head.length;
      }
      if (this.#buf.length < this.#need) return;
      this.#buf = this.#buf.subarray(this.#need);
      this.#need = -1;
      this.busy = false;
      this.onDone(this, this.#status, performance.now() - this.sentAt);
      if (this.#buf.length === 0) return;
    }
  }
}

/** A list of numbers in a Float64Array that doubles when full (no boxed number per latency). */
class Samples {
  #a: Float64Array;
  length = 0;
  constructor(capacity: number) {
    this.#a = new Float64Array(Math.max(1024, capacity));
  }
  push(x: number): void {
    if (this.length === this.#a.length) {
      const b = new Float64Array(this.#a.length * 2);
      b.set(this.#a);
      this.#a = b;
    }
    this.#a[this.length++] = x;
  }
  sorted(): Float64Array {
    return this.#a.slice(0, this.length).sort();
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
  const latencies = new Samples(spec.rate > 0 ? Math.ceil(spec.rate * spec.seconds * 1.05) : 1 << 20);
  const waits = new Samples(1024);
  let non2xx = 0;
  let errors = 0;
  let late = 0;
  let next = 0;
  let stopping = false;
  const idle: Conn[] = [];
  const queue: number[] = []; // due times (performance.now() ms) of requests waiting for a connection
  const nextRequest = (): Buffer => requests[next++ % requests.length] as Buffer;
  let closedLoopSend: (c: Conn) => void = () => undefined;
  const onDone = (c: Conn, status: number, ms: number): void => {
    latencies.push(ms);
    if (status < 200 || status >= 300) non2xx++;
    if (stopping) return;
    if (spec.rate === 0) return closedLoopSend(c);
    const due = queue.shift();
    if (due !== undefined) {
      waits.push(performance.now() - due);
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
  // The generator's own GC pauses and run-queue wait during the run.
  let gcMs = 0;
  let gcMaxMs = 0;
  let gcPauses = 0;
  let running = true;
  const gc = new PerformanceObserver((list) => {
    if (!running) return;
    for (const e of list.getEntries()) {
      gcMs += e.duration;
      gcMaxMs = Math.max(gcMaxMs, e.duration);
      gcPauses++;
    }
  });
  gc.observe({ entryTypes: ['gc'] });
  const rq0 = runQueueWaitMs(process.pid);
  const t0 = performance.now();
  const endMs = t0 + spec.seconds * 1000;
  if (spec.rate === 0) {
    closedLoopSend = (c) => {
      if (performance.now() < endMs) c.send(nextRequest());
    };
    for (const c of conns) c.send(nextRequest());
    await new Promise((r) => setTimeout(r, spec.seconds * 1000));
  } else {
    idle.push(...conns);
    const interval = 1000 / spec.rate;
    const total = Math.floor(spec.seconds * spec.rate);
    let sent = 0;
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = performance.now();
        // (elapsed × rate, not elapsed ÷ interval: 1000 / (1000 / 300) is 299.99…; and at the end every request,
        // not (endMs − t0) × rate: t0 + 1000 − t0 may be 999.99…, which sent one request fewer in a CI run)
        const dueCount = now >= endMs ? total : Math.min(Math.floor(((now - t0) * spec.rate) / 1000), total);
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
        if (now >= endMs) resolve();
        // Not a busy loop (the machine's other cores belong to what is measured): check again in about 1 ms,
        // sending what fell due meanwhile in one go.
        else setTimeout(tick, 1);
      };
      tick();
    });
  }
  stopping = true;
  const elapsed = (performance.now() - t0) / 1000;
  const rq = runQueueWaitMs(process.pid) - rq0;
  // Let answers in flight arrive (they count), then close.
  const drainUntil = Date.now() + 2000;
  while (conns.some((c) => c.busy) && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));
  for (const c of conns) c.socket.destroy();
  // GC entries are delivered after the pause: let the observer see the run's last ones.
  await new Promise((r) => setImmediate(r));
  running = false;
  gc.disconnect();
  const sorted = latencies.sorted();
  const sortedWaits = waits.sorted();
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
    gcMs: r3(gcMs),
    gcMaxMs: r3(gcMaxMs),
    gcPauses,
    runQueueMs: Number.isNaN(rq) ? -1 : r3(rq),
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
