/**
 * The query API's per-route rate limits (src/api/rate-limit.ts, counted in the route handler) and the latency
 * histogram without a response hook on /v1: the answers and headers @fastify/rate-limit gave, every status observed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import type { AuthConfig } from '../../src/api/auth.js';
import { formatDuration, RouteRateLimiter } from '../../src/api/rate-limit.js';
import { createApiApp, registerApi, type QueryBackend } from '../../src/api/server.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import type { StateReader } from '../../src/engine/state/reader.js';

test('a fixed window per caller from its first request: remaining, reset seconds, exceeded, a new window after it', () => {
  const l = new RouteRateLimiter(60_000);
  const t0 = 1_000_000;
  assert.deepEqual(l.hit('a', 2, t0), { max: 2, remaining: 1, resetSeconds: 60, exceeded: false });
  assert.deepEqual(l.hit('a', 2, t0 + 1500), { max: 2, remaining: 0, resetSeconds: 59, exceeded: false });
  assert.deepEqual(l.hit('a', 2, t0 + 30_000), { max: 2, remaining: 0, resetSeconds: 30, exceeded: true });
  assert.deepEqual(l.hit('b', 2, t0 + 30_000), { max: 2, remaining: 1, resetSeconds: 60, exceeded: false }, 'per caller');
  assert.deepEqual(l.hit('a', 2, t0 + 60_000), { max: 2, remaining: 1, resetSeconds: 60, exceeded: false }, 'the window ended');
  // The limit that applies is the caller's (an API key's, or a customer's), given per request.
  assert.equal(l.hit('a', 100, t0 + 60_001).remaining, 98);
});

test('at most maxCallers remembered: the least recently seen is forgotten first', () => {
  const l = new RouteRateLimiter(60_000, 2);
  l.hit('a', 1, 0);
  l.hit('b', 1, 0);
  assert.equal(l.hit('a', 1, 1).exceeded, true, 'a seen again: now the most recent');
  l.hit('c', 1, 2); // forgets b
  assert.equal(l.hit('a', 1, 3).exceeded, true, 'a still remembered');
  assert.equal(l.hit('b', 1, 4).exceeded, false, 'b was forgotten: a new window');
});

test('durations worded as @lukeed/ms words them (long)', () => {
  assert.equal(formatDuration(60_000), '1 minute');
  assert.equal(formatDuration(1000), '1 second');
  assert.equal(formatDuration(43_000), '43 seconds');
  assert.equal(formatDuration(90_000), '2 minutes');
  assert.equal(formatDuration(500), '500 ms');
  assert.equal(formatDuration(3_600_000), '1 hour');
  assert.equal(formatDuration(2 * 86_400_000), '2 days');
});

const KEY = 'service-key-0123456789';
const auth: AuthConfig = { mode: 'required', keys: [{ name: 'svc', key: KEY, scopes: new Set(['read']) }], tokenSecret: undefined };
/** A task that knows customer "anna" only (a profile), enough for the routes' answers. */
const reader: StateReader = {
  source: 'active',
  partition: 0,
  streamTime: 5,
  lagRecords: undefined,
  get: <V>(spec: { name: string }, key: string) =>
    Promise.resolve((spec.name === 'guards.profiles' && key === 'anna' ? { customerId: 'anna', updatedAt: 1, consents: { push: true, email: true, onsite: true }, pushTokens: [], segments: [], attributes: {} } : undefined) as V | undefined),
  scan: () => Promise.resolve([]),
  timers: () => [],
};

async function api(rateLimitService: number, rateLimitCustomer: number): Promise<{ app: ReturnType<typeof createApiApp>; registry: Registry }> {
  const topology = buildTopology(resolveCampaigns({}, 'test'), 'rl');
  const backend: QueryBackend = { topology, partitionOf: () => 0, owner: () => 'me:1', reader: () => Promise.resolve(reader) };
  const registry = new Registry();
  const app = createApiApp();
  await registerApi(app, { backend, auth, self: () => 'me:1', rateLimitService, rateLimitCustomer, forwardTimeoutMs: 1000 }, registry);
  app.get('/health/live', () => ({ status: 'live' }));
  return { app, registry };
}

test('over HTTP: headers on every counted answer, per route, per caller; 429 with retry-after in the error shape; bad credentials limited per IP', async () => {
  const { app, registry } = await api(2, 1);
  try {
    const get = (url: string, headers: Record<string, string> = { 'x-api-key': KEY }) => app.inject({ method: 'GET', url, headers });
    const ok = await get('/v1/customers/anna');
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.headers['x-ratelimit-limit'], '2');
    assert.equal(ok.headers['x-ratelimit-remaining'], '1');
    assert.equal(ok.headers['x-ratelimit-reset'], '60');
    assert.equal((await get('/v1/customers/nobody')).statusCode, 404, 'a 404 counts too');
    const over = await get('/v1/customers/anna');
    assert.equal(over.statusCode, 429);
    assert.equal(over.headers['retry-after'], '60');
    assert.equal(over.headers['x-ratelimit-remaining'], '0');
    assert.deepEqual(over.json(), { error: { code: 'KAIROS_ERR_API_RATE_LIMITED', message: 'rate limit of 2 requests per 1 minute exceeded' }, statusCode: 429 });
    assert.equal((await get('/v1/customers/anna/triggers')).statusCode, 200, 'another route counts apart');
    assert.equal((await get('/v1/customers/anna', {})).statusCode, 401, 'no credentials: limited per IP, at the customer limit');
    const anon = await get('/v1/customers/anna', { 'x-api-key': 'wrong-key-0123456789' });
    assert.equal(anon.statusCode, 429, 'bad credentials share the IP window');
    assert.equal(anon.headers['x-ratelimit-limit'], '1');
    assert.equal((await get('/v1/customers/anna?x=1')).statusCode, 429);
    // A request refused by validation is answered before it is counted (as with the preHandler hook before).
    const bad = await get(`/v1/customers/${'x'.repeat(129)}`);
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.headers['x-ratelimit-limit'], undefined);
    await get('/health/live');
    await get('/v1/nothing');
    const counts = (await registry.metrics())
      .split('\n')
      .filter((l) => l.startsWith('kairos_api_request_duration_seconds_count'))
      .map((l) => `${/route="([^"]*)"/.exec(l)?.[1]} ${/status_code="(\d+)"/.exec(l)?.[1]} ${l.split(' ').pop()}`)
      .sort();
    assert.deepEqual(counts, [
      '/health/live 200 1',
      '/v1/customers/:id 200 1',
      '/v1/customers/:id 400 1',
      '/v1/customers/:id 401 1',
      '/v1/customers/:id 404 1',
      '/v1/customers/:id 429 3',
      '/v1/customers/:id/triggers 200 1',
      'unmatched 404 1',
    ]);
  } finally {
    await app.close();
  }
});
