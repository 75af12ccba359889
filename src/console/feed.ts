/**
 * What the live page shows: the instance's guard decisions as its tasks write them. Fed from the runner's
 * output hook (the one the trigger metrics use), so it costs one array slot and one counter per audit record
 * on the engine's path: no allocation, no I/O, no await. Readers (the SSE streams) poll it on their own timer
 * and take at most a bounded number of entries per poll; what they skip is counted, never queued.
 */
import type { TriggerAudit } from '../../schemas/contract.js';
import type { OutputRecord } from '../engine/api/record.js';
import { AUDIT_TOPIC } from '../../topologies/common/campaign.js';

export interface FeedEntry {
  readonly seq: number;
  readonly customerId: string;
  readonly type: string;
  readonly campaignId: string;
  readonly variant: string;
  readonly decision: string;
  readonly reason: string;
  readonly detail: string | undefined;
  readonly occurredAt: number;
  readonly triggerId: string;
}

export interface FeedFilter {
  readonly campaign?: string | undefined;
  readonly type?: string | undefined;
  readonly customer?: string | undefined;
}

/** @default 2048 entries kept */
export const FEED_CAPACITY = 2048;

export class LiveFeed {
  readonly #ring: (TriggerAudit | undefined)[];
  /** Sequence number of the next record (the first is 1). */
  #next = 1;
  /** type → decision → count: after the first of each, counting allocates nothing. */
  readonly #counts = new Map<string, Map<string, number>>();

  constructor(capacity = FEED_CAPACITY) {
    this.#ring = new Array<TriggerAudit | undefined>(capacity).fill(undefined);
  }

  /** The runner's output hook: keeps audit records (a reference: output records are not changed afterwards). */
  observe(topic: string, record: OutputRecord): void {
    if (topic !== AUDIT_TOPIC) return;
    const a = record.value as TriggerAudit;
    this.#ring[this.#next % this.#ring.length] = a;
    this.#next++;
    let byDecision = this.#counts.get(a.type);
    if (byDecision === undefined) this.#counts.set(a.type, (byDecision = new Map()));
    byDecision.set(a.decision, (byDecision.get(a.decision) ?? 0) + 1);
  }

  /** Sequence number of the newest entry (0 before any). */
  get last(): number {
    return this.#next - 1;
  }

  /** Decisions since this instance started, per type and decision. */
  counts(): { type: string; decision: string; count: number }[] {
    return [...this.#counts]
      .flatMap(([type, byDecision]) => [...byDecision].map(([decision, count]) => ({ type, decision, count })))
      .sort((a, b) => a.type.localeCompare(b.type) || a.decision.localeCompare(b.decision));
  }

  /**
   * Entries after `after` that match `filter`, oldest first, at most `max` (the newest ones when more match:
   * a slow or late reader sees the present, and how many it skipped).
   */
  read(after: number, filter: FeedFilter, max: number): { entries: FeedEntry[]; skipped: number; last: number } {
    const last = this.last;
    const first = Math.max(after + 1, last - this.#ring.length + 1, 1);
    const matched: FeedEntry[] = [];
    let skipped = Math.max(0, first - after - 1);
    for (let seq = first; seq <= last; seq++) {
      const a = this.#ring[seq % this.#ring.length];
      if (a === undefined) continue;
      if (filter.campaign && a.campaignId !== filter.campaign) continue;
      if (filter.type && a.type !== filter.type) continue;
      if (filter.customer && a.customerId !== filter.customer) continue;
      matched.push({
        seq,
        customerId: a.customerId,
        type: a.type,
        campaignId: a.campaignId,
        variant: a.variant,
        decision: a.decision,
        reason: a.reason,
        detail: a.detail,
        occurredAt: a.occurredAt,
        triggerId: a.triggerId,
      });
    }
    if (matched.length > max) {
      skipped += matched.length - max;
      matched.splice(0, matched.length - max);
    }
    return { entries: matched, skipped, last };
  }
}
