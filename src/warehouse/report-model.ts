/**
 * The report query (report.ts) evaluated in TypeScript over stored rows: what the NDJSON demo warehouse answers
 * instead of running SQL, and what the tests' local BigQuery server answers for the `kairos-report` label.
 * It mirrors the SQL step by step; only real BigQuery runs the SQL itself.
 */
import type { QueryRow } from './warehouse.js';

type Row = Readonly<Record<string, unknown>>;

const time = (v: unknown): number => (typeof v === 'number' ? v : Date.parse(String(v)));

export interface ReportInput {
  readonly triggers: readonly Row[];
  readonly audit: readonly Row[];
  readonly orders: readonly Row[];
}

/** Result rows with the columns of the SQL (arm, is_holdout, customers, …, ci_high), in its order. */
export function evaluateReport(input: ReportInput, params: { campaign_id: string; window_ms: number; z: number }): QueryRow[] {
  const first = new Map<string, { arm: string; isHoldout: boolean; customerId: string; at: number }>();
  const expose = (customerId: string, arm: string, isHoldout: boolean, at: number): void => {
    const key = `${arm}\0${String(isHoldout)}\0${customerId}`;
    const prev = first.get(key);
    if (prev === undefined || at < prev.at) first.set(key, { arm, isHoldout, customerId, at });
  };
  for (const t of input.triggers) if (t.campaignId === params.campaign_id) expose(String(t.customerId), String(t.variant), false, time(t.occurredAt));
  for (const a of input.audit) {
    if (a.campaignId === params.campaign_id && a.decision === 'SUPPRESSED' && a.reason === 'holdout') expose(String(a.customerId), 'holdout', true, time(a.occurredAt));
  }
  const ordersBy = new Map<string, number[]>();
  for (const o of input.orders) {
    const list = ordersBy.get(String(o.customerId)) ?? [];
    list.push(time(o.occurredAt));
    ordersBy.set(String(o.customerId), list);
  }
  const arms = new Map<string, { arm: string; isHoldout: boolean; customers: number; conversions: number }>();
  for (const e of first.values()) {
    const converted = (ordersBy.get(e.customerId) ?? []).some((t) => t >= e.at && t < e.at + params.window_ms);
    const key = `${e.arm}\0${String(e.isHoldout)}`;
    const a = arms.get(key) ?? { arm: e.arm, isHoldout: e.isHoldout, customers: 0, conversions: 0 };
    a.customers++;
    if (converted) a.conversions++;
    arms.set(key, a);
  }
  const list = [...arms.values()];
  const held = list.filter((a) => a.isHoldout);
  const hN = held.reduce((s, a) => s + a.customers, 0);
  const hRate = hN === 0 ? null : held.reduce((s, a) => s + a.conversions, 0) / hN;
  return list
    .sort((x, y) => (x.isHoldout === y.isHoldout ? (x.arm < y.arm ? -1 : x.arm > y.arm ? 1 : 0) : x.isHoldout ? -1 : 1))
    .map((a) => {
      const rate = a.conversions / a.customers;
      if (a.isHoldout || hRate === null) {
        return { arm: a.arm, is_holdout: a.isHoldout, customers: a.customers, conversions: a.conversions, rate, uplift: null, relative_uplift: null, std_error: null, ci_low: null, ci_high: null };
      }
      const uplift = rate - hRate;
      const se = Math.sqrt((rate * (1 - rate)) / a.customers + (hRate * (1 - hRate)) / hN);
      return {
        arm: a.arm,
        is_holdout: false,
        customers: a.customers,
        conversions: a.conversions,
        rate,
        uplift,
        relative_uplift: hRate === 0 ? null : uplift / hRate,
        std_error: se,
        ci_low: uplift - params.z * se,
        ci_high: uplift + params.z * se,
      };
    });
}

/** The daily report query (reportDailySql) evaluated over stored rows: day, arm, is_holdout, sends, exposed, conversions. */
export function evaluateDailyReport(input: ReportInput, params: { campaign_id: string; window_ms: number }): QueryRow[] {
  const day = (t: number): string => new Date(t).toISOString().slice(0, 10);
  const exposures: { customerId: string; arm: string; isHoldout: boolean; at: number }[] = [];
  for (const t of input.triggers) if (t.campaignId === params.campaign_id) exposures.push({ customerId: String(t.customerId), arm: String(t.variant), isHoldout: false, at: time(t.occurredAt) });
  for (const a of input.audit) {
    if (a.campaignId === params.campaign_id && a.decision === 'SUPPRESSED' && a.reason === 'holdout') exposures.push({ customerId: String(a.customerId), arm: 'holdout', isHoldout: true, at: time(a.occurredAt) });
  }
  const out = new Map<string, { day: string; arm: string; is_holdout: boolean; sends: number; exposed: number; conversions: number }>();
  const cell = (d: string, arm: string, isHoldout: boolean) => {
    const key = `${d}\0${arm}\0${String(isHoldout)}`;
    let c = out.get(key);
    if (c === undefined) out.set(key, (c = { day: d, arm, is_holdout: isHoldout, sends: 0, exposed: 0, conversions: 0 }));
    return c;
  };
  const first = new Map<string, { customerId: string; arm: string; isHoldout: boolean; at: number }>();
  for (const e of exposures) {
    cell(day(e.at), e.arm, e.isHoldout).sends++;
    const key = `${e.arm}\0${String(e.isHoldout)}\0${e.customerId}`;
    const prev = first.get(key);
    if (prev === undefined || e.at < prev.at) first.set(key, e);
  }
  const ordersBy = new Map<string, number[]>();
  for (const o of input.orders) ordersBy.set(String(o.customerId), [...(ordersBy.get(String(o.customerId)) ?? []), time(o.occurredAt)]);
  for (const e of first.values()) {
    const c = cell(day(e.at), e.arm, e.isHoldout);
    c.exposed++;
    if ((ordersBy.get(e.customerId) ?? []).some((t) => t >= e.at && t < e.at + params.window_ms)) c.conversions++;
  }
  const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  return [...out.values()].sort((a, b) => cmp(a.day, b.day) || (a.is_holdout === b.is_holdout ? cmp(a.arm, b.arm) : a.is_holdout ? -1 : 1));
}

/** The result columns and their BigQuery types. */
export const REPORT_COLUMNS = [
  { name: 'arm', type: 'STRING' },
  { name: 'is_holdout', type: 'BOOLEAN' },
  { name: 'customers', type: 'INTEGER' },
  { name: 'conversions', type: 'INTEGER' },
  { name: 'rate', type: 'FLOAT' },
  { name: 'uplift', type: 'FLOAT' },
  { name: 'relative_uplift', type: 'FLOAT' },
  { name: 'std_error', type: 'FLOAT' },
  { name: 'ci_low', type: 'FLOAT' },
  { name: 'ci_high', type: 'FLOAT' },
] as const;
