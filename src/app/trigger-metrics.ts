/**
 * What the topologies decided, as Prometheus sees it: every audit record counts one decision by trigger type,
 * decision and reason; every trigger written observes how long after its event time it became durable.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Trigger, TriggerAudit } from '../../schemas/contract.js';
import type { OutputRecord } from '../engine/api/record.js';
import { AUDIT_TOPIC, TRIGGERS_TOPIC } from '../../topologies/common/campaign.js';

export function triggerMetrics(registry: Registry, clock: () => number = Date.now): (topic: string, record: OutputRecord) => void {
  const registers = [registry];
  const decisions = new Counter({
    name: 'kairos_triggers_total',
    help: 'Trigger decisions by type, decision (SENT, SUPPRESSED, HELD) and reason (ok, cap, quiet-hours, no-consent, holdout, cooldown, …)',
    labelNames: ['type', 'decision', 'reason'],
    registers,
  });
  const latency = new Histogram({
    name: 'kairos_trigger_latency_seconds',
    help: 'Event → trigger: wall-clock time the trigger was durably written minus its event time (the due time for timers), by type',
    labelNames: ['type'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900],
    registers,
  });
  return (topic, record) => {
    if (topic === AUDIT_TOPIC) {
      const a = record.value as TriggerAudit;
      decisions.inc({ type: a.type, decision: a.decision, reason: a.reason });
    } else if (topic === TRIGGERS_TOPIC) {
      const t = record.value as Trigger;
      latency.observe({ type: t.type }, Math.max(0, clock() - t.occurredAt) / 1000);
    }
  };
}
