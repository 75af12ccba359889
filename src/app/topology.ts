/** Composes the guards and the enabled trigger topologies into the one topology every runner executes. */
import { TopologyBuilder, type Topology } from '../engine/api/index.js';
import type { CampaignsConfig } from '../config/campaigns.js';
import { LiveCampaigns } from '../config/live.js';
import { addGuards } from '../../topologies/common/guards.js';
import { addHistory } from '../../topologies/common/history.js';
import { addInputDedup, type InputDuplicate } from '../../topologies/common/dedup.js';
import { basketAbandonment } from '../../topologies/basket-abandonment/index.js';
import { browseAbandonment } from '../../topologies/browse-abandonment/index.js';
import { basketPriceDrop } from '../../topologies/basket-price-drop/index.js';
import { wishlistRestock } from '../../topologies/wishlist-restock/index.js';

export const APPLICATION_ID = 'kairos';

export interface BuildOptions {
  /** Called for every input record dropped as a redelivery (the metric, replay's summary). */
  readonly onInputDuplicate?: (d: InputDuplicate) => void;
}

/**
 * The topology of a campaign config. Given a LiveCampaigns, parameters, channels, experiments, audiences and
 * guard settings follow its reloads; which topologies exist is fixed here.
 */
export function buildTopology(config: CampaignsConfig | LiveCampaigns, applicationId = APPLICATION_ID, options: BuildOptions = {}): Topology {
  const live = config instanceof LiveCampaigns ? config : new LiveCampaigns(config);
  const c = live.current;
  const builder = new TopologyBuilder(applicationId);
  // Before any source: every input topic with eventIds passes its dedup stage once, whichever topologies read it.
  addInputDedup(builder, { windowMs: c.input.dedupWindowMs, ...(options.onInputDuplicate ? { onDuplicate: options.onInputDuplicate } : {}) });
  // The output stages come first, so each topology can connect to them: history (recent triggers and decisions
  // per customer, for the query API) and before it the guards, when they are on.
  const history = addHistory(builder);
  const guards = live.guards();
  const output = guards ? addGuards(builder, guards, history) : history;
  if (c.basketAbandonment?.enabled) basketAbandonment.build(builder, live.settings('basketAbandonment', output, guards !== undefined));
  if (c.browseAbandonment?.enabled) browseAbandonment.build(builder, live.settings('browseAbandonment', output, guards !== undefined));
  if (c.basketPriceDrop?.enabled) basketPriceDrop.build(builder, live.settings('basketPriceDrop', output, guards !== undefined));
  if (c.wishlistRestock?.enabled) wishlistRestock.build(builder, live.settings('wishlistRestock', output, guards !== undefined));
  return builder.build();
}
