/**
 * DESIGN §3 (issue 14, item 2): only a sent trigger counts as notified (and a holdout assignment). A
 * BASKET_PRICE_DROP the guards suppress (cap, no consent, …) does not lower the reference for the next drop; a
 * held one reserves it until it is sent or dropped. Through the whole topology (guards on), test driver.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BasketEvent, CatalogEvent, CustomerProfile, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { customersStore } from '../../topologies/basket-price-drop/index.js';
import { audits } from '../support/outputs.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
// 2026-11-20 is a Friday; Europe/Berlin is UTC+1 then. T0 = 09:00 UTC = 10:00 Berlin.
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const eur = (amount: number) => ({ amount, currency: 'EUR' });

const OTHERS_OFF = { 'basket-abandonment': { enabled: false }, 'browse-abandonment': { enabled: false }, 'wishlist-restock': { enabled: false } };

function config(guards: object, priceDrop: object = {}): ReturnType<typeof resolveCampaigns> {
  return resolveCampaigns({
    defaults: { channels: ['push'], expiresAfter: '48h' },
    guards: { defaultTimezone: 'Europe/Berlin', quietHours: null, cap: null, ...guards },
    campaigns: { ...OTHERS_OFF, 'basket-price-drop': { campaignId: 'pd', ...priceDrop } },
  });
}

function profile(customerId: string, updatedAt: number, push = true): CustomerProfile {
  return { customerId, updatedAt, timezone: 'Europe/Berlin', consents: { push, email: false, onsite: false }, pushTokens: [], segments: [], attributes: {} };
}

let seq = 0;
async function add(d: TopologyTestDriver, customerId: string, at: number, sku: string, amount: number): Promise<void> {
  const e: BasketEvent = { eventId: `b${++seq}`, customerId, occurredAt: at, type: 'ITEM_ADDED', sku, productId: `p-${sku}`, quantity: 1, unitPrice: eur(amount) };
  await d.pipe('shop.basket.v1', customerId, e);
}
async function price(d: TopologyTestDriver, sku: string, at: number, amount: number, eventId: string): Promise<void> {
  const e: CatalogEvent = { eventId, sku, productId: `p-${sku}`, occurredAt: at, type: 'PRICE_CHANGED', price: eur(amount) };
  await d.pipe('shop.catalog.v1', sku, e);
}

/** [customer, sku, new price, reference, send time] of the triggers sent. */
function sent(d: TopologyTestDriver): [string, string, number, number, string][] {
  return d.readOutput<Trigger>('crm.triggers.v1').map((o) => {
    const p = o.value.payload as { sku: string; newPrice: { amount: number }; oldPrice: { amount: number } };
    return [o.value.customerId, p.sku, p.newPrice.amount, p.oldPrice.amount, new Date(o.timestamp).toISOString()];
  });
}
/** [price event, decision/reason] of the decisions audited. */
const decided = (xs: TriggerAudit[]): [string, string][] => xs.map((a) => [a.causedBy.eventId, `${a.decision}/${a.reason}`]);

test('a drop suppressed by the cap is no reference: the next day a further drop to 15 % below the add price fires', async () => {
  const d = await TopologyTestDriver.create(buildTopology(config({ cap: { max: 1, window: '24h' } })));
  try {
    await d.pipe('crm.customers.v1', 'anna', profile('anna', T0 - HOUR), { timestamp: T0 - HOUR });
    await add(d, 'anna', T0 - 30 * MIN, 'shirt', 10_000);
    await add(d, 'anna', T0 - 20 * MIN, 'jacket', 10_000);
    await price(d, 'shirt', T0, 8_800, 'shirt-88'); // sent: uses the cap
    await price(d, 'jacket', T0 + HOUR, 8_900, 'jacket-89'); // 11 %: suppressed by the cap
    await price(d, 'jacket', T0 + DAY + 2 * HOUR, 8_500, 'jacket-85'); // 15 % below the add price, 4.5 % below 89.00
    assert.deepEqual(decided(audits(d)), [
      ['shirt-88', 'SENT/ok'],
      ['jacket-89', 'SUPPRESSED/cap'],
      ['jacket-85', 'SENT/ok'],
    ]);
    const state = await d.store(customersStore).get('anna');
    assert.deepEqual(state?.notified.jacket, { price: eur(8_500), at: T0 + DAY + 2 * HOUR });
  } finally {
    await d.close();
  }
});

test('a drop suppressed for missing consent is no reference: with consent given, a further drop to 15 % below the add price fires', async () => {
  const d = await TopologyTestDriver.create(buildTopology(config({})));
  try {
    await d.pipe('crm.customers.v1', 'ben', profile('ben', T0 - HOUR, false), { timestamp: T0 - HOUR });
    await add(d, 'ben', T0 - 20 * MIN, 'jacket', 10_000);
    await price(d, 'jacket', T0, 8_900, 'jacket-89');
    await d.pipe('crm.customers.v1', 'ben', profile('ben', T0 + 20 * HOUR, true), { timestamp: T0 + 20 * HOUR });
    await price(d, 'jacket', T0 + DAY, 8_500, 'jacket-85');
    assert.deepEqual(sent(d), [['ben', 'jacket', 8_500, 10_000, new Date(T0 + DAY).toISOString()]]);
    assert.deepEqual(decided(audits(d)), [
      ['jacket-89', 'SUPPRESSED/no-consent'],
      ['jacket-85', 'SENT/ok'],
    ]);
    // Before the fix, 89.00 was recorded as notified when the candidate was emitted.
    assert.deepEqual((await d.store(customersStore).get('ben'))?.notified.jacket, { price: eur(8_500), at: T0 + DAY });
  } finally {
    await d.close();
  }
});

test('a sent drop is the reference: a further drop must beat it (unchanged)', async () => {
  const d = await TopologyTestDriver.create(buildTopology(config({})));
  try {
    await d.pipe('crm.customers.v1', 'cleo', profile('cleo', T0 - HOUR), { timestamp: T0 - HOUR });
    await add(d, 'cleo', T0 - 20 * MIN, 'jacket', 10_000);
    await price(d, 'jacket', T0, 8_900, 'jacket-89');
    await price(d, 'jacket', T0 + DAY, 8_500, 'jacket-85'); // 4.5 % below the notified 89.00
    await price(d, 'jacket', T0 + 2 * DAY, 8_000, 'jacket-80'); // 10.1 % below 89.00
    assert.deepEqual(sent(d), [
      ['cleo', 'jacket', 8_900, 10_000, new Date(T0).toISOString()],
      ['cleo', 'jacket', 8_000, 8_900, new Date(T0 + 2 * DAY).toISOString()],
    ]);
  } finally {
    await d.close();
  }
});

test('a holdout assignment counts as notified: the next drop must beat the held-out price', async () => {
  // holdout 0.99: the customer is held out (bucket below 0.99) — checked below through the audit.
  const d = await TopologyTestDriver.create(buildTopology(config({}, { experiment: { holdout: 0.99, variants: [{ name: 'A', weight: 1 }] } })));
  try {
    await d.pipe('crm.customers.v1', 'dora', profile('dora', T0 - HOUR), { timestamp: T0 - HOUR });
    await add(d, 'dora', T0 - 20 * MIN, 'jacket', 10_000);
    await price(d, 'jacket', T0, 8_900, 'jacket-89');
    await price(d, 'jacket', T0 + DAY, 8_500, 'jacket-85'); // below the add price by 15 %, the held-out 89.00 by 4.5 %: no candidate
    await price(d, 'jacket', T0 + 2 * DAY, 8_000, 'jacket-80');
    assert.deepEqual(decided(audits(d)), [
      ['jacket-89', 'SUPPRESSED/holdout'],
      ['jacket-80', 'SUPPRESSED/holdout'],
    ]);
    assert.deepEqual(sent(d), []);
  } finally {
    await d.close();
  }
});

test('a held drop reserves its place until it is sent or dropped; dropped at the release, it is no reference from then on', async () => {
  // Quiet hours 22:00-08:00 Berlin (UTC+1), cap 1 per 24 h. Two drops held the same night: at 08:00 the shirt's
  // (older) is sent, the jacket's is dropped by the cap. A jacket drop during the night, judged while the jacket's
  // first drop was held (reserved), does not fire; a drop the next day is measured from the add price again.
  const d = await TopologyTestDriver.create(buildTopology(config({ quietHours: { start: '22:00', end: '08:00' }, cap: { max: 1, window: '24h' } })));
  const night = Date.UTC(2026, 10, 20, 21, 30, 0); // 22:30 Berlin
  const release = Date.UTC(2026, 10, 21, 7, 0, 0); // 08:00 Berlin
  try {
    await d.pipe('crm.customers.v1', 'emil', profile('emil', T0), { timestamp: T0 });
    await add(d, 'emil', T0 + HOUR, 'shirt', 10_000);
    await add(d, 'emil', T0 + 2 * HOUR, 'jacket', 10_000);
    await price(d, 'shirt', night, 8_800, 'shirt-88');
    await price(d, 'jacket', night + 30 * MIN, 8_900, 'jacket-89');
    await price(d, 'jacket', night + HOUR, 8_500, 'jacket-85'); // 4.5 % below the held (reserved) 89.00: nothing
    await price(d, 'jacket', release + DAY + 2 * HOUR, 8_400, 'jacket-84'); // 16 % below the add price: fires
    await d.advanceStreamTime(release + 2 * DAY);
    assert.deepEqual(decided(audits(d)), [
      ['shirt-88', 'HELD/quiet-hours'],
      ['jacket-89', 'HELD/quiet-hours'],
      ['shirt-88', 'SENT/ok'],
      ['jacket-89', 'SUPPRESSED/cap'],
      ['jacket-84', 'SENT/ok'],
    ]);
    assert.deepEqual(sent(d), [
      ['emil', 'shirt', 8_800, 10_000, new Date(release).toISOString()],
      ['emil', 'jacket', 8_400, 10_000, new Date(release + DAY + 2 * HOUR).toISOString()],
    ]);
  } finally {
    await d.close();
  }
});

test('a held drop that is sent at the release stays the reference', async () => {
  const d = await TopologyTestDriver.create(buildTopology(config({ quietHours: { start: '22:00', end: '08:00' } })));
  const night = Date.UTC(2026, 10, 20, 21, 30, 0);
  const release = Date.UTC(2026, 10, 21, 7, 0, 0);
  try {
    await d.pipe('crm.customers.v1', 'finn', profile('finn', T0), { timestamp: T0 });
    await add(d, 'finn', T0 + HOUR, 'jacket', 10_000);
    await price(d, 'jacket', night, 8_900, 'jacket-89');
    await price(d, 'jacket', night + HOUR, 8_500, 'jacket-85');
    await price(d, 'jacket', release + DAY, 8_400, 'jacket-84'); // 5.6 % below the sent 89.00: nothing
    await d.advanceStreamTime(release + 2 * DAY);
    assert.deepEqual(sent(d), [['finn', 'jacket', 8_900, 10_000, new Date(release).toISOString()]]);
  } finally {
    await d.close();
  }
});
