import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BasketEvent, CustomerProfile } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { historyStore, MAX_TRIGGERS } from '../../topologies/common/history.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const T0 = Date.UTC(2026, 10, 20, 10, 0, 0);

const profile = (customerId: string, push = true): CustomerProfile => ({
  customerId,
  updatedAt: 0,
  timezone: 'UTC',
  consents: { push, email: false, onsite: false },
  pushTokens: [],
  segments: [],
  attributes: {},
});
let seq = 0;
const add = (customerId: string, at: number): BasketEvent => ({ eventId: `e${++seq}`, customerId, occurredAt: at, type: 'ITEM_ADDED', sku: `s${seq}`, quantity: 1 });

async function driver(guards: boolean): Promise<TopologyTestDriver> {
  const cfg = resolveCampaigns({
    guards: guards ? { quietHours: null, cap: null } : { enabled: false },
    campaigns: { 'basket-abandonment': { params: { inactivityGap: '30m', reentryCooldown: '1h' } } },
  });
  return TopologyTestDriver.create(buildTopology(cfg, 'hist'));
}

test('history: each SENT trigger and every decision (with its reason) is kept per customer, newest first, and passed on unchanged', async () => {
  const d = await driver(true);
  try {
    await d.pipe('crm.customers.v1', 'ann', profile('ann'), { timestamp: T0 });
    await d.pipe('crm.customers.v1', 'bob', profile('bob', false), { timestamp: T0 });
    for (const c of ['ann', 'bob']) await d.pipe('shop.basket.v1', c, add(c, T0 + MIN));
    await d.advanceStreamTime(T0 + HOUR);
    await d.pipe('shop.basket.v1', 'ann', add('ann', T0 + 2 * HOUR));
    await d.advanceStreamTime(T0 + 3 * HOUR);
    const triggers = d.readOutput('crm.triggers.v1');
    const audits = d.readOutput('crm.trigger-audit.v1');
    assert.equal(triggers.length, 2, 'ann twice (after the cooldown); bob has no consent');
    assert.equal(audits.length, 3);
    const ann = await d.store(historyStore).get('ann');
    assert.deepEqual(
      ann?.triggers.map((t) => t.occurredAt),
      [T0 + 2 * HOUR + 30 * MIN, T0 + 31 * MIN],
      'newest first',
    );
    assert.equal(ann?.triggers[0]?.rule, 'items in the basket, then no basket activity and no order for inactivityGap');
    assert.deepEqual(ann?.decisions.map((x) => [x.decision, x.reason]), [['SENT', 'ok'], ['SENT', 'ok']]);
    const bob = await d.store(historyStore).get('bob');
    assert.deepEqual(bob?.triggers, [], 'a suppressed trigger is not a sent one');
    assert.deepEqual(bob?.decisions.map((x) => [x.type, x.decision, x.reason]), [['BASKET_ABANDONED', 'SUPPRESSED', 'no-consent']]);
    // Erasure takes the history with it.
    await d.pipe('crm.customers.v1', 'ann', null, { timestamp: T0 + 4 * HOUR });
    assert.equal(await d.store(historyStore).get('ann'), undefined);
  } finally {
    await d.close();
  }
});

test('history without guards: the topologies audit their own sends and the history keeps at most MAX_TRIGGERS', async () => {
  const d = await driver(false);
  try {
    for (let i = 0; i < MAX_TRIGGERS + 3; i++) {
      await d.pipe('shop.basket.v1', 'cid', add('cid', T0 + i * 2 * HOUR));
      await d.advanceStreamTime(T0 + i * 2 * HOUR + HOUR);
    }
    assert.equal(d.readOutput('crm.triggers.v1').length, MAX_TRIGGERS + 3);
    const h = await d.store(historyStore).get('cid');
    assert.equal(h?.triggers.length, MAX_TRIGGERS);
    assert.equal(h?.triggers[0]?.occurredAt, T0 + (MAX_TRIGGERS + 2) * 2 * HOUR + 30 * MIN);
    assert.ok(h?.decisions.every((x) => x.decision === 'SENT' && x.reason === 'ok'));
    // A tombstone erases the customer even without the guards stage.
    await d.pipe('crm.customers.v1', 'cid', null, { timestamp: T0 + 100 * HOUR });
    assert.equal(await d.store(historyStore).get('cid'), undefined);
  } finally {
    await d.close();
  }
});
