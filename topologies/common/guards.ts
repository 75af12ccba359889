/**
 * Guards (DESIGN §3), in the customer's own task: every candidate trigger of every topology passes here before
 * it reaches crm.triggers.v1. In order:
 *   1. consent for at least one of the trigger's channels (from crm.customers.v1; unknown profile: none);
 *   2. the campaign's segment and attribute filters;
 *   3. A/B variant and holdout by a stable hash of (customerId, campaignId) — holdouts are audited, not sent;
 *   4. quiet hours in the customer's local wall-clock time (time-zone database, clock changes included): held
 *      until the clock there reads their end, then everything is checked again;
 *   5. a per-customer cap over all types in a sliding window; when held triggers are released together,
 *      they are decided in priority order (CHECKOUT > BASKET > PRICE_DROP > RESTOCK > BROWSE by default).
 * Every decision is audited (SENT, HELD, or SUPPRESSED with its reason). A profile tombstone erases the
 * customer from every store keyed by customer and cancels the customer's timers, in every topology.
 *
 * Decision feedback: a topology that keeps notified state (price-drop reference, restock cooldown and quota)
 * subscribes to the decisions on its trigger type (`subscribeDecisions`) and gets each decision's audit record in
 * the same task and step, so only a sent trigger (or a holdout) counts as notified (DESIGN §3; `outcomeOf`).
 *
 * Steps 1, 2 and 4 read the customer's profile as of the decision time (the trigger's time; at a release, the
 * release time), from a bounded history of profile versions: a fan-out trigger reaches this task through a
 * repartition topic, often after later profile updates, and must be decided as replay decides it (DESIGN §4).
 */
import { hash } from 'node:crypto';
import { jsonCodec, keyValueStore, type Processor, type ProcessorContext, type StreamRecord, type Timer, type TopologyBuilder } from '../../src/engine/api/index.js';
import type { Channel, CustomerProfile, Trigger, TriggerAudit, TriggerType } from '../../schemas/contract.js';
import { AUDIT_TOPIC, TRIGGERS_TOPIC, type Outputs } from './campaign.js';
import { auditOf } from './triggers.js';
import { firstInstantAtLocal, isTimeZone, localMinutes, localMs, wallClock } from '../../src/util/local-time.js';

export { localMinutes };

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
  /** Bounds of the per-customer profile history; default {@link DEFAULT_PROFILE_HISTORY}. */
  readonly profileHistory?: ProfileHistoryBounds;
}

export interface ProfileHistoryBounds {
  /** At most this many versions per customer (the oldest go first). */
  readonly maxVersions: number;
  /** Versions superseded more than this long before the newest version's updatedAt are dropped. */
  readonly horizonMs: number;
}

/**
 * 8 versions, 30 days: a trigger is decided at most its lifetime (`expiresAt`, 48 h by default) after it
 * occurred, and reaches the customer's task at most a repartition round trip late.
 */
export const DEFAULT_PROFILE_HISTORY: ProfileHistoryBounds = { maxVersions: 8, horizonMs: 30 * 24 * 3_600_000 };

/** What the guards read of a profile version (no e-mail address or push tokens). */
export type ProfileVersion = Pick<CustomerProfile, 'updatedAt' | 'timezone' | 'consents' | 'segments' | 'attributes'>;

export interface ProfileHistory {
  /** Ordered by updatedAt; versions with equal updatedAt in arrival order (the later one wins from then on). */
  readonly versions: ProfileVersion[];
  /** true once older versions were dropped: a time before the first version is then not "no profile yet". */
  readonly trimmed?: true;
}

export const DEFAULT_PRIORITY: readonly TriggerType[] = ['CHECKOUT_ABANDONED', 'BASKET_ABANDONED', 'BASKET_PRICE_DROP', 'WISHLIST_BACK_IN_STOCK', 'BROWSE_ABANDONED'];

interface GuardState {
  /** Triggers sent within the cap window: send time and type. */
  sent: { at: number; type: TriggerType; triggerId: string }[];
  /** Triggers held for quiet hours, released by the timer. */
  held: Trigger[];
}

export const profilesStore = keyValueStore('guards.profiles', jsonCodec<CustomerProfile>(), { keyedByRecordKey: true, doc: 'customerId → profile (consents, timezone, segments, attributes)' });
export const profileHistoryStore = keyValueStore('guards.profile-history', jsonCodec<ProfileHistory>(), {
  keyedByRecordKey: true,
  doc: 'customerId → recent profile versions by updatedAt (consents, timezone, segments, attributes), to decide a trigger with the profile as of its time',
});
/** How late a trigger may reach the guards (behind the newest send) and still see every send around its time. */
export const CAP_LATENESS_MS = 7 * 86_400_000;

export const guardStateStore = keyValueStore('guards.state', jsonCodec<GuardState>(), { keyedByRecordKey: true, doc: 'customerId → triggers sent in the cap window, triggers held for quiet hours' });

/**
 * When the quiet hours containing `at` end (epoch ms), or undefined when `at` is outside them. Local wall-clock
 * time in `timeZone`, from the time-zone database: `at` is inside when the clock there reads a time in
 * [startMin, endMin) (overnight when startMin > endMin); they end at the first instant after `at` at which
 * the clock reads endMin on the local day they end (the next day for an overnight window entered in the
 * evening, else the day of `at`). Clock changes: an end time the clocks skip (spring forward) ends them at the
 * first instant after the gap; an end time read twice (autumn) at its first occurrence after `at`. The same
 * instant for everything held that night, whatever the offset (+05:30, +05:45, a 30-minute DST shift).
 */
export function quietUntil(at: number, timeZone: string, quiet: { startMin: number; endMin: number }): number | undefined {
  const w = wallClock(at, timeZone);
  if (w === undefined) return undefined;
  const local = w.hour * 60 + w.minute;
  const { startMin, endMin } = quiet;
  const overnight = startMin > endMin;
  const inside = overnight ? local >= startMin || local < endMin : local >= startMin && local < endMin;
  if (!inside) return undefined;
  const endDay = overnight && local >= startMin ? w.day + 1 : w.day;
  const end = firstInstantAtLocal(localMs(w.year, w.month, endDay, endMin), timeZone, at);
  // Not reached with the time-zone database (it needs two clock changes within a day): local minutes added to
  // `at`, released at the start of that minute; the release re-checks and holds again if still quiet.
  return end ?? at - (at % 60_000) + ((endMin - local + 1440) % 1440 || 1440) * 60_000;
}

/** A stable number in [0, 1) for (customerId, campaignId). */
export function bucketOf(customerId: string, campaignId: string): number {
  return hash('sha256', `${customerId}\u0000${campaignId}`, 'buffer').readUInt32BE(0) / 2 ** 32;
}

export function matchesAudience(filter: AudienceFilter | undefined, profile: Pick<CustomerProfile, 'segments' | 'attributes'>): { ok: true } | { ok: false; detail: string } {
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

function versionOf(p: CustomerProfile): ProfileVersion {
  return {
    updatedAt: p.updatedAt,
    ...(p.timezone === undefined ? {} : { timezone: p.timezone }),
    consents: p.consents,
    segments: p.segments,
    attributes: p.attributes,
  };
}

const sameVersion = (a: ProfileVersion, b: ProfileVersion) => JSON.stringify(a) === JSON.stringify(b);

/**
 * `history` with version `v` inserted in updatedAt order (after versions with the same updatedAt: they arrived
 * earlier), then bounded: versions superseded before (newest updatedAt − horizon) are dropped — the one valid at
 * that time is kept —, then the oldest beyond `maxVersions`. A redelivered version (same updatedAt, same content)
 * changes nothing. Returns a new history; `history` is not modified.
 */
export function withVersion(history: ProfileHistory | undefined, v: ProfileVersion, bounds: ProfileHistoryBounds = DEFAULT_PROFILE_HISTORY): ProfileHistory {
  const versions = [...(history?.versions ?? [])];
  let trimmed = history?.trimmed === true;
  if (versions.some((x) => x.updatedAt === v.updatedAt && sameVersion(x, v))) return history ?? { versions };
  let i = versions.length;
  while (i > 0 && (versions[i - 1] as ProfileVersion).updatedAt > v.updatedAt) i--;
  versions.splice(i, 0, v);
  const boundary = (versions[versions.length - 1] as ProfileVersion).updatedAt - bounds.horizonMs;
  let keepFrom = 0;
  // The last version at or before the boundary is valid at the boundary: everything before it is superseded.
  for (let k = 0; k < versions.length && (versions[k] as ProfileVersion).updatedAt <= boundary; k++) keepFrom = k;
  const excess = versions.length - keepFrom - Math.max(1, bounds.maxVersions);
  if (excess > 0) keepFrom += excess;
  if (keepFrom > 0) {
    versions.splice(0, keepFrom);
    trimmed = true;
  }
  return trimmed ? { versions, trimmed: true } : { versions };
}

/**
 * The version valid at `at`: the latest with updatedAt <= at (a profile and a trigger at the same time: the
 * profile counts, as replay processes the profile first when it comes first in the input). undefined when the
 * customer's first profile is newer than `at` (no profile known then). When older versions were dropped by
 * the bounds, a time before the oldest kept one gets that oldest one (the closest known).
 */
export function versionAt(history: ProfileHistory | undefined, at: number): ProfileVersion | undefined {
  const versions = history?.versions ?? [];
  for (let i = versions.length - 1; i >= 0; i--) {
    const v = versions[i] as ProfileVersion;
    if (v.updatedAt <= at) return v;
  }
  return history?.trimmed ? versions[0] : undefined;
}

const isAudit = (v: unknown): v is TriggerAudit => typeof v === 'object' && v !== null && 'auditId' in v;

/**
 * What a guard decision means for the notified state of the topology that made the trigger (DESIGN §3: only a
 * sent trigger counts as notified, and a holdout assignment): `notified` (SENT, or SUPPRESSED `holdout`),
 * `held` (HELD: it reserves its place until it is sent or dropped), `not-notified` (any other suppression:
 * no consent, audience, cap, campaign switched off, expired while held).
 */
export type DecisionOutcome = 'notified' | 'held' | 'not-notified';

export function outcomeOf(audit: Pick<TriggerAudit, 'decision' | 'reason'>): DecisionOutcome {
  if (audit.decision === 'SENT') return 'notified';
  if (audit.decision === 'HELD') return 'held';
  return audit.reason === 'holdout' ? 'notified' : 'not-notified';
}

/** Decision subscribers per trigger type (node names), filled by {@link subscribeDecisions} after the guards were added. */
type DecisionSubscribers = Map<TriggerType, string[]>;
const subscribersOf = new WeakMap<TopologyBuilder, DecisionSubscribers>();

/**
 * Decision feedback: the guards forward the audit record of every decision they take on a trigger of one of
 * `types` (SENT, HELD, SUPPRESSED, also the final decision of a held trigger at its release) to the processor
 * `node`, in the same task and the same processing step (after the decision is stored). A topology subscribes
 * to keep its notified state (price-drop reference, restock cooldown and quota) to what was actually sent; see
 * {@link outcomeOf}. The node must already exist; it is connected as a child of the guards. Returns false (and
 * does nothing) when the builder has no guards stage: then a topology's own send is the decision.
 */
export function subscribeDecisions(builder: TopologyBuilder, node: string, types: readonly TriggerType[]): boolean {
  const subs = subscribersOf.get(builder);
  if (subs === undefined) return false;
  builder.connect(GUARDS, node);
  for (const type of types) {
    const list = subs.get(type) ?? [];
    if (!list.includes(node)) list.push(node);
    subs.set(type, list);
  }
  return true;
}

export class GuardsProcessor implements Processor<Trigger | TriggerAudit | CustomerProfile | null, Trigger | TriggerAudit> {
  #ctx!: ProcessorContext<Trigger | TriggerAudit>;
  readonly #s: GuardSettings;
  readonly #out: Outputs;
  readonly #subscribers: ReadonlyMap<TriggerType, readonly string[]>;

  constructor(settings: GuardSettings, out: Outputs, subscribers: ReadonlyMap<TriggerType, readonly string[]> = new Map()) {
    this.#s = settings;
    this.#out = out;
    this.#subscribers = subscribers;
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
      const p = record.value as CustomerProfile;
      // The current profile (the query API reads it), then the version history the decisions read.
      const history = await this.#history(key);
      this.#ctx.getStore(profilesStore).put(key, p);
      this.#ctx.getStore(profileHistoryStore).put(key, withVersion(history, versionOf(p), this.#s.profileHistory));
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

  /**
   * The customer's profile history. A customer whose profile was stored before the history existed (state of an
   * earlier version) starts with that profile as its one version.
   */
  async #history(customerId: string): Promise<ProfileHistory | undefined> {
    const history = await this.#ctx.getStore(profileHistoryStore).get(customerId);
    if (history) return history;
    const current = await this.#ctx.getStore(profilesStore).get(customerId);
    return current ? { versions: [versionOf(current)] } : undefined;
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
    const audit = auditOf({ ...t, occurredAt: at }, decision, reason, detail);
    this.#ctx.forward({ key: t.customerId, value: audit, timestamp: at }, this.#out.audit);
    // Decision feedback to the topologies that subscribed to this trigger type (the same read-only record).
    const subs = this.#subscribers.get(t.type);
    if (subs !== undefined) for (const node of subs) this.#ctx.forward({ key: t.customerId, value: audit, timestamp: at }, node);
  }

  async #decide(candidate: Trigger, at: number, state: GuardState): Promise<void> {
    const t = candidate;
    if (at > t.expiresAt) return this.#audit(t, at, 'SUPPRESSED', 'expired', `expired at ${new Date(t.expiresAt).toISOString()} while held`);
    // The profile as of the decision time, whatever later versions this task has already seen.
    const profile = versionAt(await this.#history(t.customerId), at);
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
      const tz = profile.timezone && isTimeZone(profile.timezone) ? profile.timezone : this.#s.defaultTimezone;
      const until = quietUntil(at, tz, this.#s.quietHours);
      if (until !== undefined) {
        state.held.push(t);
        const pending = this.#ctx.timers.get(RELEASE, t.customerId);
        if (!pending || pending.time > until) this.#ctx.timers.register({ name: RELEASE, key: t.customerId, time: until, domain: 'stream-time' });
        return this.#audit(guarded, at, 'HELD', 'quiet-hours', `quiet hours in ${tz} until ${new Date(until).toISOString()}`);
      }
    }
    if (this.#s.cap) {
      // The cap holds for every window that would contain this send: the one ending now, and those ending at a
      // later send already made (a trigger that reached the task late, through a repartition topic). Sends are
      // kept for the window plus CAP_LATENESS_MS for such late triggers. In event-time order (replay) no send is
      // later than `at`, so this is the plain sliding window; out of order the cap still holds, but which of
      // two triggers is sent can differ from replay.
      const w = this.#s.cap.windowMs;
      const newest = state.sent.reduce((m, x) => Math.max(m, x.at), at);
      state.sent = state.sent.filter((x) => x.at > newest - w - CAP_LATENESS_MS);
      let worst = 0;
      for (const end of [at, ...state.sent.filter((x) => x.at > at && x.at < at + w).map((x) => x.at)]) {
        worst = Math.max(worst, state.sent.filter((x) => x.at > end - w && x.at <= end).length);
      }
      if (worst >= this.#s.cap.max) {
        return this.#audit(guarded, at, 'SUPPRESSED', 'cap', `${worst} sent in the last ${w} ms (cap ${this.#s.cap.max})`);
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
  const subscribers: DecisionSubscribers = new Map();
  subscribersOf.set(builder, subscribers);
  builder
    .addProcessor(GUARDS, () => new GuardsProcessor(settings, out, subscribers), [customers], 'consent, audience, A/B + holdout, quiet hours, cap; audits every decision')
    .addStore(profilesStore, [GUARDS])
    .addStore(profileHistoryStore, [GUARDS])
    .addStore(guardStateStore, [GUARDS]);
  if (next === undefined) builder.addSink('guards.triggers', TRIGGERS_TOPIC, [GUARDS]).addSink('guards.audit', AUDIT_TOPIC, [GUARDS]);
  else builder.connect(GUARDS, next);
  return GUARDS;
}
