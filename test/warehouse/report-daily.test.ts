/** The results page's per-day report: its SQL (parameterised, one statement) and its TypeScript model, whose days add up to the report's arms. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REPORT_DAILY_LABEL, reportDailySql, Z_95 } from '../../src/warehouse/report.js';
import { evaluateDailyReport, evaluateReport } from '../../src/warehouse/report-model.js';
import { mulberry32 } from '../../src/util/prng.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 20, 12);

test('daily report SQL: parameters only, quoted tables, one balanced statement with the columns the parser reads', () => {
  const sql = reportDailySql({ triggers: '`p.d.triggers`', audit: '`p.d.trigger_audit`', orders: '`p.d.orders`' });
  assert.match(sql, new RegExp(`^-- ${REPORT_DAILY_LABEL}`));
  for (const p of ['@campaign_id', '@window_ms']) assert.ok(sql.includes(p), p);
  assert.match(sql, /FROM `p\.d\.triggers`/);
  assert.match(sql, /LEFT JOIN `p\.d\.orders` AS o/);
  assert.match(sql, /FORMAT_TIMESTAMP\('%F', occurredAt, 'UTC'\) AS day/);
  let depth = 0;
  for (const ch of sql) {
    depth += ch === '(' ? 1 : ch === ')' ? -1 : 0;
    assert.ok(depth >= 0);
  }
  assert.equal(depth, 0);
  assert.equal(sql.split(';').length, 1);
  for (const c of ['day', 'arm', 'is_holdout', 'sends', 'exposed', 'conversions']) assert.match(sql, new RegExp(`AS ${c}\\b`), c);
});

test('per day and arm: sends count every trigger, exposures and conversions add up to the report\'s arms', () => {
  const rnd = mulberry32(18);
  const triggers: Record<string, unknown>[] = [];
  const audit: Record<string, unknown>[] = [];
  const orders: Record<string, unknown>[] = [];
  for (let i = 0; i < 400; i++) {
    const customerId = `c${Math.floor(rnd() * 120)}`;
    const at = T0 + Math.floor(rnd() * 5 * DAY);
    const arm = rnd();
    if (arm < 0.2) audit.push({ customerId, campaignId: 'x', decision: 'SUPPRESSED', reason: 'holdout', occurredAt: new Date(at).toISOString() });
    else if (arm < 0.25) audit.push({ customerId, campaignId: 'x', decision: 'SUPPRESSED', reason: 'cap', occurredAt: at });
    else triggers.push({ customerId, campaignId: rnd() < 0.1 ? 'other' : 'x', variant: arm < 0.6 ? 'A' : 'B', occurredAt: at });
    if (rnd() < 0.3) orders.push({ customerId, occurredAt: at + Math.floor(rnd() * 3 * DAY) });
  }
  const input = { triggers, audit, orders };
  const daily = evaluateDailyReport(input, { campaign_id: 'x', window_ms: 2 * DAY });
  const arms = evaluateReport(input, { campaign_id: 'x', window_ms: 2 * DAY, z: Z_95 });
  assert.ok(new Set(daily.map((d) => d.day)).size >= 5);
  for (const a of arms) {
    const mine = daily.filter((d) => d.arm === a.arm);
    assert.equal(mine.reduce((s, d) => s + Number(d.exposed), 0), a.customers, `${String(a.arm)} exposed`);
    assert.equal(mine.reduce((s, d) => s + Number(d.conversions), 0), a.conversions, `${String(a.arm)} conversions`);
  }
  const sends = (arm: string) => daily.filter((d) => d.arm === arm).reduce((s, d) => s + Number(d.sends), 0);
  assert.equal(sends('A') + sends('B'), triggers.filter((t) => t.campaignId === 'x').length);
  assert.equal(sends('holdout'), audit.filter((a) => a.reason === 'holdout').length);
  // Days in order, the holdout first within a day.
  const keys = daily.map((d) => `${String(d.day)} ${d.is_holdout === true ? 0 : 1} ${String(d.arm)}`);
  assert.deepEqual(keys, [...keys].sort());
});
