/**
 * BROWSE_ABANDONED (DESIGN §3). See README.md beside this file.
 */
import { Type, type Static } from '@sinclair/typebox';
import { jsonCodec, keyValueStore, NOT_LOADED, type KeyValueStore, type Processor, type ProcessorContext, type RecordOrigin, type StreamRecord, type Timer } from '../../src/engine/api/index.js';
import { Duration, toMs } from '../../src/config/duration.js';
import type { BasketEvent, OrderEvent, PageviewEvent, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { outputsOf, wireOutputs, type CampaignSettings, type Outputs, type TopologyDefinition } from '../common/campaign.js';
import { auditOf, causedBy, triggerId, type CausedBy } from '../common/triggers.js';

export const NAME = 'browse-abandonment';
export const PAGEVIEWS_TOPIC = 'shop.pageviews.v1';
export const BASKET_TOPIC = 'shop.basket.v1';
export const ORDERS_TOPIC = 'shop.orders.v1';
export const TRIGGER_TYPE = 'BROWSE_ABANDONED';
const TIMER = 'session-end';
const MIN = 60_000;
const DAY = 86_400_000;

export interface BrowseAbandonmentParams {
  /** Views less than this far apart belong to one session; the session ends this long after its last view. @default 30 min */
  readonly sessionGap: number;
  /** Distinct products a session must have viewed to fire. @default 2 */
  readonly minDistinctProducts: number;
  /** No new browse-abandonment trigger for a customer this long after the last one. @default 7 d */
  readonly reentryCooldown: number;
  /** Customer state not touched for this long is dropped (at least cooldown + gap). @default 30 d */
  readonly stateTtl: number;
}

export const defaults: BrowseAbandonmentParams = { sessionGap: 30 * MIN, minDistinctProducts: 2, reentryCooldown: 7 * DAY, stateTtl: 30 * DAY };

/** `campaigns['browse-abandonment'].params` in the campaign config. Every field optional; durations as `Duration`. */
export const BrowseAbandonmentParamsSchema = Type.Object(
  {
    sessionGap: Type.Optional(Duration),
    minDistinctProducts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'distinct products viewed in a session to fire' })),
    reentryCooldown: Type.Optional(Duration),
    stateTtl: Type.Optional(Duration),
  },
  { additionalProperties: false },
);
export type BrowseAbandonmentParamsInput = Static<typeof BrowseAbandonmentParamsSchema>;

/**
 * Validated config input → parameters in ms, defaults filled in. Throws a RangeError naming the field when a
 * value the schema cannot express is wrong (a zero session gap).
 */
export function resolveBrowseAbandonmentParams(input: BrowseAbandonmentParamsInput = {}): BrowseAbandonmentParams {
  const params: BrowseAbandonmentParams = {
    sessionGap: input.sessionGap === undefined ? defaults.sessionGap : toMs(input.sessionGap),
    minDistinctProducts: input.minDistinctProducts ?? defaults.minDistinctProducts,
    reentryCooldown: input.reentryCooldown === undefined ? defaults.reentryCooldown : toMs(input.reentryCooldown),
    stateTtl: input.stateTtl === undefined ? defaults.stateTtl : toMs(input.stateTtl),
  };
  checkParams(params);
  return params;
}

function checkParams(p: BrowseAbandonmentParams): void {
  if (!(p.sessionGap > 0)) throw new RangeError('sessionGap: must be greater than 0');
  if (!Number.isInteger(p.minDistinctProducts) || p.minDistinctProducts < 1) throw new RangeError('minDistinctProducts: must be an integer of at least 1');
}

export interface ViewedProduct {
  productId: string;
  views: number;
  lastViewedAt: number;
  /** Skus seen on its pages, for matching basket adds that carry no productId. */
  skus: string[];
}

export interface BrowseSession {
  start: number;
  lastViewAt: number;
  views: number;
  /** In the order first viewed. */
  products: ViewedProduct[];
  /** The view with the latest event time: the cause of a trigger. */
  lastView: CausedBy;
}

/** A basket add or an order: excludes a session it falls into when it touches a viewed product. */
export interface Conversion {
  at: number;
  productIds: string[];
  skus: string[];
}

export interface BrowseState {
  session?: BrowseSession;
  /** End of the last session that was decided (fired, suppressed or did not qualify): later views only. */
  decidedUntil?: number;
  /**
   * Adds and orders that may still fall into an undecided session, whatever order the topics arrive in; kept
   * while they are not older than the earliest start such a session can still have.
   */
  conversions: Conversion[];
  lastTriggerAt?: number;
}

export const sessionsStore = keyValueStore('browse-abandonment.sessions', jsonCodec<BrowseState>(), {
  doc: 'customerId → open browsing session, recent basket adds and orders, last trigger time',
  keyedByRecordKey: true,
});

type In = StreamRecord<PageviewEvent> | StreamRecord<BasketEvent> | StreamRecord<OrderEvent>;
type Out = Trigger | TriggerAudit;

/** The basket event as a conversion, or null when it does not put anything into the basket. */
export function conversionOfBasketEvent(e: BasketEvent): Conversion | null {
  if (e.type !== 'ITEM_ADDED' && e.type !== 'QUANTITY_CHANGED') return null;
  // QUANTITY_CHANGED to 0 takes the item out: not an add.
  if ((e.quantity ?? 1) <= 0) return null;
  if (e.sku === undefined && e.productId === undefined) return null;
  return { at: e.occurredAt, productIds: e.productId === undefined ? [] : [e.productId], skus: e.sku === undefined ? [] : [e.sku] };
}

export function conversionOfOrder(o: OrderEvent): Conversion {
  return { at: o.occurredAt, productIds: [...new Set(o.items.map((i) => i.productId))], skus: [...new Set(o.items.map((i) => i.sku))] };
}

/** Whether the conversion touches a product viewed in the session (by productId, or by a viewed sku). */
export function touches(c: Conversion, products: readonly ViewedProduct[]): boolean {
  return products.some((p) => c.productIds.includes(p.productId) || p.skus.some((s) => c.skus.includes(s)));
}

/** Most viewed first; ties: latest viewed first, then productId for a total order. */
export function rankProducts(products: readonly ViewedProduct[]): ViewedProduct[] {
  return [...products].sort((a, b) => b.views - a.views || b.lastViewedAt - a.lastViewedAt || (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0));
}

export class BrowseAbandonmentProcessor implements Processor<PageviewEvent | BasketEvent | OrderEvent, Out> {
  #ctx!: ProcessorContext<Out>;
  readonly #settings: CampaignSettings<BrowseAbandonmentParams>;
  readonly #out: Outputs;

  constructor(settings: CampaignSettings<BrowseAbandonmentParams>) {
    this.#settings = settings;
    this.#out = outputsOf(NAME, settings);
  }

  init(ctx: ProcessorContext<Out>): void {
    this.#ctx = ctx;
  }

  process(record: In): void | Promise<void> {
    const origin = this.#ctx.recordOrigin();
    if (!origin) return;
    const store = this.#ctx.getStore(sessionsStore);
    const customerId = record.value.customerId;
    // Without a promise when the customer's state is in memory (the common case: the runners load it ahead).
    const stored = store.peek(customerId);
    if (stored !== NOT_LOADED) return this.#apply(record, origin, store, customerId, stored);
    return store.get(customerId).then((s) => this.#apply(record, origin, store, customerId, s));
  }

  #apply(record: In, origin: RecordOrigin, store: KeyValueStore<BrowseState>, customerId: string, stored: BrowseState | undefined): void {
    const state: BrowseState = stored ?? { conversions: [] };
    if (record.topic === PAGEVIEWS_TOPIC) {
      if (!this.#view(customerId, state, (record as StreamRecord<PageviewEvent>).value, causedBy(record.value.eventId, origin))) return;
    } else {
      const c = record.topic === ORDERS_TOPIC ? conversionOfOrder((record as StreamRecord<OrderEvent>).value) : conversionOfBasketEvent((record as StreamRecord<BasketEvent>).value);
      // Older than any session that is still undecided: it can exclude nothing.
      if (c === null || c.at < this.#horizon(state)) return;
      state.conversions.push(c);
    }
    this.#prune(state);
    store.put(customerId, state);
  }

  /** Applies a pageview; false when it is dropped as too late (its session is already decided). */
  #view(customerId: string, state: BrowseState, e: PageviewEvent, cause: CausedBy): boolean {
    const gap = this.#settings.params.sessionGap;
    const v = e.occurredAt;
    let s = state.session;
    if (s) {
      // An open session's timer (lastViewAt + gap) has not fired, so v < lastViewAt + gap; only a view that
      // lies a full gap before the start does not join it, and its own session has ended in stream time.
      if (v <= s.start - gap) return false;
    } else {
      if (state.decidedUntil !== undefined && v < state.decidedUntil) return false;
      if (v + gap <= this.#ctx.streamTime()) return false;
      s = { start: v, lastViewAt: v, views: 0, products: [], lastView: cause };
      state.session = s;
    }
    s.views += 1;
    s.start = Math.min(s.start, v);
    const p = s.products.find((x) => x.productId === e.productId);
    if (p) {
      p.views += 1;
      p.lastViewedAt = Math.max(p.lastViewedAt, v);
      if (e.sku !== undefined && !p.skus.includes(e.sku)) p.skus.push(e.sku);
    } else s.products.push({ productId: e.productId, views: 1, lastViewedAt: v, skus: e.sku === undefined ? [] : [e.sku] });
    if (v >= s.lastViewAt) {
      s.lastViewAt = v;
      s.lastView = cause;
      this.#ctx.timers.register({ name: TIMER, key: customerId, time: v + gap, domain: 'stream-time' });
    }
    return true;
  }

  /**
   * The earliest event time an undecided session can still cover: the open session's start (a late view can
   * move it back by less than one gap), else one gap behind stream time (later views are dropped), and never
   * before the end of the last decided session.
   */
  #horizon(state: BrowseState): number {
    const gap = this.#settings.params.sessionGap;
    const h = (state.session ? Math.min(state.session.start, this.#ctx.streamTime()) : this.#ctx.streamTime()) - gap;
    return state.decidedUntil === undefined ? h : Math.max(h, state.decidedUntil);
  }

  #prune(state: BrowseState): void {
    // Most customers have none: no new array per page view.
    if (state.conversions.length === 0) return;
    const h = this.#horizon(state);
    if (state.conversions.some((c) => c.at < h)) state.conversions = state.conversions.filter((c) => c.at >= h);
  }

  onTimer(timer: Timer): void | Promise<void> {
    const store = this.#ctx.getStore(sessionsStore);
    // Without a promise when the customer's state is in memory (the runners load the keys of due timers ahead).
    const stored = store.peek(timer.key);
    if (stored !== NOT_LOADED) return this.#timer(timer, store, stored);
    return store.get(timer.key).then((s) => this.#timer(timer, store, s));
  }

  #timer(timer: Timer, store: KeyValueStore<BrowseState>, state: BrowseState | undefined): void {
    const s = state?.session;
    if (!state || !s) return;
    const p = this.#settings.params;
    const end = s.lastViewAt + p.sessionGap;
    delete state.session;
    state.decidedUntil = end;
    const excluded = state.conversions.some((c) => c.at >= s.start && c.at < end && touches(c, s.products));
    this.#prune(state);
    if (excluded || s.products.length < p.minDistinctProducts) {
      store.put(timer.key, state);
      return;
    }
    const ranked = rankProducts(s.products);
    const trigger: Trigger = {
      triggerId: triggerId(NAME, timer.key, TRIGGER_TYPE, s.lastView.eventId),
      type: TRIGGER_TYPE,
      customerId: timer.key,
      occurredAt: end,
      campaignId: this.#settings.campaignId,
      variant: 'default',
      channels: [...this.#settings.channels],
      causedBy: s.lastView,
      explanation: {
        rule: 'a browsing session (views less than sessionGap apart) ended with at least minDistinctProducts products viewed, none added to the basket or bought during the session or the gap',
        params: { sessionGap: p.sessionGap, minDistinctProducts: p.minDistinctProducts, reentryCooldown: p.reentryCooldown },
        observed: {
          sessionStart: s.start,
          sessionEnd: end,
          lastViewAt: s.lastViewAt,
          views: s.views,
          distinctProducts: s.products.length,
          ...(state.lastTriggerAt === undefined ? {} : { previousTriggerAt: state.lastTriggerAt }),
        },
      },
      payload: {
        products: ranked.map((x) => ({ productId: x.productId, views: x.views, lastViewedAt: x.lastViewedAt })),
        sessionStart: s.start,
        sessionEnd: end,
      },
      expiresAt: end + this.#settings.expiresAfterMs,
    };
    if (state.lastTriggerAt !== undefined && end - state.lastTriggerAt < p.reentryCooldown) {
      store.put(timer.key, state);
      const detail = `last browse-abandonment trigger at ${new Date(state.lastTriggerAt).toISOString()}, cooldown ${p.reentryCooldown} ms`;
      this.#ctx.forward({ key: timer.key, value: auditOf(trigger, 'SUPPRESSED', 'cooldown', detail), timestamp: end }, this.#out.audit);
      return;
    }
    state.lastTriggerAt = end;
    store.put(timer.key, state);
    this.#ctx.forward({ key: timer.key, value: trigger, timestamp: end }, this.#out.trigger);
    // With guards, the decision (SENT, HELD, SUPPRESSED) is audited by them.
    if (this.#settings.guarded !== true) this.#ctx.forward({ key: timer.key, value: auditOf(trigger, 'SENT', 'ok'), timestamp: end }, this.#out.audit);
  }
}

export const browseAbandonment: TopologyDefinition<BrowseAbandonmentParams> = {
  name: NAME,
  description: 'BROWSE_ABANDONED when a browsing session ends with minDistinctProducts products viewed and none added or bought',
  defaults,
  build(builder, settings) {
    const p = settings.params;
    checkParams(p);
    const ttlMs = Math.max(p.stateTtl, p.reentryCooldown + p.sessionGap);
    const pageviews = builder.ensureSource(PAGEVIEWS_TOPIC);
    const basket = builder.ensureSource(BASKET_TOPIC);
    const orders = builder.ensureSource(ORDERS_TOPIC);
    builder
      .addProcessor(NAME, () => new BrowseAbandonmentProcessor(settings), [pageviews, basket, orders], 'browsing session per customer; session-end timer per customer')
      .addStore({ ...sessionsStore, ttlMs }, [NAME]);
    wireOutputs(builder, NAME, settings);
  },
};
