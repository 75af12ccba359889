/** Composes the guards and the enabled trigger topologies into the one topology every runner executes. */
import { TopologyBuilder, type Topology } from '../engine/api/index.js';
import type { CampaignsConfig } from '../config/campaigns.js';
import type { CampaignGuards } from '../../topologies/common/guards.js';
import { addGuards } from '../../topologies/common/guards.js';
import { basketAbandonment } from '../../topologies/basket-abandonment/index.js';
import { browseAbandonment } from '../../topologies/browse-abandonment/index.js';
import { basketPriceDrop } from '../../topologies/basket-price-drop/index.js';

export const APPLICATION_ID = 'kairos';

export function buildTopology(config: CampaignsConfig, applicationId = APPLICATION_ID): Topology {
  const builder = new TopologyBuilder(applicationId);
  const enabled = [config.basketAbandonment, config.browseAbandonment, config.basketPriceDrop].filter((c) => c?.enabled === true);
  // The guards come first, so each topology can connect its output to them.
  const output = config.guards
    ? addGuards(builder, { ...config.guards, campaigns: new Map<string, CampaignGuards>(enabled.map((c) => [c?.campaignId as string, c?.guards ?? {}])) })
    : undefined;
  const ba = config.basketAbandonment;
  if (ba?.enabled) basketAbandonment.build(builder, output === undefined ? ba : { ...ba, output });
  const bra = config.browseAbandonment;
  if (bra?.enabled) browseAbandonment.build(builder, output === undefined ? bra : { ...bra, output });
  const pd = config.basketPriceDrop;
  if (pd?.enabled) basketPriceDrop.build(builder, output === undefined ? pd : { ...pd, output });
  return builder.build();
}
