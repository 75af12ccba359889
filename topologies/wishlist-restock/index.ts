/**
 * WISHLIST_BACK_IN_STOCK (DESIGN §3, fan-out per §4). See README.md beside this file.
 *
 *   shop.wishlist.v1 (customerId) ─► wishes-by-product ─┐
 *                                                       ├─► by-product repartition (productId) ─► index ─► to-customer repartition (customerId) ─► notify ─► triggers / audit
 *   shop.catalog.v1 (sku) ─────────► stock-by-product ──┘
 */
import { Type, type Static } from '@sinclair/typebox';
import { jsonCodec, keyValueStore, type KeyValue, type Processor, type ProcessorContext, type StreamRecord, type Timer } from '../../src/engine/api/index.js';
import { Duration, toMs } from '../../src/config/duration.js';
import type { CatalogEvent, CustomerProfile, Trigger, TriggerAudit, WishlistEvent } from '../../schemas/contract.js';
import { outputsOf, wireOutputs, type CampaignSettings, type Outputs, type TopologyDefinition } from '../common/campaign.js';
import { auditOf, causedBy, triggerId, type CausedBy } from '../common/triggers.js';
import { outcomeOf, subscribeDecisions } from '../common/guards.js';

export const NAME = 'wishlist-restock';
export const WISHLIST_TOPIC = 'shop.wishlist.v1';
export const CATALOG_TOPIC = 'shop.catalog.v1';
export const CUSTOMERS_TOPIC = 'crm.customers.v1';
/** Repartition node (and topic `<app>-wishlist-restock.by-product-repartition`): wish changes and stock keyed by productId. */
export const BY_PRODUCT = 'wishlist-restock.by-product';
/** Repartition node (and topic `<app>-wishlist-restock.to-customer-repartition`): matches keyed by customerId. */
export const TO_CUSTOMER = 'wishlist-restock.to-customer';
const WISHES_BY_PRODUCT = 'wishlist-restock.wishes-by-product';
const STOCK_BY_PRODUCT = 'wishlist-restock.stock-by-product';
const INDEX = 'wishlist-restock.index';
const NOTIFY = 'wishlist-restock.notify';
/** With guards: their decisions on this topology's triggers (decision feedback). */
export const DECISIONS = 'wishlist-restock.decisions';
/** The sink node of the by-product repartition (see TopologyBuilder.addRepartition). */
const BY_PRODUCT_SINK = `${BY_PRODUCT}.sink`;
const PAGE_TIMER = 'page';
const TYPE = 'WISHLIST_BACK_IN_STOCK';
const DAY = 86_400_000;
const SEP = '\u0000';

export interface WishlistRestockParams {
  /** A sku counts as in stock from this many units. @default 1 */
  readonly minStock: number;
  /** At most this many customers per unit in stock are notified in one wave; null (or Infinity) = unlimited. @default null */
  readonly maxPerUnit: number | null;
  /** No second trigger for the same customer and sku within this time (ms). @default 7 d */
  readonly cooldown: number;
  /** Wishes examined per paging step of a wave. @default 500 */
  readonly pageSize: number;
  /** Wishes not (re-)added for this long are no longer notified; stock and cooldown state untouched this long is dropped (ms). @default 365 d */
  readonly stateTtl: number;
}

export const defaults: WishlistRestockParams = { minStock: 1, maxPerUnit: null, cooldown: 7 * DAY, pageSize: 500, stateTtl: 365 * DAY };

/** Campaign config schema of `params` (every field optional; durations as ms or "7d"). */
export const WishlistRestockParamsSchema = Type.Object(
  {
    minStock: Type.Optional(Type.Integer({ minimum: 1, description: 'a sku counts as in stock from this many units (default 1)' })),
    maxPerUnit: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1 }), Type.Literal('unlimited'), Type.Null()], {
        description: 'customers notified per unit in stock in one wave; "unlimited" or null for no limit (default unlimited)',
      }),
    ),
    cooldown: Type.Optional(Duration),
    pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: 'wishes examined per paging step (default 500)' })),
    stateTtl: Type.Optional(Duration),
  },
  { additionalProperties: false },
);
export type WishlistRestockParamsInput = Static<typeof WishlistRestockParamsSchema>;

/** Resolves validated config input to params: defaults filled in, durations in ms, "unlimited" as null. */
export function wishlistRestockParams(input: WishlistRestockParamsInput = {}): WishlistRestockParams {
  return {
    minStock: input.minStock ?? defaults.minStock,
    maxPerUnit: input.maxPerUnit === undefined ? defaults.maxPerUnit : input.maxPerUnit === 'unlimited' ? null : input.maxPerUnit,
    cooldown: input.cooldown === undefined ? defaults.cooldown : toMs(input.cooldown),
    pageSize: input.pageSize ?? defaults.pageSize,
    stateTtl: input.stateTtl === undefined ? defaults.stateTtl : toMs(input.stateTtl),
  };
}

/** What wishes-by-product and stock-by-product send through the by-product repartition topic (JSON). */
export type ByProduct =
  | { kind: 'wish'; op: 'add' | 'remove'; productId: string; customerId: string; sku: string | null; at: number; eventId: string }
  /** `causedBy` names the catalog record itself: past the repartition topic the record origin is that topic's. */
  | { kind: 'stock'; productId: string; sku: string; stock: number; at: number; eventId: string; causedBy: CausedBy }
  /**
   * From the customer's task (limited quota only): the match of restock `eventId` through the wish
   * (`wishedSku`, customer) notified nobody — cooldown, or the guards suppressed it (not holdout), at once or
   * when released after being held — decided at `at`: its place goes back to the wave (DESIGN §3).
   */
  | { kind: 'return'; productId: string; sku: string; customerId: string; wishedSku: string | null; eventId: string; at: number };

/** A wish in the product's task. `seenAt` is the last ITEM_ADDED for it (re-adding keeps `wishedAt`). */
export interface Wish {
  customerId: string;
  sku: string | null;
  wishedAt: number;
  eventId: string;
  seenAt: number;
  /**
   * `wish-order` only: the wish was removed then. The row stays (out of `wishes`) so a restock older than the
   * removal that reaches the index after it still notifies the customer (DESIGN §4); see README.
   */
  removedAt?: number;
}

/** A restock whose wave ran (kept per product, recent ones), so a wish older than it that arrives later is matched. */
export interface Restock {
  productId: string;
  sku: string;
  restockAt: number;
  eventId: string;
  causedBy: CausedBy;
  previousStock: number;
  stock: number;
  limit: number | null;
  /** Matches sent for it (by its wave and for late wishes). */
  sent: number;
  /**
   * With a limit only: the wishes (`wishes` keys) that took a place. A removal older than the restock that reaches
   * the index after the match gives the place back (the customer task drops that match), see README.
   */
  matched?: string[];
}

/** Customer task: one wish of the customer, [from, until) in event time (`until` absent: still wished). */
export interface WishInterval {
  productId: string;
  sku: string | null;
  from: number;
  until?: number;
}

/** Bounds of the histories that make the fan-out order-insensitive (see README, "Order-insensitivity"). */
export const RESTOCKS_CAP = 16;
export const WISH_INTERVALS_CAP = 64;

export interface SkuStock {
  stock: number;
  at: number;
  eventId: string;
}

/** A running wave: one restock of one sku, paged through the product's wishes oldest first. */
export interface Wave {
  productId: string;
  sku: string;
  restockAt: number;
  eventId: string;
  causedBy: CausedBy;
  previousStock: number;
  stock: number;
  /** maxPerUnit × stock at the restock; null = unlimited. */
  limit: number | null;
  /** Matches forwarded so far (the last one's wave position). */
  sent: number;
  /** Last wish-order key consumed in the sku's range / the product-level range; null = not started. */
  skuCursor: string | null;
  productCursor: string | null;
  skuDone: boolean;
  productDone: boolean;
  /** Steps run so far; step k is due at restockAt + k of stream time (as in replay, where the restock sets stream time). */
  steps?: number;
  /**
   * The sku sold out (below minStock) at this time: the wave stops where it is. Kept (until the wave's ranges
   * end or the sku's next restock replaces it) so a place returned by a decision taken before this time still
   * tops the wave up, as it did in replay, where that decision came before the sell-out.
   */
  stoppedAt?: number;
}

/** A wave with a limit whose places are all taken (sent, held or in flight): it waits for places to come back. */
const paused = (w: Pick<Wave, 'limit' | 'sent'>): boolean => w.limit !== null && w.sent >= w.limit;

/** What the index sends through the to-customer repartition topic (JSON). */
export interface RestockMatch {
  customerId: string;
  productId: string;
  sku: string;
  /** The wish's sku, or null for a product-level (any size) wish. */
  wishedSku: string | null;
  wishedAt: number;
  /** 1-based position in the wave. */
  position: number;
  limit: number | null;
  stock: number;
  previousStock: number;
  restockAt: number;
  restockEventId: string;
  causedBy: CausedBy;
}

/** Per customer: sku → the last restock notified (SENT) for it. */
export type NotifiedState = Record<string, NotifiedSku>;

/** The last restock notified for a sku, and the recent restocks decided for it (newest last, at most DECIDED_CAP). */
export interface NotifiedSku {
  at: number;
  eventId: string;
  decided?: DecidedRestock[];
}

/** One restock decided for a customer and sku. */
export interface DecidedRestock {
  eventId: string;
  /** The restock's time. */
  at: number;
  /** A trigger was emitted (not suppressed for cooldown). */
  sent: boolean;
  /**
   * With guards: when they decided the trigger notified nobody (suppressed, not for holdout; or dropped when
   * released after being held). It starts no cooldown: it counts only for restocks in [at, droppedAt), while
   * it was held (reserved), see {@link countsAt}.
   */
  droppedAt?: number;
  /** With a limited quota: the wish that took the place (to give it back). */
  place?: { productId: string; wishedSku: string | null };
}

/**
 * Whether a decided restock starts a cooldown that covers a restock at `t`: it was sent (emitted), and the guards
 * did not drop it — or dropped it only after `t`, while it was held from `at` on (a held trigger reserves).
 */
export function countsAt(d: DecidedRestock, t: number): boolean {
  return d.sent && (d.droppedAt === undefined || (d.at <= t && t < d.droppedAt));
}

export const DECIDED_CAP = 16;

const pad = (t: number): string => Math.max(0, Math.trunc(t)).toString().padStart(16, '0');
/** Membership: `productId \0 sku|'' \0 customerId` → wish. */
const wishKey = (productId: string, sku: string | null, customerId: string): string => `${productId}${SEP}${sku ?? ''}${SEP}${customerId}`;
/** The range of wishes for one sku of a product, or ('' sku) of product-level wishes. */
const rangePrefix = (productId: string, sku: string | null): string => `${productId}${SEP}${sku ?? ''}${SEP}`;
/** Order: `productId \0 sku|'' \0 wishedAt(16 digits) \0 customerId` → wish, so byte order is oldest first. */
const orderKey = (productId: string, w: Wish): string => `${rangePrefix(productId, w.sku)}${pad(w.wishedAt)}${SEP}${w.customerId}`;

export const wishesStore = keyValueStore('wishlist-restock.wishes', jsonCodec<Wish>(), {
  doc: 'productId/sku/customerId → wish (membership, for removals)',
});
export const wishOrderStore = keyValueStore('wishlist-restock.wish-order', jsonCodec<Wish>(), {
  doc: 'productId/sku/wishedAt/customerId → wish: per-sku and product-level wishes oldest first, paged by waves',
});
export const stockStore = keyValueStore('wishlist-restock.stock', jsonCodec<SkuStock>(), { doc: 'sku → last known stock (in the product task)' });
export const wavesStore = keyValueStore('wishlist-restock.waves', jsonCodec<Wave>(), { doc: 'sku → running restock wave and its cursors' });
export const restocksStore = keyValueStore('wishlist-restock.restocks', jsonCodec<Restock[]>(), {
  doc: 'productId → recent restocks of its skus (for wishes older than a restock that reach the index after it)',
});
export const wishHistoryStore = keyValueStore('wishlist-restock.wish-history', jsonCodec<WishInterval[]>(), {
  keyedByRecordKey: true,
  doc: 'customerId → recent wishes with their add and removal times (a match is judged against the wishes as of its restock)',
});
export const notifiedStore = keyValueStore('wishlist-restock.notified', jsonCodec<NotifiedState>(), {
  doc: 'customerId → sku → last restock notification (cooldown)',
  keyedByRecordKey: true,
});

/** Ids become parts of composite store keys joined by U+0000. */
const safeId = (s: string | undefined): boolean => s === undefined || !s.includes(SEP);

/** customerId → the customer's wishes (so an erasure can withdraw them from the product-side index). */
export const customerWishesStore = keyValueStore('wishlist-restock.customer-wishes', jsonCodec<{ productId: string; sku: string | null }[]>(), {
  keyedByRecordKey: true,
  doc: 'customerId → wished products/skus',
});

class WishesByProduct implements Processor<WishlistEvent | CustomerProfile | null, ByProduct> {
  #ctx!: ProcessorContext<ByProduct>;
  readonly #ttl: number;
  constructor(ttl: number) {
    this.#ttl = ttl;
  }
  init(ctx: ProcessorContext<ByProduct>): void {
    this.#ctx = ctx;
  }
  async process(r: StreamRecord<WishlistEvent | CustomerProfile | null>): Promise<void> {
    const store = this.#ctx.getStore(customerWishesStore);
    if (r.topic === CUSTOMERS_TOPIC) {
      // Erasure: withdraw every wish of the customer from the product-side index.
      if (r.value !== null) return;
      const customerId = r.key as string;
      for (const w of (await store.get(customerId)) ?? []) {
        const value: ByProduct = { kind: 'wish', op: 'remove', productId: w.productId, customerId, sku: w.sku, at: r.timestamp, eventId: `erase-${customerId}` };
        this.#ctx.forward({ key: w.productId, value, timestamp: r.timestamp });
      }
      return;
    }
    const e = r.value as WishlistEvent;
    if (!safeId(e.productId) || !safeId(e.sku) || !safeId(e.customerId)) {
      this.#ctx.logger.warn({ eventId: e.eventId }, 'wishlist event with U+0000 in an id ignored');
      return;
    }
    const sku = e.sku ?? null;
    await this.#history(e, sku);
    const wishes = ((await store.get(e.customerId)) ?? []).filter((w) => !(w.productId === e.productId && w.sku === sku));
    if (e.type === 'ITEM_ADDED') wishes.push({ productId: e.productId, sku });
    if (wishes.length > 0) store.put(e.customerId, wishes);
    else store.delete(e.customerId);
    const value: ByProduct = {
      kind: 'wish',
      op: e.type === 'ITEM_ADDED' ? 'add' : 'remove',
      productId: e.productId,
      customerId: e.customerId,
      sku,
      at: e.occurredAt,
      eventId: e.eventId,
    };
    this.#ctx.forward({ key: e.productId, value, timestamp: r.timestamp });
  }

  /** The customer's wish intervals: an add opens one (unless open), a removal closes it. */
  async #history(e: WishlistEvent, sku: string | null): Promise<void> {
    const store = this.#ctx.getStore(wishHistoryStore);
    const intervals = [...((await store.get(e.customerId)) ?? [])];
    const open = intervals.findIndex((w) => w.productId === e.productId && w.sku === sku && w.until === undefined);
    if (e.type === 'ITEM_ADDED') {
      if (open < 0) intervals.push({ productId: e.productId, sku, from: e.occurredAt });
    } else if (open >= 0) intervals[open] = { ...(intervals[open] as WishInterval), until: e.occurredAt };
    else return;
    const cutoff = this.#ctx.streamTime() - this.#ttl;
    let kept = intervals.filter((w) => w.until === undefined || w.until >= cutoff);
    // Over the cap: the oldest closed intervals go first.
    while (kept.length > WISH_INTERVALS_CAP) {
      const i = kept.findIndex((w) => w.until !== undefined);
      if (i < 0) break;
      kept = [...kept.slice(0, i), ...kept.slice(i + 1)];
    }
    if (kept.length > 0) store.put(e.customerId, kept);
    else store.delete(e.customerId);
  }
}

/** Whether the customer wished for the sku, or its product in any size, at `at` (as the index saw it in replay). */
export function wishedAt(intervals: readonly WishInterval[], productId: string, sku: string, at: number): boolean {
  return intervals.some((w) => w.productId === productId && (w.sku === sku || w.sku === null) && w.from <= at && (w.until === undefined || at < w.until));
}

class StockByProduct implements Processor<CatalogEvent, ByProduct> {
  #ctx!: ProcessorContext<ByProduct>;
  init(ctx: ProcessorContext<ByProduct>): void {
    this.#ctx = ctx;
  }
  process(r: StreamRecord<CatalogEvent>): void {
    const e = r.value;
    const origin = this.#ctx.recordOrigin();
    if (e.type !== 'STOCK_CHANGED' || e.stock === undefined || !origin) return;
    if (!safeId(e.productId) || !safeId(e.sku)) {
      this.#ctx.logger.warn({ eventId: e.eventId }, 'catalog event with U+0000 in an id ignored');
      return;
    }
    const value: ByProduct = { kind: 'stock', productId: e.productId, sku: e.sku, stock: e.stock, at: e.occurredAt, eventId: e.eventId, causedBy: causedBy(e.eventId, origin) };
    this.#ctx.forward({ key: e.productId, value, timestamp: r.timestamp });
  }
}

function unlimited(maxPerUnit: number | null): boolean {
  return maxPerUnit === null || !Number.isFinite(maxPerUnit);
}

/**
 * The product's task: the subscription index, stock per sku and the running waves. A wave is paged: each step
 * examines at most `pageSize` wishes, then continues on a stream-time timer one millisecond later.
 */
export class RestockIndexProcessor implements Processor<ByProduct, RestockMatch> {
  #ctx!: ProcessorContext<RestockMatch>;
  readonly #p: WishlistRestockParams;

  constructor(settings: CampaignSettings<WishlistRestockParams>) {
    this.#p = settings.params;
  }

  init(ctx: ProcessorContext<RestockMatch>): void {
    this.#ctx = ctx;
  }

  async process(r: StreamRecord<ByProduct>): Promise<void> {
    const v = r.value;
    if (v.kind === 'wish') await this.#wish(v);
    else if (v.kind === 'return') await this.#return(v);
    else await this.#stock(v);
  }

  async onTimer(timer: Timer): Promise<void> {
    if (timer.name === PAGE_TIMER) await this.#page(timer.key);
  }

  async #wish(v: Extract<ByProduct, { kind: 'wish' }>): Promise<void> {
    const wishes = this.#ctx.getStore(wishesStore);
    const order = this.#ctx.getStore(wishOrderStore);
    const key = wishKey(v.productId, v.sku, v.customerId);
    const existing = await wishes.get(key);
    if (v.op === 'remove') {
      if (!existing) return;
      wishes.delete(key);
      // The order row stays, marked, for restocks older than the removal that reach the index later.
      if (v.eventId.startsWith('erase-')) order.delete(orderKey(v.productId, existing));
      else order.put(orderKey(v.productId, existing), { ...existing, removedAt: v.at });
      await this.#release(v.productId, existing, v.at);
      return;
    }
    // Re-adding keeps the original wish time (its place in the queue) and only refreshes seenAt.
    const wish: Wish = existing
      ? { ...existing, seenAt: Math.max(existing.seenAt, v.at) }
      : { customerId: v.customerId, sku: v.sku, wishedAt: v.at, eventId: v.eventId, seenAt: v.at };
    wishes.put(key, wish);
    order.put(orderKey(v.productId, wish), wish);
    if (!existing) await this.#late(v.productId, wish);
  }

  /**
   * A new wish made at or before restocks the index already ran (it reached the index after them): matched
   * for each as its wave would have (same restock, time and cause, so the same trigger id), unless the wave is
   * still to reach it or a limited quota is used up.
   */
  async #late(productId: string, w: Wish): Promise<void> {
    const restocksAll = this.#ctx.getStore(restocksStore);
    const restocks = (await restocksAll.get(productId)) ?? [];
    if (restocks.length === 0) return;
    const waves = this.#ctx.getStore(wavesStore);
    let changed = false;
    const next = [...restocks];
    for (const [i, r] of restocks.entries()) {
      if (w.wishedAt > r.restockAt || (w.sku !== null && w.sku !== r.sku)) continue;
      // Not skipped when the customer's other wish (sku-specific or any size) is here: it may have been removed
      // before the restock with the removal still on its way. A second match for the restock is decided once.
      const wave = await waves.get(r.sku);
      const running = wave !== undefined && wave.eventId === r.eventId ? wave : undefined;
      if (running) {
        const [done, cursor] = w.sku === null ? [running.productDone, running.productCursor] : [running.skuDone, running.skuCursor];
        // The wave has yet to reach this wish: it will match it in its place.
        if (!done && (cursor === null || orderKey(productId, w) > cursor)) continue;
      }
      const key = wishKey(productId, w.sku, w.customerId);
      if (r.matched?.includes(key) === true) continue;
      const sent = running ? running.sent : r.sent;
      if (r.limit !== null && sent >= r.limit) continue;
      if (running) waves.put(r.sku, { ...running, sent: sent + 1 });
      next[i] = { ...r, sent: sent + 1, ...(r.limit === null ? {} : { matched: [...(r.matched ?? []), key] }) };
      changed = true;
      this.#ctx.forward({ key: w.customerId, value: matchOf(r, w, sent + 1), timestamp: r.restockAt });
    }
    if (changed) restocksAll.put(productId, next);
  }

  /**
   * A removal made at or before restocks for which the wish already took a place of a limited quota (the
   * removal reached the index after the match): the customer task drops that match (not wished at the
   * restock), so the place goes back to the restock: its running wave goes on, or, when its wave has ended, the
   * wave runs again from the oldest wish, skipping the wishes already matched (a late wish the quota turned away
   * gets its place back, oldest first), see README, Order-insensitivity.
   */
  async #release(productId: string, w: Wish, removedAt: number): Promise<void> {
    const restocksAll = this.#ctx.getStore(restocksStore);
    const restocks = (await restocksAll.get(productId)) ?? [];
    const key = wishKey(productId, w.sku, w.customerId);
    if (!restocks.some((r) => r.matched?.includes(key) === true && removedAt <= r.restockAt)) return;
    const waves = this.#ctx.getStore(wavesStore);
    const wishes = this.#ctx.getStore(wishesStore);
    const next = [...restocks];
    const resumed: string[] = [];
    for (const [i, r] of restocks.entries()) {
      if (r.matched?.includes(key) !== true || removedAt > r.restockAt) continue;
      // The customer's other wish (any size, or this sku) still covers the restock: the match stands.
      const other = await wishes.get(wishKey(productId, w.sku === null ? r.sku : null, w.customerId));
      if (other && other.wishedAt <= r.restockAt) continue;
      const released: Restock = { ...r, sent: Math.max(0, r.sent - 1), matched: r.matched.filter((k) => k !== key) };
      const wave = await waves.get(r.sku);
      if (wave !== undefined && wave.eventId === r.eventId) {
        if (paused(wave) && (wave.stoppedAt === undefined || removedAt < wave.stoppedAt)) {
          // A wave that waited with every place taken runs again from the oldest wish, as an ended one does below
          // (a late wish the quota turned away may be behind its cursor); matched wishes are skipped, and one whose
          // place came back before (cooldown, suppressed) gives it back again from the customer's task.
          const cursors = { skuCursor: null, productCursor: null, skuDone: false, productDone: false };
          waves.put(r.sku, { ...wave, ...cursors, sent: Math.max(0, wave.sent - 1) });
          resumed.push(r.sku);
        } else waves.put(r.sku, { ...wave, sent: Math.max(0, wave.sent - 1) });
      } else if (wave === undefined) {
        const { productId: p, sku, restockAt, eventId, causedBy: cause, previousStock, stock, limit } = r;
        const cursors = { skuCursor: null, productCursor: null, skuDone: false, productDone: false };
        waves.put(sku, { productId: p, sku, restockAt, eventId, causedBy: cause, previousStock, stock, limit, sent: released.sent, ...cursors, steps: 0 });
        resumed.push(sku);
      }
      next[i] = released;
    }
    restocksAll.put(productId, next);
    for (const sku of resumed) await this.#page(sku);
  }

  /**
   * A place comes back from the customer's task (DESIGN §3: only a send or a holdout uses the quota): the match
   * took it, the customer was in cooldown or the guards suppressed the trigger. The wish stays out of the wave
   * (its cursor is past it); the wave, if it waits with every place taken, goes on from its cursor, oldest
   * first — unless the sku sold out before the decision (`stoppedAt <= at`: replay took the decision after the
   * sell-out). A return for a match that holds no place (already returned, or a redelivery) changes nothing.
   */
  async #return(v: Extract<ByProduct, { kind: 'return' }>): Promise<void> {
    const restocksAll = this.#ctx.getStore(restocksStore);
    const restocks = (await restocksAll.get(v.productId)) ?? [];
    const i = restocks.findIndex((r) => r.eventId === v.eventId && r.sku === v.sku);
    const r = restocks[i];
    const key = wishKey(v.productId, v.wishedSku, v.customerId);
    if (r === undefined || r.limit === null || r.matched?.includes(key) !== true) return;
    const next = [...restocks];
    next[i] = { ...r, sent: Math.max(0, r.sent - 1), matched: r.matched.filter((k) => k !== key) };
    restocksAll.put(v.productId, next);
    const waves = this.#ctx.getStore(wavesStore);
    const wave = await waves.get(v.sku);
    if (wave === undefined || wave.eventId !== v.eventId) return;
    const wasPaused = paused(wave);
    waves.put(v.sku, { ...wave, sent: Math.max(0, wave.sent - 1) });
    if (wasPaused && (wave.stoppedAt === undefined || v.at < wave.stoppedAt)) await this.#page(v.sku);
  }

  /** Remembers a restock whose wave starts (recent ones per product: RESTOCKS_CAP, none older than stateTtl). */
  async #remember(r: Restock): Promise<void> {
    const store = this.#ctx.getStore(restocksStore);
    const cutoff = this.#ctx.streamTime() - this.#p.stateTtl;
    const kept = [...((await store.get(r.productId)) ?? []).filter((x) => x.restockAt >= cutoff && x.eventId !== r.eventId), r];
    store.put(r.productId, kept.length > RESTOCKS_CAP ? kept.slice(kept.length - RESTOCKS_CAP) : kept);
  }

  /** The wave's restock record (its index among the product's recent restocks). */
  async #restockOf(wave: Wave): Promise<{ restocks: Restock[]; i: number }> {
    const restocks = (await this.#ctx.getStore(restocksStore).get(wave.productId)) ?? [];
    return { restocks, i: restocks.findIndex((r) => r.eventId === wave.eventId && r.sku === wave.sku) };
  }

  /** The wave's count of matches and the wishes matched, copied to its restock record (late wishes count against the same quota). */
  async #syncSent(wave: Wave, matched: readonly string[] | undefined): Promise<void> {
    const { restocks, i } = await this.#restockOf(wave);
    const r = restocks[i];
    if (r === undefined) return;
    if (r.sent === wave.sent && (matched === undefined || matched.length === (r.matched ?? []).length)) return;
    const next = [...restocks];
    next[i] = { ...r, sent: wave.sent, ...(matched === undefined ? {} : { matched: [...matched] }) };
    this.#ctx.getStore(restocksStore).put(wave.productId, next);
  }

  async #stock(v: Extract<ByProduct, { kind: 'stock' }>): Promise<void> {
    await this.#catchUp(v.sku, v.at);
    const stocks = this.#ctx.getStore(stockStore);
    const prev = await stocks.get(v.sku);
    // A stock event older than the last known one for the sku is stale: neither a transition nor the new level.
    if (prev && v.at < prev.at) return;
    stocks.put(v.sku, { stock: v.stock, at: v.at, eventId: v.eventId });
    const min = this.#p.minStock;
    if (v.stock < min) {
      // Sold out (below minStock): the running wave of this sku stops where it is; with a limit it is kept
      // (stopped) for places returned by decisions taken before the sell-out.
      const wave = await this.#ctx.getStore(wavesStore).get(v.sku);
      if (wave !== undefined && wave.limit !== null && wave.stoppedAt === undefined) {
        this.#ctx.getStore(wavesStore).put(v.sku, { ...wave, stoppedAt: v.at });
        this.#ctx.timers.cancel(PAGE_TIMER, v.sku);
      } else if (wave !== undefined && wave.stoppedAt === undefined) this.#endWave(v.sku);
      return;
    }
    // Unknown previous stock is no transition: the first stock event of a sku must not notify everyone.
    if (!prev || prev.stock >= min) return;
    const maxPerUnit = this.#p.maxPerUnit;
    const wave: Wave = {
      productId: v.productId,
      sku: v.sku,
      restockAt: v.at,
      eventId: v.eventId,
      causedBy: v.causedBy,
      previousStock: prev.stock,
      stock: v.stock,
      limit: maxPerUnit === null || !Number.isFinite(maxPerUnit) ? null : Math.floor(maxPerUnit * v.stock),
      sent: 0,
      skuCursor: null,
      productCursor: null,
      skuDone: false,
      productDone: false,
      steps: 0,
    };
    this.#ctx.getStore(wavesStore).put(v.sku, wave);
    await this.#remember({
      productId: v.productId,
      sku: v.sku,
      restockAt: v.at,
      eventId: v.eventId,
      causedBy: v.causedBy,
      previousStock: prev.stock,
      stock: v.stock,
      limit: wave.limit,
      sent: 0,
      ...(wave.limit === null ? {} : { matched: [] }),
    });
    await this.#page(v.sku);
  }

  /**
   * Runs the steps of the sku's wave that were due (restockAt + k) by `at`, before a stock event of that time
   * may end it: replay runs them before the record (timers due first), while a task reading the repartition
   * topic behind its stream time would otherwise end the wave early (DESIGN §4).
   */
  async #catchUp(sku: string, at: number): Promise<void> {
    const waves = this.#ctx.getStore(wavesStore);
    for (;;) {
      const wave = await waves.get(sku);
      // A paused or stopped wave has no step due: it goes on only when a place comes back.
      if (!wave || paused(wave) || wave.stoppedAt !== undefined || wave.restockAt + (wave.steps ?? 1) > at) return;
      await this.#page(sku);
    }
  }

  #endWave(sku: string): void {
    this.#ctx.getStore(wavesStore).delete(sku);
    this.#ctx.timers.cancel(PAGE_TIMER, sku);
  }

  /** One paging step of the sku's wave: merges the sku's and the product-level wishes, oldest first. */
  async #page(sku: string): Promise<void> {
    const waves = this.#ctx.getStore(wavesStore);
    const found = await waves.get(sku);
    if (!found) return;
    const wave: Wave = { ...found, steps: (found.steps ?? 0) + 1 };
    const order = this.#ctx.getStore(wishOrderStore);
    const wishes = this.#ctx.getStore(wishesStore);
    const { pageSize, stateTtl } = this.#p;
    // Wishes made after the restock are not part of its wave: the customer saw the product in stock.
    const upper = pad(wave.restockAt + 1);
    const prefixes = [rangePrefix(wave.productId, wave.sku), rangePrefix(wave.productId, null)] as const;
    const bufs: [KeyValue<Wish>[], KeyValue<Wish>[]] = [[], []];
    let examined = 0;
    const full = (): boolean => wave.limit !== null && wave.sent >= wave.limit;
    // With a limit: the wishes that took a place (a late match may have given one to a wish still ahead).
    const matched = wave.limit === null ? undefined : [...((await this.#restockOf(wave)).restocks.find((r) => r.eventId === wave.eventId && r.sku === wave.sku)?.matched ?? [])];
    while (examined < pageSize && !full()) {
      for (const i of [0, 1] as const) {
        const done = i === 0 ? wave.skuDone : wave.productDone;
        if (bufs[i].length > 0 || done) continue;
        const cursor = i === 0 ? wave.skuCursor : wave.productCursor;
        const prefix = prefixes[i];
        // Only an empty page ends a range: a short one may just have skipped expired or deleted rows.
        const rows = await order.scan({ prefix, ...(cursor === null ? {} : { after: cursor }), before: prefix + upper, limit: pageSize - examined });
        if (rows.length === 0) {
          if (i === 0) wave.skuDone = true;
          else wave.productDone = true;
        } else bufs[i] = rows;
      }
      const a = bufs[0][0];
      const b = bufs[1][0];
      if (!a && !b) break;
      // Equal wish times: customerId decides (as in the keys), then the sku-specific wish goes first.
      const i: 0 | 1 = !b ? 0 : !a ? 1 : older(a.value, b.value) ? 0 : 1;
      const next = bufs[i].shift() as KeyValue<Wish>;
      if (i === 0) wave.skuCursor = next.key;
      else wave.productCursor = next.key;
      examined++;
      const w = next.value;
      if (w.removedAt !== undefined) {
        // Removed by the restock: not wished then. Forgotten once no restock older than the removal can come:
        // for a sku's own wish after this one (a sku's stock events are in order); for an any-size wish, which
        // other skus' restocks also reach, after stateTtl.
        if (w.removedAt <= wave.restockAt && (w.sku !== null || w.removedAt + stateTtl < wave.restockAt)) order.delete(next.key);
        if (w.removedAt <= wave.restockAt) continue;
      } else if (w.seenAt + stateTtl < wave.restockAt) {
        // Lazily expire wishes nobody re-added for stateTtl (the store has no TTL: see README).
        order.delete(next.key);
        wishes.delete(wishKey(wave.productId, w.sku, w.customerId));
        continue;
      }
      if (i === 1) {
        // A customer who also wished for this very sku (before the restock) is served by that wish.
        const specific = await wishes.get(wishKey(wave.productId, wave.sku, w.customerId));
        if (specific && specific.wishedAt <= wave.restockAt && specific.seenAt + stateTtl >= wave.restockAt) continue;
      }
      if (matched !== undefined) {
        const key = wishKey(wave.productId, w.sku, w.customerId);
        if (matched.includes(key)) continue;
        matched.push(key);
      }
      wave.sent++;
      this.#ctx.forward({ key: w.customerId, value: matchOf(wave, w, wave.sent), timestamp: wave.restockAt });
    }
    await this.#syncSent(wave, matched);
    if (wave.skuDone && wave.productDone) {
      this.#endWave(sku);
      return;
    }
    if (full()) {
      // Every place taken (sent, held, or a match in flight): the wave waits, without a timer, for places that
      // come back (cooldown, suppressed by the guards, a removal), then goes on from its cursor.
      waves.put(sku, wave);
      this.#ctx.timers.cancel(PAGE_TIMER, sku);
      return;
    }
    waves.put(sku, wave);
    // Step k is due at restockAt + k of stream time (see README, "Fan-out and paging"), counted from the wave's
    // own time, not the task's: a restock read behind stream time (it came late through the repartition topic)
    // then runs its steps at once, as replay ran them before the later records, instead of waiting for stream
    // time to move past the newest record.
    this.#ctx.timers.register({ name: PAGE_TIMER, key: sku, time: wave.restockAt + (wave.steps ?? 1), domain: 'stream-time' });
  }
}

/** The match a wave (or a late wish) sends for a restock. */
function matchOf(r: Pick<Restock, 'productId' | 'sku' | 'restockAt' | 'eventId' | 'causedBy' | 'previousStock' | 'stock' | 'limit'>, w: Wish, position: number): RestockMatch {
  return {
    customerId: w.customerId,
    productId: r.productId,
    sku: r.sku,
    wishedSku: w.sku,
    wishedAt: w.wishedAt,
    position,
    limit: r.limit,
    stock: r.stock,
    previousStock: r.previousStock,
    restockAt: r.restockAt,
    restockEventId: r.eventId,
    causedBy: r.causedBy,
  };
}

function older(a: Wish, b: Wish): boolean {
  return a.wishedAt < b.wishedAt || (a.wishedAt === b.wishedAt && a.customerId <= b.customerId);
}

/** The customer's task: cooldown per customer and sku, then the trigger and its audit. */
export class RestockNotifyProcessor implements Processor<RestockMatch, Trigger | TriggerAudit | ByProduct> {
  #ctx!: ProcessorContext<Trigger | TriggerAudit | ByProduct>;
  readonly #settings: CampaignSettings<WishlistRestockParams>;
  readonly #out: Outputs;

  constructor(settings: CampaignSettings<WishlistRestockParams>) {
    this.#settings = settings;
    this.#out = outputsOf(NOTIFY, settings);
  }

  init(ctx: ProcessorContext<Trigger | TriggerAudit | ByProduct>): void {
    this.#ctx = ctx;
  }

  /** Gives the match's place in a limited quota back to the product task (it notified nobody). */
  #giveBack(customerId: string, m: RestockMatch, at: number): void {
    if (m.limit === null) return;
    const value: ByProduct = { kind: 'return', productId: m.productId, sku: m.sku, customerId, wishedSku: m.wishedSku, eventId: m.restockEventId, at };
    this.#ctx.forward({ key: m.productId, value, timestamp: at }, BY_PRODUCT_SINK);
  }

  async process(r: StreamRecord<RestockMatch>): Promise<void> {
    const m = r.value;
    const customerId = r.key ?? m.customerId;
    const store = this.#ctx.getStore(notifiedStore);
    const p = this.#settings.params;
    const state: NotifiedState = { ...((await store.get(customerId)) ?? {}) };
    const last = state[m.sku];
    const decided = last?.decided ?? (last ? [{ eventId: last.eventId, at: last.at, sent: true }] : []);
    // The same restock again (a redelivered repartition record, or matched through both wishes, maybe late): already
    // decided. If it notified nobody, the place this match took goes back (a wave run again from the oldest wish).
    const before = decided.find((d) => d.eventId === m.restockEventId);
    if (before !== undefined) {
      if (!before.sent || before.droppedAt !== undefined) this.#giveBack(customerId, m, before.droppedAt ?? m.restockAt);
      return;
    }
    // Not wished at the restock (removed before it, or made after it) though the index had not heard so yet.
    if (!(await this.#wished(customerId, m))) return;
    const trigger = this.#trigger(customerId, m);
    const ts = m.restockAt;
    const remember = (sent: boolean): void => {
      const entry: DecidedRestock = { eventId: m.restockEventId, at: m.restockAt, sent, ...(m.limit === null ? {} : { place: { productId: m.productId, wishedSku: m.wishedSku } }) };
      const list = [...decided, entry].slice(-DECIDED_CAP);
      const newest = sent && (last === undefined || m.restockAt >= last.at) ? { at: m.restockAt, eventId: m.restockEventId } : last;
      if (newest !== undefined) state[m.sku] = { ...newest, decided: list };
    };
    // Within the cooldown of a notification (before or after it: a match can arrive out of restock order). Only a
    // trigger that notified someone counts (DESIGN §3): not one the guards suppressed, a held one while held.
    const near = decided.find((d) => countsAt(d, m.restockAt) && Math.abs(m.restockAt - d.at) < p.cooldown);
    if (near !== undefined) {
      const detail = `last restock notification for sku ${m.sku} at ${new Date(near.at).toISOString()}, cooldown ${p.cooldown} ms`;
      this.#ctx.forward({ key: customerId, value: auditOf(trigger, 'SUPPRESSED', 'cooldown', detail), timestamp: ts }, this.#out.audit);
      remember(false);
      store.put(customerId, state);
      // In cooldown: not notified, the place goes back to the wave (the next waiting wisher gets it).
      this.#giveBack(customerId, m, ts);
      return;
    }
    // Kept as long as the store keeps the customer (not just the cooldown): a match that arrives late for a
    // restock already decided (matched again through another wish) must still find it.
    const horizon = this.#ctx.streamTime() - Math.max(p.cooldown, p.stateTtl);
    for (const [sku, n] of Object.entries(state)) if (n.at < horizon) delete state[sku];
    remember(true);
    store.put(customerId, state);
    this.#ctx.forward({ key: customerId, value: trigger, timestamp: ts }, this.#out.trigger);
    // With guards, the decision (SENT, HELD, SUPPRESSED) is audited by them.
    if (this.#settings.guarded !== true) this.#ctx.forward({ key: customerId, value: auditOf(trigger, 'SENT', 'ok'), timestamp: ts }, this.#out.audit);
  }

  /** The customer's wishes as of the restock (this task sees every wish event of the customer, in order). */
  async #wished(customerId: string, m: RestockMatch): Promise<boolean> {
    const intervals = (await this.#ctx.getStore(wishHistoryStore).get(customerId)) ?? [];
    if (wishedAt(intervals, m.productId, m.sku, m.restockAt)) return true;
    // A wish older than the intervals (state written before they were kept): judged by the current wishes.
    const current = (await this.#ctx.getStore(customerWishesStore).get(customerId)) ?? [];
    return current.some(
      (w) => w.productId === m.productId && (w.sku === m.sku || w.sku === null) && !intervals.some((i) => i.productId === w.productId && i.sku === w.sku),
    );
  }

  #trigger(customerId: string, m: RestockMatch): Trigger {
    const s = this.#settings;
    const p = s.params;
    return {
      triggerId: triggerId(NAME, customerId, TYPE, m.restockEventId),
      type: TYPE,
      customerId,
      occurredAt: m.restockAt,
      campaignId: s.campaignId,
      variant: 'default',
      channels: [...s.channels],
      causedBy: m.causedBy,
      explanation: {
        rule: 'stock of a sku went from below minStock to at least minStock; the customer wished for that sku or its product (any size)',
        params: { minStock: p.minStock, maxPerUnit: unlimited(p.maxPerUnit) ? 'unlimited' : p.maxPerUnit, cooldown: p.cooldown },
        observed: {
          previousStock: m.previousStock,
          stock: m.stock,
          wishedAt: m.wishedAt,
          wishedSku: m.wishedSku,
          // The place in the quota, only where there is one: without a limit the order of matches decides
          // nothing, and late matches (a wish that reached the product task after the restock) take places in
          // arrival order, which would make the same trigger differ between replay and Kafka.
          ...(m.limit === null ? {} : { wavePosition: m.position }),
          waveLimit: m.limit ?? 'unlimited',
        },
      },
      payload: { productId: m.productId, sku: m.sku, stock: m.stock },
      expiresAt: m.restockAt + s.expiresAfterMs,
    };
  }
}

/**
 * The customer's task, decision feedback (with guards): the guards' decision on a WISHLIST_BACK_IN_STOCK of this
 * campaign. One that notified nobody (SUPPRESSED for a reason other than holdout, at once or at the release of a
 * held one) is marked `droppedAt` = the decision time, so it starts no cooldown, and with a limited quota its place
 * goes back to the product task (a `return` through the by-product repartition topic), where the wave tops up.
 * SENT and holdout keep the place and start the cooldown; HELD reserves both until it is sent or dropped.
 */
export class RestockDecisionsProcessor implements Processor<TriggerAudit, ByProduct> {
  #ctx!: ProcessorContext<ByProduct>;
  readonly #campaignId: string;

  constructor(settings: CampaignSettings<WishlistRestockParams>) {
    this.#campaignId = settings.campaignId;
  }

  init(ctx: ProcessorContext<ByProduct>): void {
    this.#ctx = ctx;
  }

  async process(record: StreamRecord<TriggerAudit>): Promise<void> {
    const a = record.value;
    if (a.type !== TYPE || a.campaignId !== this.#campaignId || outcomeOf(a) !== 'not-notified') return;
    const store = this.#ctx.getStore(notifiedStore);
    const state = await store.get(a.customerId);
    if (state === undefined) return;
    for (const [sku, n] of Object.entries(state)) {
      const d = n.decided?.find((x) => x.eventId === a.causedBy.eventId);
      if (d === undefined) continue;
      if (d.droppedAt !== undefined || !d.sent) return;
      d.droppedAt = a.occurredAt;
      store.put(a.customerId, state);
      if (d.place !== undefined) {
        const value: ByProduct = { kind: 'return', productId: d.place.productId, sku, customerId: a.customerId, wishedSku: d.place.wishedSku, eventId: d.eventId, at: a.occurredAt };
        this.#ctx.forward({ key: d.place.productId, value, timestamp: a.occurredAt }, BY_PRODUCT_SINK);
      }
      return;
    }
  }
}

export const wishlistRestock: TopologyDefinition<WishlistRestockParams> = {
  name: NAME,
  description: 'WISHLIST_BACK_IN_STOCK when a wished sku (or any size of a wished product) is back in stock',
  defaults,
  build(builder, settings) {
    const p = settings.params;
    const ttlMs = Math.max(p.stateTtl, p.cooldown);
    const customerWishes = { ...customerWishesStore, ttlMs };
    const wishHistory = { ...wishHistoryStore, ttlMs };
    const notified = { ...notifiedStore, ttlMs };
    const wishlist = builder.ensureSource(WISHLIST_TOPIC);
    const customers = builder.ensureSource(CUSTOMERS_TOPIC);
    const catalog = builder.ensureSource(CATALOG_TOPIC);
    builder
      .addProcessor(WISHES_BY_PRODUCT, () => new WishesByProduct(Math.max(p.stateTtl, p.cooldown)), [wishlist, customers], 'wish changes re-keyed by productId; erasure withdraws them')
      .addStore(customerWishes, [WISHES_BY_PRODUCT])
      .addStore(wishHistory, [WISHES_BY_PRODUCT])
      .addProcessor(STOCK_BY_PRODUCT, () => new StockByProduct(), [catalog], 'STOCK_CHANGED re-keyed by productId, with its cause')
      .addRepartition(BY_PRODUCT, [WISHES_BY_PRODUCT, STOCK_BY_PRODUCT])
      .addProcessor(INDEX, () => new RestockIndexProcessor(settings), [BY_PRODUCT], 'wishes, stock and restock waves per product; paging timer per sku')
      .addStore(wishesStore, [INDEX])
      .addStore(wishOrderStore, [INDEX])
      .addStore({ ...stockStore, ttlMs: p.stateTtl }, [INDEX])
      .addStore(wavesStore, [INDEX])
      .addStore({ ...restocksStore, ttlMs: p.stateTtl }, [INDEX])
      .addRepartition(TO_CUSTOMER, [INDEX])
      .addProcessor(NOTIFY, () => new RestockNotifyProcessor(settings), [TO_CUSTOMER], 'cooldown per customer and sku; trigger and audit')
      .addStore(notified, [NOTIFY])
      .addStore(customerWishes, [NOTIFY])
      .addStore(wishHistory, [NOTIFY]);
    wireOutputs(builder, NOTIFY, settings);
    // Places given back (cooldown; with guards, their suppressions) go to the product task through by-product.
    builder.connect(NOTIFY, BY_PRODUCT_SINK);
    if (settings.guarded === true && settings.output !== undefined) {
      builder
        .addProcessor(DECISIONS, () => new RestockDecisionsProcessor(settings), [settings.output], 'guard decisions on its triggers: no cooldown, place back to the wave')
        .addStore(notified, [DECISIONS]);
      subscribeDecisions(builder, DECISIONS, [TYPE]);
      builder.connect(DECISIONS, BY_PRODUCT_SINK);
    }
  },
};
