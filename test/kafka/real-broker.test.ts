/**
 * What only a real Kafka broker shows: these tests run when KAIROS_TEST_REAL_BROKER names one (host:port; a TEST
 * broker: they create and delete their own topics) and are skipped otherwise. CI has only librdkafka's mock
 * cluster, which has no DeleteRecords and runs no transactions; see README, *Kafka on a real broker*.
 */
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import assert from 'node:assert/strict';
import type { Admin } from 'kafkajs';
import { Registry } from 'prom-client';
import { isTopicName, type BasketEvent } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { stringCodec } from '../../src/engine/api/codecs.js';
import { keyValueStore } from '../../src/engine/api/stores.js';
import { TaskState } from '../../src/engine/state/task-state.js';
import { producerSend, restoreFromChangelog } from '../../src/kafka/changelog.js';
import { KafkaRunner, type KafkaRunnerOptions } from '../../src/kafka/runner.js';
import { JsonSerde } from '../../src/kafka/serde.js';
import { sumMetric } from '../../load-tests/lib/common.js';
import { freshTestTopics } from '../../load-tests/lib/test-broker.js';
import { tempDir, until } from '../helpers.js';
import { produce, silent, testKafka } from '../support/kafka.js';

const broker = process.env.KAIROS_TEST_REAL_BROKER;
const skip = broker === undefined ? 'set KAIROS_TEST_REAL_BROKER=host:port to run it against a real (test) broker' : false;

interface RealRun {
  readonly app: string;
  readonly admin: Admin;
  readonly registry: Registry;
  readonly topology: ReturnType<typeof buildTopology>;
  /** The 40 new customers' adds, produced once the runner started. */
  readonly added: readonly BasketEvent[];
}

/**
 * A runner of a fresh application (`<prefix>-<random>`) on the broker, committing and punctuating often, on the
 * contract's topics created anew (4 partitions), with 40 new customers' ITEM_ADDED produced; stopped and its
 * internal topics deleted after `body`.
 */
async function withRealRunner(prefix: string, extra: Partial<KafkaRunnerOptions>, body: (r: RealRun) => Promise<void>): Promise<void> {
  const app = `${prefix}-${randomUUID().slice(0, 8)}`;
  const dir = tempDir();
  const registry = new Registry();
  const kafka = testKafka([broker as string]);
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false } }), app);
  const runner = new KafkaRunner({
    topology,
    kafka,
    groupId: `kairos-${app}`,
    stateDir: dir.dir,
    serde: new JsonSerde(),
    logger: silent,
    maxWaitTimeInMs: 100,
    punctuateIntervalMs: 200,
    commitIntervalMs: 100,
    registry,
    ...extra,
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    // The contract's topics of earlier runs deleted, the inputs created anew with 4 partitions.
    await freshTestTopics(admin, { create: topology.sourceTopics.filter((t) => isTopicName(t)).map((topic) => ({ topic, numPartitions: 4 })) });
    await runner.start();
    const now = Date.now();
    const added: BasketEvent[] = Array.from({ length: 40 }, (_, i) => ({
      eventId: `add-${app}-${i}`,
      customerId: `${app}-c${i}`,
      occurredAt: now + i,
      type: 'ITEM_ADDED',
      sku: `${app}-sku${i}`,
      quantity: 1,
      unitPrice: { amount: 1000 + i, currency: 'EUR' },
    }));
    await produce(kafka, 'shop.basket.v1', added.map((e) => ({ key: e.customerId, value: JSON.stringify(e) })));
    await body({ app, admin, registry, topology, added });
  } finally {
    await runner.stop();
    const mine = (await admin.listTopics()).filter((t) => t.startsWith(`${app}-`));
    if (mine.length > 0) await admin.deleteTopics({ topics: mine }).catch(() => undefined);
    await admin.disconnect();
    dir.remove();
  }
}

test('on a real broker, consumed repartition records are deleted (DeleteRecords), with no purge failure', { skip, timeout: 180_000 }, () =>
  // Every commit purges what it made durable (30 s by default).
  withRealRunner('kpurge', { purgeIntervalMs: 0 }, async ({ admin, registry, topology, added }) => {
    const byRecordKey = topology.repartitionTopics.find((t) => t.includes('basket-price-drop.by-sku'));
    assert.ok(byRecordKey, `no by-sku repartition topic in ${topology.repartitionTopics.join(', ')}`);
    // Each add goes to the sku's task through the repartition topic; once committed, its records are deleted.
    let offsets: { partition: number; low: string; high: string }[] = [];
    await until(
      'the by-sku repartition records consumed and deleted',
      async () => {
        try {
          offsets = await admin.fetchTopicOffsets(byRecordKey);
        } catch {
          return false; // the topic's leaders not known to this client yet
        }
        const written = offsets.reduce((n, o) => n + Number(o.high), 0);
        return written >= added.length && offsets.every((o) => o.low === o.high);
      },
      120_000,
      500,
    );
    assert.equal(sumMetric(await registry.metrics(), 'kairos_repartition_purge_failed_total'), 0);
  }));

test('on a real broker under exactly-once, the committed offsets of the repartition topics reach their end offsets, transaction markers included', { skip, timeout: 180_000 }, () =>
  withRealRunner('keos', { processingGuarantee: 'exactly_once', idempotent: true }, async ({ app, admin, topology, added }) => {
    // Each commit of a task ends its transaction with a marker on every repartition partition it wrote: the tasks
    // reading them must commit past it, else the group's lag there never reaches 0.
    let short: string[] = [];
    await until(
      'every repartition partition committed to its end',
      async () => {
        short = [];
        let written = 0;
        for (const topic of topology.repartitionTopics) {
          let ends: { partition: number; high: string }[];
          try {
            ends = await admin.fetchTopicOffsets(topic);
          } catch {
            return false; // the topic's leaders not known to this client yet
          }
          const committed = (await admin.fetchOffsets({ groupId: `kairos-${app}`, topics: [topic] }))[0]?.partitions ?? [];
          for (const e of ends) {
            written += Number(e.high);
            const c = committed.find((p) => p.partition === e.partition)?.offset ?? '-1';
            if (Number(e.high) > 0 && c !== e.high) short.push(`${topic}[${e.partition}] committed ${c}, end ${e.high}`);
          }
        }
        return written >= added.length && short.length === 0;
      },
      60_000,
      500,
    ).catch((err: unknown) => assert.fail(`${String(err)}: ${short.join('; ')}`));
  }));

test('on a real broker, an exactly-once restore ends on a changelog whose first owner never committed: its aborted transactions, the first removed by the log cleaner, only markers and aborted records left', { skip, timeout: 180_000 }, async () => {
  const app = `kclean-${randomUUID().slice(0, 8)}`;
  const kafka = testKafka([broker as string]);
  const admin = kafka.admin();
  const producer = kafka.producer({ transactionalId: `${app}-tx`, maxInFlightRequests: 1, idempotent: true });
  await Promise.all([admin.connect(), producer.connect()]);
  const target = tempDir();
  const topics = [`${app}-kv-changelog`, `${app}-_positions-changelog`];
  try {
    // Segments that roll after 1 s and a cleaner that compacts them at once (the runner's changelogs keep the
    // broker's defaults, under which the cleaner reaches a log once its segment rolls).
    const configEntries = Object.entries({ 'cleanup.policy': 'compact', 'segment.ms': '1000', 'min.cleanable.dirty.ratio': '0.01', 'delete.retention.ms': '0', 'min.compaction.lag.ms': '0' }).map(([name, value]) => ({ name, value }));
    await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 1, configEntries })), waitForLeaders: true });
    // The first owner's commits, each aborted (killed before its transaction ended): the second rolls the segment
    // that holds the first, which the cleaner then empties. A fetch from 0 gets the first abort marker, the
    // second transaction's records (aborted) and its marker, and no record to hand on.
    for (let round = 0; round < 2; round++) {
      if (round > 0) await delay(1500);
      const txn = await producer.transaction();
      const messages = Array.from({ length: 30 }, (_, i) => ({ key: `k${round}-${i}`, value: 'never committed', partition: 0 }));
      await producerSend(txn)([{ topic: topics[0] as string, messages }, { topic: topics[1] as string, messages: messages.slice(0, 15) }]);
      await txn.abort();
    }
    // The cleaner looks every 15 s (nothing a client can read says when it has cleaned: compaction keeps the log
    // start at 0), so a fixed wait; then reading from 0 finds the first abort marker first.
    await delay(20_000);
    const fresh = await TaskState.open({ dir: target.dir, taskId: 'task-0', stores: [keyValueStore('kv', stringCodec)] });
    try {
      const restore = restoreFromChangelog({ kafka, admin, state: fresh, applicationId: app, stores: ['kv', '_positions'], partition: 0, groupId: app, logger: silent, transactional: true });
      await Promise.race([restore, delay(60_000).then(() => assert.fail('the restore did not end'))]);
      assert.equal(await fresh.get('kv', 'k1-0'), undefined);
      assert.equal(fresh.position('shop.basket.v1', 0), undefined);
    } finally {
      await fresh.close();
    }
  } finally {
    await producer.disconnect();
    await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.disconnect();
    target.remove();
  }
});
