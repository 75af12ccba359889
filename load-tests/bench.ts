/**
 * `npm run bench`: runs the benchmarks one after another as child processes, parses each one's final JSON line
 * and writes a report: load-tests/reports/latest.md and latest.json (also printed). The machine is described
 * (cores, CPU model, RAM, Node, git commit, date) and the load average is taken before every run, because the
 * machine may be shared.
 *
 *   npm run bench -- [--quick] [--only replay,kafka-1,kafka-2,kafka-4,api,restore,fanout,memory,dispatch,chaos] [--chaos]
 *                    [--out load-tests/reports] [--brokers host:port] [--peer "<command>"]
 *
 * --brokers: a real (test) broker for the Kafka steps and the restore (its contract and kairos-* topics are
 * deleted and recreated by those steps): catch-up, scaling and latency there, and the restore of the whole
 * --customers through the changelog, measured instead of extrapolated from the mock. --peer (with --brokers): a
 * peer stream processor measured by kafka-1 on the same topics and records in the same run (kafka-throughput.ts
 * --peer; load-tests/peers/KafkaStreamsCount.java is Kafka Streams' stateful count), with Kairos' ratio to it.
 *
 *   replay    load-tests/replay-throughput.ts --no-profile        (1M events / 100k customers; --quick 200k / 20k)
 *   kafka-1   load-tests/kafka-throughput.ts --instances 1 --mode inproc, with the latency phase (--rate 2000
 *             --tick-ms 100 --seconds 10)                          (200k events; --quick 50k)
 *   kafka-2   … --instances 2 (child processes), catch-up only     (200k; --quick 50k)
 *   kafka-4   … --instances 4 (child processes), catch-up only     (200k; --quick 50k)
 *   api       load-tests/api-latency.ts                            (--seconds 15; --quick 5)
 *   restore   load-tests/restore-time.ts                           (1M customers in both modes)
 *   fanout    load-tests/fanout-time.ts                            (100k wishers, 100k basket watchers)
 *   memory    load-tests/memory-bound.ts                           (10M customers on disk, 1M operations; --quick 1M / 300k)
 *   dispatch  load-tests/dispatch-throughput.ts, if present        (3,000 triggers; --quick 1,000)
 *   chaos     load-tests/chaos.ts, only with --chaos or --only chaos (3 min, kill every 20 s; --quick 1.5 min / 15 s)
 *
 * A step that fails (exit code ≠ 0 or no JSON line) is reported as failed with the tail of its output; the
 * others still run. Exit code 1 if any step failed. With --only, the steps not run are kept from the existing
 * latest.json (each with its own start time and load average), so one step can be rerun into the report.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { fmtInt, REPO_ROOT } from './lib/common.js';

const log = (msg: string): void => void process.stderr.write(`bench ${new Date().toISOString().slice(11, 19)} ${msg}\n`);

interface Step {
  readonly name: string;
  readonly script: string;
  readonly args: readonly string[];
  readonly what: string;
}

type Json = Record<string, unknown>;

const KEPT = '(kept from the previous report)';

interface Result {
  readonly name: string;
  readonly command: string;
  readonly what: string;
  readonly startedAt: string;
  readonly loadBefore: string;
  readonly wallMs: number;
  readonly exitCode: number | null;
  readonly json: Json | undefined;
  readonly tail: string;
}

function steps(quick: boolean, brokers: string | undefined, peer: string | undefined): Step[] {
  const kafkaSize = [...(quick ? ['--events', '50000', '--customers', '5000'] : []), ...(brokers === undefined ? [] : ['--brokers', brokers])];
  const list: Step[] = [
    {
      name: 'replay',
      script: 'replay-throughput.ts',
      args: [...(quick ? ['--events', '200000', '--customers', '20000'] : []), '--no-profile', '--runs', '3', '--dist'],
      what: 'replay() with all four topologies (compiled dist/, as deployed), guards off, one core',
    },
    {
      name: 'kafka-1',
      script: 'kafka-throughput.ts',
      args: [...kafkaSize, '--instances', '1', '--mode', 'inproc', '--rate', '2000', '--tick-ms', '100', '--seconds', '10', ...(peer === undefined ? [] : ['--peer', peer])],
      what: `KafkaRunner in process on ${brokers === undefined ? 'the mock cluster' : brokers}: catch-up, then a steady 2,000 events/s latency phase`,
    },
    { name: 'kafka-2', script: 'kafka-throughput.ts', args: [...kafkaSize, '--instances', '2', '--mode', 'child', '--seconds', '0'], what: 'two `kairos start` children, catch-up' },
    { name: 'kafka-4', script: 'kafka-throughput.ts', args: [...kafkaSize, '--instances', '4', '--mode', 'child', '--seconds', '0'], what: 'four `kairos start` children, catch-up' },
    // api-latency's defaults (4,000 customers) since 7115d78; the first report's api figures used --customers 500,
    // because its readiness wait then never ended when a generated customer had no state.
    // As deployed (bin/kairos.js runs dist/): tsx's transform adds a closure wrapper per function made per request
    // (load-tests/README.md, *Where the query API's time goes*). The bench builds dist/ first.
    { name: 'api', script: 'api-latency.ts', args: [...(quick ? ['--seconds', '5'] : []), '--dist'], what: 'query API (compiled dist/, as deployed) through instance A of two vs a bare fastify baseline, open-loop generator' },
    {
      name: 'restore',
      script: 'restore-time.ts',
      args: brokers === undefined ? [] : ['--brokers', brokers],
      what:
        brokers === undefined
          ? 'restore of 1M customers (local, full scale) and from the mock cluster (largest that fits)'
          : `restore of 1M customers (local, full scale) and from the changelog on ${brokers} (full scale, measured)`,
    },
    // Both waves at 100,000 (the cache's memory budget replaced the 50,000-entry limit whose eviction made a
    // larger price-drop wave quadratic).
    { name: 'fanout', script: 'fanout-time.ts', args: [], what: 'a sku with 100k wishers (restock) and 100k basket watchers (price drop) in TopologyTestDriver' },
    {
      name: 'memory',
      script: 'memory-bound.ts',
      args: quick ? ['--customers', '1000000', '--ops', '300000'] : [],
      what: 'RSS of a task with 10M customers of state on disk under random reads and writes (cache budget 128 MiB)',
    },
  ];
  if (existsSync(join(REPO_ROOT, 'load-tests', 'dispatch-throughput.ts'))) {
    list.push({ name: 'dispatch', script: 'dispatch-throughput.ts', args: quick ? ['--triggers', '1000'] : [], what: 'Dispatcher against local Redis, FCM and SMTP' });
  }
  list.push({
    name: 'chaos',
    script: 'chaos.ts',
    args: quick ? ['--minutes', '1.5', '--kill-every', '15'] : [],
    what: 'three instances, SIGKILL + restart one every N s under load',
  });
  return list;
}

function machine(): Json {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const git = (args: string[]): string => spawnSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).stdout.trim();
  const dirty = git(['status', '--porcelain', '--untracked-files=no', '--', 'src', 'topologies', 'load-tests']).length > 0;
  return {
    nproc: Number(spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()) || cpus().length,
    cpuModel: model,
    ramGiB: Number((totalmem() / 1024 ** 3).toFixed(1)),
    node: process.version,
    kernel: spawnSync('uname', ['-sr'], { encoding: 'utf8' }).stdout.trim(),
    gitCommit: git(['rev-parse', '--short', 'HEAD']),
    gitDirty: dirty,
    date: new Date().toISOString(),
  };
}

const loadAvg = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');

function runStep(s: Step): Promise<Result> {
  const args = ['--import', 'tsx', join('load-tests', s.script), ...s.args];
  const command = `npx tsx load-tests/${s.script}${s.args.length ? ` ${s.args.join(' ')}` : ''}`;
  const loadBefore = loadAvg();
  const startedAt = new Date().toISOString();
  log(`${s.name}: ${command} (load average ${loadBefore})`);
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    let out = '';
    let errTail = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (c: string) => {
      out += c;
    });
    // The step's progress goes to our stderr, prefixed.
    let partial = '';
    child.stderr.on('data', (c: string) => {
      errTail = (errTail + c).slice(-4000);
      partial += c;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) process.stderr.write(`  [${s.name}] ${l}\n`);
    });
    const onSignal = (): void => void child.kill('SIGTERM');
    process.once('SIGINT', onSignal);
    child.once('close', (code) => {
      process.off('SIGINT', onSignal);
      const jsonLine = out
        .split('\n')
        .reverse()
        .find((l) => l.startsWith('{') && l.includes('"bench"'));
      let json: Json | undefined;
      try {
        json = jsonLine === undefined ? undefined : (JSON.parse(jsonLine) as Json);
      } catch {
        json = undefined;
      }
      // dispatch-throughput prints text only: take its figures from the text.
      if (json === undefined && s.name === 'dispatch' && code === 0) {
        const m = /(\d+) triggers\/s, (\d+) deliveries\/s/.exec(out);
        const calls = /mean provider call: (.+?);/.exec(out)?.[1];
        if (m) json = { bench: 'dispatch-throughput', triggersPerSec: Number(m[1]), deliveriesPerSec: Number(m[2]), ...(calls ? { meanProviderCall: calls } : {}), parsedFromText: true };
      }
      const wallMs = Date.now() - t0;
      log(`${s.name}: exit ${String(code)} after ${(wallMs / 1000).toFixed(0)} s${json ? '' : ' — no JSON line'}`);
      resolve({ name: s.name, command, what: s.what, startedAt, loadBefore, wallMs, exitCode: code, json, tail: `${out.slice(-3000)}\n${errTail}` });
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The report

const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
const get = (o: unknown, ...path: (string | number)[]): unknown => path.reduce<unknown>((a, k) => (a !== null && typeof a === 'object' ? (a as Record<string, unknown>)[k] : undefined), o);
const n0 = (x: unknown): string => (num(x) === undefined ? '–' : fmtInt(num(x) as number));
const mib = (bytes: unknown): string => (num(bytes) === undefined ? '–' : `${fmtInt((num(bytes) as number) / 1048576)} MiB`);
const secs = (ms: unknown, d = 1): string => (num(ms) === undefined ? '–' : `${((num(ms) as number) / 1000).toFixed(d)} s`);

function headline(results: readonly Result[]): string[][] {
  const by = new Map(results.map((r) => [r.name, r]));
  const rows: string[][] = [];
  const j = (name: string): Json | undefined => by.get(name)?.json;
  const rp = j('replay');
  if (rp) {
    rows.push([
      'replay events/s (all four topologies, one core)',
      `**${n0(rp.eventsPerSec)}**`,
      `${n0(rp.events)} events, ${n0(rp.customers)} customers; ${n0(rp.triggers)} triggers; model agrees: ${String(rp.modelAgrees)}; peak RSS ${mib(rp.peakRssBytes)}` +
        (num(rp.decodeOnlyPerSec) === undefined
          ? ''
          : `; decode-only (read, JSON.parse, validation) ${n0(rp.decodeOnlyPerSec)} events/s in the same run, replay ÷ it = **${(num(rp.ratioToDecodeOnly) ?? 0).toFixed(3)}** (medians of 3)`),
    ]);
  }
  for (const k of ['kafka-1', 'kafka-2', 'kafka-4']) {
    const kj = j(k);
    if (!kj) continue;
    const per = (get(kj, 'perInstance') as { ratePerSec?: number; peakRss?: number }[] | undefined) ?? [];
    rows.push([
      `Kafka catch-up, ${String(kj.instances)} instance(s) (${String(kj.mode)})`,
      `**${n0(kj.consumedPerSec)} records/s** (${n0(kj.consumedPerSecPerInstance)} per instance)`,
      `${n0(kj.sourceRecords)} input records; per instance ${per.map((i) => n0(i.ratePerSec)).join(' / ')}; peak RSS ${per.map((i) => mib(i.peakRss)).join(' / ')}; model ${n0(get(kj, 'model', 'identical'))} of ${n0(get(kj, 'model', 'expected'))}` +
        (num(kj.bareConsumerPerSec) === undefined
          ? ''
          : `; bare kafkajs consumer on the same topics ${n0(kj.bareConsumerPerSec)} records/s (same run), per instance ÷ it = **${(num(kj.ratioToBareConsumer) ?? 0).toFixed(3)}** (÷ one that JSON.parses: ${(num(kj.ratioToBareConsumerParse) ?? 0).toFixed(3)})`) +
        (num(get(kj, 'peer', 'perSec')) === undefined
          ? ''
          : `; peer \`${String(get(kj, 'peer', 'command'))}\` ${n0(get(kj, 'peer', 'perSec'))} records/s at ${(100 * (num(get(kj, 'peer', 'cpuShare')) ?? 0)).toFixed(0)} % of a core (same run), per instance ÷ it = **${(num(kj.ratioToPeer) ?? 0).toFixed(3)}**`),
    ]);
    const lat = get(kj, 'latency');
    if (lat) {
      rows.push([
        `event → trigger at ${n0(get(lat, 'rate'))} events/s (${String(kj.instances)} instance, gap ${secs(get(lat, 'gapMs'), 0)})`,
        `**p50 ${n0(get(lat, 'triggerMs', 'p50'))} ms, p99 ${n0(get(lat, 'triggerMs', 'p99'))} ms**`,
        `read − (occurredAt + gap); pipeline (send → changelog read back) p50 ${n0(get(lat, 'pipelineMs', 'p50'))} / p99 ${n0(get(lat, 'pipelineMs', 'p99'))} ms; ${n0(get(lat, 'triggers'))} triggers, missing ${n0(get(lat, 'missing'))}, duplicates ${n0(get(lat, 'duplicates'))}`,
      ]);
    }
  }
  const k1 = num(j('kafka-1')?.consumedPerSec);
  for (const k of ['kafka-2', 'kafka-4']) {
    const total = num(j(k)?.consumedPerSec);
    if (k1 !== undefined && total !== undefined && k1 > 0) {
      rows.push([
        `scaling: ${k.slice(-1)} instances ÷ 1 (catch-up, records/s in total)`,
        `**${(total / k1).toFixed(2)}×**`,
        `${n0(total)} vs ${n0(k1)} records/s (kafka-1 runs in process, the others as children; goal for 2 instances ≥ 1.7×)`,
      ]);
    }
  }
  const api = j('api');
  if (api) {
    const res = (get(api, 'results') as { label: string; targetRate: number | null; reqPerSec: number; p50: number; p99: number }[] | undefined) ?? [];
    for (const r of res) {
      rows.push([
        `API ${r.label}, ${r.targetRate === null ? 'flat out' : `${fmtInt(r.targetRate)} req/s`}`,
        `**p99 ${String(r.p99)} ms**`,
        `${fmtInt(r.reqPerSec)} req/s, p50 ${String(r.p50)} ms`,
      ]);
    }
  }
  const rs = j('restore');
  if (rs) {
    const l = get(rs, 'local');
    const k = get(rs, 'kafka');
    if (l) {
      rows.push([
        `restore ${n0(get(l, 'customers'))} customers (TaskState.restore into empty RocksDB, local)`,
        `**${secs(get(l, 'restoreMs'))}**${num(get(l, 'readMs')) === undefined ? '' : ` (reading the file ${secs(get(l, 'readMs'))}, TaskState.restore ${secs(get(l, 'applyMs'))})`}`,
        `${n0(get(l, 'entries'))} changelog entries (${n0(get(l, 'changelogMiB'))} MiB), ${n0(get(l, 'restoreEntriesPerSec'))} entries/s; peak RSS ${n0(get(l, 'peakRssRestoreMiB'))} MiB; state ${n0(get(l, 'restoredStateDiskMiB'))} MiB on disk`,
      ]);
    }
    if (k && Array.isArray(rs.brokers)) {
      rows.push([
        `restore from the Kafka changelog on ${(rs.brokers as string[]).join(',')} (${n0(get(k, 'customers'))} customers = ${n0(get(k, 'records'))} records, ${(num(get(k, 'recordMiB')) ?? 0).toFixed(0)} MiB)`,
        `**${secs(get(k, 'restoreMs'), 1)} measured**`,
        `restoreFromChangelog, one partition per store; ${n0(get(k, 'restoreRecordsPerSec'))} records/s (goal for 1M customers ≤ 60 s)`,
      ]);
    } else if (k) {
      rows.push([
        `restore from the Kafka changelog (mock cluster, ${n0(get(k, 'customers'))} customers = ${n0(get(k, 'records'))} records, ${(num(get(k, 'recordMiB')) ?? 0).toFixed(1)} MiB)`,
        `${secs(get(k, 'restoreMs'), 2)} measured; **~${String(get(k, 'extrapolated1MCustomersSec'))} s for 1M customers (extrapolated)**`,
        `restoreFromChangelog, one partition; group join + first batch ${secs(get(k, 'firstBatchMs'), 2)}, then ${n0(get(k, 'restoreRecordsPerSecAfterFirst'))} records/s; trimmed ${n0(get(k, 'trimmed'))}`,
      ]);
    }
  }
  const fo = j('fanout');
  if (fo) {
    for (const w of (get(fo, 'waves') as Json[] | undefined) ?? []) {
      rows.push([
        `fan-out: ${w.kind === 'price-drop' ? 'PRICE_CHANGED to a sku with' : 'restock of a sku with'} ${n0(w.watchers)} ${w.kind === 'price-drop' ? 'basket watchers' : 'wishers'}`,
        `**${secs(w.waveMs, 1)}** (${n0(w.triggersPerSec)} triggers/s)`,
        `${n0(w.triggers)} triggers, pageSize ${n0(w.pageSize)}; TopologyTestDriver (one task, no broker); peak RSS ${n0(w.peakRssWaveMiB)} MiB`,
      ]);
    }
  }
  const me = j('memory');
  if (me) {
    rows.push([
      `memory: a task with ${n0(me.customers)} customers of state on disk (${mib(me.diskBytes)}), ${n0(me.ops)} random reads + writes`,
      `**peak RSS ${mib(me.peakRssBytes)}** (+${mib((num(me.peakRssBytes) ?? 0) - (num(me.rssBeforeBytes) ?? 0))} over the process before the task)`,
      `cache budget ${n0(me.budgetMiB)} MiB, largest ${mib(me.maxCacheBytes)}; evicted ${n0(me.evicted)}; wrong values ${n0(me.wrong)}`,
    ]);
  }
  const di = j('dispatch');
  if (di) rows.push(['dispatch (push + email + onsite, local endpoints)', `**${n0(di.triggersPerSec)} triggers/s**`, `${n0(di.deliveriesPerSec)} deliveries/s; mean provider call ${String(di.meanProviderCall ?? '–')}`]);
  const ch = j('chaos');
  if (ch) {
    rows.push([
      `chaos: 3 instances, SIGKILL + restart every ${String(ch.killEverySec)} s for ${String(ch.minutes)} min at ${String(ch.rate)} customers/s`,
      `**lost ${n0(ch.lost)}**, duplicates ${n0(ch.duplicates)}`,
      `expected ${n0(ch.expected)}, delivered ${n0(ch.delivered)}; ${n0(ch.kills)} kills (${n0(ch.wipedRestarts)} with wiped state), ${n0(ch.groupJoins)} group joins, ${n0(ch.restores)} changelog restores`,
    ]);
  }
  return rows;
}

function markdown(m: Json, quick: boolean, argv: readonly string[], results: readonly Result[]): string {
  const lines: string[] = [];
  lines.push(`# Kairos benchmark report`);
  lines.push('');
  lines.push(`\`npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}\`${quick ? ' (quick sizes)' : ''}, ${String(m.date)}, commit ${String(m.gitCommit)}${m.gitDirty ? ' (with uncommitted changes in src/, topologies/ or load-tests/)' : ''}.`);
  lines.push('');
  lines.push(
    `Machine: ${String(m.nproc)} cores (${String(m.cpuModel)}), ${String(m.ramGiB)} GiB RAM, Node ${String(m.node)}, ${String(m.kernel)}. ` +
      'Kafka figures are against librdkafka\'s mock cluster (kcat), not a real broker. The machine may be shared with other work: ' +
      'the load average before each run is given below; treat single figures as ±25 %.',
  );
  lines.push('');
  const kept = results.filter((r) => r.tail === KEPT).map((r) => r.name);
  if (kept.length > 0) {
    lines.push(`Steps kept from earlier runs of \`npm run bench\` (see their start times below): ${kept.join(', ')}.`);
    lines.push('');
  }
  lines.push('| figure | value | detail |');
  lines.push('|---|---|---|');
  for (const r of headline(results)) lines.push(`| ${r.join(' | ')} |`);
  lines.push('');
  lines.push('| step | command | started (UTC) | load average before (1/5/15 min) | wall | result |');
  lines.push('|---|---|---|---|---|---|');
  for (const r of results) {
    const ok = r.exitCode === 0 && r.json !== undefined;
    lines.push(
      `| ${r.name} | \`${r.command}\` | ${r.startedAt.slice(0, 16).replace('T', ' ')} | ${r.loadBefore} | ${secs(r.wallMs, 0)} | ${ok ? 'ok' : `**failed** (exit ${String(r.exitCode)}${r.json ? '' : ', no JSON line'})`} |`,
    );
  }
  const failed = results.filter((r) => r.exitCode !== 0 || r.json === undefined);
  for (const r of failed) {
    lines.push('');
    lines.push(`<details><summary>${r.name}: end of its output</summary>`);
    lines.push('');
    lines.push('```');
    lines.push(r.tail.trim().slice(-2500));
    lines.push('```');
    lines.push('</details>');
  }
  lines.push('');
  lines.push('Every step\'s full JSON line is in `latest.json`. What each benchmark does: load-tests/README.md.');
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      chaos: { type: 'boolean', default: false },
      out: { type: 'string' },
      brokers: { type: 'string' },
      peer: { type: 'string' },
    },
    strict: true,
  });
  if (values.peer !== undefined && values.brokers === undefined) {
    process.stderr.write('bench: --peer needs --brokers (a peer such as Kafka Streams creates its topics with CreateTopics, which the mock cluster does not have)\n');
    return 2;
  }
  const all = steps(values.quick, values.brokers, values.peer);
  let chosen: Step[];
  if (values.only !== undefined) {
    const names = values.only.split(',').map((x) => x.trim());
    const unknown = names.filter((x) => !all.some((s) => s.name === x));
    if (unknown.length > 0) {
      process.stderr.write(`bench: unknown step(s) ${unknown.join(', ')}; steps: ${all.map((s) => s.name).join(', ')}\n`);
      return 2;
    }
    chosen = all.filter((s) => names.includes(s.name));
  } else chosen = all.filter((s) => s.name !== 'chaos' || values.chaos);
  const outDir = values.out ?? join(REPO_ROOT, 'load-tests', 'reports');
  mkdirSync(outDir, { recursive: true });
  const m = machine();
  log(`${String(m.nproc)} cores, ${String(m.cpuModel)}, ${String(m.ramGiB)} GiB, node ${String(m.node)}, commit ${String(m.gitCommit)}; steps: ${chosen.map((s) => s.name).join(', ')}`);
  if (chosen.some((s) => s.args.includes('--dist'))) {
    // The steps that run Kairos as deployed need a current dist/ (api-latency refuses a stale one).
    log('npm run build (steps run from dist/)');
    const built = spawnSync('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    if (built.status !== 0) {
      process.stderr.write(`bench: npm run build failed (exit ${String(built.status)})\n`);
      return 1;
    }
  }
  const fresh: Result[] = [];
  for (const s of chosen) fresh.push(await runStep(s));
  // --only updates those steps in the existing report; the other steps are kept from it (with their own date,
  // load average and command), so a failed step can be rerun alone.
  const results: Result[] = [...fresh];
  const previous = join(outDir, 'latest.json');
  if (values.only !== undefined && existsSync(previous)) {
    try {
      const old = JSON.parse(readFileSync(previous, 'utf8')) as { steps?: (Omit<Result, 'json' | 'tail'> & { result: Json | null })[] };
      for (const st of old.steps ?? []) {
        if (fresh.some((r) => r.name === st.name)) continue;
        results.push({ ...st, json: st.result ?? undefined, tail: KEPT, command: st.command, what: st.what });
      }
      const order = all.map((x) => x.name);
      results.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    } catch (err) {
      log(`could not merge ${previous}: ${(err as Error).message}`);
    }
  }
  const md = markdown(m, values.quick, argv, results);
  const report = {
    machine: m,
    quick: values.quick,
    argv,
    steps: results.map((r) => ({ name: r.name, command: r.command, what: r.what, startedAt: r.startedAt, loadBefore: r.loadBefore, wallMs: r.wallMs, exitCode: r.exitCode, result: r.json ?? null })),
  };
  writeFileSync(join(outDir, 'latest.md'), md);
  writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(md);
  log(`wrote ${relative(REPO_ROOT, join(outDir, 'latest.md'))} and latest.json`);
  return fresh.every((r) => r.exitCode === 0 && r.json !== undefined) ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
