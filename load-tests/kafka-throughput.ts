/**
 * Kafka runner throughput and latency (npm run bench:kafka) against librdkafka's mock cluster (Debian's kcat,
 * src/kafka/mock-cluster.ts): the real KafkaRunner, the real topology, RocksDB state, changelog topics, JSON serde.
 *
 *  1. Pre-produce: N generated events (generate-events.ts, seeded) onto their topics, keyed as in the envelope,
 *     JSON values, with one fast producer (sendBatch, acks -1). Prints the produce rate.
 *  2. Catch-up: K runner instances (one group) start on the backlog with the default campaigns (every topology,
 *     guards off as in bench:replay; --campaigns replaces them) and the runner's default punctuation (1 s) and
 *     idle advance (5 s). Measures records/s of the topology's input topics from the moment the instances are
 *     started (and from the first committed offset) until the group's committed offsets (admin.fetchOffsets)
 *     reach the end offsets of its input topics and of its repartition topics (which it writes itself). RSS
 *     and CPU per instance, CPU of the broker. The BASKET/CHECKOUT_ABANDONED triggers are compared one by one
 *     with the reference model (lib/abandonment-oracle.ts); the other trigger types are counted.
 *  3. Latency: the instances are restarted with inactivityGap --gap (2 s), punctuation --punctuate-ms (100)
 *     and idle advance --idle-advance-ms (200); a steady stream of --rate ITEM_ADDED events/s (one per fresh
 *     customer) runs for --seconds. A consumer of crm.triggers.v1 and of the baskets changelog measures
 *       trigger latency  = time the trigger is read − (occurredAt + inactivityGap)   (the trigger's occurredAt)
 *       pipeline latency = time the customer's first changelog record is read − occurredAt (= send time):
 *                          consume, decode, process, changelog + RocksDB commit, read back; no timer involved.
 *     Triggers due while events still flow fire on stream time (the next record on the partition); those due
 *     after the stream ended fire through idle advance + punctuation, reported separately.
 *
 * K = 1 runs the runner in this process (--mode inproc); K > 1 defaults to child processes (`node --import tsx
 * src/cli/bin.ts start`, as test/kafka/group.test.ts does; with --dist `node bin/kairos.js start` from the compiled
 * dist/, as deployed), because runners sharing one event loop cannot use the second core. `--mode child` with K = 1 gives the like-for-like baseline; `--mode inproc` with K > 1 runs
 * the runners in this process (one thread). In-process runners also report their consumer's fetches and
 * batches (kafkajs instrumentation events, through a wrapper around the Kafka client); every instance reports
 * commits and commit time (its Prometheus metrics). `--profile` samples both phases with V8's profiler (inproc).
 * `--partitions-concurrently N` is an experiment: it overrides the runner's kafkajs partitionsConsumedConcurrently
 * (the runner's own default: 4 since issue 16, 1 before) through the same wrapper, to measure it without editing src/.
 *
 * What the mock cluster does differently from Kafka (and how it shapes the figures):
 *  - a Fetch returns at most ONE record batch (one producer request) per partition, so the runner's batch size
 *    is the producer's batch size per partition: --produce-batch for the catch-up, --rate × --tick-ms / 4 for the
 *    steady stream (a real broker returns everything up to 1 MiB per partition, so batches grow with lag);
 *  - a Fetch that finds no data waits the whole maxWaitTimeInMs (100 ms) even if data arrives meanwhile;
 *  - a stopped member is not released at once: a restart of the group waits about a session timeout, so the
 *    runners here use sessionTimeout 10 s (heartbeat 1 s) as the runner tests do.
 *
 * Baseline in the same run (before the catch-up): a bare kafkajs consumer (fresh group, eachBatch, no processing,
 * no commits, kafkajs' default fetch sizes) reads the same input topics, once as is and once JSON.parsing every
 * value; the summary gives Kairos' catch-up records/s per instance ÷ each (issue 16's R4). --no-baseline skips it.
 * --peer "<command>" (with --brokers) also runs a peer stream processor on the same topics and records, after the
 * bare consumers and before Kairos: the command (run by sh, in its own process) is given KAIROS_PEER_BROKERS,
 * KAIROS_PEER_GROUP (its consumer group / application.id, a fresh kairos-peer-* name), KAIROS_PEER_TOPICS
 * (comma-separated), KAIROS_PEER_OUTPUT (a topic created here) and KAIROS_PEER_STATE_DIR, prints a line with
 * RUNNING when it has joined, and is measured as Kairos is: records from then until its group's committed offsets
 * reach the end offsets. load-tests/peers/KafkaStreamsCount.java is Kafka Streams' stateful count for it.
 *
 * --brokers host:port runs against that broker instead of the mock cluster. It must be a TEST broker: the
 * contract's topics, their .dlq topics and every kairos-* topic are deleted first (and the group), and the
 * inputs created with 4 partitions. --broker-pid gives its process (e.g. `cat /path/to/kafka.pid`) for a CPU
 * figure. --guarantee exactly_once (a real broker only: kafkajs' transactions do not run against the mock) runs
 * the instances with Kafka transactions and the idempotent producer; at_least_once (the default) runs them with
 * the idempotent producer off, as every earlier figure did.
 *
 * Environment: KAIROS_BENCH_LOG (level of the in-process runners' and clients' logs on stderr, default warn),
 * KAIROS_BENCH_CHILD_LOGS=<dir> (each child's whole output is written there when it stops),
 * KAIROS_BENCH_MODEL_DIFF=<file> (every abandonment trigger the model and the engine disagree on, as JSON),
 * KAIROS_BENCH_PROFILE_FILE=<file.cpuprofile> (with --profile: the raw V8 profile of the catch-up, from ready),
 * KAIROS_BENCH_LATENCY_FILE=<file.json> (the latency phase's times of every event: sent, trigger due, trigger read,
 * changelog record read).
 *
 * Progress on stderr; a summary and one JSON line on stdout. The cluster, the children and the temporary
 * directories are removed at the end, also on errors and on SIGINT/SIGTERM.
 *
 *   npm run bench:kafka -- [--events 200000] [--customers 20000] [--seed 42] [--instances 1] [--mode inproc|child]
 *                          [--rate 2000] [--seconds 20] [--gap 2s] [--punctuate-ms 100] [--idle-advance-ms 200]
 *                          [--produce-batch 10000] [--tick-ms 20] [--warmup-sec 5] [--timeout-sec 600] [--profile] [--partitions-concurrently N]
 *                          [--max-task-idle-ms N] [--campaigns campaigns.json] [--brokers host:port] [--no-baseline]
 *                          [--commit-interval-ms N (catch-up)] [--output-linger-ms N (both phases)]
 *                          [--guarantee at_least_once|exactly_once] [--broker-pid N]
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Profiler } from 'node:inspector';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
// As in kairos start: Kairos' kafkajs module replacements go in before kafkajs loads (src/kafka/kafkajs-preload.ts)
import '../src/kafka/kafkajs-preload.js';
import type { Admin, Consumer, Kafka, Message, Producer } from 'kafkajs';
import pino from 'pino';
import { Registry } from 'prom-client';
import { type BasketEvent, type OrderEvent, type Trigger } from '../schemas/contract.js';
import { buildTopology } from '../src/app/topology.js';
import { resolveCampaigns, type CampaignsConfigInput } from '../src/config/campaigns.js';
import { toMs } from '../src/config/duration.js';
import { changelogTopic } from '../src/engine/state/changelog.js';
import { createKafka } from '../src/kafka/client.js';
import { startMockCluster } from '../src/kafka/mock-cluster.js';
import { murmur2Partitioner } from '../src/kafka/partitioner.js';
import { kairosStartCommand, startKairos, startProgram } from './lib/child.js';
import { KafkaRunner } from '../src/kafka/runner.js';
import { JsonSerde } from '../src/kafka/serde.js';
import { basketsStore } from '../topologies/basket-abandonment/index.js';
import { generateEvents, newStats, resolveOptions, type GeneratorStats } from './generate-events.js';
import { AbandonmentOracle, compareTriggers, triggerKey, type Comparison } from './lib/abandonment-oracle.js';
import { fmtBytes, fmtInt, fmtSecs, isUsageError, parseCount, REPO_ROOT, sumMetric, table, UsageError } from './lib/common.js';
import { summarize } from './lib/cpu-profile.js';
import { freshTestTopics } from './lib/test-broker.js';

// kafkajs 2 warns once per producer that its default partitioner changed; every producer here and in the
// runner uses the (Java-compatible) default, so the warning is noise. Inherited by the child instances.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const APP = 'kairos';
const GROUP = `kairos-${APP}`;
const BASKET = 'shop.basket.v1';
const ORDERS = 'shop.orders.v1';
/**
 * Guards off, as in bench:replay: the generated stream carries no customer profiles, so with guards every trigger
 * would be suppressed for lack of consent. What is measured is the runner and the detection topologies.
 */
const DEFAULT_CAMPAIGNS: CampaignsConfigInput = { guards: { enabled: false } };
const TRIGGERS = 'crm.triggers.v1';
const BASKETS_CHANGELOG = changelogTopic(APP, basketsStore.name);
/**
 * As in test/kafka/runner.test.ts. The mock cluster does not release a stopped member at once: a restart of the
 * group waits roughly one to two session timeouts (with the runner's 30 s default: ~26-60 s).
 */
const SESSION_TIMEOUT_MS = 10_000;
/**
 * The measuring consumers: the mock cluster answers a Fetch with one whole record batch per partition, and a
 * commit of the runner can put thousands of ~1 KB triggers into one batch; kafkajs (1 MiB per partition by
 * default) then stalls on that partition.
 */
const BIG_FETCH = { maxWaitTimeInMs: 100, maxBytesPerPartition: 64 << 20, maxBytes: 128 << 20 } as const;
const HEARTBEAT_MS = 1000;

const log = (msg: string): void => {
  process.stderr.write(`bench:kafka ${new Date().toISOString().slice(11, 23)} ${msg}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const errText = (err: unknown): string => (err instanceof Error ? (err.stack ?? err.message) : String(err));

// ---------------------------------------------------------------------------------------------------------------
// Options

type Mode = 'inproc' | 'child';

interface Options {
  readonly events: number;
  readonly customers: number;
  readonly seed: number;
  readonly instances: number;
  readonly mode: Mode;
  readonly rate: number;
  readonly seconds: number;
  readonly gap: string;
  readonly gapMs: number;
  readonly punctuateMs: number;
  readonly idleAdvanceMs: number;
  readonly produceBatch: number;
  readonly tickMs: number;
  /** Triggers of events sent in the first this many seconds of the stream are left out of `triggerWarm`. */
  readonly warmupSec: number;
  /** Experiment: kafkajs partitionsConsumedConcurrently for the runner's consumer (inproc only). */
  readonly partitionsConcurrently: number | undefined;
  /** KafkaRunner commitIntervalMs (KAIROS_COMMIT_INTERVAL_MS for children; the runner's default when undefined). */
  readonly commitIntervalMs: number | undefined;
  /** KafkaRunner outputLingerMs in both phases (KAIROS_OUTPUT_LINGER_MS for children; the runner's default when undefined). */
  readonly outputLingerMs: number | undefined;
  /** KafkaRunner maxTaskIdleMs (inproc only; the runner's default when undefined). */
  readonly maxTaskIdleMs: number | undefined;
  /** Campaign config of both phases (--campaigns file; default: every topology, guards off). */
  readonly campaigns: CampaignsConfigInput;
  readonly campaignsSource: string;
  readonly profile: boolean;
  readonly timeoutSec: number;
  /** A broker to run against instead of the mock cluster (its contract and kairos-* topics are deleted first). */
  readonly brokers: readonly string[] | undefined;
  /** `node` arguments of a child instance: `kairos start` from the sources (tsx) or, with --dist, from dist/. */
  readonly childCommand: readonly string[];
  /** Skip the bare-consumer baselines. */
  readonly noBaseline: boolean;
  /**
   * KafkaRunner processingGuarantee in both phases (KAIROS_PROCESSING_GUARANTEE for children). exactly_once needs a
   * broker with transactions (not the mock cluster) and turns the idempotent producer on; at_least_once runs with it
   * off, as every figure before this option did.
   */
  readonly guarantee: Guarantee;
  /** With --brokers: the broker's process id, for its CPU figure (a broker not started here has none otherwise). */
  readonly brokerPid: number | undefined;
  /** With --brokers: a peer stream processor's command (sh -c), measured on the same topics before Kairos. */
  readonly peer: string | undefined;
}

type Guarantee = 'at_least_once' | 'exactly_once';

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      events: { type: 'string' },
      customers: { type: 'string' },
      seed: { type: 'string' },
      instances: { type: 'string' },
      mode: { type: 'string' },
      rate: { type: 'string' },
      seconds: { type: 'string' },
      gap: { type: 'string' },
      'punctuate-ms': { type: 'string' },
      'idle-advance-ms': { type: 'string' },
      'produce-batch': { type: 'string' },
      'tick-ms': { type: 'string' },
      'warmup-sec': { type: 'string' },
      'partitions-concurrently': { type: 'string' },
      'max-task-idle-ms': { type: 'string' },
      'commit-interval-ms': { type: 'string' },
      'output-linger-ms': { type: 'string' },
      guarantee: { type: 'string' },
      'broker-pid': { type: 'string' },
      peer: { type: 'string' },
      campaigns: { type: 'string' },
      'timeout-sec': { type: 'string' },
      brokers: { type: 'string' },
      'no-baseline': { type: 'boolean', default: false },
      dist: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'usage: tsx load-tests/kafka-throughput.ts [--events 200000] [--customers 20000] [--seed 42] [--instances 1] [--mode inproc|child]\n' +
        '         [--rate 2000] [--seconds 20 (0 = no latency phase)] [--gap 2s] [--punctuate-ms 100] [--idle-advance-ms 200]\n' +
        '         [--produce-batch 10000] [--tick-ms 20] [--warmup-sec 5] [--timeout-sec 600] [--profile] [--partitions-concurrently N] [--max-task-idle-ms N] [--campaigns file.json]\n' +
        '         [--brokers host:port,... (a TEST broker: its contract and kairos-* topics are deleted first)] [--no-baseline]\n' +
        '         [--commit-interval-ms N (catch-up)] [--output-linger-ms N (both phases; the runner\'s default 20)] [--dist (children from dist/, as deployed)]\n' +
        '         [--guarantee at_least_once|exactly_once (exactly_once: a real broker; idempotent producer on)]\n' +
        '         [--broker-pid N (with --brokers: the broker\'s process, for its CPU figure)]\n' +
        '         [--peer "<command>" (with --brokers: a peer stream processor on the same topics, e.g. load-tests/peers/KafkaStreamsCount.java)]\n',
    );
    process.exit(0);
  }
  const instances = parseCount('instances', values.instances, 1);
  if (instances < 1 || instances > 4) throw new UsageError('--instances must be 1-4 (the mock cluster gives every topic 4 partitions)');
  const mode = (values.mode ?? (instances === 1 ? 'inproc' : 'child')) as Mode;
  if (mode !== 'inproc' && mode !== 'child') throw new UsageError(`--mode must be inproc or child, got "${String(values.mode)}"`);
  const gap = values.gap ?? '2s';
  let gapMs: number;
  try {
    gapMs = toMs(gap);
  } catch {
    throw new UsageError(`--gap must be a duration such as 2s or 1500ms, got "${gap}"`);
  }
  const profile = values.profile;
  if (profile && mode !== 'inproc') throw new UsageError('--profile needs --mode inproc (the runner must run in this process)');
  const partitionsConcurrently = values['partitions-concurrently'] === undefined ? undefined : Math.max(1, parseCount('partitions-concurrently', values['partitions-concurrently'], 1));
  if (partitionsConcurrently !== undefined && mode !== 'inproc') throw new UsageError('--partitions-concurrently needs --mode inproc (it wraps the runner\'s Kafka client)');
  if (values.dist && mode !== 'child') throw new UsageError('--dist runs the instances from dist/ as children: give --mode child');
  const guarantee = (values.guarantee ?? 'at_least_once') as Guarantee;
  if (guarantee !== 'at_least_once' && guarantee !== 'exactly_once') throw new UsageError(`--guarantee must be at_least_once or exactly_once, got "${String(values.guarantee)}"`);
  if (guarantee === 'exactly_once' && values.brokers === undefined) throw new UsageError('--guarantee exactly_once needs --brokers (the mock cluster has no transactions)');
  if (values.peer !== undefined && values.brokers === undefined) throw new UsageError('--peer needs --brokers (a peer such as Kafka Streams creates its topics with CreateTopics, which the mock cluster does not have)');
  const maxTaskIdleMs = values['max-task-idle-ms'] === undefined ? undefined : parseCount('max-task-idle-ms', values['max-task-idle-ms'], 0);
  if (maxTaskIdleMs !== undefined && mode !== 'inproc') throw new UsageError('--max-task-idle-ms needs --mode inproc (kairos start has no variable for it)');
  let campaigns = DEFAULT_CAMPAIGNS;
  if (values.campaigns !== undefined) {
    try {
      campaigns = JSON.parse(readFileSync(values.campaigns, 'utf8')) as CampaignsConfigInput;
      resolveCampaigns(campaigns, values.campaigns);
    } catch (err) {
      throw new UsageError(`--campaigns ${values.campaigns}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const punctuateMs = parseCount('punctuate-ms', values['punctuate-ms'], 100);
  const idleAdvanceMs = parseCount('idle-advance-ms', values['idle-advance-ms'], 200);
  if (punctuateMs < 10 || idleAdvanceMs < 100) throw new UsageError('--punctuate-ms must be ≥ 10 and --idle-advance-ms ≥ 100 (the limits of kairos start)');
  return {
    events: parseCount('events', values.events, 200_000),
    customers: parseCount('customers', values.customers, 20_000),
    seed: parseCount('seed', values.seed, 42),
    instances,
    mode,
    rate: parseCount('rate', values.rate, 2000),
    seconds: parseCount('seconds', values.seconds, 20),
    gap,
    gapMs,
    punctuateMs,
    idleAdvanceMs,
    produceBatch: Math.max(1, parseCount('produce-batch', values['produce-batch'], 10_000)),
    tickMs: Math.max(1, parseCount('tick-ms', values['tick-ms'], 20)),
    warmupSec: parseCount('warmup-sec', values['warmup-sec'], 5),
    partitionsConcurrently,
    maxTaskIdleMs,
    commitIntervalMs: values['commit-interval-ms'] === undefined ? undefined : parseCount('commit-interval-ms', values['commit-interval-ms'], 500),
    outputLingerMs: values['output-linger-ms'] === undefined ? undefined : parseCount('output-linger-ms', values['output-linger-ms'], 20),
    campaigns,
    campaignsSource: values.campaigns ?? 'default: every topology, guards off',
    profile,
    timeoutSec: parseCount('timeout-sec', values['timeout-sec'], 600),
    brokers: values.brokers === undefined ? undefined : values.brokers.split(',').map((b) => b.trim()).filter(Boolean),
    noBaseline: values['no-baseline'],
    guarantee,
    brokerPid: values['broker-pid'] === undefined ? undefined : parseCount('broker-pid', values['broker-pid'], 0),
    peer: values.peer,
    childCommand: kairosStartCommand(values.dist),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Cleanup on every exit path

class Cleanup {
  readonly #steps: { label: string; fn: () => Promise<void> | void }[] = [];
  /** Synchronous last resorts for process exit (kill children), in case the async steps never ran. */
  readonly #onExit = new Set<() => void>();

  add(label: string, fn: () => Promise<void> | void): void {
    this.#steps.push({ label, fn });
  }

  atExit(fn: () => void): () => void {
    this.#onExit.add(fn);
    return () => this.#onExit.delete(fn);
  }

  exitHook(): void {
    for (const fn of this.#onExit) {
      try {
        fn();
      } catch {
        // best effort
      }
    }
  }

  async run(): Promise<void> {
    while (this.#steps.length > 0) {
      const step = this.#steps.pop() as { label: string; fn: () => Promise<void> | void };
      try {
        await Promise.race([Promise.resolve(step.fn()), sleep(30_000).then(() => Promise.reject(new Error('timed out after 30 s')))]);
      } catch (err) {
        log(`cleanup: ${step.label} failed: ${errText(err)}`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Process figures (Linux /proc)

const CLK_TCK = ((): number => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** User + system CPU time of a process in ms (0 once it is gone). */
function procCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** VmRSS and VmHWM (peak) of a process in bytes. */
function procMem(pid: number): { rss: number; hwm: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+([0-9]+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return { rss: 0, hwm: 0 };
  }
}

const selfCpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return '?';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Runner instances: in this process, or `kairos start` children

interface PhaseConfig {
  readonly label: string;
  readonly campaigns: CampaignsConfigInput;
  /** Runner defaults when undefined (1000 / 5000). */
  readonly punctuateMs: number | undefined;
  readonly idleAdvanceMs: number | undefined;
  /** The runner's default when undefined. */
  readonly commitIntervalMs?: number | undefined;
  readonly outputLingerMs?: number | undefined;
  readonly guarantee: Guarantee;
}

interface Instance {
  readonly label: string;
  /** Process id whose RSS and CPU this instance is measured by (this process for inproc). */
  readonly pid: number;
  assigned(): number[];
  /** The instance's Prometheus metrics (text format). */
  metrics(): Promise<string>;
  /** Batches and fetches of its group consumer so far (inproc only). */
  batches?(): BatchStats;
  stop(): Promise<void>;
}

/** Runner counters from its Prometheus metrics. */
interface RunnerCounters {
  readonly commits: number;
  readonly commitSeconds: number;
  readonly processed: number;
  readonly emitted: number;
  /**
   * V8's garbage collection in the instance (`kairos_nodejs_gc_duration_seconds`, prom-client's default metrics,
   * which `kairos start` serves; 0 for in-process runners): time, pauses, and pauses of 10 ms or more / 100 ms or more.
   */
  readonly gcSeconds: number;
  readonly gcPauses: number;
  readonly gcOver10ms: number;
  readonly gcOver100ms: number;
  /** The longest event-loop delay since the last scrape (`kairos_nodejs_eventloop_lag_max_seconds`); NaN if not served. */
  readonly loopLagMaxSeconds: number;
}

function parseCounters(text: string): RunnerCounters {
  const sum = (name: string): number => sumMetric(text, name);
  const gc = 'kairos_nodejs_gc_duration_seconds';
  const gcPauses = sum(`${gc}_count`);
  return {
    commits: sum('kairos_commit_duration_seconds_count'),
    commitSeconds: sum('kairos_commit_duration_seconds_sum'),
    processed: sum('kairos_records_processed_total'),
    emitted: sum('kairos_records_emitted_total'),
    gcSeconds: sum(`${gc}_sum`),
    gcPauses,
    gcOver10ms: gcPauses - sumMetric(text, `${gc}_bucket`, { le: '0.01' }),
    gcOver100ms: gcPauses - sumMetric(text, `${gc}_bucket`, { le: '0.1' }),
    loopLagMaxSeconds: text.includes('kairos_nodejs_eventloop_lag_max_seconds') ? sum('kairos_nodejs_eventloop_lag_max_seconds') : NaN,
  };
}

const noCounters: RunnerCounters = { commits: 0, commitSeconds: 0, processed: 0, emitted: 0, gcSeconds: 0, gcPauses: 0, gcOver10ms: 0, gcOver100ms: 0, loopLagMaxSeconds: NaN };

async function counters(i: Instance): Promise<RunnerCounters> {
  try {
    return parseCounters(await i.metrics());
  } catch {
    return noCounters;
  }
}

const minus = (a: RunnerCounters, b: RunnerCounters): RunnerCounters => ({
  commits: a.commits - b.commits,
  commitSeconds: a.commitSeconds - b.commitSeconds,
  processed: a.processed - b.processed,
  emitted: a.emitted - b.emitted,
  gcSeconds: a.gcSeconds - b.gcSeconds,
  gcPauses: a.gcPauses - b.gcPauses,
  gcOver10ms: a.gcOver10ms - b.gcOver10ms,
  gcOver100ms: a.gcOver100ms - b.gcOver100ms,
  // A gauge reset by each scrape: the later scrape's maximum is that of the time between the two.
  loopLagMaxSeconds: a.loopLagMaxSeconds,
});

interface InstanceSet {
  readonly mode: Mode;
  readonly instances: readonly Instance[];
  stop(): Promise<void>;
}

/** In-process runners and clients log warnings and errors to stderr (KAIROS_BENCH_LOG=info for more). */
const quietLogger = pino({ level: process.env.KAIROS_BENCH_LOG ?? 'warn' }, pino.destination(2));

function benchKafka(brokers: readonly string[], clientId: string): Kafka {
  return createKafka({ brokers, clientId, logger: quietLogger, requestTimeout: 30_000 });
}

/** What the runner's consumer did (kafkajs instrumentation events; inproc only). */
interface BatchStats {
  batches: number;
  records: number;
  /** eachBatch time: decode, process, commit (outputs, changelog, RocksDB, offsets). */
  batchMs: number;
  maxBatch: number;
  fetches: number;
  fetchMs: number;
}

function batchDelta(a: BatchStats | undefined, b: BatchStats | undefined): BatchStats | undefined {
  if (!a || !b) return a;
  return { batches: a.batches - b.batches, records: a.records - b.records, batchMs: a.batchMs - b.batchMs, maxBatch: a.maxBatch, fetches: a.fetches - b.fetches, fetchMs: a.fetchMs - b.fetchMs };
}

function formatBatches(label: string, b: BatchStats): string {
  const per = (x: number, n: number): string => (n > 0 ? (x / n).toFixed(1) : '-');
  return (
    `${label}: ${fmtInt(b.fetches)} fetches (mean ${per(b.fetchMs, b.fetches)} ms), ${fmtInt(b.batches)} batches of ${per(b.records, b.batches)} records on average ` +
    `(largest ${fmtInt(b.maxBatch)}; the largest seen so far in this runner's life), eachBatch ${per(b.batchMs, b.batches)} ms on average (${fmtSecs(b.batchMs)} in total)`
  );
}

const newBatchStats = (): BatchStats => ({ batches: 0, records: 0, batchMs: 0, maxBatch: 0, fetches: 0, fetchMs: 0 });

/** The Kafka client, with the group consumer the runner creates reporting its batches and fetches into `stats`. */
function instrumented(kafka: Kafka, stats: () => BatchStats, concurrency: number | undefined): Kafka {
  return new Proxy(kafka, {
    get(target, prop, receiver) {
      if (prop !== 'consumer') return Reflect.get(target, prop, receiver) as unknown;
      return (config: Parameters<Kafka['consumer']>[0]): Consumer => {
        const consumer = target.consumer(config);
        if (config.groupId === GROUP) {
          if (concurrency !== undefined) {
            // Experiment (--partitions-concurrently): overrides the runner's partitionsConsumedConcurrently.
            const run = consumer.run.bind(consumer);
            consumer.run = (cfg) => run({ ...cfg, partitionsConsumedConcurrently: concurrency });
          }
          consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
            const st = stats();
            st.batches++;
            st.records += e.payload.batchSize;
            st.batchMs += e.payload.duration;
            st.maxBatch = Math.max(st.maxBatch, e.payload.batchSize);
          });
          consumer.on(consumer.events.FETCH, (e) => {
            const st = stats();
            st.fetches++;
            st.fetchMs += e.payload.duration;
          });
        }
        return consumer;
      };
    },
  });
}

async function startInproc(
  brokers: readonly string[],
  stateRoot: string,
  k: number,
  cfg: PhaseConfig,
  concurrency: number | undefined,
  maxTaskIdleMs: number | undefined,
): Promise<InstanceSet> {
  const topology = buildTopology(resolveCampaigns(cfg.campaigns), APP);
  const registries = Array.from({ length: k }, () => new Registry());
  const batchStats = Array.from({ length: k }, newBatchStats);
  const runners = Array.from(
    { length: k },
    (_, i) =>
      new KafkaRunner({
        registry: registries[i] as Registry,
        topology,
        kafka: instrumented(benchKafka(brokers, `bench-runner-${i}`), () => batchStats[i] as BatchStats, concurrency),
        stateDir: join(stateRoot, `instance-${i}`),
        serde: new JsonSerde(),
        logger: quietLogger,
        idempotent: cfg.guarantee === 'exactly_once',
        processingGuarantee: cfg.guarantee,
        maxWaitTimeInMs: 100,
        sessionTimeout: SESSION_TIMEOUT_MS,
        heartbeatInterval: HEARTBEAT_MS,
        ...(maxTaskIdleMs === undefined ? {} : { maxTaskIdleMs }),
        ...(cfg.punctuateMs === undefined ? {} : { punctuateIntervalMs: cfg.punctuateMs }),
        ...(cfg.idleAdvanceMs === undefined ? {} : { idleAdvanceMs: cfg.idleAdvanceMs }),
        ...(cfg.commitIntervalMs === undefined ? {} : { commitIntervalMs: cfg.commitIntervalMs }),
        ...(cfg.outputLingerMs === undefined ? {} : { outputLingerMs: cfg.outputLingerMs }),
      }),
  );
  const started: KafkaRunner[] = [];
  try {
    await Promise.all(
      runners.map(async (r) => {
        await r.start();
        started.push(r);
      }),
    );
  } catch (err) {
    for (const r of started) await r.stop().catch(() => undefined);
    throw err;
  }
  const instances = runners.map((r, i) => ({
    label: `inproc-${i}`,
    pid: process.pid,
    assigned: () => r.assignedPartitions,
    metrics: () => (registries[i] as Registry).metrics(),
    batches: () => ({ ...(batchStats[i] as BatchStats) }),
    stop: () => r.stop(),
  }));
  return { mode: 'inproc', instances, stop: async () => void (await Promise.all(instances.map((x) => x.stop()))) };
}

interface ChildHandle extends Instance {
  readonly child: ChildProcess;
  readonly output: () => string;
}

async function startChild(env: Record<string, string>, label: string, cleanup: Cleanup, command: readonly string[], readyTimeoutMs = 90_000): Promise<ChildHandle> {
  let assigned: number[] = [];
  let unhook = (): void => undefined;
  const k = await startKairos({
    label,
    env,
    command,
    readyTimeoutMs,
    // KAIROS_BENCH_CHILD_LOGS=<dir>: every child's whole output (pino JSON at info) is written there on exit.
    logDir: process.env.KAIROS_BENCH_CHILD_LOGS,
    onSpawn: (child) => {
      unhook = cleanup.atExit(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      });
    },
    onLine: (line) => {
      // pino JSON lines: the runner logs its assignment on every group join.
      if (!line.includes('"msg":"assignment"')) return;
      try {
        assigned = ((JSON.parse(line) as { partitions?: number[] }).partitions ?? []).slice();
      } catch {
        // not a log line
      }
    },
  });
  const stop = async (): Promise<void> => {
    const code = await k.stop(20_000);
    if (code === 'killed') log(`${label} did not stop within 20 s of SIGTERM; killed it`);
    else if (code !== 0 && code !== null) log(`${label} exited with ${String(code)}: ${k.tail().slice(-1500)}`);
    unhook();
  };
  const metrics = async (): Promise<string> => {
    if (k.url === undefined) return '';
    const res = await fetch(`${k.url}/metrics`);
    return res.text();
  };
  return { label, pid: k.pid, child: k.process, output: k.tail, assigned: () => assigned, metrics, stop };
}

async function startChildren(brokers: readonly string[], stateRoot: string, k: number, cfg: PhaseConfig, cleanup: Cleanup, command: readonly string[]): Promise<InstanceSet> {
  const campaignsFile = join(stateRoot, `campaigns-${cfg.label}.json`);
  writeFileSync(campaignsFile, JSON.stringify(cfg.campaigns));
  const env = (i: number): Record<string, string> => ({
    KAFKA_BROKERS: brokers.join(','),
    KAFKA_IDEMPOTENT: String(cfg.guarantee === 'exactly_once'),
    KAIROS_PROCESSING_GUARANTEE: cfg.guarantee,
    KAFKA_MAX_WAIT_MS: '100',
    KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
    KAFKA_HEARTBEAT_MS: String(HEARTBEAT_MS),
    KAIROS_APPLICATION_ID: APP,
    KAIROS_STATE_DIR: join(stateRoot, `instance-${i}`),
    KAIROS_CAMPAIGNS: campaignsFile,
    KAIROS_HTTP_PORT: '0',
    KAIROS_LOG_LEVEL: 'info',
    ...(cfg.punctuateMs === undefined ? {} : { KAIROS_PUNCTUATE_MS: String(cfg.punctuateMs) }),
    ...(cfg.idleAdvanceMs === undefined ? {} : { KAIROS_IDLE_ADVANCE_MS: String(cfg.idleAdvanceMs) }),
    ...(cfg.commitIntervalMs === undefined ? {} : { KAIROS_COMMIT_INTERVAL_MS: String(cfg.commitIntervalMs) }),
    ...(cfg.outputLingerMs === undefined ? {} : { KAIROS_OUTPUT_LINGER_MS: String(cfg.outputLingerMs) }),
  });
  const results = await Promise.allSettled(Array.from({ length: k }, (_, i) => startChild(env(i), `child-${i}`, cleanup, command)));
  const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    for (const c of ok) await c.stop();
    throw failed.reason;
  }
  return { mode: 'child', instances: ok, stop: async () => void (await Promise.all(ok.map((c) => c.stop()))) };
}

function startInstances(
  mode: Mode,
  brokers: readonly string[],
  stateRoot: string,
  k: number,
  cfg: PhaseConfig,
  cleanup: Cleanup,
  concurrency: number | undefined,
  maxTaskIdleMs: number | undefined,
  childCommand: readonly string[],
): Promise<InstanceSet> {
  return mode === 'inproc' ? startInproc(brokers, stateRoot, k, cfg, concurrency, maxTaskIdleMs) : startChildren(brokers, stateRoot, k, cfg, cleanup, childCommand);
}

/** Samples RSS and CPU of every instance (and of the broker) during a phase. */
class ResourceSampler {
  readonly peakRss = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;
  readonly #cpuStart = new Map<string, number>();
  readonly #cpuEnd = new Map<string, number>();
  readonly #started = performance.now();
  #wallMs = 0;

  constructor(
    private readonly set: InstanceSet,
    private readonly brokerPid: number,
  ) {
    for (const i of set.instances) this.#cpuStart.set(i.label, this.#cpu(i));
    this.#cpuStart.set('broker', procCpuMs(brokerPid));
    this.sample();
    this.#timer = setInterval(() => this.sample(), 250);
    this.#timer.unref();
  }

  #cpu(i: Instance): number {
    return i.pid === process.pid ? selfCpuMs() : procCpuMs(i.pid);
  }

  sample(): void {
    for (const i of this.set.instances) {
      const rss = i.pid === process.pid ? process.memoryUsage().rss : procMem(i.pid).rss;
      if (rss > (this.peakRss.get(i.label) ?? 0)) this.peakRss.set(i.label, rss);
    }
  }

  stop(): void {
    this.sample();
    clearInterval(this.#timer);
    this.#wallMs = performance.now() - this.#started;
    for (const i of this.set.instances) this.#cpuEnd.set(i.label, this.#cpu(i));
    this.#cpuEnd.set('broker', procCpuMs(this.brokerPid));
  }

  /** CPU time over the phase as a share of one core. */
  cpuShare(label: string): number {
    const ms = (this.#cpuEnd.get(label) ?? 0) - (this.#cpuStart.get(label) ?? 0);
    return this.#wallMs > 0 ? ms / this.#wallMs : 0;
  }

  get wallMs(): number {
    return this.#wallMs;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Offsets

type PartitionOffsets = Map<string, Map<number, number>>;

async function endOffsets(admin: Admin, topics: readonly string[]): Promise<PartitionOffsets> {
  const out: PartitionOffsets = new Map();
  for (const t of topics) out.set(t, new Map((await admin.fetchTopicOffsets(t)).map((o) => [o.partition, Number(o.high)])));
  return out;
}

const sumOffsets = (o: PartitionOffsets, topics?: readonly string[]): number =>
  [...o.entries()].filter(([t]) => topics === undefined || topics.includes(t)).reduce((a, [, m]) => a + [...m.values()].reduce((x, y) => x + y, 0), 0);

async function committedOffsets(admin: Admin, topics: readonly string[], groupId = GROUP): Promise<PartitionOffsets> {
  const out: PartitionOffsets = new Map();
  for (const t of await admin.fetchOffsets({ groupId, topics: [...topics] })) {
    out.set(t.topic, new Map(t.partitions.map((p) => [p.partition, Math.max(0, Number(p.offset))])));
  }
  return out;
}

const isChangelog = (t: string): boolean => t.startsWith(`${APP}-`) && t.endsWith('-changelog');

/** The config with basket abandonment's inactivityGap replaced. */
function withGap(c: CampaignsConfigInput, gap: string): CampaignsConfigInput {
  const ba = c.campaigns?.['basket-abandonment'] ?? {};
  return { ...c, campaigns: { ...c.campaigns, 'basket-abandonment': { ...ba, params: { ...ba.params, inactivityGap: gap } } } };
}

/** The topics a runner of this config reads: external sources and internal repartition topics. */
function topicsOf(campaigns: CampaignsConfigInput): { external: string[]; repartition: string[] } {
  const topology = buildTopology(resolveCampaigns(campaigns), APP);
  const sources = [...new Set([...topology.nodes.values()].flatMap((n) => (n.kind === 'source' ? n.topics : [])))].sort();
  const repartition = [...topology.repartitionTopics].sort();
  return { external: sources.filter((t) => !repartition.includes(t)), repartition };
}

/** The broker of the run: librdkafka's mock cluster (a kcat child of this process), or one given with --brokers. */
interface BrokerSet {
  readonly brokers: readonly string[];
  /** Process id of the broker for its CPU figure; 0 when it is not a child of this process (no figure). */
  readonly pid: number;
  readonly mock: boolean;
}

/**
 * A test broker given with --brokers: the contract's topics, their dead-letter topics and the runner's internal
 * topics (kairos-*) are deleted, with the runner's group, so the run starts on empty topics; the inputs are
 * created with 4 partitions (the mock cluster's count).
 */
async function freshBrokerTopics(admin: Admin): Promise<void> {
  const { external } = topicsOf(DEFAULT_CAMPAIGNS);
  await freshTestTopics(admin, {
    also: (t) => t.startsWith(`${APP}-`),
    create: [...new Set([...external, TRIGGERS])].map((topic) => ({ topic, numPartitions: 4 })),
    log,
  });
  await admin.deleteGroups([GROUP]).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------------------------
// Baseline: a bare kafkajs consumer on the same topics, in this process, before the runner

interface Baseline {
  readonly label: string;
  readonly records: number;
  /** From consumer.run() resolved (group joined, as the runner's start()) to the last record. */
  readonly ms: number;
  readonly perSec: number;
  /** From the first batch to the last record. */
  readonly perSecFromFirst: number;
}

/**
 * Reads `records` records of `topics` from the beginning with a fresh group and kafkajs' default fetch sizes
 * (maxWaitTimeInMs 100 as the runner), eachBatch, no offset commits; with `parse`, JSON.parses every value.
 */
async function bareConsumer(kafka: Kafka, topics: readonly string[], records: number, parse: boolean, timeoutMs: number): Promise<Baseline> {
  const label = parse ? 'bare kafkajs consumer + JSON.parse' : 'bare kafkajs consumer';
  const consumer = kafka.consumer({ groupId: `bench-bare-${randomUUID()}`, maxWaitTimeInMs: 100 });
  await consumer.connect();
  let count = 0;
  let tFirst: number | undefined;
  let tLast = 0;
  let sink = 0;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((r) => (done = r));
  try {
    await consumer.subscribe({ topics: [...topics], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: ({ batch }) => {
        tFirst ??= performance.now();
        if (parse) {
          for (const m of batch.messages) if (m.value !== null && JSON.parse(m.value.toString('utf8')) !== null) sink++;
        }
        count += batch.messages.length;
        tLast = performance.now();
        if (count >= records) done();
        return Promise.resolve();
      },
    });
    const t0 = performance.now();
    const timer = setTimeout(done, timeoutMs);
    await finished;
    clearTimeout(timer);
    if (count < records) throw new Error(`${label}: read ${count} of ${records} records in ${timeoutMs} ms`);
    const ms = tLast - t0;
    log(`${label}: ${fmtInt(count)} records in ${fmtSecs(ms)} after run() → ${fmtInt(count / (ms / 1000))} records/s${parse ? ` (${sink} parsed)` : ''}`);
    return { label, records: count, ms, perSec: count / (ms / 1000), perSecFromFirst: count / ((tLast - (tFirst ?? t0)) / 1000) };
  } finally {
    await consumer.disconnect();
  }
}

interface PeerResult {
  readonly command: string;
  readonly records: number;
  /** From spawn to its RUNNING line. */
  readonly startMs: number;
  /** From its RUNNING line until its group's committed offsets reached the end offsets. */
  readonly ms: number;
  readonly perSec: number;
  /** CPU (user + system, all its threads) over `ms` as a share of one core. */
  readonly cpuShare: number;
  readonly peakRss: number;
}

const PEER_OUTPUT = `${APP}-peer-output`;

/**
 * The --peer command on the same topics, measured as the catch-up measures Kairos: records ÷ the time from its
 * RUNNING line (group joined) until its group's committed offsets reach the topics' end offsets. Its topics
 * (kairos-peer-*) go with the next run's fresh topics; its state directory with this run's.
 */
async function peerCatchUp(command: string, brokers: readonly string[], admin: Admin, topics: readonly string[], stateRoot: string, cleanup: Cleanup, timeoutMs: number): Promise<PeerResult> {
  const group = `${APP}-peer-${randomUUID().slice(0, 8)}`;
  await admin.createTopics({ topics: [{ topic: PEER_OUTPUT, numPartitions: 4 }], waitForLeaders: true });
  const ends = await endOffsets(admin, topics);
  const records = sumOffsets(ends);
  log(`peer: ${command} as group ${group} on ${fmtInt(records)} records of ${topics.join(', ')}`);
  const t0 = performance.now();
  // exec: the peer is the shell's process itself, so its pid gives its CPU and memory.
  let unhook = (): void => undefined;
  const child = await startProgram({
    label: 'peer',
    file: 'sh',
    args: ['-c', `exec ${command}`],
    env: {
      KAIROS_PEER_BROKERS: brokers.join(','),
      KAIROS_PEER_GROUP: group,
      KAIROS_PEER_TOPICS: topics.join(','),
      KAIROS_PEER_OUTPUT: PEER_OUTPUT,
      KAIROS_PEER_STATE_DIR: join(stateRoot, 'peer'),
    },
    ready: /\bRUNNING\b/,
    readyOn: 'stdout',
    readyTimeoutMs: 120_000,
    onSpawn: (p) => {
      unhook = cleanup.atExit(() => {
        if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      });
    },
  }).catch(async (err: unknown) => {
    unhook();
    await admin.deleteGroups([group]).catch(() => undefined);
    throw err;
  });
  try {
    const tReady = performance.now();
    const cpu0 = procCpuMs(child.pid);
    let peakRss = 0;
    let lastLog = tReady;
    for (;;) {
      peakRss = Math.max(peakRss, procMem(child.pid).rss);
      const committed = await committedOffsets(admin, topics, group).catch(() => new Map() as PartitionOffsets);
      const now = performance.now();
      const done = [...ends].every(([t, parts]) => [...parts].every(([p, end]) => (committed.get(t)?.get(p) ?? 0) >= end));
      if (done) {
        const ms = now - tReady;
        const cpuShare = (procCpuMs(child.pid) - cpu0) / ms;
        log(`peer: ${fmtInt(records)} records in ${fmtSecs(ms)} after RUNNING → ${fmtInt(records / (ms / 1000))} records/s, CPU ${(100 * cpuShare).toFixed(0)}% of one core`);
        return { command, records, startMs: tReady - t0, ms, perSec: records / (ms / 1000), cpuShare, peakRss };
      }
      if (now - lastLog > 2000) {
        lastLog = now;
        log(`peer: committed ${fmtInt(sumOffsets(committed))} / ${fmtInt(records)}`);
      }
      if (!child.running()) throw new Error(`peer exited (${String(child.process.exitCode ?? child.process.signalCode)}) before committing every record: ${child.tail().slice(-1500)}`);
      if (now - tReady > timeoutMs) throw new Error(`peer did not commit every record within ${timeoutMs} ms (committed ${sumOffsets(committed)} of ${records})`);
      await sleep(100);
    }
  } finally {
    if ((await child.stop(30_000)) === 'killed') log('peer did not stop within 30 s of SIGTERM; killed it');
    unhook();
    await admin.deleteGroups([group]).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Phase 1: pre-produce

interface Produced {
  readonly byTopic: Record<string, number>;
  readonly genMs: number;
  readonly produceMs: number;
  readonly bytes: number;
  readonly stats: GeneratorStats;
  readonly oracle: AbandonmentOracle;
  /** Per topic, the latest event time produced. */
  readonly lastEventAt: ReadonlyMap<string, number>;
}

async function preProduce(kafka: Kafka, o: Options): Promise<Produced> {
  const params = resolveCampaigns(o.campaigns).basketAbandonment?.params;
  if (!params) throw new Error('basket-abandonment is not configured');
  const oracle = new AbandonmentOracle(params);
  const stats = newStats();
  log(`generating ${fmtInt(o.events)} events over ${fmtInt(o.customers)} customers (seed ${o.seed})`);
  const genStart = performance.now();
  const messages: { topic: string; key: string; value: string }[] = [];
  const lastEventAt = new Map<string, number>();
  let bytes = 0;
  for (const line of generateEvents(resolveOptions({ events: o.events, customers: o.customers, seed: o.seed }), stats)) {
    const env = JSON.parse(line) as { topic: string; key: string; value: { occurredAt: number } };
    // The value's JSON text as generated (the envelope's last field), not re-serialised.
    const value = line.slice(line.indexOf('"value":') + 8, -1);
    messages.push({ topic: env.topic, key: env.key, value });
    bytes += value.length + env.key.length;
    if (env.topic === BASKET) oracle.basket(env.value as unknown as BasketEvent);
    else if (env.topic === ORDERS) oracle.order(env.value as unknown as OrderEvent);
    const at = env.value.occurredAt;
    if (typeof at === 'number' && at > (lastEventAt.get(env.topic) ?? -Infinity)) lastEventAt.set(env.topic, at);
  }
  const genMs = performance.now() - genStart;
  log(`generated in ${fmtSecs(genMs)}; producing in batches of ${fmtInt(o.produceBatch)} (sendBatch, acks -1)`);

  const producer = kafka.producer({ allowAutoTopicCreation: true, idempotent: false, createPartitioner: murmur2Partitioner });
  await producer.connect();
  const byTopic: Record<string, number> = {};
  let produceMs: number;
  try {
    // Topic creation (auto, 4 partitions) outside the timed part: one record per topic would skew nothing,
    // but the metadata round trips of five new topics would.
    const topics = [...new Set(messages.map((m) => m.topic))];
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.fetchTopicMetadata({ topics });
    } catch {
      // auto-created on the first send anyway
    } finally {
      await admin.disconnect();
    }
    const started = performance.now();
    let lastLog = started;
    for (let i = 0; i < messages.length; i += o.produceBatch) {
      const grouped = new Map<string, Message[]>();
      for (const m of messages.slice(i, i + o.produceBatch)) {
        let list = grouped.get(m.topic);
        if (!list) grouped.set(m.topic, (list = []));
        list.push({ key: m.key, value: m.value });
        byTopic[m.topic] = (byTopic[m.topic] ?? 0) + 1;
      }
      await producer.sendBatch({ acks: -1, topicMessages: [...grouped].map(([topic, msgs]) => ({ topic, messages: msgs })) });
      const now = performance.now();
      if (now - lastLog > 2000) {
        lastLog = now;
        const done = Math.min(messages.length, i + o.produceBatch);
        log(`produced ${fmtInt(done)} / ${fmtInt(messages.length)} (${fmtInt(done / ((now - started) / 1000))} records/s)`);
      }
    }
    produceMs = performance.now() - started;
  } finally {
    await producer.disconnect();
  }
  log(`produced ${fmtInt(messages.length)} records in ${fmtSecs(produceMs)} → ${fmtInt(messages.length / (produceMs / 1000))} records/s`);
  return { byTopic, genMs, produceMs, bytes, stats, oracle, lastEventAt };
}

// ---------------------------------------------------------------------------------------------------------------
// Phase 2: catch-up

interface CatchUp {
  /** Records of the external source topics. */
  readonly records: number;
  readonly external: readonly string[];
  readonly repartition: readonly string[];
  /** Records the runner wrote to (and read back from) its repartition topics. */
  readonly repartitionRecords: number;
  readonly startToReadyMs: number;
  readonly startToFirstMs: number;
  readonly startToDoneMs: number;
  /** records / (done − ready) */
  readonly ratePerSec: number;
  readonly rateFromFirstPerSec: number;
  readonly perInstance: {
    label: string;
    partitions: number[];
    records: number;
    doneMs: number;
    ratePerSec: number;
    peakRss: number;
    cpuShare: number;
    counters: RunnerCounters;
    batches: BatchStats | undefined;
  }[];
  readonly brokerCpuShare: number;
  readonly triggersProduced: number;
  /** Records the runner wrote to its changelog topics (stores and positions) during the catch-up. */
  readonly changelogRecords: number;
  readonly stopMs: number;
  readonly profile: ProfileSummary | undefined;
}

async function catchUp(
  o: Options,
  brokers: readonly string[],
  admin: Admin,
  stateRoot: string,
  cluster: BrokerSet,
  cleanup: Cleanup,
): Promise<CatchUp> {
  const cfg: PhaseConfig = { label: 'catch-up', campaigns: o.campaigns, punctuateMs: undefined, idleAdvanceMs: undefined, commitIntervalMs: o.commitIntervalMs, outputLingerMs: o.outputLingerMs, guarantee: o.guarantee };
  // What the runner reads: the topology's external sources, and its internal repartition topics (written and
  // read back by the runner itself, so their end offsets move while it catches up).
  const { external, repartition } = topicsOf(cfg.campaigns);
  const ends = await endOffsets(admin, external);
  const records = sumOffsets(ends);
  const triggersBefore = sumOffsets(await endOffsets(admin, [TRIGGERS]).catch(() => new Map() as PartitionOffsets));
  log(`catch-up: ${fmtInt(records)} records of ${external.join(', ')}${repartition.length > 0 ? ` (+ repartition topics ${repartition.join(', ')})` : ''}, ${o.instances} instance(s), mode ${o.mode}`);
  const changelogsBefore = sumOffsets(await endOffsets(admin, (await admin.listTopics()).filter(isChangelog)));
  const t0 = performance.now();
  const set = await startInstances(o.mode, brokers, stateRoot, o.instances, cfg, cleanup, o.partitionsConcurrently, o.maxTaskIdleMs, o.childCommand);
  const running = set;
  cleanup.add('stop catch-up instances', () => running.stop());
  // Profiled from ready (group joined, tasks opening) to caught up: the start-up is not what is measured.
  const profiler = o.profile ? await PhaseProfiler.start() : undefined;
  const tReady = performance.now();
  const sampler = new ResourceSampler(set, cluster.pid);
  log(`instances started in ${fmtSecs(tReady - t0)}; waiting for the committed offsets to reach the end offsets`);
  let tFirst: number | undefined;
  const partDone = new Map<number, number>();
  let lastLog = performance.now();
  let lastCommitted = 0;
  const deadline = t0 + o.timeoutSec * 1000;
  let repEnds: PartitionOffsets = new Map();
  for (;;) {
    let committed: PartitionOffsets;
    try {
      repEnds = repartition.length > 0 ? await endOffsets(admin, repartition) : repEnds;
      committed = await committedOffsets(admin, [...external, ...repartition]);
    } catch (err) {
      // A real broker answers NOT_LEADER for topics the runner has just created, until their leaders are known.
      log(`catch-up: offsets not available yet (${(err as Error).message}); retrying`);
      if (performance.now() > deadline) throw err;
      await sleep(200);
      continue;
    }
    const now = performance.now();
    const total = sumOffsets(committed, external);
    if (tFirst === undefined && total > 0) tFirst = now;
    const want = (t: string, p: number): number => (ends.get(t) ?? repEnds.get(t))?.get(p) ?? 0;
    const topics = [...external, ...repartition];
    const partitions = new Set(topics.flatMap((t) => [...((ends.get(t) ?? repEnds.get(t))?.keys() ?? [])]));
    for (const p of partitions) {
      if (!partDone.has(p) && topics.every((t) => (committed.get(t)?.get(p) ?? 0) >= want(t, p))) partDone.set(p, now);
    }
    const allDone = [...partitions].every((p) => topics.every((t) => (committed.get(t)?.get(p) ?? 0) >= want(t, p)));
    if (allDone) break;
    if (now - lastLog > 2000) {
      const rate = (total - lastCommitted) / ((now - lastLog) / 1000);
      log(
        `catch-up: committed ${fmtInt(total)} / ${fmtInt(records)} (${((100 * total) / Math.max(1, records)).toFixed(0)}%), ${fmtInt(rate)} records/s now` +
          `${repartition.length > 0 ? `; repartition committed ${fmtInt(sumOffsets(committed, repartition))} / ${fmtInt(sumOffsets(repEnds))}` : ''}, ` +
          `assigned ${set.instances.map((i) => `${i.label}=[${i.assigned().join(',')}]`).join(' ')}, load ${loadAverage()}`,
      );
      lastLog = now;
      lastCommitted = total;
    }
    if (now > deadline) throw new Error(`catch-up did not finish within ${o.timeoutSec} s (committed ${total} of ${records})`);
    await sleep(100);
  }
  const tDone = performance.now();
  sampler.stop();
  const profile = await profiler?.stop();
  const assigned = await Promise.all(set.instances.map(async (i) => ({ label: i.label, partitions: i.assigned(), counters: await counters(i), batches: i.batches?.() })));
  log(`caught up in ${fmtSecs(tDone - tReady)} after start; stopping the instances`);
  const tStop = performance.now();
  await set.stop();
  const stopMs = performance.now() - tStop;
  const triggersProduced = sumOffsets(await endOffsets(admin, [TRIGGERS])) - triggersBefore;
  const changelogEnds = await endOffsets(admin, (await admin.listTopics()).filter(isChangelog));
  const changelogRecords = sumOffsets(changelogEnds) - changelogsBefore;
  log(`changelog records by topic (end offsets): ${[...changelogEnds].map(([t, m]) => [t, [...m.values()].reduce((a, b) => a + b, 0)] as const).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]).map(([t, n]) => `${t} ${fmtInt(n)}`).join(', ')}`);
  const repartitionRecords = sumOffsets(repEnds);
  const windowMs = tDone - tReady;
  const perInstance = assigned.map((a) => {
    const recs = a.partitions.reduce((s, p) => s + external.reduce((x, t) => x + (ends.get(t)?.get(p) ?? 0), 0), 0);
    const doneMs = Math.max(0, ...a.partitions.map((p) => (partDone.get(p) ?? tDone) - tReady));
    return {
      label: a.label,
      partitions: a.partitions,
      records: recs,
      doneMs,
      ratePerSec: doneMs > 0 ? recs / (doneMs / 1000) : 0,
      peakRss: sampler.peakRss.get(a.label) ?? 0,
      cpuShare: sampler.cpuShare(a.label),
      counters: a.counters,
      batches: a.batches,
    };
  });
  return {
    records,
    external,
    repartition,
    repartitionRecords,
    startToReadyMs: tReady - t0,
    startToFirstMs: (tFirst ?? tDone) - t0,
    startToDoneMs: tDone - t0,
    ratePerSec: records / (windowMs / 1000),
    rateFromFirstPerSec: records / ((tDone - (tFirst ?? tReady)) / 1000),
    perInstance,
    brokerCpuShare: sampler.cpuShare('broker'),
    triggersProduced,
    changelogRecords,
    stopMs,
    profile,
  };
}

/**
 * Reads `topics` from the beginning while the runner writes them, so every record is seen before the broker
 * can drop it: librdkafka's mock cluster keeps at most 5 MiB (or 100,000 message sets) per partition and
 * deletes the oldest beyond that (rdkafka_mock.c, `max_size`), which a catch-up of 200k events exceeds on the
 * trigger topic. `until(ends)` resolves once every partition was read up to those end offsets.
 */
interface TopicReader {
  readonly values: Buffer[];
  until(ends: PartitionOffsets, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

async function startReader(kafka: Kafka, topics: readonly string[]): Promise<TopicReader> {
  const values: Buffer[] = [];
  // Per topic-partition: the next offset to read (offset of the last record seen + 1).
  const next = new Map<string, number>();
  let waiter: (() => void) | undefined;
  const consumer = kafka.consumer({ groupId: `bench-read-${randomUUID()}`, ...BIG_FETCH });
  await consumer.connect();
  await consumer.subscribe({ topics: [...topics], fromBeginning: true });
  // Transaction markers (exactly-once) are not handed on but count towards the end offsets: every batch, one of
  // only markers too, says how far the partition was read.
  consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
    const key = `${e.payload.topic}\u0000${e.payload.partition}`;
    const to = Number(e.payload.lastOffset) + 1;
    if (to > (next.get(key) ?? 0)) next.set(key, to);
    waiter?.();
  });
  let failed: unknown;
  await consumer.run({
    eachBatch: ({ batch }) => {
      const key = `${batch.topic}\u0000${batch.partition}`;
      for (const m of batch.messages) {
        if (Number(m.offset) < (next.get(key) ?? 0)) continue; // re-delivered after a rebalance
        if (m.value) values.push(m.value);
        next.set(key, Number(m.offset) + 1);
      }
      waiter?.();
      return Promise.resolve();
    },
  }).catch((err: unknown) => {
    failed = err;
  });
  const short = (ends: PartitionOffsets): string[] =>
    [...ends].flatMap(([t, parts]) => [...parts].filter(([p, end]) => (next.get(`${t}\u0000${p}`) ?? 0) < end).map(([p]) => `${t}[${p}]`));
  return {
    values,
    async until(ends, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (short(ends).length > 0) {
        if (failed !== undefined) throw failed as Error;
        if (Date.now() > deadline) throw new Error(`read ${values.length} records of ${topics.join(', ')}; short of the end: ${short(ends).join(', ')}`);
        await new Promise<void>((r) => {
          waiter = r;
          setTimeout(r, 100);
        });
      }
    },
    stop: () => consumer.disconnect(),
  };
}

/** Records the broker dropped from the start of a partition (log start offset > 0), per topic. */
async function trimmedRecords(admin: Admin, topics: readonly string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const t of topics) {
    const n = (await admin.fetchTopicOffsets(t).catch(() => [])).reduce((a, o) => a + Number(o.low), 0);
    if (n > 0) out.set(t, n);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Phase 3: latency

interface Dist {
  readonly n: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

function dist(xs: number[]): Dist {
  if (xs.length === 0) return { n: 0, p50: NaN, p95: NaN, p99: NaN, max: NaN, mean: NaN };
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] as number;
  return { n: s.length, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: s[s.length - 1] as number, mean: s.reduce((a, b) => a + b, 0) / s.length };
}

interface Latency {
  readonly restartMs: number;
  readonly flushedAtRestart: number;
  readonly sent: number;
  readonly sendSeconds: number;
  readonly achievedRate: number;
  readonly sendAck: Dist;
  readonly pipeline: Dist;
  readonly triggerSteady: Dist;
  readonly triggerTail: Dist;
  /** Of triggerSteady: events sent after the first warmupSec of the stream. */
  readonly triggerWarm: Dist;
  readonly triggerAll: Dist;
  /** triggerSteady's p99 for each second of due time since the first send (null: none due that second). */
  readonly steadyP99BySecond: readonly (number | null)[];
  readonly triggers: number;
  readonly duplicates: number;
  readonly missing: number;
  readonly perInstance: { label: string; partitions: number[]; peakRss: number; cpuShare: number; counters: RunnerCounters; batches: BatchStats | undefined }[];
  readonly brokerCpuShare: number;
  readonly maxLag: number;
  readonly measuredSeconds: number;
  readonly profile: ProfileSummary | undefined;
}

async function latencyPhase(o: Options, brokers: readonly string[], kafka: Kafka, admin: Admin, stateRoot: string, cluster: BrokerSet, cleanup: Cleanup): Promise<Latency> {
  const cfg: PhaseConfig = {
    label: 'latency',
    guarantee: o.guarantee,
    campaigns: withGap(o.campaigns, o.gap),
    punctuateMs: o.punctuateMs,
    idleAdvanceMs: o.idleAdvanceMs,
    outputLingerMs: o.outputLingerMs,
  };
  const triggersBefore = sumOffsets(await endOffsets(admin, [TRIGGERS]));
  log(`latency: restarting ${o.instances} instance(s) with inactivityGap ${o.gap}, punctuation ${o.punctuateMs} ms, idle advance ${o.idleAdvanceMs} ms`);
  const t0 = performance.now();
  const set = await startInstances(o.mode, brokers, stateRoot, o.instances, cfg, cleanup, o.partitionsConcurrently, o.maxTaskIdleMs, o.childCommand);
  cleanup.add('stop latency instances', () => set.stop());
  const restartMs = performance.now() - t0;
  // Settle: every assigned task open, offsets at the end, and the trigger topic quiet for 2 s (a restarted task
  // has seen no record yet, so its first punctuation moves stream time to the wall clock and fires every
  // pending timer of the backlog: counted here, kept out of the figures).
  let quietSince = performance.now();
  let lastTriggers = -1;
  const settleDeadline = performance.now() + 120_000;
  for (;;) {
    const t = sumOffsets(await endOffsets(admin, [TRIGGERS]));
    if (t !== lastTriggers) {
      lastTriggers = t;
      quietSince = performance.now();
    }
    const assigned = new Set(set.instances.flatMap((i) => i.assigned()));
    if (assigned.size === 4 && performance.now() - quietSince > 2000) break;
    if (performance.now() > settleDeadline) throw new Error(`latency phase: instances did not settle (assigned ${[...assigned].join(',')})`);
    await sleep(200);
  }
  const flushedAtRestart = lastTriggers - triggersBefore;
  log(`latency: instances ready in ${fmtSecs(restartMs)}; ${fmtInt(flushedAtRestart)} backlog timers fired at restart (stream time jumped to the wall clock)`);

  // The measuring consumer, positioned at the current ends (fresh customers are recognised by prefix anyway).
  const prefix = `lat${Date.now().toString(36)}x`;
  const total = o.rate * o.seconds;
  const sentAt = new Float64Array(total).fill(NaN);
  const pipeline: number[] = [];
  const seenChangelog = new Uint8Array(total);
  const changelogReadAt = new Float64Array(total).fill(NaN);
  const triggerAt = new Float64Array(total).fill(NaN);
  const triggerReadAt = new Float64Array(total).fill(NaN);
  const triggerLat: number[] = [];
  let triggers = 0;
  let duplicates = 0;
  const seekTo = await endOffsets(admin, [TRIGGERS, BASKETS_CHANGELOG]);
  const consumer: Consumer = kafka.consumer({ groupId: `bench-latency-${randomUUID()}`, ...BIG_FETCH });
  await consumer.connect();
  cleanup.add('disconnect latency consumer', () => consumer.disconnect());
  await consumer.subscribe({ topics: [TRIGGERS, BASKETS_CHANGELOG], fromBeginning: true });
  const joined = new Promise<void>((resolve) => {
    consumer.on(consumer.events.GROUP_JOIN, () => {
      for (const [topic, parts] of seekTo) for (const [partition, offset] of parts) consumer.seek({ topic, partition, offset: String(offset) });
      resolve();
    });
  });
  const indexOf = (id: string): number => (id.startsWith(prefix) ? Number(id.slice(prefix.length)) : -1);
  void consumer
    .run({
      eachBatch: ({ batch }) => {
        const readAt = Date.now();
        if (batch.topic === BASKETS_CHANGELOG) {
          for (const m of batch.messages) {
            const i = m.key ? indexOf(m.key.toString('utf8')) : -1;
            if (i < 0 || i >= total || seenChangelog[i] === 1) continue;
            seenChangelog[i] = 1;
            const s = sentAt[i] as number;
            if (!Number.isNaN(s)) pipeline.push(readAt - s);
            changelogReadAt[i] = readAt;
          }
        } else {
          for (const m of batch.messages) {
            if (!m.value) continue;
            const t = JSON.parse(m.value.toString('utf8')) as Trigger;
            const i = indexOf(t.customerId);
            if (i < 0 || i >= total || t.type !== 'BASKET_ABANDONED') continue;
            if (!Number.isNaN(triggerAt[i] as number)) {
              duplicates++;
              continue;
            }
            triggers++;
            triggerAt[i] = t.occurredAt;
            triggerReadAt[i] = readAt;
            triggerLat.push(readAt - t.occurredAt);
          }
        }
        return Promise.resolve();
      },
    })
    .catch((err: unknown) => log(`latency consumer failed: ${errText(err)}`));
  await Promise.race([joined, sleep(30_000).then(() => Promise.reject(new Error('latency consumer did not join within 30 s')))]);
  await sleep(500);

  // The steady stream: every tick sends what the schedule says is due by now.
  const producer: Producer = kafka.producer({ allowAutoTopicCreation: true, idempotent: false, createPartitioner: murmur2Partitioner });
  await producer.connect();
  cleanup.add('disconnect latency producer', () => producer.disconnect());
  const sampler = new ResourceSampler(set, cluster.pid);
  // The runner's own lag (end offsets − committed offsets of shop.basket.v1), to tell a runner falling behind
  // from a slow measuring consumer.
  let maxLag = 0;
  const lagTopics = [BASKET, ...topicsOf(cfg.campaigns).repartition];
  const lagNow = async (): Promise<number> => {
    try {
      const ends = await endOffsets(admin, lagTopics);
      const committed = await committedOffsets(admin, lagTopics);
      let lag = 0;
      for (const [t, parts] of ends) for (const [p, high] of parts) lag += Math.max(0, high - (committed.get(t)?.get(p) ?? 0));
      return lag;
    } catch {
      return 0;
    }
  };
  const profiler = o.profile ? await PhaseProfiler.start() : undefined;
  const countersBefore = await Promise.all(set.instances.map(counters));
  const batchesBefore = set.instances.map((i) => i.batches?.());
  const acks: number[] = [];
  let sent = 0;
  const tick = o.tickMs;
  log(`latency: sending ${fmtInt(o.rate)} ITEM_ADDED/s of fresh customers for ${o.seconds} s`);
  const start = performance.now();
  let lastLog = start;
  let lastSentAt = -Infinity;
  const firstSentAt = Date.now();
  while (sent < total) {
    const elapsed = performance.now() - start;
    const due = Math.min(total, Math.floor((o.rate * elapsed) / 1000));
    if (due > sent) {
      const now = Date.now();
      const messages: Message[] = [];
      for (; sent < due; sent++) {
        const id = `${prefix}${sent}`;
        const e: BasketEvent = {
          eventId: `e-${id}`,
          customerId: id,
          occurredAt: now,
          type: 'ITEM_ADDED',
          sku: `sku-${sent % 997}`,
          productId: `p-${sent % 997}`,
          quantity: 1,
          unitPrice: { amount: 1999, currency: 'EUR' },
        };
        sentAt[sent] = now;
        messages.push({ key: id, value: JSON.stringify(e) });
      }
      lastSentAt = now;
      const before = performance.now();
      await producer.send({ topic: BASKET, acks: -1, messages });
      acks.push(performance.now() - before);
    }
    if (performance.now() - lastLog > 1000) {
      lastLog = performance.now();
      void lagNow().then((lag) => {
        maxLag = Math.max(maxLag, lag);
        log(`latency: sent ${fmtInt(sent)} / ${fmtInt(total)}, runner lag ${fmtInt(lag)} records, changelog seen ${fmtInt(pipeline.length)}, triggers ${fmtInt(triggers)}`);
      });
    }
    const next = start + (Math.floor((performance.now() - start) / tick) + 1) * tick;
    await sleep(Math.max(0, next - performance.now()));
  }
  const sendSeconds = (performance.now() - start) / 1000;
  log(`latency: sent ${fmtInt(sent)} in ${sendSeconds.toFixed(2)} s; waiting for their triggers`);
  const waitDeadline = performance.now() + o.gapMs + 60_000;
  while ((triggers < total || pipeline.length < total) && performance.now() < waitDeadline) {
    await sleep(200);
    if (performance.now() - lastLog > 2000) {
      lastLog = performance.now();
      log(`latency: triggers ${fmtInt(triggers)} / ${fmtInt(total)}, changelog seen ${fmtInt(pipeline.length)}`);
    }
  }
  sampler.stop();
  const profile = await profiler?.stop();
  const countersAfter = await Promise.all(set.instances.map(counters));
  const perInstance = set.instances.map((i, n) => ({
    label: i.label,
    partitions: i.assigned(),
    peakRss: sampler.peakRss.get(i.label) ?? 0,
    cpuShare: sampler.cpuShare(i.label),
    counters: minus(countersAfter[n] ?? noCounters, countersBefore[n] ?? noCounters),
    batches: batchDelta(i.batches?.(), batchesBefore[n]),
  }));
  // Steady: due while events were still being sent (fired on stream time by later records on the partition);
  // tail: due after the last event (only idle advance + punctuation can fire them).
  // Warm: the steady ones of events sent after the first --warmup-sec of the stream. The instance was restarted just
  // before it (fresh process, cold caches): this part tells its first seconds from the rest.
  const steady: number[] = [];
  const warm: number[] = [];
  const tail: number[] = [];
  const warmFrom = firstSentAt + o.warmupSec * 1000;
  for (let i = 0; i < total; i++) {
    const due = triggerAt[i] as number;
    if (Number.isNaN(due)) continue;
    const latency = (triggerReadAt[i] as number) - due;
    (due <= lastSentAt ? steady : tail).push(latency);
    if (due <= lastSentAt && (sentAt[i] as number) >= warmFrom) warm.push(latency);
  }
  // p99 of each second of due time (steady triggers): whether the tail is spread evenly or comes in episodes.
  const bySecond: number[][] = [];
  for (let i = 0; i < total; i++) {
    const due = triggerAt[i] as number;
    if (Number.isNaN(due) || due > lastSentAt) continue;
    const second = Math.floor((due - firstSentAt) / 1000);
    (bySecond[second] ??= []).push((triggerReadAt[i] as number) - due);
  }
  // KAIROS_BENCH_LATENCY_FILE=<file>: every event's times (wall clock ms; null where nothing came), to look at the
  // latencies by send or due time.
  const latencyFile = process.env.KAIROS_BENCH_LATENCY_FILE;
  if (latencyFile !== undefined) {
    const t = (x: number | undefined): number | null => (x === undefined || Number.isNaN(x) ? null : x);
    const events = Array.from({ length: total }, (_, i) => [t(sentAt[i]), t(triggerAt[i]), t(triggerReadAt[i]), t(changelogReadAt[i])]);
    writeFileSync(latencyFile, JSON.stringify({ columns: ['sentAt', 'triggerDueAt', 'triggerReadAt', 'changelogReadAt'], firstSentAt, lastSentAt, events }));
  }
  const steadyP99BySecond = Array.from(bySecond, (xs) => (xs === undefined || xs.length === 0 ? null : Math.round(dist(xs).p99)));
  return {
    restartMs,
    flushedAtRestart,
    sent,
    sendSeconds,
    achievedRate: sent / sendSeconds,
    sendAck: dist(acks),
    pipeline: dist(pipeline),
    triggerSteady: dist(steady),
    triggerWarm: dist(warm),
    steadyP99BySecond,
    triggerTail: dist(tail),
    triggerAll: dist(triggerLat),
    triggers,
    duplicates,
    missing: total - triggers,
    perInstance,
    brokerCpuShare: sampler.cpuShare('broker'),
    maxLag,
    measuredSeconds: sampler.wallMs / 1000,
    profile,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// CPU profile of the catch-up (inproc): self time by area, builtins and Node internals counted for their caller

/** V8's sampling profiler on this process, between start() and stop(). */
class PhaseProfiler {
  readonly #session = new Session();

  static async start(): Promise<PhaseProfiler> {
    const p = new PhaseProfiler();
    p.#session.connect();
    await p.#session.post('Profiler.enable');
    await p.#session.post('Profiler.setSamplingInterval', { interval: 500 });
    await p.#session.post('Profiler.start');
    return p;
  }

  async stop(): Promise<ProfileSummary> {
    try {
      const { profile } = await this.#session.post('Profiler.stop');
      // KAIROS_BENCH_PROFILE_FILE=<file.cpuprofile>: the raw profile too (Chrome DevTools, speedscope).
      const file = process.env.KAIROS_BENCH_PROFILE_FILE;
      if (file !== undefined) writeFileSync(file, JSON.stringify(profile));
      return summarizeProfile(profile);
    } finally {
      this.#session.disconnect();
    }
  }

  discard(): void {
    this.#session.disconnect();
  }
}

interface ProfileSummary {
  readonly totalMs: number;
  readonly categories: { category: string; ms: number; share: number }[];
  readonly topFunctions: readonly { readonly fn: string; readonly ms: number }[];
}

const AREAS: ReadonlyArray<readonly [RegExp, string | null]> = [
  [/\/src\/kafka\/serde\.ts|\/src\/serde\/|@sinclair\/typebox/, 'decode: JSON.parse + contract validation'],
  [/node_modules\/kafkajs\//, 'kafkajs: protocol, fetch, produce, group'],
  [/\/src\/kafka\//, 'runner: batches, commit, changelog writer'],
  [/\/src\/engine\/state\/|node_modules\/rocksdb\//, 'state: cache, codecs, RocksDB calls'],
  [/\/src\/engine\/(runtime|api)\//, 'engine: task, routing, timers'],
  [/\/topologies\//, 'topologies: dedup, detection, guards, history'],
  [/node_modules\/(pino|prom-client)/, 'logging, metrics'],
  [/\/load-tests\//, 'benchmark harness (offset polling)'],
  [/^node:|^internal\//, null],
];
const SPECIAL_AREAS: Readonly<Record<string, string>> = {
  '(garbage collector)': 'V8: garbage collection',
  '(idle)': 'idle: waiting (network, broker, RocksDB thread pool)',
  '(program)': 'V8/native: other',
};

function summarizeProfile(profile: Profiler.Profile): ProfileSummary {
  const byId = new Map<number, Profiler.ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const cache = new Map<number, string>();
  const areaOf = (id: number): string => {
    const hit = cache.get(id);
    if (hit !== undefined) return hit;
    const node = byId.get(id);
    let area: string | null = null;
    if (node) {
      const name = node.callFrame.functionName;
      if (Object.hasOwn(SPECIAL_AREAS, name)) area = SPECIAL_AREAS[name] as string;
      else if (node.callFrame.url !== '') {
        const rule = AREAS.find(([re]) => re.test(node.callFrame.url));
        area = rule ? rule[1] : 'other';
      }
    }
    if (area === null) {
      const p = parent.get(id);
      area = p === undefined ? 'node internals: event loop, sockets, promises' : areaOf(p);
    }
    cache.set(id, area);
    return area;
  };
  cache.set(profile.nodes[0]?.id ?? -1, 'node internals: event loop, sockets, promises');
  const per = new Map<string, number>();
  let total = 0;
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const us = deltas[i + 1] ?? 0;
    total += us;
    const a = areaOf(samples[i] as number);
    per.set(a, (per.get(a) ?? 0) + us);
  }
  const categories = [...per].map(([category, us]) => ({ category, ms: us / 1000, share: total > 0 ? us / total : 0 })).sort((a, b) => b.ms - a.ms);
  return { totalMs: total / 1000, categories, topFunctions: summarize(profile).topFunctions };
}

// ---------------------------------------------------------------------------------------------------------------

async function main(argv: readonly string[], cleanup: Cleanup): Promise<number> {
  const o = parseOptions(argv);
  log(`machine: ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()} cores, load average ${loadAverage()}, node ${process.version}`);
  const stateRoot = mkdtempSync(join(tmpdir(), 'kairos-bench-kafka-'));
  cleanup.add(`remove ${stateRoot}`, () => rmSync(stateRoot, { recursive: true, force: true }));
  cleanup.atExit(() => rmSync(stateRoot, { recursive: true, force: true }));
  let cluster: BrokerSet;
  if (o.brokers === undefined) {
    log('starting the mock cluster (kcat)');
    const mock = await startMockCluster();
    cleanup.add('stop the mock cluster', () => mock.stop());
    const unhookCluster = cleanup.atExit(() => process.kill(mock.pid, 'SIGKILL'));
    cleanup.add('unhook', () => void unhookCluster());
    log(`mock cluster pid ${mock.pid}: ${mock.brokers.join(',')}`);
    cluster = { brokers: mock.brokers, pid: mock.pid, mock: true };
  } else {
    cluster = { brokers: o.brokers, pid: o.brokerPid ?? 0, mock: false };
  }
  const kafka = benchKafka(cluster.brokers, 'bench');
  const admin = kafka.admin();
  await admin.connect();
  cleanup.add('disconnect admin', () => admin.disconnect());
  if (!cluster.mock) await freshBrokerTopics(admin);

  const produced = await preProduce(kafka, o);
  const rssAfterProduce = process.memoryUsage().rss;
  // The trigger topic is read while the runner writes it (see startReader: the mock broker trims partitions).
  const reader = await startReader(kafka, [TRIGGERS]);
  cleanup.add('stop the trigger reader', () => reader.stop());
  // Baselines in the same run: bare kafkajs consumers on the topics the runner reads, before it.
  const baselines: Baseline[] = [];
  if (!o.noBaseline) {
    const { external } = topicsOf(o.campaigns);
    const records = sumOffsets(await endOffsets(admin, external));
    for (const parse of [false, true]) baselines.push(await bareConsumer(kafka, external, records, parse, o.timeoutSec * 1000));
  }
  const peer = o.peer === undefined ? undefined : await peerCatchUp(o.peer, cluster.brokers, admin, topicsOf(o.campaigns).external, stateRoot, cleanup, o.timeoutSec * 1000);
  const cu = await catchUp(o, cluster.brokers, admin, stateRoot, cluster, cleanup);

  // The catch-up's triggers against the reference model: timers due by the last source event.
  await reader.until(await endOffsets(admin, [TRIGGERS]));
  const triggerValues = [...reader.values];
  // Records the broker dropped before anyone could read them would make any count below meaningless.
  const trimmed = await trimmedRecords(admin, (await admin.listTopics()).filter((t) => !t.startsWith('__')));
  if (trimmed.size > 0) {
    log(
      `the mock broker trimmed the start of ${[...trimmed].map(([t, n]) => `${t} (${fmtInt(n)} records)`).join(', ')}; ` +
        `it keeps 5 MiB per partition. The trigger count is unaffected (read live); a restore from a trimmed changelog would not be.`,
    );
  }
  // The model covers basket abandonment only; other topologies' triggers are counted by type.
  const byType = new Map<string, number>();
  const engineKeys: string[] = [];
  for (const v of triggerValues) {
    const t = JSON.parse(v.toString('utf8')) as Trigger;
    byType.set(t.type, (byType.get(t.type) ?? 0) + 1);
    if (t.type === 'BASKET_ABANDONED' || t.type === 'CHECKOUT_ABANDONED') {
      engineKeys.push(triggerKey({ customerId: t.customerId, type: t.type, at: t.occurredAt, causedByEventId: t.causedBy.eventId }));
    }
  }
  const triggersByType = Object.fromEntries([...byType].sort(([a], [b]) => (a < b ? -1 : 1)));
  // Stream time ends at the latest event of any input topic (per task; the model has one clock).
  produced.oracle.finish(Math.max(...cu.external.map((t) => produced.lastEventAt.get(t) ?? -Infinity)));
  const model = compareTriggers(produced.oracle.sent, engineKeys);
  // KAIROS_BENCH_MODEL_DIFF=<file>: every trigger the model expects and the engine did not send, and vice versa.
  const diffFile = process.env.KAIROS_BENCH_MODEL_DIFF;
  if (diffFile !== undefined) {
    const got = new Set(engineKeys);
    const want = new Set(produced.oracle.sent.map(triggerKey));
    writeFileSync(diffFile, JSON.stringify({ missing: [...want].filter((k) => !got.has(k)), unexpected: [...got].filter((k) => !want.has(k)) }));
  }

  const lat = o.seconds > 0 && o.rate > 0 ? await latencyPhase(o, cluster.brokers, kafka, admin, stateRoot, cluster, cleanup) : undefined;
  report(o, produced, rssAfterProduce, cu, model, triggersByType, lat, cluster, baselines, peer);
  return 0;
}

function report(
  o: Options,
  pr: Produced,
  rssAfterProduce: number,
  cu: CatchUp,
  model: Comparison,
  triggersByType: Record<string, number>,
  lat: Latency | undefined,
  cluster: BrokerSet,
  baselines: readonly Baseline[],
  peer: PeerResult | undefined,
): void {
  const p = (s = ''): void => {
    process.stdout.write(`${s}\n`);
  };
  const total = Object.values(pr.byTopic).reduce((a, b) => a + b, 0);
  const pct = (x: number): string => `${(100 * x).toFixed(0)}%`;
  const ms = (x: number): string => (Number.isNaN(x) ? '-' : `${fmtInt(x)} ms`);
  const commitMean = (c: RunnerCounters): string => (c.commits > 0 ? `${((1000 * c.commitSeconds) / c.commits).toFixed(1)} ms` : '-');
  const perCommit = (c: RunnerCounters): string => (c.commits > 0 ? (c.processed / c.commits).toFixed(1) : '-');
  p('');
  const brokerText = cluster.mock ? 'kcat mock cluster, 3 brokers' : `broker ${cluster.brokers.join(',')}`;
  p(`== Kairos Kafka runner throughput (${cluster.mock ? 'librdkafka mock cluster via kcat' : `broker ${cluster.brokers.join(',')}`}) ==`);
  p(`machine      ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()} cores, load average now ${loadAverage()}, node ${process.version}; broker: ${brokerText}, 4 partitions per topic`);
  p(`mode         ${o.instances} instance(s), ${o.mode === 'inproc' ? 'in this process (one event loop)' : `child processes (node ${o.childCommand.map((a) => a.replace(`${REPO_ROOT}/`, '')).join(' ')})`}; group ${GROUP}; maxWaitTimeInMs 100; ${o.guarantee}, idempotent ${o.guarantee === 'exactly_once'}; sessionTimeout ${SESSION_TIMEOUT_MS} ms, heartbeat ${HEARTBEAT_MS} ms`);
  p(`campaigns    ${o.campaignsSource}; the latency phase sets basket-abandonment inactivityGap ${o.gap}`);
  if (o.commitIntervalMs !== undefined) p(`setting      KafkaRunner commitIntervalMs ${o.commitIntervalMs} in the catch-up`);
  if (o.outputLingerMs !== undefined) p(`setting      KafkaRunner outputLingerMs ${o.outputLingerMs} in both phases`);
  if (o.maxTaskIdleMs !== undefined) p(`setting      KafkaRunner maxTaskIdleMs ${o.maxTaskIdleMs} (the runner's default is 2000)`);
  if (o.partitionsConcurrently !== undefined) {
    p(`EXPERIMENT   the runner's consumer runs with partitionsConsumedConcurrently ${o.partitionsConcurrently} (overriding the runner's own value through the client wrapper)`);
  }
  p(
    `produce      ${fmtInt(total)} records (${fmtBytes(pr.bytes)}) from generate-events (seed ${o.seed}, ${fmtInt(o.customers)} customers; generated in ${fmtSecs(pr.genMs)}) ` +
      `in ${fmtSecs(pr.produceMs)} → ${fmtInt(total / (pr.produceMs / 1000))} records/s (sendBatch of ${fmtInt(o.produceBatch)}, acks -1, one producer)`,
  );
  p(`             ${Object.entries(pr.byTopic).sort(([a], [b]) => (a < b ? -1 : 1)).map(([t, n]) => `${t} ${fmtInt(n)}`).join(', ')}`);
  p(
    `catch-up     ${fmtInt(cu.records)} records of the topology's inputs (${cu.external.join(', ')}; ${fmtInt(total - cu.records)} produced records are of topics it does not read` +
      `${cu.repartition.length > 0 ? `; plus ${fmtInt(cu.repartitionRecords)} records it wrote to and read back from its repartition topics` : ''}) ` +
      `in ${fmtSecs(cu.startToDoneMs - cu.startToReadyMs)} after start() → ${fmtInt(cu.ratePerSec)} records/s in total, ${fmtInt(cu.ratePerSec / o.instances)} per instance`,
  );
  p(
    `             start → ready ${fmtSecs(cu.startToReadyMs)}, → first commit ${fmtSecs(cu.startToFirstMs)}, → all committed ${fmtSecs(cu.startToDoneMs)}; ` +
      `from the first commit ${fmtInt(cu.rateFromFirstPerSec)} records/s; stop ${fmtSecs(cu.stopMs)}`,
  );
  p(
    table(
      ['instance', 'partitions', 'records', 'done after', 'records/s', 'peak RSS', 'CPU (of one core)', 'commits', 'mean commit', 'records/commit'],
      cu.perInstance.map((i) => [
        i.label,
        i.partitions.join(',') || '-',
        fmtInt(i.records),
        fmtSecs(i.doneMs),
        fmtInt(i.ratePerSec),
        fmtBytes(i.peakRss),
        pct(i.cpuShare),
        fmtInt(i.counters.commits),
        commitMean(i.counters),
        perCommit(i.counters),
      ]),
    ).replace(/^/gm, '             '),
  );
  for (const i of cu.perInstance) if (i.batches) p(`             ${formatBatches(i.label, i.batches)}`);
  p(
    `             ${cluster.pid > 0 ? `broker (${cluster.mock ? 'kcat ' : ''}pid ${cluster.pid}) CPU ${pct(cu.brokerCpuShare)} of one core; ` : ''}RSS of this process before the runner ${fmtBytes(rssAfterProduce)}; ` +
      `${fmtInt(cu.changelogRecords)} changelog records written (${(cu.changelogRecords / Math.max(1, cu.records)).toFixed(2)} per input record)`,
  );
  const perInstance = cu.ratePerSec / o.instances;
  for (const b of baselines) {
    p(
      `baseline     ${b.label} (fresh group, kafkajs default fetch sizes, maxWaitTimeInMs 100, no commits) on the same topics: ${fmtInt(b.records)} records in ${fmtSecs(b.ms)} after run() → ` +
        `${fmtInt(b.perSec)} records/s (${fmtInt(b.perSecFromFirst)} from its first batch); Kairos per instance ÷ this = ${(perInstance / b.perSec).toFixed(3)}`,
    );
  }
  if (peer) {
    p(
      `peer         ${peer.command}: ${fmtInt(peer.records)} records in ${fmtSecs(peer.ms)} after RUNNING (${fmtSecs(peer.startMs)} after spawn) → ${fmtInt(peer.perSec)} records/s, ` +
        `CPU ${pct(peer.cpuShare)} of one core, peak RSS ${fmtBytes(peer.peakRss)}; Kairos per instance ÷ this = ${(perInstance / peer.perSec).toFixed(3)}`,
    );
  }
  p(
    `triggers     ${fmtInt(cu.triggersProduced)} during catch-up (${Object.entries(triggersByType).map(([k, n]) => `${k} ${fmtInt(n)}`).join(', ') || 'none'}); ` +
      `basket abandonment (60 min gap) against the model (timers due by the last input event): expected ${fmtInt(model.expected)}, ` +
      `engine ${fmtInt(model.actual)}, identical ${fmtInt(model.matching)}`,
  );
  for (const m of model.missing.slice(0, 3)) p(`             missing from engine output: ${m}`);
  for (const m of model.unexpected.slice(0, 3)) p(`             not expected by the model: ${m}`);
  const printProfile = (title: string, prof: ProfileSummary): void => {
    p('');
    p(`CPU profile of ${title} (${fmtSecs(prof.totalMs)} sampled; self time by area, builtins counted for their caller):`);
    p(table(['area', 'time', 'share'], prof.categories.map((c) => [c.category, fmtSecs(c.ms), `${(c.share * 100).toFixed(1)}%`])));
    p('');
    p('heaviest functions (self time):');
    p(table(['function', 'time'], prof.topFunctions.map((f) => [f.fn, fmtSecs(f.ms)])));
  };
  if (cu.profile) printProfile('the catch-up', cu.profile);
  if (lat) {
    p('');
    p(
      `latency      restart with inactivityGap ${o.gap}, punctuateIntervalMs ${o.punctuateMs}, idleAdvanceMs ${o.idleAdvanceMs}: ready in ${fmtSecs(lat.restartMs)}; ` +
        `${fmtInt(lat.flushedAtRestart)} backlog timers fired at restart (not measured)`,
    );
    p(`             one producer.send (acks -1) every ${o.tickMs} ms with the events due by then (${(o.rate * o.tickMs / 1000).toFixed(0)} per send)`);
    p(`             sent ${fmtInt(lat.sent)} ITEM_ADDED (fresh customers) in ${lat.sendSeconds.toFixed(2)} s = ${fmtInt(lat.achievedRate)}/s; triggers ${fmtInt(lat.triggers)}, missing ${fmtInt(lat.missing)}, duplicates ${fmtInt(lat.duplicates)}; runner lag (end − committed offsets of shop.basket.v1 and the repartition topics, sampled every second) at most ${fmtInt(lat.maxLag)} records`);
    const row = (label: string, d: Dist): string[] => [label, fmtInt(d.n), ms(d.p50), ms(d.p95), ms(d.p99), ms(d.max), ms(d.mean)];
    p(
      table(
        ['latency', 'count', 'p50', 'p95', 'p99', 'max', 'mean'],
        [
          row('pipeline: send → changelog record read', lat.pipeline),
          row('trigger: read − (occurredAt + gap), all', lat.triggerAll),
          row('  due while events flowed (stream time)', lat.triggerSteady),
          row(`    of events sent after the first ${o.warmupSec} s`, lat.triggerWarm),
          row('  due after the last event (idle advance)', lat.triggerTail),
          row('producer send → ack (acks -1)', lat.sendAck),
        ],
      ).replace(/^/gm, '             '),
    );
    const seconds = lat.steadyP99BySecond;
    const over = seconds.filter((x) => x !== null && x > 250).length;
    p(`             steady trigger p99 by second of due time (ms): ${seconds.map((x) => x ?? '–').join(' ')}; over 250 ms in ${over} of ${seconds.filter((x) => x !== null).length} seconds`);
    p(
      table(
        ['instance', 'partitions', 'peak RSS', 'CPU (of one core)', 'processed', 'emitted', 'commits', 'mean commit', 'commit time / wall'],
        lat.perInstance.map((i) => [
          i.label,
          i.partitions.join(',') || '-',
          fmtBytes(i.peakRss),
          pct(i.cpuShare),
          fmtInt(i.counters.processed),
          fmtInt(i.counters.emitted),
          fmtInt(i.counters.commits),
          commitMean(i.counters),
          pct(i.counters.commitSeconds / lat.measuredSeconds),
        ]),
      ).replace(/^/gm, '             '),
    );
    for (const i of lat.perInstance) if (i.batches) p(`             ${formatBatches(i.label, i.batches)}`);
    // Whether the instance itself stood still (a long GC, a blocked event loop) when the tail grew.
    for (const { label, counters: c } of lat.perInstance) {
      if (c.gcPauses === 0) continue;
      const lag = Number.isNaN(c.loopLagMaxSeconds) ? '' : `; longest event-loop delay ${Math.round(c.loopLagMaxSeconds * 1000)} ms`;
      p(`             ${label}: GC ${c.gcSeconds.toFixed(2)} s in ${fmtInt(c.gcPauses)} pauses (${fmtInt(c.gcOver10ms)} of 10 ms or more, ${fmtInt(c.gcOver100ms)} of 100 ms or more)${lag}`);
    }
    if (cluster.pid > 0) p(`             broker CPU ${pct(lat.brokerCpuShare)} of one core`);
    if (lat.profile) printProfile('the latency phase (this process: runner, stream producer and measuring consumer)', lat.profile);
  }
  p('');
  const round = (d: Dist): Record<string, number> => ({ n: d.n, p50: Math.round(d.p50), p95: Math.round(d.p95), p99: Math.round(d.p99), max: Math.round(d.max), mean: Math.round(d.mean) });
  p(
    JSON.stringify({
      bench: 'kafka-throughput',
      events: total,
      customers: o.customers,
      seed: o.seed,
      instances: o.instances,
      mode: o.mode,
      guarantee: o.guarantee,
      ...(o.partitionsConcurrently === undefined ? {} : { partitionsConsumedConcurrently: o.partitionsConcurrently }),
      ...(o.maxTaskIdleMs === undefined ? {} : { maxTaskIdleMs: o.maxTaskIdleMs }),
      ...(o.commitIntervalMs === undefined ? {} : { commitIntervalMs: o.commitIntervalMs }),
      ...(o.outputLingerMs === undefined ? {} : { outputLingerMs: o.outputLingerMs }),
      producedByTopic: pr.byTopic,
      produceMs: Math.round(pr.produceMs),
      producePerSec: Math.round(total / (pr.produceMs / 1000)),
      sourceRecords: cu.records,
      startToReadyMs: Math.round(cu.startToReadyMs),
      startToFirstCommitMs: Math.round(cu.startToFirstMs),
      startToDoneMs: Math.round(cu.startToDoneMs),
      consumedPerSec: Math.round(cu.ratePerSec),
      consumedPerSecPerInstance: Math.round(cu.ratePerSec / o.instances),
      consumedPerSecFromFirstCommit: Math.round(cu.rateFromFirstPerSec),
      perInstance: cu.perInstance.map((i) => ({ ...i, doneMs: Math.round(i.doneMs), ratePerSec: Math.round(i.ratePerSec), cpuShare: Number(i.cpuShare.toFixed(2)) })),
      brokerCpuShare: Number(cu.brokerCpuShare.toFixed(2)),
      inputTopics: cu.external,
      repartitionTopics: cu.repartition,
      repartitionRecords: cu.repartitionRecords,
      catchUpTriggers: cu.triggersProduced,
      changelogRecords: cu.changelogRecords,
      broker: cluster.mock ? 'mock' : cluster.brokers.join(','),
      ...(baselines.length > 0
        ? {
            baselines: baselines.map((b) => ({ label: b.label, records: b.records, ms: Math.round(b.ms), perSec: Math.round(b.perSec), perSecFromFirst: Math.round(b.perSecFromFirst) })),
            bareConsumerPerSec: Math.round(baselines[0]?.perSec ?? 0),
            ratioToBareConsumer: Number(((cu.ratePerSec / o.instances) / (baselines[0]?.perSec ?? Infinity)).toFixed(4)),
            ...(baselines[1] ? { ratioToBareConsumerParse: Number(((cu.ratePerSec / o.instances) / baselines[1].perSec).toFixed(4)) } : {}),
          }
        : {}),
      ...(peer
        ? {
            peer: { command: peer.command, records: peer.records, startMs: Math.round(peer.startMs), ms: Math.round(peer.ms), perSec: Math.round(peer.perSec), cpuShare: Number(peer.cpuShare.toFixed(2)), peakRss: peer.peakRss },
            ratioToPeer: Number(((cu.ratePerSec / o.instances) / peer.perSec).toFixed(4)),
          }
        : {}),
      catchUpTriggersByType: triggersByType,
      model: { expected: model.expected, engine: model.actual, identical: model.matching },
      ...(cu.profile ? { profileMs: Object.fromEntries(cu.profile.categories.map((c) => [c.category, Math.round(c.ms)])) } : {}),
      ...(lat
        ? {
            latency: {
              gapMs: o.gapMs,
              punctuateIntervalMs: o.punctuateMs,
              idleAdvanceMs: o.idleAdvanceMs,
              rate: o.rate,
              seconds: o.seconds,
              tickMs: o.tickMs,
              sent: lat.sent,
              achievedRate: Math.round(lat.achievedRate),
              triggers: lat.triggers,
              missing: lat.missing,
              duplicates: lat.duplicates,
              flushedAtRestart: lat.flushedAtRestart,
              maxLag: lat.maxLag,
              restartMs: Math.round(lat.restartMs),
              pipelineMs: round(lat.pipeline),
              triggerMs: round(lat.triggerAll),
              triggerSteadyMs: round(lat.triggerSteady),
              triggerTailMs: round(lat.triggerTail),
              triggerWarmMs: round(lat.triggerWarm),
              steadyP99BySecondMs: lat.steadyP99BySecond,
              sendAckMs: round(lat.sendAck),
              perInstance: lat.perInstance.map((i) => ({ ...i, cpuShare: Number(i.cpuShare.toFixed(2)) })),
              brokerCpuShare: Number(lat.brokerCpuShare.toFixed(2)),
              ...(lat.profile ? { profileMs: Object.fromEntries(lat.profile.categories.map((c) => [c.category, Math.round(c.ms)])) } : {}),
            },
          }
        : {}),
    }),
  );
}

const cleanup = new Cleanup();
process.once('exit', () => cleanup.exitHook());
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: cleaning up`);
    void cleanup.run().finally(() => process.exit(130));
  });
}

main(process.argv.slice(2), cleanup)
  .then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`bench:kafka: ${isUsageError(err) ? err.message : errText(err)}\n`);
      process.exitCode = isUsageError(err) ? 2 : 1;
    },
  )
  .finally(async () => {
    await cleanup.run();
    log('cleaned up');
    // kafkajs and pino can leave handles behind after a failure; do not hang.
    setTimeout(() => process.exit(), 2000).unref();
  })
  .catch(() => undefined);
