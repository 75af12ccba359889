/**
 * BASKET_ABANDONED / CHECKOUT_ABANDONED (DESIGN §3). See README.md beside this file.
 */
import { jsonCodec, keyValueStore, NOT_LOADED, type KeyValueStore, type Processor, type ProcessorContext, type RecordOrigin, type StreamRecord, type Timer } from '../../src/engine/api/index.js';
import type { BasketEvent, Money, OrderEvent, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { outputsOf, wireOutputs, type CampaignSettings, type Outputs, type TopologyDefinition } from '../common/campaign.js';
import { auditOf, causedBy, triggerId, type CausedBy } from '../common/triggers.js';

export const NAME = 'basket-abandonment';
export const BASKET_TOPIC = 'shop.basket.v1';
export const ORDERS_TOPIC = 'shop.orders.v1';
const TIMER = 'inactivity';
const HOUR = 3_600_000;

export interface BasketAbandonmentParams {
  /** Quiet time after the last basket activity before the basket counts as abandoned. @default 60 min */
  readonly inactivityGap: number;
  /** No new abandonment trigger for a customer this long after the last one. @default 24 h */
  readonly reentryCooldown: number;
  /** Customer state not touched for this long is dropped (at least cooldown + gap). @default 30 d */
  readonly stateTtl: number;
}

export const defaults: BasketAbandonmentParams = { inactivityGap: HOUR, reentryCooldown: 24 * HOUR, stateTtl: 30 * 24 * HOUR };

export interface BasketItem {
  sku: string;
  productId?: string;
  quantity: number;
  unitPrice?: Money;
  addedAt: number;
}

export interface BasketState {
  /** Items in the order they were first added. */
  items: BasketItem[];
  lastActivityAt: number;
  lastActivityType: BasketEvent['type'];
  /** The last basket event: the cause of a trigger. */
  lastEvent: CausedBy;
  lastTriggerAt?: number;
  /**
   * The latest order: basket events older than it are applied as if before the order (its skus stay removed,
   * no timer), since inputs from two topics can arrive in either order.
   */
  lastOrder?: { at: number; skus: string[] };
}

export const basketsStore = keyValueStore('basket-abandonment.baskets', jsonCodec<BasketState>(), {
  doc: 'customerId → basket contents, last activity, last trigger time',
  keyedByRecordKey: true,
});

type In = StreamRecord<BasketEvent> | StreamRecord<OrderEvent>;
type Out = Trigger | TriggerAudit;

function isBasket(r: In): r is StreamRecord<BasketEvent> {
  return r.topic === BASKET_TOPIC;
}

function newItem(sku: string, quantity: number, e: BasketEvent): BasketItem {
  return {
    sku,
    ...(e.productId === undefined ? {} : { productId: e.productId }),
    quantity,
    ...(e.unitPrice === undefined ? {} : { unitPrice: e.unitPrice }),
    addedAt: e.occurredAt,
  };
}

/** Applies a basket event to the item list (in place). */
export function applyBasketEvent(items: BasketItem[], e: BasketEvent): void {
  if (e.sku === undefined) return;
  const i = items.findIndex((it) => it.sku === e.sku);
  const item = items[i];
  switch (e.type) {
    case 'ITEM_ADDED': {
      const q = e.quantity ?? 1;
      if (item) {
        item.quantity += q;
        if (e.unitPrice) item.unitPrice = e.unitPrice;
      } else items.push(newItem(e.sku, q, e));
      return;
    }
    case 'ITEM_REMOVED':
      if (!item) return;
      if (e.quantity !== undefined && e.quantity < item.quantity) item.quantity -= e.quantity;
      else items.splice(i, 1);
      return;
    case 'QUANTITY_CHANGED': {
      const q = e.quantity ?? 0;
      if (q <= 0) {
        if (item) items.splice(i, 1);
      } else if (item) item.quantity = q;
      else items.push(newItem(e.sku, q, e));
      return;
    }
    case 'CHECKOUT_STARTED':
    case 'BASKET_VIEWED':
      return;
  }
}

/** Sum of quantity × unit price when every item is priced in one currency, else null. */
export function basketValue(items: readonly BasketItem[]): Money | null {
  let currency: string | undefined;
  let amount = 0;
  for (const it of items) {
    if (!it.unitPrice) return null;
    if (currency !== undefined && it.unitPrice.currency !== currency) return null;
    currency = it.unitPrice.currency;
    amount += it.unitPrice.amount * it.quantity;
  }
  return currency === undefined ? null : { amount, currency };
}

export class BasketAbandonmentProcessor implements Processor<BasketEvent | OrderEvent, Out> {
  #ctx!: ProcessorContext<Out>;
  readonly #settings: CampaignSettings<BasketAbandonmentParams>;
  readonly #out: Outputs;

  constructor(settings: CampaignSettings<BasketAbandonmentParams>) {
    this.#settings = settings;
    this.#out = outputsOf(NAME, settings);
  }

  init(ctx: ProcessorContext<Out>): void {
    this.#ctx = ctx;
  }

  process(record: In): void | Promise<void> {
    const store = this.#ctx.getStore(basketsStore);
    const customerId = record.value.customerId;
    const origin = this.#ctx.recordOrigin();
    if (!origin) return;
    // Without a promise when the customer's basket is in memory, else after reading it.
    const stored = store.peek(customerId);
    if (stored !== NOT_LOADED) return this.#apply(record, store, origin, stored);
    return store.get(customerId).then((s) => this.#apply(record, store, origin, s));
  }

  #apply(record: In, store: KeyValueStore<BasketState>, origin: RecordOrigin, stored: BasketState | undefined): void {
    const customerId = record.value.customerId;
    if (isBasket(record)) {
      const e = record.value;
      const state: BasketState = stored ?? {
        items: [],
        lastActivityAt: e.occurredAt,
        lastActivityType: e.type,
        lastEvent: causedBy(e.eventId, origin),
      };
      applyBasketEvent(state.items, e);
      const order = state.lastOrder;
      const beforeOrder = order !== undefined && e.occurredAt <= order.at;
      if (beforeOrder) {
        // Arrived after an order that happened later: the order already bought these skus and ended the gap.
        const bought = new Set(order.skus);
        state.items = state.items.filter((i) => !bought.has(i.sku));
      } else if (e.occurredAt >= state.lastActivityAt) {
        // A late event changes the contents but not when the basket was last active.
        state.lastActivityAt = e.occurredAt;
        state.lastActivityType = e.type;
        state.lastEvent = causedBy(e.eventId, origin);
      }
      if (state.items.length === 0) this.#ctx.timers.cancel(TIMER, customerId);
      else if (!beforeOrder && (order === undefined || state.lastActivityAt > order.at)) {
        this.#ctx.timers.register({ name: TIMER, key: customerId, time: state.lastActivityAt + this.#settings.params.inactivityGap, domain: 'stream-time' });
      }
      store.put(customerId, state);
      return;
    }
    const order = record.value;
    const state: BasketState = stored ?? {
      items: [],
      lastActivityAt: order.occurredAt,
      lastActivityType: 'BASKET_VIEWED',
      lastEvent: causedBy(order.eventId, origin),
    };
    const skus = order.items.map((i) => i.sku);
    if (state.lastOrder === undefined || order.occurredAt >= state.lastOrder.at) state.lastOrder = { at: order.occurredAt, skus };
    // An order cancels the pending timer unless the basket was active again after it (a late order).
    if (order.occurredAt >= state.lastActivityAt) this.#ctx.timers.cancel(TIMER, customerId);
    const bought = new Set(skus);
    state.items = state.items.filter((i) => !bought.has(i.sku));
    if (state.items.length === 0) this.#ctx.timers.cancel(TIMER, customerId);
    store.put(customerId, state);
  }

  onTimer(timer: Timer): void | Promise<void> {
    const store = this.#ctx.getStore(basketsStore);
    // Without a promise when the customer's state is in memory (the runners load the keys of due timers ahead).
    const stored = store.peek(timer.key);
    if (stored !== NOT_LOADED) return this.#timer(timer, store, stored);
    return store.get(timer.key).then((s) => this.#timer(timer, store, s));
  }

  #timer(timer: Timer, store: KeyValueStore<BasketState>, state: BasketState | undefined): void {
    if (!state || state.items.length === 0) return;
    const p = this.#settings.params;
    const type = state.lastActivityType === 'CHECKOUT_STARTED' ? 'CHECKOUT_ABANDONED' : 'BASKET_ABANDONED';
    const value = basketValue(state.items);
    const trigger: Trigger = {
      triggerId: triggerId(NAME, timer.key, type, state.lastEvent.eventId),
      type,
      customerId: timer.key,
      occurredAt: timer.time,
      campaignId: this.#settings.campaignId,
      variant: 'default',
      channels: [...this.#settings.channels],
      causedBy: state.lastEvent,
      explanation: {
        rule:
          type === 'CHECKOUT_ABANDONED'
            ? 'checkout started, then no basket activity and no order for inactivityGap'
            : 'items in the basket, then no basket activity and no order for inactivityGap',
        params: { inactivityGap: p.inactivityGap, reentryCooldown: p.reentryCooldown },
        observed: {
          lastActivityAt: state.lastActivityAt,
          lastActivityType: state.lastActivityType,
          itemCount: state.items.length,
          basketValue: value,
          ...(state.lastTriggerAt === undefined ? {} : { previousTriggerAt: state.lastTriggerAt }),
        },
      },
      payload: {
        items: state.items.map((i) => ({
          sku: i.sku,
          ...(i.productId === undefined ? {} : { productId: i.productId }),
          quantity: i.quantity,
          ...(i.unitPrice === undefined ? {} : { unitPrice: i.unitPrice }),
        })),
        basketValue: value,
      },
      expiresAt: timer.time + this.#settings.expiresAfterMs,
    };
    const ts = timer.time;
    if (state.lastTriggerAt !== undefined && timer.time - state.lastTriggerAt < p.reentryCooldown) {
      const detail = `last abandonment trigger at ${new Date(state.lastTriggerAt).toISOString()}, cooldown ${p.reentryCooldown} ms`;
      this.#ctx.forward({ key: timer.key, value: auditOf(trigger, 'SUPPRESSED', 'cooldown', detail), timestamp: ts }, this.#out.audit);
      return;
    }
    state.lastTriggerAt = timer.time;
    store.put(timer.key, state);
    this.#ctx.forward({ key: timer.key, value: trigger, timestamp: ts }, this.#out.trigger);
    // With guards, the SENT (or HELD/SUPPRESSED) audit comes from them; alone, the topology audits its send.
    if (this.#settings.guarded !== true) this.#ctx.forward({ key: timer.key, value: auditOf(trigger, 'SENT', 'ok'), timestamp: ts }, this.#out.audit);
  }
}

export const basketAbandonment: TopologyDefinition<BasketAbandonmentParams> = {
  name: NAME,
  description: 'BASKET_ABANDONED / CHECKOUT_ABANDONED after inactivityGap without basket activity or order',
  defaults,
  build(builder, settings) {
    const p = settings.params;
    const ttlMs = Math.max(p.stateTtl, p.reentryCooldown + p.inactivityGap);
    const basket = builder.ensureSource(BASKET_TOPIC);
    const orders = builder.ensureSource(ORDERS_TOPIC);
    builder
      .addProcessor(NAME, () => new BasketAbandonmentProcessor(settings), [basket, orders], 'basket state per customer; inactivity timer per customer')
      .addStore({ ...basketsStore, ttlMs }, [NAME]);
    wireOutputs(builder, NAME, settings);
  },
};
