/**
 * The campaign console over fastify's inject, in front of the query API over a real task state (the topology
 * test driver): sign-in and scopes, sessions, cross-origin writes, the customer page's "why not?", validation
 * errors at their field, the diff, the backtest preview in its child process, and publish.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import type { BasketEvent, CustomerProfile } from '../../schemas/contract.js';
import type { AuthConfig } from '../../src/api/auth.js';
import { createApiApp, registerApi, type QueryBackend } from '../../src/api/server.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { LiveCampaigns } from '../../src/config/live.js';
import { LiveFeed } from '../../src/console/feed.js';
import { registerConsole } from '../../src/console/routes.js';
import { recentEvents } from '../../src/console/recent-events.js';
import { stateReader } from '../../src/engine/state/reader.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { runDailyReport, runReport } from '../../src/warehouse/report.js';
import { tempDir } from '../helpers.js';
import { abWarehouse } from '../support/console-warehouse.js';

const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const HOUR = 3_600_000;
const MANAGER = 'manager-key-0123456789';
const VIEWER = 'viewer-key-0123456789';
const READER = 'reader-key-0123456789';
const INPUT = { guards: { quietHours: null, cap: { max: 3, window: '24h' } }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '30m' } } } };
const SCENARIO = join(import.meta.dirname, '..', '..', 'load-tests', 'scenarios', 'all-triggers.ndjson');

let driver: TopologyTestDriver;
let app: FastifyInstance;
let live: LiveCampaigns;
const warehouseDir = tempDir('kairos-console-wh-');
const published: { config: unknown; by: string }[] = [];

const profile = (customerId: string, consent: boolean): CustomerProfile => ({
  customerId,
  updatedAt: T0,
  timezone: 'Europe/Berlin',
  consents: { push: consent, email: consent, onsite: consent },
  pushTokens: [],
  segments: [],
  attributes: {},
});

before(async () => {
  live = new LiveCampaigns(resolveCampaigns(INPUT), INPUT);
  const topology = buildTopology(live, 'console');
  driver = await TopologyTestDriver.create(topology);
  const feed = new LiveFeed();
  for (const [c, consent] of [['frank', false], ['anna', true]] as const) {
    await driver.pipe('crm.customers.v1', c, profile(c, consent), { timestamp: T0 });
    const add: BasketEvent = { eventId: `b-${c}`, customerId: c, occurredAt: T0 + 1000, type: 'ITEM_ADDED', sku: 'jacket-m', productId: 'jacket', quantity: 1, unitPrice: { amount: 10000, currency: 'EUR' } };
    await driver.pipe('shop.basket.v1', c, add);
  }
  await driver.advanceStreamTime(T0 + HOUR);
  const reader = () => Promise.resolve(stateReader(driver.task.state, { source: 'active', partition: 0, timers: (k) => driver.task.timerInfosFor(k) }));
  const backend: QueryBackend = {
    topology,
    partitionOf: () => 0,
    owner: () => 'self:1',
    reader: () => reader(),
  };
  const auth: AuthConfig = {
    mode: 'required',
    keys: [
      { name: 'manager', key: MANAGER, scopes: new Set(['read', 'console', 'console-publish']) },
      { name: 'viewer', key: VIEWER, scopes: new Set(['console']) },
      { name: 'reader', key: READER, scopes: new Set(['read']) },
    ],
    tokenSecret: undefined,
  };
  // The warehouse of the results page: variant A (2 customers, 1 converts) and a holdout (2 customers, none).
  const wh = await abWarehouse(warehouseDir.dir, T0);
  app = createApiApp();
  await registerApi(app, { backend, self: () => 'self:1', auth, rateLimitService: 10_000, rateLimitCustomer: 100, forwardTimeoutMs: 1000 }, new Registry());
  await registerConsole(app, {
    auth,
    live,
    feed,
    report: (campaignId, windowMs) => runReport(wh, campaignId, windowMs),
    recentEvents: async (customerId, windowMs) => recentEvents(await reader(), customerId, windowMs),
    daily: (campaignId, windowMs) => runDailyReport(wh, campaignId, windowMs),
    publisher: {
      topic: 'crm.campaigns.v1',
      publish: (config, by) => {
        published.push({ config, by });
        return Promise.resolve({ partition: 0, offset: String(published.length - 1) });
      },
    },
  });
});
after(async () => {
  await app.close();
  await driver.close();
  warehouseDir.remove();
});

const json = (body: unknown, key = MANAGER) => ({ headers: { 'x-api-key': key, 'content-type': 'application/json' }, payload: JSON.stringify(body) });

test('pages without a session redirect to sign-in; a wrong key is refused, a key without the console scope is forbidden', async () => {
  const r = await app.inject({ method: 'GET', url: '/console/customer?id=frank' });
  assert.equal(r.statusCode, 303);
  assert.equal(r.headers.location, '/console/login?next=%2Fconsole%2Fcustomer%3Fid%3Dfrank');
  const bad = await app.inject({ method: 'POST', url: '/console/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'key=nope-nope-nope-nope' });
  assert.equal(bad.statusCode, 401);
  assert.match(bad.body, /unknown API key/);
  const noScope = await app.inject({ method: 'POST', url: '/console/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `key=${READER}` });
  assert.equal(noScope.statusCode, 401);
  assert.match(noScope.body, /lacks the console scope/);
  const api = await app.inject({ method: 'GET', url: '/console/api/settings/state' });
  assert.equal(api.statusCode, 401);
  assert.equal(api.json<{ error: { code: string } }>().error.code, 'KAIROS_ERR_API_UNAUTHORIZED');
  const forbidden = await app.inject({ method: 'GET', url: '/console/api/settings/state', headers: { 'x-api-key': READER } });
  assert.equal(forbidden.statusCode, 403);
});

test('sign-in sets an HttpOnly SameSite=Strict session that opens the pages; a tampered one does not; only console paths are followed', async () => {
  const r = await app.inject({ method: 'POST', url: '/console/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `key=${VIEWER}&next=${encodeURIComponent('https://evil.example/')}` });
  assert.equal(r.statusCode, 303);
  assert.equal(r.headers.location, '/console/live');
  const cookie = String(r.headers['set-cookie']);
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);
  assert.doesNotMatch(cookie, new RegExp(VIEWER), 'the key never goes to the browser');
  const session = cookie.split(';')[0] as string;
  const page = await app.inject({ method: 'GET', url: '/console/settings', headers: { cookie: session } });
  assert.equal(page.statusCode, 200);
  assert.match(String(page.headers['content-security-policy']), /default-src 'none'/);
  assert.match(page.body, /Publishing needs the console-publish scope/);
  const tampered = session.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
  const t = await app.inject({ method: 'GET', url: '/console/settings', headers: { cookie: tampered } });
  assert.equal(t.statusCode, 303);
});

test('customer page: decisions with reasons and a "why not?" line per trigger type', async () => {
  const r = await app.inject({ method: 'GET', url: '/console/customer?id=frank', headers: { 'x-api-key': MANAGER } });
  assert.equal(r.statusCode, 200);
  assert.match(r.body, /<tr data-type="BASKET_ABANDONED">.*no consent: no consent for push, email/);
  assert.match(r.body, /<tr data-type="WISHLIST_BACK_IN_STOCK">.*no candidate recorded/);
  // Recent events: what the engine keeps of them (the input deduplication's event ids), and that it is only that.
  assert.match(r.body, /<table id="recent-events">.*<tr><td>2026-11-20T09:00:01Z<\/td><td>shop.basket.v1<\/td><td>b-frank<\/td><\/tr>/s);
  assert.match(r.body, /The engine keeps no copy of input events, only the state they leave/);
  assert.doesNotMatch(r.body, /b-anna/);
  const anna = await app.inject({ method: 'GET', url: '/console/customer?id=anna', headers: { 'x-api-key': MANAGER } });
  assert.match(anna.body, /<tr data-type="BASKET_ABANDONED">.*sent at 2026-11-20T09:30:01Z/);
  assert.match(anna.body, /shop\.basket\.v1\[0\]@\d+ \(b-anna\)/, 'the trigger names the record that caused it');
  const unknown = await app.inject({ method: 'GET', url: '/console/customer?id=nobody', headers: { 'x-api-key': MANAGER } });
  assert.equal(unknown.statusCode, 404);
  assert.match(unknown.body, /No customer &quot;nobody&quot;/);
  const xss = await app.inject({ method: 'GET', url: `/console/customer?id=${encodeURIComponent('<script>x</script>')}`, headers: { 'x-api-key': MANAGER } });
  assert.doesNotMatch(xss.body, /<script>x/);
});

test('check: every validation error at its field path, as the file is validated; a valid edit lists the resolved changes', async () => {
  const bad = await app.inject({ method: 'POST', url: '/console/api/settings/check', ...json({ config: JSON.stringify({ guards: { cap: { max: 'three', window: '24h' }, defaultTimezone: 'Mars/Olympus' } }) }) });
  assert.equal(bad.statusCode, 400);
  const fields = bad.json<{ error: { fields: { path: string; message: string }[] } }>().error.fields;
  assert.deepEqual(fields.map((f) => f.path).sort(), ['/guards/cap/max', '/guards/defaultTimezone']);
  const notJson = await app.inject({ method: 'POST', url: '/console/api/settings/check', ...json({ config: '{"guards":' }) });
  assert.equal(notJson.json<{ error: { fields: { path: string }[] } }>().error.fields[0]?.path, '/');
  const ok = await app.inject({ method: 'POST', url: '/console/api/settings/check', ...json({ config: JSON.stringify({ ...INPUT, guards: { ...INPUT.guards, cap: { max: 1, window: '24h' } } }) }) });
  assert.equal(ok.statusCode, 200);
  assert.deepEqual(ok.json<{ changes: unknown[] }>().changes, [{ path: '/guards/cap/max', from: '3', to: '1' }]);
});

test('writes from another origin and non-JSON bodies are refused', async () => {
  const cross = await app.inject({ method: 'POST', url: '/console/api/settings/check', headers: { 'x-api-key': MANAGER, 'content-type': 'application/json', origin: 'https://evil.example', host: 'kairos:9464' }, payload: '{"config":"{}"}' });
  assert.equal(cross.statusCode, 403);
  // What a cross-site form can send (text/plain) stays a string: never read as the JSON body.
  const form = await app.inject({ method: 'POST', url: '/console/api/settings/check', headers: { 'x-api-key': MANAGER, 'content-type': 'text/plain' }, payload: '{"config":"{}"}' });
  assert.equal(form.statusCode, 400);
  assert.match(form.body, /body.config/);
});

test('publish needs the console-publish scope and a valid config; it says who and when', async () => {
  const edited = { ...INPUT, guards: { ...INPUT.guards, cap: { max: 1, window: '24h' } } };
  const viewer = await app.inject({ method: 'POST', url: '/console/api/settings/publish', ...json({ config: JSON.stringify(edited) }, VIEWER) });
  assert.equal(viewer.statusCode, 403);
  assert.match(viewer.body, /lacks the console-publish scope/);
  const invalid = await app.inject({ method: 'POST', url: '/console/api/settings/publish', ...json({ config: '{"guards":{"cap":{"max":0,"window":"1h"}}}' }) });
  assert.equal(invalid.statusCode, 400);
  assert.equal(published.length, 0);
  const ok = await app.inject({ method: 'POST', url: '/console/api/settings/publish', ...json({ config: JSON.stringify(edited) }) });
  assert.equal(ok.statusCode, 200);
  assert.equal(ok.json<{ by: string }>().by, 'key:manager');
  assert.deepEqual(published, [{ config: edited, by: 'key:manager' }]);
});

test('preview: both configs replayed in a child process, the difference per trigger type and sample customers', { timeout: 60_000 }, async () => {
  const events = readFileSync(SCENARIO, 'utf8');
  const edited = { ...INPUT, guards: { ...INPUT.guards, cap: { max: 1, window: '24h' } } };
  const r = await app.inject({ method: 'POST', url: '/console/api/settings/preview', ...json({ config: JSON.stringify(edited), events }) });
  assert.equal(r.statusCode, 200, r.body);
  const types = r.json<{ result: { types: { type: string; current: number; edited: number; difference: number; onlyCurrent: string[]; editedDecisions: Record<string, number> }[] } }>().result.types;
  // carl's basket is abandoned first (30m gap); his price drop that follows is capped at 1 a day.
  const pd = types.find((t) => t.type === 'BASKET_PRICE_DROP');
  assert.ok(pd);
  assert.deepEqual([pd.current, pd.edited, pd.difference], [1, 0, -1]);
  assert.deepEqual(pd.onlyCurrent, ['carl']);
  assert.equal(pd.editedDecisions['SUPPRESSED/cap'], 1);
  assert.equal(types.find((t) => t.type === 'BASKET_ABANDONED')?.difference, 0);
});

test('preview: an unknown window is 400 naming the accepted ones; without access to the input topics, 503; neither events nor window, 400', async () => {
  const config = JSON.stringify(INPUT);
  const bad = await app.inject({ method: 'POST', url: '/console/api/settings/preview', ...json({ config, window: '2h' }) });
  assert.equal(bad.statusCode, 400);
  assert.match(bad.body, /body.window: one of 1h, 6h, 24h, 7d, 30d/);
  const none = await app.inject({ method: 'POST', url: '/console/api/settings/preview', ...json({ config, window: '24h' }) });
  assert.equal(none.statusCode, 503);
  const empty = await app.inject({ method: 'POST', url: '/console/api/settings/preview', ...json({ config }) });
  assert.equal(empty.statusCode, 400);
  assert.match(empty.body, /body.events .* or body.window is required/);
});

test('results: the A/B report as a chart (an accessible SVG) and a table, variants and holdout with the 95 % CI', async () => {
  const r = await app.inject({ method: 'GET', url: '/console/results?campaign=c-1&window=7d', headers: { 'x-api-key': VIEWER } });
  assert.equal(r.statusCode, 200, r.body);
  assert.match(r.body, /<svg id="results-chart" role="img" aria-labelledby="chart-title chart-desc"/);
  assert.match(r.body, /<desc id="chart-desc">holdout: 0.00 %; A: 50.00 %, uplift \+50.00 pp \[-19.30 pp, \+119.30 pp\]<\/desc>/);
  assert.match(r.body, /<tr><th scope="row">A<\/th><td class="num">2<\/td><td class="num">1<\/td><td class="num">50.00 %<\/td>/);
  // Per day: sends and conversions per arm, as an SVG with its values in words, and a table.
  assert.match(r.body, /<svg id="daily-chart" role="img" aria-labelledby="daily-title daily-desc"/);
  assert.match(
    r.body,
    /<desc id="daily-desc">2026-11-20: holdout 2 held out, 2 first exposed, 0 converted; A 2 sent, 2 first exposed, 1 converted\. 2026-11-21: holdout 1 held out, 0 first exposed, 0 converted; A 1 sent, 0 first exposed, 0 converted<\/desc>/,
  );
  assert.equal((r.body.match(/<rect [^>]*fill-opacity="0.35"/g) ?? []).length, 4, 'a sends bar per day and arm');
  assert.match(r.body, /<tr><td>2026-11-21<\/td><th scope="row">A<\/th><td class="num">1<\/td><td class="num">0<\/td><td class="num">0<\/td><\/tr>/);
  const bad = await app.inject({ method: 'GET', url: '/console/results?campaign=c-1&window=soon', headers: { 'x-api-key': VIEWER } });
  assert.equal(bad.statusCode, 400);
  assert.match(bad.body, /expected a duration like 7d/);
  const none = await app.inject({ method: 'GET', url: '/console/results?campaign=nope', headers: { 'x-api-key': VIEWER } });
  assert.match(none.body, /No triggers or holdout decisions of campaign nope/);
});

test('results: when the per-day query fails, the report still shows and the page says what failed', async () => {
  const auth: AuthConfig = { mode: 'required', keys: [{ name: 'viewer', key: VIEWER, scopes: new Set(['console']) }], tokenSecret: undefined };
  const wh = await abWarehouse(warehouseDir.dir, T0);
  const other = createApiApp();
  await registerConsole(other, { auth, live, feed: new LiveFeed(), report: (c, w) => runReport(wh, c, w), daily: () => Promise.reject(new Error('no such query here')) });
  try {
    const r = await other.inject({ method: 'GET', url: '/console/results?campaign=c-1&window=7d', headers: { 'x-api-key': VIEWER } });
    assert.equal(r.statusCode, 200);
    assert.match(r.body, /<svg id="results-chart"/);
    assert.doesNotMatch(r.body, /<svg id="daily-chart"/);
    assert.match(r.body, /<p class="error" role="alert" id="daily-error">The per-day report failed: no such query here<\/p>/);
  } finally {
    await other.close();
  }
});
