import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Value } from '@sinclair/typebox/value';
import type { CatalogEvent, Trigger, WishlistEvent } from '../../schemas/contract.js';
import { TopologyBuilder, type Topology } from '../../src/engine/api/index.js';
import { TopologyTestDriver, type TestDriverOptions } from '../../src/engine/testing/test-driver.js';
import { triggerId } from '../../topologies/common/triggers.js';
import {
  defaults,
  NAME,
  wavesStore,
  wishesStore,
  wishlistRestock,
  wishlistRestockParams,
  WishlistRestockParamsSchema,
  type RestockMatch,
  type WishlistRestockParams,
} from '../../topologies/wishlist-restock/index.js';
import { tempDir } from '../helpers.js';
import { audits, triggers } from '../support/outputs.js';

const MIN = 60_000;
const DAY = 24 * 60 * MIN;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);

function topology(overrides: Partial<WishlistRestockParams> = {}): Topology {
  const b = new TopologyBuilder('test');
  wishlistRestock.build(b, { campaignId: 'restock', channels: ['push'], expiresAfterMs: 86_400_000, params: { ...defaults, ...overrides } });
  return b.build();
}

async function driver(overrides: Partial<WishlistRestockParams> = {}, opts: TestDriverOptions = {}): Promise<TopologyTestDriver> {
  return TopologyTestDriver.create(topology(overrides), opts);
}

let seq = 0;
async function wish(d: TopologyTestDriver, customerId: string, productId: string, at: number, sku?: string, type: WishlistEvent['type'] = 'ITEM_ADDED'): Promise<WishlistEvent> {
  const e: WishlistEvent = { eventId: `w${++seq}`, customerId, occurredAt: at, type, productId, ...(sku === undefined ? {} : { sku }) };
  await d.pipe('shop.wishlist.v1', customerId, e);
  return e;
}

async function stock(d: TopologyTestDriver, productId: string, sku: string, at: number, units: number, eventId = `c${++seq}`): Promise<CatalogEvent> {
  const e: CatalogEvent = { eventId, sku, productId, occurredAt: at, type: 'STOCK_CHANGED', stock: units };
  await d.pipe('shop.catalog.v1', sku, e);
  return e;
}

const who = (ts: readonly Trigger[]): string[] => ts.map((t) => t.customerId);

test('a restock notifies the sku wishers and the product-level wishers, with cause, explanation and payload', async () => {
  const t = topology();
  assert.deepEqual(t.repartitionTopics, ['test-wishlist-restock.by-product-repartition', 'test-wishlist-restock.to-customer-repartition']);
  const d = await TopologyTestDriver.create(t);
  try {
    const anna = await wish(d, 'anna', 'coat', T0, 'coat-m');
    await wish(d, 'ben', 'coat', T0 + MIN);
    await wish(d, 'cleo', 'coat', T0 + 2 * MIN, 'coat-l');
    await wish(d, 'dan', 'hat', T0 + 3 * MIN);
    await stock(d, 'coat', 'coat-m', T0 + 10 * MIN, 0);
    await stock(d, 'coat', 'coat-l', T0 + 10 * MIN, 0);
    assert.deepEqual(triggers(d), []);
    const restock = await stock(d, 'coat', 'coat-m', T0 + 60 * MIN, 5);
    const ts = triggers(d);
    assert.deepEqual(who(ts), ['anna', 'ben'], 'sku wisher and any-size wisher, oldest first; not the other size or product');
    const [t1, t2] = ts;
    assert.ok(t1 && t2);
    assert.equal(t1.type, 'WISHLIST_BACK_IN_STOCK');
    assert.equal(t1.occurredAt, restock.occurredAt);
    assert.equal(t1.expiresAt, restock.occurredAt + 86_400_000);
    assert.equal(t1.campaignId, 'restock');
    assert.deepEqual(t1.channels, ['push']);
    assert.deepEqual(t1.causedBy, { eventId: restock.eventId, topic: 'shop.catalog.v1', partition: 0, offset: '2' });
    assert.deepEqual(t1.payload, { productId: 'coat', sku: 'coat-m', stock: 5 });
    assert.deepEqual(t1.explanation.params, { minStock: 1, maxPerUnit: 'unlimited', cooldown: 7 * DAY });
    assert.deepEqual(t1.explanation.observed, { previousStock: 0, stock: 5, wishedAt: anna.occurredAt, wishedSku: 'coat-m', waveLimit: 'unlimited' });
    assert.equal(t2.explanation.observed.wishedSku, null);
    assert.ok(Number(t1.explanation.observed.wishedAt) < Number(t2.explanation.observed.wishedAt), 'oldest wish first');
    assert.deepEqual(
      audits(d).map((a) => [a.customerId, a.decision, a.reason, a.triggerId]),
      ts.map((x) => [x.customerId, 'SENT', 'ok', x.triggerId]),
    );
    assert.deepEqual(d.readOutput('test-wishlist-restock.to-customer-repartition'), [], 'looped back, not emitted');

    // The other size: its own wave; the any-size wisher is notified again (cooldown is per sku).
    await stock(d, 'coat', 'coat-l', T0 + 70 * MIN, 3);
    assert.deepEqual(who(triggers(d)), ['ben', 'cleo']);
    assert.deepEqual(await d.store(wavesStore).scan(), [], 'finished waves are removed');
  } finally {
    await d.close();
  }
});

test('no trigger while stock stays below minStock, for 3→5, or for the first stock event of a sku; minStock is the boundary', async () => {
  const d = await driver({ minStock: 3 });
  try {
    await wish(d, 'anna', 'shoe', T0, 'shoe-40');
    await wish(d, 'ben', 'boot', T0, 'boot-41');
    await stock(d, 'shoe', 'shoe-40', T0 + MIN, 0);
    await stock(d, 'shoe', 'shoe-40', T0 + 2 * MIN, 2);
    await stock(d, 'boot', 'boot-41', T0 + 2 * MIN, 5);
    await stock(d, 'boot', 'boot-41', T0 + 3 * MIN, 7);
    await d.advanceStreamTime(T0 + DAY);
    assert.deepEqual(triggers(d), [], 'below minStock, unknown previous stock, and 5→7 are no restock');
    await stock(d, 'shoe', 'shoe-40', T0 + DAY + MIN, 3);
    const [t, ...rest] = triggers(d);
    assert.equal(rest.length, 0);
    assert.equal(t?.customerId, 'anna');
    assert.deepEqual(t?.explanation.observed.previousStock, 2);
  } finally {
    await d.close();
  }
});

test('a stale stock event (older than the last known one) neither restocks nor changes the stock', async () => {
  const d = await driver();
  try {
    await wish(d, 'anna', 'cap', T0, 'cap-s');
    await stock(d, 'cap', 'cap-s', T0 + 10 * MIN, 4);
    await stock(d, 'cap', 'cap-s', T0 + 5 * MIN, 0);
    await stock(d, 'cap', 'cap-s', T0 + 20 * MIN, 6);
    assert.deepEqual(triggers(d), []);
  } finally {
    await d.close();
  }
});

test('oldest wish first, at most maxPerUnit × stock per wave; wishes made after the restock are not in its wave', async () => {
  const d = await driver({ maxPerUnit: 2 });
  try {
    // Piped out of wish-time order: the index orders by wish time, not arrival.
    await wish(d, 'c3', 'lamp', T0 + 30 * MIN, 'lamp-red');
    await wish(d, 'c1', 'lamp', T0 + 10 * MIN);
    await wish(d, 'c4', 'lamp', T0 + 40 * MIN);
    await wish(d, 'c2', 'lamp', T0 + 20 * MIN, 'lamp-red');
    await wish(d, 'c0', 'lamp', T0 + 5 * MIN, 'lamp-blue');
    await stock(d, 'lamp', 'lamp-red', T0 + 50 * MIN, 0);
    await stock(d, 'lamp', 'lamp-red', T0 + 60 * MIN, 1);
    let ts = triggers(d);
    assert.deepEqual(who(ts), ['c1', 'c2'], '2 per unit × 1 unit, oldest first across sku and any-size wishes');
    assert.deepEqual(
      ts.map((t) => [t.explanation.observed.wavePosition, t.explanation.observed.waveLimit]),
      [
        [1, 2],
        [2, 2],
      ],
    );
    assert.deepEqual(audits(d).length, 2, 'the rest is neither notified nor audited');

    await stock(d, 'lamp', 'lamp-red', T0 + 2 * DAY, 0);
    await wish(d, 'c9', 'lamp', T0 + 2 * DAY + 30 * MIN, 'lamp-red');
    await stock(d, 'lamp', 'lamp-red', T0 + 9 * DAY, 3);
    ts = triggers(d);
    assert.deepEqual(who(ts), ['c1', 'c2', 'c3', 'c4', 'c9'], 'limit 6: everyone, oldest first');
    assert.deepEqual(audits(d).map((a) => a.decision), ['SENT', 'SENT', 'SENT', 'SENT', 'SENT'], 'a week later: no cooldown');

    // A wish made after the restock (while its wave would still be paging) is not part of it.
    await stock(d, 'lamp', 'lamp-blue', T0 + 9 * DAY, 0);
    await wish(d, 'late', 'lamp', T0 + 9 * DAY + MIN, 'lamp-blue');
    await stock(d, 'lamp', 'lamp-blue', T0 + 9 * DAY, 2);
    assert.deepEqual(who(triggers(d)), ['c0', 'c1', 'c4'], 'blue: c0 (sku), c1 and c4 (any size), not late');
  } finally {
    await d.close();
  }
});

test('a sell-out ends the running wave; a restock after it starts a new one where the cooldown applies per customer and sku', async () => {
  const d = await driver({ pageSize: 1 });
  try {
    for (const [i, c] of ['a', 'b', 'c', 'd', 'e'].entries()) await wish(d, c, 'bag', T0 + i * MIN, i % 2 === 0 ? 'bag-x' : undefined);
    await stock(d, 'bag', 'bag-x', T0 + 10 * MIN, 0);
    const R = T0 + 60 * MIN;
    await stock(d, 'bag', 'bag-x', R, 10);
    assert.deepEqual(who(triggers(d)), ['a'], 'first page in the restock step');
    assert.deepEqual(d.timers('bag-x').map((t) => t.time), [R + 1]);
    // The sell-out is 2 ms of stream time later: the steps due at R+1 and R+2 run before it.
    await stock(d, 'bag', 'bag-x', R + 2, 0);
    assert.deepEqual(who(triggers(d)), ['b', 'c']);
    assert.deepEqual(d.timers('bag-x'), [], 'paging timer cancelled');
    assert.equal(await d.store(wavesStore).get('bag-x'), undefined);
    await d.advanceStreamTime(R + DAY);
    assert.deepEqual(triggers(d), [], 'the wave stays ended');
    audits(d);

    // Restocked 2 days later: a new wave, but a, b, c were notified for bag-x within the 7-day cooldown.
    const R2 = T0 + 3 * DAY;
    const again = await stock(d, 'bag', 'bag-x', R2, 10);
    await d.advanceStreamTime(R2 + 10);
    assert.deepEqual(who(triggers(d)), ['d', 'e']);
    const as = audits(d);
    assert.deepEqual(
      as.map((a) => [a.customerId, a.decision, a.reason]),
      [
        ['a', 'SUPPRESSED', 'cooldown'],
        ['b', 'SUPPRESSED', 'cooldown'],
        ['c', 'SUPPRESSED', 'cooldown'],
        ['d', 'SENT', 'ok'],
        ['e', 'SENT', 'ok'],
      ],
    );
    assert.equal(as[0]?.triggerId, triggerId(NAME, 'a', 'WISHLIST_BACK_IN_STOCK', again.eventId));
    assert.match(as[0]?.detail ?? '', /cooldown 604800000 ms/);

    // Another size of the same product is not under bag-x's cooldown.
    await stock(d, 'bag', 'bag-y', R2, 0);
    await stock(d, 'bag', 'bag-y', R2 + 20, 1);
    assert.deepEqual(who(triggers(d)), ['b'], 'first any-size wisher (pageSize 1)');
    await d.advanceStreamTime(R2 + 30);
    assert.deepEqual(who(triggers(d)), ['d']);

    // After the cooldown everyone is notified again for bag-x.
    await stock(d, 'bag', 'bag-x', T0 + 8 * DAY, 0);
    await stock(d, 'bag', 'bag-x', T0 + 8 * DAY + MIN, 10);
    await d.advanceStreamTime(T0 + 8 * DAY + MIN + 10);
    assert.deepEqual(who(triggers(d)), ['a', 'b', 'c']);
  } finally {
    await d.close();
  }
});

test('removed wishes are not notified; sku and product-level wishes are removed separately; a double wish notifies once', async () => {
  const d = await driver();
  try {
    await wish(d, 'anna', 'mug', T0, 'mug-1');
    await wish(d, 'anna', 'mug', T0 + MIN, 'mug-1', 'ITEM_REMOVED');
    await wish(d, 'ben', 'mug', T0);
    await wish(d, 'ben', 'mug', T0 + MIN, undefined, 'ITEM_REMOVED');
    await wish(d, 'cleo', 'mug', T0, 'mug-1');
    await wish(d, 'cleo', 'mug', T0 + MIN, undefined, 'ITEM_REMOVED');
    await wish(d, 'dan', 'mug', T0);
    await wish(d, 'dan', 'mug', T0, 'mug-1');
    await wish(d, 'dan', 'mug', T0 + MIN, 'mug-1', 'ITEM_REMOVED');
    await wish(d, 'eve', 'mug', T0 + 2 * MIN);
    await wish(d, 'eve', 'mug', T0 + 3 * MIN, 'mug-1');
    assert.equal(await d.store(wishesStore).get('mug\u0000mug-1\u0000anna'), undefined);
    assert.equal(await d.store(wishesStore).get('mug\u0000\u0000ben'), undefined);
    await stock(d, 'mug', 'mug-1', T0 + 10 * MIN, 0);
    await stock(d, 'mug', 'mug-1', T0 + 20 * MIN, 1);
    const ts = triggers(d);
    assert.deepEqual(who(ts), ['cleo', 'dan', 'eve']);
    assert.deepEqual(
      ts.map((t) => t.explanation.observed.wishedSku),
      ['mug-1', null, 'mug-1'],
    );
  } finally {
    await d.close();
  }
});

async function runScenario(params: Partial<WishlistRestockParams>): Promise<{ ids: string[][]; steps: number }> {
  const d = await driver(params);
  try {
    const customers = Array.from({ length: 13 }, (_, i) => `cust-${String(i).padStart(2, '0')}`);
    for (const [i, c] of customers.entries()) {
      // Every third wishes any size, every fifth another size only; wish times interleave the two ranges.
      const sku = i % 5 === 4 ? 'tee-s' : i % 3 === 0 ? undefined : 'tee-m';
      await wish(d, c, 'tee', T0 + ((i * 7) % 13) * MIN, sku);
    }
    await wish(d, 'cust-05', 'tee', T0 + 20 * MIN, 'tee-m', 'ITEM_REMOVED');
    await stock(d, 'tee', 'tee-m', T0 + 30 * MIN, 0);
    await stock(d, 'tee', 'tee-m', T0 + 60 * MIN, 2, 'restock-tee-m');
    let steps = 1;
    for (let t = T0 + 60 * MIN + 1; d.timers('tee-m').length > 0; t++) {
      await d.advanceStreamTime(t);
      steps++;
    }
    const ids = triggers(d).map((t) => [t.customerId, t.triggerId, String(t.explanation.observed.wavePosition), String(t.explanation.observed.wishedAt)]);
    return { ids, steps };
  } finally {
    await d.close();
  }
}

test('paging across several steps with a small pageSize gives the same result as one big page', async () => {
  for (const maxPerUnit of [null, 3]) {
    const one = await runScenario({ maxPerUnit });
    assert.equal(one.steps, 1);
    assert.ok(one.ids.length >= 6);
    for (const pageSize of [1, 2, 5]) {
      const paged = await runScenario({ maxPerUnit, pageSize });
      assert.ok(paged.steps > 1, `pageSize ${pageSize} pages`);
      assert.deepEqual(paged.ids, one.ids, `pageSize ${pageSize}, maxPerUnit ${String(maxPerUnit)}`);
    }
  }
  const limited = await runScenario({ maxPerUnit: 3 });
  assert.equal(limited.ids.length, 6, '3 per unit × 2 units');
});

test('a wave pages one step per millisecond of stream time; other records are processed in between', async () => {
  const d = await driver({ pageSize: 2 });
  try {
    for (let i = 0; i < 6; i++) await wish(d, `c${i}`, 'sofa', T0 + i * MIN, 'sofa-1');
    await stock(d, 'sofa', 'sofa-1', T0 + 10 * MIN, 0);
    const R = T0 + 20 * MIN;
    await stock(d, 'sofa', 'sofa-1', R, 1);
    assert.deepEqual(who(triggers(d)), ['c0', 'c1']);
    const wave = await d.store(wavesStore).get('sofa-1');
    assert.equal(wave?.sent, 2);
    assert.match(wave?.skuCursor ?? '', /c1$/);
    // A wish change of another customer one millisecond later: one more page runs first, then the record.
    await wish(d, 'zed', 'sofa', R + 1, 'sofa-1');
    assert.deepEqual(who(triggers(d)), ['c2', 'c3']);
    await d.advanceStreamTime(R + 10);
    assert.deepEqual(who(triggers(d)), ['c4', 'c5'], 'zed wished after the restock');
  } finally {
    await d.close();
  }
});

test('trigger ids are deterministic: the same input gives the same ids in another run', async () => {
  const run = async (): Promise<string[]> => {
    const d = await driver({ pageSize: 2 });
    try {
      await wish(d, 'anna', 'desk', T0, 'desk-1');
      await wish(d, 'ben', 'desk', T0 + MIN);
      await wish(d, 'cleo', 'desk', T0 + 2 * MIN, 'desk-1');
      await stock(d, 'desk', 'desk-1', T0 + 5 * MIN, 0);
      await stock(d, 'desk', 'desk-1', T0 + 10 * MIN, 2, 'fixed-restock');
      await d.advanceStreamTime(T0 + DAY);
      return [...triggers(d).map((t) => t.triggerId), ...audits(d).map((a) => a.auditId)];
    } finally {
      await d.close();
    }
  };
  const first = await run();
  assert.equal(first.length, 6);
  assert.deepEqual(await run(), first);
  assert.equal(first[0], triggerId(NAME, 'anna', 'WISHLIST_BACK_IN_STOCK', 'fixed-restock'));
});

test('wishes, stock and a wave cursor survive a restart; the wave continues where it stopped', async () => {
  const { dir, remove } = tempDir();
  const d = await driver({ pageSize: 2 }, { stateDir: dir });
  try {
    for (let i = 0; i < 5; i++) await wish(d, `c${i}`, 'vase', T0 + i * MIN, i === 2 ? undefined : 'vase-1');
    await stock(d, 'vase', 'vase-1', T0 + 10 * MIN, 0);
    await d.restart();
    const R = T0 + 20 * MIN;
    await stock(d, 'vase', 'vase-1', R, 4);
    assert.deepEqual(who(triggers(d)), ['c0', 'c1']);
    await d.restart();
    assert.deepEqual(d.timers('vase-1').map((t) => t.time), [R + 1]);
    assert.equal((await d.store(wavesStore).get('vase-1'))?.sent, 2);
    await d.advanceStreamTime(R + 5);
    assert.deepEqual(who(triggers(d)), ['c2', 'c3', 'c4']);
    assert.equal(await d.store(wavesStore).get('vase-1'), undefined);
    // The cooldown state survived too.
    await stock(d, 'vase', 'vase-1', R + MIN, 0);
    await d.restart();
    await stock(d, 'vase', 'vase-1', R + 2 * MIN, 4);
    await d.advanceStreamTime(R + 3 * MIN);
    assert.deepEqual(triggers(d), []);
    assert.deepEqual(new Set(audits(d).filter((a) => a.decision === 'SUPPRESSED').map((a) => a.customerId)).size, 5);
  } finally {
    await d.close();
    remove();
  }
});

test('params schema: optional fields, durations, "unlimited"; resolved with defaults', () => {
  assert.ok(Value.Check(WishlistRestockParamsSchema, {}));
  assert.ok(Value.Check(WishlistRestockParamsSchema, { minStock: 2, maxPerUnit: 'unlimited', cooldown: '7d', pageSize: 100, stateTtl: 86_400_000 }));
  assert.ok(Value.Check(WishlistRestockParamsSchema, { maxPerUnit: null }));
  assert.ok(!Value.Check(WishlistRestockParamsSchema, { maxPerUnit: 0 }));
  assert.ok(!Value.Check(WishlistRestockParamsSchema, { minStock: 0 }));
  assert.ok(!Value.Check(WishlistRestockParamsSchema, { pageSize: 0 }));
  assert.ok(!Value.Check(WishlistRestockParamsSchema, { cooldown: '7 days' }));
  assert.ok(!Value.Check(WishlistRestockParamsSchema, { other: 1 }));
  assert.deepEqual(wishlistRestockParams({}), defaults);
  assert.deepEqual(wishlistRestockParams({ maxPerUnit: 'unlimited', cooldown: '2d', minStock: 3, pageSize: 50, stateTtl: '30d' }), {
    minStock: 3,
    maxPerUnit: null,
    cooldown: 2 * DAY,
    pageSize: 50,
    stateTtl: 30 * DAY,
  });
  assert.equal(wishlistRestockParams({ maxPerUnit: 4 }).maxPerUnit, 4);
});

test('maxPerUnit: Infinity counts as unlimited', async () => {
  const d = await driver({ maxPerUnit: Infinity });
  try {
    for (let i = 0; i < 4; i++) await wish(d, `c${i}`, 'pen', T0 + i, 'pen-1');
    await stock(d, 'pen', 'pen-1', T0 + MIN, 0);
    await stock(d, 'pen', 'pen-1', T0 + 2 * MIN, 1);
    const ts = triggers(d);
    assert.equal(ts.length, 4);
    assert.equal(ts[0]?.explanation.params.maxPerUnit, 'unlimited');
  } finally {
    await d.close();
  }
});

test('stateTtl: a wish not (re-)added for stateTtl is not notified and is dropped; re-adding keeps its place', async () => {
  const d = await driver({ stateTtl: 30 * DAY });
  try {
    await wish(d, 'old', 'rug', T0, 'rug-1');
    await wish(d, 'kept', 'rug', T0 + MIN);
    await wish(d, 'kept', 'rug', T0 + 20 * DAY);
    await stock(d, 'rug', 'rug-1', T0 + 35 * DAY, 0);
    await stock(d, 'rug', 'rug-1', T0 + 40 * DAY, 1);
    const ts = triggers(d);
    assert.deepEqual(who(ts), ['kept']);
    assert.equal(ts[0]?.explanation.observed.wishedAt, T0 + MIN, 'the original wish time');
    assert.equal(await d.store(wishesStore).get('rug\u0000rug-1\u0000old'), undefined);
  } finally {
    await d.close();
  }
});

test('a redelivered match (the same restock again through the to-customer topic) is decided once', async () => {
  const d = await driver();
  try {
    const match: RestockMatch = {
      customerId: 'anna',
      productId: 'tent',
      sku: 'tent-2p',
      wishedSku: null,
      wishedAt: T0,
      position: 1,
      limit: null,
      stock: 3,
      previousStock: 0,
      restockAt: T0 + DAY,
      restockEventId: 'restock-1',
      causedBy: { eventId: 'restock-1', topic: 'shop.catalog.v1', partition: 2, offset: '41' },
    };
    // The customer task judges a match against the customer's wishes as of the restock: anna wished for the tent.
    await wish(d, 'anna', 'tent', T0);
    await d.pipe('test-wishlist-restock.to-customer-repartition', 'anna', match);
    await d.pipe('test-wishlist-restock.to-customer-repartition', 'anna', match);
    const ts = triggers(d);
    assert.equal(ts.length, 1);
    assert.deepEqual(ts[0]?.causedBy, match.causedBy, 'the carried catalog origin, not the repartition record');
    assert.deepEqual(audits(d).map((a) => a.decision), ['SENT']);
  } finally {
    await d.close();
  }
});
