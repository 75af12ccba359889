/** A small A/B dataset in the embedded NDJSON warehouse, for the console's results page. */
import type { OrderEvent, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { NdjsonWarehouse } from '../../src/warehouse/ndjson-sink.js';
import { TABLES, toRow } from '../../src/warehouse/tables.js';
import { sampleOf } from './samples.js';

/**
 * Campaign c-1 at `t0`: variant A (a1, a2; a1 orders an hour later) and a holdout (h1, h2; no orders); a day
 * later a1 gets a second trigger of A and h1 a second holdout decision (sends, not new exposures).
 */
export async function abWarehouse(dir: string, t0: number): Promise<NdjsonWarehouse> {
  const wh = new NdjsonWarehouse(dir);
  await wh.ensureTables(Object.values(TABLES));
  const at = { partition: 0, offset: '0' };
  const day = 86_400_000;
  const triggers = (['a1', 'a2', 'a1'] as const).map((c, i): Trigger => ({ ...sampleOf('crm.triggers.v1'), triggerId: `t${i}`, customerId: c, campaignId: 'c-1', variant: 'A', occurredAt: i === 2 ? t0 + day : t0 }));
  const holdouts = (['h1', 'h2', 'h1'] as const).map((c, i): TriggerAudit => ({ ...sampleOf('crm.trigger-audit.v1'), auditId: `h${i}`, customerId: c, campaignId: 'c-1', variant: 'holdout', decision: 'SUPPRESSED', reason: 'holdout', occurredAt: i === 2 ? t0 + day : t0 }));
  const order: OrderEvent = { ...sampleOf('shop.orders.v1'), eventId: 'o1', orderId: 'ord1', customerId: 'a1', occurredAt: t0 + 3_600_000 };
  await wh.insert(TABLES.triggers, triggers.map((t) => ({ insertId: t.triggerId, json: toRow(TABLES.triggers, t, at, 0) })));
  await wh.insert(TABLES.trigger_audit, holdouts.map((a) => ({ insertId: a.auditId, json: toRow(TABLES.trigger_audit, a, at, 0) })));
  await wh.insert(TABLES.orders, [{ insertId: order.eventId, json: toRow(TABLES.orders, order, at, 0) }]);
  return wh;
}
