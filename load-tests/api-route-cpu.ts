/**
 * The query API's route alone, against the bare fastify baseline, without Kafka: CPU time per request of
 * `GET /v1/customers/:id` served by the instance's HTTP server (`startHttpServer` with the API: auth, rate limit,
 * metrics, freshness) over one task's state (TopologyTestDriver, generated shop events), and of a bare fastify
 * app (load-tests/lib/bare-api.ts) serving the bodies the route answered, from a Map. Each server runs in a
 * process of its own, the open-loop generator (load-tests/lib/open-loop.ts) in a third; the phases alternate
 * (Kairos, bare, Kairos, bare, …), flat out, and the CPU of each server is read from /proc. Prints each pair and
 * the median of the ratios. `KAIROS_BENCH_PROFILE=<dir>` writes a CPU profile of the Kairos server,
 * `KAIROS_BENCH_PROFILE_BARE=<dir>` one of the bare app (`KAIROS_BENCH_PROFILE_INTERVAL=<µs>`: the sampling interval,
 * default 1000). Nothing
 * asserts on time.
 *
 *   npx tsx load-tests/api-route-cpu.ts [--events 20000] [--customers 4000] [--seconds 5] [--pairs 3] [--rate 0]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { buildTopology } from '../src/app/topology.js';
import { resolveCampaigns } from '../src/config/campaigns.js';
import { stateReader, type StateReader } from '../src/engine/state/reader.js';
import { TopologyTestDriver } from '../src/engine/testing/test-driver.js';
import { startHttpServer } from '../src/http/server.js';
import { generateEvents, resolveOptions } from './generate-events.js';
import type { LoadResult } from './lib/open-loop.js';
import { cpuProfileArgs, fmtInt, median, REPO_ROOT } from './lib/common.js';

const KEY = 'bench-api-key-0123456789abcdef';
const log = (s: string): void => void process.stderr.write(`bench:api-route ${new Date().toISOString().slice(11, 23)} ${s}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Server role: one task fed with the generated events, the instance's HTTP server in front of it. */
async function serveKairos(events: number, customers: number, idsFile: string): Promise<void> {
  const topology = buildTopology(resolveCampaigns({}, 'defaults'), 'bench-api');
  const driver = await TopologyTestDriver.create(topology, { commitEachRecord: false });
  const ids = new Set<string>();
  let last = 0;
  for (const line of generateEvents(resolveOptions({ events, customers, seed: 7 }))) {
    const env = JSON.parse(line) as { topic: string; key: string; value: { occurredAt?: number } };
    if (env.topic !== 'shop.catalog.v1') ids.add(env.key);
    await driver.pipe(env.topic, env.key, env.value);
    last = Math.max(last, env.value.occurredAt ?? 0);
  }
  await driver.advanceStreamTime(last);
  writeFileSync(idsFile, JSON.stringify([...ids]));
  const readerNow = (): StateReader => stateReader(driver.task.state, { source: 'active', partition: 0, timers: (k: string) => driver.task.timerInfosFor(k) });
  // readerNow where the API supports it (a base worktree's may not: then the route awaits reader()).
  const backend = { topology, partitionOf: () => 0, owner: () => 'self', reader: () => Promise.resolve(readerNow()), readerNow };
  const { address } = await startHttpServer({
    registry: new Registry(),
    ready: () => true,
    port: 0,
    host: '127.0.0.1',
    api: {
      backend: { ...backend, owner: () => address },
      auth: { mode: 'required', keys: [{ name: 'bench', key: KEY, scopes: new Set(['read']) }], tokenSecret: undefined },
      rateLimitService: 100_000_000,
      rateLimitCustomer: 600,
      forwardTimeoutMs: 1000,
    },
  });
  // process.exit (not the default signal death) so that --cpu-prof writes its profile.
  process.on('SIGTERM', () => process.exit(0));
  process.stdout.write(`listening ${address}\n`);
}

interface Server {
  readonly proc: ChildProcess;
  readonly address: string;
}

function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

function startServer(args: readonly string[], profileDir?: string): Promise<Server> {
  const prof = cpuProfileArgs(profileDir);
  const proc = spawn(process.execPath, [...prof, '--import', 'tsx', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (c: string) => {
      out += c;
      const m = /listening (\S+)/.exec(out);
      if (m) resolve({ proc, address: m[1]?.includes(':') ? (m[1] as string) : `127.0.0.1:${m[1] ?? ''}` });
    });
    proc.once('exit', (c) => reject(new Error(`server exited with ${c}`)));
  });
}

async function load(target: Server, paths: readonly string[], seconds: number, rate: number, specFile: string): Promise<LoadResult & { cpuUs: number; cpuShare: number }> {
  const [host, port] = target.address.split(':') as [string, string];
  writeFileSync(specFile, JSON.stringify({ host, port: Number(port), paths, headers: { authorization: `Bearer ${KEY}` }, seconds, rate, connections: 64 }));
  const gen = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'load-tests', 'lib', 'open-loop.ts'), `@${specFile}`], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  gen.stdout.setEncoding('utf8');
  gen.stdout.on('data', (c: string) => (out += c));
  await sleep(700);
  const cpu0 = cpuMs(target.proc.pid as number);
  const t0 = performance.now();
  const code = await new Promise<number | null>((r) => gen.once('exit', r));
  const wall = performance.now() - t0;
  if (code !== 0) throw new Error(`load generator exited with ${code}`);
  const r = JSON.parse(out.trim().split('\n').pop() as string) as LoadResult;
  const cpu = cpuMs(target.proc.pid as number) - cpu0;
  return { ...r, cpuUs: (cpu * 1000) / Math.max(1, r.requests), cpuShare: cpu / wall };
}


async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      serve: { type: 'string' },
      'ids-file': { type: 'string' },
      events: { type: 'string', default: '20000' },
      customers: { type: 'string', default: '4000' },
      seconds: { type: 'string', default: '5' },
      pairs: { type: 'string', default: '3' },
      rate: { type: 'string', default: '0' },
    },
  });
  if (values.serve === 'kairos') return serveKairos(Number(values.events), Number(values.customers), values['ids-file'] as string);
  const dir = mkdtempSync(join(tmpdir(), 'h17-api-route-'));
  const servers: Server[] = [];
  try {
    const idsFile = join(dir, 'ids.json');
    const self = join(REPO_ROOT, 'load-tests', 'api-route-cpu.ts');
    const t0 = Date.now();
    const kairos = await startServer([self, '--serve', 'kairos', '--ids-file', idsFile, '--events', values.events, '--customers', values.customers], process.env.KAIROS_BENCH_PROFILE);
    servers.push(kairos);
    log(`Kairos route at ${kairos.address} (pid ${kairos.proc.pid}), state built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const bodies: Record<string, string> = {};
    for (const id of JSON.parse(readFileSync(idsFile, 'utf8')) as string[]) {
      const res = await fetch(`http://${kairos.address}/v1/customers/${encodeURIComponent(id)}`, { headers: { authorization: `Bearer ${KEY}` } });
      const text = await res.text();
      if (res.status === 200) bodies[id] = text;
    }
    const paths = Object.keys(bodies).map((id) => `/v1/customers/${encodeURIComponent(id)}`);
    const bodiesFile = join(dir, 'bodies.json');
    writeFileSync(bodiesFile, JSON.stringify(bodies));
    const sizes = Object.values(bodies).map((b) => Buffer.byteLength(b)).sort((a, b) => a - b);
    const bare = await startServer([join(REPO_ROOT, 'load-tests', 'lib', 'bare-api.ts'), bodiesFile, '0'], process.env.KAIROS_BENCH_PROFILE_BARE);
    servers.push(bare);
    log(`${fmtInt(paths.length)} customers, median body ${sizes[sizes.length >> 1] ?? 0} B; bare fastify at ${bare.address}`);
    const specFile = join(dir, 'load.json');
    const seconds = Number(values.seconds);
    const rate = Number(values.rate);
    await load(kairos, paths, 2, 1000, specFile);
    await load(bare, paths, 2, 1000, specFile);
    const pairs: { k: number; b: number; kr: number; br: number }[] = [];
    for (let i = 0; i < Number(values.pairs); i++) {
      const k = await load(kairos, paths, seconds, rate, specFile);
      const b = await load(bare, paths, seconds, rate, specFile);
      pairs.push({ k: k.cpuUs, b: b.cpuUs, kr: k.reqPerSec, br: b.reqPerSec });
      log(
        `pair ${i + 1}: Kairos ${fmtInt(k.reqPerSec)} req/s, ${k.cpuUs.toFixed(1)} µs CPU/request (${(100 * k.cpuShare).toFixed(0)} % of a core, p50 ${k.p50} ms, p99 ${k.p99} ms, non-2xx ${k.non2xx}); ` +
          `bare ${fmtInt(b.reqPerSec)} req/s, ${b.cpuUs.toFixed(1)} µs (${(100 * b.cpuShare).toFixed(0)} %); ratio ${(k.cpuUs / b.cpuUs).toFixed(2)}`,
      );
    }
    const ratios = pairs.map((p) => p.k / p.b);
    process.stdout.write(
      `${JSON.stringify({
        bench: 'api-route-cpu',
        customers: paths.length,
        medianBodyBytes: sizes[sizes.length >> 1] ?? 0,
        seconds,
        rate,
        pairs,
        medianCpuUsKairos: median(pairs.map((p) => p.k)),
        medianCpuUsBare: median(pairs.map((p) => p.b)),
        medianRatio: median(ratios),
        ratios,
      })}\n`,
    );
  } finally {
    for (const s of servers) {
      const exited = new Promise<void>((r) => s.proc.once('exit', () => r()));
      s.proc.kill('SIGTERM');
      await Promise.race([exited, sleep(5000).then(() => s.proc.kill('SIGKILL'))]);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:api-route: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
