import type { TopologyBuilder } from '../../src/engine/api/index.js';
import type { Channel } from '../../schemas/contract.js';

/** What every trigger topology gets from the campaign config, besides its own parameters (all times in ms). */
export interface CampaignSettings<P> {
  readonly campaignId: string;
  readonly channels: readonly Channel[];
  /** A trigger expires this long after it fired. */
  readonly expiresAfterMs: number;
  readonly params: P;
}

/** A trigger topology: adds its processors, stores and sinks to a shared builder. */
export interface TopologyDefinition<P> {
  readonly name: string;
  readonly description: string;
  readonly defaults: P;
  build(builder: TopologyBuilder, settings: CampaignSettings<P>): void;
}
