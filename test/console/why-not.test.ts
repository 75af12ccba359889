/** The console's "why not?" answers and its live feed's bounds, as units. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TriggerAudit } from '../../schemas/contract.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { LiveFeed } from '../../src/console/feed.js';
import { capFreesAt, cooldownUntil, quietUntilOf, whyNot } from '../../src/console/why-not.js';
import type { RecentDecision, RecentTrigger } from '../../topologies/common/history.js';

const T = Date.UTC(2026, 10, 20, 9, 0, 0);
const H = 3_600_000;

const decision = (type: string, decision: RecentDecision['decision'], reason: string, detail?: string, at = T): RecentDecision =>
  ({ auditId: `${type}-${reason}`, triggerId: 't', type, occurredAt: at, campaignId: 'c', variant: 'default', decision, reason, ...(detail === undefined ? {} : { detail }) }) as RecentDecision;
const sent = (at: number): RecentTrigger => ({ triggerId: `s${at}`, type: 'BASKET_PRICE_DROP', occurredAt: at }) as RecentTrigger;

test('the guards\' and topologies\' details become times', () => {
  assert.equal(cooldownUntil('last abandonment trigger at 2026-11-20T08:00:00.000Z, cooldown 3600000 ms'), Date.UTC(2026, 10, 20, 9, 0, 0));
  assert.equal(quietUntilOf('quiet hours in Asia/Tokyo until 2026-11-20T23:00:00.000Z'), Date.UTC(2026, 10, 20, 23, 0, 0));
  assert.equal(cooldownUntil('something else'), null);
  // Sends at T-20h and T-2h in a 24 h window: a place frees when the older one leaves it.
  assert.equal(capFreesAt(T, 24 * H, [sent(T - 2 * H), sent(T - 20 * H), sent(T - 30 * H)]), T + 4 * H);
});

test('one answer per trigger type of the config, from the newest decision on it, else the pending timer', () => {
  const config = resolveCampaigns({ guards: { cap: { max: 2, window: '24h' } }, campaigns: { 'wishlist-restock': { enabled: false } } });
  const why = whyNot(
    {
      triggers: [sent(T - 2 * H), sent(T - 20 * H)],
      decisions: [
        decision('BASKET_PRICE_DROP', 'SUPPRESSED', 'cap', '2 sent in the last 86400000 ms (cap 2)'),
        decision('BASKET_ABANDONED', 'HELD', 'quiet-hours', 'quiet hours in Europe/Berlin until 2026-11-21T07:00:00.000Z'),
        decision('BASKET_ABANDONED', 'SUPPRESSED', 'no-consent', 'no consent for push, email', T - H),
        decision('CHECKOUT_ABANDONED', 'SUPPRESSED', 'segment', 'in excluded segment staff'),
      ],
      timers: [{ processor: 'browse-abandonment', name: 'session-end', time: T + H, domain: 'stream-time' }],
    },
    config,
  );
  const by = new Map(why.map((w) => [w.type, w]));
  assert.equal(by.get('BASKET_PRICE_DROP')?.verdict, 'suppressed');
  assert.match(by.get('BASKET_PRICE_DROP')?.answer ?? '', /cap reached .* next send possible from 2026-11-20T13:00:00Z/);
  assert.equal(by.get('BASKET_ABANDONED')?.until, Date.UTC(2026, 10, 21, 7, 0, 0), 'the newest decision answers');
  assert.match(by.get('CHECKOUT_ABANDONED')?.answer ?? '', /^not in the audience: in excluded segment staff/);
  assert.match(by.get('BROWSE_ABANDONED')?.answer ?? '', /timer "session-end" due at 2026-11-20T10:00:00Z/);
  assert.equal(by.get('WISHLIST_BACK_IN_STOCK')?.verdict, 'off');
});

test('the live feed keeps a bounded ring, counts every decision, and a reader takes at most its share', () => {
  const feed = new LiveFeed(4);
  for (let i = 0; i < 10; i++) {
    const a = { auditId: `a${i}`, triggerId: `t${i}`, type: i % 2 === 0 ? 'BASKET_ABANDONED' : 'BASKET_PRICE_DROP', customerId: `c${i % 3}`, occurredAt: T + i, campaignId: 'x', variant: 'default', decision: 'SENT', reason: 'ok' } as unknown as TriggerAudit;
    feed.observe('crm.trigger-audit.v1', { key: a.customerId, value: a, timestamp: a.occurredAt });
    feed.observe('crm.triggers.v1', { key: a.customerId, value: a, timestamp: a.occurredAt });
  }
  assert.deepEqual(feed.counts(), [
    { type: 'BASKET_ABANDONED', decision: 'SENT', count: 5 },
    { type: 'BASKET_PRICE_DROP', decision: 'SENT', count: 5 },
  ]);
  const all = feed.read(0, {}, 50);
  assert.deepEqual(all.entries.map((e) => e.seq), [7, 8, 9, 10], 'the 4 newest are kept');
  assert.equal(all.skipped, 6);
  const capped = feed.read(0, {}, 2);
  assert.deepEqual(capped.entries.map((e) => e.seq), [9, 10]);
  assert.equal(capped.skipped, 8);
  assert.deepEqual(feed.read(6, { customer: 'c0' }, 50).entries.map((e) => e.seq), [7, 10]);
  assert.deepEqual(feed.read(10, {}, 50).entries, []);
});
