/**
 * "Why did this customer not get a <type>?", per trigger type, from what the history stage recorded (the
 * newest decision on that type) and the customer's pending timers: the answer a campaign manager reads on the
 * customer page. Nothing here re-decides; it reads the guards' and topologies' own reasons and turns their
 * details into times ("cooldown until", "quiet hours until", "cap: next send possible at").
 */
import type { CampaignsConfig } from '../config/campaigns.js';
import type { RecentDecision, RecentTrigger } from '../../topologies/common/history.js';
import type { TimerInfo } from '../engine/state/reader.js';

export const TYPES_BY_TOPOLOGY = {
  basketAbandonment: { name: 'basket-abandonment', types: ['BASKET_ABANDONED', 'CHECKOUT_ABANDONED'] },
  browseAbandonment: { name: 'browse-abandonment', types: ['BROWSE_ABANDONED'] },
  basketPriceDrop: { name: 'basket-price-drop', types: ['BASKET_PRICE_DROP'] },
  wishlistRestock: { name: 'wishlist-restock', types: ['WISHLIST_BACK_IN_STOCK'] },
} as const;

export type Verdict = 'sent' | 'held' | 'suppressed' | 'waiting' | 'nothing' | 'off';

export interface WhyNot {
  readonly type: string;
  readonly campaignId: string | null;
  readonly verdict: Verdict;
  /** One line in words. */
  readonly answer: string;
  /** The decision it is read from (null when none is recorded). */
  readonly reason: string | null;
  /** A time the answer names (until when), epoch ms. */
  readonly until: number | null;
}

export interface CustomerFacts {
  readonly triggers: readonly RecentTrigger[];
  readonly decisions: readonly RecentDecision[];
  readonly timers: readonly TimerInfo[] | null;
}

const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');

/** `… at <ISO>, cooldown <n> ms` (the topologies' cooldown detail) → when the cooldown ends. */
export function cooldownUntil(detail: string | undefined): number | null {
  const m = /at (\S+Z), cooldown (\d+) ms/.exec(detail ?? '');
  if (!m) return null;
  const at = Date.parse(m[1] as string);
  return Number.isNaN(at) ? null : at + Number(m[2]);
}

/** `quiet hours in <zone> until <ISO>` → when they end. */
export function quietUntilOf(detail: string | undefined): number | null {
  const m = /until (\S+Z)/.exec(detail ?? '');
  if (!m) return null;
  const t = Date.parse(m[1] as string);
  return Number.isNaN(t) ? null : t;
}

/**
 * A capped decision at `at`: the cap frees a place when the oldest send inside the window leaves it. The sends
 * are the customer's recent triggers (all types), as the guards count them.
 */
export function capFreesAt(at: number, windowMs: number, triggers: readonly RecentTrigger[]): number | null {
  const inWindow = triggers.map((t) => t.occurredAt).filter((x) => x > at - windowMs && x <= at);
  if (inWindow.length === 0) return null;
  return Math.min(...inWindow) + windowMs;
}

function fromDecision(d: RecentDecision, facts: CustomerFacts, config: CampaignsConfig): Omit<WhyNot, 'type' | 'campaignId'> {
  const detail = d.detail ?? '';
  const when = iso(d.occurredAt);
  if (d.decision === 'SENT') return { verdict: 'sent', answer: `sent at ${when}${d.variant && d.variant !== 'default' ? ` (variant ${d.variant})` : ''}`, reason: d.reason, until: null };
  if (d.decision === 'HELD') {
    const until = d.reason === 'quiet-hours' ? quietUntilOf(detail) : null;
    return { verdict: 'held', answer: until === null ? `held at ${when}: ${d.reason} ${detail}`.trim() : `held for quiet hours until ${iso(until)} (${detail})`, reason: d.reason, until };
  }
  const suppressed = (answer: string, until: number | null = null) => ({ verdict: 'suppressed' as const, answer, reason: d.reason, until });
  switch (d.reason) {
    case 'no-consent':
      return suppressed(`no consent: ${detail} (at ${when})`);
    case 'cooldown': {
      const until = cooldownUntil(detail);
      return suppressed(until === null ? `cooldown: ${detail}` : `cooldown until ${iso(until)} (${detail})`, until);
    }
    case 'cap': {
      const w = config.guards?.cap?.windowMs;
      const until = w === undefined ? null : capFreesAt(d.occurredAt, w, facts.triggers);
      return suppressed(`cap reached at ${when}: ${detail}${until === null ? '' : `; next send possible from ${iso(until)}`}`, until);
    }
    case 'segment':
      return suppressed(`not in the audience: ${detail} (at ${when})`);
    case 'holdout':
      return suppressed(`in the holdout group of ${d.campaignId} (${detail}): measured, never sent`);
    case 'campaign-disabled':
      return suppressed(`campaign ${d.campaignId} was switched off (at ${when})`);
    case 'expired':
      return suppressed(`expired while held: ${detail}`);
    default:
      return suppressed(`suppressed at ${when}: ${d.reason}${detail === '' ? '' : ` (${detail})`}`);
  }
}

/** One answer per trigger type of the config, newest decision first; timers say what is still pending. */
export function whyNot(facts: CustomerFacts, config: CampaignsConfig): WhyNot[] {
  const out: WhyNot[] = [];
  for (const [key, { name, types }] of Object.entries(TYPES_BY_TOPOLOGY) as [keyof typeof TYPES_BY_TOPOLOGY, (typeof TYPES_BY_TOPOLOGY)[keyof typeof TYPES_BY_TOPOLOGY]][]) {
    const c = config[key];
    for (const type of types) {
      const campaignId = c?.campaignId ?? null;
      if (!c?.enabled) {
        out.push({ type, campaignId, verdict: 'off', answer: `campaign ${name} is switched off in the config in force`, reason: null, until: null });
        continue;
      }
      const d = facts.decisions.find((x) => x.type === type);
      if (d !== undefined) {
        out.push({ type, campaignId, ...fromDecision(d, facts, config) });
        continue;
      }
      const timer = (facts.timers ?? []).filter((t) => t.processor.startsWith(name)).sort((a, b) => a.time - b.time)[0];
      if (timer !== undefined) {
        out.push({ type, campaignId, verdict: 'waiting', answer: `no decision yet: ${timer.processor} timer "${timer.name}" due at ${iso(timer.time)} (stream time)`, reason: null, until: timer.time });
      } else {
        out.push({ type, campaignId, verdict: 'nothing', answer: 'no candidate recorded: the trigger\'s conditions did not occur for this customer (recent history)', reason: null, until: null });
      }
    }
  }
  return out;
}
