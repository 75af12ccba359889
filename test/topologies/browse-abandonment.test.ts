import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Value } from '@sinclair/typebox/value';
import type { BasketEvent, OrderEvent, PageviewEvent } from '../../schemas/contract.js';
import { Trigger as TriggerSchema, TriggerAudit as TriggerAuditSchema } from '../../schemas/contract.js';
import { TopologyBuilder } from '../../src/engine/api/index.js';
import { TopologyTestDriver, type TestDriverOptions } from '../../src/engine/testing/test-driver.js';
import { basketAbandonment, defaults as basketDefaults } from '../../topologies/basket-abandonment/index.js';
import {
  browseAbandonment,
  BrowseAbandonmentParamsSchema,
  defaults,
  resolveBrowseAbandonmentParams,
  sessionsStore,
  type BrowseAbandonmentParams,
} from '../../topologies/browse-abandonment/index.js';
import { tempDir } from '../helpers.js';
import { audits, triggers } from '../support/outputs.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const GAP = 30 * MIN;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);

async function driver(overrides: Partial<BrowseAbandonmentParams> = {}, opts: TestDriverOptions = {}): Promise<TopologyTestDriver> {
  const b = new TopologyBuilder('test');
  browseAbandonment.build(b, { campaignId: 'browse', channels: ['push'], expiresAfterMs: 86_400_000, params: { ...defaults, ...overrides } });
  return TopologyTestDriver.create(b.build(), opts);
}

let seq = 0;
function view(customerId: string, atMin: number, productId: string, extra: Partial<PageviewEvent> = {}): PageviewEvent {
  return { eventId: `v${++seq}`, customerId, occurredAt: T0 + atMin * MIN, productId, ...extra };
}

function basket(customerId: string, atMin: number, type: BasketEvent['type'], sku: string, extra: Partial<BasketEvent> = {}): BasketEvent {
  return { eventId: `b${++seq}`, customerId, occurredAt: T0 + atMin * MIN, type, sku, productId: `p-${sku}`, ...extra };
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

async function pipeView(d: TopologyTestDriver, e: PageviewEvent): Promise<void> {
  await d.pipe('shop.pageviews.v1', e.customerId, e);
}

async function pipeBasket(d: TopologyTestDriver, e: BasketEvent): Promise<void> {
  await d.pipe('shop.basket.v1', e.customerId, e);
}

async function pipeOrder(d: TopologyTestDriver, e: OrderEvent): Promise<void> {
  await d.pipe('shop.orders.v1', e.customerId, e);
}

test('fires sessionGap after the last view of a session with 2 distinct products, with cause, explanation and payload', async () => {
  const d = await driver();
  try {
    await pipeView(d, view('anna', 0, 'p-shoe'));
    await pipeView(d, view('anna', 5, 'p-bag'));
    await pipeView(d, view('anna', 10, 'p-shoe'));
    await pipeView(d, view('anna', 12, 'p-hat'));
    const last = view('anna', 20, 'p-bag', { sku: 'bag-red' });
    await pipeView(d, last);
    assert.deepEqual(d.timers('anna').map((t) => t.time), [T0 + 50 * MIN]);
    await d.advanceStreamTime(T0 + 50 * MIN - 1);
    assert.deepEqual(triggers(d), [], 'nothing before the gap has passed');
    await d.advanceStreamTime(T0 + 50 * MIN);
    const [t, ...rest] = triggers(d);
    assert.equal(rest.length, 0);
    assert.ok(t);
    assert.ok(Value.Check(TriggerSchema, t), 'the trigger matches the contract');
    assert.equal(t.type, 'BROWSE_ABANDONED');
    assert.equal(t.customerId, 'anna');
    assert.equal(t.occurredAt, T0 + 50 * MIN);
    assert.equal(t.expiresAt, T0 + 50 * MIN + DAY);
    assert.equal(t.campaignId, 'browse');
    assert.deepEqual(t.channels, ['push']);
    assert.equal(t.variant, 'default');
    assert.deepEqual(t.causedBy, { eventId: last.eventId, topic: 'shop.pageviews.v1', partition: 0, offset: '4' });
    assert.match(t.triggerId, /^[0-9a-f]{32}$/);
    assert.deepEqual(t.explanation.params, { sessionGap: GAP, minDistinctProducts: 2, reentryCooldown: 7 * DAY });
    assert.deepEqual(t.explanation.observed, { sessionStart: T0, sessionEnd: T0 + 50 * MIN, lastViewAt: T0 + 20 * MIN, views: 5, distinctProducts: 3 });
    // Most viewed first; ties (shoe and bag, 2 views each): latest viewed first.
    assert.deepEqual(t.payload, {
      products: [
        { productId: 'p-bag', views: 2, lastViewedAt: T0 + 20 * MIN },
        { productId: 'p-shoe', views: 2, lastViewedAt: T0 + 10 * MIN },
        { productId: 'p-hat', views: 1, lastViewedAt: T0 + 12 * MIN },
      ],
      sessionStart: T0,
      sessionEnd: T0 + 50 * MIN,
    });
    const [a, ...more] = audits(d);
    assert.equal(more.length, 0);
    assert.ok(Value.Check(TriggerAuditSchema, a));
    assert.equal(a?.decision, 'SENT');
    assert.equal(a?.reason, 'ok');
    assert.equal(a?.triggerId, t.triggerId);
    assert.equal((await d.store(sessionsStore).get('anna'))?.session, undefined, 'the session is closed');
    await d.advanceStreamTime(T0 + 10 * HOUR);
    assert.deepEqual(triggers(d), [], 'fires once');
  } finally {
    await d.close();
  }
});

test('one distinct product (viewed many times) does not fire; minDistinctProducts is a parameter', async () => {
  const d = await driver();
  try {
    await pipeView(d, view('ben', 0, 'p-tv'));
    await pipeView(d, view('ben', 10, 'p-tv'));
    await pipeView(d, view('ben', 20, 'p-tv'));
    await d.advanceStreamTime(T0 + 3 * HOUR);
    assert.deepEqual(triggers(d), []);
    assert.deepEqual(audits(d), [], 'not qualifying is no decision to audit');
  } finally {
    await d.close();
  }
  const d3 = await driver({ minDistinctProducts: 3 });
  try {
    await pipeView(d3, view('cleo', 0, 'p-a'));
    await pipeView(d3, view('cleo', 1, 'p-b'));
    await pipeView(d3, view('dora', 0, 'p-a'));
    await pipeView(d3, view('dora', 1, 'p-b'));
    await pipeView(d3, view('dora', 2, 'p-c'));
    await d3.advanceStreamTime(T0 + 3 * HOUR);
    assert.deepEqual(triggers(d3).map((t) => t.customerId), ['dora']);
  } finally {
    await d3.close();
  }
});

test('views 29 min apart extend the session; 31 min (or exactly sessionGap) apart split it', async () => {
  const d = await driver();
  try {
    // eve: 0, 29, 58 → one session of 2 products ending at 88.
    await pipeView(d, view('eve', 0, 'p-a'));
    await pipeView(d, view('eve', 29, 'p-b'));
    await pipeView(d, view('eve', 58, 'p-a'));
    // finn: 0, 31 → two sessions of one product each.
    await pipeView(d, view('finn', 0, 'p-a'));
    await pipeView(d, view('finn', 31, 'p-b'));
    // gus: 0, 30 → "less than sessionGap apart": exactly 30 min splits.
    await pipeView(d, view('gus', 0, 'p-a'));
    await pipeView(d, view('gus', 30, 'p-b'));
    await d.advanceStreamTime(T0 + 88 * MIN - 1);
    assert.deepEqual(triggers(d), []);
    await d.advanceStreamTime(T0 + 5 * HOUR);
    const ts = triggers(d);
    assert.deepEqual(ts.map((t) => t.customerId), ['eve']);
    assert.equal(ts[0]?.occurredAt, T0 + 88 * MIN);
    assert.equal(ts[0]?.explanation.observed.sessionStart, T0);
    assert.equal(ts[0]?.explanation.observed.views, 3);
  } finally {
    await d.close();
  }
});

test('adding a viewed product to the basket excludes the session (by productId, or by a viewed sku)', async () => {
  const d = await driver();
  try {
    await pipeView(d, view('hana', 0, 'p-lamp'));
    await pipeView(d, view('hana', 5, 'p-desk'));
    await pipeBasket(d, basket('hana', 8, 'ITEM_ADDED', 'desk', { productId: 'p-desk' }));
    await pipeView(d, view('hana', 15, 'p-chair'));

    // A basket event without productId matches a sku seen on a viewed page.
    await pipeView(d, view('ivo', 0, 'p-coat', { sku: 'coat-l' }));
    await pipeView(d, view('ivo', 5, 'p-boot'));
    const { productId: _ignored, ...noProduct } = basket('ivo', 9, 'QUANTITY_CHANGED', 'coat-l', { quantity: 2 });
    await pipeBasket(d, noProduct);
    await d.advanceStreamTime(T0 + 3 * HOUR);
    assert.deepEqual(triggers(d), []);
    assert.deepEqual(audits(d), []);
    assert.equal(d.timers('hana').length, 0);
  } finally {
    await d.close();
  }
});

test('adding an unrelated product, removing one or setting a quantity to 0 does not exclude', async () => {
  const d = await driver();
  try {
    await pipeView(d, view('jon', 0, 'p-kite'));
    await pipeView(d, view('jon', 5, 'p-reel'));
    await pipeBasket(d, basket('jon', 6, 'ITEM_ADDED', 'rod'));
    await pipeBasket(d, basket('jon', 7, 'ITEM_REMOVED', 'kite'));
    await pipeBasket(d, basket('jon', 8, 'QUANTITY_CHANGED', 'reel', { quantity: 0 }));
    await pipeBasket(d, basket('jon', 9, 'CHECKOUT_STARTED', 'reel'));
    await d.advanceStreamTime(T0 + 35 * MIN);
    assert.deepEqual(triggers(d).map((t) => t.customerId), ['jon']);
  } finally {
    await d.close();
  }
});

test('an order of a viewed product excludes; an order of other products does not', async () => {
  const d = await driver();
  try {
    await pipeView(d, view('kim', 0, 'p-tent'));
    await pipeView(d, view('kim', 5, 'p-stove'));
    await pipeOrder(d, order('kim', 10, ['mat', 'stove']));
    await pipeView(d, view('lou', 0, 'p-tent'));
    await pipeView(d, view('lou', 5, 'p-stove'));
    await pipeOrder(d, order('lou', 10, ['mat']));
    await d.advanceStreamTime(T0 + 3 * HOUR);
    assert.deepEqual(triggers(d).map((t) => t.customerId), ['lou']);
  } finally {
    await d.close();
  }
});

test('an add during the gap (after the last view, before the session ends) excludes', async () => {
  const d = await driver();
  try {
    await pipeView(d, view('mia', 0, 'p-a'));
    await pipeView(d, view('ned', 0, 'p-a'));
    await pipeView(d, view('mia', 5, 'p-b'));
    await pipeView(d, view('ned', 5, 'p-b'));
    await pipeBasket(d, basket('mia', 34, 'ITEM_ADDED', 'a'));
    // At the session end the session is already decided: an add then is too late to exclude.
    await pipeBasket(d, basket('ned', 35, 'ITEM_ADDED', 'a'));
    await d.advanceStreamTime(T0 + 3 * HOUR);
    assert.deepEqual(triggers(d).map((t) => t.customerId), ['ned']);
  } finally {
    await d.close();
  }
});

test('event time across topics: an add older than the session start does not exclude, one arriving before older views does', async () => {
  const d = await driver();
  try {
    // ola: the add (minute 2) arrives after the views that started at minute 3.
    await pipeView(d, view('ola', 3, 'p-a'));
    await pipeView(d, view('ola', 6, 'p-b'));
    await pipeBasket(d, basket('ola', 2, 'ITEM_ADDED', 'a'));
    // pia: the add (minute 10) arrives before the views (minutes 4 and 8) read from a lagging topic.
    await pipeBasket(d, basket('pia', 10, 'ITEM_ADDED', 'a'));
    await pipeView(d, view('pia', 4, 'p-a'));
    await pipeView(d, view('pia', 8, 'p-b'));
    // rui: an order from before the session arrives late; the session still fires.
    await pipeView(d, view('rui', 20, 'p-a'));
    await pipeView(d, view('rui', 21, 'p-b'));
    await pipeOrder(d, order('rui', 1, ['a', 'b']));
    await d.advanceStreamTime(T0 + 3 * HOUR);
    assert.deepEqual(triggers(d).map((t) => t.customerId).sort(), ['ola', 'rui']);
  } finally {
    await d.close();
  }
});

test('late views join the open session (start moves back, the cause stays the latest view); views of a decided session are dropped', async () => {
  const d = await driver();
  try {
    const latest = view('sam', 10, 'p-a');
    await pipeView(d, latest);
    await pipeView(d, view('sam', 2, 'p-b'));
    assert.deepEqual(d.timers('sam').map((t) => t.time), [T0 + 40 * MIN], 'a late view does not move the end');
    await d.advanceStreamTime(T0 + 40 * MIN);
    const [t] = triggers(d);
    assert.equal(t?.explanation.observed.sessionStart, T0 + 2 * MIN);
    assert.equal(t?.causedBy.eventId, latest.eventId);
    // A view that belonged to the session just decided, arriving after it ended, starts nothing.
    await pipeView(d, view('sam', 15, 'p-c'));
    await pipeView(d, view('sam', 16, 'p-d'));
    assert.deepEqual(d.timers('sam'), []);
    await d.advanceStreamTime(T0 + 5 * HOUR);
    assert.deepEqual(triggers(d), []);
    assert.deepEqual(audits(d).map((a) => a.decision), ['SENT']);
    // Views whose session would already have ended in stream time (more than sessionGap late) start nothing.
    await pipeView(d, view('tom', 4 * 60, 'p-a'));
    await pipeView(d, view('tom', 4 * 60 + 1, 'p-b'));
    assert.deepEqual(d.timers('tom'), []);
    assert.equal(await d.store(sessionsStore).get('tom'), undefined);
    // Less late than that, they still form a session.
    await pipeView(d, view('una', 5 * 60 - 20, 'p-a'));
    await pipeView(d, view('una', 5 * 60 - 19, 'p-b'));
    await d.advanceStreamTime(T0 + 6 * HOUR);
    assert.deepEqual(triggers(d).map((x) => [x.customerId, x.occurredAt]), [['una', T0 + 5 * HOUR + 11 * MIN]]);
  } finally {
    await d.close();
  }
});

test('reentryCooldown: a second session within 7 d is audited as SUPPRESSED; one after the cooldown fires', async () => {
  const d = await driver();
  try {
    await pipeView(d, view('tea', 0, 'p-a'));
    await pipeView(d, view('tea', 1, 'p-b'));
    await d.advanceStreamTime(T0 + 31 * MIN);
    const [first] = triggers(d);
    assert.ok(first);
    audits(d);

    await pipeView(d, view('tea', 3 * 24 * 60, 'p-c'));
    await pipeView(d, view('tea', 3 * 24 * 60 + 1, 'p-d'));
    await d.advanceStreamTime(T0 + 3 * DAY + HOUR);
    assert.deepEqual(triggers(d), []);
    const [a, ...more] = audits(d);
    assert.equal(more.length, 0);
    assert.ok(Value.Check(TriggerAuditSchema, a));
    assert.equal(a?.decision, 'SUPPRESSED');
    assert.equal(a?.reason, 'cooldown');
    assert.equal(a?.type, 'BROWSE_ABANDONED');
    assert.equal(a?.occurredAt, T0 + 3 * DAY + 31 * MIN);
    assert.match(a?.detail ?? '', /cooldown 604800000 ms/);

    // The suppressed session does not restart the cooldown: 7 d after the first trigger fires again.
    await pipeView(d, view('tea', 7 * 24 * 60 + 1, 'p-e'));
    await pipeView(d, view('tea', 7 * 24 * 60 + 2, 'p-f'));
    await d.advanceStreamTime(T0 + 8 * DAY);
    const [again] = triggers(d);
    assert.equal(again?.occurredAt, T0 + 7 * DAY + 32 * MIN);
    assert.equal(again?.explanation.observed.previousTriggerAt, first.occurredAt);
    assert.notEqual(again?.triggerId, first.triggerId);
  } finally {
    await d.close();
  }
});

test('pending session timers and state survive a restart; the trigger id is the same in every run', async () => {
  const ids: string[] = [];
  for (let run = 0; run < 2; run++) {
    const { dir, remove } = tempDir();
    const d = await driver({}, { stateDir: dir });
    try {
      await pipeView(d, view('uma', 0, 'p-a', { eventId: 'first-view' }));
      await pipeView(d, view('uma', 4, 'p-b', { eventId: 'fixed-view' }));
      await pipeView(d, view('vic', 3, 'p-a'));
      await pipeBasket(d, basket('vic', 4, 'ITEM_ADDED', 'a'));
      await pipeView(d, view('vic', 5, 'p-b'));
      await d.restart();
      assert.deepEqual(d.timers('uma').map((t) => t.time), [T0 + 34 * MIN]);
      assert.equal((await d.store(sessionsStore).get('vic'))?.conversions.length, 1, 'remembered adds survive too');
      await d.advanceStreamTime(T0 + 36 * MIN);
      const ts = triggers(d);
      assert.deepEqual(ts.map((t) => t.customerId), ['uma'], 'vic stays excluded after the restart');
      const [t] = ts;
      assert.ok(t);
      assert.equal(t.causedBy.eventId, 'fixed-view');
      ids.push(t.triggerId);
    } finally {
      await d.close();
      remove();
    }
  }
  assert.equal(ids.length, 2);
  assert.equal(ids[0], ids[1]);
});

test('fires on wall-clock time when the partition goes quiet (idle stream-time advance)', async () => {
  const d = await driver({}, { wallClock: T0, idleAdvanceMs: 5_000 });
  try {
    await pipeView(d, view('wes', 0, 'p-a'));
    await pipeView(d, view('wes', 0, 'p-b'));
    await d.advanceWallClock(29 * MIN);
    assert.deepEqual(triggers(d), []);
    await d.advanceWallClock(2 * MIN);
    assert.deepEqual(triggers(d).map((t) => t.customerId), ['wes']);
  } finally {
    await d.close();
  }
});

test('shares input sources with basket-abandonment in one builder; params schema and resolution', async () => {
  const b = new TopologyBuilder('test');
  basketAbandonment.build(b, { campaignId: 'basket', channels: ['push'], expiresAfterMs: DAY, params: basketDefaults });
  browseAbandonment.build(b, { campaignId: 'browse', channels: ['push'], expiresAfterMs: DAY, params: defaults });
  const topology = b.build();
  assert.deepEqual(topology.sourceTopics, ['shop.basket.v1', 'shop.orders.v1', 'shop.pageviews.v1']);
  assert.ok(topology.stores.has('browse-abandonment.sessions'));
  assert.ok(topology.nodes.has('browse-abandonment.triggers') && topology.nodes.has('browse-abandonment.audit'));
  const d = await TopologyTestDriver.create(topology);
  try {
    await pipeView(d, view('xia', 0, 'p-a'));
    await pipeView(d, view('xia', 1, 'p-b'));
    await pipeBasket(d, basket('yan', 0, 'ITEM_ADDED', 'a'));
    await d.advanceStreamTime(T0 + 2 * HOUR);
    assert.deepEqual(triggers(d).map((t) => `${t.customerId}:${t.type}`).sort(), ['xia:BROWSE_ABANDONED', 'yan:BASKET_ABANDONED']);
  } finally {
    await d.close();
  }

  assert.ok(Value.Check(BrowseAbandonmentParamsSchema, { sessionGap: '45m', minDistinctProducts: 3, reentryCooldown: '3d', stateTtl: 86_400_000 }));
  assert.ok(!Value.Check(BrowseAbandonmentParamsSchema, { minDistinctProducts: 0 }));
  assert.ok(!Value.Check(BrowseAbandonmentParamsSchema, { sessionGap: '30 minutes' }));
  assert.ok(!Value.Check(BrowseAbandonmentParamsSchema, { other: 1 }));
  assert.deepEqual(resolveBrowseAbandonmentParams({}), defaults);
  assert.deepEqual(resolveBrowseAbandonmentParams({ sessionGap: '45m', reentryCooldown: '3d' }), { ...defaults, sessionGap: 45 * MIN, reentryCooldown: 3 * DAY });
  assert.throws(() => resolveBrowseAbandonmentParams({ sessionGap: 0 }), /sessionGap/);
});
