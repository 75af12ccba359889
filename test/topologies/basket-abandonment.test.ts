import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BasketEvent, OrderEvent } from '../../schemas/contract.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { buildTopology } from '../../src/app/topology.js';
import { TopologyTestDriver, type TestDriverOptions } from '../../src/engine/testing/test-driver.js';
import { basketsStore } from '../../topologies/basket-abandonment/index.js';
import { tempDir } from '../helpers.js';
import { audits, triggers } from '../support/outputs.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);

async function driver(config: unknown = {}, opts: TestDriverOptions = {}): Promise<TopologyTestDriver> {
  return TopologyTestDriver.create(buildTopology(resolveCampaigns({ guards: { enabled: false }, ...(config as object) })), opts);
}

let seq = 0;
function basket(customerId: string, atMin: number, type: BasketEvent['type'], sku?: string, extra: Partial<BasketEvent> = {}): BasketEvent {
  return {
    eventId: `e${++seq}`,
    customerId,
    occurredAt: T0 + atMin * MIN,
    type,
    ...(sku === undefined ? {} : { sku, productId: `p-${sku}` }),
    ...extra,
  };
}

function order(customerId: string, atMin: number, skus: string[]): OrderEvent {
  return {
    eventId: `o${++seq}`,
    orderId: `order-${seq}`,
    customerId,
    occurredAt: T0 + atMin * MIN,
    items: skus.map((sku) => ({ sku, productId: `p-${sku}`, quantity: 1, unitPrice: { amount: 1000, currency: 'EUR' } })),
  };
}

async function pipeBasket(d: TopologyTestDriver, e: BasketEvent): Promise<void> {
  await d.pipe('shop.basket.v1', e.customerId, e);
}

test('BASKET_ABANDONED fires exactly inactivityGap after the last basket activity, with cause, explanation and payload', async () => {
  const d = await driver();
  try {
    const add = basket('anna', 0, 'ITEM_ADDED', 'jacket-m', { quantity: 2, unitPrice: { amount: 12999, currency: 'EUR' } });
    await pipeBasket(d, add);
    await d.advanceStreamTime(T0 + HOUR - 1);
    assert.deepEqual(triggers(d), [], 'nothing before the gap has passed');
    await d.advanceStreamTime(T0 + HOUR);
    const [t, ...rest] = triggers(d);
    assert.equal(rest.length, 0);
    assert.ok(t);
    assert.equal(t.type, 'BASKET_ABANDONED');
    assert.equal(t.customerId, 'anna');
    assert.equal(t.occurredAt, T0 + HOUR);
    assert.equal(t.expiresAt, T0 + HOUR + 24 * HOUR);
    assert.deepEqual(t.causedBy, { eventId: add.eventId, topic: 'shop.basket.v1', partition: 0, offset: '0' });
    assert.match(t.triggerId, /^[0-9a-f]{32}$/);
    assert.equal(t.explanation.params.inactivityGap, HOUR);
    assert.deepEqual(t.explanation.observed.basketValue, { amount: 25998, currency: 'EUR' });
    assert.deepEqual(t.payload.items, [{ sku: 'jacket-m', productId: 'p-jacket-m', quantity: 2, unitPrice: { amount: 12999, currency: 'EUR' } }]);
    const [a] = audits(d);
    assert.equal(a?.decision, 'SENT');
    assert.equal(a?.triggerId, t.triggerId);
    await d.advanceStreamTime(T0 + 10 * HOUR);
    assert.deepEqual(triggers(d), [], 'fires once');
  } finally {
    await d.close();
  }
});

test('CHECKOUT_ABANDONED when the last activity was CHECKOUT_STARTED; BASKET_ABANDONED again after later activity', async () => {
  const d = await driver();
  try {
    await pipeBasket(d, basket('ben', 0, 'ITEM_ADDED', 'sneaker-42'));
    await pipeBasket(d, basket('ben', 10, 'CHECKOUT_STARTED'));
    await d.advanceStreamTime(T0 + 70 * MIN);
    assert.deepEqual(triggers(d).map((t) => t.type), ['CHECKOUT_ABANDONED']);

    await pipeBasket(d, basket('cleo', 0, 'CHECKOUT_STARTED'));
    await d.advanceStreamTime(T0 + 3 * HOUR);
    assert.deepEqual(triggers(d), [], 'an empty basket never fires, even after CHECKOUT_STARTED');
  } finally {
    await d.close();
  }
});

test('every basket activity restarts the gap; other customers do not', async () => {
  const d = await driver();
  try {
    await pipeBasket(d, basket('emil', 0, 'ITEM_ADDED', 'bag'));
    await pipeBasket(d, basket('emil', 40, 'BASKET_VIEWED'));
    await pipeBasket(d, basket('emil', 80, 'QUANTITY_CHANGED', 'bag', { quantity: 3 }));
    await pipeBasket(d, basket('zoe', 100, 'BASKET_VIEWED'));
    assert.deepEqual(triggers(d), []);
    await d.advanceStreamTime(T0 + 140 * MIN - 1);
    assert.deepEqual(triggers(d), []);
    await d.advanceStreamTime(T0 + 140 * MIN);
    const [t] = triggers(d);
    assert.equal(t?.occurredAt, T0 + 140 * MIN);
    assert.deepEqual(t?.payload.items, [{ sku: 'bag', productId: 'p-bag', quantity: 3 }]);
    assert.equal(t?.explanation.observed.lastActivityType, 'QUANTITY_CHANGED');
  } finally {
    await d.close();
  }
});

test('an order removes its skus and cancels the pending timer', async () => {
  const d = await driver();
  try {
    await pipeBasket(d, basket('carla', 0, 'ITEM_ADDED', 'shirt'));
    await pipeBasket(d, basket('carla', 1, 'ITEM_ADDED', 'scarf'));
    await d.pipe('shop.orders.v1', 'carla', order('carla', 20, ['shirt']));
    assert.deepEqual(d.timers('carla'), [], 'timer cancelled by the order');
    assert.deepEqual((await d.store(basketsStore).get('carla'))?.items.map((i) => i.sku), ['scarf']);
    await d.advanceStreamTime(T0 + 5 * HOUR);
    assert.deepEqual(triggers(d), [], 'no trigger after an order');
    // Later activity on what is left starts a new gap.
    await pipeBasket(d, basket('carla', 6 * 60, 'BASKET_VIEWED'));
    await d.advanceStreamTime(T0 + 7 * HOUR);
    const [t] = triggers(d);
    assert.deepEqual(t?.payload.items, [{ sku: 'scarf', productId: 'p-scarf', quantity: 1 }]);
  } finally {
    await d.close();
  }
});

test('removing every item (ITEM_REMOVED, QUANTITY_CHANGED to 0) cancels; a partial removal does not', async () => {
  const d = await driver();
  try {
    await pipeBasket(d, basket('dana', 0, 'ITEM_ADDED', 'cap'));
    await pipeBasket(d, basket('dana', 5, 'ITEM_REMOVED', 'cap'));
    await pipeBasket(d, basket('finn', 0, 'ITEM_ADDED', 'sock', { quantity: 2 }));
    await pipeBasket(d, basket('finn', 5, 'QUANTITY_CHANGED', 'sock', { quantity: 0 }));
    await pipeBasket(d, basket('gina', 0, 'ITEM_ADDED', 'belt', { quantity: 3 }));
    await pipeBasket(d, basket('gina', 5, 'ITEM_REMOVED', 'belt', { quantity: 1 }));
    assert.deepEqual(d.timers('dana'), []);
    assert.deepEqual(d.timers('finn'), []);
    await d.advanceStreamTime(T0 + 2 * HOUR);
    const ts = triggers(d);
    assert.deepEqual(ts.map((t) => t.customerId), ['gina']);
    assert.deepEqual(ts[0]?.payload.items, [{ sku: 'belt', productId: 'p-belt', quantity: 2 }]);
  } finally {
    await d.close();
  }
});

test('reentryCooldown: a second abandonment within 24 h is audited as SUPPRESSED, a later one fires', async () => {
  const d = await driver();
  try {
    await pipeBasket(d, basket('hugo', 0, 'ITEM_ADDED', 'lamp'));
    await d.advanceStreamTime(T0 + HOUR);
    assert.equal(triggers(d).length, 1);
    audits(d);
    await pipeBasket(d, basket('hugo', 120, 'BASKET_VIEWED'));
    await d.advanceStreamTime(T0 + 3 * HOUR);
    assert.deepEqual(triggers(d), []);
    const [a, ...more] = audits(d);
    assert.equal(more.length, 0);
    assert.equal(a?.decision, 'SUPPRESSED');
    assert.equal(a?.reason, 'cooldown');
    assert.match(a?.detail ?? '', /cooldown 86400000 ms/);
    await pipeBasket(d, basket('hugo', 25 * 60, 'BASKET_VIEWED'));
    await d.advanceStreamTime(T0 + 26 * HOUR);
    assert.deepEqual(triggers(d).map((t) => t.occurredAt), [T0 + 26 * HOUR]);
  } finally {
    await d.close();
  }
});

test('campaign parameters come from the config: gap, cooldown, channels, campaign id', async () => {
  const d = await driver({
    defaults: { channels: ['push'] },
    campaigns: { 'basket-abandonment': { campaignId: 'ba-2026', expiresAfter: '2h', params: { inactivityGap: '15m', reentryCooldown: 0 } } },
  });
  try {
    await pipeBasket(d, basket('ines', 0, 'ITEM_ADDED', 'mug'));
    await d.advanceStreamTime(T0 + 15 * MIN);
    const [t] = triggers(d);
    assert.equal(t?.campaignId, 'ba-2026');
    assert.deepEqual(t?.channels, ['push']);
    assert.equal(t?.expiresAt, T0 + 15 * MIN + 2 * HOUR);
    await pipeBasket(d, basket('ines', 20, 'BASKET_VIEWED'));
    await d.advanceStreamTime(T0 + 35 * MIN);
    assert.equal(triggers(d).length, 1, 'cooldown 0 lets the next abandonment fire');
  } finally {
    await d.close();
  }
});

test('a late basket event changes the contents but not the time of last activity', async () => {
  const d = await driver();
  try {
    await pipeBasket(d, basket('jon', 30, 'ITEM_ADDED', 'hat'));
    await pipeBasket(d, basket('jon', 10, 'ITEM_ADDED', 'glove'));
    assert.deepEqual(d.timers('jon').map((t) => t.time), [T0 + 90 * MIN]);
    await d.advanceStreamTime(T0 + 90 * MIN);
    const [t] = triggers(d);
    assert.deepEqual((t?.payload.items as { sku: string }[]).map((i) => i.sku), ['hat', 'glove']);
    assert.equal(t?.explanation.observed.lastActivityAt, T0 + 30 * MIN);
  } finally {
    await d.close();
  }
});

test('fires on wall-clock time when the partition goes quiet (idle stream-time advance)', async () => {
  const d = await driver({}, { wallClock: T0, idleAdvanceMs: 5_000 });
  try {
    await pipeBasket(d, basket('kim', 0, 'ITEM_ADDED', 'book'));
    await d.advanceWallClock(30 * MIN);
    assert.deepEqual(triggers(d), []);
    await d.advanceWallClock(31 * MIN);
    assert.deepEqual(triggers(d).map((t) => t.customerId), ['kim']);
  } finally {
    await d.close();
  }
});

test('pending timers and baskets survive a restart; the trigger id is the same in every run', async () => {
  const ids: string[] = [];
  for (let run = 0; run < 2; run++) {
    const { dir, remove } = tempDir();
    const d = await driver({}, { stateDir: dir });
    try {
      await pipeBasket(d, basket('lea', 0, 'ITEM_ADDED', 'desk', { eventId: 'fixed-event' }));
      await d.restart();
      assert.deepEqual(d.timers('lea').map((t) => t.time), [T0 + HOUR]);
      await d.advanceStreamTime(T0 + HOUR);
      const [t] = triggers(d);
      assert.ok(t);
      ids.push(t.triggerId);
    } finally {
      await d.close();
      remove();
    }
  }
  assert.equal(ids[0], ids[1]);
});

test('inputs from two topics in either order: an add that happened before an order but arrives after it starts no timer', async () => {
  const d = await driver();
  try {
    await d.pipe('shop.orders.v1', 'max', order('max', 10, ['tent']));
    await pipeBasket(d, basket('max', 5, 'ITEM_ADDED', 'tent'));
    await pipeBasket(d, basket('max', 6, 'ITEM_ADDED', 'stove'));
    assert.deepEqual(d.timers('max'), [], 'activity before the order does not start a gap');
    assert.deepEqual((await d.store(basketsStore).get('max'))?.items.map((i) => i.sku), ['stove']);
    await d.advanceStreamTime(T0 + 3 * HOUR);
    assert.deepEqual(triggers(d), []);
    // Activity after the order starts a new gap for what is left.
    await pipeBasket(d, basket('max', 200, 'BASKET_VIEWED'));
    await d.advanceStreamTime(T0 + 260 * MIN);
    assert.deepEqual(triggers(d).map((t) => (t.payload.items as { sku: string }[]).map((i) => i.sku)), [['stove']]);
  } finally {
    await d.close();
  }
});

test('a late order (older than the last basket activity) removes its skus but keeps the gap running', async () => {
  const d = await driver();
  try {
    await pipeBasket(d, basket('nia', 0, 'ITEM_ADDED', 'kite'));
    await pipeBasket(d, basket('nia', 30, 'ITEM_ADDED', 'reel'));
    await d.pipe('shop.orders.v1', 'nia', order('nia', 20, ['kite']));
    assert.deepEqual(d.timers('nia').map((t) => t.time), [T0 + 90 * MIN]);
    await d.advanceStreamTime(T0 + 90 * MIN);
    assert.deepEqual(triggers(d).map((t) => (t.payload.items as { sku: string }[]).map((i) => i.sku)), [['reel']]);
  } finally {
    await d.close();
  }
});
