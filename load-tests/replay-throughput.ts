/**
 * Replay throughput (npm run bench:replay): ≥1M generated shop events over 100k customers through the real
 * replay runner, the real topology (buildTopology(resolveCampaigns({}))) and RocksDB state, with triggers and
 * audit written as NDJSON files.
 *
 * Prints events/s, triggers and audits, peak RSS, the RocksDB state size on disk, a cross-check of the triggers
 * against an independent reference model, and where the time goes:
 *  1. decode-only passes over the same file (read + split lines; + JSON.parse; + envelope decode with contract
 *     validation, i.e. exactly what replay() does per line before the engine sees it);
 *  2. a second, CPU-profiled replay whose samples are grouped by source area (src/engine/state, topologies, …).
 * Ends with one machine-readable JSON line on stdout. Progress goes to stderr.
 *
 *   npm run bench:replay -- [--events 1000000] [--customers 100000] [--seed 42] [--skus 20000] [--days 7]
 *                           [--runs 1] [--state-dir DIR] [--temp-state] [--no-profile] [--regenerate] [--keep] [--dist]
 *
 * --dist: the engine (and the decode-only passes) from the compiled dist/ as deployed (`npm run build` first; a stale
 * dist/ is refused); by default from the TypeScript sources through tsx (lib/engine-build.ts says what that costs).
 * --temp-state: the measured runs use a temporary state, as `kairos replay` without --state-dir does (no final
 * commit: the state is removed unread), so no state size is reported.
 */
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import pino from 'pino';
import type { BasketEvent, OrderEvent } from '../schemas/contract.js';
import type { ReplayResult } from '../src/replay/replay.js';
import { formatStats, resolveOptions, type GenerateOptions } from './generate-events.js';
import { AbandonmentOracle, compareTriggers, formatComparison, triggerKey, type Comparison } from './lib/abandonment-oracle.js';
import {
  bump,
  diskUsage,
  fmtBytes,
  fmtInt,
  fmtSecs,
  isoOf,
  maxRssBytes,
  MemorySampler,
  parseCount,
  sortedCounts,
  table,
  isUsageError,
} from './lib/common.js';
import { profileRun, type CategoryTime } from './lib/cpu-profile.js';
import { loadReplayEngine, type ReplayEngine } from './lib/engine-build.js';
import { ensureEvents, type EventsFile } from './lib/events-cache.js';

const HOUR = 3_600_000;
/** After the input, pending abandonment timers fire up to the last event time plus this. */
const UNTIL_AFTER_LAST_EVENT = 24 * HOUR;

const log = (msg: string): void => {
  process.stderr.write(`bench: ${msg}\n`);
};

interface ReplayRun {
  readonly result: ReplayResult;
  readonly wallMs: number;
  readonly triggersPath: string;
  readonly auditPath: string;
  readonly errorsPath: string;
  readonly peakRss: number;
  readonly peakHeapUsed: number;
  readonly rssBefore: number;
}

/** One replay of the file into NDJSON files in `outDir`, state in `stateDir` (which must not exist or be empty). */
async function runReplay(engine: ReplayEngine, input: string, until: number, stateDir: string | undefined, outDir: string, label: string): Promise<ReplayRun> {
  const { buildTopology, resolveCampaigns, NdjsonWriter, LazyNdjsonFile, replay } = engine;
  // Detection only: guards off (the generated stream carries no customer profiles, so every trigger would be
  // suppressed for lack of consent) — what is measured is the detection engine.
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false } }));
  const base = join(outDir, label.replace(/[^A-Za-z0-9]+/g, '-'));
  const triggersPath = `${base}-triggers.ndjson`;
  const auditPath = `${base}-audit.ndjson`;
  const errorsPath = `${base}-errors.ndjson`;
  const triggers = NdjsonWriter.toFile(triggersPath);
  const audit = NdjsonWriter.toFile(auditPath);
  const errors = new LazyNdjsonFile(errorsPath);
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const rssBefore = process.memoryUsage().rss;
  const mem = new MemorySampler();
  const started = performance.now();
  let result: ReplayResult;
  try {
    result = await replay({
      topology,
      input,
      triggers,
      audit,
      errors,
      until,
      ...(stateDir === undefined ? {} : { stateDir }),
      logger,
      onProgress: (p) => {
        mem.sample();
        if (p.phase === 'final-commit') return log(`${label}: writing the final state: ${fmtInt(p.uncommitted)} entries (${fmtBytes(p.cacheBytes)} of cache) left, rss ${fmtBytes(process.memoryUsage().rss)}`);
        log(
          `${label}: ${fmtInt(p.lines)} lines (${((p.fraction ?? 0) * 100).toFixed(0)}%), ${fmtInt(p.lines / (p.elapsedMs / 1000))} lines/s, ` +
            `${fmtInt(p.triggers)} triggers, rss ${fmtBytes(process.memoryUsage().rss)}, state cache ${fmtBytes(p.cacheBytes)} of ${fmtBytes(p.cacheMaxBytes)}` +
            `${p.cacheEvictions > 0 ? ` (${fmtInt(p.cacheEvictions)} spilled)` : ''}, stream time ${isoOf(p.streamTime)}`,
        );
      },
      onError: (e) => log(`${label}: bad line ${e.line}: ${e.errors.map((x) => `${x.path}: ${x.message}`).join('; ')}`),
    });
  } finally {
    await triggers.close();
    await audit.close();
    await errors.close();
    mem.stop();
  }
  return { result, wallMs: performance.now() - started, triggersPath, auditPath, errorsPath, peakRss: mem.peakRss, peakHeapUsed: mem.peakHeapUsed, rssBefore };
}

/** sha256 over files, for the determinism check between runs. */
async function fileHash(...paths: string[]): Promise<string> {
  const h = createHash('sha256');
  for (const path of paths) for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Lines of an output file, for reading back (untimed; the timed decode passes read as replay() does). */
async function* lines(path: string): AsyncGenerator<string> {
  const rl = createInterface({ input: createReadStream(path, { highWaterMark: 1 << 20 }), crlfDelay: Infinity });
  for await (const line of rl) yield line;
}

interface OutputSummary {
  readonly triggersByType: Record<string, number>;
  readonly auditsByDecision: Record<string, number>;
  readonly invalid: number;
  readonly sentKeys: string[];
  readonly suppressedKeys: string[];
}

/** Reads back the outputs: counts, contract validation of every trigger and audit record, keys for the model. */
async function summarizeOutputs(validateValue: ReplayEngine['validateValue'], triggersPath: string, auditPath: string): Promise<OutputSummary> {
  const byType = new Map<string, number>();
  const byDecision = new Map<string, number>();
  let invalid = 0;
  const sentKeys: string[] = [];
  const suppressedKeys: string[] = [];
  const MODELLED: ReadonlySet<string> = new Set(['BASKET_ABANDONED', 'CHECKOUT_ABANDONED']);
  for await (const text of lines(triggersPath)) {
    const v = validateValue('crm.triggers.v1', JSON.parse(text));
    if (!v.ok) {
      invalid++;
      continue;
    }
    bump(byType, v.value.type);
    // The reference model covers the abandonment rules; the other topologies' triggers are counted only.
    if (MODELLED.has(v.value.type)) sentKeys.push(triggerKey({ customerId: v.value.customerId, type: v.value.type, at: v.value.occurredAt, causedByEventId: v.value.causedBy.eventId }));
  }
  for await (const text of lines(auditPath)) {
    const v = validateValue('crm.trigger-audit.v1', JSON.parse(text));
    if (!v.ok) {
      invalid++;
      continue;
    }
    bump(byDecision, `${v.value.decision}/${v.value.reason}`);
    if (v.value.decision === 'SUPPRESSED' && MODELLED.has(v.value.type)) {
      suppressedKeys.push(triggerKey({ customerId: v.value.customerId, type: v.value.type, at: v.value.occurredAt, causedByEventId: v.value.causedBy.eventId }));
    }
  }
  return { triggersByType: sortedCounts(byType), auditsByDecision: sortedCounts(byDecision), invalid, sentKeys, suppressedKeys };
}

interface DecodePhases {
  readonly readMs: number;
  readonly parseMs: number;
  readonly decodeMs: number;
}

/** Decode-only passes: what replay() pays per line before the engine sees a record. */
async function decodePhases(engine: Pick<ReplayEngine, 'decodeEnvelopeLine' | 'lineBatches'>, path: string): Promise<DecodePhases> {
  const { decodeEnvelopeLine, lineBatches } = engine;
  const time = async (label: string, perLine: (text: string, n: number) => void): Promise<number> => {
    const started = performance.now();
    let n = 0;
    // The reader replay() uses (src/replay/lines.ts), so the passes compare like with like.
    for await (const batch of lineBatches(createReadStream(path, { highWaterMark: 1 << 20 }))) for (const text of batch) perLine(text, ++n);
    const ms = performance.now() - started;
    log(`${label}: ${fmtInt(n)} lines in ${fmtSecs(ms)}`);
    return ms;
  };
  let sink = 0;
  const readMs = await time('pass 1/3 read + split lines', (text) => {
    sink += text.length;
  });
  const parseMs = await time('pass 2/3 read + JSON.parse', (text) => {
    if (JSON.parse(text) !== null) sink++;
  });
  let bad = 0;
  const decodeMs = await time('pass 3/3 read + decodeEnvelopeLine (parse + validate)', (text, n) => {
    if (!decodeEnvelopeLine(text, n).ok) bad++;
  });
  if (bad > 0) throw new Error(`decode pass found ${bad} bad lines in a generated file`);
  if (sink < 0) log('unreachable'); // keeps the pass results observable, so nothing is optimised away
  return { readMs, parseMs, decodeMs };
}

/** The reference model over the same file. */
async function runOracle(resolveCampaigns: ReplayEngine['resolveCampaigns'], path: string, until: number): Promise<AbandonmentOracle> {
  const params = resolveCampaigns({}).basketAbandonment?.params;
  if (!params) throw new Error('basket-abandonment is not configured');
  const oracle = new AbandonmentOracle(params);
  for await (const text of lines(path)) {
    // Cheap pre-filter: only basket and order lines matter to the model.
    if (text.startsWith('{"topic":"shop.basket.v1"')) oracle.basket((JSON.parse(text) as { value: BasketEvent }).value);
    else if (text.startsWith('{"topic":"shop.orders.v1"')) oracle.order((JSON.parse(text) as { value: OrderEvent }).value);
  }
  oracle.finish(until);
  return oracle;
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    allowNegative: true,
    options: {
      events: { type: 'string' },
      customers: { type: 'string' },
      seed: { type: 'string' },
      skus: { type: 'string' },
      days: { type: 'string' },
      'state-dir': { type: 'string' },
      runs: { type: 'string' },
      profile: { type: 'boolean', default: true },
      regenerate: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      'temp-state': { type: 'boolean', default: false },
      dist: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const engine = await loadReplayEngine(values.dist);
  const opts = resolveOptions({
    events: parseCount('events', values.events, 1_000_000),
    customers: parseCount('customers', values.customers, 100_000),
    seed: parseCount('seed', values.seed, 42),
    ...(values.skus === undefined ? {} : { skus: parseCount('skus', values.skus, 0) }),
    ...(values.days === undefined ? {} : { days: Number(values.days) }),
  });

  const runs = Math.max(1, parseCount('runs', values.runs, 1));
  const input = await ensureEvents(opts, values.regenerate, log);
  const until = input.stats.lastEventAt + UNTIL_AFTER_LAST_EVENT;
  const stateDir = values['state-dir'] ?? join(tmpdir(), 'kairos-bench-state');
  const outDir = mkdtempSync(join(tmpdir(), 'kairos-bench-out-'));
  // A leftover state dir would make replay() resume on old state: always start empty.
  rmSync(stateDir, { recursive: true, force: true });
  mkdirSync(stateDir, { recursive: true });

  try {
    // 1. The measured replay(s). Memory and state size come from the first run (a fresh process); the time is
    //    the median over the runs; every run must produce byte-identical outputs (replay is deterministic).
    // --temp-state: the measured runs replay as `kairos replay` does without --state-dir (a temporary state,
    // removed without a final commit), so there is no state dir to measure.
    const timedDir = values['temp-state'] ? undefined : stateDir;
    log(`replay of ${input.path} (state ${timedDir === undefined ? 'temporary' : `in ${stateDir}`}, until ${isoOf(until)})`);
    const run = await runReplay(engine, input.path, until, timedDir, outDir, `replay 1/${runs}`);
    const r = run.result;
    if (r.errors > 0) {
      log(`${r.errors} bad lines, see ${run.errorsPath}`);
      return 1;
    }
    // replay() leaves a stateDir it was given in place: measure it now, after the final commit and close.
    const du = timedDir === undefined ? undefined : diskUsage(timedDir);
    const maxRss = maxRssBytes();
    const outputHash = await fileHash(run.triggersPath, run.auditPath);
    const walls = [run.wallMs];
    let identical = true;
    for (let i = 2; i <= runs; i++) {
      rmSync(stateDir, { recursive: true, force: true });
      mkdirSync(stateDir, { recursive: true });
      const again = await runReplay(engine, input.path, until, timedDir, outDir, `replay ${i}/${runs}`);
      walls.push(again.wallMs);
      if ((await fileHash(again.triggersPath, again.auditPath)) !== outputHash) identical = false;
      rmSync(again.triggersPath, { force: true });
      rmSync(again.auditPath, { force: true });
    }
    const medianWallMs = median(walls);

    // 2. Outputs, and the reference model.
    const out = await summarizeOutputs(engine.validateValue, run.triggersPath, run.auditPath);
    log('reference model over the same events');
    const oracle = await runOracle(engine.resolveCampaigns, input.path, until);
    const sentCheck = compareTriggers(oracle.sent, out.sentKeys);
    const suppressedCheck = compareTriggers(oracle.suppressed, out.suppressedKeys);

    // 3. Where the time goes.
    // As many decode passes as replay runs, median per phase: on a shared 2-core machine single passes are noisy.
    const passes: DecodePhases[] = [];
    for (let i = 0; i < runs; i++) passes.push(await decodePhases(engine, input.path));
    const phases: DecodePhases = {
      readMs: median(passes.map((x) => x.readMs)),
      parseMs: median(passes.map((x) => x.parseMs)),
      decodeMs: median(passes.map((x) => x.decodeMs)),
    };
    let profile: { categories: readonly CategoryTime[]; totalMs: number; wallMs: number; topFunctions: readonly { fn: string; ms: number }[] } | undefined;
    if (values.profile) {
      const profDir = `${stateDir}-profile`;
      rmSync(profDir, { recursive: true, force: true });
      log('second replay under the CPU profiler (slower than the measured run)');
      const p = await profileRun(() => runReplay(engine, input.path, until, profDir, outDir, 'profiled replay'));
      rmSync(profDir, { recursive: true, force: true });
      profile = { categories: p.categories, totalMs: p.totalMs, wallMs: p.result.wallMs, topFunctions: p.topFunctions };
    }

    report({ opts, input, run, walls, medianWallMs, identical, du, maxRss, out, sentCheck, suppressedCheck, oracle, phases, profile, stateDir, until, runtime: engine.runtime });
    const ok = out.invalid === 0 && agrees(sentCheck) && agrees(suppressedCheck) && identical;
    return ok ? 0 : 1;
  } finally {
    rmSync(outDir, { recursive: true, force: true });
    if (!values.keep) rmSync(stateDir, { recursive: true, force: true });
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const agrees = (c: Comparison): boolean => c.expected === c.actual && c.matching === c.expected;

interface Report {
  readonly opts: GenerateOptions;
  readonly input: EventsFile;
  readonly run: ReplayRun;
  readonly walls: readonly number[];
  readonly medianWallMs: number;
  readonly identical: boolean;
  /** Undefined with --temp-state (no state dir is left to measure). */
  readonly du: ReturnType<typeof diskUsage> | undefined;
  readonly maxRss: number;
  readonly out: OutputSummary;
  readonly sentCheck: Comparison;
  readonly suppressedCheck: Comparison;
  readonly oracle: AbandonmentOracle;
  readonly phases: DecodePhases;
  readonly profile: { categories: readonly CategoryTime[]; totalMs: number; wallMs: number; topFunctions: readonly { fn: string; ms: number }[] } | undefined;
  readonly stateDir: string;
  readonly until: number;
  readonly runtime: ReplayEngine['runtime'];
}

function report(x: Report): void {
  const { run, phases } = x;
  const r = run.result;
  const wallMs = x.medianWallMs;
  const secs = wallMs / 1000;
  const pct = (ms: number): string => `${((100 * ms) / wallMs).toFixed(0)}%`;
  const engineMs = Math.max(0, wallMs - phases.decodeMs);
  const p = (s: string): void => {
    process.stdout.write(`${s}\n`);
  };
  p('');
  p('== Kairos replay throughput ==');
  p(`engine       ${x.runtime === 'dist' ? 'the compiled dist/ (--dist), as bin/kairos.js runs it' : 'the TypeScript sources through tsx (--dist: the compiled build, as deployed)'}; the decode-only passes from the same build`);
  p(
    `input        ${fmtInt(r.lines)} events (${fmtBytes(x.input.bytes)} NDJSON), ${fmtInt(x.opts.customers)} customers (${fmtInt(x.input.stats.customersSeen)} with events), ` +
      `${fmtInt(x.opts.skus)} skus, seed ${x.opts.seed}; ${isoOf(x.input.stats.firstEventAt)} .. ${isoOf(x.input.stats.lastEventAt)}` +
      `${x.input.generatedMs === undefined ? ' (cached file)' : ` (generated in ${fmtSecs(x.input.generatedMs)})`}`,
  );
  p(`             ${fmtInt(r.processed)} records read by the topology (basket, orders), ${fmtInt(r.skipped)} of topics it does not read, ${r.errors} bad`);
  p(
    `replay       ${fmtSecs(wallMs)} wall${x.walls.length > 1 ? ` (median of ${x.walls.length} runs)` : ` (${fmtSecs(r.elapsedMs)} inside replay())`} → ` +
      `${fmtInt(r.lines / secs)} events/s (${fmtInt(r.processed / secs)} topology records/s)`,
  );
  // R1 of issue 16: the engine's rate as a share of what reading and decoding alone reach on this machine now.
  p(
    `vs decode    decode-only (read, JSON.parse, contract validation) ${fmtInt(r.lines / (phases.decodeMs / 1000))} events/s in the same run → ` +
      `replay ÷ decode-only = ${(phases.decodeMs / wallMs).toFixed(3)}`,
  );
  if (x.walls.length > 1) {
    p(`             runs: ${x.walls.map((w) => `${fmtInt(r.lines / (w / 1000))}`).join(', ')} events/s; outputs ${x.identical ? 'byte-identical across runs' : 'DIFFER between runs'}`);
  }
  p(`triggers     ${fmtInt(r.triggers)}: ${Object.entries(x.out.triggersByType).map(([k, v]) => `${k} ${fmtInt(v)}`).join(', ')}; timers fired ${fmtInt(r.timersFired)}; until ${isoOf(x.until)}`);
  p(`audit        ${fmtInt(r.audits)}: ${Object.entries(x.out.auditsByDecision).map(([k, v]) => `${k} ${fmtInt(v)}`).join(', ')}`);
  p(`contract     ${x.out.invalid === 0 ? 'every trigger and audit record valid' : `${x.out.invalid} INVALID output records`}`);
  p(formatComparison('model (sent)      ', x.sentCheck));
  p(formatComparison('model (suppressed)', x.suppressedCheck));
  p(`memory       peak RSS during replay ${fmtBytes(run.peakRss)} (RSS before ${fmtBytes(run.rssBefore)}; process max RSS ${fmtBytes(x.maxRss)}); peak heap used ${fmtBytes(run.peakHeapUsed)}`);
  p(
    x.du === undefined
      ? 'state        temporary (--temp-state: removed without a final commit, as `kairos replay` without --state-dir does)'
      : `state        ${x.stateDir}: ${fmtBytes(x.du.allocatedBytes)} on disk (du), ${fmtBytes(x.du.apparentBytes)} apparent, ${x.du.files} files; RocksDB approximateSize ${fmtBytes(r.stateBytes ?? 0)}`,
  );
  p('');
  p(`where the time goes (decode-only passes over the same file vs the full replay, wall clock, one thread${x.walls.length > 1 ? `, medians of ${x.walls.length}` : ''}):`);
  p(
    table(
      ['phase', 'time', 'share of replay'],
      [
        ['read + split lines (fs + lineBatches)', fmtSecs(phases.readMs), pct(phases.readMs)],
        ['JSON.parse', fmtSecs(phases.parseMs - phases.readMs), pct(phases.parseMs - phases.readMs)],
        ['contract validation + envelope checks', fmtSecs(phases.decodeMs - phases.parseMs), pct(phases.decodeMs - phases.parseMs)],
        ['engine + state + topology + output (replay − decode)', fmtSecs(engineMs), pct(engineMs)],
        ['full replay', fmtSecs(wallMs), '100%'],
      ],
    ),
  );
  if (x.profile) {
    p('');
    p(`CPU profile of a second replay (${fmtSecs(x.profile.wallMs)} wall under the profiler, ${fmtSecs(x.profile.totalMs)} sampled; self time by source area):`);
    p(table(['area', 'time', 'share'], x.profile.categories.map((c) => [c.category, fmtSecs(c.ms), `${(c.share * 100).toFixed(1)}%`])));
    p('');
    p('heaviest functions (self time):');
    p(table(['function', 'time'], x.profile.topFunctions.map((f) => [f.fn, fmtSecs(f.ms)])));
  }
  p('');
  p('generated stream:');
  p(formatStats(x.input.stats).replace(/^/gm, '  '));
  p('');
  p(
    JSON.stringify({
      bench: 'replay-throughput',
      runtime: x.runtime,
      events: r.lines,
      customers: x.opts.customers,
      customersWithEvents: x.input.stats.customersSeen,
      skus: x.opts.skus,
      seed: x.opts.seed,
      processed: r.processed,
      skipped: r.skipped,
      errors: r.errors,
      runs: x.walls.length,
      elapsedMs: Math.round(wallMs),
      runElapsedMs: x.walls.map((w) => Math.round(w)),
      outputsIdentical: x.identical,
      eventsPerSec: Math.round(r.lines / secs),
      processedPerSec: Math.round(r.processed / secs),
      triggers: r.triggers,
      triggersByType: x.out.triggersByType,
      audits: r.audits,
      auditsByDecision: x.out.auditsByDecision,
      timersFired: r.timersFired,
      modelAgrees: agrees(x.sentCheck) && agrees(x.suppressedCheck),
      peakRssBytes: run.peakRss,
      rssBeforeBytes: run.rssBefore,
      maxRssBytes: x.maxRss,
      peakHeapUsedBytes: run.peakHeapUsed,
      ...(x.du === undefined ? { tempState: true } : { stateDiskBytes: x.du.allocatedBytes, stateApparentBytes: x.du.apparentBytes, stateFiles: x.du.files, stateApproxBytes: r.stateBytes }),
      readMs: Math.round(phases.readMs),
      parseMs: Math.round(phases.parseMs),
      decodeMs: Math.round(phases.decodeMs),
      decodeOnlyPerSec: Math.round(r.lines / (phases.decodeMs / 1000)),
      ratioToDecodeOnly: Number((phases.decodeMs / wallMs).toFixed(4)),
      ...(x.profile ? { profileMs: Object.fromEntries(x.profile.categories.map((c) => [c.category, Math.round(c.ms)])) } : {}),
    }),
  );
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${isUsageError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = isUsageError(err) ? 2 : 1;
  },
);
