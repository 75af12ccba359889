import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isKairosError } from '../../src/errors.js';
import { BigQueryWarehouse } from '../../src/warehouse/bigquery-sink.js';
import { planMigration } from '../../src/warehouse/migration.js';
import { TABLES, generatedBigQueryFiles, toRow, type BigQueryField } from '../../src/warehouse/tables.js';
import { startBigQueryServer } from '../support/bigquery-server.js';
import { validSamples } from '../support/samples.js';

const root = join(import.meta.dirname, '..', '..', 'schemas');

test('schemas/bigquery on disk is exactly what schemas/contract.ts generates (run npm run schemas:generate)', () => {
  const files = generatedBigQueryFiles();
  assert.equal(files.size, Object.keys(TABLES).length);
  for (const [rel, content] of files) assert.equal(readFileSync(join(root, rel), 'utf8'), content, `schemas/${rel} drifted from schemas/contract.ts`);
});

test('table schemas: epoch ms → TIMESTAMP (the partition column), free-form records → JSON, arrays → REPEATED, optional → NULLABLE', () => {
  const f = (table: keyof typeof TABLES, name: string): BigQueryField | undefined => TABLES[table].fields.find((x) => x.name === name);
  assert.deepEqual(
    { type: f('triggers', 'occurredAt')?.type, mode: f('triggers', 'occurredAt')?.mode },
    { type: 'TIMESTAMP', mode: 'REQUIRED' },
  );
  assert.equal(f('triggers', 'payload')?.type, 'JSON');
  assert.equal(f('triggers', 'channels')?.mode, 'REPEATED');
  assert.equal(f('triggers', 'explanation')?.fields?.find((x) => x.name === 'params')?.type, 'JSON');
  assert.equal(f('trigger_audit', 'detail')?.mode, 'NULLABLE');
  assert.equal(f('deliveries', 'decidedAt')?.type, 'TIMESTAMP');
  assert.equal(f('orders', 'items')?.type, 'RECORD');
  assert.equal(f('orders', 'items')?.mode, 'REPEATED');
  assert.equal(TABLES.deliveries.partitionField, 'decidedAt');
  assert.equal(TABLES.triggers.insertIdField, 'triggerId');
  assert.equal(TABLES.trigger_audit.insertIdField, 'auditId');
  assert.equal(TABLES.deliveries.insertIdField, 'deliveryId');
});

test('toRow: timestamps as ISO text, JSON columns as JSON text, Kafka origin added', () => {
  const trigger = validSamples['crm.triggers.v1'][0] as Record<string, unknown>;
  const row = toRow(TABLES.triggers, trigger, { partition: 2, offset: '17' }, 0);
  assert.equal(row.occurredAt, new Date(trigger.occurredAt as number).toISOString());
  assert.equal(row.payload, JSON.stringify(trigger.payload));
  assert.equal((row.explanation as Record<string, unknown>).params, JSON.stringify((trigger.explanation as Record<string, unknown>).params));
  assert.deepEqual([row.kafka_partition, row.kafka_offset, row.exported_at], [2, '17', '1970-01-01T00:00:00.000Z']);
});

test('migration plan: adds missing (nested) columns as NULLABLE, relaxes REQUIRED, refuses type and repeated changes naming the column', () => {
  const wanted: BigQueryField[] = [
    { name: 'a', type: 'STRING', mode: 'REQUIRED' },
    { name: 'b', type: 'INTEGER', mode: 'NULLABLE' },
    { name: 'r', type: 'RECORD', mode: 'REQUIRED', fields: [{ name: 'x', type: 'STRING', mode: 'REQUIRED' }, { name: 'y', type: 'STRING', mode: 'REQUIRED' }] },
  ];
  const plan = planMigration('t', [{ name: 'a', type: 'STRING', mode: 'REQUIRED' }, { name: 'b', type: 'INT64', mode: 'REQUIRED' }, { name: 'r', type: 'RECORD', fields: [{ name: 'x', type: 'STRING' }] }, { name: 'old', type: 'STRING' }], wanted);
  assert.deepEqual(plan.added, ['r.y']);
  assert.deepEqual(plan.relaxed, ['b']);
  assert.deepEqual(plan.fields.map((f) => f.name), ['a', 'b', 'r', 'old']);
  assert.equal(plan.fields[2]?.fields?.[1]?.mode, 'NULLABLE');
  assert.throws(
    () => planMigration('t', [{ name: 'a', type: 'INTEGER' }, { name: 'b', type: 'INTEGER', mode: 'REPEATED' }], wanted),
    (err: unknown) => isKairosError(err, 'KAIROS_ERR_WAREHOUSE_SCHEMA') && /a: type INTEGER in the table, STRING/.test(err.message) && /b: mode REPEATED/.test(err.message),
  );
});

test('real BigQuery client against the local BigQuery REST server (apiEndpoint): tables created with day partitioning, then migrated by tables.patch, incompatible change refused', async () => {
  const server = await startBigQueryServer();
  try {
    const wh = new BigQueryWarehouse({ projectId: 'p1', dataset: 'kairos', apiEndpoint: server.endpoint, accessToken: 'test-token', location: 'EU' });
    const first = await wh.ensureTables(Object.values(TABLES));
    assert.deepEqual(first.map((m) => [m.tableId, m.action]), [['triggers', 'created'], ['trigger_audit', 'created'], ['deliveries', 'created'], ['orders', 'created']]);
    assert.ok(server.requests.every((r) => r.authorization === 'Bearer test-token'), 'every request carries the fixed token');
    const stored = server.tables.get('kairos.triggers');
    assert.deepEqual(stored?.resource.timePartitioning, { type: 'DAY', field: 'occurredAt' });
    assert.deepEqual(server.tables.get('kairos.deliveries')?.resource.timePartitioning, { type: 'DAY', field: 'decidedAt' });
    assert.equal((await wh.ensureTables([TABLES.triggers]))[0]?.action, 'unchanged');
    // Two exporters starting together: one creates the table, the other finds it (409 → checked like an existing one).
    server.tables.delete('kairos.orders');
    const other = new BigQueryWarehouse({ projectId: 'p1', dataset: 'kairos', apiEndpoint: server.endpoint, accessToken: 'test-token' });
    const both = await Promise.all([wh.ensureTables([TABLES.orders]), other.ensureTables([TABLES.orders])]);
    assert.deepEqual(both.map((m) => m[0]?.action).sort(), ['created', 'unchanged']);

    // An older table: without `detail` and `kafka_offset`, `reason` still REQUIRED in an older contract was fine; drop two columns.
    const audit = server.tables.get('kairos.trigger_audit');
    assert.ok(audit);
    audit.resource.schema.fields = audit.resource.schema.fields.filter((f) => f.name !== 'detail' && f.name !== 'kafka_offset');
    const patches = server.requests.filter((r) => r.method === 'PATCH').length;
    const [migrated] = await wh.ensureTables([TABLES.trigger_audit]);
    assert.deepEqual(migrated, { tableId: 'trigger_audit', action: 'migrated', added: ['detail', 'kafka_offset'], relaxed: [] });
    assert.equal(server.requests.filter((r) => r.method === 'PATCH').length, patches + 1);
    assert.ok(audit.resource.schema.fields.some((f) => f.name === 'detail' && f.mode === 'NULLABLE'));

    const deliveries = server.tables.get('kairos.deliveries');
    assert.ok(deliveries);
    deliveries.resource.schema.fields = deliveries.resource.schema.fields.map((f) => (f.name === 'attempts' ? { ...f, type: 'STRING' } : f));
    await assert.rejects(wh.ensureTables([TABLES.deliveries]), (err: unknown) => isKairosError(err, 'KAIROS_ERR_WAREHOUSE_SCHEMA') && /attempts: type STRING in the table, INTEGER/.test(err.message));
    deliveries.resource.timePartitioning = { type: 'DAY' };
    await assert.rejects(wh.ensureTables([TABLES.deliveries]), (err: unknown) => isKairosError(err, 'KAIROS_ERR_WAREHOUSE_SCHEMA') && /cannot change the partitioning/.test(err.message));
  } finally {
    await server.close();
  }
});

test('real BigQuery client against the local BigQuery REST server: insertAll dedupes by insertId, a bad row is rejected and the stopped rows are retried', async () => {
  const server = await startBigQueryServer();
  try {
    const wh = new BigQueryWarehouse({ projectId: 'p1', dataset: 'kairos', apiEndpoint: server.endpoint, accessToken: 't' });
    await wh.ensureTables([TABLES.triggers]);
    const trigger = validSamples['crm.triggers.v1'][0] as Record<string, unknown>;
    const row = (id: string) => ({ insertId: id, json: toRow(TABLES.triggers, { ...trigger, triggerId: id }, { partition: 0, offset: '1' }, 0) });
    const a = row('a'.repeat(32));
    const b = row('b'.repeat(32));
    assert.deepEqual(await wh.insert(TABLES.triggers, [a, b]), []);
    assert.deepEqual(await wh.insert(TABLES.triggers, [a, b]), []);
    assert.equal(server.rows('kairos', 'triggers').length, 2, 'a retried insert adds nothing');
    const bad = { insertId: 'c'.repeat(32), json: { ...row('c'.repeat(32)).json, customerId: undefined, colour: 'red' } };
    const rejected = await wh.insert(TABLES.triggers, [row('d'.repeat(32)), bad]);
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]?.insertId, 'c'.repeat(32));
    assert.match(rejected[0]?.message ?? '', /colour|customerId/);
    assert.deepEqual(server.rows('kairos', 'triggers').map((r) => r.triggerId), ['a'.repeat(32), 'b'.repeat(32), 'd'.repeat(32)]);
    // Streaming right after a schema patch: "no such field" is not the row's fault, so it is a retriable error.
    server.refuseRows(() => 'no such field: kafka_offset.');
    await assert.rejects(wh.insert(TABLES.triggers, [row('e'.repeat(32))]), (err: unknown) => isKairosError(err, 'KAIROS_ERR_WAREHOUSE') && err.retriable);
    server.refuseRows(() => undefined);
    assert.deepEqual(await wh.insert(TABLES.triggers, [row('e'.repeat(32))]), []);
  } finally {
    await server.close();
  }
});
