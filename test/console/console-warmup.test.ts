/**
 * The preview over the input topics' last N hours first replays the stretch before the window (uncounted), so
 * a basket filled before the window and abandoned inside it, and the customer's profile, are known: the
 * abandonment inside the window is counted, the one inside the warm-up is not.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import type { BasketEvent, CustomerProfile, PageviewEvent } from '../../schemas/contract.js';
import type { AuthConfig } from '../../src/api/auth.js';
import { createApiApp } from '../../src/api/server.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { LiveCampaigns } from '../../src/config/live.js';
import { LiveFeed } from '../../src/console/feed.js';
import { registerConsole } from '../../src/console/routes.js';
import type { RecentInput } from '../../src/kafka/recent-input.js';

const MIN = 60_000;
const KEY = 'manager-key-0123456789';
const INPUT = { guards: { quietHours: null, cap: { max: 3, window: '24h' } }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '30m' } } } };

let app: FastifyInstance;
const asked: number[] = [];
let truncateBefore = -Infinity;
const now = Date.now();
const start = now - 60 * MIN; // the 1h window's start

const profile = (customerId: string, at: number): CustomerProfile => ({ customerId, updatedAt: at, timezone: 'UTC', consents: { push: true, email: true, onsite: true }, pushTokens: [], segments: [], attributes: {} });
const add = (customerId: string, at: number): BasketEvent => ({ eventId: `b-${customerId}`, customerId, occurredAt: at, type: 'ITEM_ADDED', sku: 'mug-1', productId: 'mug', quantity: 1 });
const view = (customerId: string, at: number): PageviewEvent => ({ eventId: `v-${customerId}-${at}`, customerId, occurredAt: at, productId: 'socks' });

// walt: profile and basket 50 min before the window, abandoned 20 min before it (warm-up: not counted).
// wendy: profile and basket 10 min before the window, abandoned 20 min into it (counted, only with the warm-up).
// A page view near the end moves stream time past wendy's timer.
const records: { at: number; line: string }[] = [
  { at: start - 55 * MIN, line: JSON.stringify({ topic: 'crm.customers.v1', key: 'walt', value: profile('walt', start - 55 * MIN) }) },
  { at: start - 50 * MIN, line: JSON.stringify({ topic: 'shop.basket.v1', key: 'walt', value: add('walt', start - 50 * MIN) }) },
  { at: start - 15 * MIN, line: JSON.stringify({ topic: 'crm.customers.v1', key: 'wendy', value: profile('wendy', start - 15 * MIN) }) },
  { at: start - 10 * MIN, line: JSON.stringify({ topic: 'shop.basket.v1', key: 'wendy', value: add('wendy', start - 10 * MIN) }) },
  { at: now - 5 * MIN, line: JSON.stringify({ topic: 'shop.pageviews.v1', key: 'vera', value: view('vera', now - 5 * MIN) }) },
];

/** Records since a time, as the input topics answer; "truncated" when asked from before `truncateBefore`. */
const recentInput = (since: number): Promise<RecentInput> => {
  asked.push(since);
  const lines = records.filter((r) => r.at >= since).map((r) => r.line);
  return Promise.resolve({ ndjson: lines.join('\n') + '\n', records: lines.length, undecodable: 0, truncated: since < truncateBefore });
};

before(async () => {
  const auth: AuthConfig = { mode: 'required', keys: [{ name: 'manager', key: KEY, scopes: new Set(['console']) }], tokenSecret: undefined };
  app = createApiApp();
  await registerConsole(app, { auth, live: new LiveCampaigns(resolveCampaigns(INPUT), INPUT), feed: new LiveFeed(), recentInput });
});
after(async () => {
  await app.close();
});

interface Preview {
  result: { lines: number; warmupLines: number; types: { type: string; current: number; currentDecisions: Record<string, number> }[]; source: { warmup: { stretch: string; skipped?: string } } };
}
const preview = async (): Promise<Preview['result']> => {
  const r = await app.inject({ method: 'POST', url: '/console/api/settings/preview', headers: { 'x-api-key': KEY, 'content-type': 'application/json' }, payload: JSON.stringify({ config: JSON.stringify(INPUT), window: '1h' }) });
  assert.equal(r.statusCode, 200, r.body);
  return r.json<Preview>().result;
};

test('a window preview replays the hour before it first: an abandonment in the window from a basket filled before it counts, one inside the warm-up does not', { timeout: 60_000 }, async () => {
  asked.length = 0;
  const r = await preview();
  assert.equal(asked.length, 1);
  assert.ok(Math.abs((asked[0] ?? 0) - (start - 60 * MIN)) < 10_000, 'read from one window-length before the window');
  assert.equal(r.lines, 5);
  assert.equal(r.warmupLines, 4);
  assert.deepEqual(r.source.warmup, { stretch: '1h' });
  const ba = r.types.find((t) => t.type === 'BASKET_ABANDONED');
  assert.equal(ba?.current, 1, JSON.stringify(r.types));
  assert.deepEqual(ba?.currentDecisions, { 'SENT/ok': 1 });
});

test('when the window and the stretch before it exceed the record limit, the window alone is replayed and the page says so', { timeout: 60_000 }, async () => {
  asked.length = 0;
  truncateBefore = start - MIN;
  try {
    const r = await preview();
    assert.equal(asked.length, 2);
    assert.match(r.source.warmup.skipped ?? '', /hold more than the preview's record limit/);
    assert.equal(r.warmupLines, 0);
    assert.equal(r.types.find((t) => t.type === 'BASKET_ABANDONED'), undefined, 'wendy\'s basket is not known without the warm-up');
  } finally {
    truncateBefore = -Infinity;
  }
});
