/**
 * Query API latency and throughput: two `kairos start` instances (child processes, one event loop each) in one
 * group on librdkafka's mock cluster, loaded with a generated shop stream; autocannon (in this process) reads
 * customers through instance A:
 *   - local: customers whose task runs on A (one RocksDB-backed read per request);
 *   - forwarded: customers whose task runs on B (A forwards once to B over HTTP);
 *   - each at a fixed rate (default 5,000 req/s local, 2,000 forwarded) and flat out.
 * Prints req/s, p50/p99/p99.9 latency and the server's CPU (of one core). Nothing asserts on time.
 *
 *   npx tsx load-tests/api-latency.ts [--events 20000] [--customers 4000] [--seconds 15] [--rate 5000] [--forward-rate 2000]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pino from 'pino';
import { createKafka } from '../src/kafka/client.js';
import { startMockCluster } from '../src/kafka/mock-cluster.js';
import { generateEvents, resolveOptions } from './generate-events.js';
import { fmtInt, REPO_ROOT } from './lib/common.js';

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

async function startChild(brokers: string, stateDir: string, port: number, profileDir?: string): Promise<Child> {
  // KAIROS_BENCH_PROFILE=<dir>: instance A writes a V8 CPU profile there when it stops.
  const prof = profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir];
  const proc = spawn(process.execPath, [...prof, '--import', 'tsx', join(REPO_ROOT, 'src', 'cli', 'bin.ts'), 'start'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      KAFKA_BROKERS: brokers,
      KAFKA_IDEMPOTENT: 'false',
      KAFKA_MAX_WAIT_MS: '100',
      KAFKA_SESSION_TIMEOUT_MS: '6000',
      KAFKA_HEARTBEAT_MS: '500',
      KAIROS_APPLICATION_ID: 'bench-api',
      KAIROS_STATE_DIR: stateDir,
      KAIROS_HTTP_PORT: String(port),
      KAIROS_API_KEYS: `bench:${KEY}:read`,
      KAIROS_API_RATE_LIMIT: '100000000',
      KAIROS_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (c: string) => {
    err = (err + c).slice(-4000);
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const address = `127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`instance exited: ${err}`);
    const ok = await fetch(`http://${address}/health/live`).then((r) => r.ok, () => false);
    if (ok) break;
    if (i > 600) throw new Error(`instance not up: ${err}`);
    await sleep(100);
  }
  return {
    address,
    proc,
    stop: async () => {
      proc.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000).then(() => proc.kill('SIGKILL'))]);
    },
  };
}

interface Figures {
  readonly label: string;
  readonly targetRate: number | null;
  readonly requests: number;
  readonly reqPerSec: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly serverCpu: number;
  readonly ownerCpu: number | null;
}

async function load(label: string, url: string, paths: readonly string[], seconds: number, rate: number | null, server: Child, owner: Child | null): Promise<Figures> {
  let i = 0;
  const cpu0 = cpuMs(server.proc.pid as number);
  const own0 = owner ? cpuMs(owner.proc.pid as number) : 0;
  const t0 = performance.now();
  const r = await autocannon({
    url,
    connections: 64,
    duration: seconds,
    ...(rate === null ? {} : { overallRate: rate }),
    headers: { authorization: `Bearer ${KEY}` },
    requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: paths[i++ % paths.length] as string }) }],
  });
  const wall = performance.now() - t0;
  const f: Figures = {
    label,
    targetRate: rate,
    requests: r.requests.total,
    reqPerSec: r.requests.total / (wall / 1000),
    p50: r.latency.p50,
    p99: r.latency.p99,
    p999: r.latency.p99_9,
    max: r.latency.max,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    serverCpu: (cpuMs(server.proc.pid as number) - cpu0) / wall,
    ownerCpu: owner ? (cpuMs(owner.proc.pid as number) - own0) / wall : null,
  };
  log(
    `${label}: ${fmtInt(f.reqPerSec)} req/s${rate === null ? ' (flat out)' : ` (target ${fmtInt(rate)})`}, p50 ${f.p50} ms, p99 ${f.p99} ms, p99.9 ${f.p999} ms, max ${f.max} ms, ` +
      `non-2xx ${f.non2xx}, errors ${f.errors}; CPU of A ${(100 * f.serverCpu).toFixed(0)} %${f.ownerCpu === null ? '' : `, of B ${(100 * f.ownerCpu).toFixed(0)} %`}`,
  );
  return f;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      events: { type: 'string', default: '20000' },
      customers: { type: 'string', default: '4000' },
      seconds: { type: 'string', default: '15' },
      rate: { type: 'string', default: '5000' },
      'forward-rate': { type: 'string', default: '2000' },
    },
  });
  const events = Number(values.events);
  const customers = Number(values.customers);
  const seconds = Number(values.seconds);
  const rate = Number(values.rate);
  const forwardRate = Number(values['forward-rate']);
  const cluster = await startMockCluster();
  const stateRoot = mkdtempSync(join(tmpdir(), 'kairos-bench-api-'));
  const children: Child[] = [];
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
    const a = await startChild(brokers, join(stateRoot, 'a'), await freePort(), process.env.KAIROS_BENCH_PROFILE);
    children.push(a);
    const b = await startChild(brokers, join(stateRoot, 'b'), await freePort());
    children.push(b);
    log(`instances A ${a.address} (pid ${a.proc.pid}) and B ${b.address} (pid ${b.proc.pid}) started; waiting until every customer is readable`);
    const all = [...ids];
    const owners = new Map<string, string>();
    // Some generated customers leave no state (e.g. a browse session already decided and cleared): wait until
    // both instances are ready and the readable set stops growing, then load the readable ones.
    let previous = -1;
    for (let round = 0; ; round++) {
      owners.clear();
      let ok = 0;
      for (const c of all) {
        const res = await fetch(`http://${a.address}/v1/customers/${encodeURIComponent(c)}`, { headers: { authorization: `Bearer ${KEY}` } });
        await res.arrayBuffer();
        if (res.status === 200) {
          ok++;
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
    const base = `http://${a.address}`;
    await load('warm-up', base, local, 3, 1000, a, null);
    const results = [
      await load('local reads (task on A)', base, local, seconds, rate, a, null),
      await load('local reads (task on A)', base, local, seconds, null, a, null),
      await load('forwarded reads (A → B)', base, remote, seconds, forwardRate, a, b),
      await load('forwarded reads (A → B)', base, remote, seconds, null, a, b),
    ];
    const row = (f: Figures): string =>
      `| ${f.label} | ${f.targetRate === null ? 'flat out' : fmtInt(f.targetRate)} | ${fmtInt(f.reqPerSec)} | ${f.p50} | ${f.p99} | ${f.p999} | ${(100 * f.serverCpu).toFixed(0)} %${f.ownerCpu === null ? '' : ` / B ${(100 * f.ownerCpu).toFixed(0)} %`} | ${f.non2xx + f.errors} |`;
    process.stdout.write(
      [
        '',
        `== Kairos query API (2 instances, mock cluster; ${fmtInt(events)} events, ${fmtInt(readable.length)} customers; autocannon 64 connections, ${seconds} s per phase) ==`,
        '| reads | target req/s | req/s | p50 ms | p99 ms | p99.9 ms | server CPU (of one core) | errors |',
        '|---|---|---|---|---|---|---|---|',
        ...results.map(row),
        '',
        JSON.stringify({ bench: 'api-latency', events, customers: readable.length, seconds, results }),
        '',
      ].join('\n'),
    );
  } finally {
    for (const c of children) await c.stop().catch(() => undefined);
    await cluster.stop();
    rmSync(stateRoot, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:api: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
