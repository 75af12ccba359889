/**
 * BASKET_PRICE_DROP (DESIGN §3), with the product → customer fan-out of DESIGN §4. See README.md beside this file.
 *
 *   basket, orders ──► .basket (customer task) ──► by-sku repartition ──► .index (sku task) ◄── catalog
 *                                                                              │ paged wave per PRICE_CHANGED
 *   triggers, audit ◄── .notify (customer task) ◄── to-customer repartition ◄──┘
 */
import { Type, type Static } from '@sinclair/typebox';
import { jsonCodec, keyValueStore, type Processor, type ProcessorContext, type StreamRecord, type Timer } from '../../src/engine/api/index.js';
import type { BasketEvent, CatalogEvent, CustomerProfile, Money, OrderEvent, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { Duration, toMs } from '../../src/config/duration.js';
import { applyBasketEvent, type BasketItem } from '../basket-abandonment/index.js';
import { outputsOf, wireOutputs, type CampaignSettings, type Outputs, type TopologyDefinition } from '../common/campaign.js';
import { auditOf, causedBy, triggerId, type CausedBy } from '../common/triggers.js';

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
}

/** Sku side: one basket line watching the sku. */
export interface Subscriber {
  /** Event time of the add that started the watch. */
  since: number;
  /** The add's unit price, else the sku's last known catalog price then; absent when neither was known. */
  reference?: Money;
}

/** Sku side: what the catalog said last. */
export interface SkuState {
  productId?: string;
  price?: Money;
  priceAt?: number;
  stock?: number;
  stockAt?: number;
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
}

/** customer → sku, through the by-sku repartition topic (key sku). */
export type SubscriptionChange =
  | { op: 'subscribe'; customerId: string; sku: string; at: number; reference?: Money }
  | { op: 'unsubscribe'; customerId: string; sku: string; at: number };

/** sku → customer, through the to-customer repartition topic (key customerId). */
export interface DropCandidate {
  customerId: string;
  sku: string;
  productId: string;
  newPrice: Money;
  previousPrice?: Money;
  /** The subscriber's reference on the sku side (used when the basket line has no unit price). */
  reference: Money;
  occurredAt: number;
  /** The PRICE_CHANGED: event id and its catalog topic/partition/offset. */
  causedBy: CausedBy;
}

export const customersStore = keyValueStore(`${NAME}.customers`, jsonCodec<CustomerState>(), {
  doc: 'customerId → basket lines (with add price) and last notified price per sku',
  keyedByRecordKey: true,
});
export const subscribersStore = keyValueStore(`${NAME}.subscribers`, jsonCodec<Subscriber>(), {
  doc: 'sku \\0 customerId → since, reference price: the sku → customers index',
});
export const skusStore = keyValueStore(`${NAME}.skus`, jsonCodec<SkuState>(), { doc: 'sku → last catalog price and stock' });
export const fanoutStore = keyValueStore(`${NAME}.fanout`, jsonCodec<FanoutCursor>(), { doc: 'sku → the fan-out wave in progress (cursor)' });

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

  async process(record: BasketIn): Promise<void> {
    const store = this.#ctx.getStore(customersStore);
    if (record.topic === CUSTOMERS_TOPIC) {
      // Erasure: withdraw the customer from every sku index (the guards erase the customer-side state).
      if (record.value !== null) return;
      const customerId = record.key as string;
      const state = await store.get(customerId);
      for (const item of state?.items ?? []) {
        this.#ctx.forward({ key: item.sku, value: { op: 'unsubscribe', customerId, sku: item.sku, at: record.timestamp }, timestamp: record.timestamp });
      }
      return;
    }
    const value = record.value as BasketEvent | OrderEvent;
    const customerId = value.customerId;
    const state: CustomerState = (await store.get(customerId)) ?? { items: [], notified: {} };
    const before = new Map(state.items.map((i) => [i.sku, i.unitPrice] as const));
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
    const ts = record.timestamp;
    const after = new Set<string>();
    for (const item of state.items) {
      after.add(item.sku);
      // A new line, or a re-add with another unit price (the reference moves to what the customer saw last).
      if (!before.has(item.sku) || !sameMoney(before.get(item.sku), item.unitPrice)) {
        const change: SubscriptionChange = {
          op: 'subscribe',
          customerId,
          sku: item.sku,
          at: item.addedAt,
          ...(item.unitPrice === undefined ? {} : { reference: item.unitPrice }),
        };
        this.#ctx.forward({ key: item.sku, value: change, timestamp: ts });
      }
    }
    for (const sku of before.keys()) {
      if (!after.has(sku)) this.#ctx.forward({ key: sku, value: { op: 'unsubscribe', customerId, sku, at: ts }, timestamp: ts });
    }
    pruneNotified(state, this.#ctx.streamTime() - this.#settings.params.stateTtl);
    store.put(customerId, state);
  }
}

function pruneNotified(state: CustomerState, olderThan: number): void {
  for (const [sku, n] of Object.entries(state.notified)) if (n.at < olderThan) delete state.notified[sku];
}

// ---------------------------------------------------------------------------------------------------------
// Sku side: subscription index, catalog state, paged fan-out

type IndexIn = StreamRecord<CatalogEvent> | StreamRecord<SubscriptionChange>;

export class PriceIndexProcessor implements Processor<CatalogEvent | SubscriptionChange, DropCandidate> {
  #ctx!: ProcessorContext<DropCandidate>;
  readonly #settings: CampaignSettings<BasketPriceDropParams>;

  constructor(settings: CampaignSettings<BasketPriceDropParams>) {
    this.#settings = settings;
  }

  init(ctx: ProcessorContext<DropCandidate>): void {
    this.#ctx = ctx;
  }

  async process(record: IndexIn): Promise<void> {
    if (record.topic === CATALOG_TOPIC) await this.#catalog(record as StreamRecord<CatalogEvent>);
    else await this.#subscription((record as StreamRecord<SubscriptionChange>).value);
  }

  async onTimer(timer: Timer): Promise<void> {
    if (timer.name !== FANOUT_TIMER) return;
    const cursor = await this.#ctx.getStore(fanoutStore).get(timer.key);
    if (!cursor) return;
    await this.#step(timer.key, cursor);
  }

  async #subscription(c: SubscriptionChange): Promise<void> {
    const subs = this.#ctx.getStore(subscribersStore);
    const key = subscriberKey(c.sku, c.customerId);
    if (c.op === 'unsubscribe') {
      subs.delete(key);
      return;
    }
    const existing = await subs.get(key);
    // Reference: the add's unit price, else the one already held, else the sku's last known catalog price.
    const reference = c.reference ?? existing?.reference ?? (await this.#ctx.getStore(skusStore).get(c.sku))?.price;
    subs.put(key, { since: existing?.since ?? c.at, ...(reference === undefined ? {} : { reference }) });
  }

  async #catalog(record: StreamRecord<CatalogEvent>): Promise<void> {
    const e = record.value;
    const skus = this.#ctx.getStore(skusStore);
    const sku = e.sku;
    const state: SkuState = (await skus.get(sku)) ?? {};
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
    const previousPrice = state.price;
    state.price = e.price;
    state.priceAt = e.occurredAt;
    skus.put(sku, state);
    const fanout = this.#ctx.getStore(fanoutStore);
    // A newer price replaces a wave still in progress: the older price no longer applies to anyone not reached yet.
    fanout.delete(sku);
    this.#ctx.timers.cancel(FANOUT_TIMER, sku);
    if (state.stock === 0) return;
    const origin = this.#ctx.recordOrigin();
    if (!origin) return;
    const cursor: FanoutCursor = {
      eventId: e.eventId,
      productId: e.productId,
      occurredAt: e.occurredAt,
      price: e.price,
      ...(previousPrice === undefined ? {} : { previousPrice }),
      causedBy: causedBy(e.eventId, origin),
    };
    await this.#step(sku, cursor);
  }

  /**
   * One step of a wave: at most pageSize subscribers. When a full page was read, the cursor is saved and a
   * stream-time timer at the price event's time continues the wave, so other records of the partition are not
   * held up behind a hot sku and the wave resumes after a restart.
   */
  async #step(sku: string, cursor: FanoutCursor): Promise<void> {
    const fanout = this.#ctx.getStore(fanoutStore);
    const current = await this.#ctx.getStore(skusStore).get(sku);
    if (current?.stock === 0) {
      // Sold out while the wave ran: stop it.
      fanout.delete(sku);
      return;
    }
    const p = this.#settings.params;
    const subs = this.#ctx.getStore(subscribersStore);
    const prefix = sku + SEP;
    const rows = await subs.scan({ prefix, ...(cursor.after === undefined ? {} : { after: cursor.after }), limit: p.pageSize });
    for (const { key, value } of rows) {
      if (value.reference === undefined) {
        // Neither the add nor the catalog knew a price: this first price becomes the reference, nothing to compare.
        subs.put(key, { ...value, reference: cursor.price });
        continue;
      }
      // Added after the price changed (event time): the customer already saw this price.
      if (value.since > cursor.occurredAt) continue;
      // The customer side may only lower the reference (last notified price), so anything failing here fails there.
      if (priceDrop(value.reference, cursor.price, p) === null) continue;
      const customerId = key.slice(prefix.length);
      const candidate: DropCandidate = {
        customerId,
        sku,
        productId: cursor.productId,
        newPrice: cursor.price,
        ...(cursor.previousPrice === undefined ? {} : { previousPrice: cursor.previousPrice }),
        reference: value.reference,
        occurredAt: cursor.occurredAt,
        causedBy: cursor.causedBy,
      };
      this.#ctx.forward({ key: customerId, value: candidate, timestamp: cursor.occurredAt });
    }
    const last = rows[rows.length - 1];
    if (rows.length < p.pageSize || last === undefined) {
      fanout.delete(sku);
      this.#ctx.timers.cancel(FANOUT_TIMER, sku);
      return;
    }
    fanout.put(sku, { ...cursor, after: last.key });
    this.#ctx.timers.register({ name: FANOUT_TIMER, key: sku, time: cursor.occurredAt, domain: 'stream-time' });
  }
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

  async process(record: StreamRecord<DropCandidate>): Promise<void> {
    const c = record.value;
    const store = this.#ctx.getStore(customersStore);
    const state = await store.get(c.customerId);
    const item = state?.items.find((i) => i.sku === c.sku);
    // Removed or bought since the sku side looked, or added after the price changed.
    if (!state || !item || item.addedAt > c.occurredAt) return;
    const added = item.unitPrice ?? c.reference;
    // A price in another currency is not comparable: ignored without an audit (it is not a suppressed trigger).
    if (added.currency !== c.newPrice.currency) return;
    const last = state.notified[c.sku];
    const lastPrice = last !== undefined && last.price.currency === c.newPrice.currency ? last.price : undefined;
    const useLast = lastPrice !== undefined && lastPrice.amount < added.amount;
    const reference = useLast ? lastPrice : added;
    const p = this.#settings.params;
    const drop = priceDrop(reference, c.newPrice, p);
    if (drop === null) return;
    const referenceSource = useLast ? 'notified' : item.unitPrice !== undefined ? 'basket' : 'catalog';
    const trigger: Trigger = {
      triggerId: triggerId(NAME, c.customerId, TYPE, c.causedBy.eventId),
      type: TYPE,
      customerId: c.customerId,
      occurredAt: c.occurredAt,
      campaignId: this.#settings.campaignId,
      variant: 'default',
      channels: [...this.#settings.channels],
      causedBy: c.causedBy,
      explanation: {
        rule: 'a sku in the basket got a price at least minDropPercent and minDropAmount below the reference (add price, or last notified price if lower)',
        params: { minDropPercent: p.minDropPercent, minDropAmount: p.minDropAmount },
        observed: {
          referencePrice: reference,
          referenceSource,
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
        quantity: item.quantity,
      },
      expiresAt: c.occurredAt + this.#settings.expiresAfterMs,
    };
    state.notified[c.sku] = { price: c.newPrice, at: c.occurredAt };
    store.put(c.customerId, state);
    const ts = c.occurredAt;
    this.#ctx.forward({ key: c.customerId, value: trigger, timestamp: ts }, this.#out.trigger);
    // With guards, the SENT (or HELD/SUPPRESSED) audit comes from them; alone, the topology audits its send.
    if (this.#settings.guarded !== true) this.#ctx.forward({ key: c.customerId, value: auditOf(trigger, 'SENT', 'ok'), timestamp: ts }, this.#out.audit);
  }
}

export const basketPriceDrop: TopologyDefinition<BasketPriceDropParams> = {
  name: NAME,
  description: 'BASKET_PRICE_DROP when a basket sku gets a price minDropPercent/minDropAmount below the reference',
  defaults,
  build(builder, settings) {
    const errors = checkBasketPriceDropParams(settings.params);
    if (errors.length > 0) throw new RangeError(`${NAME}: invalid params: ${errors.join('; ')}`);
    const ttlMs = settings.params.stateTtl;
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
      .addStore({ ...customersStore, ttlMs }, [BASKET_NODE, NOTIFY_NODE])
      .addStore({ ...subscribersStore, ttlMs }, [INDEX_NODE])
      .addStore(skusStore, [INDEX_NODE])
      .addStore(fanoutStore, [INDEX_NODE]);
    wireOutputs(builder, NOTIFY_NODE, settings);
  },
};
