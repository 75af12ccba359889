import { hash } from 'node:crypto';
import type { RecordOrigin } from '../../src/engine/api/index.js';
import type { Trigger, TriggerAudit, TriggerType } from '../../schemas/contract.js';

export type CausedBy = Trigger['causedBy'];

/**
 * Deterministic trigger id: a hash of topology, customer, type and causing event, so a replay or a retry
 * produces the same id and consumers can dedupe.
 */
export function triggerId(topology: string, customerId: string, type: TriggerType, causingEventId: string): string {
  return sha256Hex(`${topology}\u0000${customerId}\u0000${type}\u0000${causingEventId}`).slice(0, 32);
}

/** SHA-256 of a UTF-8 string, in hex: the one-shot `crypto.hash` (no Hash object per id; hot in fan-outs). */
export function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex');
}

export function causedBy(eventId: string, origin: RecordOrigin): CausedBy {
  return { eventId, topic: origin.topic, partition: origin.partition, offset: origin.offset };
}

export function auditOf(trigger: Trigger, decision: TriggerAudit['decision'], reason: string, detail?: string): TriggerAudit {
  const auditId = sha256Hex(`${trigger.triggerId}\u0000${decision}\u0000${reason}`).slice(0, 32);
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
