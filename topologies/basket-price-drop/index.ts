/**
 * BASKET_PRICE_DROP (DESIGN §3), with the product → customer fan-out of DESIGN §4. See README.md beside this file.
 *
 *   basket, orders ──► .basket (customer task) ──► by-sku repartition ──► .index (sku task) ◄── catalog
 *                                                                              │ paged wave per PRICE_CHANGED
 *   triggers, audit ◄── .notify (customer task) ◄── to-customer repartition ◄──┘
 */
import { Type, type Static } from '@sinclair/typebox';
import { jsonCodec, keyValueStore, NOT_LOADED, type KeyValueStore, type NotLoaded, type PrefetchRecord, type Processor, type ProcessorContext, type StreamRecord, type Timer } from '../../src/engine/api/index.js';
import type { BasketEvent, CatalogEvent, CustomerProfile, Money, OrderEvent, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { Duration, toMs } from '../../src/config/duration.js';
import { applyBasketEvent, type BasketItem } from '../basket-abandonment/index.js';
import { outputsOf, wireOutputs, type CampaignSettings, type Outputs, type TopologyDefinition } from '../common/campaign.js';
import { auditOf, causedBy, triggerId, type CausedBy } from '../common/triggers.js';
import { outcomeOf, subscribeDecisions } from '../common/guards.js';

export const NAME = 'basket-price-drop';
export const BASKET_TOPIC = 'shop.basket.v1';
export const CUSTOMERS_TOPIC = 'crm.customers.v1';
export const ORDERS_TOPIC = 'shop.orders.v1';
export const CATALOG_TOPIC = 'shop.catalog.v1';
/** Repartition names: topics `<applicationId>-<name>-repartition`. */
export const BY_SKU = `${NAME}.by-sku`;
export const TO_CUSTOMER = `${NAME}.to-customer`;
/** Processor names. The emitting one is NAME, so its sinks are `${NAME}.triggers` / `${NAME}.audit`. */
export const BASKET_NODE = `${NAME}.basket`;
export const INDEX_NODE = `${NAME}.index`;
export const NOTIFY_NODE = NAME;
/** With guards: their decisions on this topology's triggers (decision feedback). */
export const DECISIONS_NODE = `${NAME}.decisions`;
const FANOUT_TIMER = 'fanout';
const TYPE = 'BASKET_PRICE_DROP';
const DAY = 86_400_000;
/** Separates sku and customerId in subscriber keys, so one sku's subscribers are one key prefix. */
const SEP = '\u0000';

export interface BasketPriceDropParams {
  /** The new price must be at least this many percent below the reference price. @default 10 */
  readonly minDropPercent: number;
  /** … and at least this much lower, in minor units of the currency. @default 0 */
  readonly minDropAmount: number;
  /** Subscribers examined per step of a fan-out wave; further steps follow on a stream-time timer. @default 500 */
  readonly pageSize: number;
  /** Basket state, subscriptions and last-notified prices not written for this long are dropped (ms). @default 30 d */
  readonly stateTtl: number;
}
export type Params = BasketPriceDropParams;

export const defaults: BasketPriceDropParams = { minDropPercent: 10, minDropAmount: 0, pageSize: 500, stateTtl: 30 * DAY };

/** The campaign config's `params` for this topology (all optional; durations as ms or "30d"). */
export const BasketPriceDropParamsSchema = Type.Object(
  {
    minDropPercent: Type.Optional(Type.Number({ minimum: 0, maximum: 100, description: 'minimum drop below the reference price, percent (default 10)' })),
    minDropAmount: Type.Optional(Type.Integer({ minimum: 0, description: 'minimum drop below the reference price, minor units (default 0)' })),
    pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: 'subscribers per fan-out step (default 500)' })),
    stateTtl: Type.Optional(Duration),
  },
  { additionalProperties: false },
);
export type BasketPriceDropParamsInput = Static<typeof BasketPriceDropParamsSchema>;

/** Fills defaults and converts durations; the input must already satisfy `BasketPriceDropParamsSchema`. */
export function resolveBasketPriceDropParams(input: BasketPriceDropParamsInput = {}): BasketPriceDropParams {
  return {
    minDropPercent: input.minDropPercent ?? defaults.minDropPercent,
    minDropAmount: input.minDropAmount ?? defaults.minDropAmount,
    pageSize: input.pageSize ?? defaults.pageSize,
    stateTtl: input.stateTtl === undefined ? defaults.stateTtl : toMs(input.stateTtl),
  };
}

/** What the schema cannot say; messages are `<param>: <problem>`, empty when the params are usable. */
export function checkBasketPriceDropParams(p: BasketPriceDropParams): string[] {
  const errors: string[] = [];
  if (!(p.minDropPercent >= 0 && p.minDropPercent <= 100)) errors.push('minDropPercent: must be between 0 and 100');
  if (!(Number.isInteger(p.minDropAmount) && p.minDropAmount >= 0)) errors.push('minDropAmount: must be an integer >= 0');
  if (!(Number.isInteger(p.pageSize) && p.pageSize >= 1)) errors.push('pageSize: must be an integer >= 1');
  if (!(p.stateTtl > 0)) errors.push('stateTtl: must be greater than 0');
  return errors;
}

// ---------------------------------------------------------------------------------------------------------
// State and internal messages

/** Customer side: what the customer has in the basket and what they were told. */
export interface CustomerState {
  /** Basket lines, as basket-abandonment keeps them (unitPrice = price at the last add that carried one). */
  items: BasketItem[];
  /** sku → the last price notified to this customer, kept after the line leaves the basket (pruned by stateTtl). */
  notified: Record<string, { price: Money; at: number }>;
  /** The latest order: basket events older than it are applied as if before it (its skus stay removed). */
  lastOrder?: { at: number; skus: string[] };
  /**
   * sku → when the current version of the line began (its unit price and quantity hold since then). Absent:
   * since the line's `addedAt`.
   */
  lineSince?: Record<string, number>;
  /**
   * Versions of lines that ended (left the basket, or changed unit price or quantity), oldest first, so a
   * candidate that arrives after the basket moved on is judged against the basket as of the price change.
   * At most `PAST_LINES_CAP`; none that ended more than `stateTtl` before stream time.
   */
  past?: PastLine[];
  /**
   * sku → the candidates decided for it (recent, at most `DECISIONS_CAP`), so one that arrives out of
   * price-event order is decided as replay would, against the price notified before it.
   */
  chains?: Record<string, DropChain>;
}

/** The recent price-drop decisions of one customer and sku, in price-event order. */
export interface DropChain {
  /** The price last notified before the first entry (older decisions folded in). */
  base?: { price: Money; at: number };
  entries: ChainEntry[];
}

export interface ChainEntry {
  candidate: DropCandidate;
  /** A trigger was emitted for it. */
  sent: boolean;
  /**
   * With guards: the time they decided that its trigger notified nobody (SUPPRESSED for a reason other than
   * holdout, at once or when released after being held). From then on its price is no reference: it counts as
   * notified for the entries before that time only (while held it reserved its place), see {@link walkChain}.
   */
  droppedAt?: number;
}

/**
 * The decisions of a chain in price-event order: each entry is judged against the price last notified before
 * it — the newest earlier entry that fired and had not been dropped by the guards by the entry's own time
 * (`droppedAt > occurredAt`; SENT, holdout and held ones always count), else `base`. Returns the entries that
 * fire and the price notified as of now (the newest firing entry not dropped, else `base`).
 */
export function walkChain<T>(
  entries: readonly ChainEntry[],
  base: { price: Money; at: number } | undefined,
  judge: (c: DropCandidate, last: { price: Money; at: number } | undefined) => T | null,
): { fired: Map<ChainEntry, T>; notified: { price: Money; at: number } | undefined } {
  const fired = new Map<ChainEntry, T>();
  const firing: ChainEntry[] = [];
  for (const e of entries) {
    const at = e.candidate.occurredAt;
    let last = base;
    for (let i = firing.length - 1; i >= 0; i--) {
      const f = firing[i] as ChainEntry;
      if (f.droppedAt === undefined || f.droppedAt > at) {
        last = { price: f.candidate.newPrice, at: f.candidate.occurredAt };
        break;
      }
    }
    const t = judge(e.candidate, last);
    if (t === null) continue;
    fired.set(e, t);
    firing.push(e);
  }
  const kept = firing.findLast((f) => f.droppedAt === undefined);
  return { fired, notified: kept === undefined ? base : { price: kept.candidate.newPrice, at: kept.candidate.occurredAt } };
}

/** One ended version of a basket line: [from, until) in event time. */
export interface PastLine {
  sku: string;
  addedAt: number;
  from: number;
  until: number;
  quantity: number;
  unitPrice?: Money;
}

/**
 * Sku side: one customer watching the sku. The fields are the watch as of the latest change; `changes` is the
 * log they derive from, so a price event is judged against the watch as of its own time whatever the order
 * in which the two reached the index.
 */
export interface Subscriber {
  /** Event time of the add that started the watch. */
  since: number;
  /** The add's unit price, else the sku's catalog price then; absent when neither was known. */
  reference?: Money;
  /** The subscription changes of this watch (and, for an ended watch, of the earlier ones kept), oldest first. */
  changes?: WatchChange[];
  /** Ended watches only: the unsubscribe's time. */
  until?: number;
}

/** A subscription change as the index logs it: `at` = when it happened (event time). */
export type WatchChange = { op: 'subscribe'; at: number; since: number; reference?: Money } | { op: 'unsubscribe'; at: number };

/** A PRICE_CHANGED the index processed (kept in the sku's history). */
export interface PriceEvent {
  eventId: string;
  productId: string;
  occurredAt: number;
  price: Money;
  previousPrice?: Money;
  causedBy: CausedBy;
  /** Stock 0 was known when it was processed: it started no wave (the sku's stock history, reduced to its use). */
  soldOut?: true;
}

/** Sku side: what the catalog said last, and the recent price changes. */
export interface SkuState {
  productId?: string;
  price?: Money;
  priceAt?: number;
  stock?: number;
  stockAt?: number;
  /** Recent PRICE_CHANGED events, oldest first: at most `PRICE_HISTORY_CAP`, none older than `stateTtl` before stream time. */
  prices?: PriceEvent[];
  /**
   * The sku has no row in `ended`: set when the catalog creates the sku's row (an unsubscribe that adds a row
   * to `ended` first creates the sku's row without it) and by a wave step that read the whole range and
   * deleted every row; cleared when an unsubscribe adds one. Absent: unknown (a wave reads the range).
   */
  noEnded?: true;
}

/** Sku side: a fan-out wave in progress (one per sku; a newer PRICE_CHANGED replaces it). */
export interface FanoutCursor {
  eventId: string;
  productId: string;
  occurredAt: number;
  price: Money;
  previousPrice?: Money;
  causedBy: CausedBy;
  /** Last subscriber key handed out; the next step starts after it. */
  after?: string;
  /** The wave is past the live subscribers and pages through the ended watches (`after` is a key there). */
  ended?: true;
  /** Steps run so far; step k is due at occurredAt + k of stream time (as in replay, where the price sets stream time). */
  steps?: number;
}

/** customer → sku, through the by-sku repartition topic (key sku). */
export type SubscriptionChange =
  /** `at` = the line's add time; `changedAt` = the basket event that sent it (a re-add; absent: `at`). */
  | { op: 'subscribe'; customerId: string; sku: string; at: number; changedAt?: number; reference?: Money }
  /** `erase`: the customer was erased (GDPR): forget the watch at once. */
  | { op: 'unsubscribe'; customerId: string; sku: string; at: number; erase?: true };

/** sku → customer, through the to-customer repartition topic (key customerId). */
export interface DropCandidate {
  customerId: string;
  sku: string;
  productId: string;
  newPrice: Money;
  previousPrice?: Money;
  /** The subscriber's reference on the sku side (used when the basket line has no unit price). */
  reference: Money;
  /**
   * The add time of the watch the sku side judged. The customer side drops a candidate whose line (as of the
   * price change) was added at another time: the sku side had not yet heard of that line's subscription and
   * judged an older watch (with its reference); it re-judges when the subscription arrives.
   */
  since?: number;
  occurredAt: number;
  /** The PRICE_CHANGED: event id and its catalog topic/partition/offset. */
  causedBy: CausedBy;
}

/** Bounds of the histories that make the fan-out order-insensitive (see README, "Order-insensitivity"). */
export const PRICE_HISTORY_CAP = 32;
export const PAST_LINES_CAP = 32;
export const WATCH_CHANGES_CAP = 16;
export const DECISIONS_CAP = 16;

export const customersStore = keyValueStore(`${NAME}.customers`, jsonCodec<CustomerState>(), {
  doc: 'customerId → basket lines (with add price) and last notified price per sku',
  keyedByRecordKey: true,
});
/** The subscription change a record for the index carries (a by-sku record), if it is one. */
function subscriptionOf(r: PrefetchRecord): SubscriptionChange | undefined {
  if (r.topic === CATALOG_TOPIC || r.value === null || typeof r.value !== 'object') return undefined;
  const v = r.value as Partial<SubscriptionChange>;
  return typeof v.customerId === 'string' && typeof v.sku === 'string' ? (v as SubscriptionChange) : undefined;
}

// The index's stores are keyed by sku or sku + customer: a fetched batch loads the keys its records will read
// (`prefetchKey`) with one multi-get each, as the customer-keyed stores are (a restored or long-running sku task
// read them one awaited RocksDB get at a time: two per subscription change of a new customer).
export const subscribersStore = keyValueStore(`${NAME}.subscribers`, jsonCodec<Subscriber>(), {
  doc: 'sku \\0 customerId → since, reference price: the sku → customers index',
  prefetchKey: (r) => {
    const c = subscriptionOf(r);
    return c === undefined || (c.op === 'unsubscribe' && c.erase === true) ? undefined : subscriberKey(c.sku, c.customerId);
  },
});
export const skusStore = keyValueStore(`${NAME}.skus`, jsonCodec<SkuState>(), {
  doc: 'sku → last catalog price and stock',
  // Catalog records and subscription changes are keyed by sku.
  prefetchKey: (r) => r.key ?? undefined,
});
export const endedStore = keyValueStore(`${NAME}.ended`, jsonCodec<Subscriber>(), {
  doc: 'sku \\0 customerId → watches that ended, kept for price events older than their end that reach the index later',
  prefetchKey: (r) => {
    const c = subscriptionOf(r);
    return c?.op === 'unsubscribe' && c.erase !== true ? subscriberKey(c.sku, c.customerId) : undefined;
  },
});
export const fanoutStore = keyValueStore(`${NAME}.fanout`, jsonCodec<FanoutCursor>(), {
  doc: 'sku → the fan-out wave in progress (cursor)',
  // A catalog record first catches up the sku's running wave.
  prefetchKey: (r) => (r.topic === CATALOG_TOPIC ? (r.key ?? undefined) : undefined),
});

export function subscriberKey(sku: string, customerId: string): string {
  return `${sku}${SEP}${customerId}`;
}

// ---------------------------------------------------------------------------------------------------------
// The rule

export interface Drop {
  readonly dropAmount: number;
  readonly dropPercent: number;
}

/** The drop from `reference` to `price` when it meets both thresholds (same currency, strictly lower), else null. */
export function priceDrop(reference: Money, price: Money, p: Pick<BasketPriceDropParams, 'minDropPercent' | 'minDropAmount'>): Drop | null {
  if (reference.currency !== price.currency || reference.amount <= 0) return null;
  const dropAmount = reference.amount - price.amount;
  if (dropAmount <= 0 || dropAmount < p.minDropAmount) return null;
  // Integer comparison first, so 10 % of 1000 is exactly 100 with no floating-point doubt.
  if (dropAmount * 100 < p.minDropPercent * reference.amount) return null;
  return { dropAmount, dropPercent: (dropAmount * 100) / reference.amount };
}

function sameMoney(a: Money | undefined, b: Money | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.amount === b.amount && a.currency === b.currency);
}

/** A watch as of some time: the add that started it and the reference then. */
export interface Watch {
  readonly since: number;
  readonly reference?: Money;
}

/** The change log of a row; rows written before the log existed hold only since and reference. */
function changesOf(row: Subscriber): WatchChange[] {
  return row.changes ?? [{ op: 'subscribe', at: row.since, since: row.since, ...(row.reference === undefined ? {} : { reference: row.reference }) }];
}

/**
 * The watch as of the price event `prices[upto]` (time `at`), or as of now (`upto` = prices.length, `at` =
 * Infinity): the subscription changes up to `at` and the price events before it, merged in event time as
 * replay sees them (a price at the same time as a change counts as before it). A subscribe's reference is its
 * own (the add's unit price), else the watch's, else the catalog price then; with none, the first price event
 * after it that started a wave (not sold out) becomes the reference.
 */
export function watchAt(changes: readonly WatchChange[], prices: readonly PriceEvent[], upto: number, at: number): Watch | undefined {
  let w: Watch | undefined;
  let i = 0;
  const passPrice = (e: PriceEvent): void => {
    if (w !== undefined && w.reference === undefined && e.soldOut !== true) w = { since: w.since, reference: e.price };
  };
  for (const c of changes) {
    if (c.at > at) break;
    for (; i < upto && (prices[i] as PriceEvent).occurredAt <= c.at; i++) passPrice(prices[i] as PriceEvent);
    if (c.op === 'unsubscribe') {
      w = undefined;
      continue;
    }
    const reference = c.reference ?? w?.reference ?? (i > 0 ? (prices[i - 1] as PriceEvent).price : undefined);
    w = { since: w === undefined ? c.since : w.since, ...(reference === undefined ? {} : { reference }) };
  }
  for (; i < upto; i++) passPrice(prices[i] as PriceEvent);
  return w;
}

/** The candidate a price event gives for a watch (as of that event), as the wave sends it, or null. */
export function candidateFor(
  customerId: string,
  sku: string,
  w: Watch | undefined,
  e: PriceEvent,
  p: Pick<BasketPriceDropParams, 'minDropPercent' | 'minDropAmount'>,
): DropCandidate | null {
  // Sold out: no wave. No reference yet: this price becomes it. Added after the price changed: already seen.
  if (w === undefined || e.soldOut === true || w.reference === undefined || w.since > e.occurredAt) return null;
  // The customer side may only lower the reference (last notified price), so anything failing here fails there.
  if (priceDrop(w.reference, e.price, p) === null) return null;
  return {
    customerId,
    sku,
    productId: e.productId,
    newPrice: e.price,
    ...(e.previousPrice === undefined ? {} : { previousPrice: e.previousPrice }),
    reference: w.reference,
    since: w.since,
    occurredAt: e.occurredAt,
    causedBy: e.causedBy,
  };
}

/** Caps a change log: the oldest watches (up to an unsubscribe) go first, else the two oldest changes merge. */
function capChanges(changes: WatchChange[]): WatchChange[] {
  while (changes.length > WATCH_CHANGES_CAP) {
    const end = changes.findIndex((c) => c.op === 'unsubscribe');
    if (end >= 0 && end < changes.length - 1) {
      changes = changes.slice(end + 1);
      continue;
    }
    const [a, b, ...rest] = changes;
    if (a?.op !== 'subscribe' || b?.op !== 'subscribe') return changes.slice(changes.length - WATCH_CHANGES_CAP);
    const reference = b.reference ?? a.reference;
    changes = [{ op: 'subscribe', at: b.at, since: a.since, ...(reference === undefined ? {} : { reference }) }, ...rest];
  }
  return changes;
}

/** Keeps the newest price events: at most PRICE_HISTORY_CAP, and of those before `cutoff` only the newest. */
function capPrices(prices: PriceEvent[], cutoff: number): PriceEvent[] {
  let from = 0;
  while (prices.length - from > 1 && (prices.length - from > PRICE_HISTORY_CAP || (prices[from + 1] as PriceEvent).occurredAt <= cutoff)) from++;
  return from === 0 ? prices : prices.slice(from);
}

// ---------------------------------------------------------------------------------------------------------
// Customer side, input: basket and orders → subscription changes keyed by sku

type BasketIn = StreamRecord<BasketEvent | OrderEvent | CustomerProfile | null>;

export class BasketWatchProcessor implements Processor<BasketEvent | OrderEvent | CustomerProfile | null, SubscriptionChange> {
  #ctx!: ProcessorContext<SubscriptionChange>;
  readonly #settings: CampaignSettings<BasketPriceDropParams>;

  constructor(settings: CampaignSettings<BasketPriceDropParams>) {
    this.#settings = settings;
  }

  init(ctx: ProcessorContext<SubscriptionChange>): void {
    this.#ctx = ctx;
  }

  process(record: BasketIn): void | Promise<void> {
    const store = this.#ctx.getStore(customersStore);
    if (record.topic === CUSTOMERS_TOPIC) {
      // Erasure: withdraw the customer from every sku index (the guards erase the customer-side state).
      if (record.value !== null) return;
      return this.#erase(record, store);
    }
    // Without a promise when the customer's state is in memory, else after reading it.
    const customerId = (record.value as BasketEvent | OrderEvent).customerId;
    const stored = store.peek(customerId);
    if (stored !== NOT_LOADED) return this.#apply(record, store, stored);
    return store.get(customerId).then((s) => this.#apply(record, store, s));
  }

  async #erase(record: BasketIn, store: KeyValueStore<CustomerState>): Promise<void> {
    const customerId = record.key as string;
    const state = await store.get(customerId);
    const skus = new Set([...(state?.items ?? []).map((i) => i.sku), ...(state?.past ?? []).map((v) => v.sku)]);
    for (const sku of skus) {
      this.#ctx.forward({ key: sku, value: { op: 'unsubscribe', customerId, sku, at: record.timestamp, erase: true }, timestamp: record.timestamp });
    }
  }

  #apply(record: BasketIn, store: KeyValueStore<CustomerState>, stored: CustomerState | undefined): void {
    const value = record.value as BasketEvent | OrderEvent;
    const customerId = value.customerId;
    const state: CustomerState = stored ?? { items: [], notified: {} };
    const ts = record.timestamp;
    const order = state.lastOrder;
    if (record.topic === BASKET_TOPIC && (order === undefined || (value as BasketEvent).occurredAt > order.at)) this.#applyToLine(state, value as BasketEvent, customerId, ts);
    else this.#applyToLines(record, state, customerId, ts);
    const olderThan = this.#ctx.streamTime() - this.#settings.params.stateTtl;
    pruneNotified(state, olderThan);
    prunePast(state, olderThan);
    store.put(customerId, state);
  }

  /**
   * A basket event after the latest order (most of them): only the line of its sku can change, so only that line
   * is copied and compared (a view or a checkout changes none). Forwards and versions as {@link #applyToLines}
   * gives them.
   */
  #applyToLine(state: CustomerState, e: BasketEvent, customerId: string, ts: number): void {
    const sku = e.sku;
    if (sku === undefined || (e.type !== 'ITEM_ADDED' && e.type !== 'ITEM_REMOVED' && e.type !== 'QUANTITY_CHANGED')) {
      recordVersions(state, [], ts);
      return;
    }
    const line = state.items.find((i) => i.sku === sku);
    const old = line === undefined ? undefined : { ...line };
    applyBasketEvent(state.items, e);
    const now = state.items.find((i) => i.sku === sku);
    if (now !== undefined) {
      if (old === undefined || !sameMoney(old.unitPrice, now.unitPrice)) this.#subscribe(customerId, now, old !== undefined, ts);
    } else if (old !== undefined) this.#unsubscribe(customerId, sku, ts);
    recordVersions(state, old === undefined ? [] : [[sku, old]], ts);
  }

  /** Any basket event or order: every line is compared before and after. */
  #applyToLines(record: BasketIn, state: CustomerState, customerId: string, ts: number): void {
    const value = record.value as BasketEvent | OrderEvent;
    const before = new Map(state.items.map((i) => [i.sku, { ...i }] as const));
    if (record.topic === BASKET_TOPIC) {
      const e = value as BasketEvent;
      applyBasketEvent(state.items, e);
      const order = state.lastOrder;
      if (order !== undefined && e.occurredAt <= order.at) {
        // Happened before an order that was read first: that order already bought these skus.
        const bought = new Set(order.skus);
        state.items = state.items.filter((i) => !bought.has(i.sku));
      }
    } else {
      const o = value as OrderEvent;
      const skus = o.items.map((i) => i.sku);
      if (state.lastOrder === undefined || o.occurredAt >= state.lastOrder.at) state.lastOrder = { at: o.occurredAt, skus };
      const bought = new Set(skus);
      state.items = state.items.filter((i) => !bought.has(i.sku));
    }
    const after = new Set<string>();
    for (const item of state.items) {
      after.add(item.sku);
      const old = before.get(item.sku);
      // A new line, or a re-add with another unit price (the reference moves to what the customer saw last).
      if (old === undefined || !sameMoney(old.unitPrice, item.unitPrice)) this.#subscribe(customerId, item, old !== undefined, ts);
    }
    for (const sku of before.keys()) {
      if (!after.has(sku)) this.#unsubscribe(customerId, sku, ts);
    }
    recordVersions(state, before, ts);
  }

  #subscribe(customerId: string, item: BasketItem, readded: boolean, ts: number): void {
    const change: SubscriptionChange = {
      op: 'subscribe',
      customerId,
      sku: item.sku,
      at: item.addedAt,
      ...(readded ? { changedAt: ts } : {}),
      ...(item.unitPrice === undefined ? {} : { reference: item.unitPrice }),
    };
    this.#ctx.forward({ key: item.sku, value: change, timestamp: ts });
  }

  #unsubscribe(customerId: string, sku: string, ts: number): void {
    this.#ctx.forward({ key: sku, value: { op: 'unsubscribe', customerId, sku, at: ts }, timestamp: ts });
  }
}

/**
 * Remembers the versions of lines this event ended: a line that left the basket, or whose unit price or
 * quantity changed, keeps [from, ts) with what it was, so a late candidate is judged as of its own time.
 */
function recordVersions(state: CustomerState, before: Iterable<readonly [sku: string, line: BasketItem]>, ts: number): void {
  // In place: the state is this event's to write. Most events (views, checkout) change no line: no allocation.
  const since = state.lineSince;
  let past = state.past;
  let current: Map<string, BasketItem> | undefined;
  for (const [sku, old] of before) {
    if (current === undefined) {
      current = new Map();
      for (const i of state.items) if (!current.has(i.sku)) current.set(i.sku, i);
    }
    const now = current.get(sku);
    if (now !== undefined && now.addedAt === old.addedAt && now.quantity === old.quantity && sameMoney(now.unitPrice, old.unitPrice)) continue;
    const from = since?.[sku] ?? old.addedAt;
    if (from < ts) {
      past ??= [];
      past.push({ sku, addedAt: old.addedAt, from, until: ts, quantity: old.quantity, ...(old.unitPrice === undefined ? {} : { unitPrice: old.unitPrice }) });
    }
    if (now === undefined) {
      if (since !== undefined) delete since[sku];
    } else (state.lineSince ??= {})[sku] = ts;
  }
  const lineSince = state.lineSince;
  if (lineSince !== undefined) {
    // Lines no longer in the basket have no current version.
    for (const sku of Object.keys(lineSince)) if (!state.items.some((i) => i.sku === sku)) delete lineSince[sku];
    let any = false;
    for (const _ in lineSince) {
      any = true;
      break;
    }
    if (!any) delete state.lineSince;
  }
  if (past !== undefined && past.length > 0) state.past = past.length > PAST_LINES_CAP ? past.slice(past.length - PAST_LINES_CAP) : past;
  else delete state.past;
}

function prunePast(state: CustomerState, olderThan: number): void {
  if (state.past === undefined) return;
  if (state.past.every((v) => v.until >= olderThan)) return;
  const kept = state.past.filter((v) => v.until >= olderThan);
  if (kept.length > 0) state.past = kept;
  else delete state.past;
}

/** The basket line of `sku` as of `at`: the current line if its version began by then, else an ended version. */
export function lineAt(state: CustomerState, sku: string, at: number): { addedAt: number; quantity: number; unitPrice?: Money } | undefined {
  const current = state.items.find((i) => i.sku === sku);
  if (current !== undefined && (state.lineSince?.[sku] ?? current.addedAt) <= at) return current;
  const past = state.past ?? [];
  for (let i = past.length - 1; i >= 0; i--) {
    const v = past[i] as PastLine;
    if (v.sku === sku && v.from <= at && at < v.until) return v;
  }
  return undefined;
}

function pruneNotified(state: CustomerState, olderThan: number): void {
  for (const sku in state.notified) if ((state.notified[sku] as { at: number }).at < olderThan) delete state.notified[sku];
  const chains = state.chains;
  if (chains === undefined) return;
  let any = false;
  for (const sku in chains) {
    if ((chains[sku] as DropChain).entries.every((e) => e.candidate.occurredAt < olderThan)) delete chains[sku];
    else any = true;
  }
  if (!any) delete state.chains;
}

// ---------------------------------------------------------------------------------------------------------
// Sku side: subscription index, catalog state, paged fan-out

type IndexIn = StreamRecord<CatalogEvent> | StreamRecord<SubscriptionChange>;

/** What the index reads for a subscription change (undefined: absent, or not needed by the change). */
interface SubscriptionReads {
  readonly key: string;
  readonly existing: Subscriber | undefined;
  /** The ended watch under the same key: read for an unsubscribe of a live watch. */
  readonly old: Subscriber | undefined;
  readonly sku: SkuState | undefined;
  /** The sku's wave in progress: read for a subscribe that processed price events must be judged for. */
  readonly wave: FanoutCursor | undefined;
}

/** A read the subscription change needs that is not in memory. */
class Missing {
  constructor(
    readonly store: KeyValueStore<unknown>,
    readonly key: string,
  ) {}
}

/** Index of the first price event at or after `at` (the history is in event-time order); `prices.length` if none. */
function firstPriceAtOrAfter(prices: readonly PriceEvent[], at: number): number {
  let first = prices.length;
  while (first > 0 && (prices[first - 1] as PriceEvent).occurredAt >= at) first--;
  return first;
}

export class PriceIndexProcessor implements Processor<CatalogEvent | SubscriptionChange, DropCandidate> {
  #ctx!: ProcessorContext<DropCandidate>;
  readonly #settings: CampaignSettings<BasketPriceDropParams>;

  constructor(settings: CampaignSettings<BasketPriceDropParams>) {
    this.#settings = settings;
  }

  init(ctx: ProcessorContext<DropCandidate>): void {
    this.#ctx = ctx;
  }

  process(record: IndexIn): void | Promise<void> {
    if (record.topic === CATALOG_TOPIC) return this.#catalog(record as StreamRecord<CatalogEvent>);
    const c = (record as StreamRecord<SubscriptionChange>).value;
    // Without a promise when what the change reads is in memory (the common case: the runners load it ahead).
    const reads = this.#subscriptionReads(c, (store, key) => store.peek(key));
    if (!(reads instanceof Missing)) return this.#subscription(c, reads);
    return this.#loadSubscriptionReads(c, reads).then((r) => this.#subscription(c, r));
  }

  async onTimer(timer: Timer): Promise<void> {
    if (timer.name !== FANOUT_TIMER) return;
    const cursor = await this.#ctx.getStore(fanoutStore).get(timer.key);
    if (!cursor) return;
    await this.#step(timer.key, cursor);
  }

  /**
   * What a subscription change reads, all of it before it writes (every read is of another store than the writes
   * before it in the change's order, so reading first answers alike), through `peek`; or the first read it
   * cannot answer from memory.
   */
  #subscriptionReads(c: SubscriptionChange, peek: <V>(store: KeyValueStore<V>, key: string) => V | undefined | NotLoaded): SubscriptionReads | Missing {
    const subs = this.#ctx.getStore(subscribersStore);
    const key = subscriberKey(c.sku, c.customerId);
    const existing = peek(subs, key);
    if (existing === NOT_LOADED) return new Missing(subs, key);
    if (c.op === 'unsubscribe') {
      if (c.erase === true || existing === undefined) return { key, existing, old: undefined, sku: undefined, wave: undefined };
      const ended = this.#ctx.getStore(endedStore);
      const old = peek(ended, key);
      if (old === NOT_LOADED) return new Missing(ended, key);
      const skus = this.#ctx.getStore(skusStore);
      const sku = peek(skus, c.sku);
      if (sku === NOT_LOADED) return new Missing(skus, c.sku);
      return { key, existing, old, sku, wave: undefined };
    }
    const skus = this.#ctx.getStore(skusStore);
    const sku = peek(skus, c.sku);
    if (sku === NOT_LOADED) return new Missing(skus, c.sku);
    // The wave is read only for a change that price events already processed must be judged for.
    const prices = sku?.prices ?? [];
    if (firstPriceAtOrAfter(prices, c.changedAt ?? c.at) === prices.length) return { key, existing, old: undefined, sku, wave: undefined };
    const fanout = this.#ctx.getStore(fanoutStore);
    const wave = peek(fanout, c.sku);
    if (wave === NOT_LOADED) return new Missing(fanout, c.sku);
    return { key, existing, old: undefined, sku, wave };
  }

  /** {@link #subscriptionReads} once what it misses is read from RocksDB, one key at a time as it needs them. */
  async #loadSubscriptionReads(c: SubscriptionChange, first: Missing): Promise<SubscriptionReads> {
    const read = new Map<string, unknown>();
    const name = (store: KeyValueStore<unknown>, key: string): string => `${store.name}\u0000${key}`;
    let missing = first;
    for (;;) {
      read.set(name(missing.store, missing.key), await missing.store.get(missing.key));
      const r = this.#subscriptionReads(c, (store, key) => {
        const k = name(store as KeyValueStore<unknown>, key);
        return read.has(k) ? (read.get(k) as ReturnType<typeof store.peek>) : store.peek(key);
      });
      if (!(r instanceof Missing)) return r;
      missing = r;
    }
  }

  #subscription(c: SubscriptionChange, reads: SubscriptionReads): void {
    const subs = this.#ctx.getStore(subscribersStore);
    const ended = this.#ctx.getStore(endedStore);
    const { key, existing } = reads;
    if (c.op === 'unsubscribe') {
      subs.delete(key);
      if (c.erase === true) {
        ended.delete(key);
        return;
      }
      if (existing === undefined) return;
      // Kept, with its log, for price events older than the end that reach the index later (DESIGN §4).
      const old = reads.old;
      const changes = capChanges([...(old?.changes ?? []), ...changesOf(existing), { op: 'unsubscribe', at: c.at }]);
      ended.put(key, { since: existing.since, ...(existing.reference === undefined ? {} : { reference: existing.reference }), changes, until: c.at });
      const skus = this.#ctx.getStore(skusStore);
      const sku = reads.sku;
      // The sku's row says whether waves must read `ended`: written (empty) when the catalog has not spoken yet.
      if (sku === undefined) skus.put(c.sku, {});
      else if (sku.noEnded === true) {
        delete sku.noEnded;
        skus.put(c.sku, sku);
      }
      return;
    }
    const prices = reads.sku?.prices ?? [];
    const at = c.changedAt ?? c.at;
    const before = existing === undefined ? [] : changesOf(existing);
    const changes = capChanges([...before, { op: 'subscribe', at, since: c.at, ...(c.reference === undefined ? {} : { reference: c.reference }) }]);
    const now = watchAt(changes, prices, prices.length, Infinity);
    subs.put(key, { since: now?.since ?? c.at, ...(now?.reference === undefined ? {} : { reference: now.reference }), changes });
    // Price events at or after this change that the index already processed: judged now for this subscriber,
    // as their wave would have (a Kafka Streams foreign-key join re-evaluates from either side).
    // Most changes are newer than every price processed (read in event time): nothing to judge, no wave to read.
    const first = firstPriceAtOrAfter(prices, at);
    if (first === prices.length) return;
    const wave = reads.wave;
    const p = this.#settings.params;
    for (let i = first; i < prices.length; i++) {
      const e = prices[i] as PriceEvent;
      if (e.occurredAt < at) continue;
      // The wave in progress has not reached this subscriber yet: it will judge it.
      if (wave !== undefined && wave.eventId === e.eventId && wave.ended !== true && (wave.after === undefined || key > wave.after)) continue;
      const candidate = candidateFor(c.customerId, c.sku, watchAt(changes, prices, i, e.occurredAt), e, p);
      if (candidate === null) continue;
      // Already sent, alike, under the log as it was (by the wave, or by an earlier change).
      const sent = before.length === 0 ? null : candidateFor(c.customerId, c.sku, watchAt(before, prices, i, e.occurredAt), e, p);
      if (sent !== null && sent.since === candidate.since && sameMoney(sent.reference, candidate.reference)) continue;
      this.#ctx.forward({ key: c.customerId, value: candidate, timestamp: e.occurredAt });
    }
  }

  async #catalog(record: StreamRecord<CatalogEvent>): Promise<void> {
    const e = record.value;
    const skus = this.#ctx.getStore(skusStore);
    const sku = e.sku;
    // Steps of a running wave that replay would have run before this event first (it may end or replace the wave).
    await this.#catchUp(sku, e.occurredAt);
    // No row yet: no unsubscribe of the sku was seen either (it would have written one), so `ended` holds none.
    const state: SkuState = (await skus.get(sku)) ?? { noEnded: true };
    state.productId = e.productId;
    if (e.type === 'STOCK_CHANGED') {
      if (e.stock === undefined || (state.stockAt !== undefined && e.occurredAt < state.stockAt)) return;
      state.stock = e.stock;
      state.stockAt = e.occurredAt;
      skus.put(sku, state);
      return;
    }
    // A PRICE_CHANGED older than the price already known is stale: no wave for it.
    if (e.price === undefined || (state.priceAt !== undefined && e.occurredAt < state.priceAt)) return;
    const origin = this.#ctx.recordOrigin();
    const previousPrice = state.price;
    state.price = e.price;
    state.priceAt = e.occurredAt;
    const soldOut = state.stock === 0;
    const history = state.prices ?? [];
    const event: PriceEvent = {
      eventId: e.eventId,
      productId: e.productId,
      occurredAt: e.occurredAt,
      price: e.price,
      ...(previousPrice === undefined ? {} : { previousPrice }),
      causedBy: origin ? causedBy(e.eventId, origin) : { eventId: e.eventId, topic: CATALOG_TOPIC, partition: -1, offset: '-1' },
      ...(soldOut ? { soldOut: true as const } : {}),
    };
    // A redelivery (same event again) is not a second price change in the history.
    if (history[history.length - 1]?.eventId !== e.eventId) state.prices = capPrices([...history, event], this.#ctx.streamTime() - this.#settings.params.stateTtl);
    skus.put(sku, state);
    const fanout = this.#ctx.getStore(fanoutStore);
    // A newer price replaces a wave still in progress: the older price no longer applies to anyone not reached yet.
    fanout.delete(sku);
    this.#ctx.timers.cancel(FANOUT_TIMER, sku);
    if (soldOut || !origin) return;
    const cursor: FanoutCursor = {
      eventId: e.eventId,
      productId: e.productId,
      occurredAt: e.occurredAt,
      price: e.price,
      ...(previousPrice === undefined ? {} : { previousPrice }),
      causedBy: event.causedBy,
    };
    await this.#step(sku, cursor);
  }

  /**
   * One step of a wave: at most pageSize rows, the live subscribers first, then the watches that ended (for a
   * price older than their end that reached the index after it). When a full page was read, the cursor is
   * saved and a stream-time timer one millisecond of stream time later continues the wave, so other records
   * of the partition run between steps and the wave resumes after a restart.
   */
  async #step(sku: string, cursor: FanoutCursor): Promise<void> {
    const fanout = this.#ctx.getStore(fanoutStore);
    const state = await this.#ctx.getStore(skusStore).get(sku);
    if (state?.stock === 0) {
      // Sold out while the wave ran: stop it.
      fanout.delete(sku);
      return;
    }
    const p = this.#settings.params;
    const prices = state?.prices ?? [];
    let upto = prices.findLastIndex((x) => x.eventId === cursor.eventId);
    if (upto < 0) upto = prices.length;
    const event: PriceEvent = prices[upto] ?? cursor;
    const prefix = sku + SEP;
    let budget = p.pageSize;
    let next: FanoutCursor = { ...cursor, steps: (cursor.steps ?? 0) + 1 };
    if (next.ended !== true) {
      const subs = this.#ctx.getStore(subscribersStore);
      const rows = await subs.scan({ prefix, ...(next.after === undefined ? {} : { after: next.after }), limit: budget });
      for (const { key, value } of rows) {
        const changes = changesOf(value);
        const w = watchAt(changes, prices, upto, event.occurredAt);
        if (w !== undefined && w.reference === undefined) {
          // Neither the add nor the catalog knew a price: this first price becomes the reference, nothing to compare.
          const [first, ...rest] = changes;
          if (first?.op === 'subscribe') subs.put(key, { ...value, reference: event.price, changes: [{ ...first, reference: event.price }, ...rest] });
          continue;
        }
        this.#send(candidateFor(key.slice(prefix.length), sku, w, event, p));
      }
      const last = rows[rows.length - 1];
      if (rows.length < budget || last === undefined) {
        budget -= rows.length;
        next = { ...withoutAfter(next), ended: true };
      } else {
        budget = 0;
        next = { ...next, after: last.key };
      }
    }
    if (budget > 0) {
      const ended = this.#ctx.getStore(endedStore);
      // Known to hold no ended watch of the sku: nothing to read, the wave ends.
      const skip = state?.noEnded === true && next.after === undefined;
      const rows = skip ? [] : await ended.scan({ prefix, ...(next.after === undefined ? {} : { after: next.after }), limit: budget });
      let kept = 0;
      for (const { key, value } of rows) {
        // Ended at or before this price: no later price can concern it (a newer price is never older than this one).
        if (value.until !== undefined && value.until <= event.occurredAt) {
          ended.delete(key);
          continue;
        }
        kept++;
        this.#send(candidateFor(key.slice(prefix.length), sku, watchAt(changesOf(value), prices, upto, event.occurredAt), event, p));
      }
      const last = rows[rows.length - 1];
      if (rows.length < budget || last === undefined) {
        // The whole range read in this step and emptied: the next waves need not read it until an unsubscribe.
        if (!skip && state !== undefined && next.after === undefined && kept === 0) {
          state.noEnded = true;
          this.#ctx.getStore(skusStore).put(sku, state);
        }
        fanout.delete(sku);
        this.#ctx.timers.cancel(FANOUT_TIMER, sku);
        return;
      }
      next = { ...next, after: last.key };
    }
    fanout.put(sku, next);
    // Step k is due at the price event's time + k ms (see README, "Paging"): one millisecond after the previous
    // step when the price set the task's stream time, so pages interleave with later records; counted from the
    // wave's own time, so a price read behind stream time (catch-up) runs its steps at once, as replay ran them
    // before the later records, instead of waiting for stream time to pass the newest record.
    this.#ctx.timers.register({ name: FANOUT_TIMER, key: sku, time: next.occurredAt + (next.steps ?? 1), domain: 'stream-time' });
  }

  /**
   * Runs the steps of the sku's wave due (occurredAt + k) by `at`: replay runs them before a record of that time
   * (timers due first), while a task whose stream time is ahead of the catalog records it reads would otherwise
   * let a sell-out or a newer price cut the wave short (DESIGN §4).
   */
  async #catchUp(sku: string, at: number): Promise<void> {
    const fanout = this.#ctx.getStore(fanoutStore);
    for (;;) {
      const cursor = await fanout.get(sku);
      if (!cursor || cursor.occurredAt + (cursor.steps ?? 1) > at) return;
      await this.#step(sku, cursor);
    }
  }

  #send(candidate: DropCandidate | null): void {
    if (candidate !== null) this.#ctx.forward({ key: candidate.customerId, value: candidate, timestamp: candidate.occurredAt });
  }
}

function withoutAfter(c: FanoutCursor): FanoutCursor {
  const { after: _after, ...rest } = c;
  return rest;
}

// ---------------------------------------------------------------------------------------------------------
// Customer side, output: re-check a candidate in the customer's task, emit the trigger

type Out = Trigger | TriggerAudit;

export class PriceDropNotifyProcessor implements Processor<DropCandidate, Out> {
  #ctx!: ProcessorContext<Out>;
  readonly #settings: CampaignSettings<BasketPriceDropParams>;
  readonly #out: Outputs;

  constructor(settings: CampaignSettings<BasketPriceDropParams>) {
    this.#settings = settings;
    this.#out = outputsOf(NOTIFY_NODE, settings);
  }

  init(ctx: ProcessorContext<Out>): void {
    this.#ctx = ctx;
  }

  process(record: StreamRecord<DropCandidate>): void | Promise<void> {
    const c = record.value;
    const store = this.#ctx.getStore(customersStore);
    // Without a promise when the customer's state is in memory (the runners load a wave's page ahead).
    const stored = store.peek(c.customerId);
    if (stored !== NOT_LOADED) return this.#decide(c, store, stored);
    return store.get(c.customerId).then((s) => this.#decide(c, store, s));
  }

  #decide(c: DropCandidate, store: KeyValueStore<CustomerState>, state: CustomerState | undefined): void {
    // The line as of the price change (DESIGN §4: the candidate may arrive after the basket moved on): not in
    // the basket then (not added yet, or removed or bought before it): nothing.
    const item = state === undefined ? undefined : lineAt(state, c.sku, c.occurredAt);
    if (!state || !item) return;
    // Judged on another watch of the line (see DropCandidate.since): the right one comes when the sku side knows it.
    if (c.since !== undefined && c.since !== item.addedAt) return;
    // Judged with a reference the line did not have then: the sku side had not yet heard of the re-add that set
    // the line's unit price; it judges this price again when that subscription arrives.
    if (item.unitPrice !== undefined && !sameMoney(item.unitPrice, c.reference)) return;
    const chain: DropChain = state.chains?.[c.sku] ?? { entries: [], ...(state.notified[c.sku] === undefined ? {} : { base: state.notified[c.sku] }) };
    // The same price event again (a redelivery, or judged again by the sku side): already decided.
    if (chain.entries.some((e) => e.candidate.causedBy.eventId === c.causedBy.eventId)) return;
    const entries = [...chain.entries, { candidate: c, sent: false }].sort((a, b) => a.candidate.occurredAt - b.candidate.occurredAt || (a.candidate.causedBy.eventId < b.candidate.causedBy.eventId ? -1 : 1));
    // The decisions in price-event order, whatever order the candidates came in: each drop is measured from the
    // price last notified before it. A candidate that arrives late may fire now (or, rarely, show that a later
    // one should not have: that one is not retracted; see README).
    // With guards, an entry they suppressed (not for holdout) is no reference from its decision on (walkChain).
    const { fired, notified } = walkChain(entries, chain.base, (x, last) => judgeDrop(this.#settings, state, x, last));
    const out: Trigger[] = [];
    for (const [e, judgement] of fired) {
      if (!e.sent) {
        e.sent = true;
        out.push(dropTrigger(this.#settings, judgement));
      }
    }
    if (notified !== undefined) state.notified[c.sku] = notified;
    // Bounded: the oldest decisions fold into the base (the price last notified before the kept ones).
    const cutoff = this.#ctx.streamTime() - this.#settings.params.stateTtl;
    let base = chain.base;
    while (entries.length > 0 && (entries.length > DECISIONS_CAP || (entries[0] as ChainEntry).candidate.occurredAt < cutoff)) {
      const first = entries.shift() as ChainEntry;
      if (fired.has(first) && first.droppedAt === undefined) base = { price: first.candidate.newPrice, at: first.candidate.occurredAt };
    }
    // In place (the key keeps its position, a new sku goes last, as a copy with the key set would have it).
    (state.chains ??= {})[c.sku] = base === undefined ? { entries } : { entries, base };
    store.put(c.customerId, state);
    for (const trigger of out) {
      const ts = trigger.occurredAt;
      this.#ctx.forward({ key: c.customerId, value: trigger, timestamp: ts }, this.#out.trigger);
      // With guards, the SENT (or HELD/SUPPRESSED) audit comes from them; alone, the topology audits its send.
      if (this.#settings.guarded !== true) this.#ctx.forward({ key: c.customerId, value: auditOf(trigger, 'SENT', 'ok'), timestamp: ts }, this.#out.audit);
    }
  }
}

/**
 * Customer side, decision feedback (with guards): the guards' decision on a BASKET_PRICE_DROP of this campaign.
 * A trigger that notified nobody (SUPPRESSED for a reason other than holdout: cap, no consent, audience, …, or
 * dropped when released after being held) is marked `droppedAt` = the decision time in its chain, and the last
 * notified price is recomputed without it: DESIGN §3, only a sent trigger (or a holdout) lowers the reference.
 * SENT and holdout leave it notified, HELD reserves it (nothing to do). Runs in the same task and processing
 * step as the decision, so replay and the Kafka runner see the same chain.
 */
export class PriceDropDecisionsProcessor implements Processor<TriggerAudit, never> {
  #ctx!: ProcessorContext<never>;
  readonly #settings: CampaignSettings<BasketPriceDropParams>;

  constructor(settings: CampaignSettings<BasketPriceDropParams>) {
    this.#settings = settings;
  }

  init(ctx: ProcessorContext<never>): void {
    this.#ctx = ctx;
  }

  async process(record: StreamRecord<TriggerAudit>): Promise<void> {
    const a = record.value;
    if (a.type !== TYPE || a.campaignId !== this.#settings.campaignId || outcomeOf(a) !== 'not-notified') return;
    const store = this.#ctx.getStore(customersStore);
    const state = await store.get(a.customerId);
    if (state?.chains === undefined) return;
    for (const [sku, chain] of Object.entries(state.chains)) {
      const e = chain.entries.find((x) => x.candidate.causedBy.eventId === a.causedBy.eventId);
      if (e === undefined) continue;
      if (e.droppedAt !== undefined) return;
      e.droppedAt = a.occurredAt;
      const { notified } = walkChain(chain.entries, chain.base, (x, last) => judgeDrop(this.#settings, state, x, last));
      if (notified === undefined) delete state.notified[sku];
      else state.notified[sku] = notified;
      store.put(a.customerId, state);
      return;
    }
  }
}

/** The trigger a candidate gives against the basket line as of its time and the price notified before it, or null. */
/** Why a candidate fires: what its trigger reports (the line as of the price change, the reference, the drop). */
interface DropJudgement {
  readonly c: DropCandidate;
  readonly quantity: number;
  readonly reference: Money;
  readonly referenceSource: 'notified' | 'basket' | 'catalog';
  readonly lastPrice: Money | undefined;
  readonly drop: Drop;
}

/**
 * Whether a candidate fires against the price last notified before it (`last`). Every new candidate walks its
 * sku's whole chain again, so this builds no trigger (the trigger id is a SHA-256): {@link dropTrigger} does,
 * for the entries that go out.
 */
function judgeDrop(settings: CampaignSettings<BasketPriceDropParams>, state: CustomerState, c: DropCandidate, last: { price: Money; at: number } | undefined): DropJudgement | null {
  const item = lineAt(state, c.sku, c.occurredAt);
  if (item === undefined) return null;
  const added = item.unitPrice ?? c.reference;
  // A price in another currency is not comparable: ignored without an audit (it is not a suppressed trigger).
  if (added.currency !== c.newPrice.currency) return null;
  const lastPrice = last !== undefined && last.price.currency === c.newPrice.currency ? last.price : undefined;
  const useLast = lastPrice !== undefined && lastPrice.amount < added.amount;
  const reference = useLast ? lastPrice : added;
  const drop = priceDrop(reference, c.newPrice, settings.params);
  if (drop === null) return null;
  return { c, quantity: item.quantity, reference, referenceSource: useLast ? 'notified' : item.unitPrice !== undefined ? 'basket' : 'catalog', lastPrice, drop };
}

function dropTrigger(settings: CampaignSettings<BasketPriceDropParams>, j: DropJudgement): Trigger {
  const { c, reference, lastPrice, drop } = j;
  const p = settings.params;
  return {
    triggerId: triggerId(NAME, c.customerId, TYPE, c.causedBy.eventId),
    type: TYPE,
    customerId: c.customerId,
    occurredAt: c.occurredAt,
    campaignId: settings.campaignId,
    variant: 'default',
    channels: [...settings.channels],
    causedBy: c.causedBy,
    explanation: {
      rule: 'a sku in the basket got a price at least minDropPercent and minDropAmount below the reference (add price, or last notified price if lower)',
      params: { minDropPercent: p.minDropPercent, minDropAmount: p.minDropAmount },
      observed: {
        referencePrice: reference,
        referenceSource: j.referenceSource,
        newPrice: c.newPrice,
        dropPercent: Math.round(drop.dropPercent * 100) / 100,
        dropAmount: drop.dropAmount,
        ...(lastPrice === undefined ? {} : { lastNotifiedPrice: lastPrice }),
        ...(c.previousPrice === undefined ? {} : { previousCatalogPrice: c.previousPrice }),
      },
    },
    payload: {
      sku: c.sku,
      productId: c.productId,
      oldPrice: reference,
      newPrice: c.newPrice,
      quantity: j.quantity,
    },
    expiresAt: c.occurredAt + settings.expiresAfterMs,
  };
}

export const basketPriceDrop: TopologyDefinition<BasketPriceDropParams> = {
  name: NAME,
  description: 'BASKET_PRICE_DROP when a basket sku gets a price minDropPercent/minDropAmount below the reference',
  defaults,
  build(builder, settings) {
    const errors = checkBasketPriceDropParams(settings.params);
    if (errors.length > 0) throw new RangeError(`${NAME}: invalid params: ${errors.join('; ')}`);
    const ttlMs = settings.params.stateTtl;
    const customerState = { ...customersStore, ttlMs };
    const basket = builder.ensureSource(BASKET_TOPIC);
    const orders = builder.ensureSource(ORDERS_TOPIC);
    const catalog = builder.ensureSource(CATALOG_TOPIC);
    const customers = builder.ensureSource(CUSTOMERS_TOPIC);
    builder
      .addProcessor(BASKET_NODE, () => new BasketWatchProcessor(settings), [basket, orders, customers], 'basket lines per customer → subscribe/unsubscribe by sku; erasure withdraws them')
      .addRepartition(BY_SKU, [BASKET_NODE])
      .addProcessor(INDEX_NODE, () => new PriceIndexProcessor(settings), [catalog, BY_SKU], 'sku → subscribers index, catalog price and stock; paged fan-out per PRICE_CHANGED')
      .addRepartition(TO_CUSTOMER, [INDEX_NODE])
      .addProcessor(NOTIFY_NODE, () => new PriceDropNotifyProcessor(settings), [TO_CUSTOMER], 're-checks a candidate against the basket and last notified price')
      .addStore(customerState, [BASKET_NODE, NOTIFY_NODE])
      .addStore({ ...subscribersStore, ttlMs }, [INDEX_NODE])
      .addStore({ ...endedStore, ttlMs }, [INDEX_NODE])
      .addStore(skusStore, [INDEX_NODE])
      .addStore(fanoutStore, [INDEX_NODE]);
    wireOutputs(builder, NOTIFY_NODE, settings);
    // With guards: their decisions come back, so only a sent trigger (or a holdout) stays the last notified price.
    if (settings.guarded === true && settings.output !== undefined) {
      builder.addProcessor(DECISIONS_NODE, () => new PriceDropDecisionsProcessor(settings), [settings.output], 'guard decisions on its triggers: a suppressed one is no reference');
      builder.addStore(customerState, [DECISIONS_NODE]);
      subscribeDecisions(builder, DECISIONS_NODE, [TYPE]);
    }
  },
};
