import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { CustomerProfile, Trigger } from '../../schemas/contract.js';
import { run } from '../../src/cli/main.js';
import { isKairosError } from '../../src/errors.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { loadWarehouseConfig, warehouseConfigurationTable } from '../../src/warehouse/config.js';
import { NdjsonWarehouse } from '../../src/warehouse/ndjson-sink.js';
import { TABLES, toRow } from '../../src/warehouse/tables.js';
import { tempDir } from '../helpers.js';
import { collect, json, produce, testKafka } from '../support/kafka.js';
import { sampleOf } from '../support/samples.js';

let cluster: MockCluster;
before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  await cluster.stop();
});

const root = join(import.meta.dirname, '..', '..');

async function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  try {
    const code = await run(args, { stdout, stderr });
    return { code, stdout: out, stderr: err };
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

test('warehouse config: every bad variable named at once; the README table lists every variable', () => {
  assert.throws(
    () => loadWarehouseConfig({ KAIROS_WAREHOUSE: 'bigquery', KAIROS_EXPORT_BATCH_ROWS: 'lots', BIGQUERY_DATASET: 'my-dataset', KAIROS_EXPORT_TOPICS: 'crm.triggers.v1,shop.basket.v1' }),
    (err: unknown) =>
      isKairosError(err, 'KAIROS_ERR_CONFIG') &&
      /KAIROS_EXPORT_BATCH_ROWS="lots"/.test(err.message) &&
      /BIGQUERY_DATASET="my-dataset"/.test(err.message) &&
      /BIGQUERY_PROJECT: required when KAIROS_WAREHOUSE=bigquery/.test(err.message) &&
      /shop\.basket\.v1 has no warehouse table/.test(err.message),
  );
  const c = loadWarehouseConfig({});
  assert.deepEqual(c.warehouse, { kind: 'ndjson', dir: './warehouse' });
  assert.equal(c.reportWindowMs, 7 * 86_400_000);
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  assert.ok(readme.includes(warehouseConfigurationTable()), 'README.md carries warehouseConfigurationTable() verbatim');
});

test('kairos report on the embedded NDJSON demo warehouse: table and JSON; usage errors exit 2', async () => {
  const { dir, remove } = tempDir();
  try {
    const wh = new NdjsonWarehouse(dir);
    await wh.ensureTables(Object.values(TABLES));
    const t: Trigger = { ...sampleOf('crm.triggers.v1'), campaignId: 'c-1', variant: 'A', occurredAt: 1_000_000 };
    await wh.insert(TABLES.triggers, [{ insertId: t.triggerId, json: toRow(TABLES.triggers, t, { partition: 0, offset: '0' }, 0) }]);
    const env = { KAIROS_WAREHOUSE: `ndjson:${dir}` };
    const table = await cli(['report', '--campaign', 'c-1'], env);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^campaign c-1 · attribution window 7d/);
    assert.match(table.stderr, /EMBEDDED DEMO WAREHOUSE/);
    const j = await cli(['report', '--campaign', 'c-1', '--format', 'json', '--window', '2d'], env);
    const parsed = JSON.parse(j.stdout) as { windowMs: number; arms: { arm: string; customers: number }[] };
    assert.equal(parsed.windowMs, 2 * 86_400_000);
    assert.deepEqual(parsed.arms.map((a) => [a.arm, a.customers]), [['A', 1]]);
    assert.equal((await cli(['report'], env)).code, 2);
    assert.equal((await cli(['report', '--campaign', 'x', '--format', 'xml'], env)).code, 2);
    const bad = await cli(['report', '--campaign', 'x'], { KAIROS_WAREHOUSE: 'bigquery' });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /BIGQUERY_PROJECT/);
  } finally {
    remove();
  }
});

test('kairos export as a process (mock Kafka → embedded NDJSON demo warehouse): rows written once, SIGTERM flushes and exits 0', async () => {
  const { dir, remove } = tempDir();
  const kafka = testKafka(cluster.brokers);
  const salt = randomUUID().replace(/-/g, '').slice(0, 8);
  const triggers = [1, 2, 3].map((i): Trigger => ({ ...sampleOf('crm.triggers.v1'), triggerId: `${salt}${String(i).repeat(24)}`, customerId: `c${i}` }));
  await produce(kafka, 'crm.triggers.v1', triggers.map((t) => ({ key: t.customerId, value: JSON.stringify(t) })));
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cli/bin.ts'), 'export'], {
    cwd: root,
    env: {
      ...process.env,
      KAFKA_BROKERS: cluster.brokers.join(','),
      KAFKA_MAX_WAIT_MS: '100',
      KAIROS_HTTP_PORT: '0',
      KAIROS_LOG_LEVEL: 'warn',
      KAIROS_WAREHOUSE: `ndjson:${dir}`,
      KAIROS_EXPORT_TOPICS: 'crm.triggers.v1',
      KAIROS_EXPORT_GROUP: `cli-${salt}`,
      KAIROS_EXPORT_FLUSH_MS: '100',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const file = join(dir, 'triggers.ndjson');
    const ids = () => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => String((JSON.parse(l) as { triggerId: string }).triggerId)) : []);
    const until = Date.now() + 60_000;
    while (!triggers.every((t) => ids().includes(t.triggerId))) {
      if (Date.now() > until || child.exitCode !== null) throw new Error(`export did not write the rows: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    assert.equal(new Set(ids()).size, ids().length);
    assert.match(stderr, /EMBEDDED DEMO WAREHOUSE/);
    assert.match(stderr, /table .*triggers: created/);
    assert.match(stderr, /export: \d+ rows stored/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    remove();
  }
});

test('kairos segments sync --once (mock Kafka, segment results from the NDJSON demo warehouse): publishes the changed profile and reports progress', async () => {
  const { dir, remove } = tempDir();
  const kafka = testKafka(cluster.brokers);
  try {
    const salt = randomUUID().slice(0, 8);
    const id = `cli-${salt}`;
    mkdirSync(join(dir, 'segments'));
    writeFileSync(join(dir, 'segments', 'newsletter.ndjson'), JSON.stringify({ customerId: id, opens: 12 }) + '\n');
    const cfg = join(dir, 'segments.json');
    writeFileSync(cfg, JSON.stringify({ segments: [{ name: 'newsletter', sql: 'SELECT customerId, opens FROM `p.d.opens`', attributes: ['opens'] }] }));
    const r = await cli(['segments', 'sync', '--once', '--config', cfg], { KAFKA_BROKERS: cluster.brokers.join(','), KAFKA_MAX_WAIT_MS: '100', KAIROS_WAREHOUSE: `ndjson:${dir}`, KAIROS_LOG_LEVEL: 'warn' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\[1\/1\] newsletter: 1 members/);
    assert.match(r.stderr, /published 1 changed profiles/);
    const got = await collect(kafka, ['crm.customers.v1'], (all) => all.some((m) => m.message.key?.toString() === id));
    const p = got.map((m) => m.message).filter((m) => m.key?.toString() === id).map((m) => json<CustomerProfile>(m));
    assert.deepEqual(p.map((x) => [x.segments, x.attributes]), [[['newsletter'], { opens: 12 }]]);
    assert.equal((await cli(['segments', 'resync'], {})).code, 2);
  } finally {
    remove();
  }
});
