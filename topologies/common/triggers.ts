import { createHash } from 'node:crypto';
import type { RecordOrigin } from '../../src/engine/api/index.js';
import type { Trigger, TriggerAudit, TriggerType } from '../../schemas/contract.js';

export type CausedBy = Trigger['causedBy'];

/**
 * Deterministic trigger id: a hash of topology, customer, type and causing event, so a replay or a retry
 * produces the same id and consumers can dedupe.
 */
export function triggerId(topology: string, customerId: string, type: TriggerType, causingEventId: string): string {
  return createHash('sha256').update(`${topology}\u0000${customerId}\u0000${type}\u0000${causingEventId}`).digest('hex').slice(0, 32);
}

export function causedBy(eventId: string, origin: RecordOrigin): CausedBy {
  return { eventId, topic: origin.topic, partition: origin.partition, offset: origin.offset };
}

export function auditOf(trigger: Trigger, decision: TriggerAudit['decision'], reason: string, detail?: string): TriggerAudit {
  const auditId = createHash('sha256').update(`${trigger.triggerId}\u0000${decision}\u0000${reason}`).digest('hex').slice(0, 32);
  return {
    auditId,
    triggerId: trigger.triggerId,
    type: trigger.type,
    customerId: trigger.customerId,
    occurredAt: trigger.occurredAt,
    campaignId: trigger.campaignId,
    variant: trigger.variant,
    decision,
    reason,
    ...(detail === undefined ? {} : { detail }),
    causedBy: trigger.causedBy,
    explanation: trigger.explanation,
  };
}
