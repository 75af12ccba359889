/**
 * Kafka == replay (DESIGN §4) on any broker: the same NDJSON input through `kairos replay` and through
 * `kairos start` (a child process, the production path), and the triggers compared by triggerId.
 *
 *   npx tsx load-tests/kafka-vs-replay.ts --input load-tests/scenarios/all-triggers.ndjson \
 *       [--brokers 127.0.0.1:9092] [--mode after|before|kill|rebalance|pause] [--kill-after-sec 4] [--partitions N]
 *       [--guarantee at_least_once|exactly_once] [--serde json|avro --registry http://127.0.0.1:8081]
 *       [--config campaigns.json] [--timeout-sec 300] [--quiet-sec 8] [--partitioner murmur2|crc32] [--settle-ms N]
 *
 * Without --brokers it starts librdkafka's mock cluster (kcat). On a broker it first DELETES the contract's
 * topics and the run's internal topics (a fresh application id per run), so point it at a test broker only.
 * Modes: after = produce everything, then start the engine (catch-up of a backlog); before = start the engine,
 * then produce in chunks; rebalance = as before, with a second engine joining after a third of the chunks and the
 * first stopping after two thirds (late and re-fetched records are both engines', the first's read before it stops);
 * pause = as before, with the first engine stopped (SIGSTOP) after a third of the chunks, a second one started at
 * once (it gets every task when the first's 6 s session expires) and the first resumed (SIGCONT) after two thirds,
 * at least 10 s after it stopped: it rejoins as a new member and takes tasks back (a lost membership); kill =
 * produce, start, SIGKILL after --kill-after-sec, start again on an EMPTY
 * state directory (restore from the changelogs). Idle advance is off in the engine (replay has no wall
 * clock), so both runners fire exactly the timers their stream time passes. With several partitions, stream
 * time is per partition in Kafka and global in replay: use one partition, or an input whose tail passes every
 * partition's timers (the equivalence test adds clock events for that).
 * Prints per trigger type: replay, kafka, missing, extra, repeated (at-least-once repeats with equal ids); exit
 * code 0 when the sets are equal.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { crc32 } from 'node:zlib';
import pino from 'pino';
import type { Admin, Kafka, Message } from 'kafkajs';
import { isTopicName, TOPICS, type Trigger } from '../schemas/contract.js';
import { run } from '../src/cli/main.js';
import { createKafka } from '../src/kafka/client.js';
import { startMockCluster, type MockCluster } from '../src/kafka/mock-cluster.js';
import { startKairos, type KairosChild } from './lib/child.js';
import { sumMetric } from './lib/common.js';
import { AvroSerde, JsonSerde, type TopicSerde } from '../src/kafka/serde.js';

const { values: o } = parseArgs({
  options: {
    input: { type: 'string', default: 'load-tests/scenarios/all-triggers.ndjson' },
    brokers: { type: 'string' },
    mode: { type: 'string', default: 'after' },
    'kill-after-sec': { type: 'string', default: '4' },
    partitions: { type: 'string' },
    /** crc32: put every keyed record where librdkafka's default partitioner (kcat, Confluent clients) would. */
    partitioner: { type: 'string', default: 'murmur2' },
    guarantee: { type: 'string', default: 'at_least_once' },
    serde: { type: 'string', default: 'json' },
    registry: { type: 'string', default: 'http://127.0.0.1:8081' },
    config: { type: 'string' },
    'timeout-sec': { type: 'string', default: '300' },
    'quiet-sec': { type: 'string', default: '8' },
    /** KAIROS_INPUT_SETTLE_MS of the engines (their own default, 0, when not given). */
    'settle-ms': { type: 'string' },
  },
});
const log = (s: string): void => void process.stderr.write(`[kafka-vs-replay] ${s}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const app = `kvr-${randomUUID().slice(0, 8)}`;
const tmp = mkdtempSync(join(tmpdir(), 'kairos-kvr-'));
const children: ChildProcess[] = [];
const PAUSE_SESSION_MS = 6000;
let mock: MockCluster | undefined;

interface Line {
  readonly topic: string;
  readonly key: string | null;
  readonly value: unknown;
}

async function replay(): Promise<Trigger[]> {
  const out = join(tmp, 'replay-triggers.ndjson');
  const code = await run(['replay', '--input', o.input as string, '--output', out, '--quiet', ...(o.config ? ['--config', o.config] : [])], {
    stdout: process.stderr,
    stderr: process.stderr,
  });
  if (code !== 0) throw new Error(`replay exited ${code}`);
  return readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Trigger);
}

async function freshTopics(admin: Admin): Promise<void> {
  const all = await admin.listTopics();
  const doomed = all.filter((t) => isTopicName(t) || t.endsWith('.dlq') || t.startsWith('kvr-'));
  if (doomed.length > 0) {
    await admin.deleteTopics({ topics: doomed, timeout: 30_000 }).catch((err: unknown) => log(`deleteTopics: ${(err as Error).message}`));
    for (let i = 0; i < 50 && (await admin.listTopics()).some((t) => doomed.includes(t)); i++) await sleep(200);
    log(`deleted ${doomed.length} topics`);
  }
  if (o.partitions) {
    const n = Number(o.partitions);
    const topics = Object.keys(TOPICS).filter((t) => t !== 'crm.triggers.v1' && t !== 'crm.trigger-audit.v1');
    await admin.createTopics({ waitForLeaders: false, topics: topics.map((topic) => ({ topic, numPartitions: n })) });
    // A broker may answer metadata for a topic it has just created with "does not host this topic-partition"
    // for a moment (kafkajs' waitForLeaders then fails the run): wait until every partition has a leader.
    for (let i = 0; ; i++) {
      const meta = await admin.fetchTopicMetadata({ topics }).catch(() => undefined);
      if (meta !== undefined && meta.topics.every((t) => t.partitions.length === n && t.partitions.every((p) => p.leader >= 0))) break;
      if (i >= 150) throw new Error(`the input topics have no leader for every partition 30 s after their creation`);
      await sleep(200);
    }
    log(`created the input topics with ${n} partitions`);
  }
}

async function produce(
  kafka: Kafka,
  serde: TopicSerde,
  lines: readonly Line[],
  chunk: number,
  pauseMs: number,
  beforeChunk?: (index: number, chunks: number) => Promise<void>,
): Promise<void> {
  const producer = kafka.producer({ allowAutoTopicCreation: true, idempotent: !mock, ...(mock ? {} : { maxInFlightRequests: 1 }) });
  // Produce requests per chunk: a chunk sent in more than one (a retry of some partitions, or several brokers)
  // reaches the consumer in parts, which the runner's record order cannot always tell from late input.
  let requests = 0;
  const brokers = new Set<string>();
  const split: string[] = [];
  producer.on(producer.events.REQUEST, (e) => {
    if (e.payload.apiName !== 'Produce') return;
    requests++;
    brokers.add(e.payload.broker);
  });
  await producer.connect();
  try {
    const chunks = Math.ceil(lines.length / chunk);
    for (let i = 0; i < lines.length; i += chunk) {
      await beforeChunk?.(i / chunk, chunks);
      requests = 0;
      brokers.clear();
      const byTopic = new Map<string, Message[]>();
      for (const l of lines.slice(i, i + chunk)) {
        if (!isTopicName(l.topic)) continue;
        const list = byTopic.get(l.topic) ?? [];
        byTopic.set(l.topic, list);
        const partition = o.partitioner === 'crc32' && l.key !== null ? (crc32(Buffer.from(l.key, 'utf8')) >>> 0) % Number(o.partitions ?? 1) : undefined;
        list.push({ key: l.key, value: l.value === null ? null : await serde.encode(l.topic, l.value), ...(partition === undefined ? {} : { partition }) });
      }
      await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
      if (requests > brokers.size) split.push(`lines ${i + 1}–${Math.min(i + chunk, lines.length)}: ${requests} requests to ${brokers.size} broker(s)`);
      if (pauseMs > 0) await sleep(pauseMs);
    }
  } finally {
    await producer.disconnect();
  }
  log(split.length === 0 ? `every chunk went in one produce request per broker` : `chunks sent in more than one produce request: ${split.join('; ')}`);
}

/** Whether the engine answers /health/ready with 200 (every assigned task open and restored). */
async function engineReady(engine: KairosChild): Promise<boolean> {
  if (engine.url === undefined) return true;
  try {
    const res = await fetch(`${engine.url}/health/ready`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

async function startEngine(brokers: string, stateDir: string): Promise<KairosChild> {
  const engine = await startKairos({
    label: 'engine',
    // a restore of a large changelog comes before the banner
    readyTimeoutMs: 600_000,
    env: {
      KAFKA_BROKERS: brokers,
      KAFKA_IDEMPOTENT: mock ? 'false' : 'true',
      KAIROS_APPLICATION_ID: app,
      KAIROS_STATE_DIR: stateDir,
      KAIROS_HTTP_PORT: '0',
      KAIROS_API_AUTH: 'none',
      KAIROS_IDLE_ADVANCE_MS: String(1e12),
      KAIROS_PROCESSING_GUARANTEE: o.guarantee as string,
      KAIROS_SERDE: o.serde as string,
      ...(o.serde === 'avro' ? { SCHEMA_REGISTRY_URL: o.registry as string } : {}),
      ...(o.config ? { KAIROS_CAMPAIGNS: o.config } : {}),
      KAIROS_LOG_LEVEL: process.env.KAIROS_LOG_LEVEL ?? 'warn',
      ...(o['settle-ms'] === undefined ? {} : { KAIROS_INPUT_SETTLE_MS: o['settle-ms'] }),
      // pause: a session the pause outlasts (the broker's minimum, 6 s).
      ...(o.mode === 'pause' ? { KAFKA_SESSION_TIMEOUT_MS: String(PAUSE_SESSION_MS), KAFKA_HEARTBEAT_MS: '1000' } : {}),
    },
    echo: true,
    onSpawn: (child) => children.push(child),
  });
  return engine;
}

/**
 * From the engine's metrics, summed over its tasks: records taken below their task's stream time
 * (kairos_task_late_records_total: 0 when the input's events are in event-time order per customer and the runner
 * kept them so), and records fetched again that the state already held (kairos_task_records_skipped_total: 0
 * unless a task was reset or read from the group's committed offsets). Undefined when the engine does not answer.
 */
async function recordCounts(engine: KairosChild): Promise<{ late: number; skipped: number; lost: number } | undefined> {
  if (engine.url === undefined || !engine.running()) return undefined;
  const text = await fetch(`${engine.url}/metrics`).then((r) => r.text()).catch(() => undefined);
  return text === undefined
    ? undefined
    : { late: sumMetric(text, 'kairos_task_late_records_total'), skipped: sumMetric(text, 'kairos_task_records_skipped_total'), lost: sumMetric(text, 'kairos_group_membership_lost_total') };
}

async function main(): Promise<number> {
  const expected = await replay();
  log(`replay: ${expected.length} triggers`);
  if (!o.brokers) mock = await startMockCluster();
  const brokers = o.brokers ?? (mock as MockCluster).brokers.join(',');
  const kafka = createKafka({ brokers: brokers.split(','), clientId: app, logger: pino({ level: 'silent' }) });
  const admin = kafka.admin();
  await admin.connect();
  const serde: TopicSerde = o.serde === 'avro' ? new AvroSerde({ registry: { host: o.registry as string }, register: true }) : new JsonSerde();
  if (serde instanceof AvroSerde) await serde.init();
  const lines = readFileSync(o.input as string, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
  if (!mock) await freshTopics(admin);
  const got: Trigger[] = [];
  let lastAt = Date.now();
  const consumer = kafka.consumer({ groupId: `${app}-reader`, maxWaitTimeInMs: 200 });
  await consumer.connect();
  const started = Date.now();
  const mode = o.mode as string;
  const stateDir = join(tmp, 'state-1');
  let engine: KairosChild;
  /** The first engine's counts in rebalance mode, read just before it stops (pause: at the end). */
  let firstCounts: Awaited<ReturnType<typeof recordCounts>>;
  let first: KairosChild | undefined;
  if (mode === 'before' || mode === 'rebalance' || mode === 'pause') {
    const firstEngine = await startEngine(brokers, stateDir);
    first = firstEngine;
    engine = firstEngine;
    await sleep(3000);
    // rebalance: live input while the group changes: a second engine joins after a third of the chunks (tasks
    // move to it, restored from their changelogs), the first stops (SIGTERM) after two thirds (its tasks move too).
    const regroup = async (i: number, n: number): Promise<void> => {
      if (i === Math.floor(n / 3)) {
        engine = await startEngine(brokers, join(tmp, 'state-2'));
        log(`a second engine joined before chunk ${i} of ${n}`);
      } else if (i === Math.floor((2 * n) / 3)) {
        firstCounts = await recordCounts(firstEngine);
        const code = await firstEngine.stop();
        log(`the first engine stopped before chunk ${i} of ${n} (exit ${String(code)})`);
      }
    };
    let pausedAt = 0;
    const pause = async (i: number, n: number): Promise<void> => {
      if (i === Math.floor(n / 3)) {
        firstEngine.process.kill('SIGSTOP');
        pausedAt = Date.now();
        engine = await startEngine(brokers, join(tmp, 'state-2'));
        log(`the first engine stopped (SIGSTOP) and a second one started before chunk ${i} of ${n}`);
      } else if (i === Math.floor((2 * n) / 3)) {
        await sleep(Math.max(0, pausedAt + PAUSE_SESSION_MS + 4000 - Date.now()));
        firstEngine.process.kill('SIGCONT');
        log(`the first engine resumed (SIGCONT) before chunk ${i} of ${n}, ${((Date.now() - pausedAt) / 1000).toFixed(1)} s after it stopped`);
      }
    };
    await produce(kafka, serde, lines, Math.max(1, Math.ceil(lines.length / 50)), 100, mode === 'rebalance' ? regroup : mode === 'pause' ? pause : undefined);
  } else {
    await produce(kafka, serde, lines, 5000, 0);
    log(`produced ${lines.length} events`);
    engine = await startEngine(brokers, stateDir);
    if (mode === 'kill') {
      await sleep(Number(o['kill-after-sec']) * 1000);
      engine.process.kill('SIGKILL');
      log(`killed the engine after ${o['kill-after-sec']} s; starting a new one on an empty state directory`);
      engine = await startEngine(brokers, join(tmp, 'state-2'));
    }
  }
  // The trigger topic may only now exist (the engine creates it; a broker without auto-creation has none
  // before): read it from the beginning once it does.
  for (let i = 0; !(await admin.listTopics()).includes('crm.triggers.v1'); i++) {
    if (i >= 300) throw new Error('crm.triggers.v1 not created within 60 s of the engine starting');
    await sleep(200);
  }
  await consumer.subscribe({ topics: ['crm.triggers.v1'], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const d = await serde.decode('crm.triggers.v1', message.key, message.value);
      if (d.ok) got.push(d.value as Trigger);
      lastAt = Date.now();
    },
  });
  const quiet = Number(o['quiet-sec']) * 1000;
  const inputs = [...new Set(lines.map((l) => l.topic))].filter(isTopicName);
  let readySince: number | undefined;
  for (;;) {
    await sleep(1000);
    // Done: the inputs and the repartition topics read to their ends by the group, the last engine ready (every
    // task it was assigned open and restored), and no trigger for --quiet-sec. Input lag alone ended runs early:
    // an engine killed after committing every input offset (exactly-once commits them in its transactions) left
    // fan-outs in the repartition topics while the next engine still waited out the dead member's session and
    // restored, and the quiet time ran out meanwhile (5 of 9 runs killed after 8 s "lost" price-drop and
    // restock triggers that came some seconds later).
    const repartition = (await admin.listTopics()).filter((t) => t.startsWith(`kairos-${app}-`) && t.endsWith('-repartition'));
    const offsets = await admin.fetchOffsets({ groupId: `kairos-${app}`, topics: [...inputs, ...repartition] }).catch(() => []);
    let lag = 0;
    let internalLag = 0;
    for (const t of offsets) {
      const ends = await admin.fetchTopicOffsets(t.topic);
      const internal = repartition.includes(t.topic);
      for (const p of t.partitions) {
        const n = Math.max(0, Number(ends.find((e) => e.partition === p.partition)?.high ?? 0) - Math.max(0, Number(p.offset)));
        // Transaction markers count in the end offsets: a repartition partition written in transactions keeps a
        // lag of a marker or two after its last record.
        if (internal) internalLag += Math.max(0, n - 2);
        else lag += n;
      }
    }
    const ready = await engineReady(engine);
    if (!ready) readySince = undefined;
    else readySince ??= Date.now();
    // Quiet since the last trigger and since the engine became ready: a restore that outlasts --quiet-sec used to
    // end the run the moment the engine was ready, before it fired what its restored state had pending (an
    // at-least-once kill -9 run "missed" 176 price drops and 32 restocks that way, twenty-third session).
    const idle = Date.now() - Math.max(lastAt, readySince ?? Date.now());
    process.stderr.write(`[kafka-vs-replay] ${((Date.now() - started) / 1000).toFixed(0)} s: ${got.length} triggers read, input lag ${lag}, repartition lag ${internalLag} (beyond 2 a partition)${ready ? '' : ', engine not ready'}\r`);
    if (lag === 0 && internalLag === 0 && ready && idle > quiet) break;
    if (Date.now() - started > Number(o['timeout-sec']) * 1000) {
      log(`\ntimeout with input lag ${lag}`);
      break;
    }
  }
  process.stderr.write('\n');
  const last = await recordCounts(engine);
  if (mode === 'pause' && first !== undefined) {
    firstCounts = await recordCounts(first);
    log(`the first engine counted ${firstCounts?.lost ?? 'not read'} lost group membership(s) (kairos_group_membership_lost_total)`);
  }
  // Rebalance and pause modes: both engines' counts (rebalance: the first's read just before it stopped).
  const counts =
    (mode === 'rebalance' || mode === 'pause') && last !== undefined && firstCounts !== undefined
      ? { late: firstCounts.late + last.late, skipped: firstCounts.skipped + last.skipped, lost: firstCounts.lost + last.lost }
      : last;
  const late = counts?.late;
  log(
    `${mode === 'kill' ? 'the last engine: ' : mode === 'rebalance' || mode === 'pause' ? `both engines (first ${firstCounts === undefined ? 'not read' : `${firstCounts.late} late, ${firstCounts.skipped} fetched again`}): ` : ''}` +
      `records taken below their task's stream time (kairos_task_late_records_total) ${late ?? 'not read'}, ` +
      `fetched again though in the state (kairos_task_records_skipped_total) ${counts?.skipped ?? 'not read'}`,
  );
  await consumer.disconnect();
  await admin.disconnect();
  const want = new Map(expected.map((t) => [t.triggerId, t]));
  const have = new Map(got.map((t) => [t.triggerId, t]));
  const types = [...new Set([...expected, ...got].map((t) => t.type))].sort();
  const rows = types.map((type) => {
    const e = expected.filter((t) => t.type === type);
    const g = [...have.values()].filter((t) => t.type === type);
    return {
      type,
      replay: e.length,
      kafka: g.length,
      missing: e.filter((t) => !have.has(t.triggerId)).length,
      extra: g.filter((t) => !want.has(t.triggerId)).length,
      repeated: got.filter((t) => t.type === type).length - g.length,
    };
  });
  console.table(rows);
  const missing = expected.filter((t) => !have.has(t.triggerId));
  const extra = [...have.values()].filter((t) => !want.has(t.triggerId));
  for (const t of [...missing.slice(0, 5).map((t) => ['missing', t] as const), ...extra.slice(0, 5).map((t) => ['extra', t] as const)]) {
    log(`${t[0]}: ${t[1].type} ${t[1].customerId} at ${new Date(t[1].occurredAt).toISOString()} caused by ${t[1].causedBy.eventId}`);
  }
  const equal = missing.length === 0 && extra.length === 0;
  if (!equal && late !== undefined && late > 0 && mode !== 'after' && mode !== 'kill') {
    log(
      `${late} records were taken below their task's stream time while the input was produced live: a record older than one already ` +
        'processed came in a later fetch, e.g. the partitions of one produce request became readable at different times (the ' +
        "broker's append window: README, *Weak*, a record that a broker appends slowly). --settle-ms N bounds it by N ms (KAIROS_INPUT_SETTLE_MS).",
    );
  }
  console.log(JSON.stringify({ input: o.input, mode, guarantee: o.guarantee, serde: o.serde, settleMs: Number(o['settle-ms'] ?? 0), brokers: mock ? 'mock' : brokers, equal, lateRecords: late, skippedRecords: counts?.skipped, membershipLost: counts?.lost, rows, seconds: (Date.now() - started) / 1000 }));
  return equal ? 0 : 1;
}

const cleanup = async (): Promise<void> => {
  for (const c of children) c.kill('SIGKILL');
  await mock?.stop();
  rmSync(tmp, { recursive: true, force: true });
};
main()
  .then(async (code) => {
    await cleanup();
    process.exit(code);
  })
  .catch(async (err: unknown) => {
    log(`failed: ${(err as Error).stack ?? String(err)}`);
    await cleanup();
    process.exit(1);
  });
