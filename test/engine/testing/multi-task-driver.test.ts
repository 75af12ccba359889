import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BasketEvent } from '../../../schemas/contract.js';
import { MultiTaskDriver } from '../../../src/engine/testing/multi-task-driver.js';
import { partitionOf } from '../../../src/kafka/partitioner.js';
import { rekeyTopology, watchersStore } from '../../support/rekey-topology.js';

const add = (customerId: string, sku: string, at: number): BasketEvent => ({ eventId: `${customerId}-${sku}-${at}`, customerId, occurredAt: at, type: 'ITEM_ADDED', sku });

test('MultiTaskDriver: one task per partition; repartition records reach the owning task, late with inputs-first', async () => {
  const d = await MultiTaskDriver.create(rekeyTopology('rk'), { partitions: 3, partitioner: partitionOf, schedule: 'inputs-first', seed: 4 });
  try {
    const customers = ['anna', 'ben', 'cleo', 'dan', 'eve', 'finn'];
    for (const [i, c] of customers.entries()) d.send('shop.basket.v1', c, add(c, i % 2 === 0 ? 'jacket' : 'scarf', 1000 + i));
    await d.finish(10_000);
    assert.equal(d.stats.processed, 12, '6 inputs, 6 repartition records');
    // Each sku's watchers live in the sku's task, whatever task read the customer's add.
    assert.deepEqual([...((await d.store(watchersStore, 'jacket').get('jacket')) ?? [])].sort(), ['anna', 'cleo', 'eve']);
    assert.deepEqual([...((await d.store(watchersStore, 'scarf').get('scarf')) ?? [])].sort(), ['ben', 'dan', 'finn']);
    const out = d.readOutput<{ sku: string; partition: number }>('test.watchers');
    assert.equal(out.length, 6);
    for (const o of out) assert.equal(o.value.partition, partitionOf(o.value.sku, 3), 'processed in the owning task');
    for (const t of d.tasks) assert.equal(t.streamTime, 10_000, 'finish moved every task to the end');
  } finally {
    await d.close();
  }
});

test('MultiTaskDriver: the same seed gives the same schedule; restarts keep the state', async () => {
  const run = async (seed: number): Promise<string[]> => {
    const d = await MultiTaskDriver.create(rekeyTopology('rk'), { partitions: 2, partitioner: partitionOf, seed, publishProbability: 0.3, restartProbability: 0.3 });
    try {
      for (let i = 0; i < 20; i++) d.send('shop.basket.v1', `c${i}`, add(`c${i}`, `sku-${i % 3}`, 1000 + i));
      await d.finish(5000);
      assert.ok(d.stats.restarts > 0);
      for (let s = 0; s < 3; s++) assert.equal(((await d.store(watchersStore, `sku-${s}`).get(`sku-${s}`)) ?? []).length, s === 0 ? 7 : s === 1 ? 7 : 6);
      return d.readOutput<{ sku: string; watchers: string[] }>('test.watchers').map((o) => `${o.value.sku}:${o.value.watchers.join(',')}`);
    } finally {
      await d.close();
    }
  };
  assert.deepEqual(await run(7), await run(7));
});
