import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CustomerProfile, Trigger, TriggerType } from '../../schemas/contract.js';
import { TopologyBuilder } from '../../src/engine/api/index.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { basketAbandonment, basketsStore } from '../../topologies/basket-abandonment/index.js';
import { addGuards, bucketOf, GUARDS, profileHistoryStore, profilesStore, quietUntil, type CampaignGuards } from '../../topologies/common/guards.js';
import { audits } from '../support/outputs.js';

const HOUR = 3_600_000;
// 2026-11-20 is a Friday; 12:00 UTC = 13:00 Berlin, 07:00 New York.
const NOON = Date.UTC(2026, 10, 20, 12, 0, 0);

function profile(customerId: string, over: Partial<CustomerProfile> = {}): CustomerProfile {
  return { customerId, updatedAt: 0, timezone: 'Europe/Berlin', consents: { push: true, email: true, onsite: true }, pushTokens: [], segments: [], attributes: {}, ...over };
}

let seq = 0;
function candidate(customerId: string, at: number, type: TriggerType = 'BASKET_ABANDONED', campaignId = 'c1'): Trigger {
  const id = (++seq).toString(16).padStart(32, '0');
  return {
    triggerId: id,
    type,
    customerId,
    occurredAt: at,
    campaignId,
    variant: 'default',
    channels: ['push', 'email'],
    causedBy: { eventId: `e${seq}`, topic: 'shop.basket.v1', partition: 0, offset: String(seq) },
    explanation: { rule: 'test', params: {}, observed: {} },
    payload: {},
    expiresAt: at + 48 * HOUR,
  };
}

/** Guards (configured as in a campaign file) fed by a test source of candidate triggers, plus basket-abandonment. */
async function driver(guardsConfig: unknown = {}, campaigns: Record<string, CampaignGuards> = {}): Promise<TopologyTestDriver> {
  const cfg = resolveCampaigns({ guards: guardsConfig });
  const b = new TopologyBuilder('g');
  addGuards(b, { ...(cfg.guards as NonNullable<typeof cfg.guards>), campaigns: new Map(Object.entries(campaigns)) });
  b.addSource('candidates', ['test.candidates']).connect('candidates', GUARDS);
  const ba = cfg.basketAbandonment;
  if (ba) basketAbandonment.build(b, { ...ba, campaignId: 'c1', output: GUARDS, guarded: true });
  return TopologyTestDriver.create(b.build());
}

const pipeProfile = (d: TopologyTestDriver, p: CustomerProfile, at = 0) => d.pipe('crm.customers.v1', p.customerId, p, { timestamp: at });
const pipeCandidate = (d: TopologyTestDriver, t: Trigger) => d.pipe('test.candidates', t.customerId, t, { timestamp: t.occurredAt });
const sent = (d: TopologyTestDriver) => d.readOutput<Trigger>('crm.triggers.v1').map((o) => o.value);

test('consent: unknown profile and no consented channel are suppressed; channels are cut to the consented ones', async () => {
  const d = await driver({ quietHours: null });
  try {
    await pipeCandidate(d, candidate('stranger', NOON));
    await pipeProfile(d, profile('mute', { consents: { push: false, email: false, onsite: true } }));
    await pipeCandidate(d, candidate('mute', NOON));
    await pipeProfile(d, profile('pushonly', { consents: { push: true, email: false, onsite: false } }));
    await pipeCandidate(d, candidate('pushonly', NOON));
    assert.deepEqual(sent(d).map((t) => [t.customerId, t.channels]), [['pushonly', ['push']]]);
    assert.deepEqual(
      audits(d).map((a) => [a.customerId, a.decision, a.reason]),
      [
        ['stranger', 'SUPPRESSED', 'no-consent'],
        ['mute', 'SUPPRESSED', 'no-consent'],
        ['pushonly', 'SENT', 'ok'],
      ],
    );
  } finally {
    await d.close();
  }
});

test('audience: CLV > 500 and churnRisk > 0.7, not in segment staff', async () => {
  const d = await driver({ quietHours: null }, { c1: { filter: { segmentsNone: ['staff'], attributes: [{ name: 'clv', op: '>', value: 500 }, { name: 'churnRisk', op: '>', value: 0.7 }] } } });
  try {
    await pipeProfile(d, profile('fit', { attributes: { clv: 812, churnRisk: 0.9 } }));
    await pipeProfile(d, profile('loyal', { attributes: { clv: 812, churnRisk: 0.2 } }));
    await pipeProfile(d, profile('staffer', { segments: ['staff'], attributes: { clv: 900, churnRisk: 0.9 } }));
    for (const c of ['fit', 'loyal', 'staffer']) await pipeCandidate(d, candidate(c, NOON));
    assert.deepEqual(sent(d).map((t) => t.customerId), ['fit']);
    const reasons = audits(d).filter((a) => a.decision === 'SUPPRESSED');
    assert.deepEqual(reasons.map((a) => [a.customerId, a.reason]), [['loyal', 'segment'], ['staffer', 'segment']]);
    assert.match(reasons[0]?.detail ?? '', /churnRisk > 0.7 does not hold \(0.2\)/);
    assert.match(reasons[1]?.detail ?? '', /excluded segment staff/);
  } finally {
    await d.close();
  }
});

test('A/B variants and holdout by a stable hash of (customerId, campaignId): holdouts audited, never sent', async () => {
  const experiment = { holdout: 0.2, variants: [{ name: 'A', weight: 1 }, { name: 'B', weight: 1 }] };
  const d = await driver({ quietHours: null, cap: null }, { c1: { experiment } });
  try {
    const customers = Array.from({ length: 60 }, (_, i) => `ab${i}`);
    for (const c of customers) {
      await pipeProfile(d, profile(c));
      await pipeCandidate(d, candidate(c, NOON));
    }
    const out = sent(d);
    const held = audits(d).filter((a) => a.reason === 'holdout');
    assert.equal(out.length + held.length, customers.length);
    for (const c of customers) {
      const b = bucketOf(c, 'c1');
      const expected = b < 0.2 ? 'holdout' : (b - 0.2) / 0.8 < 0.5 ? 'A' : 'B';
      const got = held.some((a) => a.customerId === c) ? 'holdout' : out.find((t) => t.customerId === c)?.variant;
      assert.equal(got, expected, c);
    }
    assert.ok(held.length > 3 && out.some((t) => t.variant === 'A') && out.some((t) => t.variant === 'B'));
  } finally {
    await d.close();
  }
});

test('quiet hours in the customer\'s time zone: held across midnight, released at 08:00 local and re-checked', async () => {
  const d = await driver({ cap: null });
  try {
    // 03:30 UTC = 22:30 in New York (the evening before): quiet until 08:00 New York = 13:00 UTC.
    const at = Date.UTC(2026, 10, 20, 3, 30, 0);
    await pipeProfile(d, profile('nyc', { timezone: 'America/New_York' }));
    await pipeProfile(d, profile('ber', { timezone: 'Europe/Berlin' }));
    await pipeCandidate(d, candidate('nyc', at));
    await pipeCandidate(d, candidate('ber', at)); // 04:30 Berlin: quiet until 08:00 Berlin = 07:00 UTC
    assert.deepEqual(sent(d), []);
    assert.deepEqual(audits(d).map((a) => [a.customerId, a.decision, a.reason]), [
      ['nyc', 'HELD', 'quiet-hours'],
      ['ber', 'HELD', 'quiet-hours'],
    ]);
    await d.advanceStreamTime(Date.UTC(2026, 10, 20, 7, 0, 0));
    assert.deepEqual(sent(d).map((t) => [t.customerId, new Date(audits(d)[0]?.occurredAt ?? 0).toISOString()]), [['ber', '2026-11-20T07:00:00.000Z']]);
    await d.advanceStreamTime(Date.UTC(2026, 10, 20, 12, 59, 0));
    assert.deepEqual(sent(d), [], 'New York is still quiet');
    await d.advanceStreamTime(Date.UTC(2026, 10, 20, 13, 0, 0));
    assert.deepEqual(sent(d).map((t) => t.customerId), ['nyc']);
    assert.equal(quietUntil(Date.UTC(2026, 10, 20, 15, 0, 0), 'America/New_York', { startMin: 22 * 60, endMin: 8 * 60 }), undefined);
  } finally {
    await d.close();
  }
});

test('cap over all types: triggers released together are decided by priority (CHECKOUT before BROWSE)', async () => {
  const d = await driver({ cap: { max: 2, window: '24h' } });
  try {
    const night = Date.UTC(2026, 10, 20, 1, 0, 0); // 02:00 Berlin
    await pipeProfile(d, profile('kim'));
    await pipeCandidate(d, candidate('kim', night, 'BROWSE_ABANDONED'));
    await pipeCandidate(d, candidate('kim', night + 60_000, 'WISHLIST_BACK_IN_STOCK'));
    await pipeCandidate(d, candidate('kim', night + 120_000, 'CHECKOUT_ABANDONED'));
    audits(d);
    await d.advanceStreamTime(Date.UTC(2026, 10, 20, 7, 0, 0)); // 08:00 Berlin
    assert.deepEqual(sent(d).map((t) => t.type), ['CHECKOUT_ABANDONED', 'WISHLIST_BACK_IN_STOCK']);
    const capped = audits(d).filter((a) => a.decision === 'SUPPRESSED');
    assert.deepEqual(capped.map((a) => [a.type, a.reason]), [['BROWSE_ABANDONED', 'cap']]);
    // The window slides: 24 h after the first sends, there is room again.
    await pipeCandidate(d, candidate('kim', Date.UTC(2026, 10, 21, 7, 0, 1), 'BASKET_ABANDONED'));
    assert.deepEqual(sent(d).map((t) => t.type), ['BASKET_ABANDONED']);
  } finally {
    await d.close();
  }
});

test('a profile tombstone erases the customer from every customer-keyed store and cancels its timers', async () => {
  const d = await driver({ quietHours: null });
  try {
    await pipeProfile(d, profile('gdpr'), NOON);
    await d.pipe('shop.basket.v1', 'gdpr', { eventId: 'b1', customerId: 'gdpr', occurredAt: NOON, type: 'ITEM_ADDED', sku: 's', quantity: 1 });
    assert.ok(await d.store(basketsStore).get('gdpr'));
    assert.equal(d.timers('gdpr').length, 1);
    await d.pipe('crm.customers.v1', 'gdpr', null, { timestamp: NOON + 1000 });
    assert.equal(await d.store(basketsStore).get('gdpr'), undefined);
    assert.equal(await d.store(profilesStore).get('gdpr'), undefined);
    assert.equal(await d.store(profileHistoryStore).get('gdpr'), undefined);
    assert.deepEqual(d.timers('gdpr'), []);
    await d.advanceStreamTime(NOON + 3 * HOUR);
    assert.deepEqual(sent(d), [], 'nothing fires for an erased customer');
    await d.restart();
    assert.equal(await d.store(basketsStore).get('gdpr'), undefined, 'the erasure is committed');
  } finally {
    await d.close();
  }
});

test('guards config: bad values are rejected with the field named', () => {
  assert.throws(() => resolveCampaigns({ guards: { defaultTimezone: 'Mars/Olympus', quietHours: { start: '22:00', end: '22:00' }, priority: ['BASKET_ABANDONED'] } }), (err: Error) => {
    assert.match(err.message, /\/guards\/defaultTimezone: unknown time zone "Mars\/Olympus"/);
    assert.match(err.message, /\/guards\/quietHours: start and end must differ/);
    assert.match(err.message, /\/guards\/priority: must rank every trigger type; missing CHECKOUT_ABANDONED/);
    return true;
  });
  assert.throws(() => resolveCampaigns({ guards: { quietHours: { start: '25:00', end: '08:00' } } }), /\/guards\/quietHours/);
});

test('erasure reaches the product-side indexes of the fan-out topologies: no subscription or wish of the customer is left', async () => {
  const { buildTopology } = await import('../../src/app/topology.js');
  const { subscribersStore, customersStore } = await import('../../topologies/basket-price-drop/index.js');
  const { wishesStore, wishOrderStore } = await import('../../topologies/wishlist-restock/index.js');
  const d = await TopologyTestDriver.create(buildTopology(resolveCampaigns({ guards: { quietHours: null } })));
  try {
    await pipeProfile(d, profile('erin'), NOON);
    await d.pipe('shop.basket.v1', 'erin', { eventId: 'b1', customerId: 'erin', occurredAt: NOON, type: 'ITEM_ADDED', sku: 'coat-m', productId: 'coat', quantity: 1, unitPrice: { amount: 10000, currency: 'EUR' } });
    await d.pipe('shop.wishlist.v1', 'erin', { eventId: 'w1', customerId: 'erin', occurredAt: NOON, type: 'ITEM_ADDED', productId: 'boots' });
    const mentions = async () => {
      const rows = [...(await d.store(subscribersStore).scan()), ...(await d.store(wishesStore).scan()), ...(await d.store(wishOrderStore).scan())];
      return rows.filter((r) => JSON.stringify(r).includes('erin')).length;
    };
    assert.ok((await mentions()) > 0, 'indexed before');
    await d.pipe('crm.customers.v1', 'erin', null, { timestamp: NOON + 1000 });
    assert.equal(await mentions(), 0, 'withdrawn from every index');
    assert.equal(await d.store(customersStore).get('erin'), undefined);
    await d.pipe('shop.catalog.v1', 'coat-m', { eventId: 'c1', sku: 'coat-m', productId: 'coat', occurredAt: NOON + 2000, type: 'PRICE_CHANGED', price: { amount: 5000, currency: 'EUR' } });
    await d.advanceStreamTime(NOON + 5 * HOUR);
    assert.deepEqual(sent(d), []);
  } finally {
    await d.close();
  }
});
