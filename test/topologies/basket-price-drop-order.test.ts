/**
 * DESIGN §4, Kafka == replay, for BASKET_PRICE_DROP: run as N tasks with repartition records delivered late
 * and out of order (MultiTaskDriver), the topology must emit the same triggers as replay (the single-task test
 * driver), whatever the schedule.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BasketEvent, CatalogEvent, CustomerProfile, Money, OrderEvent, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { TopologyBuilder, type Topology } from '../../src/engine/api/index.js';
import { MultiTaskDriver, type MultiTaskSchedule } from '../../src/engine/testing/multi-task-driver.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { partitionOf } from '../../src/kafka/partitioner.js';
import { mulberry32 } from '../../src/util/prng.js';
import { basketPriceDrop, defaults, type BasketPriceDropParams } from '../../topologies/basket-price-drop/index.js';
import { AUDIT_TOPIC, TRIGGERS_TOPIC } from '../../topologies/common/campaign.js';
import { triggerId } from '../../topologies/common/triggers.js';

const MIN = 60_000;
const T0 = Date.UTC(2026, 2, 2, 9, 0, 0);
const eur = (amount: number): Money => ({ amount, currency: 'EUR' });

function topology(overrides: Partial<BasketPriceDropParams> = {}): Topology {
  const b = new TopologyBuilder('test');
  basketPriceDrop.build(b, { campaignId: 'pd', channels: ['push'], expiresAfterMs: 86_400_000, params: { ...defaults, ...overrides } });
  return b.build();
}

interface Input {
  readonly topic: string;
  readonly key: string;
  readonly value: BasketEvent | CatalogEvent | OrderEvent;
}

const key = (t: Pick<Trigger, 'triggerId' | 'type' | 'customerId'>): string => `${t.triggerId} ${t.type} ${t.customerId}`;

async function replay(inputs: readonly Input[], end: number, params: Partial<BasketPriceDropParams> = {}): Promise<string[]> {
  const d = await TopologyTestDriver.create(topology(params));
  try {
    for (const i of inputs) await d.pipe(i.topic, i.key, i.value);
    await d.advanceStreamTime(end);
    return d.readOutput<Trigger>(TRIGGERS_TOPIC).map((o) => key(o.value)).sort();
  } finally {
    await d.close();
  }
}

interface Run {
  readonly partitions: number;
  readonly seed: number;
  readonly schedule: MultiTaskSchedule;
  readonly publishProbability?: number;
  readonly restartProbability?: number;
}

async function multi(inputs: readonly Input[], end: number, run: Run, params: Partial<BasketPriceDropParams> = {}): Promise<string[]> {
  const d = await MultiTaskDriver.create(topology(params), { partitioner: partitionOf, ...run });
  try {
    for (const i of inputs) d.send(i.topic, i.key, i.value);
    await d.finish(end);
    return d.readOutput<Trigger>(TRIGGERS_TOPIC).map((o) => key(o.value)).sort();
  } finally {
    await d.close();
  }
}

/**
 * A seeded shop history: customers adding (with or without a unit price, re-adding at another price),
 * removing, changing quantities and ordering; skus whose price drops and rises and whose stock goes to 0 and
 * back. Every event has its own time (no ties: their order would be arbitrary in Kafka too).
 */
function history(seed: number, n = 160): { inputs: Input[]; end: number } {
  const rnd = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const customers = Array.from({ length: 10 }, (_, i) => `cust-${i}`);
  const skus = ['sku-a', 'sku-b', 'sku-c', 'sku-d'];
  const price = new Map<string, number>(skus.map((s) => [s, 10_000]));
  const inputs: Input[] = [];
  let t = T0;
  let id = 0;
  for (let k = 0; k < n; k++) {
    t += 1 + Math.floor(rnd() * 5 * MIN);
    const r = rnd();
    const sku = pick(skus);
    const customerId = pick(customers);
    const eventId = `e${seed}-${++id}`;
    if (r < 0.32) {
      const withPrice = rnd() < 0.8;
      const unit = Math.round((price.get(sku) as number) * (0.9 + rnd() * 0.3));
      const value: BasketEvent = { eventId, customerId, occurredAt: t, type: 'ITEM_ADDED', sku, productId: `p-${sku}`, quantity: 1 + Math.floor(rnd() * 2), ...(withPrice ? { unitPrice: eur(unit) } : {}) };
      inputs.push({ topic: 'shop.basket.v1', key: customerId, value });
    } else if (r < 0.44) {
      const value: BasketEvent = { eventId, customerId, occurredAt: t, type: 'ITEM_REMOVED', sku, productId: `p-${sku}` };
      inputs.push({ topic: 'shop.basket.v1', key: customerId, value });
    } else if (r < 0.5) {
      const value: BasketEvent = { eventId, customerId, occurredAt: t, type: 'QUANTITY_CHANGED', sku, productId: `p-${sku}`, quantity: Math.floor(rnd() * 3) };
      inputs.push({ topic: 'shop.basket.v1', key: customerId, value });
    } else if (r < 0.55) {
      const value: OrderEvent = { eventId, orderId: `o-${eventId}`, customerId, occurredAt: t, items: [{ sku, productId: `p-${sku}`, quantity: 1, unitPrice: eur(price.get(sku) as number) }] };
      inputs.push({ topic: 'shop.orders.v1', key: customerId, value });
    } else if (r < 0.9) {
      const next = Math.max(100, Math.round((price.get(sku) as number) * (0.72 + rnd() * 0.45)));
      price.set(sku, next);
      const value: CatalogEvent = { eventId, sku, productId: `p-${sku}`, occurredAt: t, type: 'PRICE_CHANGED', price: eur(next) };
      inputs.push({ topic: 'shop.catalog.v1', key: sku, value });
    } else {
      const value: CatalogEvent = { eventId, sku, productId: `p-${sku}`, occurredAt: t, type: 'STOCK_CHANGED', stock: rnd() < 0.5 ? 0 : 5 };
      inputs.push({ topic: 'shop.catalog.v1', key: sku, value });
    }
  }
  return { inputs, end: t + 60 * MIN };
}

const RUNS: Run[] = [
  { partitions: 3, seed: 1, schedule: 'inputs-first' },
  { partitions: 4, seed: 2, schedule: 'inputs-first', publishProbability: 0.05 },
  { partitions: 3, seed: 3, schedule: 'random', publishProbability: 0.1 },
  { partitions: 4, seed: 4, schedule: 'random', publishProbability: 0.02 },
  { partitions: 2, seed: 5, schedule: 'random', publishProbability: 0.5, restartProbability: 0.05 },
];

test('property: N tasks with late, reordered repartition records fire the same triggers as replay', async () => {
  let total = 0;
  for (const historySeed of [11, 12, 13, 14, 15, 16]) {
    const { inputs, end } = history(historySeed);
    const expected = await replay(inputs, end);
    total += expected.length;
    for (const run of RUNS) {
      const got = await multi(inputs, end, run);
      assert.deepEqual(got, expected, `history ${historySeed}, ${JSON.stringify(run)}`);
    }
  }
  assert.ok(total >= 20, `the histories fire enough to mean something (${total})`);
});

test('property: the same with small pages (waves spread over timer steps)', async () => {
  for (const historySeed of [21, 22, 23]) {
    const { inputs, end } = history(historySeed);
    const expected = await replay(inputs, end, { pageSize: 2 });
    assert.deepEqual(expected, await replay(inputs, end), 'paging alone changes nothing in replay');
    for (const run of RUNS.slice(0, 3)) assert.deepEqual(await multi(inputs, end, run, { pageSize: 2 }), expected, `history ${historySeed}, ${JSON.stringify(run)}`);
  }
});

// ---------------------------------------------------------------------------------------------------------
// Targeted: each order problem of issue 13 on its own, with 'inputs-first' (the catch-up of a backlog: every
// task reads all of its input before any repartition record is published).

function add(customerId: string, atMin: number, sku: string, unitPrice?: number, eventId = `add-${customerId}-${sku}-${atMin}`): Input {
  const value: BasketEvent = { eventId, customerId, occurredAt: T0 + atMin * MIN, type: 'ITEM_ADDED', sku, productId: `p-${sku}`, ...(unitPrice === undefined ? {} : { unitPrice: eur(unitPrice) }) };
  return { topic: 'shop.basket.v1', key: customerId, value };
}
function remove(customerId: string, atMin: number, sku: string): Input {
  const value: BasketEvent = { eventId: `rm-${customerId}-${sku}-${atMin}`, customerId, occurredAt: T0 + atMin * MIN, type: 'ITEM_REMOVED', sku, productId: `p-${sku}` };
  return { topic: 'shop.basket.v1', key: customerId, value };
}
function priceAt(sku: string, atMin: number, amount: number, eventId = `price-${sku}-${atMin}`): Input {
  const value: CatalogEvent = { eventId, sku, productId: `p-${sku}`, occurredAt: T0 + atMin * MIN, type: 'PRICE_CHANGED', price: eur(amount) };
  return { topic: 'shop.catalog.v1', key: sku, value };
}

/** Customer and sku keys in different partitions of 2, so the fan-out crosses tasks. */
function crossing(customers: string[], sku: string): void {
  for (const c of customers) assert.notEqual(partitionOf(c, 2), partitionOf(sku, 2), `${c} and ${sku} must live in different tasks`);
}
const BACKLOG: Run = { partitions: 2, seed: 7, schedule: 'inputs-first' };

async function both(inputs: Input[], end = T0 + 600 * MIN): Promise<{ replayed: string[]; kafka: string[] }> {
  return { replayed: await replay(inputs, end), kafka: await multi(inputs, end, BACKLOG) };
}

test('a subscription that reaches the sku index after the price drop still fires, with the replay trigger id', async () => {
  crossing(['anna'], 'coat');
  const inputs = [add('anna', 0, 'coat', 10_000), priceAt('coat', 30, 9_000, 'drop-1'), priceAt('coat', 40, 9_500)];
  const { replayed, kafka } = await both(inputs);
  const id = triggerId('basket-price-drop', 'anna', 'BASKET_PRICE_DROP', 'drop-1');
  assert.deepEqual(replayed, [`${id} BASKET_PRICE_DROP anna`]);
  assert.deepEqual(kafka, replayed);
});

test('no unit price: the reference is the catalog price as of the add, not the current one', async () => {
  crossing(['ben'], 'coat');
  // Catalog 10 000 when ben adds; 8 000 (the drop) and 8 500 arrive at the index before his subscription.
  const inputs = [priceAt('coat', 0, 10_000), add('ben', 5, 'coat'), priceAt('coat', 30, 8_000, 'drop-2'), priceAt('coat', 40, 8_500)];
  const { replayed, kafka } = await both(inputs);
  assert.equal(replayed.length, 1);
  assert.deepEqual(kafka, replayed);
});

test('a candidate that reaches the customer after the item was removed (removed after the price change) still fires', async () => {
  crossing(['cleo'], 'coat');
  const inputs = [add('cleo', 0, 'coat', 10_000), priceAt('coat', 30, 8_000), remove('cleo', 50, 'coat')];
  const { replayed, kafka } = await both(inputs);
  assert.equal(replayed.length, 1);
  assert.deepEqual(kafka, replayed);
});

test('a removal before the price change that reaches the index late does not fire', async () => {
  crossing(['dan'], 'coat');
  // The index sees the price before dan's subscribe and unsubscribe; the customer side knows he removed it first.
  const inputs = [add('dan', 0, 'coat', 10_000), remove('dan', 20, 'coat'), priceAt('coat', 30, 8_000)];
  const { replayed, kafka } = await both(inputs);
  assert.deepEqual(replayed, []);
  assert.deepEqual(kafka, []);
  // And the other way round: subscribe and unsubscribe reach the index before an older price change.
  const random = await multi(inputs, T0 + 600 * MIN, { partitions: 2, seed: 3, schedule: 'random', publishProbability: 1 });
  assert.deepEqual(random, []);
});

test('a re-add at another price: each price change is judged against the unit price of its time', async () => {
  crossing(['eve'], 'jacket');
  // 9 000 at 30 is 10 % below the first add (10 000); after the re-add at 8 000, 7 500 at 60 is not 10 % below it.
  const inputs = [add('eve', 0, 'jacket', 10_000), priceAt('jacket', 30, 9_000), add('eve', 40, 'jacket', 8_000), priceAt('jacket', 60, 7_500)];
  const { replayed, kafka } = await both(inputs);
  assert.equal(replayed.length, 1);
  assert.deepEqual(kafka, replayed);
});

// ---------------------------------------------------------------------------------------------------------
// With the guards (issue 14, item 2): only a sent trigger (or a holdout) is the next reference. The guards'
// decisions come back to the customer side in the customer's task, so they are as order-insensitive as the
// rest: profiles whose consent changes over time, a holdout share and quiet hours (held triggers released,
// or dropped for consent withdrawn by the release).

function guardedTopology(): Topology {
  return buildTopology(
    resolveCampaigns({
      defaults: { channels: ['push'], expiresAfter: '48h' },
      // Tokyo: 09:00 UTC is 18:00 there, so the histories run into the quiet hours (22:00-08:00 local).
      guards: { defaultTimezone: 'Asia/Tokyo', quietHours: { start: '22:00', end: '08:00' }, cap: null },
      campaigns: {
        'basket-abandonment': { enabled: false },
        'browse-abandonment': { enabled: false },
        'wishlist-restock': { enabled: false },
        'basket-price-drop': { campaignId: 'pd', experiment: { holdout: 0.2, variants: [{ name: 'A', weight: 1 }] } },
      },
    }),
    'guarded',
  );
}

/** The history with a profile per customer and consent changes spread over the day (before and after the release). */
function guardedHistory(seed: number): { inputs: Input[]; end: number } {
  const { inputs } = history(seed);
  const rnd = mulberry32(seed * 7919);
  const profiles: { at: number; input: { topic: string; key: string; value: CustomerProfile } }[] = [];
  for (let i = 0; i < 10; i++) {
    const customerId = `cust-${i}`;
    let at = T0 - 1 - i;
    for (let k = 0; k < 4; k++) {
      const push = k === 0 ? rnd() < 0.8 : rnd() < 0.5;
      const value: CustomerProfile = { customerId, updatedAt: at, consents: { push, email: false, onsite: false }, pushTokens: [], segments: [], attributes: {} };
      profiles.push({ at, input: { topic: 'crm.customers.v1', key: customerId, value } });
      at += 1 + Math.floor(rnd() * 6 * 60 * MIN);
    }
  }
  const all = [...inputs.map((input) => ({ at: (input.value as { occurredAt: number }).occurredAt, input })), ...profiles].sort((a, b) => a.at - b.at);
  return { inputs: all.map((x) => x.input as Input), end: T0 + 36 * 60 * MIN };
}

/** Triggers (id, customer, send time) and decisions (trigger id, decision/reason, time). */
async function guardedOutputs(d: TopologyTestDriver | MultiTaskDriver): Promise<{ triggers: string[]; decisions: string[] }> {
  return {
    triggers: d.readOutput<Trigger>(TRIGGERS_TOPIC).map((o) => `${key(o.value)} ${o.timestamp}`).sort(),
    decisions: d.readOutput<TriggerAudit>(AUDIT_TOPIC).map((o) => `${o.value.triggerId} ${o.value.decision}/${o.value.reason} ${o.value.occurredAt}`).sort(),
  };
}

test('property, with guards: suppressed drops are no reference; N tasks in any order decide as replay', async () => {
  let fired = 0;
  let suppressed = 0;
  for (const historySeed of [51, 52, 53, 54]) {
    const { inputs, end } = guardedHistory(historySeed);
    const r = await TopologyTestDriver.create(guardedTopology());
    let expected: { triggers: string[]; decisions: string[] };
    try {
      for (const i of inputs) await r.pipe(i.topic, i.key, i.value);
      await r.advanceStreamTime(end);
      expected = await guardedOutputs(r);
    } finally {
      await r.close();
    }
    fired += expected.triggers.length;
    suppressed += expected.decisions.filter((x) => /SUPPRESSED\/(no-consent)/.test(x)).length;
    for (const run of RUNS.slice(0, 4)) {
      const d = await MultiTaskDriver.create(guardedTopology(), { partitioner: partitionOf, ...run });
      try {
        for (const i of inputs) d.send(i.topic, i.key, i.value);
        await d.finish(end);
        assert.deepEqual(await guardedOutputs(d), expected, `history ${historySeed}, ${JSON.stringify(run)}`);
      } finally {
        await d.close();
      }
    }
  }
  assert.ok(fired >= 10 && suppressed >= 5, `the histories send and suppress enough to mean something (${fired} sent, ${suppressed} suppressed)`);
});
