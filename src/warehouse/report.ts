/**
 * The A/B and holdout report of one campaign (`kairos report --campaign X`), computed by one parameterised
 * standard-SQL query in the warehouse.
 *
 * Unit: the customer. A customer is exposed to an arm at their first trigger of the campaign (arm = its variant)
 * or their first holdout decision (an audit record SUPPRESSED with reason `holdout`, arm `holdout`). A customer
 * converts when they place an order in [exposure, exposure + window). Per arm: customers, conversions, rate;
 * per variant: uplift = rate − holdout rate, with a confidence interval by the normal approximation for the
 * difference of two independent proportions: se = √(p₁(1−p₁)/n₁ + p₀(1−p₀)/n₀), CI = uplift ± z·se.
 */
import { KairosError } from '../errors.js';
import type { QueryRow, Warehouse, WarehouseQuery } from './warehouse.js';

export const REPORT_LABEL = 'kairos-report';
/** z for a two-sided 95 % interval. */
export const Z_95 = 1.959964;

/**
 * The report SQL. Table names come from the configured project and dataset (validated identifiers, quoted);
 * every input is a query parameter (@campaign_id, @window_ms, @z), never spliced into the text.
 */
/** The CTEs both reports start from: each customer's first exposure per arm (a send, or the holdout's suppression). */
function exposureCtes(tables: { triggers: string; audit: string }): string {
  return `exposures AS (
  SELECT customerId, variant AS arm, FALSE AS is_holdout, occurredAt
  FROM ${tables.triggers}
  WHERE campaignId = @campaign_id
  UNION ALL
  SELECT customerId, 'holdout' AS arm, TRUE AS is_holdout, occurredAt
  FROM ${tables.audit}
  WHERE campaignId = @campaign_id AND decision = 'SUPPRESSED' AND reason = 'holdout'
),
first_exposure AS (
  SELECT customerId, arm, is_holdout, MIN(occurredAt) AS exposedAt
  FROM exposures
  GROUP BY customerId, arm, is_holdout
)`;
}

export function reportSql(tables: { triggers: string; audit: string; orders: string }): string {
  const se = 'SQRT(a.rate * (1 - a.rate) / a.customers + h.h_rate * (1 - h.h_rate) / h.h_customers)';
  return `-- ${REPORT_LABEL}: A/B and holdout conversions of one campaign
WITH ${exposureCtes(tables)},
outcomes AS (
  SELECT e.arm, e.is_holdout, e.customerId, LOGICAL_OR(o.orderId IS NOT NULL) AS converted
  FROM first_exposure AS e
  LEFT JOIN ${tables.orders} AS o
    ON o.customerId = e.customerId
    AND o.occurredAt >= e.exposedAt
    AND o.occurredAt < TIMESTAMP_ADD(e.exposedAt, INTERVAL @window_ms MILLISECOND)
  GROUP BY e.arm, e.is_holdout, e.customerId
),
arms AS (
  SELECT arm, is_holdout, COUNT(*) AS customers, COUNTIF(converted) AS conversions, COUNTIF(converted) / COUNT(*) AS rate
  FROM outcomes
  GROUP BY arm, is_holdout
),
holdout AS (
  SELECT SUM(customers) AS h_customers, SAFE_DIVIDE(SUM(conversions), SUM(customers)) AS h_rate
  FROM arms
  WHERE is_holdout
)
SELECT
  a.arm,
  a.is_holdout,
  a.customers,
  a.conversions,
  a.rate,
  IF(a.is_holdout, NULL, a.rate - h.h_rate) AS uplift,
  IF(a.is_holdout, NULL, SAFE_DIVIDE(a.rate - h.h_rate, h.h_rate)) AS relative_uplift,
  IF(a.is_holdout, NULL, ${se}) AS std_error,
  IF(a.is_holdout, NULL, a.rate - h.h_rate - @z * ${se}) AS ci_low,
  IF(a.is_holdout, NULL, a.rate - h.h_rate + @z * ${se}) AS ci_high
FROM arms AS a
CROSS JOIN holdout AS h
ORDER BY a.is_holdout DESC, a.arm
`;
}

export const REPORT_DAILY_LABEL = 'kairos-report-daily';

/**
 * The report per day (UTC) and arm: `sends` = the arm's triggers that day (the holdout's: its holdout
 * decisions), `exposed` = customers first exposed that day, `conversions` = those of them who ordered within the
 * window (the report's unit, split by the day of exposure, so the days add up to the report's arms).
 */
export function reportDailySql(tables: { triggers: string; audit: string; orders: string }): string {
  return `-- ${REPORT_DAILY_LABEL}: per day and arm, sends, customers first exposed and their conversions
WITH ${exposureCtes(tables)},
outcomes AS (
  SELECT e.arm, e.is_holdout, e.customerId, e.exposedAt, LOGICAL_OR(o.orderId IS NOT NULL) AS converted
  FROM first_exposure AS e
  LEFT JOIN ${tables.orders} AS o
    ON o.customerId = e.customerId
    AND o.occurredAt >= e.exposedAt
    AND o.occurredAt < TIMESTAMP_ADD(e.exposedAt, INTERVAL @window_ms MILLISECOND)
  GROUP BY e.arm, e.is_holdout, e.customerId, e.exposedAt
),
sends AS (
  SELECT FORMAT_TIMESTAMP('%F', occurredAt, 'UTC') AS day, arm, is_holdout, COUNT(*) AS sends
  FROM exposures
  GROUP BY day, arm, is_holdout
),
firsts AS (
  SELECT FORMAT_TIMESTAMP('%F', exposedAt, 'UTC') AS day, arm, is_holdout, COUNT(*) AS exposed, COUNTIF(converted) AS conversions
  FROM outcomes
  GROUP BY day, arm, is_holdout
)
SELECT
  COALESCE(s.day, f.day) AS day,
  COALESCE(s.arm, f.arm) AS arm,
  COALESCE(s.is_holdout, f.is_holdout) AS is_holdout,
  COALESCE(s.sends, 0) AS sends,
  COALESCE(f.exposed, 0) AS exposed,
  COALESCE(f.conversions, 0) AS conversions
FROM sends AS s
FULL OUTER JOIN firsts AS f
  ON s.day = f.day AND s.arm = f.arm AND s.is_holdout = f.is_holdout
ORDER BY day, is_holdout DESC, arm
`;
}

export function reportDailyQuery(warehouse: Warehouse, campaignId: string, windowMs: number): WarehouseQuery {
  return {
    label: REPORT_DAILY_LABEL,
    sql: reportDailySql({ triggers: warehouse.tableRef('triggers'), audit: warehouse.tableRef('trigger_audit'), orders: warehouse.tableRef('orders') }),
    params: { campaign_id: campaignId, window_ms: windowMs },
  };
}

export interface DailyArm {
  /** UTC day, YYYY-MM-DD. */
  readonly day: string;
  readonly arm: string;
  readonly isHoldout: boolean;
  readonly sends: number;
  readonly exposed: number;
  readonly conversions: number;
}

export async function runDailyReport(warehouse: Warehouse, campaignId: string, windowMs: number): Promise<DailyArm[]> {
  const rows = await warehouse.query(reportDailyQuery(warehouse, campaignId, windowMs));
  return rows.map((r) => ({
    day: String(r.day),
    arm: String(r.arm),
    isHoldout: r.is_holdout === true || r.is_holdout === 'true',
    sends: Number(r.sends),
    exposed: Number(r.exposed),
    conversions: Number(r.conversions),
  }));
}

export function reportQuery(warehouse: Warehouse, campaignId: string, windowMs: number): WarehouseQuery {
  return {
    label: REPORT_LABEL,
    sql: reportSql({ triggers: warehouse.tableRef('triggers'), audit: warehouse.tableRef('trigger_audit'), orders: warehouse.tableRef('orders') }),
    params: { campaign_id: campaignId, window_ms: windowMs, z: Z_95 },
  };
}

export interface ArmResult {
  readonly arm: string;
  readonly isHoldout: boolean;
  readonly customers: number;
  readonly conversions: number;
  readonly rate: number;
  /** Rate difference to the holdout; null for the holdout and when there is none. */
  readonly uplift: number | null;
  readonly relativeUplift: number | null;
  readonly stdError: number | null;
  readonly ciLow: number | null;
  readonly ciHigh: number | null;
}

export interface Report {
  readonly campaignId: string;
  readonly windowMs: number;
  readonly confidence: 0.95;
  readonly method: string;
  readonly arms: readonly ArmResult[];
}

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** Result rows (as the client parses them, or as result-shaped objects) to arms. */
export function armsFromRows(rows: readonly QueryRow[]): ArmResult[] {
  return rows.map((r) => ({
    arm: String(r.arm),
    isHoldout: r.is_holdout === true || r.is_holdout === 'true',
    customers: Number(r.customers),
    conversions: Number(r.conversions),
    rate: Number(r.rate),
    uplift: num(r.uplift),
    relativeUplift: num(r.relative_uplift),
    stdError: num(r.std_error),
    ciLow: num(r.ci_low),
    ciHigh: num(r.ci_high),
  }));
}

export async function runReport(warehouse: Warehouse, campaignId: string, windowMs: number): Promise<Report> {
  if (campaignId.trim() === '') throw new KairosError('KAIROS_ERR_USAGE', '--campaign must not be empty');
  const rows = await warehouse.query(reportQuery(warehouse, campaignId, windowMs));
  return {
    campaignId,
    windowMs,
    confidence: 0.95,
    method: 'customers exposed at their first trigger or holdout decision; converted = an order within the window; uplift = rate − holdout rate, 95 % CI by the normal approximation for two proportions',
    arms: armsFromRows(rows),
  };
}

const pct = (x: number | null, sign = false): string => (x === null ? '' : `${sign && x >= 0 ? '+' : ''}${(x * 100).toFixed(2)}%`);
const pp = (x: number | null): string => (x === null ? '' : `${x >= 0 ? '+' : ''}${(x * 100).toFixed(2)}`);

/** The report as a text table. */
export function formatReport(r: Report): string {
  const head = ['arm', 'customers', 'conversions', 'rate', 'uplift (pp)', '95% CI (pp)', 'relative'];
  const body = r.arms.map((a) => [
    a.isHoldout ? `${a.arm} (holdout)` : a.arm,
    String(a.customers),
    String(a.conversions),
    pct(a.rate),
    pp(a.uplift),
    a.ciLow === null || a.ciHigh === null ? '' : `[${pp(a.ciLow)}, ${pp(a.ciHigh)}]`,
    pct(a.relativeUplift, true),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ').trimEnd();
  const w = r.windowMs;
  const window = w % 86_400_000 === 0 ? `${w / 86_400_000}d` : w % 3_600_000 === 0 ? `${w / 3_600_000}h` : w % 60_000 === 0 ? `${w / 60_000}m` : `${w} ms`;
  const title = `campaign ${r.campaignId} · attribution window ${window}`;
  const notes: string[] = [];
  if (r.arms.length === 0) notes.push('no triggers or holdout decisions for this campaign');
  else if (!r.arms.some((a) => a.isHoldout)) notes.push('no holdout: uplift needs a holdout share in the campaign experiment');
  return [title, line(head), ...body.map(line), ...notes.map((n) => `note: ${n}`)].join('\n') + '\n';
}
