import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BasketEvent } from '../../schemas/contract.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { KafkaRunner } from '../../src/kafka/runner.js';
import { JsonSerde } from '../../src/kafka/serde.js';
import { tempDir } from '../helpers.js';
import { collect, json, produce, silent, testKafka } from '../support/kafka.js';
import { rekeyTopology } from '../support/rekey-topology.js';

let cluster: MockCluster;
before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  await cluster.stop();
});

test('repartition topics are created with the inputs\' partition count and re-keyed records reach the task owning the new key', async () => {
  const dir = tempDir();
  const kafka = testKafka(cluster.brokers);
  const runner = new KafkaRunner({ topology: rekeyTopology('krk'), kafka, stateDir: dir.dir, serde: new JsonSerde(), logger: silent, idempotent: false, maxWaitTimeInMs: 100 });
  try {
    await runner.start();
    const admin = kafka.admin();
    await admin.connect();
    const meta = await admin.fetchTopicMetadata({ topics: ['krk-basket-by-sku-repartition', 'shop.basket.v1'] });
    await admin.disconnect();
    assert.deepEqual(
      meta.topics.map((t) => [t.name, t.partitions.length]).sort(),
      [
        ['krk-basket-by-sku-repartition', 4],
        ['shop.basket.v1', 4],
      ],
    );
    const customers = Array.from({ length: 12 }, (_, i) => `rk${i}`);
    const skus = ['sku-a', 'sku-b', 'sku-c'];
    const events: BasketEvent[] = customers.flatMap((c, i) => skus.slice(0, (i % 3) + 1).map((sku) => ({ eventId: `${c}-${sku}`, customerId: c, occurredAt: Date.now(), type: 'ITEM_ADDED' as const, sku })));
    await produce(kafka, 'shop.basket.v1', events.map((e) => ({ key: e.customerId, value: JSON.stringify(e) })));
    const expected = new Map(skus.map((sku) => [sku, events.filter((e) => e.sku === sku).length]));
    const got = await collect(kafka, ['test.watchers'], (all) => {
      const max = new Map<string, number>();
      for (const m of all) {
        const v = json<{ sku: string; watchers: string[] }>(m.message);
        max.set(v.sku, Math.max(max.get(v.sku) ?? 0, v.watchers.length));
      }
      return skus.every((s) => max.get(s) === expected.get(s));
    });
    const bySku = new Map<string, Set<number>>();
    for (const m of got) {
      const v = json<{ sku: string; watchers: string[]; partition: number }>(m.message);
      if (!bySku.has(v.sku)) bySku.set(v.sku, new Set());
      bySku.get(v.sku)?.add(v.partition);
    }
    for (const sku of skus) assert.equal(bySku.get(sku)?.size, 1, `every record of ${sku} was handled by one task`);
    const final = new Map<string, number>();
    for (const m of got) {
      const v = json<{ sku: string; watchers: string[] }>(m.message);
      final.set(v.sku, Math.max(final.get(v.sku) ?? 0, v.watchers.length));
    }
    assert.deepEqual(Object.fromEntries(final), Object.fromEntries(expected), 'all watchers of a sku gathered in its task');
  } finally {
    await runner.stop();
    dir.remove();
  }
});
