import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import type { BasketEvent, CustomerProfile, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { LiveCampaigns, watchCampaignsFile, type ApplyResult } from '../../src/config/live.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { tempDir } from '../helpers.js';

const MIN = 60_000;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const add = (customerId: string, atMin: number): BasketEvent => ({ eventId: `${customerId}-${atMin}`, customerId, occurredAt: T0 + atMin * MIN, type: 'ITEM_ADDED', sku: 's', quantity: 1 });
const profile = (customerId: string): CustomerProfile => ({ customerId, updatedAt: 0, timezone: 'UTC', consents: { push: true, email: true, onsite: true }, pushTokens: [], segments: [], attributes: {} });

test('a reloaded campaign config takes effect without a restart; a bad one is rejected with its fields named and the old one stays', async () => {
  const base = { guards: { quietHours: null }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '60m' } } } };
  const live = new LiveCampaigns(resolveCampaigns(base));
  const d = await TopologyTestDriver.create(buildTopology(live));
  try {
    for (const c of ['a', 'b', 'c']) await d.pipe('crm.customers.v1', c, profile(c), { timestamp: T0 });
    await d.pipe('shop.basket.v1', 'a', add('a', 0));
    await d.advanceStreamTime(T0 + 60 * MIN);
    assert.equal(d.readOutput<Trigger>('crm.triggers.v1').length, 1, 'fires after 60 min');

    const bad: ApplyResult = live.apply({ campaigns: { 'basket-abandonment': { params: { inactivityGap: 'soon' }, channels: ['fax'] } } }, 'test');
    assert.equal(bad.ok, false);
    assert.ok(bad.errors.some((e) => e.includes('/campaigns/basket-abandonment/params/inactivityGap')));
    assert.ok(bad.errors.some((e) => e.includes('/campaigns/basket-abandonment/channels/0')));
    assert.equal(live.version, 1, 'the old config stays in force');

    assert.deepEqual(live.apply({ ...base, campaigns: { 'basket-abandonment': { params: { inactivityGap: '10m' }, channels: ['push'] } } }, 'test'), { ok: true, errors: [] });
    await d.pipe('shop.basket.v1', 'b', add('b', 70));
    await d.advanceStreamTime(T0 + 80 * MIN);
    const [t] = d.readOutput<Trigger>('crm.triggers.v1').map((o) => o.value);
    assert.equal(t?.customerId, 'b', 'the new 10 min gap applies to the next basket');
    assert.deepEqual(t?.channels, ['push']);

    live.apply({ ...base, campaigns: { 'basket-abandonment': { enabled: false } } }, 'test');
    d.readOutput('crm.trigger-audit.v1');
    await d.pipe('shop.basket.v1', 'c', add('c', 90));
    await d.advanceStreamTime(T0 + 200 * MIN);
    assert.deepEqual(d.readOutput('crm.triggers.v1'), [], 'a switched-off campaign sends nothing');
    assert.deepEqual(
      d.readOutput<TriggerAudit>('crm.trigger-audit.v1').map((a) => [a.value.customerId, a.value.reason]),
      [['c', 'campaign-disabled']],
    );
  } finally {
    await d.close();
  }
});

test('the campaign file is watched: a change is applied, a broken file is rejected and logged', async () => {
  const { dir, remove } = tempDir();
  const path = join(dir, 'campaigns.json');
  writeFileSync(path, JSON.stringify({ campaigns: { 'basket-abandonment': { params: { inactivityGap: '60m' } } } }));
  const live = new LiveCampaigns(resolveCampaigns({}));
  const results: ApplyResult[] = [];
  const stop = watchCampaignsFile(live, path, pino({ level: 'silent' }), (r) => results.push(r), 20);
  try {
    const wait = async (n: number) => {
      for (let i = 0; i < 200 && results.length < n; i++) await new Promise((r) => setTimeout(r, 20));
    };
    await new Promise((r) => setTimeout(r, 50));
    writeFileSync(path, JSON.stringify({ campaigns: { 'basket-abandonment': { params: { inactivityGap: '5m' } } } }));
    await wait(1);
    assert.equal(results[0]?.ok, true);
    assert.equal(live.current.basketAbandonment?.params.inactivityGap, 5 * MIN);
    writeFileSync(path, '{ "campaigns": ');
    await wait(2);
    assert.equal(results[1]?.ok, false);
    assert.match(results[1]?.errors[0] ?? '', /campaigns\.json/);
    assert.equal(live.current.basketAbandonment?.params.inactivityGap, 5 * MIN, 'the previous config stays');
  } finally {
    stop();
    remove();
  }
});
