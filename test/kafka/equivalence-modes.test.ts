/**
 * Kafka == replay (DESIGN §4) for all four topologies with the guards, in three ways of running Kafka.
 *
 * One seeded shop history (test/support/shop-history.ts: ~150 customers with profiles, consents and time zones,
 * 20 skus of 10 products with price drops and rises, sell-outs and restocks, pageviews, baskets, checkouts,
 * orders, wishes by sku and by product; event times well in the past) goes through `kairos replay`, the
 * reference, and through the Kafka runner on librdkafka's mock cluster (a fresh cluster per test, so every mode
 * starts on new topics). Triggers (by triggerId) and audit records (by auditId) must be the same records, apart
 * from `causedBy.partition/offset` (Kafka coordinates in one runner, line numbers in the other). Kafka may repeat
 * a record with an equal id (at least once): the de-duplicated sets are compared and the repeats reported.
 *
 * - live: the runner runs first; the history is produced in event-time order in small chunks, each after the
 *   runner processed the one before, and each of one input topic and partition (so every task reads its inputs
 *   in event-time order whatever the fetch order, and no internal record overtakes an older input record; the
 *   internal repartition topics, written by other tasks, may arrive late — which the topologies must not mind);
 * - catch-up: the whole history is on the topics before the runner starts;
 * - kill -9: the history is on the topics, a `kairos start` child is killed with SIGKILL once part of the
 *   outputs is out, a second child with an empty state directory restores from the changelogs and is killed
 *   the same way once more outputs are out, and a third child on the first one's state directory (a local
 *   checkpoint behind the changelogs) restores the tail and finishes; the union of the outputs is compared;
 * - idle start: the runner starts on empty topics with a 1 s idle advance and waits, then a small history days
 *   in the past arrives;
 * - lost membership while live: a `kairos start` child is stopped with SIGSTOP past its session while an
 *   in-process runner takes every task, then resumed: it rejoins as a new member, holds its work until the
 *   coordinator answered it, and restores the tasks it gets back (fails without that hold: 155 of 159 triggers).
 *
 * Stream time: replay has one, Kafka one per task. The history ends with one "clock" record per partition at
 * T_END (keyed so it hashes to that partition), so every task reaches T_END and both runners fire exactly the
 * timers due by T_END; the wall-clock idle advance is kept out of the way (idleAdvanceMs far beyond the test)
 * except in the idle-start test, where timers due after T_END are minutes after it.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import type { Admin, Kafka, Producer } from 'kafkajs';
import { Registry } from 'prom-client';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { KafkaRunner } from '../../src/kafka/runner.js';
import { sumMetric } from '../../load-tests/lib/common.js';
import { sleep, tempDir, fastGroupEnv, until } from '../helpers.js';
import { mockRunnerDefaults, testKafka } from '../support/kafka.js';
import { metricValue } from '../support/dispatch.js';
import { startChild, type ChildInstance } from '../support/instance.js';
import { HOUR, INPUT_TOPICS, shopHistory, type Input, type ShopHistory } from '../support/shop-history.js';
import {
  assertEquivalent,
  groupLag,
  liveChunks,
  outputCollector,
  outputSummary,
  processedCount,
  produceAll,
  produceChunk,
  replayInputs,
  tally,
  untilCaughtUp,
  viaReplay,
  type Outputs,
} from '../support/equivalence.js';

const DAY = 24 * HOUR;
/** 06:00 UTC: New York, Los Angeles and London customers are in their quiet hours at first, Tokyo ones later. */
const T0 = Date.UTC(2026, 5, 1, 6, 0, 0);
const APP = 'equiv';
const GROUP = `kairos-${APP}`;
const TEST_TIMEOUT = 300_000;

/** The cap below: out-of-order fan-out triggers may change which trigger it suppresses (see assertEquivalent). */
const CAP = { max: 2, windowMs: 6 * 3_600_000 };
/** Guards on, short gaps and cooldowns, a tight cap, an experiment, an audience, small fan-out pages. */
const CAMPAIGNS = {
  defaults: { channels: ['push', 'email'], expiresAfter: '12h' },
  guards: { enabled: true, quietHours: { start: '22:00', end: '08:00' }, defaultTimezone: 'Europe/Berlin', cap: { max: 2, window: '6h' } },
  campaigns: {
    'basket-abandonment': {
      params: { inactivityGap: '30m', reentryCooldown: '2h' },
      experiment: { holdout: 0.1, variants: [{ name: 'A', weight: 1 }, { name: 'B', weight: 1 }] },
    },
    'browse-abandonment': { expiresAfter: '3h', audience: { segmentsNone: ['staff'] }, params: { sessionGap: '20m', minDistinctProducts: 2, reentryCooldown: '3h' } },
    'basket-price-drop': { params: { minDropPercent: 10, pageSize: 3 } },
    // No quota (maxPerUnit): with one, who gets the places depends on the order in which late wishes reach the
    // product task, by design (topologies/wishlist-restock/README.md, "Order-insensitivity"); the quota's own
    // rules are tested with shuffled delivery in test/topologies/wishlist-restock-order.test.ts.
    'wishlist-restock': { channels: ['email'], params: { cooldown: '4h', pageSize: 2 } },
  },
};

const topology = () => buildTopology(resolveCampaigns(CAMPAIGNS), APP);
/** Inputs and the repartition topics between tasks: the group has caught up when its offsets cover them all. */
const CONSUMED = [...INPUT_TOPICS, ...topology().repartitionTopics];

function inProcessRunner(kafka: Kafka, stateDir: string, o: { registry?: Registry; idleAdvanceMs?: number; maxWaitTimeInMs?: number; inputSettleMs?: number } = {}): KafkaRunner {
  return new KafkaRunner({
    topology: topology(),
    kafka,
    groupId: GROUP,
    stateDir,
    ...mockRunnerDefaults(),
    ...(o.maxWaitTimeInMs === undefined ? {} : { maxWaitTimeInMs: o.maxWaitTimeInMs }),
    ...(o.inputSettleMs === undefined ? {} : { inputSettleMs: o.inputSettleMs }),
    // Stream time follows the clock records, never the wall clock (but in the idle-start test).
    idleAdvanceMs: o.idleAdvanceMs ?? 1e12,
    ...(o.registry ? { registry: o.registry } : {}),
  });
}

/** The input topics, created empty (the mock cluster creates a topic on its first metadata request). */
async function createInputs(admin: Admin): Promise<void> {
  const meta = await admin.fetchTopicMetadata({ topics: [...INPUT_TOPICS] });
  for (const t of meta.topics) assert.equal(t.partitions.length, 4, `${t.name}: 4 partitions`);
}

/**
 * Produces `inputs` chunk by chunk (`chunking`, liveChunks by default), each after the runners (`counted`: their
 * registries, or a function reading a child's processed count) processed everything before it. Returns how many
 * chunks there were and how often the runner did not catch up within 30 s (then it goes on anyway).
 */
async function feedLive(
  producer: Producer,
  counted: readonly (Registry | (() => Promise<number>))[],
  inputs: readonly Input[],
  chunking: (inputs: readonly Input[]) => Input[][] = liveChunks,
  beforeChunk?: (index: number, chunks: number) => Promise<void>,
): Promise<{ chunks: number; slow: number }> {
  const chunks = chunking(inputs);
  // Several runners (a rebalance): their counts together (records a moved task processes again count twice).
  const processed = async (): Promise<number> =>
    (await Promise.all(counted.map((c) => (c instanceof Registry ? processedCount(c, INPUT_TOPICS) : c())))).reduce((a, b) => a + b, 0);
  let produced = await processed();
  let slow = 0;
  for (const [i, chunk] of chunks.entries()) {
    await beforeChunk?.(i, chunks.length);
    await produceChunk(producer, chunk);
    produced += chunk.length;
    const deadline = Date.now() + 30_000;
    while ((await processed()) < produced) {
      if (Date.now() > deadline) {
        slow++;
        break;
      }
      await sleep(15);
    }
    await sleep(5);
  }
  return { chunks: chunks.length, slow };
}

// ---------------------------------------------------------------------------------------------------------
// The history and its replay, shared by the modes

let h: ShopHistory;
let expected: Outputs;
let replayDir: { dir: string; remove: () => void };

before(async () => {
  replayDir = tempDir('kairos-equivalence-replay-');
  h = shopHistory({ t0: T0 });
  expected = await viaReplay(replayDir.dir, replayInputs(h), CAMPAIGNS);
});
after(() => replayDir.remove());

function describeHistory(x: ShopHistory): string {
  const skus = new Set([...x.catalog.keys()]).size;
  return `${x.customers.size} customers, ${skus} skus; ${x.events.length} events (${tally(x.events.map((e) => e.topic))}) + ${x.clock.length} clock records at T_END`;
}

test('replay (the reference) of the equivalence history exercises every trigger type and guard decision', (t) => {
  t.diagnostic(`history: ${describeHistory(h)}`);
  t.diagnostic(`replay ${outputSummary(expected)}`);
  const types = new Set(expected.triggers.map((x) => x.type));
  for (const type of ['BASKET_ABANDONED', 'CHECKOUT_ABANDONED', 'BROWSE_ABANDONED', 'BASKET_PRICE_DROP', 'WISHLIST_BACK_IN_STOCK']) {
    assert.ok(types.has(type as never), `replay sends no ${type}`);
  }
  const decisions = new Set(expected.audits.map((a) => `${a.decision}/${a.reason}`));
  for (const d of ['SENT/ok', 'HELD/quiet-hours', 'SUPPRESSED/no-consent', 'SUPPRESSED/cap', 'SUPPRESSED/cooldown', 'SUPPRESSED/holdout', 'SUPPRESSED/segment', 'SUPPRESSED/expired']) {
    assert.ok(decisions.has(d), `replay audits no ${d}`);
  }
  // Held triggers are released: some held one is sent later, and some is still held at T_END (Tokyo).
  const sent = new Set(expected.triggers.map((x) => x.triggerId));
  const held = expected.audits.filter((a) => a.decision === 'HELD');
  const decided = new Set(expected.audits.filter((a) => a.decision !== 'HELD').map((a) => a.triggerId));
  assert.ok(held.some((a) => sent.has(a.triggerId)), 'some held trigger is released and sent');
  assert.ok(held.some((a) => !decided.has(a.triggerId)), 'some trigger is still held at T_END');
  // Every trigger sent has its SENT audit, and nothing happens after T_END.
  const sentAudits = new Set(expected.audits.filter((a) => a.decision === 'SENT').map((a) => a.triggerId));
  assert.deepEqual([...sent].filter((id) => !sentAudits.has(id)), []);
  assert.ok([...expected.triggers, ...expected.audits].every((o) => o.occurredAt <= h.tEnd));
  // The edge customers: due at T_END fires, due after it does not.
  assert.ok(expected.audits.some((a) => a.customerId === 'edge-0'), 'an abandonment due exactly at T_END is decided');
  assert.ok(!expected.audits.some((a) => a.customerId === 'edge-1' || a.customerId === 'edge-2'), 'nothing due after T_END fires');
  // Fan-out waves run over several pages (pageSize 2 and 3).
  const restocks = tally(expected.audits.filter((a) => a.type === 'WISHLIST_BACK_IN_STOCK').map((a) => a.causedBy.eventId)).split(', ');
  assert.ok(restocks.some((r) => Number(r.split(' ')[1]) > 2), 'some restock wave has more than one page');
});

/**
 * A live mode: the runner runs first, then the history is produced chunk by chunk (`chunking`), each chunk after
 * the runner processed everything before it, on a mock cluster of `brokers` brokers.
 */
async function liveMode(t: TestContext, name: string, chunking: (inputs: readonly Input[]) => Input[][], brokers?: number, inputSettleMs?: number): Promise<void> {
  await mode(
    t,
    name,
    async ({ kafka, admin, dir, producer }) => {
      const registry = new Registry();
      await createInputs(admin);
      // The mock answers a fetch with no data only after its wait: a short one, as up to 1,595 chunks wait for it.
      const runner = inProcessRunner(kafka, join(dir, 'state'), { registry, maxWaitTimeInMs: 10, ...(inputSettleMs === undefined ? {} : { inputSettleMs }) });
      const out = await outputCollector(kafka);
      try {
        await runner.start();
        const started = performance.now();
        const fed = await feedLive(producer, [registry], replayInputs(h), chunking);
        t.diagnostic(`${name}: ${fed.chunks} chunks produced in ${((performance.now() - started) / 1000).toFixed(1)} s${fed.slow > 0 ? `; the runner did not catch up with ${fed.slow} chunk(s) within 30 s` : ''}`);
        const waited = await untilCaughtUp(admin, GROUP, CONSUMED, out);
        return { out, waited };
      } finally {
        await runner.stop();
        await out.stop();
      }
    },
    brokers,
  );
}

test('live: the runner runs first, the history arrives in event-time order in small chunks — Kafka == replay', { timeout: TEST_TIMEOUT }, async (t) => {
  await liveMode(t, 'live', liveChunks);
});

/** Consecutive inputs (event-time order) in chunks of up to 25, whatever their topic and partition. */
function mixedChunks(inputs: readonly Input[]): Input[][] {
  const chunks: Input[][] = [];
  for (let i = 0; i < inputs.length; i += 25) chunks.push(inputs.slice(i, i + 25));
  return chunks;
}

test('live on one broker: each chunk is one produce request over several inputs, fetched in one response — Kafka == replay', { timeout: TEST_TIMEOUT }, async (t) => {
  // One broker leads every partition, so a chunk's records of all inputs come back in one fetch response, which
  // kafkajs hands on batch by batch: the runner keeps them in event-time order (the FETCH event marks the inputs
  // with records in it behind). Several brokers fetch them in separate responses: the next test.
  await liveMode(t, 'live, one broker', mixedChunks, 1);
});

test('live on three brokers: a chunk over several inputs is one produce request per broker, fetched in separate responses — Kafka == replay', { timeout: TEST_TIMEOUT }, async (t) => {
  // A task's inputs are led by different brokers, so a chunk comes back in several responses, in no fixed order:
  // a record waits until every input the task has nothing buffered from was confirmed at its end by a fetch sent
  // after the record came (partition-group.ts).
  await liveMode(t, 'live, three brokers', mixedChunks, 3);
});

test('live on three brokers with an input settle time (KAIROS_INPUT_SETTLE_MS 25): records wait for a fetch begun 25 ms after they came — Kafka == replay', { timeout: TEST_TIMEOUT }, async (t) => {
  // The bound for a broker still appending a producer request's other partitions (fetch-log.ts); here it must
  // hold records back without losing, repeating or reordering any, and release each without waiting for more input.
  await liveMode(t, 'live, three brokers, settle 25 ms', mixedChunks, 3, 25);
});

test('rebalance while live, one broker: a second instance joins after a third of the chunks and the first leaves after two thirds — tasks move with their changelogs while input flows, Kafka == replay', { timeout: TEST_TIMEOUT }, async (t) => {
  // Tasks open while chunks over several inputs keep coming (each one produce request, one fetch response):
  // batches fetched before a task read its end offsets, records fetched while it restores, a new owner's first
  // fetches. Two in-process runners in one group, each with its own state directory.
  await mode(
    t,
    'rebalance while live',
    async ({ kafka, admin, dir, producer }) => {
      await createInputs(admin);
      const registries = [new Registry(), new Registry()] as const;
      const first = inProcessRunner(kafka, join(dir, 'state-a'), { registry: registries[0], maxWaitTimeInMs: 10 });
      const second = inProcessRunner(kafka, join(dir, 'state-b'), { registry: registries[1], maxWaitTimeInMs: 10 });
      const out = await outputCollector(kafka);
      let firstRunning = false;
      let secondRunning = false;
      try {
        await first.start();
        firstRunning = true;
        const started = performance.now();
        const fed = await feedLive(producer, registries, replayInputs(h), mixedChunks, async (i, n) => {
          if (i === Math.floor(n / 3)) {
            await second.start();
            secondRunning = true;
            t.diagnostic(`rebalance while live: the second instance joined before chunk ${i} of ${n}`);
          } else if (i === Math.floor((2 * n) / 3)) {
            await first.stop();
            firstRunning = false;
            t.diagnostic(`rebalance while live: the first instance left before chunk ${i} of ${n}`);
          }
        });
        t.diagnostic(`rebalance while live: ${fed.chunks} chunks produced in ${((performance.now() - started) / 1000).toFixed(1)} s${fed.slow > 0 ? `; the runners did not catch up with ${fed.slow} chunk(s) within 30 s` : ''}`);
        const waited = await untilCaughtUp(admin, GROUP, CONSUMED, out);
        const late = await Promise.all(registries.map((r) => metricValue(r, 'kairos_task_late_records_total')));
        const skipped = await Promise.all(registries.map((r) => metricValue(r, 'kairos_task_records_skipped_total')));
        t.diagnostic(`rebalance while live: records taken below their task's stream time ${late.join(' + ')}; fetched again though in the state ${skipped.join(' + ')}`);
        return { out, waited };
      } finally {
        if (firstRunning) await first.stop();
        if (secondRunning) await second.stop();
        await out.stop();
      }
    },
    1,
  );
});

test('a lost membership while live: the first instance (a child) is stopped with SIGSTOP past its session while a second takes every task, then resumed — it rejoins as a new member, restores the tasks it gets back, Kafka == replay', { timeout: TEST_TIMEOUT }, async (t) => {
  // The first instance stops with work of its own in flight (batches fetched, changes and outputs not yet
  // committed); resumed, it must neither process nor commit before the coordinator has answered it, and every task
  // it gets back is restored from the changelog the second instance wrote meanwhile.
  await mode(
    t,
    'lost membership while live',
    async ({ kafka, admin, dir, producer, cluster }) => {
      await createInputs(admin);
      const campaigns = join(dir, 'campaigns.json');
      writeFileSync(campaigns, JSON.stringify(CAMPAIGNS));
      const first = await startChild({
        ...fastGroupEnv(cluster.brokers.join(',')),
        KAFKA_MAX_WAIT_MS: '10',
        KAIROS_APPLICATION_ID: APP,
        KAIROS_STATE_DIR: join(dir, 'state-a'),
        KAIROS_CAMPAIGNS: campaigns,
        KAIROS_HTTP_PORT: '0',
        KAIROS_PUNCTUATE_MS: '200',
        KAIROS_IDLE_ADVANCE_MS: String(1e12),
        KAIROS_LOG_LEVEL: process.env.KAIROS_TEST_CHILD_LOG ?? 'warn',
      });
      const metrics = async (): Promise<string> => (await fetch(`http://${first.address}/metrics`)).text();
      // The child's processed count, read from its /metrics; while it is stopped, the last one read.
      let paused = false;
      let firstProcessed = 0;
      const counting = async (): Promise<number> => {
        if (!paused) {
          const text = await metrics();
          firstProcessed = INPUT_TOPICS.reduce((n, topic) => n + sumMetric(text, 'kairos_records_processed_total', { topic }), 0);
        }
        return firstProcessed;
      };
      const registry = new Registry();
      const second = inProcessRunner(kafka, join(dir, 'state-b'), { registry, maxWaitTimeInMs: 10 });
      let secondRunning = false;
      const out = await outputCollector(kafka);
      try {
        const fed = await feedLive(producer, [counting, registry], replayInputs(h), mixedChunks, async (i, n) => {
          if (i === Math.floor(n / 3)) {
            paused = true;
            first.child.kill('SIGSTOP');
            await second.start();
            secondRunning = true;
            // Once the stopped member's session expired (6 s) the group completes the join: every task is the second's.
            await until('the second instance to hold every task', () => second.ready && second.assignedPartitions.length === 4, 60_000, 50);
            t.diagnostic(`lost membership: the first instance stopped before chunk ${i} of ${n}; the second holds every task`);
          } else if (i === Math.floor((2 * n) / 3)) {
            first.child.kill('SIGCONT');
            paused = false;
            await until('the first instance to rejoin and take tasks back', () => second.assignedPartitions.length < 4, 60_000, 50);
            t.diagnostic(`lost membership: the first instance resumed before chunk ${i} of ${n}; the second kept ${second.assignedPartitions.join(', ')}`);
          }
        });
        t.diagnostic(`lost membership: ${fed.chunks} chunks${fed.slow > 0 ? `; the runners did not catch up with ${fed.slow} chunk(s) within 30 s` : ''}`);
        const waited = await untilCaughtUp(admin, GROUP, CONSUMED, out);
        const text = await metrics();
        assert.equal(sumMetric(text, 'kairos_group_membership_lost_total'), 1, 'the first instance counted its lost membership');
        t.diagnostic(`lost membership: records restored by the first instance ${sumMetric(text, 'kairos_restore_records_total')}, fetched again though in the state ${sumMetric(text, 'kairos_task_records_skipped_total')}`);
        return { out, waited };
      } catch (err) {
        t.diagnostic(`first instance's log:\n${first.stderr().slice(-4000)}`);
        throw err;
      } finally {
        if (secondRunning) await second.stop();
        first.child.kill('SIGCONT');
        first.child.kill('SIGTERM');
        await first.exited;
        await out.stop();
      }
    },
    1,
  );
});

test('catch-up: the whole history is on the topics before the runner starts — Kafka == replay', { timeout: TEST_TIMEOUT }, async (t) => {
  await mode(t, 'catch-up', async ({ kafka, admin, dir, producer }) => {
    await produceAll(producer, replayInputs(h));
    const runner = inProcessRunner(kafka, join(dir, 'state'));
    const out = await outputCollector(kafka);
    try {
      await runner.start();
      const waited = await untilCaughtUp(admin, GROUP, CONSUMED, out);
      return { out, waited };
    } finally {
      await runner.stop();
      await out.stop();
    }
  });
});

test('kill -9 mid catch-up twice (restarts on an empty and on a stale state directory) — Kafka == replay', { timeout: TEST_TIMEOUT }, async (t) => {
  await mode(t, 'kill -9', async ({ kafka, admin, dir, producer, cluster }) => {
    await produceAll(producer, replayInputs(h));
    const campaigns = join(dir, 'campaigns.json');
    writeFileSync(campaigns, JSON.stringify(CAMPAIGNS));
    const env = (stateDir: string): Record<string, string> => ({
      ...fastGroupEnv(cluster.brokers.join(',')),
      KAIROS_APPLICATION_ID: APP,
      KAIROS_STATE_DIR: stateDir,
      KAIROS_CAMPAIGNS: campaigns,
      KAIROS_HTTP_PORT: '0',
      KAIROS_PUNCTUATE_MS: '200',
      KAIROS_IDLE_ADVANCE_MS: String(1e12),
      KAIROS_LOG_LEVEL: process.env.KAIROS_TEST_CHILD_LOG ?? 'warn',
    });
    const out = await outputCollector(kafka);
    const children: ChildInstance[] = [];
    try {
      // Each killed instance dies as soon as outputs beyond those before it are out (outputs are written before
      // state and offsets are committed, so the kill lands in or just after a commit), or after 60 s.
      const killMidway = async (stateDir: string, label: string): Promise<void> => {
        const child = await startChild(env(stateDir));
        children.push(child);
        const since = Date.now();
        const before = out.audits.length;
        while (out.audits.length <= before && Date.now() - since < 60_000 && child.child.exitCode === null) await sleep(20);
        child.child.kill('SIGKILL');
        await child.exited;
        const lag = await groupLag(admin, GROUP, CONSUMED);
        t.diagnostic(
          `kill -9: ${label} killed ${((Date.now() - since) / 1000).toFixed(1)} s after it was ready, with ${out.triggers.length} triggers and ${out.audits.length} audit records out; ` +
            `${lag.total} input/repartition records not committed`,
        );
        assert.equal(child.child.signalCode, 'SIGKILL', `${label} was killed, not ended:\n${child.stderr().slice(-3000)}`);
      };
      await killMidway(join(dir, 'state-1'), 'the first instance');
      await killMidway(join(dir, 'state-2'), 'the second instance (empty state directory)');
      const last = await startChild(env(join(dir, 'state-1')));
      children.push(last);
      const waited = await untilCaughtUp(admin, GROUP, CONSUMED, out, { timeoutMs: 150_000 });
      last.child.kill('SIGTERM');
      const code = await last.exited;
      if (!waited.ok || code !== 0) t.diagnostic(`third instance (first one's state directory; exit ${String(code)}):\n${last.stderr().slice(-4000)}`);
      return { out, waited };
    } finally {
      for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
      await out.stop();
    }
  });
});

test('idle start: the runner waits on empty topics (1 s idle advance), then older events arrive — Kafka == replay', { timeout: TEST_TIMEOUT }, async (t) => {
  // A small history three days before today's 06:00 UTC (the same quiet-hour pattern as the main one).
  const t0 = Math.floor(Date.now() / DAY) * DAY - 3 * DAY + 6 * HOUR;
  const small = shopHistory({ t0, customers: 30, products: 4, seed: 0x1d1e });
  const dir = tempDir('kairos-equivalence-idle-');
  const cluster = await startMockCluster();
  const kafka = testKafka(cluster.brokers);
  const admin = kafka.admin();
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  try {
    const reference = await viaReplay(join(dir.dir), replayInputs(small), CAMPAIGNS);
    t.diagnostic(`history: ${describeHistory(small)}, from ${new Date(t0).toISOString()}; replay ${outputSummary(reference)}`);
    assert.ok(reference.triggers.length > 0);
    await admin.connect();
    await producer.connect();
    await createInputs(admin);
    const registry = new Registry();
    const runner = inProcessRunner(kafka, join(dir.dir, 'state'), { registry, idleAdvanceMs: 1000, maxWaitTimeInMs: 10 });
    const out = await outputCollector(kafka);
    let waited: { ok: boolean; text: string };
    try {
      await runner.start();
      await sleep(3000); // every task idle for three idle-advance periods before its first record
      const fed = await feedLive(producer, [registry], replayInputs(small));
      t.diagnostic(`idle start: ${fed.chunks} chunks produced after 3 s idle${fed.slow > 0 ? `; the runner did not catch up with ${fed.slow} chunk(s) within 30 s` : ''}`);
      waited = await untilCaughtUp(admin, GROUP, CONSUMED, out);
    } finally {
      await runner.stop();
      await out.stop();
    }
    assertEquivalent('idle start', small, reference, out, waited, (s) => t.diagnostic(s), CAP);
  } finally {
    await producer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    await cluster.stop();
    dir.remove();
  }
});

/** A fresh mock cluster, a producer and an admin for one mode; compares what the mode's runner wrote with replay. */
async function mode(
  t: TestContext,
  name: string,
  body: (x: { kafka: Kafka; admin: Admin; producer: Producer; dir: string; cluster: MockCluster }) => Promise<{ out: Outputs; waited: { ok: boolean; text: string } }>,
  brokers?: number,
): Promise<void> {
  const dir = tempDir(`kairos-equivalence-${name.replace(/\W+/g, '-')}-`);
  const cluster = await startMockCluster(brokers === undefined ? {} : { brokers });
  const kafka = testKafka(cluster.brokers);
  const admin = kafka.admin();
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  const started = performance.now();
  try {
    await admin.connect();
    await producer.connect();
    const { out, waited } = await body({ kafka, admin, producer, dir: dir.dir, cluster });
    t.diagnostic(`${name}: ${((performance.now() - started) / 1000).toFixed(1)} s in all`);
    assertEquivalent(name, h, expected, out, waited, (s) => t.diagnostic(s), CAP);
  } finally {
    await producer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    await cluster.stop();
    dir.remove();
  }
}
