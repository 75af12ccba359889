import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ConsumerConfig, Kafka, ProducerBatch, ProducerConfig, TopicPartitionOffsetAndMetadata } from 'kafkajs';
import { Registry } from 'prom-client';
import type { BasketEvent, OrderEvent, PageviewEvent, Trigger } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { partitionOf } from '../../src/kafka/partitioner.js';
import type { FetchEventPayload } from '../../src/kafka/kafkajs-preload.js';
import { KafkaRunner, type KafkaRunnerOptions } from '../../src/kafka/runner.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bytesFingerprint } from '../../src/util/crc32c.js';
import { fastGroupEnv, sleep, tempDir, until } from '../helpers.js';
import { startChild } from '../support/instance.js';
import { metricValue } from '../support/dispatch.js';
import { appendTransactionMarker, collect, json, mockRunnerDefaults, produce, testKafka } from '../support/kafka.js';

let cluster: MockCluster;
before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  await cluster.stop();
});

function runner(stateDir: string, extra: Partial<KafkaRunnerOptions> = {}): KafkaRunner {
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '3s' } } } }), extra.topology?.applicationId ?? 'kt');
  return new KafkaRunner({
    topology,
    kafka: testKafka(cluster.brokers),
    stateDir,
    ...mockRunnerDefaults(),
    idleAdvanceMs: 500,
    ...extra,
  });
}

const added = (customerId: string, at: number): BasketEvent => ({
  eventId: `add-${customerId}-${at}`,
  customerId,
  occurredAt: at,
  type: 'ITEM_ADDED',
  sku: `sku-${customerId}`,
  quantity: 1,
  unitPrice: { amount: 1000, currency: 'EUR' },
});

test('produce → engine → triggers through librdkafka\'s mock cluster; orders cancel; bad records go to the DLQ with reasons', async () => {
  const dir = tempDir();
  const registry = new Registry();
  const r = runner(dir.dir, { registry, groupId: 'kairos-kt-basic' });
  const kafka = testKafka(cluster.brokers);
  try {
    await r.start();
    const now = Date.now();
    const customers = Array.from({ length: 20 }, (_, i) => `c${i}`);
    await produce(kafka, 'shop.basket.v1', [
      ...customers.map((c) => ({ key: c, value: JSON.stringify(added(c, now)) })),
      { key: 'c99', value: '{"not json' },
      { key: 'c98', value: JSON.stringify({ ...added('c98', now), quantity: -1 }) },
    ]);
    const orders: OrderEvent[] = customers.slice(0, 5).map((c) => ({
      eventId: `o-${c}`,
      orderId: `ord-${c}`,
      customerId: c,
      occurredAt: now + 100,
      items: [{ sku: `sku-${c}`, productId: 'p', quantity: 1, unitPrice: { amount: 1000, currency: 'EUR' } }],
    }));
    await produce(kafka, 'shop.orders.v1', orders.map((o) => ({ key: o.customerId, value: JSON.stringify(o) })));

    const got = await collect(kafka, ['crm.triggers.v1', 'shop.basket.v1.dlq'], (all) => all.length >= 17);
    const triggers = got.filter((g) => g.topic === 'crm.triggers.v1').map((g) => json<Trigger>(g.message));
    assert.deepEqual(triggers.map((t) => t.customerId).sort(), customers.slice(5).sort(), 'every basket without an order is abandoned, once');
    assert.ok(triggers.every((t) => t.type === 'BASKET_ABANDONED' && t.causedBy.topic === 'shop.basket.v1'));
    for (const g of got.filter((x) => x.topic === 'crm.triggers.v1')) {
      const t = json<Trigger>(g.message);
      assert.equal(g.message.key?.toString(), t.customerId, 'triggers are keyed by customerId');
    }
    const dead = got.filter((g) => g.topic === 'shop.basket.v1.dlq');
    assert.deepEqual(dead.map((d) => d.message.headers?.['kairos-error-reason']?.toString()).sort(), ['invalid', 'not-json']);
    assert.ok(dead.some((d) => d.message.value?.toString() === '{"not json'), 'the original bytes are kept');
    const metrics = await registry.metrics();
    assert.match(metrics, /kairos_dlq_records_total\{topic="shop.basket.v1"\} 2/);
    assert.match(metrics, /kairos_records_failed_total\{topic="shop.basket.v1",reason="not-json"\} 1/);
    assert.ok(r.ready);
  } finally {
    await r.stop();
    dir.remove();
  }
});

test('a new instance with an empty disk restores baskets and timers from the changelog and fires what the first one left pending', async () => {
  const first = tempDir();
  const second = tempDir();
  const kafka = testKafka(cluster.brokers);
  const app = 'krestore';
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '6s' } } } }), app);
  const a = runner(first.dir, { topology, groupId: 'kairos-krestore' });
  let b: KafkaRunner | undefined;
  try {
    await a.start();
    const now = Date.now();
    const customers = Array.from({ length: 12 }, (_, i) => `r${i}`);
    await produce(kafka, 'shop.basket.v1', customers.map((c) => ({ key: c, value: JSON.stringify(added(c, now)) })));
    // Wait until the first instance has committed all of them (its changelog holds the baskets).
    await collect(kafka, [`${app}-basket-abandonment.baskets-changelog`], (all) => new Set(all.map((m) => m.message.key?.toString())).size >= 12, 20_000);
    await a.stop();
    b = runner(second.dir, { topology, groupId: 'kairos-krestore' });
    await b.start();
    const got = await collect(kafka, ['crm.triggers.v1'], (all) => all.filter((m) => json<Trigger>(m.message).customerId.startsWith('r')).length >= 12, 30_000);
    const mine = got.map((g) => json<Trigger>(g.message)).filter((t) => t.customerId.startsWith('r'));
    assert.deepEqual(mine.map((t) => t.customerId).sort(), customers.sort());
    assert.equal(new Set(mine.map((t) => t.triggerId)).size, 12, 'no duplicates');
  } finally {
    await a.stop();
    await b?.stop();
    first.remove();
    second.remove();
  }
});

test('a runner restarted on its state dir loads the keys of each fetched batch with one multi-get per store before processing it', async () => {
  const dir = tempDir();
  const kafka = testKafka(cluster.brokers);
  const app = 'kprefetch';
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '30s' } } } }), app);
  const customers = Array.from({ length: 15 }, (_, i) => `pf${i}`);
  const now = Date.now();
  const first = runner(dir.dir, { topology, groupId: 'kairos-kprefetch' });
  let second: KafkaRunner | undefined;
  try {
    await first.start();
    await produce(kafka, 'shop.basket.v1', customers.map((c) => ({ key: c, value: JSON.stringify(added(c, now)) })));
    await collect(kafka, [`${app}-basket-abandonment.baskets-changelog`], (all) => new Set(all.map((m) => m.message.key?.toString())).size >= customers.length, 20_000);
    await first.stop();
    // Same disk: RocksDB holds the customers, so the stores are no longer known to be complete and a key not in
    // memory must be read.
    const registry = new Registry();
    second = runner(dir.dir, { topology, groupId: 'kairos-kprefetch', registry });
    await second.start();
    const orders: OrderEvent[] = customers.map((c) => ({
      eventId: `opf-${c}`,
      orderId: `ord-${c}`,
      customerId: c,
      occurredAt: now + 100,
      items: [{ sku: `sku-${c}`, productId: 'p', quantity: 1, unitPrice: { amount: 1000, currency: 'EUR' } }],
    }));
    await produce(kafka, 'shop.orders.v1', orders.map((o) => ({ key: o.customerId, value: JSON.stringify(o) })));
    await collect(kafka, [`${app}-shop.orders.v1.dedup-changelog`], (all) => new Set(all.map((m) => m.message.key?.toString())).size >= customers.length, 20_000);
    const metrics = await registry.metrics();
    const prefetched = Number(/kairos_state_prefetched_total (\d+)/.exec(metrics)?.[1] ?? 0);
    // Each order reads the customer in the dedup stage and in two customer-keyed stores of the topologies.
    assert.ok(prefetched >= customers.length * 2, `keys prefetched: ${prefetched}`);
    // One multi-get per fetched batch loads the keys of every store: far fewer RocksDB reads than keys.
    const reads = Number(/kairos_state_reads_total (\d+)/.exec(metrics)?.[1] ?? NaN);
    assert.ok(reads > 0 && reads < prefetched, `RocksDB reads: ${reads} for ${prefetched} keys`);
    // The caches' estimated heap per task, against the budget (128 MiB per task by default); nothing evicted.
    const cached = [...metrics.matchAll(/kairos_state_cache_bytes\{partition="\d+"\} (\d+(?:\.\d+)?)/g)].map((m) => Number(m[1]));
    assert.ok(cached.length > 0 && cached.some((b) => b > 0), `cache bytes: ${cached.join(', ')}`);
    assert.match(metrics, new RegExp(`kairos_state_cache_budget_bytes ${128 * 1024 * 1024}\\b`));
    assert.match(metrics, /kairos_state_cache_evictions_total 0\b/);
  } finally {
    await first.stop();
    await second?.stop();
    dir.remove();
  }
});

test('a redelivered input record is told apart by the bytes of its message value: the same bytes a redelivery, other bytes under its eventId a conflict', async () => {
  const dir = tempDir();
  const kafka = testKafka(cluster.brokers);
  const app = 'kfingerprint';
  // The runner reads shop.basket.v1 from its start, with the records of the tests before: only fp1's count.
  const duplicates: { topic: string; conflict: boolean }[] = [];
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false } }), app, { onInputDuplicate: (d) => d.key === 'fp1' && duplicates.push({ topic: d.topic, conflict: d.conflict }) });
  const r = runner(dir.dir, { topology, groupId: 'kairos-kfingerprint' });
  try {
    await r.start();
    const first = added('fp1', Date.now());
    const bytes = JSON.stringify(first);
    await produce(kafka, 'shop.basket.v1', [
      { key: 'fp1', value: bytes },
      { key: 'fp1', value: bytes },
      { key: 'fp1', value: JSON.stringify({ ...first, quantity: 3 }) },
    ]);
    await until('two duplicates dropped', () => duplicates.length >= 2, 20_000);
    assert.deepEqual(duplicates, [
      { topic: 'shop.basket.v1', conflict: false },
      { topic: 'shop.basket.v1', conflict: true },
    ]);
    const mine = (all: readonly { message: { key: Buffer | null } }[]): number => all.filter((m) => m.message.key?.toString() === 'fp1').length;
    const logged = await collect(kafka, [`${app}-shop.basket.v1.dedup-changelog`], (all) => mine(all) >= 1, 20_000);
    // The stored form: flat, the message's CRC-32C as the id's fingerprint.
    const value = logged.filter((m) => m.message.key?.toString() === 'fp1').at(-1)?.message.value;
    assert.ok(value !== null && value !== undefined);
    const stored = JSON.parse(value.subarray(8).toString('utf8')) as unknown[];
    assert.deepEqual(stored.slice(0, 2), [2, first.eventId]);
    assert.equal(stored[3], bytesFingerprint(bytes));
  } finally {
    await r.stop();
    dir.remove();
  }
});

/**
 * The Kafka client the runner gets, with every acknowledged produce request (its records as `topic/partition`,
 * triggers as `trigger:customerId`) and offset commit written to `log`, in acknowledgement order.
 */
/** `kafka` whose producers' sends and consumers' offset commits are logged once acknowledged; `onOffsets` sees each commit's offsets. */
function recording(kafka: Kafka, log: string[][], onOffsets?: (offsets: readonly TopicPartitionOffsetAndMetadata[]) => void): Kafka {
  const wrap = <T extends object>(target: T, name: 'sendBatch' | 'commitOffsets', entry: (arg: never) => string[]): T =>
    new Proxy(target, {
      get(t, k) {
        const v = Reflect.get(t, k) as unknown;
        if (typeof v !== 'function') return v;
        if (k !== name) return (v as (...a: unknown[]) => unknown).bind(t);
        return async (arg: never) => {
          const r = (await (v as (a: never) => Promise<unknown>).call(t, arg)) as unknown;
          log.push(entry(arg));
          return r;
        };
      },
    });
  return new Proxy(kafka, {
    get(t, k) {
      if (k === 'producer') {
        return (config?: ProducerConfig) =>
          wrap(t.producer(config), 'sendBatch', (batch: ProducerBatch) =>
            (batch.topicMessages ?? []).flatMap((tm) => tm.messages.map((m) => (tm.topic === 'crm.triggers.v1' ? `trigger:${(JSON.parse(String(m.value)) as Trigger).customerId}` : `${tm.topic}/${m.partition ?? '*'}`))),
          );
      }
      if (k === 'consumer') {
        return (config: ConsumerConfig) =>
          wrap(t.consumer(config), 'commitOffsets', (offsets: TopicPartitionOffsetAndMetadata[]) => {
            onOffsets?.(offsets);
            return offsets.map((o) => `offsets ${o.topic}/${o.partition}`);
          });
      }
      const v = Reflect.get(t, k) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

test('a commit sends its repartition records with its changelog entries in one request, its outputs only after its commit marker, and its offsets after its outputs', async () => {
  const dir = tempDir();
  const kafka = testKafka(cluster.brokers);
  const app = 'korder';
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '2s' } } } }), app);
  const log: string[][] = [];
  const r = runner(dir.dir, { topology, groupId: 'kairos-korder', kafka: recording(kafka, log) });
  try {
    await r.start();
    const customers = Array.from({ length: 12 }, (_, i) => `od${i}`);
    await produce(kafka, 'shop.basket.v1', customers.map((c) => ({ key: c, value: JSON.stringify(added(c, Date.now())) })));
    await collect(kafka, ['crm.triggers.v1'], (all) => all.filter((m) => json<Trigger>(m.message).customerId.startsWith('od')).length >= customers.length, 30_000);
    await r.stop();
    const storeLog = (x: string) => x.startsWith(`${app}-`) && x.includes('-changelog/') && !x.startsWith(`${app}-_positions-changelog/`);
    const repartition = (x: string) => x.startsWith(`${app}-`) && x.includes('-repartition/');
    const withRepartition = log.filter((req) => req.some(repartition));
    assert.ok(withRepartition.length > 0, 'the basket events were repartitioned by sku');
    assert.deepEqual(
      withRepartition.filter((req) => !req.some(storeLog)),
      [],
      'every request with repartition records carries changelog entries of the same commits',
    );
    let triggers = 0;
    log.forEach((req, i) => {
      for (const x of req.filter((y) => y.startsWith('trigger:od'))) {
        triggers++;
        const p = partitionOf(x.slice('trigger:'.length), 4);
        const lastIndex = (pred: (y: string) => boolean): number => log.slice(0, i + 1).findLastIndex((q) => q.some(pred));
        const entries = lastIndex((y) => storeLog(y) && y.endsWith(`/${p}`));
        const marker = lastIndex((y) => y === `${app}-_positions-changelog/${p}`);
        assert.ok(entries >= 0 && entries < marker && marker < i, `${x} (task ${p}) in request ${i}: its task's last changelog entries in ${entries}, marker in ${marker}`);
        // The offsets of that commit come after its outputs.
        const offsets = log.findIndex((q, j) => j > marker && q.includes(`offsets shop.basket.v1/${p}`));
        assert.ok(offsets > i, `${x}: task ${p}'s offsets after the commit marker of request ${marker} in ${offsets}, its outputs in ${i}`);
      }
    });
    assert.ok(triggers >= customers.length, `triggers in the produce requests: ${triggers}`);
  } finally {
    await r.stop();
    dir.remove();
  }
});

test('a long drain commits once its interval has passed: the offsets of one fetched batch are committed in steps, not only at its end', async () => {
  // A cluster of its own: the 3,000 records would be a backlog for every later test of this file.
  const own = await startMockCluster();
  const dir = tempDir();
  const kafka = testKafka(own.brokers);
  const app = 'kdrain';
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '1h' } } } }), app);
  const committed: number[] = [];
  const recorded = recording(kafka, [], (offsets) => {
    for (const o of offsets) if (o.topic === 'shop.basket.v1' && o.partition === 0) committed.push(Number(o.offset));
  });
  // One producer request to partition 0: the mock cluster hands it to the runner as one batch, drained in one go.
  const customers: string[] = [];
  for (let i = 0; customers.length < 3000; i++) if (partitionOf(`dr${i}`, 4) === 0) customers.push(`dr${i}`);
  const r = runner(dir.dir, { topology, groupId: 'kairos-kdrain', kafka: recorded, commitIntervalMs: 20 });
  try {
    await r.start();
    const t0 = Date.now();
    await produce(kafka, 'shop.basket.v1', customers.map((c, i) => ({ key: c, value: JSON.stringify(added(c, t0 + i)) })));
    await until('the whole batch committed', () => committed.includes(customers.length), 60_000);
    const steps = committed.filter((o) => o > 0 && o < customers.length);
    assert.ok(steps.length > 0, `offsets committed for shop.basket.v1[0]: ${committed.join(', ')}; none inside the batch of ${customers.length}`);
  } finally {
    await r.stop();
    dir.remove();
    await own.stop();
  }
});

test('an input written in transactions: the committed offset moves past the markers kafkajs does not hand on, so the group\'s lag reaches 0 and nothing before a marker is skipped', async () => {
  const dir = tempDir();
  const kafka = testKafka(cluster.brokers);
  const app = 'kmarker';
  const topic = 'shop.basket.v1';
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '2s' } } } }), app);
  const r = runner(dir.dir, { topology, groupId: 'kairos-kmarker' });
  const admin = kafka.admin();
  await admin.connect();
  try {
    await r.start();
    // Two customers of one partition; each event followed by a commit marker, as a transactional producer leaves it.
    const customers: string[] = [];
    for (let i = 0; customers.length < 2; i++) if (partitionOf(`mk${i}`, 4) === 1) customers.push(`mk${i}`);
    for (const c of customers) {
      await produce(kafka, topic, [{ key: c, value: JSON.stringify(added(c, Date.now())) }]);
      await appendTransactionMarker(kafka, topic, 1);
    }
    const end = async (): Promise<number> => Number((await admin.fetchTopicOffsets(topic)).find((o) => o.partition === 1)?.high);
    const committed = async (): Promise<number> => Number((await admin.fetchOffsets({ groupId: 'kairos-kmarker', topics: [topic] }))[0]?.partitions.find((p) => p.partition === 1)?.offset);
    let last = { committed: -1, end: -1 };
    await until(
      'the committed offset at the end offset, the last marker included',
      async () => {
        last = { committed: await committed(), end: await end() };
        return last.committed === last.end;
      },
      20_000,
    ).catch((err: unknown) => assert.fail(`${String(err)}: committed ${last.committed}, end ${last.end}`));
    // The records before each marker were processed, not skipped by position: each customer's trigger fires.
    const got = await collect(kafka, ['crm.triggers.v1'], (all) => all.filter((m) => json<Trigger>(m.message).customerId.startsWith('mk')).length >= customers.length, 25_000);
    assert.deepEqual(
      got
        .map((m) => json<Trigger>(m.message))
        .filter((t) => t.customerId.startsWith('mk'))
        .map((t) => `${t.customerId} ${t.type}`)
        .sort(),
      customers.map((c) => `${c} BASKET_ABANDONED`).sort(),
    );
  } finally {
    await admin.disconnect();
    await r.stop();
    dir.remove();
  }
});

test('a task that goes quiet deletes its last outbox entries with one more commit, so a new owner has nothing of it to send again', async () => {
  const dir = tempDir();
  const kafka = testKafka(cluster.brokers);
  const app = 'koutbox';
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '2s' } } } }), app);
  const r = runner(dir.dir, { topology, groupId: 'kairos-koutbox' });
  try {
    await r.start();
    const customers = Array.from({ length: 6 }, (_, i) => `ob${i}`);
    await produce(kafka, 'shop.basket.v1', customers.map((c) => ({ key: c, value: JSON.stringify(added(c, Date.now())) })));
    await collect(kafka, ['crm.triggers.v1'], (all) => all.filter((m) => json<Trigger>(m.message).customerId.startsWith('ob')).length >= customers.length, 30_000);
    // The outbox changelog, compacted in the end: every key's last record is a tombstone once the task is quiet.
    const live = (all: readonly { message: { key: Buffer | null; value: Buffer | null } }[]): number => {
      const last = new Map<string, boolean>();
      for (const m of all) last.set(m.message.key?.toString() ?? '', m.message.value !== null);
      return [...last.values()].filter(Boolean).length;
    };
    const log = await collect(kafka, [`${app}-_outbox-changelog`], (all) => all.length > 0 && live(all) === 0, 15_000);
    assert.ok(log.length > 0, 'outputs went through the outbox');
    assert.equal(live(log), 0, 'outbox entries left after the task went quiet');
  } finally {
    await r.stop();
    dir.remove();
  }
});

test('a caught-up task commits once its outputs have lingered outputLingerMs: a trigger does not wait for the commit interval (60 s here)', async () => {
  const dir = tempDir();
  const kafka = testKafka(cluster.brokers);
  const app = 'klinger';
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '2s' } } } }), app);
  const r = runner(dir.dir, { topology, groupId: 'kairos-klinger', commitIntervalMs: 60_000, outputLingerMs: 20 });
  try {
    await r.start();
    const customers = Array.from({ length: 4 }, (_, i) => `lg${i}`);
    await produce(kafka, 'shop.basket.v1', customers.map((c) => ({ key: c, value: JSON.stringify(added(c, Date.now())) })));
    // Without the linger no commit happens before 60 s of the task's life, and outputs leave only with a commit:
    // nothing could arrive within this wait.
    const got = await collect(kafka, ['crm.triggers.v1'], (all) => all.filter((m) => json<Trigger>(m.message).customerId.startsWith('lg')).length >= customers.length, 25_000);
    assert.deepEqual(
      got
        .map((m) => json<Trigger>(m.message))
        .filter((t) => t.customerId.startsWith('lg'))
        .map((t) => `${t.customerId} ${t.type}`)
        .sort(),
      customers.map((c) => `${c} BASKET_ABANDONED`),
    );
  } finally {
    await r.stop();
    dir.remove();
  }
});

test('records of two inputs in one fetch response are taken in event-time order: a newer basket event handed on first does not fire a timer an older order cancels (one broker)', async () => {
  // One broker: every partition's records of a produce request come back in one fetch response, which kafkajs
  // hands on batch by batch, several at a time.
  const single = await startMockCluster({ brokers: 1 });
  const dir = tempDir();
  const kafka = testKafka(single.brokers);
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '3s' } } } }), 'kt');
  const r = new KafkaRunner({ topology, kafka: testKafka(single.brokers), stateDir: dir.dir, ...mockRunnerDefaults(), idleAdvanceMs: 500, groupId: 'kairos-kt-one-response' });
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  try {
    await r.start();
    await producer.connect();
    const base = Date.UTC(2026, 0, 5, 9, 0, 0);
    const rounds = 12;
    // x<i> and y<i> in one task (the mock's topics have 4 partitions): y<i> is the first y<i>-<n> of x<i>'s partition.
    const ys = Array.from({ length: rounds }, (_, i) => {
      for (let n = 0; ; n++) if (partitionOf(`y${i}-${n}`, 4) === partitionOf(`x${i}`, 4)) return `y${i}-${n}`;
    });
    for (let i = 0; i < rounds; i++) {
      const y = ys[i] as string;
      const t0 = base + i * 60_000;
      // Round i: x<i> adds an item; once that is processed, one produce request carries x<i>'s order (1 s
      // later, within the 3 s gap) and y<i>'s item added 10 s later, past x<i>'s timer.
      await producer.send({ topic: 'shop.basket.v1', acks: -1, messages: [{ key: `x${i}`, value: JSON.stringify(added(`x${i}`, t0)) }] });
      await new Promise((res) => setTimeout(res, 250));
      const order: OrderEvent = { eventId: `o-x${i}`, orderId: `ord-x${i}`, customerId: `x${i}`, occurredAt: t0 + 1000, items: [{ sku: `sku-x${i}`, productId: 'p', quantity: 1, unitPrice: { amount: 1000, currency: 'EUR' } }] };
      await producer.sendBatch({
        acks: -1,
        topicMessages: [
          { topic: 'shop.basket.v1', messages: [{ key: y, value: JSON.stringify(added(y, t0 + 10_000)) }] },
          { topic: 'shop.orders.v1', messages: [{ key: `x${i}`, value: JSON.stringify(order) }] },
        ],
      });
      await new Promise((res) => setTimeout(res, 250));
    }
    // Every y<i> is abandoned (the last by idle advance); no x<i> is: its order came before y<i>'s event.
    const got = await collect(kafka, ['crm.triggers.v1'], (all) => all.filter((g) => json<Trigger>(g.message).customerId.startsWith('y')).length >= rounds);
    const abandoned = got.map((g) => json<Trigger>(g.message)).filter((t) => t.type === 'BASKET_ABANDONED').map((t) => t.customerId);
    assert.deepEqual(abandoned.filter((c) => c.startsWith('x')), [], 'no basket with an order in time is abandoned');
    assert.equal(new Set(abandoned.filter((c) => c.startsWith('y'))).size, rounds);
  } finally {
    await producer.disconnect();
    await r.stop();
    await single.stop();
    dir.remove();
  }
});

test('a batch fetched while its task opened does not undo the end offsets the task read: a record of the other input that came meanwhile is waited for (one broker)', async () => {
  // The first fetch response brings z's order (orders) and x's and y's items (basket), read before the task
  // reads its inputs' end offsets; x's order, 1 s after x's item, is written in between. The orders batch's high
  // watermark says "at its end" and was once taken for it: y's item (10 s later) then passed x's order, fired
  // x's timer, and the order came late.
  const single = await startMockCluster({ brokers: 1 });
  const dir = tempDir();
  const kafka = testKafka(single.brokers);
  const registry = new Registry();
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  const base = Date.UTC(2026, 0, 5, 9, 0, 0);
  const inPartitionOf = (prefix: string, key: string): string => {
    for (let n = 0; ; n++) if (partitionOf(`${prefix}-${n}`, 4) === partitionOf(key, 4)) return `${prefix}-${n}`;
  };
  const x = 'x0';
  const y = inPartitionOf('y', x);
  const z = inPartitionOf('z', x);
  // In another task: w's events out of order (one record processed below its task's stream time).
  let w = 'w-0';
  for (let n = 1; partitionOf(w, 4) === partitionOf(x, 4); n++) w = `w-${n}`;
  const order = (customerId: string, at: number): OrderEvent => ({ eventId: `o-${customerId}`, orderId: `ord-${customerId}`, customerId, occurredAt: at, items: [{ sku: `sku-${customerId}`, productId: 'p', quantity: 1, unitPrice: { amount: 1000, currency: 'EUR' } }] });
  let ordersFetched: () => void = () => undefined;
  const fetched = new Promise<void>((resolve) => (ordersFetched = resolve));
  // Once the runner's consumer has fetched the first orders record: x's order is written, then end offsets are read.
  const meanwhile = fetched.then(() => producer.send({ topic: 'shop.orders.v1', acks: -1, messages: [{ key: x, value: JSON.stringify(order(x, base + 1000)) }] }));
  const gated = new Proxy(kafka, {
    get(t, k) {
      if (k === 'consumer') {
        return (config: ConsumerConfig) => {
          const c = t.consumer(config);
          c.on(c.events.FETCH, (e) => {
            const { batches } = e.payload as FetchEventPayload;
            if (batches?.some((b) => b.topic === 'shop.orders.v1' && !b.isEmpty()) === true) ordersFetched();
          });
          return c;
        };
      }
      if (k === 'admin') {
        return (...a: Parameters<Kafka['admin']>) => {
          const admin = t.admin(...a);
          return new Proxy(admin, {
            get(at, ak) {
              const v = Reflect.get(at, ak) as unknown;
              if (typeof v !== 'function') return v;
              if (ak !== 'fetchTopicOffsets') return (v as (...args: unknown[]) => unknown).bind(at);
              return async (topic: string) => {
                if (topic.startsWith('shop.')) await meanwhile;
                return admin.fetchTopicOffsets(topic);
              };
            },
          });
        };
      }
      const v = Reflect.get(t, k) as unknown;
      return typeof v === 'function' ? (v as (...args: unknown[]) => unknown).bind(t) : v;
    },
  });
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '3s' } } } }), 'kt');
  const r = new KafkaRunner({ topology, kafka: gated, stateDir: dir.dir, ...mockRunnerDefaults(), idleAdvanceMs: 500, registry, groupId: 'kairos-kt-open-race' });
  try {
    await producer.connect();
    await producer.sendBatch({
      acks: -1,
      topicMessages: [
        { topic: 'shop.orders.v1', messages: [{ key: z, value: JSON.stringify(order(z, base - 5000)) }] },
        { topic: 'shop.basket.v1', messages: [...[x, y].map((c, i) => ({ key: c, value: JSON.stringify(added(c, base + i * 10_000)) })), ...[20_000, 5_000].map((d) => ({ key: w, value: JSON.stringify(added(w, base + d)) }))] },
      ],
    });
    await r.start();
    // y and w are abandoned (by idle advance); x is not: its order, 1 s after its item, comes before y's item.
    const got = await collect(kafka, ['crm.triggers.v1'], (all) => [y, w].every((c) => all.some((g) => json<Trigger>(g.message).customerId === c)));
    const abandoned = got.map((g) => json<Trigger>(g.message)).filter((t) => t.type === 'BASKET_ABANDONED').map((t) => t.customerId);
    assert.deepEqual(abandoned.sort(), [w, y].sort());
    const late = (await registry.getSingleMetric('kairos_task_late_records_total')?.get())?.values.map((v) => `${String(v.labels.partition)}:${v.value}`);
    assert.deepEqual(late, [`${partitionOf(w, 4)}:1`], "only w's older item was processed below its task's stream time");
  } finally {
    await producer.disconnect();
    await r.stop();
    await single.stop();
    dir.remove();
  }
});

test('a task kept through a rebalance fetches again from the group\'s committed offsets: what it processed since its last commit is skipped by position, counted in kairos_task_records_skipped_total, and processed once', async (t) => {
  // Commits every 60 s: what the first instance processed before the second joins is not committed. Its tasks
  // that stay open fetch it again (kafkajs starts every assigned partition from the committed offset after a
  // rebalance); the state holds it already, so each such record is skipped and counted, never applied twice.
  const dir = tempDir();
  const kafka = testKafka(cluster.brokers);
  const app = 'kkept';
  const topology = (): KafkaRunnerOptions['topology'] => buildTopology(resolveCampaigns({ guards: { enabled: false } }), app);
  const registries = [new Registry(), new Registry()] as const;
  const a = runner(`${dir.dir}/a`, { topology: topology(), groupId: `kairos-${app}`, commitIntervalMs: 60_000, registry: registries[0] });
  const b = runner(`${dir.dir}/b`, { topology: topology(), groupId: `kairos-${app}`, commitIntervalMs: 60_000, registry: registries[1] });
  // Page views processed by both; the group reads the topic from its beginning (other tests' records too).
  const viewsTopic = { topic: 'shop.pageviews.v1' };
  const processed = async (): Promise<number> => (await metricValue(registries[0], 'kairos_records_processed_total', viewsTopic)) + (await metricValue(registries[1], 'kairos_records_processed_total', viewsTopic));
  const admin = kafka.admin();
  await admin.connect();
  const onTopic = async (): Promise<number> => (await admin.fetchTopicOffsets(viewsTopic.topic)).reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
  // Page views: browsing sessions end after 30 min, so no output (and no commit with it) during the test.
  const views = (round: number, at: number) =>
    Array.from({ length: 40 }, (_, i) => {
      const customerId = `kv${i}`;
      const e: PageviewEvent = { eventId: `pv-${customerId}-${round}`, customerId, occurredAt: at, productId: `p${round}` };
      return { key: customerId, value: JSON.stringify(e) };
    });
  let bStarted = false;
  try {
    await a.start();
    const now = Date.now();
    for (let round = 0; round < 5; round++) await produce(kafka, 'shop.pageviews.v1', views(round, now + round));
    const before = await onTopic();
    await until('the first instance to process the page views', async () => (await processed()) >= before, 30_000, 50);
    await b.start();
    bStarted = true;
    await until('both instances to hold tasks', async () => a.assignedPartitions.length > 0 && b.assignedPartitions.length > 0 && a.ready && b.ready, 30_000, 50);
    t.diagnostic(`after the rebalance: first instance ${a.assignedPartitions.join(',')}, second ${b.assignedPartitions.join(',')}`);
    // Records after the rebalance on every partition: once they are processed, anything fetched again before them was too.
    await produce(kafka, 'shop.pageviews.v1', views(5, now + 5));
    await until('the page views after the rebalance', async () => (await processed()) >= before + 40, 30_000, 50);
    const skipped = [await metricValue(registries[0], 'kairos_task_records_skipped_total'), await metricValue(registries[1], 'kairos_task_records_skipped_total')];
    t.diagnostic(`processed ${await processed()}, skipped as already in the state: ${skipped.join(' + ')}`);
    // The first instance's kept tasks read their uncommitted records again; the second restored its tasks'
    // positions from their changelogs (the first committed them when it let them go), so it reads none again.
    assert.ok((skipped[0] ?? 0) > 0, 'the kept tasks fetched their uncommitted records again and skipped them');
    assert.equal(skipped[1], 0, 'restored tasks start at their positions');
    assert.equal(await processed(), before + 40, 'each page view processed once');
  } finally {
    await a.stop();
    if (bStarted) await b.stop();
    await admin.disconnect();
    dir.remove();
  }
});

test('a task kept across a lost group membership (its process stopped past the session timeout while another instance owned the task) is closed without a commit and restored: its state holds what the other owner processed meanwhile', { timeout: 300_000 }, async (t) => {
  // The first instance is a `kairos start` child, stopped with SIGSTOP once it has committed: its session expires,
  // the second instance takes every task and processes a second basket event of each customer. Resumed, the
  // first instance's consumer rejoins under a new member id and gets half of the tasks back; were its open tasks
  // kept, they would go on from the second's committed offsets with baskets that lack the second items. (The
  // second instance serves no API, so only the first instance's own customers are asked for.)
  const dir = tempDir();
  const kafka = testKafka(cluster.brokers);
  const app = 'klost';
  const group = `kairos-${app}`;
  const key = 'lost-membership-key-0123456789';
  const campaigns = { guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '1h' } } } };
  writeFileSync(join(dir.dir, 'campaigns.json'), JSON.stringify(campaigns));
  const basketTopic = 'shop.basket.v1';
  const admin = kafka.admin();
  await admin.connect();
  const a = await startChild({
    ...fastGroupEnv(cluster.brokers.join(',')),
    KAIROS_APPLICATION_ID: app,
    KAIROS_STATE_DIR: join(dir.dir, 'a'),
    KAIROS_CAMPAIGNS: join(dir.dir, 'campaigns.json'),
    KAIROS_HTTP_PORT: '0',
    KAIROS_API_KEYS: `test:${key}:read`,
    KAIROS_PUNCTUATE_MS: '200',
    KAIROS_LOG_LEVEL: 'info',
  });
  const address = a.address;
  const partitions = (await admin.fetchTopicMetadata({ topics: [basketTopic] })).topics[0]?.partitions.length ?? 0;
  // One customer per task.
  const customers: string[] = [];
  for (let i = 0; customers.length < partitions; i++) if (!customers.some((c) => partitionOf(c, partitions) === partitionOf(`lost-${i}`, partitions))) customers.push(`lost-${i}`);
  const skus = async (customer: string): Promise<string> => {
    const res = await fetch(`http://${address}/v1/customers/${customer}`, { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(5000) });
    if (res.status !== 200) return `HTTP ${res.status}`;
    const body = (await res.json()) as { basket: { items: { sku: string }[] } | null };
    return (body.basket?.items ?? []).map((i) => i.sku).sort().join('+');
  };
  const baskets = async (): Promise<string[]> => Promise.all(customers.map(skus));
  const committed = async (): Promise<number> => {
    const [offsets] = await admin.fetchOffsets({ groupId: group, topics: [basketTopic] });
    return (offsets?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
  };
  const items = (sku: string, at: number) => customers.map((c) => ({ key: c, value: JSON.stringify({ ...added(c, at), eventId: `${c}-${sku}`, sku }) }));
  let b: KafkaRunner | undefined;
  try {
    const now = Date.now();
    const before = await committed();
    await produce(kafka, basketTopic, items('sku-a', now));
    await until('the first instance to hold the first items', async () => (await baskets()).every((s) => s === 'sku-a'), 30_000, 100);
    await until('the first items committed', async () => (await committed()) >= before + partitions, 30_000, 100);
    a.child.kill('SIGSTOP');
    b = runner(join(dir.dir, 'b'), { topology: buildTopology(resolveCampaigns(campaigns), app), groupId: group });
    await b.start();
    const second = b;
    // The group completes the join once the stopped member's session expired: then every task is the second's.
    await until('the second instance to hold every task (the stopped one\'s session expired)', () => second.ready && second.assignedPartitions.length === partitions, 60_000, 100);
    await produce(kafka, basketTopic, items('sku-b', now + 1));
    await until('the second items committed by the second instance', async () => (await committed()) >= before + 2 * partitions, 30_000, 100);
    a.child.kill('SIGCONT');
    await until('the first instance to rejoin and hold tasks again', () => second.assignedPartitions.length < partitions, 60_000, 100);
    const kept = new Set(second.assignedPartitions);
    const mine = customers.filter((c) => !kept.has(partitionOf(c, partitions)));
    t.diagnostic(`the first instance took back the tasks of ${mine.join(', ')}`);
    assert.ok(mine.length > 0);
    // The first instance answers for its own tasks from their state: both items, the second from the changelog.
    // Up to 120 s: the mock cluster may refuse the rejoin's SyncGroup (kafkajs then crashes the consumer and the
    // runner starts a new one, which joins again: also a lost membership).
    await until('both items in the baskets of the first instance\'s tasks', async () => (await Promise.all(mine.map(skus))).every((s) => s === 'sku-a+sku-b'), 120_000, 200);
    const metrics = await (await fetch(`http://${address}/metrics`)).text();
    assert.match(metrics, /^kairos_group_membership_lost_total [1-9][0-9]*$/m, 'the first instance counted its lost membership');
  } catch (err) {
    a.child.kill('SIGCONT'); // it answers again
    t.diagnostic(`baskets at the first instance: ${(await baskets().catch((e: unknown) => [String(e)])).join(', ')}; its log:\n${a.stderr().slice(-6000)}`);
    throw err;
  } finally {
    await b?.stop();
    a.child.kill('SIGCONT');
    a.child.kill('SIGTERM');
    await a.exited;
    await admin.disconnect();
    dir.remove();
  }
});

test('a live record whose task has empty inputs goes on once their end offsets are read (kairos_input_end_probes_total), not after a further fetch, which the mock holds for maxWaitTimeInMs', async () => {
  const kafka = testKafka(cluster.brokers);
  const maxWait = 3000;
  // From produce until its task has processed it (its stream time), for three records, each produced after a pause.
  const liveDelays = async (probe: boolean): Promise<{ ms: number[]; confirmed: number }> => {
    const dir = tempDir();
    const app = `kprobe${probe ? 1 : 0}`;
    const topology = buildTopology(resolveCampaigns({ guards: { enabled: false } }), app);
    const registry = new Registry();
    const r = runner(dir.dir, { topology, groupId: `kairos-${app}`, maxWaitTimeInMs: maxWait, inputEndProbeMs: probe ? 50 : 0, registry });
    try {
      await r.start();
      await until('the runner ready', () => r.ready, 30_000);
      const processed = async (customer: string): Promise<number> => {
        const at = Date.now();
        await produce(kafka, 'shop.basket.v1', [{ key: customer, value: JSON.stringify(added(customer, at)) }]);
        const t0 = performance.now();
        const p = r.partitionOf(customer) as number;
        await until(`${customer} processed`, () => (r.readerNow(p)?.streamTime ?? -Infinity) >= at, 60_000, 10);
        return performance.now() - t0;
      };
      // The first record also waits for the group to read what earlier tests left on the topic.
      await processed(`${app}-warm`);
      const ms: number[] = [];
      for (let i = 0; i < 3; i++) {
        await sleep(700);
        ms.push(await processed(`${app}-live-${i}`));
      }
      return { ms, confirmed: await metricValue(registry, 'kairos_input_end_probes_total', { result: 'confirmed' }) };
    } finally {
      await r.stop();
      dir.remove();
    }
  };
  // A record reaches the runner with the fetch the mock holds until maxWait has passed (it does not answer when data
  // comes meanwhile). Without the probe it then waits for the next fetch of each empty input, which finds nothing
  // and is held maxWait again: at least maxWait in all. With it, it goes on as soon as it came, which for at
  // least one of three records produced at different points of the fetch cycle is well before maxWait.
  const on = await liveDelays(true);
  const off = await liveDelays(false);
  assert.ok(on.confirmed > 0, 'the probe confirmed inputs');
  assert.equal(off.confirmed, 0);
  const fmt = (ms: number[]): string => ms.map((x) => Math.round(x)).join(', ');
  assert.ok(Math.min(...off.ms) >= maxWait - 100, `without the probe each record waited for a further fetch (${fmt(off.ms)} ms)`);
  assert.ok(Math.min(...on.ms) < maxWait - 100, `with the probe a record went on once it came (${fmt(on.ms)} ms)`);
});
