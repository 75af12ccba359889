import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BasketEvent, CatalogEvent, Money, OrderEvent } from '../../schemas/contract.js';
import { TopologyBuilder } from '../../src/engine/api/index.js';
import { TopologyTestDriver, type TestDriverOptions } from '../../src/engine/testing/test-driver.js';
import {
  basketPriceDrop,
  BasketPriceDropParamsSchema,
  checkBasketPriceDropParams,
  customersStore,
  defaults,
  fanoutStore,
  priceDrop,
  resolveBasketPriceDropParams,
  subscriberKey,
  subscribersStore,
  type BasketPriceDropParams,
} from '../../topologies/basket-price-drop/index.js';
import { triggerId } from '../../topologies/common/triggers.js';
import { Value } from '@sinclair/typebox/value';
import { tempDir } from '../helpers.js';
import { audits, triggers } from '../support/outputs.js';

const MIN = 60_000;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const eur = (amount: number): Money => ({ amount, currency: 'EUR' });

async function driver(overrides: Partial<BasketPriceDropParams> = {}, opts: TestDriverOptions = {}): Promise<TopologyTestDriver> {
  const b = new TopologyBuilder('test');
  basketPriceDrop.build(b, { campaignId: 'pd', channels: ['push'], expiresAfterMs: 86_400_000, params: { ...defaults, ...overrides } });
  return TopologyTestDriver.create(b.build(), opts);
}

let seq = 0;
function basket(customerId: string, atMin: number, type: BasketEvent['type'], sku: string, extra: Partial<BasketEvent> = {}): BasketEvent {
  return { eventId: `b${++seq}`, customerId, occurredAt: T0 + atMin * MIN, type, sku, productId: `p-${sku}`, ...extra };
}

async function add(d: TopologyTestDriver, customerId: string, atMin: number, sku: string, unitPrice?: number | Money, extra: Partial<BasketEvent> = {}): Promise<BasketEvent> {
  const price = unitPrice === undefined ? {} : { unitPrice: typeof unitPrice === 'number' ? eur(unitPrice) : unitPrice };
  const e = basket(customerId, atMin, 'ITEM_ADDED', sku, { ...price, ...extra });
  await d.pipe('shop.basket.v1', customerId, e);
  return e;
}

async function price(d: TopologyTestDriver, sku: string, atMin: number, amount: number | Money, eventId = `c${++seq}`): Promise<CatalogEvent> {
  const e: CatalogEvent = {
    eventId,
    sku,
    productId: `p-${sku}`,
    occurredAt: T0 + atMin * MIN,
    type: 'PRICE_CHANGED',
    price: typeof amount === 'number' ? eur(amount) : amount,
  };
  await d.pipe('shop.catalog.v1', sku, e);
  return e;
}

async function stock(d: TopologyTestDriver, sku: string, atMin: number, units: number): Promise<void> {
  const e: CatalogEvent = { eventId: `s${++seq}`, sku, productId: `p-${sku}`, occurredAt: T0 + atMin * MIN, type: 'STOCK_CHANGED', stock: units };
  await d.pipe('shop.catalog.v1', sku, e);
}

async function order(d: TopologyTestDriver, customerId: string, atMin: number, skus: string[]): Promise<void> {
  const o: OrderEvent = {
    eventId: `o${++seq}`,
    orderId: `order-${seq}`,
    customerId,
    occurredAt: T0 + atMin * MIN,
    items: skus.map((sku) => ({ sku, productId: `p-${sku}`, quantity: 1, unitPrice: eur(1000) })),
  };
  await d.pipe('shop.orders.v1', customerId, o);
}

test('a drop of at least 10 % below the add price fires, with cause, explanation, payload and a SENT audit', async () => {
  const d = await driver();
  try {
    await add(d, 'anna', 0, 'jacket', 10_000, { quantity: 2 });
    const drop = await price(d, 'jacket', 30, 9_000);
    const [t, ...rest] = triggers(d);
    assert.equal(rest.length, 0);
    assert.ok(t);
    assert.equal(t.type, 'BASKET_PRICE_DROP');
    assert.equal(t.customerId, 'anna');
    assert.equal(t.campaignId, 'pd');
    assert.deepEqual(t.channels, ['push']);
    assert.equal(t.occurredAt, drop.occurredAt);
    assert.equal(t.expiresAt, drop.occurredAt + 86_400_000);
    assert.deepEqual(t.causedBy, { eventId: drop.eventId, topic: 'shop.catalog.v1', partition: 0, offset: '0' });
    assert.equal(t.triggerId, triggerId('basket-price-drop', 'anna', 'BASKET_PRICE_DROP', drop.eventId));
    assert.deepEqual(t.explanation.params, { minDropPercent: 10, minDropAmount: 0 });
    assert.deepEqual(t.explanation.observed, {
      referencePrice: eur(10_000),
      referenceSource: 'basket',
      newPrice: eur(9_000),
      dropPercent: 10,
      dropAmount: 1_000,
    });
    assert.deepEqual(t.payload, { sku: 'jacket', productId: 'p-jacket', oldPrice: eur(10_000), newPrice: eur(9_000), quantity: 2 });
    const [a, ...moreAudits] = audits(d);
    assert.equal(moreAudits.length, 0);
    assert.equal(a?.decision, 'SENT');
    assert.equal(a?.reason, 'ok');
    assert.equal(a?.triggerId, t.triggerId);
  } finally {
    await d.close();
  }
});

test('a 9 % drop does not fire; the reference stays the add price, not the previous catalog price', async () => {
  const d = await driver();
  try {
    await add(d, 'ben', 0, 'boot', 10_000);
    await price(d, 'boot', 10, 9_100);
    assert.deepEqual(triggers(d), []);
    assert.deepEqual(audits(d), [], 'no trigger, no audit');
    // 1.1 % below the last catalog price but 10 % below what ben paid when adding.
    await price(d, 'boot', 20, 9_000);
    const [t] = triggers(d);
    assert.equal(t?.explanation.observed.dropPercent, 10);
    assert.deepEqual(t?.explanation.observed.previousCatalogPrice, eur(9_100));
  } finally {
    await d.close();
  }
});

test('minDropAmount: the drop must also be at least this many minor units', async () => {
  const d = await driver({ minDropAmount: 1_500 });
  try {
    await add(d, 'cleo', 0, 'lamp', 10_000);
    await price(d, 'lamp', 10, 9_000);
    assert.deepEqual(triggers(d), [], '10 % but only 1000 cents');
    await price(d, 'lamp', 20, 8_500);
    const [t] = triggers(d);
    assert.equal(t?.explanation.observed.dropAmount, 1_500);
    assert.deepEqual(t?.explanation.params, { minDropPercent: 10, minDropAmount: 1_500 });
  } finally {
    await d.close();
  }
});

test('reference: the add unit price, else the last catalog price, else the first price seen after the add', async () => {
  const d = await driver();
  try {
    await price(d, 'mug', 0, 10_000);
    await add(d, 'dana', 1, 'mug'); // no unit price: reference = last catalog price 10 000
    await add(d, 'emil', 2, 'mug', 9_500); // reference = unit price 9 500
    await price(d, 'mug', 10, 9_000);
    const ts = triggers(d);
    assert.deepEqual(ts.map((t) => t.customerId), ['dana'], '9 000 is only 5.3 % below emil’s 9 500');
    assert.equal(ts[0]?.explanation.observed.referenceSource, 'catalog');
    assert.deepEqual(ts[0]?.payload.oldPrice, eur(10_000));

    // No price known anywhere: the first PRICE_CHANGED becomes the reference and fires nothing.
    await add(d, 'finn', 20, 'cap');
    await price(d, 'cap', 21, 2_000);
    assert.deepEqual(triggers(d), []);
    assert.deepEqual((await d.store(subscribersStore).get(subscriberKey('cap', 'finn')))?.reference, eur(2_000));
    await price(d, 'cap', 22, 1_800);
    const [t] = triggers(d);
    assert.equal(t?.customerId, 'finn');
    assert.deepEqual(t?.explanation.observed.referencePrice, eur(2_000));
  } finally {
    await d.close();
  }
});

test('a second drop fires only below the last notified price, thresholds measured from it', async () => {
  const d = await driver();
  try {
    await add(d, 'gina', 0, 'tent', 10_000);
    await price(d, 'tent', 10, 9_000);
    assert.equal(triggers(d).length, 1);
    await price(d, 'tent', 20, 9_500);
    await price(d, 'tent', 30, 9_000);
    assert.deepEqual(triggers(d), [], 'back to the notified price: nothing new');
    await price(d, 'tent', 40, 8_500);
    assert.deepEqual(triggers(d), [], '15 % below the add price, but only 5.6 % below the notified 9 000');
    await price(d, 'tent', 50, 8_100);
    const [t] = triggers(d);
    assert.deepEqual(t?.explanation.observed.referencePrice, eur(9_000));
    assert.equal(t?.explanation.observed.referenceSource, 'notified');
    assert.deepEqual(t?.explanation.observed.lastNotifiedPrice, eur(9_000));
    assert.deepEqual(t?.payload.oldPrice, eur(9_000));
    assert.deepEqual((await d.store(customersStore).get('gina'))?.notified.tent?.price, eur(8_100));
  } finally {
    await d.close();
  }
});

test('removed before the drop (ITEM_REMOVED or quantity 0): no trigger; a partial removal still watches', async () => {
  const d = await driver();
  try {
    await add(d, 'hugo', 0, 'kite', 10_000);
    await d.pipe('shop.basket.v1', 'hugo', basket('hugo', 5, 'ITEM_REMOVED', 'kite'));
    await add(d, 'ines', 0, 'kite', 10_000, { quantity: 2 });
    await d.pipe('shop.basket.v1', 'ines', basket('ines', 5, 'QUANTITY_CHANGED', 'kite', { quantity: 0 }));
    await add(d, 'jon', 0, 'kite', 10_000, { quantity: 3 });
    await d.pipe('shop.basket.v1', 'jon', basket('jon', 5, 'ITEM_REMOVED', 'kite', { quantity: 1 }));
    assert.equal(await d.store(subscribersStore).get(subscriberKey('kite', 'hugo')), undefined, 'unsubscribed on the sku side');
    await price(d, 'kite', 10, 5_000);
    const ts = triggers(d);
    assert.deepEqual(ts.map((t) => t.customerId), ['jon']);
    assert.equal(ts[0]?.payload.quantity, 2);
  } finally {
    await d.close();
  }
});

test('bought before the drop: no trigger, also when an older add arrives after the order', async () => {
  const d = await driver();
  try {
    await add(d, 'kim', 0, 'desk', 10_000);
    await order(d, 'kim', 5, ['desk']);
    await order(d, 'lea', 5, ['desk']);
    await add(d, 'lea', 1, 'desk', 10_000); // happened before lea's order, read after it
    await add(d, 'lea', 2, 'chair', 5_000);
    await price(d, 'desk', 10, 5_000);
    await price(d, 'chair', 10, 4_000);
    assert.deepEqual(triggers(d).map((t) => [t.customerId, t.payload.sku]), [['lea', 'chair']]);
  } finally {
    await d.close();
  }
});

test('a price in another currency is ignored (no trigger, no audit); the next same-currency drop fires', async () => {
  const d = await driver();
  try {
    await add(d, 'max', 0, 'bag', 10_000);
    await price(d, 'bag', 10, { amount: 5_000, currency: 'USD' });
    assert.deepEqual(triggers(d), []);
    assert.deepEqual(audits(d), []);
    await price(d, 'bag', 20, 8_000);
    const [t] = triggers(d);
    assert.deepEqual(t?.explanation.observed.referencePrice, eur(10_000));
    assert.deepEqual(t?.explanation.observed.previousCatalogPrice, { amount: 5_000, currency: 'USD' });
  } finally {
    await d.close();
  }
});

test('sold out (stock 0 known): no trigger; after a restock the next drop fires', async () => {
  const d = await driver();
  try {
    await add(d, 'nia', 0, 'sofa', 10_000);
    await stock(d, 'sofa', 5, 0);
    await price(d, 'sofa', 10, 8_000);
    assert.deepEqual(triggers(d), []);
    await stock(d, 'sofa', 20, 4);
    await price(d, 'sofa', 30, 7_900);
    const [t] = triggers(d);
    assert.equal(t?.customerId, 'nia');
    assert.deepEqual(t?.explanation.observed.referencePrice, eur(10_000));
  } finally {
    await d.close();
  }
});

async function wave(pageSize: number, n: number): Promise<{ firstStep: number; ids: string[] }> {
  const d = await driver({ pageSize });
  try {
    for (let i = 0; i < n; i++) await add(d, `c${String(i).padStart(3, '0')}`, 0, 'hot', 10_000);
    await price(d, 'hot', 10, 8_000, 'drop-1');
    const first = triggers(d);
    if (first.length < n) {
      assert.ok((await d.store(fanoutStore).get('hot')) !== undefined, 'cursor saved between steps');
      assert.equal(d.timers('hot').length, 1, 'continuation timer pending');
    }
    // Added after the drop in event time: not a candidate. (Piped after the price: a price read behind stream
    // time runs its steps at once, since step k is due at the price's time + k.)
    await add(d, 'late', 20, 'hot');
    await d.advanceStreamTime(d.streamTime + 1_000); // steps are due one millisecond of stream time apart
    const rest = triggers(d);
    assert.equal(await d.store(fanoutStore).get('hot'), undefined, 'cursor gone when the wave is done');
    assert.deepEqual(d.timers('hot'), []);
    return { firstStep: first.length, ids: [...first, ...rest].map((t) => `${t.customerId}:${t.triggerId}`) };
  } finally {
    await d.close();
  }
}

test('paging: a small pageSize spreads the wave over timer steps and gives the same triggers', async () => {
  const n = 23;
  const paged = await wave(5, n);
  const whole = await wave(500, n);
  assert.equal(paged.firstStep, 5, 'one page in the first step');
  assert.equal(whole.firstStep, n);
  assert.equal(paged.ids.length, n, 'everyone once, the late add not at all');
  assert.deepEqual(paged.ids, whole.ids);
});

test('paging: a wave stops when the sku sells out between steps; other records run between steps', async () => {
  const d = await driver({ pageSize: 4 });
  try {
    for (let i = 0; i < 10; i++) await add(d, `s${String(i).padStart(2, '0')}`, 0, 'hot', 10_000);
    await add(d, 'other', 0, 'cold', 1_000);
    await price(d, 'hot', 10, 8_000);
    assert.equal(triggers(d).length, 4);
    await price(d, 'cold', 10, 500); // processed while the hot wave waits for its next step
    assert.deepEqual(triggers(d).map((t) => t.customerId), ['other']);
    await stock(d, 'hot', 10, 0);
    await d.advanceStreamTime(d.streamTime + 1_000); // steps are due one millisecond of stream time apart
    assert.deepEqual(triggers(d), [], 'sold out: the rest of the wave is dropped');
    assert.equal(await d.store(fanoutStore).get('hot'), undefined);
  } finally {
    await d.close();
  }
});

test('trigger ids are deterministic across runs; the index and a wave in progress survive a restart', async () => {
  const runs: string[][] = [];
  for (let run = 0; run < 2; run++) {
    const { dir, remove } = tempDir();
    const d = await driver({ pageSize: 2 }, { stateDir: dir });
    try {
      for (const c of ['ola', 'pia', 'quin', 'rosa', 'sam']) await add(d, c, 0, 'lamp', 10_000);
      await d.restart();
      assert.ok(await d.store(subscribersStore).get(subscriberKey('lamp', 'quin')), 'index restored from RocksDB');
      await price(d, 'lamp', 10, 8_000, 'price-fixed');
      const first = triggers(d);
      assert.equal(first.length, 2);
      await d.restart();
      assert.equal(d.timers('lamp').length, 1, 'the continuation timer is persisted');
      await d.advanceStreamTime(d.streamTime + 1_000); // steps are due one millisecond of stream time apart
      const rest = triggers(d);
      runs.push([...first, ...rest].map((t) => `${t.customerId}:${t.triggerId}`));
    } finally {
      await d.close();
      remove();
    }
  }
  assert.equal(runs[0]?.length, 5);
  assert.deepEqual(runs[0], runs[1]);
});

test('a redelivered candidate (same price) does not fire twice', async () => {
  const d = await driver();
  try {
    await add(d, 'tom', 0, 'pen', 1_000);
    const e = await price(d, 'pen', 10, 800);
    assert.equal(triggers(d).length, 1);
    // The same catalog event again (at-least-once input): the last notified price stops a second trigger.
    await d.pipe('shop.catalog.v1', 'pen', e);
    assert.deepEqual(triggers(d), []);
  } finally {
    await d.close();
  }
});

test('params: schema, defaults, durations and the rule helper', () => {
  assert.ok(Value.Check(BasketPriceDropParamsSchema, {}));
  assert.ok(Value.Check(BasketPriceDropParamsSchema, { minDropPercent: 12.5, minDropAmount: 100, pageSize: 50, stateTtl: '7d' }));
  assert.ok(!Value.Check(BasketPriceDropParamsSchema, { pageSize: 0 }));
  assert.ok(!Value.Check(BasketPriceDropParamsSchema, { minDropPercent: 101 }));
  assert.ok(!Value.Check(BasketPriceDropParamsSchema, { other: 1 }));
  assert.deepEqual(resolveBasketPriceDropParams(), defaults);
  assert.equal(resolveBasketPriceDropParams({ stateTtl: '7d' }).stateTtl, 7 * 86_400_000);
  assert.deepEqual(checkBasketPriceDropParams({ ...defaults, stateTtl: 0 }), ['stateTtl: must be greater than 0']);
  assert.throws(() => basketPriceDrop.build(new TopologyBuilder('x'), { campaignId: 'pd', channels: ['push'], expiresAfterMs: 1, params: { ...defaults, pageSize: 0 } }), RangeError);
  assert.deepEqual(priceDrop(eur(1_000), eur(900), defaults), { dropAmount: 100, dropPercent: 10 });
  assert.equal(priceDrop(eur(1_000), eur(901), defaults), null);
  assert.equal(priceDrop(eur(1_000), { amount: 1, currency: 'USD' }, defaults), null);
  assert.equal(priceDrop(eur(1_000), eur(1_000), { minDropPercent: 0, minDropAmount: 0 }), null, 'a drop must be a drop');
});
