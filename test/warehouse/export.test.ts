import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Kafka, Message } from 'kafkajs';
import { Registry } from 'prom-client';
import type { Delivery, OrderEvent, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { startExportConsumer, type ExportConsumer } from '../../src/kafka/export-consumer.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { JsonSerde } from '../../src/kafka/serde.js';
import { BigQueryWarehouse } from '../../src/warehouse/bigquery-sink.js';
import { exportMetrics } from '../../src/warehouse/metrics.js';
import { TABLES } from '../../src/warehouse/tables.js';
import { startBigQueryServer, type BigQueryServer } from '../support/bigquery-server.js';
import { collect, produce, silent, testKafka } from '../support/kafka.js';
import { sampleOf } from '../support/samples.js';

let cluster: MockCluster;
before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  await cluster.stop();
});

const hex = (n: number, salt: string): string => (salt + n.toString(16)).padStart(32, '0').slice(-32);

function trigger(i: number, salt: string): Trigger {
  return { ...sampleOf('crm.triggers.v1'), triggerId: hex(i, salt), customerId: `c${i}`, occurredAt: 1_764_000_000_000 + i };
}
const msg = (key: string, value: unknown): Message => ({ key, value: JSON.stringify(value) });

async function waitFor(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const insertIdsSent = (server: BigQueryServer, from = 0): string[] =>
  server.requests
    .slice(from)
    .filter((r) => r.path.endsWith('/insertAll'))
    .flatMap((r) => ((r.body as { rows: { insertId: string }[] }).rows ?? []).map((x) => x.insertId));

async function exporter(kafka: Kafka, server: BigQueryServer, groupId: string, topics: (keyof typeof TABLES)[], registry = new Registry()): Promise<ExportConsumer> {
  const warehouse = new BigQueryWarehouse({ projectId: 'p1', dataset: 'kairos', apiEndpoint: server.endpoint, accessToken: 't', maxRetries: 0 });
  const tables = topics.map((t) => TABLES[t]);
  await warehouse.ensureTables(tables);
  return startExportConsumer({
    kafka,
    serde: new JsonSerde(),
    warehouse,
    tables,
    groupId,
    batchRows: 7,
    bufferRows: 20,
    flushMs: 200,
    logger: silent,
    metrics: exportMetrics(registry),
    maxWaitTimeInMs: 100,
    retryMs: 50,
  });
}

test('export end to end, mock Kafka → real BigQuery client → local BigQuery REST server (insertAll, tables): every row once despite an insertAll answered 500 after storing, bad records dead-lettered, offsets committed', async () => {
  const server = await startBigQueryServer();
  const kafka = testKafka(cluster.brokers);
  const salt = randomUUID().replace(/-/g, '').slice(0, 8);
  const topics = { triggers: `crm.triggers.v1`, audit: `crm.trigger-audit.v1`, deliveries: `crm.deliveries.v1`, orders: 'shop.orders.v1' };
  const triggers = Array.from({ length: 45 }, (_, i) => trigger(i, salt));
  const audit: TriggerAudit[] = Array.from({ length: 6 }, (_, i) => ({ ...sampleOf('crm.trigger-audit.v1'), auditId: hex(i, `a${salt}`), customerId: `c${i}`, ...(i === 5 ? { detail: undefined } : {}) }));
  delete audit[5]?.detail;
  const deliveries: Delivery[] = [{ ...sampleOf('crm.deliveries.v1'), deliveryId: hex(1, `d${salt}`) }];
  const orders: OrderEvent[] = [{ ...sampleOf('shop.orders.v1'), eventId: `o-${salt}` }];
  await produce(kafka, topics.triggers, [...triggers.map((t) => msg(t.customerId, t)), { key: 'c1', value: '{not json' }]);
  await produce(kafka, topics.audit, audit.map((a) => msg(a.customerId, a)));
  await produce(kafka, topics.deliveries, deliveries.map((d) => msg(d.customerId, d)));
  await produce(kafka, topics.orders, orders.map((o) => msg(o.customerId, o)));

  const registry = new Registry();
  const warehouse = new BigQueryWarehouse({ projectId: 'p1', dataset: 'kairos', apiEndpoint: server.endpoint, accessToken: 't' });
  await warehouse.ensureTables(Object.values(TABLES));
  // BigQuery refuses one contract-valid row (as it would one that does not fit a hand-edited table).
  server.refuseRows((json) => (json.auditId === audit[5]?.auditId ? 'missing required field: detail' : undefined));
  server.failNext('POST', '/tables/triggers/insertAll', 500, { afterStore: true });

  const group = `export-${salt}`;
  const exp = await exporter(kafka, server, group, ['triggers', 'trigger_audit', 'deliveries', 'orders'], registry);
  try {
    await waitFor('every row stored', () => server.rows('kairos', 'triggers').length >= 45 && server.rows('kairos', 'trigger_audit').length >= 5 && server.rows('kairos', 'orders').length >= 1 && server.rows('kairos', 'deliveries').length >= 1);
    await waitFor('the refused audit dead-lettered', () => exp.stats().refused >= 1);
  } finally {
    await exp.stop();
  }
  const ids = server.rows('kairos', 'triggers').map((r) => r.triggerId);
  assert.equal(ids.length, 45, 'each trigger exactly once');
  assert.equal(new Set(ids).size, 45);
  assert.ok(insertIdsSent(server).filter((id) => id === triggers[0]?.triggerId).length >= 1);
  assert.ok(insertIdsSent(server).length > 45 + 6 + 2, 'the failed insertAll was sent again (and deduplicated by insertId)');
  assert.deepEqual(server.rows('kairos', 'deliveries').map((r) => r.deliveryId), [deliveries[0]?.deliveryId]);
  assert.equal(server.rows('kairos', 'trigger_audit').length, 5);
  const stats = exp.stats();
  assert.equal(stats.deadLettered, 2, 'the undecodable trigger and the refused audit');
  const dlq = await collect(kafka, ['crm.triggers.v1.dlq', 'crm.trigger-audit.v1.dlq'], (all) => all.length >= 2);
  const reasons = dlq.map((d) => String(d.message.headers?.['kairos-error-reason'])).sort();
  assert.deepEqual(reasons, ['not-json', 'warehouse-invalid']);
  const metrics = await registry.metrics();
  assert.match(metrics, /kairos_export_rows_total\{table="triggers"\} 45/);
  assert.match(metrics, /kairos_export_rows_rejected_total\{table="trigger_audit"\} 1/);

  // Offsets were committed: a new exporter in the same group sends only the record produced after.
  const from = server.requests.length;
  const late = trigger(99, salt);
  await produce(kafka, topics.triggers, [msg(late.customerId, late)]);
  const again = await exporter(kafka, server, group, ['triggers', 'trigger_audit', 'deliveries', 'orders']);
  try {
    await waitFor('the late trigger stored', () => server.rows('kairos', 'triggers').length >= 46);
  } finally {
    await again.stop();
  }
  assert.deepEqual(insertIdsSent(server, from), [late.triggerId], 'nothing before the committed offsets is read again');
  await server.close();
});

test('export killed while BigQuery (local REST server) holds an insertAll: no offset committed, the next exporter re-delivers and insertId keeps every row once', async () => {
  const server = await startBigQueryServer();
  const kafka = testKafka(cluster.brokers);
  const salt = randomUUID().replace(/-/g, '').slice(0, 8);
  const topic = `crm.triggers.v1`;
  const mine = Array.from({ length: 12 }, (_, i) => trigger(i, `f${salt}`));
  const group = `export-kill-${salt}`;
  await produce(kafka, topic, mine.map((t) => msg(t.customerId, t)));
  const hold = server.holdInserts();
  const first = await exporter(kafka, server, group, ['triggers']);
  await hold.held;
  const heldIds = insertIdsSent(server);
  assert.ok(heldIds.length > 0);
  const killing = first.abort();
  hold.release(); // the held request completes: BigQuery stored the rows, the exporter never learned it
  await killing;
  await waitFor('the held rows stored', () => server.rows('kairos', 'triggers').length >= heldIds.length);
  assert.equal(first.stats().commits, 0, 'no offset was committed before BigQuery accepted the rows');

  // The topic also holds the previous test's triggers: every distinct trigger id must end up exactly once.
  const from = server.requests.length;
  const second = await exporter(kafka, server, group, ['triggers']);
  const ids = () => server.rows('kairos', 'triggers').map((r) => String(r.triggerId));
  try {
    await waitFor('all of this test\'s triggers stored', () => mine.every((t) => ids().includes(t.triggerId)));
    await waitFor('the held rows re-delivered', () => {
      const resent = new Set(insertIdsSent(server, from));
      return heldIds.every((id) => resent.has(id));
    });
  } finally {
    await second.stop();
  }
  assert.equal(new Set(ids()).size, ids().length, 'no duplicates: the re-delivered rows carried the same insertIds');
  assert.ok(second.stats().commits > 0);
  await server.close();
});
