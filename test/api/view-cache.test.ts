/**
 * The customer view cache (src/api/view-cache.ts) answers byte for byte what the API answers without it: after
 * topology writes (processors change stored objects in place and put them back), an object changed in place and
 * put back directly, a timer registered and fired, an entry expired by stream time, eviction from the state cache,
 * a restart of the task, and for PII and non-PII callers alternately. The reference app's reader has no versions,
 * so it builds every answer.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import type { BasketEvent, CustomerProfile, WishlistEvent } from '../../schemas/contract.js';
import { signCustomerToken } from '../../src/api/auth.js';
import { PII_KEY, READ_KEY, SECRET, testAuth, testProfile } from '../support/api-auth.js';
import { createApiApp, registerApi, type QueryBackend } from '../../src/api/server.js';
import { CustomerViewCache } from '../../src/api/view-cache.js';
import { CUSTOMER_STORES } from '../../src/api/views.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import type { Topology } from '../../src/engine/api/index.js';
import { stateReader, type StateReader } from '../../src/engine/state/reader.js';
import { TaskState } from '../../src/engine/state/task-state.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { basketsStore, type BasketState } from '../../topologies/basket-abandonment/index.js';
import { profilesStore } from '../../topologies/common/guards.js';
import { tempDir } from '../helpers.js';

const MIN = 60_000;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const auth = testAuth();

const profile = testProfile;

/**
 * The same API three times over one state: `cached` with a view cache (hits checked on the entries kept,
 * `streamTimeIfUnchanged`), `byVersions` with a view cache whose reader compares versions only, `plain` with a
 * reader that has no versions.
 */
async function pairOver(topology: Topology, reader: () => StateReader): Promise<{ cached: FastifyInstance; byVersions: FastifyInstance; plain: FastifyInstance; views: CustomerViewCache }> {
  const views = new CustomerViewCache();
  const backend = (r: () => StateReader): QueryBackend => ({ topology, partitionOf: () => 0, owner: () => null, reader: () => Promise.resolve(r()) });
  const withoutVersions = (): StateReader => {
    const { versions: _unused, streamTimeIfUnchanged: _unused2, ...rest } = reader();
    return rest;
  };
  const versionsOnly = (): StateReader => {
    const { streamTimeIfUnchanged: _unused, ...rest } = reader();
    return rest;
  };
  const opts = { auth, self: () => 'self:1', rateLimitService: 1e9, rateLimitCustomer: 1e9, forwardTimeoutMs: 1000 };
  const cached = createApiApp();
  await registerApi(cached, { ...opts, backend: backend(reader), viewCache: views }, new Registry());
  const plain = createApiApp();
  await registerApi(plain, { ...opts, backend: backend(withoutVersions) }, new Registry());
  const byVersions = createApiApp();
  await registerApi(byVersions, { ...opts, backend: backend(versionsOnly), viewCache: new CustomerViewCache() }, new Registry());
  return { cached, byVersions, plain, views };
}

/** Asks both apps (the cached one twice: a miss may fill, the second may hit) and compares status, headers and bytes. */
async function same(apps: { cached: FastifyInstance; byVersions: FastifyInstance; plain: FastifyInstance }, id: string, credential: { header: string; value: string }, what: string): Promise<string> {
  const ask = (app: FastifyInstance) => app.inject({ method: 'GET', url: `/v1/customers/${encodeURIComponent(id)}`, headers: { [credential.header]: credential.value } });
  const want = await ask(apps.plain);
  for (const [round, app] of [[1, apps.cached], [2, apps.cached], [3, apps.byVersions], [4, apps.byVersions]] as const) {
    const got = await ask(app);
    assert.equal(got.statusCode, want.statusCode, `${what}: status (round ${round})`);
    assert.equal(got.body, want.body, `${what}: body (round ${round})`);
    for (const h of ['content-type', 'x-kairos-served-by', 'x-kairos-source', 'content-length']) assert.equal(got.headers[h], want.headers[h], `${what}: ${h}`);
  }
  return want.body;
}

const service = { header: 'x-api-key', value: READ_KEY };
const pii = { header: 'x-api-key', value: PII_KEY };

let driver: TopologyTestDriver;
let apps: Awaited<ReturnType<typeof pairOver>>;

before(async () => {
  const cfg = resolveCampaigns({ guards: { quietHours: null, cap: null }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '30m' } } } });
  const topology = buildTopology(cfg, 'api');
  driver = await TopologyTestDriver.create(topology);
  apps = await pairOver(topology, () => stateReader(driver.task.state, { source: 'active', partition: 0, timers: (k) => driver.task.timerInfosFor(k) }));
});

after(async () => {
  await apps.cached.close();
  await apps.plain.close();
  await apps.byVersions.close();
  await driver.close();
});

const add = (c: string, i: number, at: number): BasketEvent => ({ eventId: `b-${c}-${i}`, customerId: c, occurredAt: at, type: 'ITEM_ADDED', sku: `sku-${i}`, productId: `p-${i}`, quantity: 1, unitPrice: { amount: 1000 + i, currency: 'EUR' } });

test('cached answers equal built ones after topology writes, timers, in-place changes, expiry and a restart, per scope', async () => {
  const all = async (what: string): Promise<void> => {
    for (const c of ['anna', 'bob', 'nobody']) {
      await same(apps, c, service, `${what}, ${c}, non-PII`);
      await same(apps, c, pii, `${what}, ${c}, PII`);
      await same(apps, c, { header: 'authorization', value: `Bearer ${signCustomerToken(SECRET, c, 600)}` }, `${what}, ${c}, own token`);
    }
  };
  await all('empty');
  await driver.pipe('crm.customers.v1', 'anna', profile('anna', T0), { timestamp: T0 });
  await driver.pipe('crm.customers.v1', 'bob', profile('bob', T0), { timestamp: T0 });
  await all('profiles');
  const hitsBefore = apps.views.hits;
  await all('profiles again');
  assert.ok(apps.views.hits > hitsBefore, 'unchanged customers are served from the cache');
  // PII first, then non-PII, for a customer whose non-PII variant is not cached yet: never the PII bytes.
  await driver.pipe('crm.customers.v1', 'carl', profile('carl', T0), { timestamp: T0 });
  const carlPii = await same(apps, 'carl', pii, 'carl PII first');
  const carl = await same(apps, 'carl', service, 'carl non-PII after');
  assert.match(carlPii, /carl@example\.com/);
  assert.doesNotMatch(carl, /example\.com|fcm-carl/);

  // A basket item: the basket store, and an abandonment timer registered for the customer.
  await driver.pipe('shop.basket.v1', 'anna', add('anna', 1, T0 + MIN));
  assert.ok(driver.task.timerInfosFor('anna').length > 0, 'a timer is pending');
  await all('basket item and its timer');
  // More items: the basket processor changes the stored basket and puts it back.
  await driver.pipe('shop.basket.v1', 'anna', add('anna', 2, T0 + 2 * MIN));
  await all('second item');
  // Timers registered, moved and cancelled with no write to the customer's stores (a processor may do so).
  const [pending] = driver.task.timerInfosFor('anna');
  assert.ok(pending);
  driver.task.registerTimer(pending.processor, { name: 'extra', key: 'anna', time: T0 + 20 * MIN, domain: 'stream-time' });
  await all('a timer registered');
  driver.task.registerTimer(pending.processor, { name: 'extra', key: 'anna', time: T0 + 25 * MIN, domain: 'stream-time' });
  await all('a timer moved');
  driver.task.cancelTimer(pending.processor, 'extra', 'anna');
  await all('a timer cancelled');
  const wish: WishlistEvent = { eventId: 'w1', customerId: 'bob', occurredAt: T0 + 3 * MIN, type: 'ITEM_ADDED', productId: 'p-9', sku: 'sku-9' };
  await driver.pipe('shop.wishlist.v1', 'bob', wish);
  await all('wish');

  // An object changed in place and put back, as a processor does, without a new object.
  const state = driver.task.state;
  const stored = (await state.get(profilesStore.name, 'anna')) as CustomerProfile | undefined;
  assert.ok(stored);
  await all('before the in-place change');
  stored.segments.push('changed-in-place');
  state.put(profilesStore.name, 'anna', stored);
  const body = await same(apps, 'anna', service, 'in-place change');
  assert.match(body, /changed-in-place/);

  // The abandonment timer fires (history written, timer gone), then stream time passes the stores' TTLs.
  await driver.advanceStreamTime(T0 + 40 * MIN);
  await all('timer fired');
  for (const days of [1, 8, 31, 100]) {
    await driver.advanceStreamTime(T0 + days * 24 * 60 * MIN);
    await all(`${days} days later`);
  }
  // A restart: a new TaskState over the same RocksDB (nothing cached, versions unknown until read).
  await driver.restart();
  await all('after a restart');
  await all('after a restart, again');
  assert.ok(apps.views.hits > 0 && apps.views.misses > 0);
});

test('cached answers equal built ones while the state cache evicts the customers\' entries', async () => {
  const t = tempDir();
  try {
    const stores = [...CUSTOMER_STORES];
    const s0 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores });
    for (let i = 0; i < 30; i++) s0.put(profilesStore.name, `c${i}`, profile(`c${i}`, T0 + i));
    await s0.commit();
    await s0.close();
    const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores, cacheMaxEntries: 8 });
    const cfg = resolveCampaigns({ guards: { quietHours: null, cap: null } });
    const local = await pairOver(buildTopology(cfg, 'api'), () => stateReader(s, { source: 'standby', partition: 0, lagRecords: 3 }));
    try {
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 30; i += round + 1) {
          await same(local, `c${i}`, round % 2 === 0 ? service : pii, `round ${round}, c${i}`);
          // Writes while entries come and go: a put of the object read, changed in place.
          if (i % 7 === 0) {
            const p = (await s.get(profilesStore.name, `c${i}`)) as CustomerProfile;
            p.updatedAt += 1;
            s.put(profilesStore.name, `c${i}`, p);
            await same(local, `c${i}`, service, `round ${round}, c${i} after a write`);
            if (i % 2 === 0) await s.commit();
          }
        }
      }
      assert.ok(s.stats.evicted > 0, `entries were evicted: ${JSON.stringify(s.stats)}`);
      assert.ok(local.views.hits > 0);
    } finally {
      await local.cached.close();
      await local.plain.close();
      await local.byVersions.close();
      await s.close();
    }
  } finally {
    t.remove();
  }
});

test('an entry with a TTL that expires by stream time alone (no write) is not served from the cache', async () => {
  const t = tempDir();
  try {
    const stores = CUSTOMER_STORES.map((spec) => (spec.name === basketsStore.name ? { ...spec, ttlMs: 1000 } : spec));
    const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores });
    s.streamTime = T0;
    s.put(profilesStore.name, 'dora', profile('dora', T0));
    const basket: BasketState = { items: [{ sku: 's', productId: 'p', quantity: 1, unitPrice: { amount: 5, currency: 'EUR' }, addedAt: T0 }], lastActivityAt: T0, lastActivityType: 'ITEM_ADDED', lastEvent: { topic: 'shop.basket.v1', partition: 0, offset: '0', eventId: 'e1' } as BasketState['lastEvent'] };
    s.put(basketsStore.name, 'dora', basket, T0);
    await s.commit();
    const cfg = resolveCampaigns({ guards: { quietHours: null, cap: null } });
    const local = await pairOver(buildTopology(cfg, 'api'), () => stateReader(s, { source: 'active', partition: 0 }));
    try {
      const live = await same(local, 'dora', service, 'basket live');
      assert.match(live, /"basket":\{"items"/);
      s.streamTime = T0 + 999;
      assert.match(await same(local, 'dora', service, 'basket live, 1 ms before expiry'), /"basket":\{"items"/);
      const hits = local.views.hits;
      s.streamTime = T0 + 1000;
      assert.match(await same(local, 'dora', service, 'basket expired'), /"basket":null/);
      assert.ok(local.views.hits > hits, 'the expired answer is cached in turn');
    } finally {
      await local.cached.close();
      await local.plain.close();
      await local.byVersions.close();
      await s.close();
    }
  } finally {
    t.remove();
  }
});

test('eviction drops views not served since they were kept before those served again (second chance)', async () => {
  const t = tempDir();
  try {
    const stores = [...CUSTOMER_STORES];
    const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores });
    for (const c of ['a', 'b', 'c', 'd', 'e']) s.put(profilesStore.name, c, profile(c, T0));
    await s.commit();
    const r = stateReader(s, { source: 'active', partition: 0, timers: () => [] });
    const views = new CustomerViewCache({ maxEntries: 3 });
    const read = new Set<'read'>(['read']);
    for (const c of ['a', 'b', 'c']) assert.ok((await views.build(r, read, c)) !== undefined);
    // A full walk: each kept view is passed over once (unmarked), then the oldest unmarked goes.
    assert.ok((await views.build(r, read, 'd')) !== undefined);
    assert.equal(views.size, 3);
    assert.equal(views.cached(r, read, 'a'), undefined, 'a, the oldest, dropped');
    // b is served again (marked); c and d are not: the next view drops c, the oldest unmarked, not b.
    assert.ok(views.cached(r, read, 'b') !== undefined);
    assert.ok((await views.build(r, read, 'e')) !== undefined);
    assert.equal(views.size, 3);
    assert.ok(views.cached(r, read, 'b') !== undefined, 'b served since: kept');
    assert.equal(views.cached(r, read, 'c'), undefined, 'c dropped');
    assert.ok(views.cached(r, read, 'd') !== undefined && views.cached(r, read, 'e') !== undefined);
    await s.close();
  } finally {
    t.remove();
  }
});
