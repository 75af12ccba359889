import type { TopologyBuilder } from '../../src/engine/api/index.js';
import type { Channel } from '../../schemas/contract.js';

/** What every trigger topology gets from the campaign config, besides its own parameters (all times in ms). */
export interface CampaignSettings<P> {
  readonly campaignId: string;
  readonly channels: readonly Channel[];
  /** A trigger expires this long after it fired. */
  readonly expiresAfterMs: number;
  readonly params: P;
  /**
   * The node the topology forwards its triggers and audit records to (the shared guards stage) instead of
   * its own sinks to crm.triggers.v1 / crm.trigger-audit.v1. Unset: own sinks (tests of one topology).
   */
  readonly output?: string;
  /** The output is the guards stage, which audits every decision; otherwise the topology audits its own sends. */
  readonly guarded?: boolean;
}

export const TRIGGERS_TOPIC = 'crm.triggers.v1';
export const AUDIT_TOPIC = 'crm.trigger-audit.v1';

/** Where a topology's processor forwards triggers and audit records (child node names). */
export interface Outputs {
  readonly trigger: string;
  readonly audit: string;
}

export function outputsOf(name: string, settings: { readonly output?: string }): Outputs {
  return settings.output === undefined ? { trigger: `${name}.triggers`, audit: `${name}.audit` } : { trigger: settings.output, audit: settings.output };
}

/** After the emitting processor `name` was added: connects it to the guards stage, or adds its own sinks. */
export function wireOutputs(builder: TopologyBuilder, name: string, settings: { readonly output?: string }): void {
  if (settings.output !== undefined) {
    builder.connect(name, settings.output);
    return;
  }
  builder.addSink(`${name}.triggers`, TRIGGERS_TOPIC, [name]).addSink(`${name}.audit`, AUDIT_TOPIC, [name]);
}

/** A trigger topology: adds its processors, stores and sinks to a shared builder. */
export interface TopologyDefinition<P> {
  readonly name: string;
  readonly description: string;
  readonly defaults: P;
  build(builder: TopologyBuilder, settings: CampaignSettings<P>): void;
}
