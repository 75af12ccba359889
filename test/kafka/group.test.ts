import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BasketEvent, Trigger } from '../../schemas/contract.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { tempDir, fastGroupEnv } from '../helpers.js';
import { collect, json, produce, testKafka } from '../support/kafka.js';
import { startChild, type ChildInstance } from '../support/instance.js';

let cluster: MockCluster;
before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  await cluster.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('three instances in one group, kill -9 one under load: no trigger lost, duplicates only with equal triggerId', async (t) => {
  const dir = tempDir();
  const campaigns = join(dir.dir, 'campaigns.json');
  writeFileSync(campaigns, JSON.stringify({ guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '4s' } } } }));
  const env = (i: number): Record<string, string> => ({
    ...fastGroupEnv(cluster.brokers.join(',')),
    KAIROS_APPLICATION_ID: 'chaos',
    KAIROS_STATE_DIR: join(dir.dir, `instance-${i}`),
    KAIROS_CAMPAIGNS: campaigns,
    KAIROS_HTTP_PORT: '0',
    KAIROS_PUNCTUATE_MS: '200',
    KAIROS_IDLE_ADVANCE_MS: '500',
    KAIROS_LOG_LEVEL: process.env.KAIROS_TEST_CHILD_LOG ?? 'warn',
  });
  const instances: ChildInstance[] = [];
  try {
    for (let i = 0; i < 3; i++) instances.push(await startChild(env(i)));
    const kafka = testKafka(cluster.brokers);
    const customers: string[] = [];
    const started = Date.now();
    let killed = false;
    // ~100 customers a second for 6 s; instance 0 is killed -9 after 2 s.
    for (let round = 0; round < 60; round++) {
      const now = Date.now();
      const batch = Array.from({ length: 10 }, (_, i) => `k${round}-${i}`);
      customers.push(...batch);
      const events: BasketEvent[] = batch.map((c) => ({ eventId: `e-${c}`, customerId: c, occurredAt: now, type: 'ITEM_ADDED', sku: 's', quantity: 1 }));
      await produce(kafka, 'shop.basket.v1', events.map((e) => ({ key: e.customerId, value: JSON.stringify(e) })));
      if (!killed && now - started > 2000) {
        instances[0]?.child.kill('SIGKILL');
        killed = true;
      }
      await sleep(100);
    }
    const expected = new Set(customers);
    const got = await collect(
      kafka,
      ['crm.triggers.v1'],
      (all) => new Set(all.map((m) => json<Trigger>(m.message).customerId).filter((c) => expected.has(c))).size >= expected.size,
      90_000,
    );
    const byCustomer = new Map<string, Set<string>>();
    let total = 0;
    for (const m of got) {
      const tr = json<Trigger>(m.message);
      if (!expected.has(tr.customerId)) continue;
      total++;
      let ids = byCustomer.get(tr.customerId);
      if (!ids) byCustomer.set(tr.customerId, (ids = new Set()));
      ids.add(tr.triggerId);
    }
    const lost = customers.filter((c) => !byCustomer.has(c));
    t.diagnostic(`customers ${customers.length}, triggers ${total}, duplicates ${total - byCustomer.size}, lost ${lost.length}`);
    if (lost.length > 0) for (const [i, inst] of instances.entries()) t.diagnostic(`instance ${i} stderr:\n${inst.stderr().slice(-6000)}`);
    assert.deepEqual(lost, [], 'no trigger lost');
    for (const [c, ids] of byCustomer) assert.equal(ids.size, 1, `customer ${c}: duplicates must carry the same triggerId`);
    // The survivors stop gracefully on SIGTERM.
    for (const inst of instances.slice(1)) inst.child.kill('SIGTERM');
    for (const inst of instances.slice(1)) assert.equal(await inst.exited, 0, inst.stderr().slice(-2000));
  } finally {
    for (const inst of instances) if (inst.child.exitCode === null && inst.child.signalCode === null) inst.child.kill('SIGKILL');
    dir.remove();
  }
});
