/**
 * The query API over real HTTP (fastify listening on a free port, requests with fetch) in front of a real
 * task state (RocksDB through the topology test driver): authentication, authorization, PII scope, every
 * error status, paging and the OpenAPI document. Owner routing across instances: routing.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import type { BasketEvent, CatalogEvent, CustomerProfile, WishlistEvent } from '../../schemas/contract.js';
import { signCustomerToken } from '../../src/api/auth.js';
import { PII_KEY, READ_KEY, SECRET, testAuth } from '../support/api-auth.js';
import { createApiApp, registerApi, type QueryBackend } from '../../src/api/server.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { stateReader, type StateReader } from '../../src/engine/state/reader.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);

let driver: TopologyTestDriver;
let app: FastifyInstance;
let base = '';
/** The same API with a customer rate limit of 3 per minute. */
let limited: FastifyInstance;
let limitedBase = '';
/** What the backend says about ownership; tests switch it to simulate a rebalance. */
let mode: 'owner' | 'moving' | 'standby' = 'owner';
const registry = new Registry();

const profile: CustomerProfile = {
  customerId: 'anna',
  updatedAt: T0,
  timezone: 'Europe/Berlin',
  locale: 'de-DE',
  consents: { push: true, email: true, onsite: true },
  pushTokens: [{ token: 'fcm-token-anna', platform: 'android' }],
  email: 'anna@example.com',
  segments: ['vip'],
  attributes: { clv: 900 },
};

before(async () => {
  const cfg = resolveCampaigns({ guards: { quietHours: null, cap: null }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '30m' } } } });
  const topology = buildTopology(cfg, 'api');
  driver = await TopologyTestDriver.create(topology);
  await driver.pipe('crm.customers.v1', 'anna', profile, { timestamp: T0 });
  const cat: CatalogEvent = { eventId: 'c1', sku: 'jacket-m', productId: 'jacket', occurredAt: T0, type: 'PRICE_CHANGED', price: { amount: 10000, currency: 'EUR' } };
  await driver.pipe('shop.catalog.v1', 'jacket-m', cat);
  for (let i = 0; i < 5; i++) {
    const c = i === 0 ? 'anna' : `c${i}`;
    const add: BasketEvent = { eventId: `b${i}`, customerId: c, occurredAt: T0 + i, type: 'ITEM_ADDED', sku: 'jacket-m', productId: 'jacket', quantity: 1, unitPrice: { amount: 10000, currency: 'EUR' } };
    await driver.pipe('shop.basket.v1', c, add);
    const wish: WishlistEvent = { eventId: `w${i}`, customerId: c, occurredAt: T0 + i, type: 'ITEM_ADDED', productId: 'jacket', ...(i % 2 === 0 ? { sku: 'jacket-m' } : {}) };
    await driver.pipe('shop.wishlist.v1', c, wish);
  }
  await driver.advanceStreamTime(T0 + HOUR);
  const reader = (source: 'active' | 'standby'): StateReader =>
    stateReader(driver.task.state, { source, partition: 0, ...(source === 'standby' ? { lagRecords: 7 } : {}), timers: (k) => driver.task.timerInfosFor(k) });
  const backend: QueryBackend = {
    topology,
    partitionOf: () => 0,
    owner: () => (mode === 'owner' ? 'self:1' : null),
    reader: () => Promise.resolve(mode === 'moving' ? undefined : reader(mode === 'standby' ? 'standby' : 'active')),
  };
  const auth = testAuth();
  app = createApiApp();
  await registerApi(app, { backend, auth, self: () => 'self:1', rateLimitService: 10_000, rateLimitCustomer: 1000, forwardTimeoutMs: 1000 }, registry);
  base = await app.listen({ port: 0, host: '127.0.0.1' });
  limited = createApiApp();
  await registerApi(limited, { backend, auth, self: () => 'self:1', rateLimitService: 10_000, rateLimitCustomer: 3, forwardTimeoutMs: 1000 }, new Registry());
  limitedBase = await limited.listen({ port: 0, host: '127.0.0.1' });
});

after(async () => {
  await app.close();
  await limited.close();
  await driver.close();
});

async function get(path: string, credential?: string, header: 'authorization' | 'x-api-key' = 'authorization', at = base): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (credential !== undefined) headers[header] = header === 'authorization' ? `Bearer ${credential}` : credential;
  const res = await fetch(`${at}${path}`, { headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

const code = (r: { body: Record<string, unknown> }): unknown => (r.body.error as { code?: unknown } | undefined)?.code;

test('GET /v1/customers/:id: basket, wishlist, timers, triggers and decisions with reasons; PII only with the pii scope', async () => {
  const r = await get('/v1/customers/anna', READ_KEY);
  assert.equal(r.status, 200);
  const v = r.body as { basket: { items: { sku: string }[]; value: unknown }; wishlist: unknown[]; triggers: { type: string }[]; decisions: { decision: string; reason: string }[]; profile: Record<string, unknown>; timers: unknown[]; freshness: Record<string, unknown> };
  assert.deepEqual(v.basket.items.map((i) => i.sku), ['jacket-m']);
  assert.deepEqual(v.basket.value, { amount: 10000, currency: 'EUR' });
  assert.deepEqual(v.wishlist, [{ productId: 'jacket', sku: 'jacket-m' }]);
  assert.deepEqual(v.triggers.map((t) => t.type), ['BASKET_ABANDONED']);
  assert.deepEqual(v.decisions.map((d) => [d.decision, d.reason]), [['SENT', 'ok']]);
  assert.ok(Array.isArray(v.timers));
  assert.equal(v.profile.email, undefined, 'no e-mail without the pii scope');
  assert.equal(v.profile.pushTokens, undefined, 'no push tokens without the pii scope');
  assert.equal(v.profile.timezone, 'Europe/Berlin');
  assert.deepEqual(v.freshness, { servedBy: 'self:1', source: 'active', partition: 0, streamTime: T0 + HOUR });
  assert.equal(r.headers.get('x-kairos-served-by'), 'self:1');
  const pii = await get('/v1/customers/anna', PII_KEY, 'x-api-key');
  assert.equal(pii.status, 200);
  assert.equal((pii.body.profile as Record<string, unknown>).email, 'anna@example.com');
  assert.deepEqual((pii.body.profile as Record<string, unknown>).pushTokens, profile.pushTokens);
});

test('GET /v1/customers/:id/triggers filters by type', async () => {
  const all = await get('/v1/customers/anna/triggers', READ_KEY);
  assert.equal(all.status, 200);
  assert.equal((all.body.triggers as unknown[]).length, 1);
  const none = await get('/v1/customers/anna/triggers?type=BROWSE_ABANDONED', READ_KEY);
  assert.deepEqual(none.body.triggers, []);
});

test('customer tokens read only their own customer, never PII; bad tokens are 401', async () => {
  const token = signCustomerToken(SECRET, 'anna', 60);
  const own = await get('/v1/customers/anna', token);
  assert.equal(own.status, 200);
  assert.equal((own.body.profile as Record<string, unknown>).email, undefined);
  const other = await get('/v1/customers/c1', token);
  assert.equal(other.status, 403);
  assert.equal(code(other), 'KAIROS_ERR_API_FORBIDDEN');
  assert.equal((await get('/v1/products/jacket-m/watchers', token)).status, 403, 'a customer token reads no product index');
  const expired = signCustomerToken(SECRET, 'anna', -3600);
  const e = await get('/v1/customers/anna', expired);
  assert.equal(e.status, 401);
  assert.match(String((e.body.error as { message: string }).message), /expired/);
  const forged = signCustomerToken('another-secret-of-at-least-32-characters', 'anna', 60);
  assert.equal((await get('/v1/customers/anna', forged)).status, 401);
  const [h, p] = token.split('.');
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${p ?? ''}.`;
  assert.equal((await get('/v1/customers/anna', none)).status, 401, 'alg none is refused');
  assert.ok(h);
});

test('every error status: 400 malformed id or query, 401 no or unknown credentials, 404 unknown customer/product/route, 429 rate limit, 503 rebalance', async () => {
  const bad = await get(`/v1/customers/${encodeURIComponent('a\u0001b')}`, READ_KEY);
  assert.equal(bad.status, 400);
  assert.equal(code(bad), 'KAIROS_ERR_API_BAD_REQUEST');
  assert.equal((await get(`/v1/customers/${'x'.repeat(129)}`, READ_KEY)).status, 400, 'ids are at most 128 characters');
  assert.equal((await get('/v1/products/jacket-m/watchers?limit=0', READ_KEY)).status, 400);
  const none = await get('/v1/customers/anna');
  assert.equal(none.status, 401);
  assert.equal(code(none), 'KAIROS_ERR_API_UNAUTHORIZED');
  assert.equal((await get('/v1/customers/anna', 'not-a-key-0123456789')).status, 401);
  const unknown = await get('/v1/customers/nobody', READ_KEY);
  assert.equal(unknown.status, 404);
  assert.equal(code(unknown), 'KAIROS_ERR_API_NOT_FOUND');
  assert.equal((await get('/v1/products/no-such-sku/watchers', READ_KEY)).status, 404);
  assert.equal((await get('/v1/nothing-here', READ_KEY)).status, 404);
  // Rate limit per customer token: 3 per minute here.
  const token = signCustomerToken(SECRET, 'c2', 60);
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) statuses.push((await get('/v1/customers/c2', token, 'authorization', limitedBase)).status);
  assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
  const over = await get('/v1/customers/c2', token, 'authorization', limitedBase);
  assert.equal(code(over), 'KAIROS_ERR_API_RATE_LIMITED');
  assert.ok(over.headers.get('retry-after'));
  assert.equal((await get('/v1/customers/c3', signCustomerToken(SECRET, 'c3', 60), 'authorization', limitedBase)).status, 200, 'the limit is per customer');
  // A rebalance: nobody owns the task and there is no standby copy here.
  mode = 'moving';
  try {
    const moving = await get('/v1/customers/anna', READ_KEY);
    assert.equal(moving.status, 503);
    assert.equal(code(moving), 'KAIROS_ERR_API_UNAVAILABLE');
    assert.equal(moving.headers.get('retry-after'), '1');
  } finally {
    mode = 'owner';
  }
});

test('during a rebalance a standby copy answers, saying so and how far behind it is', async () => {
  mode = 'standby';
  try {
    const r = await get('/v1/customers/anna', READ_KEY);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.freshness, { servedBy: 'self:1', source: 'standby', partition: 0, streamTime: T0 + HOUR, lagRecords: 7 });
    assert.equal(r.headers.get('x-kairos-source'), 'standby');
  } finally {
    mode = 'owner';
  }
});

test('GET /v1/products/:sku/watchers counts and pages basket watchers; wishers by product and sku', async () => {
  const p1 = await get('/v1/products/jacket-m/watchers?limit=2', READ_KEY);
  assert.equal(p1.status, 200);
  const b1 = p1.body.basket as { count: number; items: { customerId: string }[]; nextCursor: string | null };
  assert.equal(p1.body.productId, 'jacket');
  assert.equal(b1.count, 5);
  assert.deepEqual(b1.items.map((i) => i.customerId), ['anna', 'c1']);
  const seen = [...b1.items.map((i) => i.customerId)];
  let cursor = b1.nextCursor;
  while (cursor !== null) {
    const next = await get(`/v1/products/jacket-m/watchers?limit=2&cursor=${encodeURIComponent(cursor)}`, READ_KEY);
    const b = next.body.basket as { items: { customerId: string }[]; nextCursor: string | null };
    seen.push(...b.items.map((i) => i.customerId));
    cursor = b.nextCursor;
  }
  assert.deepEqual(seen, ['anna', 'c1', 'c2', 'c3', 'c4'], 'every watcher once, in key order');
  const w = await get('/v1/products/by-id/jacket/wishers?sku=jacket-m', READ_KEY);
  assert.equal(w.status, 200);
  const wl = w.body.wishlist as { count: number; items: { customerId: string; sku: string | null }[] };
  assert.equal(wl.count, 5, 'three wished the sku, two the product in any size');
  const other = await get('/v1/products/by-id/jacket/wishers?sku=jacket-s', READ_KEY);
  assert.equal((other.body.wishlist as { count: number }).count, 2, 'only the any-size wishes match another sku');
});

test('GET /v1/topology and the OpenAPI document; API latency is measured per route', async () => {
  const t = await get('/v1/topology', READ_KEY);
  assert.equal(t.status, 200);
  assert.equal(t.body.applicationId, 'api');
  assert.ok((t.body.nodes as { name: string }[]).some((n) => n.name === 'history'));
  const doc = await get('/docs/json');
  assert.equal(doc.status, 200);
  const paths = Object.keys(doc.body.paths as Record<string, unknown>);
  for (const p of ['/v1/customers/{id}', '/v1/customers/{id}/triggers', '/v1/products/{sku}/watchers', '/v1/products/by-id/{productId}/wishers', '/v1/topology']) assert.ok(paths.includes(p), p);
  const metrics = await registry.metrics();
  assert.match(metrics, /kairos_api_request_duration_seconds_count\{method="GET",route="\/v1\/customers\/:id",status_code="200"\} [1-9]/);
  assert.match(metrics, /kairos_api_request_duration_seconds_count\{method="GET",route="\/v1\/customers\/:id",status_code="401"\} [1-9]/);
  // timed, not only counted: fastify times a reply only for routes with a response hook, which /v1 has not
  const bad = await get('/v1/products/by-id/jacket/wishers?limit=-1', READ_KEY);
  assert.equal(bad.status, 400);
  const again = await registry.metrics();
  for (const status of ['200', '401', '400']) {
    const sum = new RegExp(`kairos_api_request_duration_seconds_sum\\{method="GET",route="[^"]*",status_code="${status}"\\} (\\S+)`).exec(again)?.[1];
    assert.ok(sum !== undefined && Number(sum) > 0, `latency of the ${status} answers: sum ${String(sum)}`);
  }
  const topo = /kairos_api_request_duration_seconds_sum\{method="GET",route="\/v1\/topology",status_code="200"\} (\S+)/.exec(again)?.[1];
  assert.ok(Number(topo) > 0, `latency of /v1/topology: sum ${String(topo)}`);
});
