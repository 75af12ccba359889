/**
 * What only a real Kafka broker shows: these tests run when KAIROS_TEST_REAL_BROKER names one (host:port; a TEST
 * broker: they create and delete their own topics) and are skipped otherwise. CI has only librdkafka's mock
 * cluster, which has no DeleteRecords; see README, *Kafka on a real broker*.
 */
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { isTopicName, type BasketEvent } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { KafkaRunner, type KafkaRunnerOptions } from '../../src/kafka/runner.js';
import { JsonSerde } from '../../src/kafka/serde.js';
import { sumMetric } from '../../load-tests/lib/common.js';
import { freshTestTopics } from '../../load-tests/lib/test-broker.js';
import { tempDir, until } from '../helpers.js';
import { produce, silent, testKafka } from '../support/kafka.js';

const broker = process.env.KAIROS_TEST_REAL_BROKER;
const skip = broker === undefined ? 'set KAIROS_TEST_REAL_BROKER=host:port to run it against a real (test) broker' : false;

/** A runner of a fresh application on the broker, committing and punctuating often; and 40 new customers' adds. */
function realRunner(app: string, stateDir: string, registry: Registry, extra: Partial<KafkaRunnerOptions> = {}): KafkaRunner {
  return new KafkaRunner({
    topology: buildTopology(resolveCampaigns({ guards: { enabled: false } }), app),
    kafka: testKafka([broker as string]),
    groupId: `kairos-${app}`,
    stateDir,
    serde: new JsonSerde(),
    logger: silent,
    maxWaitTimeInMs: 100,
    punctuateIntervalMs: 200,
    commitIntervalMs: 100,
    registry,
    ...extra,
  });
}

function adds(app: string): BasketEvent[] {
  const now = Date.now();
  return Array.from({ length: 40 }, (_, i) => ({
    eventId: `add-${app}-${i}`,
    customerId: `${app}-c${i}`,
    occurredAt: now + i,
    type: 'ITEM_ADDED',
    sku: `${app}-sku${i}`,
    quantity: 1,
    unitPrice: { amount: 1000 + i, currency: 'EUR' },
  }));
}

test('on a real broker, consumed repartition records are deleted (DeleteRecords), with no purge failure', { skip, timeout: 180_000 }, async () => {
  const brokers = [broker as string];
  const app = `kpurge-${randomUUID().slice(0, 8)}`;
  const dir = tempDir();
  const registry = new Registry();
  const kafka = testKafka(brokers);
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false } }), app);
  const byRecordKey = topology.repartitionTopics.find((t) => t.includes('basket-price-drop.by-sku'));
  assert.ok(byRecordKey, `no by-sku repartition topic in ${topology.repartitionTopics.join(', ')}`);
  // Every commit purges what it made durable (30 s by default).
  const runner = realRunner(app, dir.dir, registry, { purgeIntervalMs: 0 });
  const admin = kafka.admin();
  await admin.connect();
  try {
    // The contract's topics of earlier runs deleted, the inputs created anew with 4 partitions.
    await freshTestTopics(admin, { create: topology.sourceTopics.filter((t) => isTopicName(t)).map((topic) => ({ topic, numPartitions: 4 })) });
    await runner.start();
    const added = adds(app);
    await produce(kafka, 'shop.basket.v1', added.map((e) => ({ key: e.customerId, value: JSON.stringify(e) })));
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
  } finally {
    await runner.stop();
    const mine = (await admin.listTopics()).filter((t) => t.startsWith(`${app}-`));
    if (mine.length > 0) await admin.deleteTopics({ topics: mine }).catch(() => undefined);
    await admin.disconnect();
    dir.remove();
  }
});

test('on a real broker under exactly-once, the committed offsets of the repartition topics reach their end offsets, transaction markers included', { skip, timeout: 180_000 }, async () => {
  const app = `keos-${randomUUID().slice(0, 8)}`;
  const dir = tempDir();
  const kafka = testKafka([broker as string]);
  const runner = realRunner(app, dir.dir, new Registry(), { processingGuarantee: 'exactly_once', idempotent: true });
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false } }), app);
  const admin = kafka.admin();
  await admin.connect();
  try {
    await freshTestTopics(admin, { create: topology.sourceTopics.filter((t) => isTopicName(t)).map((topic) => ({ topic, numPartitions: 4 })) });
    await runner.start();
    const added = adds(app);
    await produce(kafka, 'shop.basket.v1', added.map((e) => ({ key: e.customerId, value: JSON.stringify(e) })));
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
  } finally {
    await runner.stop();
    const mine = (await admin.listTopics()).filter((t) => t.startsWith(`${app}-`));
    if (mine.length > 0) await admin.deleteTopics({ topics: mine }).catch(() => undefined);
    await admin.disconnect();
    dir.remove();
  }
});
