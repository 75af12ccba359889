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
  | { kind: 'stock'; productId: string; sku: string; stock: number; at: number; eventId: string; causedBy: CausedBy };

/** A wish in the product's task. `seenAt` is the last ITEM_ADDED for it (re-adding keeps `wishedAt`). */
export interface Wish {
  customerId: string;
  sku: string | null;
  wishedAt: number;
  eventId: string;
  seenAt: number;
}

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
}

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
export type NotifiedState = Record<string, { at: number; eventId: string }>;

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
      order.delete(orderKey(v.productId, existing));
      return;
    }
    // Re-adding keeps the original wish time (its place in the queue) and only refreshes seenAt.
    const wish: Wish = existing
      ? { ...existing, seenAt: Math.max(existing.seenAt, v.at) }
      : { customerId: v.customerId, sku: v.sku, wishedAt: v.at, eventId: v.eventId, seenAt: v.at };
    wishes.put(key, wish);
    order.put(orderKey(v.productId, wish), wish);
  }

  async #stock(v: Extract<ByProduct, { kind: 'stock' }>): Promise<void> {
    const stocks = this.#ctx.getStore(stockStore);
    const prev = await stocks.get(v.sku);
    // A stock event older than the last known one for the sku is stale: neither a transition nor the new level.
    if (prev && v.at < prev.at) return;
    stocks.put(v.sku, { stock: v.stock, at: v.at, eventId: v.eventId });
    const min = this.#p.minStock;
    if (v.stock < min) {
      // Sold out (below minStock): the running wave of this sku ends where it is.
      this.#endWave(v.sku);
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
    };
    this.#ctx.getStore(wavesStore).put(v.sku, wave);
    await this.#page(v.sku);
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
    const wave: Wave = { ...found };
    const order = this.#ctx.getStore(wishOrderStore);
    const wishes = this.#ctx.getStore(wishesStore);
    const { pageSize, stateTtl } = this.#p;
    // Wishes made after the restock are not part of its wave: the customer saw the product in stock.
    const upper = pad(wave.restockAt + 1);
    const prefixes = [rangePrefix(wave.productId, wave.sku), rangePrefix(wave.productId, null)] as const;
    const bufs: [KeyValue<Wish>[], KeyValue<Wish>[]] = [[], []];
    let examined = 0;
    const full = (): boolean => wave.limit !== null && wave.sent >= wave.limit;
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
      if (w.seenAt + stateTtl < wave.restockAt) {
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
      wave.sent++;
      const match: RestockMatch = {
        customerId: w.customerId,
        productId: wave.productId,
        sku: wave.sku,
        wishedSku: w.sku,
        wishedAt: w.wishedAt,
        position: wave.sent,
        limit: wave.limit,
        stock: wave.stock,
        previousStock: wave.previousStock,
        restockAt: wave.restockAt,
        restockEventId: wave.eventId,
        causedBy: wave.causedBy,
      };
      this.#ctx.forward({ key: w.customerId, value: match, timestamp: wave.restockAt });
    }
    if (full() || (wave.skuDone && wave.productDone)) {
      this.#endWave(sku);
      return;
    }
    waves.put(sku, wave);
    // Next step one millisecond of stream time later (see README, "Fan-out and paging").
    this.#ctx.timers.register({ name: PAGE_TIMER, key: sku, time: this.#ctx.streamTime() + 1, domain: 'stream-time' });
  }
}

function older(a: Wish, b: Wish): boolean {
  return a.wishedAt < b.wishedAt || (a.wishedAt === b.wishedAt && a.customerId <= b.customerId);
}

/** The customer's task: cooldown per customer and sku, then the trigger and its audit. */
export class RestockNotifyProcessor implements Processor<RestockMatch, Trigger | TriggerAudit> {
  #ctx!: ProcessorContext<Trigger | TriggerAudit>;
  readonly #settings: CampaignSettings<WishlistRestockParams>;
  readonly #out: Outputs;

  constructor(settings: CampaignSettings<WishlistRestockParams>) {
    this.#settings = settings;
    this.#out = outputsOf(NOTIFY, settings);
  }

  init(ctx: ProcessorContext<Trigger | TriggerAudit>): void {
    this.#ctx = ctx;
  }

  async process(r: StreamRecord<RestockMatch>): Promise<void> {
    const m = r.value;
    const customerId = r.key ?? m.customerId;
    const store = this.#ctx.getStore(notifiedStore);
    const p = this.#settings.params;
    const state: NotifiedState = { ...((await store.get(customerId)) ?? {}) };
    const last = state[m.sku];
    // The same restock again (a redelivered repartition record): already decided.
    if (last?.eventId === m.restockEventId) return;
    const trigger = this.#trigger(customerId, m);
    const ts = m.restockAt;
    if (last && m.restockAt - last.at < p.cooldown) {
      const detail = `last restock notification for sku ${m.sku} at ${new Date(last.at).toISOString()}, cooldown ${p.cooldown} ms`;
      this.#ctx.forward({ key: customerId, value: auditOf(trigger, 'SUPPRESSED', 'cooldown', detail), timestamp: ts }, this.#out.audit);
      return;
    }
    for (const [sku, n] of Object.entries(state)) if (n.at + p.cooldown <= m.restockAt) delete state[sku];
    state[m.sku] = { at: m.restockAt, eventId: m.restockEventId };
    store.put(customerId, state);
    this.#ctx.forward({ key: customerId, value: trigger, timestamp: ts }, this.#out.trigger);
    // With guards, the decision (SENT, HELD, SUPPRESSED) is audited by them.
    if (this.#settings.guarded !== true) this.#ctx.forward({ key: customerId, value: auditOf(trigger, 'SENT', 'ok'), timestamp: ts }, this.#out.audit);
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
          wavePosition: m.position,
          waveLimit: m.limit ?? 'unlimited',
        },
      },
      payload: { productId: m.productId, sku: m.sku, stock: m.stock },
      expiresAt: m.restockAt + s.expiresAfterMs,
    };
  }
}

export const wishlistRestock: TopologyDefinition<WishlistRestockParams> = {
  name: NAME,
  description: 'WISHLIST_BACK_IN_STOCK when a wished sku (or any size of a wished product) is back in stock',
  defaults,
  build(builder, settings) {
    const p = settings.params;
    const ttlMs = Math.max(p.stateTtl, p.cooldown);
    const wishlist = builder.ensureSource(WISHLIST_TOPIC);
    const customers = builder.ensureSource(CUSTOMERS_TOPIC);
    const catalog = builder.ensureSource(CATALOG_TOPIC);
    builder
      .addProcessor(WISHES_BY_PRODUCT, () => new WishesByProduct(), [wishlist, customers], 'wish changes re-keyed by productId; erasure withdraws them')
      .addStore({ ...customerWishesStore, ttlMs }, [WISHES_BY_PRODUCT])
      .addProcessor(STOCK_BY_PRODUCT, () => new StockByProduct(), [catalog], 'STOCK_CHANGED re-keyed by productId, with its cause')
      .addRepartition(BY_PRODUCT, [WISHES_BY_PRODUCT, STOCK_BY_PRODUCT])
      .addProcessor(INDEX, () => new RestockIndexProcessor(settings), [BY_PRODUCT], 'wishes, stock and restock waves per product; paging timer per sku')
      .addStore(wishesStore, [INDEX])
      .addStore(wishOrderStore, [INDEX])
      .addStore({ ...stockStore, ttlMs: p.stateTtl }, [INDEX])
      .addStore(wavesStore, [INDEX])
      .addRepartition(TO_CUSTOMER, [INDEX])
      .addProcessor(NOTIFY, () => new RestockNotifyProcessor(settings), [TO_CUSTOMER], 'cooldown per customer and sku; trigger and audit')
      .addStore({ ...notifiedStore, ttlMs }, [NOTIFY]);
    wireOutputs(builder, NOTIFY, settings);
  },
};
