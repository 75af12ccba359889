import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { OrderEvent, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { BigQueryWarehouse } from '../../src/warehouse/bigquery-sink.js';
import { NdjsonWarehouse } from '../../src/warehouse/ndjson-sink.js';
import { formatReport, REPORT_LABEL, reportSql, runReport, Z_95, type Report } from '../../src/warehouse/report.js';
import { evaluateReport, REPORT_COLUMNS } from '../../src/warehouse/report-model.js';
import { TABLES, toRow, type TableDef } from '../../src/warehouse/tables.js';
import type { Warehouse } from '../../src/warehouse/warehouse.js';
import { tempDir } from '../helpers.js';
import { startBigQueryServer } from '../support/bigquery-server.js';
import { sampleOf } from '../support/samples.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 1);
let n = 0;
const id = () => (++n).toString(16).padStart(32, '0');

const trigger = (customerId: string, variant: string, at: number, campaignId = 'ba-2026'): Trigger => ({
  ...sampleOf('crm.triggers.v1'),
  triggerId: id(),
  customerId,
  variant,
  campaignId,
  occurredAt: at,
});
const holdout = (customerId: string, at: number, reason = 'holdout'): TriggerAudit => ({
  ...sampleOf('crm.trigger-audit.v1'),
  auditId: id(),
  customerId,
  campaignId: 'ba-2026',
  variant: 'holdout',
  decision: 'SUPPRESSED',
  reason,
  occurredAt: at,
});
const order = (customerId: string, at: number): OrderEvent => ({ ...sampleOf('shop.orders.v1'), eventId: `o${id()}`, orderId: `ord${n}`, customerId, occurredAt: at });

/**
 * A: 4 customers, 2 convert (a1 twice: once counted; a2 has a second trigger later); B: 5 customers, 1 converts;
 * holdout: 4 customers, 1 converts. Not counted: an order before exposure (b2), after the 7-day window (b3), a
 * trigger of another campaign (x1), a cooldown suppression (h9).
 */
function dataset(): { triggers: Trigger[]; audit: TriggerAudit[]; orders: OrderEvent[] } {
  const triggers = [
    trigger('a1', 'A', T0),
    trigger('a2', 'A', T0 + 1000),
    trigger('a2', 'A', T0 + 3 * DAY),
    trigger('a3', 'A', T0),
    trigger('a4', 'A', T0),
    ...['b1', 'b2', 'b3', 'b4', 'b5'].map((c) => trigger(c, 'B', T0)),
    trigger('x1', 'A', T0, 'other-campaign'),
  ];
  const audit = [holdout('h1', T0), holdout('h2', T0), holdout('h3', T0), holdout('h4', T0), holdout('h9', T0, 'cooldown')];
  const orders = [
    order('a1', T0 + DAY),
    order('a1', T0 + 2 * DAY),
    order('a2', T0 + 6 * DAY),
    order('b1', T0 + 1),
    order('b2', T0 - 1),
    order('b3', T0 + 7 * DAY),
    order('h1', T0 + 5 * DAY),
    order('x1', T0 + 1),
  ];
  return { triggers, audit, orders };
}

/** Hand-computed: A 2/4 = 0.5, B 1/5 = 0.2, holdout 1/4 = 0.25. */
function assertKnownNumbers(r: Report): void {
  assert.deepEqual(
    r.arms.map((a) => [a.arm, a.isHoldout, a.customers, a.conversions, a.rate]),
    [
      ['holdout', true, 4, 1, 0.25],
      ['A', false, 4, 2, 0.5],
      ['B', false, 5, 1, 0.2],
    ],
  );
  const [h, a, b] = r.arms;
  assert.equal(h?.uplift, null);
  assert.equal(h?.ciLow, null);
  const close = (x: number | null | undefined, y: number, what: string) => assert.ok(x !== null && x !== undefined && Math.abs(x - y) < 1e-6, `${what}: ${String(x)} ≠ ${y}`);
  // A: uplift 0.25; se = √(0.5·0.5/4 + 0.25·0.75/4) = √0.109375 = 0.3307189; CI = 0.25 ± 1.959964·0.3307189
  close(a?.uplift, 0.25, 'A uplift');
  close(a?.stdError, 0.3307189, 'A se');
  close(a?.ciLow, 0.25 - 0.6481972, 'A ci low');
  close(a?.ciHigh, 0.25 + 0.6481972, 'A ci high');
  close(a?.relativeUplift, 1, 'A relative');
  // B: uplift −0.05; se = √(0.2·0.8/5 + 0.046875) = √0.078875 = 0.2808469; half-width 0.5504498
  close(b?.uplift, -0.05, 'B uplift');
  close(b?.stdError, 0.2808469, 'B se');
  close(b?.ciLow, -0.05 - 0.5504498, 'B ci low');
  close(b?.ciHigh, -0.05 + 0.5504498, 'B ci high');
  close(b?.relativeUplift, -0.2, 'B relative');
}

async function load(wh: Warehouse, data: ReturnType<typeof dataset>): Promise<void> {
  await wh.ensureTables([TABLES.triggers, TABLES.trigger_audit, TABLES.orders]);
  const put = async (def: TableDef, values: readonly object[]) =>
    wh.insert(
      def,
      values.map((v) => {
        const value = v as Record<string, unknown>;
        return { insertId: String(value[def.insertIdField]), json: toRow(def, value, { partition: 0, offset: '0' }, T0) };
      }),
    );
  await put(TABLES.triggers, data.triggers);
  await put(TABLES.trigger_audit, data.audit);
  await put(TABLES.orders, data.orders);
}

test('report SQL is parameterised: the campaign, window and z travel as @parameters, never in the text; tables are quoted', () => {
  const sql = reportSql({ triggers: '`p.d.triggers`', audit: '`p.d.trigger_audit`', orders: '`p.d.orders`' });
  assert.match(sql, new RegExp(`^-- ${REPORT_LABEL}`));
  for (const p of ['@campaign_id', '@window_ms', '@z']) assert.ok(sql.includes(p), p);
  assert.ok(!sql.includes("'ba-2026'"));
  assert.match(sql, /FROM `p\.d\.triggers`/);
  assert.match(sql, /LEFT JOIN `p\.d\.orders` AS o/);
  assert.match(sql, /decision = 'SUPPRESSED' AND reason = 'holdout'/);
  assert.match(sql, /INTERVAL @window_ms MILLISECOND/);
  // Balanced parentheses and one statement.
  let depth = 0;
  for (const ch of sql) {
    depth += ch === '(' ? 1 : ch === ')' ? -1 : 0;
    assert.ok(depth >= 0);
  }
  assert.equal(depth, 0);
  assert.equal(sql.split(';').length, 1);
  // The result columns the parser expects are the SELECT's.
  for (const c of REPORT_COLUMNS) assert.match(sql, new RegExp(`\\b${c.name}\\b`), c.name);
});

test('report on a known dataset through the real BigQuery client and the local REST server (jobs.query with query parameters; the server evaluates the labelled query in TypeScript, the SQL itself runs only on real BigQuery): uplift and CI match hand-computed values', async () => {
  const server = await startBigQueryServer();
  try {
    server.onQuery('kairos-report', (ctx) => ({
      fields: REPORT_COLUMNS,
      rows: evaluateReport(
        { triggers: ctx.rows('triggers'), audit: ctx.rows('trigger_audit'), orders: ctx.rows('orders') },
        { campaign_id: String(ctx.params.campaign_id), window_ms: Number(ctx.params.window_ms), z: Number(ctx.params.z) },
      ),
    }));
    const wh = new BigQueryWarehouse({ projectId: 'p1', dataset: 'kairos', apiEndpoint: server.endpoint, accessToken: 't' });
    await load(wh, dataset());
    const report = await runReport(wh, 'ba-2026', 7 * DAY);
    assertKnownNumbers(report);
    const q = server.requests.find((r) => r.path === '/projects/p1/queries');
    const body = q?.body as { query: string; useLegacySql: boolean; parameterMode: string; queryParameters: { name: string; parameterType: { type: string }; parameterValue: { value: string } }[]; labels: Record<string, string> };
    assert.equal(body.useLegacySql, false);
    assert.equal(body.parameterMode.toUpperCase(), 'NAMED');
    assert.deepEqual(
      body.queryParameters.map((p) => [p.name, p.parameterType.type, String(p.parameterValue.value)]),
      [
        ['campaign_id', 'STRING', 'ba-2026'],
        ['window_ms', 'INT64', String(7 * DAY)],
        ['z', 'FLOAT64', String(Z_95)],
      ],
    );
    assert.deepEqual(body.labels, { kairos_query: 'kairos-report' });
    assert.match(body.query, /FROM `p1\.kairos\.triggers`/);

    const table = formatReport(report);
    assert.match(table, /^campaign ba-2026 · attribution window 7d/);
    assert.match(table, /holdout \(holdout\)\s+4\s+1\s+25\.00%/);
    assert.match(table, /A\s+4\s+2\s+50\.00%\s+\+25\.00\s+\[-39\.82, \+89\.82\]\s+\+100\.00%/);
    assert.deepEqual(JSON.parse(JSON.stringify(report)).arms[1].arm, 'A');
  } finally {
    await server.close();
  }
});

test('report on the embedded NDJSON demo warehouse (evaluated in TypeScript): same numbers; a campaign without holdout says so', async () => {
  const { dir, remove } = tempDir();
  try {
    const wh = new NdjsonWarehouse(dir);
    const data = dataset();
    await load(wh, data);
    await load(wh, data); // inserting again adds nothing (insertId)
    assertKnownNumbers(await runReport(wh, 'ba-2026', 7 * DAY));
    const other = await runReport(wh, 'other-campaign', 7 * DAY);
    assert.deepEqual(other.arms.map((a) => [a.arm, a.customers, a.conversions, a.uplift]), [['A', 1, 1, null]]);
    assert.match(formatReport(other), /note: no holdout/);
  } finally {
    remove();
  }
});
