import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import type { BasketEvent } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { KafkaRunner } from '../../src/kafka/runner.js';
import { JsonSerde } from '../../src/kafka/serde.js';
import { standbyPartitions } from '../../src/kafka/standby.js';
import { basketsStore } from '../../topologies/basket-abandonment/index.js';
import { sleep, tempDir, until } from '../helpers.js';
import { produce, silent, testKafka } from '../support/kafka.js';

let cluster: MockCluster;
before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  await cluster.stop();
});



async function metric(registry: Registry, name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values ?? []).reduce((a, v) => a + v.value, 0);
}

test('standby placement: each task has a copy on the next owner by address, never on its owner', () => {
  const routing = { version: 1, tasks: new Map<number, string | null>([[0, 'a:1'], [1, 'b:1'], [2, 'c:1'], [3, 'a:1']]), topics: new Map() };
  assert.deepEqual([...standbyPartitions(routing, 'b:1', 1)].sort(), [0, 3]);
  assert.deepEqual([...standbyPartitions(routing, 'c:1', 1)].sort(), [1]);
  assert.deepEqual([...standbyPartitions(routing, 'a:1', 1)].sort(), [2]);
  assert.deepEqual([...standbyPartitions(routing, 'a:1', 2)].sort(), [1, 2]);
  assert.deepEqual([...standbyPartitions({ ...routing, tasks: new Map([[0, 'a:1']]) }, 'a:1', 1)], [], 'a single owner has no standby');
});

test('standby replicas through the mock cluster: the survivor takes over from its warm copy and restores only the tail', async () => {
  const dirs = [tempDir(), tempDir()];
  const registries = [new Registry(), new Registry()];
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false } }), 'ksb');
  const kafka = testKafka(cluster.brokers);
  const make = (i: number) =>
    new KafkaRunner({
      topology,
      kafka: testKafka(cluster.brokers),
      stateDir: (dirs[i] as { dir: string }).dir,
      serde: new JsonSerde(),
      logger: silent,
      registry: registries[i] as Registry,
      idempotent: false,
      maxWaitTimeInMs: 100,
      sessionTimeout: 10_000,
      heartbeatInterval: 1000,
      apiAddress: `instance-${i}:8080`,
      standbyReplicas: 1,
    });
  const a = make(0);
  const b = make(1);
  try {
    await a.start();
    await b.start();
    await until('both instances active with standby copies of the other', () => a.assignedPartitions.length === 2 && b.assignedPartitions.length === 2 && b.standbyPartitions.join() === a.assignedPartitions.join());
    const now = Date.now();
    const customers = Array.from({ length: 60 }, (_, i) => `sb${i}`);
    const events: BasketEvent[] = customers.map((c) => ({ eventId: `sb-${c}`, customerId: c, occurredAt: now, type: 'ITEM_ADDED', sku: `sku-${c}`, quantity: 1 }));
    await produce(kafka, 'shop.basket.v1', events.map((e) => ({ key: e.customerId, value: JSON.stringify(e) })));
    // B's standby copies follow A's changelogs.
    let last = -1;
    await until('standby caught up', async () => {
      const applied = await metric(registries[1] as Registry, 'kairos_standby_records_total');
      const stable = applied > 0 && applied === last;
      last = applied;
      if (!stable) await sleep(1000);
      return stable;
    });
    const appliedByStandby = last;
    const aPartitions = a.assignedPartitions;
    await a.stop();
    await until('B runs every task', () => b.assignedPartitions.length === 4 && b.ready);
    const restoredOnB = await metric(registries[1] as Registry, 'kairos_restore_records_total');
    assert.ok(restoredOnB < appliedByStandby / 2, `failover restored ${restoredOnB} records; the standby had applied ${appliedByStandby}`);
    // Every basket is in B's state now, including those A owned.
    let found = 0;
    for (const p of [0, 1, 2, 3]) {
      const store = await b.store(p, basketsStore);
      for (const c of customers) if ((await store?.get(c))?.items.length === 1) found++;
    }
    assert.equal(found, customers.length, `baskets found on B after failover (A had partitions ${aPartitions.join(',')})`);
  } finally {
    await a.stop();
    await b.stop();
    for (const d of dirs) d.remove();
  }
});
