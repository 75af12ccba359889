/**
 * DESIGN §3 (issue 14, item 3): a restock wave notifies up to its quota (maxPerUnit × stock) from the waiting
 * wishers, oldest first, skipping those in cooldown. Sends and holdout assignments use the quota; customers
 * without consent, out of the audience or over the cap do not; a held trigger reserves its place until it is
 * sent or dropped. Through the whole topology (guards on), test driver (replay).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CatalogEvent, CustomerProfile, Trigger, TriggerAudit, WishlistEvent } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { bucketOf } from '../../topologies/common/guards.js';
import { wavesStore } from '../../topologies/wishlist-restock/index.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
// 2026-04-01 09:00 UTC (11:00 Berlin, 18:00 Tokyo).
const T0 = Date.UTC(2026, 3, 1, 9, 0, 0);

const OTHERS_OFF = { 'basket-abandonment': { enabled: false }, 'browse-abandonment': { enabled: false }, 'basket-price-drop': { enabled: false } };

function config(guards: object, restock: object = {}): ReturnType<typeof resolveCampaigns> {
  return resolveCampaigns({
    defaults: { channels: ['push'], expiresAfter: '48h' },
    guards: { defaultTimezone: 'Europe/Berlin', quietHours: null, cap: null, ...guards },
    campaigns: { ...OTHERS_OFF, 'wishlist-restock': { campaignId: 'rs', params: { maxPerUnit: 1, cooldown: '7d' }, ...restock } },
  });
}

function profile(customerId: string, updatedAt: number, over: Partial<CustomerProfile> = {}): CustomerProfile {
  return { customerId, updatedAt, timezone: 'Europe/Berlin', consents: { push: true, email: false, onsite: false }, pushTokens: [], segments: [], attributes: {}, ...over };
}

async function wishers(d: TopologyTestDriver, names: readonly string[], productId = 'coat', sku = 'coat-m', over: (n: string) => Partial<CustomerProfile> = () => ({})): Promise<void> {
  for (const [i, c] of names.entries()) {
    const at = T0 + (i + 1) * MIN;
    await d.pipe('crm.customers.v1', c, profile(c, at - 1, over(c)), { timestamp: at - 1 });
    const e: WishlistEvent = { eventId: `w-${c}-${productId}`, customerId: c, occurredAt: at, type: 'ITEM_ADDED', productId, sku };
    await d.pipe('shop.wishlist.v1', c, e);
  }
}

async function stock(d: TopologyTestDriver, sku: string, at: number, units: number, eventId: string, productId = 'coat'): Promise<void> {
  const e: CatalogEvent = { eventId, sku, productId, occurredAt: at, type: 'STOCK_CHANGED', stock: units };
  await d.pipe('shop.catalog.v1', sku, e);
}

/** [customer, restock event, send time] of the triggers sent. */
function sent(d: TopologyTestDriver): [string, string, string][] {
  return d.readOutput<Trigger>('crm.triggers.v1').map((o) => [o.value.customerId, o.value.causedBy.eventId, new Date(o.timestamp).toISOString()]);
}
/** [customer, restock event, decision/reason] of the decisions audited. */
function decided(d: TopologyTestDriver): [string, string, string][] {
  return d.readOutput<TriggerAudit>('crm.trigger-audit.v1').map((o) => [o.value.customerId, o.value.causedBy.eventId, `${o.value.decision}/${o.value.reason}`]);
}
const iso = (t: number): string => new Date(t).toISOString();

const TEN = ['w0', 'w1', 'w2', 'w3', 'w4', 'w5', 'w6', 'w7', 'w8', 'w9'];

test('a second wave within the cooldown gives its quota to the waiting wishers, oldest first, skipping those in cooldown', async () => {
  // Quota 6 (maxPerUnit 1 × 6 units) both times. Wave 1 notifies the six oldest; wave 2, two days later, finds
  // them in cooldown (suppressed, no place taken) and notifies the four still waiting.
  const d = await TopologyTestDriver.create(buildTopology(config({})));
  try {
    await wishers(d, TEN);
    await stock(d, 'coat-m', T0 + HOUR, 0, 'empty-1');
    await stock(d, 'coat-m', T0 + 2 * HOUR, 6, 'restock-1');
    await stock(d, 'coat-m', T0 + DAY, 0, 'empty-2');
    await stock(d, 'coat-m', T0 + 2 * DAY, 6, 'restock-2');
    await d.advanceStreamTime(T0 + 3 * DAY);
    assert.deepEqual(sent(d), [
      ...['w0', 'w1', 'w2', 'w3', 'w4', 'w5'].map((c): [string, string, string] => [c, 'restock-1', iso(T0 + 2 * HOUR)]),
      ...['w6', 'w7', 'w8', 'w9'].map((c): [string, string, string] => [c, 'restock-2', iso(T0 + 2 * DAY)]),
    ]);
    const second = decided(d).filter(([, e]) => e === 'restock-2');
    assert.deepEqual(second.filter(([, , r]) => r === 'SUPPRESSED/cooldown').map(([c]) => c), ['w0', 'w1', 'w2', 'w3', 'w4', 'w5']);
    assert.equal(second.filter(([, , r]) => r === 'SENT/ok').length, 4);
    assert.equal(await d.store(wavesStore).get('coat-m'), undefined, 'the wave ended: every wish examined');
  } finally {
    await d.close();
  }
});

test('the same second wave with a quota of 2 gives both places to the two oldest waiting wishers', async () => {
  const d = await TopologyTestDriver.create(buildTopology(config({})));
  try {
    await wishers(d, TEN);
    await stock(d, 'coat-m', T0 + HOUR, 0, 'empty-1');
    await stock(d, 'coat-m', T0 + 2 * HOUR, 6, 'restock-1');
    await stock(d, 'coat-m', T0 + DAY, 0, 'empty-2');
    await stock(d, 'coat-m', T0 + 2 * DAY, 2, 'restock-2');
    await d.advanceStreamTime(T0 + 3 * DAY);
    assert.deepEqual(
      sent(d).filter(([, e]) => e === 'restock-2'),
      [
        ['w6', 'restock-2', iso(T0 + 2 * DAY)],
        ['w7', 'restock-2', iso(T0 + 2 * DAY)],
      ],
    );
  } finally {
    await d.close();
  }
});

test('no consent, out of the audience, over the cap: no place used; the quota goes to the next wishers', async () => {
  // Quota 2. a: no consent; b: in the excluded segment; c: already got a trigger today (cap 1 per 24 h); d, e: sent.
  const d = await TopologyTestDriver.create(buildTopology(config({ cap: { max: 1, window: '24h' } }, { audience: { segmentsNone: ['staff'] } })));
  try {
    await wishers(d, ['a', 'b', 'c', 'd', 'e', 'f'], 'coat', 'coat-m', (n) => (n === 'a' ? { consents: { push: false, email: false, onsite: false } } : n === 'b' ? { segments: ['staff'] } : {}));
    // c's other trigger: the restock of a hat only c wished for.
    await d.pipe('shop.wishlist.v1', 'c', { eventId: 'w-c-hat', customerId: 'c', occurredAt: T0 + 20 * MIN, type: 'ITEM_ADDED', productId: 'hat', sku: 'hat-1' } satisfies WishlistEvent);
    await stock(d, 'hat-1', T0 + 30 * MIN, 0, 'hat-empty', 'hat');
    await stock(d, 'hat-1', T0 + HOUR, 3, 'hat-restock', 'hat');
    await stock(d, 'coat-m', T0 + 30 * MIN, 0, 'empty-1');
    await stock(d, 'coat-m', T0 + 2 * HOUR, 2, 'restock-1');
    await d.advanceStreamTime(T0 + DAY);
    assert.deepEqual(sent(d), [
      ['c', 'hat-restock', iso(T0 + HOUR)],
      ['d', 'restock-1', iso(T0 + 2 * HOUR)],
      ['e', 'restock-1', iso(T0 + 2 * HOUR)],
    ]);
    assert.deepEqual(
      decided(d).filter(([, e]) => e === 'restock-1'),
      [
        ['a', 'restock-1', 'SUPPRESSED/no-consent'],
        ['b', 'restock-1', 'SUPPRESSED/segment'],
        ['c', 'restock-1', 'SUPPRESSED/cap'],
        ['d', 'restock-1', 'SENT/ok'],
        ['e', 'restock-1', 'SENT/ok'],
      ],
    );
  } finally {
    await d.close();
  }
});

test('a holdout assignment uses the quota', async () => {
  // holdout 0.5: names picked by their bucket, so one of the two oldest wishers is held out.
  const names = Array.from({ length: 40 }, (_, i) => `h${i}`);
  const out = names.filter((n) => bucketOf(n, 'rs') < 0.5);
  const inside = names.filter((n) => bucketOf(n, 'rs') >= 0.5);
  const order = [out[0] as string, inside[0] as string, inside[1] as string];
  const d = await TopologyTestDriver.create(buildTopology(config({}, { experiment: { holdout: 0.5, variants: [{ name: 'A', weight: 1 }] } })));
  try {
    await wishers(d, order);
    await stock(d, 'coat-m', T0 + HOUR, 0, 'empty-1');
    await stock(d, 'coat-m', T0 + 2 * HOUR, 2, 'restock-1');
    await d.advanceStreamTime(T0 + DAY);
    assert.deepEqual(decided(d), [
      [order[0], 'restock-1', 'SUPPRESSED/holdout'],
      [order[1], 'restock-1', 'SENT/ok'],
    ]);
    assert.deepEqual(sent(d), [[order[1], 'restock-1', iso(T0 + 2 * HOUR)]]);
  } finally {
    await d.close();
  }
});

// Quiet hours 22:00-08:00 local. The restock at 14:00 UTC: 23:00 in Tokyo (p is held), 16:00 in Berlin (q, r).
const RESTOCK = Date.UTC(2026, 3, 1, 14, 0, 0);
const RELEASE = Date.UTC(2026, 3, 1, 23, 0, 0); // 08:00 Tokyo
const TOKYO = (n: string): Partial<CustomerProfile> => (n === 'p' ? { timezone: 'Asia/Tokyo' } : {});

test('a held trigger reserves its place; sent at the release, it keeps it', async () => {
  const d = await TopologyTestDriver.create(buildTopology(config({ quietHours: { start: '22:00', end: '08:00' } })));
  try {
    await wishers(d, ['p', 'q', 'r'], 'coat', 'coat-m', TOKYO);
    await stock(d, 'coat-m', T0 + HOUR, 0, 'empty-1');
    await stock(d, 'coat-m', RESTOCK, 2, 'restock-1');
    await d.advanceStreamTime(RELEASE + HOUR);
    assert.deepEqual(decided(d), [
      ['p', 'restock-1', 'HELD/quiet-hours'],
      ['q', 'restock-1', 'SENT/ok'],
      ['p', 'restock-1', 'SENT/ok'],
    ]);
    assert.deepEqual(sent(d), [
      ['q', 'restock-1', iso(RESTOCK)],
      ['p', 'restock-1', iso(RELEASE)],
    ]);
  } finally {
    await d.close();
  }
});

test('a held trigger dropped at the release (consent withdrawn) gives its place back: the next wisher gets it then', async () => {
  const d = await TopologyTestDriver.create(buildTopology(config({ quietHours: { start: '22:00', end: '08:00' } })));
  try {
    await wishers(d, ['p', 'q', 'r'], 'coat', 'coat-m', TOKYO);
    await stock(d, 'coat-m', T0 + HOUR, 0, 'empty-1');
    await stock(d, 'coat-m', RESTOCK, 2, 'restock-1');
    await d.pipe('crm.customers.v1', 'p', profile('p', RESTOCK + 3 * HOUR, { timezone: 'Asia/Tokyo', consents: { push: false, email: false, onsite: false } }), { timestamp: RESTOCK + 3 * HOUR });
    await d.advanceStreamTime(RELEASE + HOUR);
    assert.deepEqual(decided(d), [
      ['p', 'restock-1', 'HELD/quiet-hours'],
      ['q', 'restock-1', 'SENT/ok'],
      ['p', 'restock-1', 'SUPPRESSED/no-consent'],
      ['r', 'restock-1', 'SENT/ok'],
    ]);
    // r's trigger is decided as of the restock (its occurredAt and the guards' decision time), emitted at the release.
    assert.deepEqual(sent(d), [
      ['q', 'restock-1', iso(RESTOCK)],
      ['r', 'restock-1', iso(RESTOCK)],
    ]);
  } finally {
    await d.close();
  }
});

test('a place given back by a decision after the sku sold out is not refilled', async () => {
  const d = await TopologyTestDriver.create(buildTopology(config({ quietHours: { start: '22:00', end: '08:00' } })));
  try {
    await wishers(d, ['p', 'q', 'r'], 'coat', 'coat-m', TOKYO);
    await stock(d, 'coat-m', T0 + HOUR, 0, 'empty-1');
    await stock(d, 'coat-m', RESTOCK, 2, 'restock-1');
    await d.pipe('crm.customers.v1', 'p', profile('p', RESTOCK + 3 * HOUR, { timezone: 'Asia/Tokyo', consents: { push: false, email: false, onsite: false } }), { timestamp: RESTOCK + 3 * HOUR });
    await stock(d, 'coat-m', RESTOCK + 5 * HOUR, 0, 'sold-out');
    await d.advanceStreamTime(RELEASE + HOUR);
    assert.deepEqual(sent(d), [['q', 'restock-1', iso(RESTOCK)]]);
  } finally {
    await d.close();
  }
});

test('a held trigger in cooldown terms: while held it counts for the cooldown, dropped it starts none', async () => {
  // Unlimited quota. p is held at restock-1 (23:00 Tokyo) and dropped at the release (consent withdrawn, then
  // given again). restock-2 during the night (held p reserves): cooldown. restock-3 after the release: sent.
  const d = await TopologyTestDriver.create(buildTopology(config({ quietHours: { start: '22:00', end: '08:00' } }, { params: { maxPerUnit: 'unlimited', cooldown: '7d' } })));
  try {
    await wishers(d, ['p'], 'coat', 'coat-m', TOKYO);
    await stock(d, 'coat-m', T0 + HOUR, 0, 'empty-1');
    await stock(d, 'coat-m', RESTOCK, 2, 'restock-1');
    await stock(d, 'coat-m', RESTOCK + HOUR, 0, 'empty-2');
    await d.pipe('crm.customers.v1', 'p', profile('p', RESTOCK + 90 * MIN, { timezone: 'Asia/Tokyo', consents: { push: false, email: false, onsite: false } }), { timestamp: RESTOCK + 90 * MIN });
    await stock(d, 'coat-m', RESTOCK + 2 * HOUR, 2, 'restock-2');
    await stock(d, 'coat-m', RESTOCK + 3 * HOUR, 0, 'empty-3');
    await d.pipe('crm.customers.v1', 'p', profile('p', RELEASE + HOUR, { timezone: 'Asia/Tokyo' }), { timestamp: RELEASE + HOUR });
    await stock(d, 'coat-m', RELEASE + 2 * HOUR, 2, 'restock-3');
    await d.advanceStreamTime(RELEASE + DAY);
    assert.deepEqual(decided(d), [
      ['p', 'restock-1', 'HELD/quiet-hours'],
      ['p', 'restock-2', 'SUPPRESSED/cooldown'],
      ['p', 'restock-1', 'SUPPRESSED/no-consent'],
      ['p', 'restock-3', 'SENT/ok'],
    ]);
  } finally {
    await d.close();
  }
});
