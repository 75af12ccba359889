/**
 * Query API latency and throughput against a baseline in the same run: two `kairos start` instances (child
 * processes, one event loop each) in one group on librdkafka's mock cluster, loaded with a generated shop
 * stream, and a bare fastify app (load-tests/lib/bare-api.ts, its own process) serving the bodies instance A
 * answered for its customers from a Map. The load generator (load-tests/lib/open-loop.ts) runs in a process of
 * its own for each phase:
 *   - baseline and local reads (customers whose task runs on A) flat out; the baseline's maximum sets the rate;
 *   - both at half the baseline's maximum (`--rate` to fix it), open loop, latency without correction;
 *   - forwarded reads (customers whose task runs on B; A forwards once) and local reads at 1,000 req/s (or half the
 *     baseline's maximum if lower; `--forward-rate`), and forwarded flat out.
 * Prints req/s, p50/p99/p99.9, server CPU and CPU per request, and the ratios to the baseline. Nothing asserts on time.
 *
 * `--dist` runs the instances from the compiled dist/ (`npm run build` first), as deployed; by default from the sources
 * through tsx.
 *
 *   npx tsx load-tests/api-latency.ts [--events 20000] [--customers 4000] [--seconds 15] [--rate N] [--forward-rate N] [--dist]
 */
import { runQueueWaitMs, type LoadResult } from './lib/open-loop.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { createKafka } from '../src/kafka/client.js';
import { startMockCluster } from '../src/kafka/mock-cluster.js';
import { generateEvents, resolveOptions } from './generate-events.js';
import { kairosStartCommand, startKairos } from './lib/child.js';
import { cpuProfileArgs, fmtInt, REPO_ROOT } from './lib/common.js';

const KEY = 'bench-api-key-0123456789abcdef';
const log = (s: string): void => void process.stderr.write(`bench:api ${new Date().toISOString().slice(11, 23)} ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

interface Child {
  readonly address: string;
  readonly proc: ChildProcess;
  stop(): Promise<void>;
}

async function startChild(brokers: string, stateDir: string, port: number, command: readonly string[], maxWaitMs: number, profileDir?: string): Promise<Child> {
  // KAIROS_BENCH_PROFILE=<dir>: instance A writes a V8 CPU profile there when it stops (KAIROS_BENCH_PROFILE_INTERVAL=<µs>:
  // the sampling interval, default 1000).
  const k = await startKairos({
    label: `instance :${port}`,
    command: [...cpuProfileArgs(profileDir), ...command],
    env: {
      KAFKA_BROKERS: brokers,
      KAFKA_IDEMPOTENT: 'false',
      KAFKA_MAX_WAIT_MS: String(maxWaitMs),
      KAFKA_SESSION_TIMEOUT_MS: '6000',
      KAFKA_HEARTBEAT_MS: '500',
      KAIROS_APPLICATION_ID: 'bench-api',
      KAIROS_STATE_DIR: stateDir,
      KAIROS_HTTP_PORT: String(port),
      KAIROS_API_KEYS: `bench:${KEY}:read`,
      KAIROS_API_RATE_LIMIT: '100000000',
      KAIROS_LOG_LEVEL: 'warn',
    },
  });
  return {
    address: `127.0.0.1:${port}`,
    proc: k.process,
    stop: async () => void (await k.stop(15_000)),
  };
}

/** The generator's figures (`late`: fixed rate, requests that found no idle connection when due) and the server's. */
interface Figures extends Omit<LoadResult, 'seconds' | 'lateWaitP99Ms'> {
  readonly label: string;
  readonly targetRate: number | null;
  readonly serverCpu: number;
  /** Server CPU time per answered request, µs. */
  readonly cpuUsPerRequest: number;
  readonly ownerCpu: number | null;
  /** Time the server's main thread waited for a CPU during the phase (ms; -1 where not known). */
  readonly serverRunQueueMs: number;
}

interface Server {
  readonly proc: ChildProcess;
  readonly address: string;
}

/** One phase: the open-loop generator (load-tests/lib/open-loop.ts) in a process of its own. */
async function load(label: string, target: Server, paths: readonly string[], seconds: number, rate: number | null, owner: Server | null, specFile: string): Promise<Figures> {
  const [host, port] = target.address.split(':') as [string, string];
  writeFileSync(specFile, JSON.stringify({ host, port: Number(port), paths, headers: { authorization: `Bearer ${KEY}` }, seconds, rate: rate ?? 0, connections: 64 }));
  const gen = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'load-tests', 'lib', 'open-loop.ts'), `@${specFile}`], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  gen.stdout.setEncoding('utf8');
  gen.stdout.on('data', (c: string) => (out += c));
  // The generator needs a moment to start (tsx); count CPU from when its connections are up, roughly.
  await sleep(700);
  const cpu0 = cpuMs(target.proc.pid as number);
  const rq0 = runQueueWaitMs(target.proc.pid as number);
  const own0 = owner ? cpuMs(owner.proc.pid as number) : 0;
  const t0 = performance.now();
  const code = await new Promise<number | null>((r) => gen.once('exit', r));
  const wall = performance.now() - t0;
  if (code !== 0) throw new Error(`load generator exited with ${code}`);
  const r = JSON.parse(out.trim().split('\n').pop() as string) as LoadResult;
  const cpu = cpuMs(target.proc.pid as number) - cpu0;
  const rq = runQueueWaitMs(target.proc.pid as number) - rq0;
  const f: Figures = {
    ...r,
    label,
    targetRate: rate,
    serverCpu: cpu / wall,
    cpuUsPerRequest: (cpu * 1000) / Math.max(1, r.requests),
    ownerCpu: owner ? (cpuMs(owner.proc.pid as number) - own0) / wall : null,
    serverRunQueueMs: Number.isNaN(rq) ? -1 : Math.round(rq),
  };
  log(
    `${label}: ${fmtInt(f.reqPerSec)} req/s${rate === null ? ' (flat out)' : ` (target ${fmtInt(rate)}, late ${f.late})`}, p50 ${f.p50} ms, p99 ${f.p99} ms, p99.9 ${f.p999} ms, max ${f.max} ms, ` +
      `non-2xx ${f.non2xx}, errors ${f.errors}; server CPU ${(100 * f.serverCpu).toFixed(0)} %, ${f.cpuUsPerRequest.toFixed(0)} µs/request${f.ownerCpu === null ? '' : `, owner ${(100 * f.ownerCpu).toFixed(0)} %`}; ` +
        `waited for a CPU: server ${f.serverRunQueueMs} ms, generator ${Math.round(f.runQueueMs)} ms; generator GC ${Math.round(f.gcMs)} ms in ${f.gcPauses} pauses (longest ${f.gcMaxMs.toFixed(1)} ms)`,
  );
  return f;
}

/** The bare fastify baseline (load-tests/lib/bare-api.ts) serving `bodies` from a Map, in its own process. */
async function startBaseline(bodiesFile: string, port: number): Promise<Server & { stop(): Promise<void> }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'load-tests', 'lib', 'bare-api.ts'), bodiesFile, String(port)], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (c: string) => {
      out += c;
      if (out.includes('listening')) resolve();
    });
    proc.once('exit', (c) => reject(new Error(`baseline exited with ${c}`)));
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    proc,
    address: `127.0.0.1:${port}`,
    stop: async () => {
      proc.kill('SIGTERM');
      await Promise.race([exited, sleep(5000).then(() => proc.kill('SIGKILL'))]);
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      events: { type: 'string', default: '20000' },
      customers: { type: 'string', default: '4000' },
      seconds: { type: 'string', default: '15' },
      rate: { type: 'string' },
      'forward-rate': { type: 'string' },
      dist: { type: 'boolean', default: false },
      'max-wait-ms': { type: 'string', default: '500' },
    },
  });
  const events = Number(values.events);
  const customers = Number(values.customers);
  const seconds = Number(values.seconds);
  const rate = values.rate === undefined ? undefined : Number(values.rate);
  const forwardRate = values['forward-rate'] === undefined ? undefined : Number(values['forward-rate']);
  const command = kairosStartCommand(values.dist);
  const maxWaitMs = Number(values['max-wait-ms']);
  const cluster = await startMockCluster();
  const stateRoot = mkdtempSync(join(tmpdir(), 'kairos-bench-api-'));
  const children: Child[] = [];
  const servers: { stop(): Promise<void> }[] = [];
  try {
    log(`mock cluster ${cluster.brokers.join(',')}; producing ${fmtInt(events)} generated events over ${fmtInt(customers)} customers`);
    const kafka = createKafka({ brokers: cluster.brokers, clientId: 'bench-api', logger: pino({ level: 'warn' }) });
    const producer = kafka.producer({ allowAutoTopicCreation: true });
    await producer.connect();
    const ids = new Set<string>();
    let batch: { topic: string; key: string; value: string }[] = [];
    const flush = async (): Promise<void> => {
      const byTopic = new Map<string, { key: string; value: string }[]>();
      for (const m of batch) byTopic.set(m.topic, [...(byTopic.get(m.topic) ?? []), { key: m.key, value: m.value }]);
      await producer.sendBatch({ topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
      batch = [];
    };
    for (const line of generateEvents(resolveOptions({ events, customers, seed: 7 }))) {
      const env = JSON.parse(line) as { topic: string; key: string; value: unknown };
      if (env.topic !== 'shop.catalog.v1') ids.add(env.key);
      batch.push({ topic: env.topic, key: env.key, value: JSON.stringify(env.value) });
      if (batch.length >= 5000) await flush();
    }
    await flush();
    await producer.disconnect();
    const brokers = cluster.brokers.join(',');
    const a = await startChild(brokers, join(stateRoot, 'a'), await freePort(), command, maxWaitMs, process.env.KAIROS_BENCH_PROFILE);
    children.push(a);
    const b = await startChild(brokers, join(stateRoot, 'b'), await freePort(), command, maxWaitMs);
    children.push(b);
    log(`instances A ${a.address} (pid ${a.proc.pid}) and B ${b.address} (pid ${b.proc.pid}) started; waiting until every customer is readable`);
    const all = [...ids];
    const owners = new Map<string, string>();
    const bodies = new Map<string, string>();
    // Some generated customers leave no state (e.g. a browse session already decided and cleared): wait until
    // both instances are ready and the readable set stops growing, then load the readable ones.
    let previous = -1;
    for (let round = 0; ; round++) {
      owners.clear();
      let ok = 0;
      for (const c of all) {
        const res = await fetch(`http://${a.address}/v1/customers/${encodeURIComponent(c)}`, { headers: { authorization: `Bearer ${KEY}` } });
        const text = await res.text();
        if (res.status === 200) {
          ok++;
          bodies.set(c, text);
          owners.set(c, res.headers.get('x-kairos-served-by') ?? '');
        }
      }
      const spread = new Set(owners.values()).size;
      const ready = (await Promise.all([a, b].map((x) => fetch(`http://${x.address}/health/ready`).then((r) => r.ok, () => false)))).every(Boolean);
      if (ready && spread === 2 && ok === previous) break;
      previous = ok;
      if (round > 120) throw new Error(`only ${ok} of ${all.length} customers readable over ${spread} owner(s)`);
      await sleep(1000);
    }
    const readable = all.filter((c) => owners.has(c));
    const local = all.filter((c) => owners.get(c) === a.address).map((c) => `/v1/customers/${encodeURIComponent(c)}`);
    const remote = all.filter((c) => owners.get(c) === b.address).map((c) => `/v1/customers/${encodeURIComponent(c)}`);
    log(`${fmtInt(readable.length)} of ${fmtInt(all.length)} customers readable: ${fmtInt(local.length)} on A, ${fmtInt(remote.length)} on B`);
    // The baseline serves the bodies A answered for its own customers.
    const bodiesFile = join(stateRoot, 'bodies.json');
    writeFileSync(bodiesFile, JSON.stringify(Object.fromEntries(all.filter((c) => owners.get(c) === a.address).map((c) => [c, bodies.get(c)]))));
    // KAIROS_BENCH_BODIES=<file>: keep a copy of the captured bodies (e.g. to test a serializer on them).
    if (process.env.KAIROS_BENCH_BODIES) writeFileSync(process.env.KAIROS_BENCH_BODIES, readFileSync(bodiesFile));
    const sizes = [...bodies.values()].map((b) => Buffer.byteLength(b)).sort((x, y) => x - y);
    const bare = await startBaseline(bodiesFile, await freePort());
    servers.push(bare);
    const specFile = join(stateRoot, 'load.json');
    log(`baseline (bare fastify, bodies from a Map, median ${sizes[sizes.length >> 1] ?? 0} B) at ${bare.address}, pid ${bare.proc.pid}`);
    // What A spends with no request (its Kafka consumer, punctuation, commits): part of every phase's CPU.
    const idle0 = cpuMs(a.proc.pid as number);
    await sleep(3000);
    const idleA = (cpuMs(a.proc.pid as number) - idle0) / 3000;
    log(`A idle: ${(100 * idleA).toFixed(1)} % of a core`);
    await load('warm-up A', a, local, 3, 1000, null, specFile);
    await load('warm-up baseline', bare, local, 3, 1000, null, specFile);
    // Flat out first (the baseline's maximum sets the fixed rate), then both at half that rate, alternating.
    const bareMax = await load('baseline (bare fastify)', bare, local, seconds, null, null, specFile);
    const localMax = await load('local reads (task on A)', a, local, seconds, null, null, specFile);
    const half = rate ?? Math.round(bareMax.reqPerSec / 2);
    // Forwarding is compared with local reads at a rate both sustain (an overloaded A queues either way).
    const fwdRate = forwardRate ?? Math.min(half, 1000);
    const bareHalf = await load('baseline (bare fastify)', bare, local, seconds, half, null, specFile);
    const localHalf = await load('local reads (task on A)', a, local, seconds, half, null, specFile);
    const localFwdRate = fwdRate === half ? localHalf : await load('local reads (task on A)', a, local, seconds, fwdRate, null, specFile);
    const fwdHalf = await load('forwarded reads (A → B)', a, remote, seconds, fwdRate, b, specFile);
    const fwdMax = await load('forwarded reads (A → B)', a, remote, seconds, null, b, specFile);
    const results = [bareMax, localMax, bareHalf, localHalf, ...(localFwdRate === localHalf ? [] : [localFwdRate]), fwdHalf, fwdMax];
    const ratios = {
      throughput: localMax.reqPerSec / bareMax.reqPerSec,
      cpuPerRequestFlatOut: localMax.cpuUsPerRequest / bareMax.cpuUsPerRequest,
      cpuPerRequestAtHalf: localHalf.cpuUsPerRequest / bareHalf.cpuUsPerRequest,
      p50AtHalfMs: localHalf.p50,
      p99AtHalfMs: localHalf.p99,
      baselineP99AtHalfMs: bareHalf.p99,
      forwardedAddsP50Ms: fwdHalf.p50 - localFwdRate.p50,
    };
    const row = (f: Figures): string =>
      `| ${f.label} | ${f.targetRate === null ? 'flat out' : fmtInt(f.targetRate)} | ${fmtInt(f.reqPerSec)} | ${f.p50} | ${f.p99} | ${f.p999} | ${(100 * f.serverCpu).toFixed(0)} %${f.ownerCpu === null ? '' : ` / B ${(100 * f.ownerCpu).toFixed(0)} %`} | ${f.cpuUsPerRequest.toFixed(0)} | ${f.non2xx + f.errors} | ${f.serverRunQueueMs} / ${Math.round(f.runQueueMs)} | ${Math.round(f.gcMs)} (${f.gcPauses}) |`;
    const x = (n: number): string => n.toFixed(2);
    process.stdout.write(
      [
        '',
        `== Kairos query API (2 instances, mock cluster; ${fmtInt(events)} events, ${fmtInt(readable.length)} customers, median body ${sizes[sizes.length >> 1] ?? 0} B) vs a bare fastify app serving the same bodies from a Map ==`,
        `load: load-tests/lib/open-loop.ts in its own process, 64 keep-alive connections, ${seconds} s per phase; fixed rates open loop, latency from write to last byte (no correction); instances run ${values.dist ? 'from dist/ (compiled)' : 'from the sources (tsx)'}, KAFKA_MAX_WAIT_MS ${maxWaitMs}`,
        '| reads | target req/s | req/s | p50 ms | p99 ms | p99.9 ms | server CPU (of one core) | CPU µs/request | errors | waited for a CPU, server / generator ms | generator GC ms (pauses) |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
        ...results.map(row),
        '',
        `A idle (no requests): ${(100 * idleA).toFixed(1)} % of a core, included in its figures`,
        `ratios to the baseline: throughput ${x(ratios.throughput)} (goal >= 0.6); CPU per request flat out ${x(ratios.cpuPerRequestFlatOut)}, at ${fmtInt(half)} req/s ${x(ratios.cpuPerRequestAtHalf)} (goal <= 1.5)`,
        `at ${fmtInt(half)} req/s (half the baseline's max): p50 ${localHalf.p50} ms (goal <= 1), p99 ${localHalf.p99} ms (goal <= 5; baseline ${bareHalf.p99} ms); forwarded adds ${ratios.forwardedAddsP50Ms.toFixed(3)} ms at p50 at ${fmtInt(fwdRate)} req/s (goal <= 1)`,
        '',
        JSON.stringify({ bench: 'api-latency', runtime: values.dist ? 'dist' : 'tsx', maxWaitMs, events, customers: readable.length, seconds, halfRate: half, idleCpuA: idleA, ratios, results }),
        '',
      ].join('\n'),
    );
  } finally {
    for (const c of [...servers, ...children]) await c.stop().catch(() => undefined);
    await cluster.stop();
    rmSync(stateRoot, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:api: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
