/**
 * GET /v1/customers/:id/placements over real HTTP, reading the onsite placements the dispatcher writes to a real
 * redis-server (started on a free port, stopped by PID): newest first, expired ones gone, customer tokens for
 * their own customer only, and 503 with Retry-After while Redis is down.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { signCustomerToken } from '../../src/api/auth.js';
import { createApiApp, registerApi } from '../../src/api/server.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { readPlacements, writePlacement, type Placement } from '../../src/dispatch/onsite-redis.js';
import { startRedis, type RedisServer } from '../support/redis.js';

const KEY = 'placements-key-0123456789';
const SECRET = 'placements-secret-of-at-least-32-characters';
let server: RedisServer;
let redis: Redis;
let app: FastifyInstance | undefined;
let base = '';

before(async () => {
  server = await startRedis();
  redis = new Redis(server.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy: () => 200, lazyConnect: true });
  redis.on('error', () => undefined);
  await redis.connect();
  const topology = buildTopology(resolveCampaigns({}), 'p');
  app = createApiApp();
  await registerApi(
    app,
    {
      backend: { topology, partitionOf: () => 0, owner: () => undefined, reader: () => Promise.resolve(undefined) },
      auth: { mode: 'required', keys: [{ name: 'shop', key: KEY, scopes: new Set(['read']) }], tokenSecret: SECRET },
      self: () => 'self:1',
      rateLimitService: 10_000,
      rateLimitCustomer: 10_000,
      forwardTimeoutMs: 1000,
      placements: (id) => readPlacements(redis, id),
    },
    new Registry(),
  );
  base = await app.listen({ port: 0, host: '127.0.0.1' });
});

after(async () => {
  await app?.close();
  redis?.disconnect();
  await server?.stop();
});

const placement = (triggerId: string, createdAt: number, expiresAt: number): Placement => ({
  placementId: `pl-${triggerId}`,
  triggerId,
  type: 'BASKET_PRICE_DROP',
  campaignId: 'pd',
  variant: 'A',
  title: 'Price drop',
  body: 'The jacket in your basket is 20 % cheaper',
  link: '/basket',
  language: 'en',
  payload: { sku: 'jacket-m' },
  createdAt,
  expiresAt,
});

async function get(path: string, credential: string): Promise<{ status: number; body: Record<string, unknown>; retryAfter: string | null }> {
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${credential}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, retryAfter: res.headers.get('retry-after') };
}

test('placements from Redis (real redis-server): newest first, expired ones dropped; own customer only; 503 while Redis is down', async () => {
  const now = Date.now();
  await writePlacement(redis, 'anna', placement('a'.repeat(32), now - 2000, now + 60_000), now);
  await writePlacement(redis, 'anna', placement('b'.repeat(32), now - 1000, now + 60_000), now);
  await writePlacement(redis, 'anna', placement('c'.repeat(32), now - 3000, now + 1), now);
  await new Promise((r) => setTimeout(r, 5));
  const r = await get('/v1/customers/anna/placements', KEY);
  assert.equal(r.status, 200);
  assert.deepEqual((r.body.placements as Placement[]).map((p) => p.triggerId), ['b'.repeat(32), 'a'.repeat(32)]);
  const own = await get('/v1/customers/anna/placements', signCustomerToken(SECRET, 'anna', 60));
  assert.equal(own.status, 200);
  assert.equal((await get('/v1/customers/bob/placements', signCustomerToken(SECRET, 'anna', 60))).status, 403);
  assert.deepEqual((await get('/v1/customers/nobody/placements', KEY)).body.placements, [], 'no placements is an empty list');
  await server.kill();
  const down = await get('/v1/customers/anna/placements', KEY);
  assert.equal(down.status, 503);
  assert.equal(down.retryAfter, '1');
});
