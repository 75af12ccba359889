/**
 * What a real broker showed and the mock cluster can reproduce (issue 13): records written by a producer with
 * another partitioner, and commits larger than a produce request may be.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { BasketEvent, Trigger } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { partitionOf } from '../../src/kafka/partitioner.js';
import { KafkaRunner, type KafkaRunnerOptions } from '../../src/kafka/runner.js';
import { sumMetric } from '../../load-tests/lib/common.js';
import { tempDir, until } from '../helpers.js';
import { collect, json, mockRunnerDefaults, produce, testKafka } from '../support/kafka.js';

let cluster: MockCluster;
before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  await cluster.stop();
});

const PARTITIONS = 4;

function runner(stateDir: string, app: string, extra: Partial<KafkaRunnerOptions> = {}): KafkaRunner {
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '2s' } } } }), app);
  return new KafkaRunner({
    topology,
    kafka: testKafka(cluster.brokers),
    groupId: `kairos-${app}`,
    stateDir,
    ...mockRunnerDefaults(),
    idleAdvanceMs: 500,
    ...extra,
  });
}

const added = (customerId: string, at: number, i = 0): BasketEvent => ({
  eventId: `add-${customerId}-${at}-${i}`,
  customerId,
  occurredAt: at,
  type: 'ITEM_ADDED',
  sku: `sku-${customerId}-${i}`,
  quantity: 1,
  unitPrice: { amount: 1000 + i, currency: 'EUR' },
});

test('records on a partition their key does not hash to (a producer with another partitioner) reach the key\'s task; the customer is found where the query API looks', async () => {
  const dir = tempDir();
  const registry = new Registry();
  const kafka = testKafka(cluster.brokers);
  const r = runner(dir.dir, 'kroute', { registry });
  try {
    await r.start();
    const now = Date.now();
    const customers = ['alice', 'bob', 'carl', 'dora', 'emil', 'fred'];
    // Every customer's first add on a wrong partition (as kcat's CRC32 would put some keys), the second on the right one.
    await produce(
      kafka,
      'shop.basket.v1',
      customers.flatMap((c) => [
        { key: c, value: JSON.stringify(added(c, now, 0)), partition: (partitionOf(c, PARTITIONS) + 1) % PARTITIONS },
        { key: c, value: JSON.stringify(added(c, now + 100, 1)), partition: partitionOf(c, PARTITIONS) },
      ]),
    );
    const got = await collect(kafka, ['crm.triggers.v1'], (all) => customers.every((c) => all.some((m) => json<Trigger>(m.message).customerId === c)), 30_000);
    const triggers = got.map((g) => json<Trigger>(g.message)).filter((t) => customers.includes(t.customerId));
    // One abandonment per customer, on the basket that holds both lines: the state was never split.
    assert.deepEqual(triggers.map((t) => t.customerId).sort(), [...customers].sort());
    for (const t of triggers) assert.equal((t.payload as { items: unknown[] }).items.length, 2, `${t.customerId}: both lines in one basket`);
    for (const g of got) assert.equal(g.partition, partitionOf(json<Trigger>(g.message).customerId, PARTITIONS));
    for (const c of customers) {
      const reader = await r.reader(partitionOf(c, PARTITIONS));
      assert.ok(reader, `task ${partitionOf(c, PARTITIONS)} runs here`);
    }
    const metric = await registry.getSingleMetric('kairos_rerouted_records_total')?.get();
    assert.equal(metric?.values.reduce((a, v) => a + v.value, 0), customers.length);
  } finally {
    await r.stop();
    dir.remove();
  }
});

test('a commit larger than one produce request is cut into requests below the bound; every output arrives once and state restores from the chunked changelog', async () => {
  const first = tempDir();
  const second = tempDir();
  const kafka = testKafka(cluster.brokers);
  const app = 'ksmall';
  // About three triggers per request: a commit of hundreds of triggers, audit records and changelog entries
  // needs many requests (the real broker refused such a commit whole at its default 1 MiB limit).
  const a = runner(first.dir, app, { maxRequestBytes: 4096, commitIntervalMs: 5000 });
  let b: KafkaRunner | undefined;
  try {
    await a.start();
    const now = Date.now();
    const customers = Array.from({ length: 150 }, (_, i) => `s${String(i).padStart(3, '0')}`);
    await produce(kafka, 'shop.basket.v1', customers.map((c) => ({ key: c, value: JSON.stringify(added(c, now)) })));
    const got = await collect(kafka, ['crm.triggers.v1'], (all) => new Set(all.map((m) => json<Trigger>(m.message).customerId).filter((c) => c.startsWith('s'))).size >= customers.length, 60_000);
    const mine = got.map((g) => json<Trigger>(g.message)).filter((t) => t.customerId.startsWith('s'));
    assert.deepEqual([...new Set(mine.map((t) => t.customerId))].sort(), customers);
    assert.equal(new Set(mine.map((t) => t.triggerId)).size, customers.length);
    await a.stop();
    // A new instance on an empty disk restores from the changelog written in many requests: every customer
    // was notified, so no basket is pending and nothing fires again.
    b = runner(second.dir, app, { maxRequestBytes: 4096 });
    await b.start();
    await until('restored', () => b?.ready === true, 30_000);
    for (const c of customers.slice(0, 10)) {
      const reader = await b.reader(partitionOf(c, PARTITIONS));
      assert.ok(reader);
    }
  } finally {
    await a.stop();
    await b?.stop();
    first.remove();
    second.remove();
  }
});

test('start-up asks the broker for every missing topic with Kafka Streams\' settings (repartition topics kept until purged, changelogs compacted, DLQ retention explicit), outputs included', async () => {
  const dir = tempDir();
  // A cluster of its own: on the shared one earlier tests have created the DLQ and output topics already.
  const own = await startMockCluster();
  const kafka = testKafka(own.brokers);
  // The mock cluster refuses CreateTopics and auto-creates instead: record what the runner asked for.
  const asked: { topic: string; numPartitions?: number; configEntries?: { name: string; value: string }[] }[] = [];
  const spy = new Proxy(kafka, {
    get(target, prop, receiver) {
      if (prop !== 'admin') return Reflect.get(target, prop, receiver) as unknown;
      return (...args: Parameters<typeof kafka.admin>) => {
        const admin = target.admin(...args);
        const create = admin.createTopics.bind(admin);
        admin.createTopics = (o) => {
          asked.push(...o.topics);
          return create(o);
        };
        return admin;
      };
    },
  });
  const r = runner(dir.dir, 'ktopics', { kafka: spy, dlqRetentionMs: 7 * 86_400_000, topicPartitions: 4 });
  try {
    await r.start();
    const cfg = (topic: string): Record<string, string> => Object.fromEntries((asked.find((t) => t.topic === topic)?.configEntries ?? []).map((e) => [e.name, e.value]));
    for (const t of ['ktopics-basket-price-drop.by-sku-repartition', 'ktopics-rerouted-repartition']) assert.equal(cfg(t)['retention.ms'], '-1', t);
    assert.equal(cfg('ktopics-basket-abandonment.baskets-changelog')['cleanup.policy'], 'compact');
    assert.equal(cfg('ktopics-_positions-changelog')['cleanup.policy'], 'compact');
    assert.equal(cfg('shop.basket.v1.dlq')['retention.ms'], String(7 * 86_400_000));
    const topics = asked.map((t) => t.topic);
    for (const t of ['crm.triggers.v1', 'crm.trigger-audit.v1', 'shop.catalog.v1']) assert.ok(topics.includes(t), `${t} asked for`);
  } finally {
    await r.stop();
    await own.stop();
    dir.remove();
  }
});

test('on the mock cluster (no DeleteRecords) the purge of consumed repartition records turns itself off at its first try: logged once, no failure counted', async () => {
  const dir = tempDir();
  const registry = new Registry();
  const kafka = testKafka(cluster.brokers);
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  // Every commit purges (30 s by default): without the check for an unsupported API, each would fail and count.
  const r = runner(dir.dir, 'kpurge', { registry, logger, purgeIntervalMs: 0, commitIntervalMs: 100 });
  try {
    await r.start();
    const now = Date.now();
    const customers = Array.from({ length: 12 }, (_, i) => `p${i}`);
    await produce(kafka, 'shop.basket.v1', customers.map((c, i) => ({ key: c, value: JSON.stringify(added(c, now + i)) })));
    // The adds reach the skus' tasks through the by-sku repartition topic; its offsets are committed with them.
    const admin = kafka.admin();
    await admin.connect();
    try {
      await until(
        'the by-sku repartition records consumed and committed',
        async () => {
          const [t] = await admin.fetchOffsets({ groupId: 'kairos-kpurge', topics: ['kpurge-basket-price-drop.by-sku-repartition'] });
          return (t?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0) >= customers.length;
        },
        60_000,
      );
    } finally {
      await admin.disconnect();
    }
    await until('a purge tried', () => lines.some((l) => l.includes('does not support DeleteRecords')), 30_000);
    // Commits go on (timers, the price index), and no further purge is tried.
    await new Promise((res) => setTimeout(res, 1000));
    assert.equal(lines.filter((l) => l.includes('does not support DeleteRecords')).length, 4, 'once per task');
    assert.equal(sumMetric(await registry.metrics(), 'kairos_repartition_purge_failed_total'), 0);
    assert.ok(!lines.some((l) => l.includes('deleting consumed repartition records failed')), lines.filter((l) => l.includes('purge') || l.includes('repartition')).join('\n'));
  } finally {
    await r.stop();
    dir.remove();
  }
});
