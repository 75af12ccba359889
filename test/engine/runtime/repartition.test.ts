import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BasketEvent } from '../../../schemas/contract.js';
import { TopologyTestDriver } from '../../../src/engine/testing/test-driver.js';
import { rekeyTopology, watchersStore } from '../../support/rekey-topology.js';

const add = (customerId: string, sku: string, at: number): BasketEvent => ({ eventId: `${customerId}-${sku}`, customerId, occurredAt: at, type: 'ITEM_ADDED', sku });

test('a repartition node re-keys records; single-task runners route them straight back in', async () => {
  const topology = rekeyTopology('rk');
  assert.deepEqual(topology.repartitionTopics, ['rk-basket-by-sku-repartition']);
  assert.match(topology.describe(), /Sink: basket-by-sku\.sink \(topic: rk-basket-by-sku-repartition\)/);
  const d = await TopologyTestDriver.create(topology);
  try {
    await d.pipe('shop.basket.v1', 'anna', add('anna', 'jacket', 1));
    await d.pipe('shop.basket.v1', 'ben', add('ben', 'jacket', 2));
    await d.pipe('shop.basket.v1', 'ben', add('ben', 'scarf', 3));
    assert.deepEqual(await d.store(watchersStore).get('jacket'), ['anna', 'ben']);
    assert.deepEqual(await d.store(watchersStore).get('scarf'), ['ben']);
    assert.deepEqual(d.readOutput('rk-basket-by-sku-repartition'), [], 'looped back, not emitted');
    assert.deepEqual(
      d.readOutput<{ sku: string; watchers: string[] }>('test.watchers').map((o) => [o.key, o.value.watchers.length]),
      [
        ['jacket', 1],
        ['jacket', 2],
        ['scarf', 1],
      ],
    );
  } finally {
    await d.close();
  }
});
