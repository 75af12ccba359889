import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import type { BasketEvent } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { KafkaRunner } from '../../src/kafka/runner.js';
import { JsonSerde } from '../../src/kafka/serde.js';
import { StandbyFollower, standbyPartitions } from '../../src/kafka/standby.js';
import { KafkaChangelogWriter, producerSend } from '../../src/kafka/changelog.js';
import { TaskState } from '../../src/engine/state/task-state.js';
import { StreamTask } from '../../src/engine/runtime/task.js';
import { POSITIONS_STORE } from '../../src/engine/state/changelog.js';
import { basketsStore, type BasketState } from '../../topologies/basket-abandonment/index.js';
import { sleep, tempDir, until } from '../helpers.js';
import { appendTransactionMarker, produce, silent, testKafka } from '../support/kafka.js';

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

test('a standby copy applies whole commits only: a commit cut short by a kill (store records without positions and marker) stays out until a later marker covers it', async () => {
  const app = 'ksbc';
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false } }), app);
  const kafka = testKafka(cluster.brokers);
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  const owner = tempDir();
  const copy = tempDir();
  const specs = StreamTask.storeSpecs(topology);
  const now = Date.now(); // the store has a TTL: entries written at `now`, and the copy's stream time follows the log
  const basket = (sku: string): BasketState => ({ items: [{ sku, quantity: 1 }] }) as unknown as BasketState;
  const follower = new StandbyFollower({ kafka, topology, groupId: app, stateDir: copy.dir, stores: [...specs.map((x) => x.name), POSITIONS_STORE], logger: silent, maxWaitTimeInMs: 100 });
  try {
    // The owner's complete commit 1.
    const send = producerSend(producer);
    const state = await TaskState.open({ dir: owner.dir, taskId: 'task-0', stores: specs, changelog: new KafkaChangelogWriter(send, app, 0) });
    state.streamTime = now;
    state.put(basketsStore.name, 'c1', basket('one'), now);
    state.setPosition('shop.basket.v1', 0, '1');
    await state.commit();
    // Commit 2 is cut short: its store records reach the broker, its positions and marker never do.
    const killed = await TaskState.open({
      dir: join(owner.dir, 'killed'),
      taskId: 'task-0',
      stores: specs,
      changelog: new KafkaChangelogWriter((tm) => (tm.some((t) => t.topic.endsWith(`${POSITIONS_STORE}-changelog`)) ? Promise.reject(new Error('killed')) : send(tm)), app, 0),
    });
    killed.streamTime = now;
    killed.put(basketsStore.name, 'c1', basket('two (cut short)'), now);
    killed.setPosition('shop.basket.v1', 0, '2');
    await assert.rejects(killed.commit());
    await killed.close();
    // An exactly-once owner's transactions end in markers on every changelog partition they wrote (appended raw:
    // the mock runs no transactions). They are not records the copy lacks: its lag must come to 0 past them.
    await appendTransactionMarker(kafka, `${app}-${basketsStore.name}-changelog`, 0);
    await appendTransactionMarker(kafka, `${app}-${POSITIONS_STORE}-changelog`, 0);

    await follower.update(new Set([0]));
    const view = () => follower.copy(0) as NonNullable<ReturnType<StandbyFollower['copy']>>;
    await until('the standby copy fetched its changelogs to their ends', () => view().lagRecords === 0 && view().state.position('shop.basket.v1', 0) === '1');
    await sleep(500);
    assert.equal(((await view().state.get(basketsStore.name, 'c1')) as BasketState).items[0]?.sku, 'one', 'the copy holds commit 1, not the cut-short commit');
    assert.equal(view().state.position('shop.basket.v1', 0), '1');

    // The next complete commit (the new owner's): its marker covers everything before it.
    state.put(basketsStore.name, 'c2', basket('three'), now);
    state.setPosition('shop.basket.v1', 0, '3');
    await state.commit();
    await state.close();
    await until('the copy applied commit 3', () => view().state.position('shop.basket.v1', 0) === '3');
    assert.equal(((await view().state.get(basketsStore.name, 'c2')) as BasketState).items[0]?.sku, 'three');
  } finally {
    await follower.stop();
    await producer.disconnect();
    owner.remove();
    copy.remove();
  }
});
