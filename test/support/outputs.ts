/** What a topology under the test driver wrote to the trigger and audit topics (read once, then gone). */
import type { Trigger, TriggerAudit } from '../../schemas/contract.js';
import type { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { AUDIT_TOPIC, TRIGGERS_TOPIC } from '../../topologies/common/campaign.js';

export function triggers(d: TopologyTestDriver): Trigger[] {
  return d.readOutput<Trigger>(TRIGGERS_TOPIC).map((o) => o.value);
}

export function audits(d: TopologyTestDriver): TriggerAudit[] {
  return d.readOutput<TriggerAudit>(AUDIT_TOPIC).map((o) => o.value);
}
