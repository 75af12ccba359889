/** Composes the enabled trigger topologies into the one topology every runner executes. */
import { TopologyBuilder, type Topology } from '../engine/api/index.js';
import type { CampaignsConfig } from '../config/campaigns.js';
import { basketAbandonment } from '../../topologies/basket-abandonment/index.js';

export const APPLICATION_ID = 'kairos';

export function buildTopology(config: CampaignsConfig, applicationId = APPLICATION_ID): Topology {
  const builder = new TopologyBuilder(applicationId);
  const ba = config.basketAbandonment;
  if (ba?.enabled) basketAbandonment.build(builder, ba);
  return builder.build();
}
