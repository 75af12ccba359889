/**
 * The query API's directly written answers (ApiOptions.directAnswers, the default: reply.hijack and one
 * writeHead/end, a view-cache hit answered in the route handler when the backend has the reader at hand) are the
 * bytes fastify's reply writes: two apps over one task state, one as served (direct, with `readerNow`), one with
 * `directAnswers: false` and no `readerNow` (every answer through fastify's reply, after the awaited reader), asked
 * the same requests over real sockets and compared byte for byte (status line, every header in its order, body;
 * only `Date` is left out, Node writes it from its own clock). Covered: hits and misses, PII and non-PII keys,
 * customer tokens, 401, 403, 404, 400, 429 with Retry-After, a standby copy, no stream time yet (null), the triggers, watchers and wishers routes, HEAD, and the metrics both apps count.
 * The direct app answers a customer whose view the cache holds in the server's request listener, before fastify
 * (`answerAtOnce`); it counts the requests fastify saw, to tell which way each one went.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import type { BasketEvent, CustomerProfile, WishlistEvent } from '../../schemas/contract.js';
import { signCustomerToken } from '../../src/api/auth.js';
import { PII_KEY, READ_KEY, SECRET, testAuth, testProfile } from '../support/api-auth.js';
import { createApiApp, registerApi, type QueryBackend } from '../../src/api/server.js';
import { CustomerViewCache } from '../../src/api/view-cache.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { stateReader, type StateReader } from '../../src/engine/state/reader.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const auth = testAuth();

/** The apps' clock (rate-limit windows, token times): fixed, so both count the same windows. */
let now = T0 + HOUR;
/** Where the backend reads from; tests switch it. */
let mode: 'active' | 'standby' | 'no-stream-time' = 'active';

let driver: TopologyTestDriver;
const views = new CustomerViewCache();
/** Requests the direct app's fastify routed (the others were answered before it). */
let fastifySaw = 0;
const apps: { direct?: { app: FastifyInstance; port: number; registry: Registry }; reference?: { app: FastifyInstance; port: number; registry: Registry } } = {};

const profile = (id: string): CustomerProfile => testProfile(id, T0);

before(async () => {
  const cfg = resolveCampaigns({ guards: { quietHours: null, cap: null }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '30m' } } } });
  const topology = buildTopology(cfg, 'api');
  driver = await TopologyTestDriver.create(topology);
  for (const [i, c] of ['anna', 'bert', 'carl'].entries()) {
    await driver.pipe('crm.customers.v1', c, profile(c), { timestamp: T0 });
    const add: BasketEvent = { eventId: `b${i}`, customerId: c, occurredAt: T0 + i, type: 'ITEM_ADDED', sku: 'jacket-m', productId: 'jacket', quantity: 1, unitPrice: { amount: 10000, currency: 'EUR' } };
    await driver.pipe('shop.basket.v1', c, add);
    const wish: WishlistEvent = { eventId: `w${i}`, customerId: c, occurredAt: T0 + i, type: 'ITEM_ADDED', productId: 'jacket', ...(i % 2 === 0 ? { sku: 'jacket-m' } : {}) };
    await driver.pipe('shop.wishlist.v1', c, wish);
  }
  // anna's basket is abandoned (a trigger and a decision); bert and carl keep pending timers.
  await driver.advanceStreamTime(T0 + 31 * 60_000);
  const add: BasketEvent = { eventId: 'b9', customerId: 'bert', occurredAt: T0 + 31 * 60_000, type: 'ITEM_ADDED', sku: 'shoe-42', productId: 'shoe', quantity: 2, unitPrice: { amount: 5000, currency: 'EUR' } };
  await driver.pipe('shop.basket.v1', 'bert', add);
  const reader = (): StateReader => {
    const source = mode === 'standby' ? 'standby' : 'active';
    const r = stateReader(driver.task.state, { source, partition: 3, ...(source === 'standby' ? { lagRecords: 7 } : {}), timers: (k) => driver.task.timerInfosFor(k) });
    // The stream time as a task reports it before its first event (answered as null).
    return mode === 'no-stream-time' ? { ...r, streamTime: -Infinity } : r;
  };
  const backend = (withNow: boolean): QueryBackend => ({
    topology,
    partitionOf: () => 3,
    // A standby copy answers while no owner is known (a rebalance).
    owner: () => (mode === 'standby' ? null : 'self:1'),
    reader: () => Promise.resolve(reader()),
    ...(withNow ? { readerNow: reader } : {}),
  });
  for (const which of ['direct', 'reference'] as const) {
    const registry = new Registry();
    const app = createApiApp();
    if (which === 'direct') {
      app.addHook('onRequest', (_req, _reply, done) => {
        fastifySaw++;
        done();
      });
    }
    await registerApi(
      app,
      { backend: backend(which === 'direct'), auth, self: () => 'self:1', rateLimitService: 10_000, rateLimitCustomer: 4, forwardTimeoutMs: 1000, clock: () => now, directAnswers: which === 'direct', ...(which === 'direct' ? { viewCache: views } : {}) },
      registry,
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    apps[which] = { app, registry, port: (app.server.address() as { port: number }).port };
  }
});

after(async () => {
  await apps.direct?.app.close();
  await apps.reference?.app.close();
  await driver.close();
});

/** One request on a connection of its own; the answer as written on the wire (head and body), without `Date`. */
function raw(port: number, path: string, headers: Record<string, string>, method = 'GET'): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const done = (): void => {
      s.destroy();
      const text = got.toString('latin1');
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      assert.match(head, /\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n/);
      resolve(text.replace(/\r\nDate: [^\r]*/, ''));
    };
    s.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      const text = got.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 'NaN');
      if (method === 'HEAD' || got.length >= end + 4 + length) done();
    });
    s.on('error', reject);
    s.write(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
  });
}

/** Asks both apps (reference first) and compares what they wrote; answers the wire text. */
async function same(path: string, headers: Record<string, string>, what: string, method = 'GET'): Promise<string> {
  const want = await raw(apps.reference?.port as number, path, headers, method);
  const got = await raw(apps.direct?.port as number, path, headers, method);
  assert.equal(got, want, what);
  return want;
}

const key = { 'x-api-key': READ_KEY };
const piiKey = { authorization: `Bearer ${PII_KEY}` };
const statusOf = (wire: string): number => Number(wire.slice(9, 12));

test('200 answers (misses, then hits from the view cache) are the bytes fastify writes, per scope and credential', async () => {
  mode = 'active';
  for (const round of [1, 2, 3]) {
    for (const c of ['anna', 'bert', 'carl']) {
      const wire = await same(`/v1/customers/${c}`, key, `${c}, read key, round ${round}`);
      assert.equal(statusOf(wire), 200);
      assert.match(wire, /\r\nx-ratelimit-limit: 10000\r\nx-ratelimit-remaining: \d+\r\nx-ratelimit-reset: \d+\r\nx-kairos-served-by: self:1\r\nx-kairos-source: active\r\ncontent-type: application\/json; charset=utf-8\r\ncontent-length: \d+\r\n/);
      assert.doesNotMatch(wire, /example\.com|fcm-/, 'no PII for a read key');
      const pii = await same(`/v1/customers/${c}`, piiKey, `${c}, PII key, round ${round}`);
      assert.match(pii, new RegExp(`"email":"${c}@example.com"`));
    }
  }
  const token = signCustomerToken(SECRET, 'bert', 3600, now);
  const own = await same('/v1/customers/bert', { authorization: `Bearer ${token}` }, 'customer token, own customer');
  assert.equal(statusOf(own), 200);
  assert.doesNotMatch(own, /example\.com/);
  // A write moves the view: the next answer is built again, and equal again.
  const add: BasketEvent = { eventId: 'b10', customerId: 'carl', occurredAt: T0 + 32 * 60_000, type: 'ITEM_ADDED', sku: 'hat-1', productId: 'hat', quantity: 1, unitPrice: { amount: 2500, currency: 'EUR' } };
  await driver.pipe('shop.basket.v1', 'carl', add);
  for (const round of [1, 2]) assert.match(await same('/v1/customers/carl', key, `carl after a write, round ${round}`), /hat-1/);
  assert.ok(views.hits >= 9 && views.misses >= 6, `view cache hits ${views.hits}, misses ${views.misses}`);
  assert.match(await same('/v1/customers/bert/triggers?type=BASKET_ABANDONED', key, 'triggers route'), /^HTTP\/1\.1 200 OK/);
  assert.match(await same('/v1/customers/anna/triggers', piiKey, 'triggers route, PII key'), /^HTTP\/1\.1 200 OK/);
  assert.match(await same('/v1/products/jacket-m/watchers', key, 'watchers route'), /^HTTP\/1\.1 200 OK[^]*"count":3/);
  assert.match(await same('/v1/products/jacket-m/watchers?limit=1', key, 'watchers route, a page'), /"nextCursor":"/);
  assert.match(await same('/v1/products/by-id/jacket/wishers?sku=jacket-m', key, 'wishers route'), /^HTTP\/1\.1 200 OK[^]*"wishlist":\{"count":3/);
  assert.equal(statusOf(await same('/v1/products/by-id/nothing/wishers', key, 'wishers route, none')), 404);
});

test('errors are the same answers: 400, 401, 403, 404, 429 with Retry-After', async () => {
  mode = 'active';
  assert.equal(statusOf(await same('/v1/customers/anna', {}, 'no credentials')), 401);
  assert.equal(statusOf(await same('/v1/customers/anna', { 'x-api-key': 'not-a-key-0123456789' }, 'unknown key')), 401);
  assert.equal(statusOf(await same('/v1/customers/anna', { authorization: 'Bearer a.b.c' }, 'bad token')), 401);
  const token = signCustomerToken(SECRET, 'bert', 3600, now);
  assert.equal(statusOf(await same('/v1/customers/anna', { authorization: `Bearer ${token}` }, 'token for another customer')), 403);
  assert.equal(statusOf(await same('/v1/customers/nobody', key, 'unknown customer')), 404);
  assert.equal(statusOf(await same('/v1/customers/a%01b', key, 'control character in the id')), 400);
  assert.equal(statusOf(await same('/v1/customers/bert/triggers?type=NOPE', key, 'bad trigger type')), 400);
  // The customer limit is 4 per minute: a fresh token's fifth request in the window is refused.
  const carl = { authorization: `Bearer ${signCustomerToken(SECRET, 'carl', 3600, now)}` };
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push(statusOf(await same('/v1/customers/carl', carl, `customer token, request ${i + 1}`)));
  assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429]);
  assert.match(await same('/v1/customers/carl', carl, 'still limited'), /\r\nretry-after: 60\r\n/);
  now += 61_000;
  assert.equal(statusOf(await same('/v1/customers/carl', carl, 'a new window')), 200);
});

test('a standby copy, no stream time yet and HEAD answer the same', async () => {
  try {
    mode = 'standby';
    for (const round of [1, 2]) {
      const wire = await same('/v1/customers/anna', key, `standby, round ${round}`);
      assert.match(wire, /\r\nx-kairos-source: standby\r\n/);
      assert.match(wire, /"freshness":\{"servedBy":"self:1","source":"standby","partition":3,"streamTime":\d+,"lagRecords":7\}\}$/);
    }
    mode = 'no-stream-time';
    for (const round of [1, 2]) assert.match(await same('/v1/customers/anna', key, `no stream time, round ${round}`), /"streamTime":null\}\}$/);
    mode = 'active';
    const wire = await same('/v1/customers/anna', key, 'active again');
    assert.match(wire, /"freshness":\{"servedBy":"self:1","source":"active","partition":3,"streamTime":\d+\}\}$/);
    const head = await same('/v1/customers/anna', key, 'HEAD', 'HEAD');
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n[^]*\r\ncontent-length: \d+\r\n[^]*\r\n\r\n$/);
  } finally {
    mode = 'active';
  }
});

test('a cached view is answered before fastify, with the same bytes; every other request reaches fastify, counted once', async () => {
  mode = 'active';
  const viaFastify = async (path: string, headers: Record<string, string>, what: string, method = 'GET'): Promise<string> => {
    const before = fastifySaw;
    const wire = await same(path, headers, what, method);
    assert.equal(fastifySaw - before, 1, `${what}: routed by fastify`);
    return wire;
  };
  const atOnce = async (path: string, headers: Record<string, string>, what: string): Promise<string> => {
    const before = fastifySaw;
    const hits = views.hits;
    const wire = await same(path, headers, what);
    assert.equal(fastifySaw - before, 0, `${what}: answered before fastify`);
    assert.equal(views.hits - hits, 1, `${what}: a view-cache hit`);
    return wire;
  };
  // A write moves dora's view: the first answer is built through fastify (a miss), the next ones come from the
  // request listener, with the new state, per scope.
  await driver.pipe('crm.customers.v1', 'dora', profile('dora'));
  const add: BasketEvent = { eventId: 'b20', customerId: 'dora', occurredAt: T0 + 33 * 60_000, type: 'ITEM_ADDED', sku: 'scarf-1', productId: 'scarf', quantity: 1, unitPrice: { amount: 1900, currency: 'EUR' } };
  await driver.pipe('shop.basket.v1', 'dora', add);
  assert.match(await viaFastify('/v1/customers/dora', key, 'dora, first read'), /scarf-1/);
  assert.match(await atOnce('/v1/customers/dora', key, 'dora, kept'), /scarf-1/);
  await viaFastify('/v1/customers/dora', piiKey, 'dora, PII key, first read');
  assert.match(await atOnce('/v1/customers/dora', piiKey, 'dora, PII key, kept'), /"email":"dora@example.com"/);
  assert.doesNotMatch(await atOnce('/v1/customers/dora', key, 'dora, read key again'), /example\.com/);
  const remove: BasketEvent = { ...add, eventId: 'b21', occurredAt: T0 + 34 * 60_000, type: 'ITEM_REMOVED' };
  await driver.pipe('shop.basket.v1', 'dora', remove);
  assert.doesNotMatch(await viaFastify('/v1/customers/dora', key, 'dora after a removal: built again'), /scarf-1/);
  assert.doesNotMatch(await atOnce('/v1/customers/dora', key, 'dora after a removal, kept'), /scarf-1/);
  // A request forwarded here is taken too.
  await atOnce('/v1/customers/dora', { ...key, 'x-kairos-forwarded-by': 'other:2' }, 'forwarded here');
  const token = { authorization: `Bearer ${signCustomerToken(SECRET, 'dora', 3600, now)}` };
  // What the listener leaves to fastify: a query string, an id to decode, HEAD, bad or missing credentials, a
  // token for another customer, an unknown customer, another route.
  await viaFastify('/v1/customers/dora?x=1', key, 'a query string');
  await viaFastify('/v1/customers/d%6Fra', key, 'a percent-encoded id');
  await viaFastify('/v1/customers/dora', key, 'HEAD', 'HEAD');
  assert.equal(statusOf(await viaFastify('/v1/customers/dora', {}, 'no credentials')), 401);
  assert.equal(statusOf(await viaFastify('/v1/customers/dora', { 'x-api-key': 'not-a-key-0123456789' }, 'unknown key')), 401);
  assert.equal(statusOf(await viaFastify('/v1/customers/anna', token, 'a token for another customer')), 403);
  assert.equal(statusOf(await viaFastify('/v1/customers/nobody', key, 'unknown customer')), 404);
  assert.equal(statusOf(await viaFastify(`/v1/customers/${'x'.repeat(129)}`, key, 'an id over 128 characters')), 400);
  await viaFastify('/v1/customers/dora/triggers', key, 'the triggers route');
  // A customer token reading itself, in a new window of its limit (4 a minute): taken while under it; over it,
  // refused by fastify with the count the listener made (one per request: the same headers as the reference app,
  // which counts in admit only).
  now += 61_000;
  const before = fastifySaw;
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push(statusOf(await same('/v1/customers/dora', token, `customer token, request ${i + 1}`)));
  assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429]);
  assert.equal(fastifySaw - before, 2, 'the two refusals routed by fastify');
});

test('both count the same requests in the latency histogram and the forwarded counter', async () => {
  const counts = async (registry: Registry): Promise<string[]> =>
    (await registry.metrics())
      .split('\n')
      .filter((l) => /^kairos_api_request_duration_seconds_count|^kairos_api_forwarded_total/.test(l))
      .sort();
  const direct = await counts(apps.direct?.registry as Registry);
  assert.deepEqual(direct, await counts(apps.reference?.registry as Registry));
  // Two HEAD requests: the standby test's and the listener test's.
  assert.ok(direct.some((l) => l.startsWith('kairos_api_request_duration_seconds_count{method="GET",route="/v1/customers/:id",status_code="200"}')), direct.join('\n'));
  assert.ok(direct.some((l) => l.startsWith('kairos_api_request_duration_seconds_count{method="HEAD",route="/v1/customers/:id",status_code="200"} 2')), direct.join('\n'));
  assert.ok(direct.some((l) => l === 'kairos_api_forwarded_total{result="standby"} 2'), direct.join('\n'));
});
