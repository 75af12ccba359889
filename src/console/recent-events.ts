/**
 * The customer page's recent events. The engine does not keep input events: each topology keeps the state they
 * left (basket, wishlist, browsing session, profile), and the input deduplication stage keeps, per record key
 * and input topic, the eventIds it saw within its window (topologies/common/dedup.ts) with the stream time it
 * first saw each. That is what this lists: which of the customer's events reached the engine recently, and
 * when. It reads the customer's task where this instance holds it (active or standby); another instance's
 * customer is answered by that instance's console.
 */
import type { StateReader } from '../engine/state/reader.js';
import { DEDUP_TOPICS, dedupStore, type SeenEvents } from '../../topologies/common/dedup.js';

/** At most this many events are listed (newest first). */
export const MAX_RECENT_EVENTS = 50;

export interface RecentEvent {
  readonly topic: string;
  readonly eventId: string;
  /** The task's stream time when the event was first seen (epoch ms). */
  readonly seenAt: number;
}

export type RecentEvents =
  | { readonly local: true; readonly partition: number; readonly windowMs: number; readonly events: readonly RecentEvent[]; readonly more: number }
  | { readonly local: false; readonly partition: number | undefined };

/** The customer's recently seen input events from the dedup stores of `reader` (the customer's task). */
export async function recentEvents(reader: StateReader, customerId: string, windowMs: number): Promise<RecentEvents> {
  const all: RecentEvent[] = [];
  for (const topic of DEDUP_TOPICS) {
    // crm.customers.v1 carries no eventId, and shop.catalog.v1 is keyed by sku: neither is the customer's.
    if (topic === 'shop.catalog.v1') continue;
    const seen: SeenEvents | undefined = await reader.get(dedupStore(topic, windowMs), customerId);
    for (const [eventId, e] of seen ?? []) if (reader.streamTime - e.at < windowMs) all.push({ topic, eventId, seenAt: e.at });
  }
  all.sort((a, b) => b.seenAt - a.seenAt || (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
  return { local: true, partition: reader.partition, windowMs, events: all.slice(0, MAX_RECENT_EVENTS), more: Math.max(0, all.length - MAX_RECENT_EVENTS) };
}
