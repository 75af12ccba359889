/**
 * Owner routing across two real instances (`startInstance`: Kafka runner + HTTP server with the query API)
 * in one consumer group on librdkafka's mock cluster: every customer is answered by any instance, from the
 * instance whose task owns the customer's partition (forwarded once when that is the other one).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import type { BasketEvent } from '../../schemas/contract.js';
import { signCustomerToken } from '../../src/api/auth.js';
import { startInstance, type Instance } from '../../src/app/instance.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { loadRuntimeConfig } from '../../src/config/runtime.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { partitionOf } from '../../src/kafka/partitioner.js';
import { tempDir, until, fastGroupEnv } from '../helpers.js';
import { produce, silent, testKafka } from '../support/kafka.js';

const KEY = 'routing-test-key-0123456789';
const SECRET = 'routing-test-secret-of-32-characters-at-least';
const CUSTOMERS = Array.from({ length: 24 }, (_, i) => `cust-${i}`);
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);

let cluster: MockCluster;
const instances: Instance[] = [];
const dirs: { remove: () => void }[] = [];

before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  for (const i of instances) await i.stop().catch(() => undefined);
  await cluster.stop();
  for (const d of dirs) d.remove();
});


async function start(): Promise<Instance> {
  const state = tempDir();
  dirs.push(state);
  const config = loadRuntimeConfig({
    ...fastGroupEnv(cluster.brokers.join(',')),
    KAIROS_APPLICATION_ID: 'routing',
    KAIROS_STATE_DIR: state.dir,
    KAIROS_HTTP_PORT: '0',
    KAIROS_API_KEYS: `test:${KEY}:read`,
    KAIROS_API_TOKEN_SECRET: SECRET,
    KAIROS_LOG_LEVEL: 'warn',
  });
  const i = await startInstance(config, silent, resolveCampaigns({ guards: { enabled: false } }));
  instances.push(i);
  return i;
}

async function get(i: Instance, path: string, credential = KEY): Promise<{ status: number; body: Record<string, unknown>; servedBy: string | null }> {
  const res = await fetch(`http://${i.address}${path}`, { headers: { authorization: `Bearer ${credential}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, servedBy: res.headers.get('x-kairos-served-by') };
}

test('two instances: any instance answers for any customer, from the owner of its partition (forwarded once), with the same state', async () => {
  const kafka = testKafka(cluster.brokers);
  const a = await start();
  const b = await start();
  const events: BasketEvent[] = CUSTOMERS.map((c, n) => ({ eventId: `e${n}`, customerId: c, occurredAt: T0 + n, type: 'ITEM_ADDED', sku: `sku-${n}`, quantity: 1 }));
  await produce(kafka, 'shop.basket.v1', events.map((e) => ({ key: e.customerId, value: JSON.stringify(e) })));
  // Both instances hold tasks, both know the same routing, and every customer is visible at its owner.
  await until('both instances running tasks with the same routing', () => {
    const ra = a.runner.routing;
    const rb = b.runner.routing;
    return (
      a.runner.ready &&
      b.runner.ready &&
      a.runner.assignedPartitions.length > 0 &&
      b.runner.assignedPartitions.length > 0 &&
      ra !== undefined &&
      rb !== undefined &&
      ra.version === rb.version &&
      [...ra.tasks.values()].every((addr) => addr === a.address || addr === b.address) &&
      new Set(ra.tasks.values()).size === 2
    );
  }, 90_000);
  await until('every customer readable', async () => {
    for (const c of CUSTOMERS) if ((await get(a, `/v1/customers/${c}`)).status !== 200) return false;
    return true;
  }, 90_000);
  const routing = a.runner.routing;
  assert.ok(routing);
  let forwardedFromA = 0;
  for (const [n, c] of CUSTOMERS.entries()) {
    const owner = routing.tasks.get(partitionOf(c, 4));
    // Repartitioned records (a basket add's price-drop subscription) reach the sku's task a commit later and
    // move its stream time, so two reads can straddle one: read again until they agree.
    let viaA = await get(a, `/v1/customers/${c}`);
    let viaB = await get(b, `/v1/customers/${c}`);
    for (let i = 0; i < 50 && !isDeepStrictEqual(viaA.body, viaB.body); i++) {
      await new Promise((r) => setTimeout(r, 200));
      viaA = await get(a, `/v1/customers/${c}`);
      viaB = await get(b, `/v1/customers/${c}`);
    }
    assert.equal(viaA.status, 200);
    assert.equal(viaB.status, 200);
    assert.equal(viaA.servedBy, owner, `${c} is answered by its owner ${String(owner)} via a`);
    assert.equal(viaB.servedBy, owner, `${c} is answered by its owner ${String(owner)} via b`);
    assert.deepEqual(viaA.body, viaB.body, 'the same answer whichever instance was asked');
    assert.deepEqual((viaA.body.basket as { items: { sku: string }[] }).items.map((i) => i.sku), [`sku-${n}`]);
    assert.equal((viaA.body.freshness as { source: string }).source, 'active');
    if (owner !== a.address) forwardedFromA++;
  }
  assert.ok(forwardedFromA > 0 && forwardedFromA < CUSTOMERS.length, 'some customers live on each instance');
  // A customer token is checked again by the owner after the forward.
  const remote = CUSTOMERS.find((c) => routing.tasks.get(partitionOf(c, 4)) === b.address) as string;
  const own = await get(a, `/v1/customers/${remote}`, signCustomerToken(SECRET, remote, 60));
  assert.equal(own.status, 200);
  assert.equal(own.servedBy, b.address);
  assert.equal((await get(a, `/v1/customers/${remote}`, signCustomerToken(SECRET, 'someone-else', 60))).status, 403);
  // Unknown customers are 404 wherever they would live.
  for (const c of ['ghost-1', 'ghost-2', 'ghost-3', 'ghost-4']) assert.equal((await get(a, `/v1/customers/${c}`)).status, 404);
  const metrics = await a.registry.metrics();
  assert.match(metrics, /kairos_api_forwarded_total\{result="ok"\} [1-9]/);
});

test("the runner's reader at hand: one reader while the task's stream time stands still, and a kept answer replaced once the customer's state changes", async () => {
  // The instances of the test above, still running.
  const [a] = instances;
  assert.ok(a);
  const routing = a.runner.routing;
  assert.ok(routing);
  const c = CUSTOMERS.find((x) => routing.tasks.get(partitionOf(x, 4)) === a.address) as string;
  const p = partitionOf(c, 4);
  await until('the task at hand', () => a.runner.readerNow(p) !== undefined, 30_000);
  const r = a.runner.readerNow(p);
  assert.equal(r?.source, 'active');
  assert.equal(r?.partition, p);
  // The same object while nothing moves (a late repartitioned record may move stream time: then a new one).
  await until('one reader for one stream time', async () => {
    const x = a.runner.readerNow(p);
    return x !== undefined && x === a.runner.readerNow(p) && x === (await a.runner.reader(p)) && x.streamTime === a.runner.readerNow(p)?.streamTime;
  }, 30_000);
  // Answered twice (the second from the view cache, in the request listener), with the bytes fastify's route gives
  // the same request (a query string takes it through fastify).
  const text = async (path: string): Promise<string> => (await fetch(`http://${a.address}${path}`, { headers: { authorization: `Bearer ${KEY}` } })).text();
  await until('a kept answer equal to the one through fastify', async () => {
    const first = await text(`/v1/customers/${c}`);
    return first === (await text(`/v1/customers/${c}`)) && first === (await text(`/v1/customers/${c}?through=fastify`));
  }, 30_000);
  const kept = await text(`/v1/customers/${c}`);
  const kafka = testKafka(cluster.brokers);
  const more: BasketEvent = { eventId: 'e-more', customerId: c, occurredAt: T0 + 1000, type: 'ITEM_ADDED', sku: 'sku-more', quantity: 2 };
  await produce(kafka, 'shop.basket.v1', [{ key: c, value: JSON.stringify(more) }]);
  await until('the new item answered', async () => (await text(`/v1/customers/${c}`)).includes('"sku-more"'), 30_000);
  const after = JSON.parse(await text(`/v1/customers/${c}`)) as { basket: { items: { sku: string }[] }; freshness: { streamTime: number } };
  assert.deepEqual(after.basket.items.map((i) => i.sku).sort(), [`sku-${CUSTOMERS.indexOf(c)}`, 'sku-more'].sort());
  assert.notEqual(after.freshness.streamTime, (JSON.parse(kept) as { freshness: { streamTime: number } }).freshness.streamTime);
  assert.notEqual(a.runner.readerNow(p), r, 'a new reader for the new stream time');
});
