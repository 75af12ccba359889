/**
 * Guards (DESIGN §3), in the customer's own task: every candidate trigger of every topology passes here before
 * it reaches crm.triggers.v1. In order:
 *   1. consent for at least one of the trigger's channels (from crm.customers.v1; unknown profile: none);
 *   2. the campaign's segment and attribute filters;
 *   3. A/B variant and holdout by a stable hash of (customerId, campaignId) — holdouts are audited, not sent;
 *   4. quiet hours in the customer's time zone: held until they end, then everything is checked again;
 *   5. a per-customer cap over all types in a sliding window; when held triggers are released together,
 *      they are decided in priority order (CHECKOUT > BASKET > PRICE_DROP > RESTOCK > BROWSE by default).
 * Every decision is audited (SENT, HELD, or SUPPRESSED with its reason). A profile tombstone erases the
 * customer from every store keyed by customer and cancels the customer's timers, in every topology.
 */
import { createHash } from 'node:crypto';
import { jsonCodec, keyValueStore, type Processor, type ProcessorContext, type StreamRecord, type Timer, type TopologyBuilder } from '../../src/engine/api/index.js';
import type { Channel, CustomerProfile, Trigger, TriggerAudit, TriggerType } from '../../schemas/contract.js';
import { AUDIT_TOPIC, TRIGGERS_TOPIC, type Outputs } from './campaign.js';
import { auditOf } from './triggers.js';

export const GUARDS = 'guards';
export const CUSTOMERS_TOPIC = 'crm.customers.v1';
const RELEASE = 'quiet-hours-release';

export interface AttributeCondition {
  readonly name: string;
  readonly op: '>' | '>=' | '<' | '<=' | '==' | '!=';
  readonly value: number | string | boolean;
}

/** A campaign's audience: all attribute conditions hold, in at least one of segmentsAny (if given), in none of segmentsNone. */
export interface AudienceFilter {
  readonly segmentsAny?: readonly string[];
  readonly segmentsNone?: readonly string[];
  readonly attributes?: readonly AttributeCondition[];
}

export interface Experiment {
  /** Share of customers held out (audited, never sent), 0..1. */
  readonly holdout: number;
  /** Variants by weight; the trigger's `variant`. */
  readonly variants: readonly { readonly name: string; readonly weight: number }[];
}

export interface CampaignGuards {
  /** false: the campaign was switched off (config reload); its triggers are suppressed. */
  readonly enabled?: boolean;
  readonly filter?: AudienceFilter;
  readonly experiment?: Experiment;
}

export interface GuardSettings {
  /** Local time of day in minutes [start, end) when nothing is sent; null: no quiet hours. */
  readonly quietHours: { readonly startMin: number; readonly endMin: number } | null;
  readonly defaultTimezone: string;
  /** At most `max` triggers per customer within `windowMs` (all types); null: no cap. */
  readonly cap: { readonly max: number; readonly windowMs: number } | null;
  /** Trigger types, highest priority first. */
  readonly priority: readonly TriggerType[];
  /** Guards per campaignId. */
  readonly campaigns: ReadonlyMap<string, CampaignGuards>;
}

export const DEFAULT_PRIORITY: readonly TriggerType[] = ['CHECKOUT_ABANDONED', 'BASKET_ABANDONED', 'BASKET_PRICE_DROP', 'WISHLIST_BACK_IN_STOCK', 'BROWSE_ABANDONED'];

interface GuardState {
  /** Triggers sent within the cap window: send time and type. */
  sent: { at: number; type: TriggerType; triggerId: string }[];
  /** Triggers held for quiet hours, released by the timer. */
  held: Trigger[];
}

export const profilesStore = keyValueStore('guards.profiles', jsonCodec<CustomerProfile>(), { keyedByRecordKey: true, doc: 'customerId → profile (consents, timezone, segments, attributes)' });
export const guardStateStore = keyValueStore('guards.state', jsonCodec<GuardState>(), { keyedByRecordKey: true, doc: 'customerId → triggers sent in the cap window, triggers held for quiet hours' });

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Minutes since local midnight in `timeZone`, or undefined for an unknown zone. */
export function localMinutes(at: number, timeZone: string): number | undefined {
  let f = formatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    } catch {
      return undefined;
    }
    formatters.set(timeZone, f);
  }
  let h = 0;
  let m = 0;
  for (const p of f.formatToParts(new Date(at))) {
    if (p.type === 'hour') h = Number(p.value);
    else if (p.type === 'minute') m = Number(p.value);
  }
  return h * 60 + m;
}

/** When the quiet hours containing `at` end (epoch ms), or undefined when `at` is outside them. */
export function quietUntil(at: number, timeZone: string, quiet: { startMin: number; endMin: number }): number | undefined {
  const local = localMinutes(at, timeZone);
  if (local === undefined) return undefined;
  const { startMin, endMin } = quiet;
  const inside = startMin <= endMin ? local >= startMin && local < endMin : local >= startMin || local < endMin;
  if (!inside) return undefined;
  const minutes = (endMin - local + 1440) % 1440 || 1440;
  // To the start of the minute the quiet hours end (seconds of `at` dropped); a DST shift is re-checked on release.
  return at - (at % 60_000) + minutes * 60_000;
}

/** A stable number in [0, 1) for (customerId, campaignId). */
export function bucketOf(customerId: string, campaignId: string): number {
  return createHash('sha256').update(`${customerId}\u0000${campaignId}`).digest().readUInt32BE(0) / 2 ** 32;
}

export function matchesAudience(filter: AudienceFilter | undefined, profile: CustomerProfile): { ok: true } | { ok: false; detail: string } {
  if (!filter) return { ok: true };
  if (filter.segmentsAny && filter.segmentsAny.length > 0 && !filter.segmentsAny.some((s) => profile.segments.includes(s))) {
    return { ok: false, detail: `in none of the segments ${filter.segmentsAny.join(', ')}` };
  }
  const excluded = filter.segmentsNone?.find((s) => profile.segments.includes(s));
  if (excluded !== undefined) return { ok: false, detail: `in excluded segment ${excluded}` };
  for (const c of filter.attributes ?? []) {
    const v = profile.attributes[c.name];
    const holds =
      v !== undefined &&
      (c.op === '==' ? v === c.value : c.op === '!=' ? v !== c.value : typeof v === 'number' && typeof c.value === 'number' && compare(v, c.op, c.value));
    if (!holds) return { ok: false, detail: `attribute ${c.name} ${c.op} ${String(c.value)} does not hold (${v === undefined ? 'unknown' : String(v)})` };
  }
  return { ok: true };
}

function compare(a: number, op: '>' | '>=' | '<' | '<=', b: number): boolean {
  return op === '>' ? a > b : op === '>=' ? a >= b : op === '<' ? a < b : a <= b;
}

function variantOf(e: Experiment, bucket: number): string | 'holdout' {
  if (bucket < e.holdout) return 'holdout';
  const total = e.variants.reduce((a, v) => a + v.weight, 0);
  if (total <= 0) return 'default';
  let x = ((bucket - e.holdout) / (1 - e.holdout)) * total;
  for (const v of e.variants) {
    if (x < v.weight) return v.name;
    x -= v.weight;
  }
  return e.variants[e.variants.length - 1]?.name ?? 'default';
}

const isAudit = (v: unknown): v is TriggerAudit => typeof v === 'object' && v !== null && 'auditId' in v;

export class GuardsProcessor implements Processor<Trigger | TriggerAudit | CustomerProfile | null, Trigger | TriggerAudit> {
  #ctx!: ProcessorContext<Trigger | TriggerAudit>;
  readonly #s: GuardSettings;
  readonly #out: Outputs;

  constructor(settings: GuardSettings, out: Outputs) {
    this.#s = settings;
    this.#out = out;
  }

  init(ctx: ProcessorContext<Trigger | TriggerAudit>): void {
    this.#ctx = ctx;
  }

  async process(record: StreamRecord<Trigger | TriggerAudit | CustomerProfile | null>): Promise<void> {
    if (record.topic === CUSTOMERS_TOPIC) {
      const key = record.key as string;
      if (record.value === null) {
        // GDPR erasure: every store entry keyed by this customer, in every topology of the task, and its timers.
        this.#ctx.eraseKey(key);
        return;
      }
      this.#ctx.getStore(profilesStore).put(key, record.value as CustomerProfile);
      return;
    }
    const v = record.value;
    if (v === null) return;
    if (isAudit(v)) {
      this.#ctx.forward({ key: v.customerId, value: v, timestamp: record.timestamp }, this.#out.audit);
      return;
    }
    const t = v as Trigger;
    const state = await this.#state(t.customerId);
    await this.#decide(t, record.timestamp, state);
    this.#save(t.customerId, state);
  }

  async onTimer(timer: Timer): Promise<void> {
    const state = await this.#state(timer.key);
    const held = state.held;
    state.held = [];
    const rank = (t: Trigger) => {
      const i = this.#s.priority.indexOf(t.type);
      return i < 0 ? this.#s.priority.length : i;
    };
    held.sort((a, b) => rank(a) - rank(b) || a.occurredAt - b.occurredAt);
    for (const t of held) await this.#decide(t, timer.time, state);
    this.#save(timer.key, state);
  }

  async #state(customerId: string): Promise<GuardState> {
    return (await this.#ctx.getStore(guardStateStore).get(customerId)) ?? { sent: [], held: [] };
  }

  #save(customerId: string, state: GuardState): void {
    const store = this.#ctx.getStore(guardStateStore);
    if (state.sent.length === 0 && state.held.length === 0) store.delete(customerId);
    else store.put(customerId, state);
  }

  #audit(t: Trigger, at: number, decision: TriggerAudit['decision'], reason: string, detail?: string): void {
    this.#ctx.forward({ key: t.customerId, value: auditOf({ ...t, occurredAt: at }, decision, reason, detail), timestamp: at }, this.#out.audit);
  }

  async #decide(candidate: Trigger, at: number, state: GuardState): Promise<void> {
    const t = candidate;
    if (at > t.expiresAt) return this.#audit(t, at, 'SUPPRESSED', 'expired', `expired at ${new Date(t.expiresAt).toISOString()} while held`);
    const profile = await this.#ctx.getStore(profilesStore).get(t.customerId);
    if (!profile) return this.#audit(t, at, 'SUPPRESSED', 'no-consent', 'no profile known for the customer');
    const channels: Channel[] = t.channels.filter((c) => (c === 'webhook' ? true : profile.consents[c]));
    if (channels.length === 0) return this.#audit(t, at, 'SUPPRESSED', 'no-consent', `no consent for ${t.channels.join(', ')}`);
    const g = this.#s.campaigns.get(t.campaignId);
    if (g?.enabled === false) return this.#audit(t, at, 'SUPPRESSED', 'campaign-disabled', `campaign ${t.campaignId} is switched off`);
    const audience = matchesAudience(g?.filter, profile);
    if (!audience.ok) return this.#audit(t, at, 'SUPPRESSED', 'segment', audience.detail);
    let variant = t.variant;
    if (g?.experiment) {
      const v = variantOf(g.experiment, bucketOf(t.customerId, t.campaignId));
      if (v === 'holdout') return this.#audit({ ...t, variant: 'holdout' }, at, 'SUPPRESSED', 'holdout', `holdout share ${g.experiment.holdout}`);
      variant = v;
    }
    const guarded: Trigger = { ...t, channels, variant };
    if (this.#s.quietHours) {
      const tz = profile.timezone && localMinutes(at, profile.timezone) !== undefined ? profile.timezone : this.#s.defaultTimezone;
      const until = quietUntil(at, tz, this.#s.quietHours);
      if (until !== undefined) {
        state.held.push(t);
        const pending = this.#ctx.timers.get(RELEASE, t.customerId);
        if (!pending || pending.time > until) this.#ctx.timers.register({ name: RELEASE, key: t.customerId, time: until, domain: 'stream-time' });
        return this.#audit(guarded, at, 'HELD', 'quiet-hours', `quiet hours in ${tz} until ${new Date(until).toISOString()}`);
      }
    }
    if (this.#s.cap) {
      const from = at - this.#s.cap.windowMs;
      state.sent = state.sent.filter((s) => s.at > from);
      if (state.sent.length >= this.#s.cap.max) {
        return this.#audit(guarded, at, 'SUPPRESSED', 'cap', `${state.sent.length} sent in the last ${this.#s.cap.windowMs} ms (cap ${this.#s.cap.max})`);
      }
    }
    state.sent.push({ at, type: t.type, triggerId: t.triggerId });
    this.#ctx.forward({ key: t.customerId, value: guarded, timestamp: at }, this.#out.trigger);
    this.#audit(guarded, at, 'SENT', 'ok');
  }
}

/**
 * Adds the guards stage (before the topologies that feed it). Its triggers and audit records go to `next` (the
 * history stage) when given, else to its own sinks on crm.triggers.v1 / crm.trigger-audit.v1.
 */
export function addGuards(builder: TopologyBuilder, settings: GuardSettings, next?: string): string {
  const customers = builder.ensureSource(CUSTOMERS_TOPIC);
  const out: Outputs = next === undefined ? { trigger: 'guards.triggers', audit: 'guards.audit' } : { trigger: next, audit: next };
  builder
    .addProcessor(GUARDS, () => new GuardsProcessor(settings, out), [customers], 'consent, audience, A/B + holdout, quiet hours, cap; audits every decision')
    .addStore(profilesStore, [GUARDS])
    .addStore(guardStateStore, [GUARDS]);
  if (next === undefined) builder.addSink('guards.triggers', TRIGGERS_TOPIC, [GUARDS]).addSink('guards.audit', AUDIT_TOPIC, [GUARDS]);
  else builder.connect(GUARDS, next);
  return GUARDS;
}
