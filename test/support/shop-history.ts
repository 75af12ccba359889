/**
 * A deterministic shop history for the Kafka ↔ replay equivalence tests (test/kafka/equivalence-*.test.ts):
 * every input topic, every topology, the guards.
 *
 * - Catalog (shop.catalog.v1, key sku): `products` products with two skus each; an initial price and stock per
 *   sku before T0, then price drops (big enough to fire, and too small to), rises, sell-outs (stock 0) and
 *   restocks, and plain stock changes, spread over the history.
 * - Profiles (crm.customers.v1): most customers have one (consent for push and e-mail, e-mail only, or none;
 *   time zones from New York to Tokyo, none (the default zone) or an unknown one; a few in segment "staff"); some
 *   have none at all; some change their consents during the history.
 * - Customers (shop.basket.v1, shop.orders.v1, shop.pageviews.v1, shop.wishlist.v1): one to three visits each,
 *   browsing products, adding to the basket (with the catalog price of the moment, or without a price),
 *   changing quantities, removing, starting checkout, ordering some or all of it, wishing skus or whole
 *   products and taking wishes back.
 * - Edge customers near T_END: an abandonment due exactly at T_END (fires in both runners) and some due after it
 *   (fire in neither).
 * - Clock: one BASKET_VIEWED per partition at T_END, keyed by a dummy customer whose key hashes to that
 *   partition (so the runner processes it in that task and does not re-route it). Stream time is per task
 *   (over all of a task's inputs, repartition topics included), so every task then reaches T_END and fires
 *   exactly the timers due by then, as replay does with the same lines at its end.
 *
 * Every event time is distinct (ties are broken by a millisecond), so the event-time order is total and replay's
 * input order is the only one. Every event lies in [T0 − 1 h, T_END].
 */
import type { BasketEvent, CatalogEvent, CustomerProfile, Money, OrderEvent, PageviewEvent, WishlistEvent } from '../../schemas/contract.js';
import { partitionOf } from '../../src/kafka/partitioner.js';
import { mulberry32 } from '../../src/util/prng.js';

export const MIN = 60_000;
export const HOUR = 60 * MIN;
export const PARTITIONS = 4;

export const BASKET = 'shop.basket.v1';
export const ORDERS = 'shop.orders.v1';
export const PAGEVIEWS = 'shop.pageviews.v1';
export const WISHLIST = 'shop.wishlist.v1';
export const CATALOG = 'shop.catalog.v1';
export const CUSTOMERS = 'crm.customers.v1';
export const INPUT_TOPICS = [BASKET, ORDERS, PAGEVIEWS, WISHLIST, CATALOG, CUSTOMERS] as const;
export type InputTopic = (typeof INPUT_TOPICS)[number];

export type InputValue = BasketEvent | OrderEvent | PageviewEvent | WishlistEvent | CatalogEvent | CustomerProfile;

export interface Input {
  readonly topic: InputTopic;
  /** customerId, or the sku on shop.catalog.v1. */
  readonly key: string;
  readonly value: InputValue;
  /** The partition the producers' default partitioner (murmur2) gives the key: the task that owns it. */
  readonly partition: number;
}

export const timeOf = (i: Input): number => ('occurredAt' in i.value ? i.value.occurredAt : i.value.updatedAt);

export interface Customer {
  readonly id: string;
  /** What the profile says, for the report: "push+email Asia/Tokyo", "no profile", … */
  readonly profile: string;
  readonly partition: number;
  /** The customer's own inputs (profile included), in event-time order. */
  readonly events: Input[];
  /** Skus the customer put into the basket or the wishlist (and products wished without a sku). */
  readonly skus: Set<string>;
}

export interface ShopHistory {
  readonly t0: number;
  readonly tEnd: number;
  /** Every input but the clock, in event-time order (distinct times). */
  readonly events: readonly Input[];
  /** One record per partition at T_END (a BASKET_VIEWED of an empty basket), the last record of each task. */
  readonly clock: readonly Input[];
  readonly customers: ReadonlyMap<string, Customer>;
  /** sku → its catalog events. */
  readonly catalog: ReadonlyMap<string, Input[]>;
}

export interface HistoryOptions {
  /** Start of the customers' activity (06:00 UTC gives a mix of quiet hours across the time zones). */
  readonly t0: number;
  /** @default 150 */
  readonly customers?: number;
  /** Products (two skus each). @default 10 */
  readonly products?: number;
  /** Customers' activity lasts this long after T0; T_END is an hour later. @default 10 h */
  readonly span?: number;
  readonly seed?: number;
}

const eur = (amount: number): Money => ({ amount, currency: 'EUR' });

/** A key hashing to each partition: `${prefix}-<n>` for the smallest n that lands there. */
export function keysPerPartition(prefix: string, partitions = PARTITIONS): string[] {
  const keys: string[] = [];
  for (let p = 0; p < partitions; p++) {
    for (let n = 0; ; n++) {
      const k = `${prefix}-${n}`;
      if (partitionOf(k, partitions) === p) {
        keys.push(k);
        break;
      }
    }
  }
  return keys;
}

const TIMEZONES: readonly (string | undefined)[] = [
  undefined, // the config's default zone (Europe/Berlin: no quiet hours during the history)
  undefined,
  'America/New_York', // quiet until 12:00 UTC
  'America/Los_Angeles', // quiet until 15:00 UTC
  'Asia/Tokyo', // quiet from 13:00 UTC until after T_END: held and never released by T_END
  'Europe/London', // quiet until 07:00 UTC
  'Europe/Berlin',
  'Not/AZone', // unknown: the default zone
];

export function shopHistory(o: HistoryOptions): ShopHistory {
  const t0 = o.t0;
  const span = o.span ?? 10 * HOUR;
  const tEnd = t0 + span + HOUR;
  const rnd = mulberry32(o.seed ?? 0x6b616973);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const chance = (p: number) => rnd() < p;
  const between = (a: number, b: number) => a + rnd() * (b - a);
  const all: { input: Omit<Input, 'partition'>; seq: number }[] = [];
  let seq = 0;
  const push = (topic: InputTopic, key: string, value: InputValue) => all.push({ input: { topic, key, value }, seq: seq++ });

  // --- Catalog -----------------------------------------------------------------------------------------
  const productCount = o.products ?? 10;
  const skus: { sku: string; productId: string }[] = [];
  for (let p = 1; p <= productCount; p++) for (const size of ['s', 'm']) skus.push({ sku: `sku-${p}${size}`, productId: `p-${p}` });
  /** sku → [time, price, stock] steps, for the price a customer sees at a time. */
  const priceAt = new Map<string, { at: number; price: number }[]>();
  const stockAt = new Map<string, { at: number; stock: number }[]>();
  let catalogN = 0;
  const catalogEvent = (sku: string, productId: string, at: number, change: { price: number } | { stock: number }) => {
    const value: CatalogEvent =
      'price' in change
        ? { eventId: `cat-${++catalogN}`, sku, productId, occurredAt: Math.round(at), type: 'PRICE_CHANGED', price: eur(change.price) }
        : { eventId: `cat-${++catalogN}`, sku, productId, occurredAt: Math.round(at), type: 'STOCK_CHANGED', stock: change.stock };
    push(CATALOG, sku, value);
    if ('price' in change) priceAt.get(sku)?.push({ at: Math.round(at), price: change.price });
    else stockAt.get(sku)?.push({ at: Math.round(at), stock: change.stock });
  };
  for (const [i, { sku, productId }] of skus.entries()) {
    const base = 1000 + 250 * ((i * 7) % 13);
    priceAt.set(sku, []);
    stockAt.set(sku, []);
    catalogEvent(sku, productId, t0 - HOUR + i * 1000, { price: base });
    catalogEvent(sku, productId, t0 - 50 * MIN + i * 1000, { stock: 2 + Math.floor(rnd() * 10) });
    // 3–6 changes per sku over the history.
    let price = base;
    let stock = stockAt.get(sku)?.at(-1)?.stock ?? 5;
    const n = 3 + Math.floor(rnd() * 4);
    const times = Array.from({ length: n }, () => t0 + between(20 * MIN, span - 30 * MIN)).sort((a, b) => a - b);
    for (const at of times) {
      const r = rnd();
      if (stock === 0 && r < 0.6) {
        stock = 2 + Math.floor(rnd() * 5); // restock: a wave of the sku's and its product's wishers
        catalogEvent(sku, productId, at, { stock });
      } else if (r < 0.35) {
        price = Math.round(price * between(0.6, 0.85)); // a drop that fires (≥ 15 %)
        catalogEvent(sku, productId, at, { price });
      } else if (r < 0.45) {
        price = Math.round(price * 0.95); // too small to fire (5 %)
        catalogEvent(sku, productId, at, { price });
      } else if (r < 0.6) {
        price = Math.round(price * between(1.1, 1.3)); // a rise
        catalogEvent(sku, productId, at, { price });
      } else if (r < 0.85 && stock > 0) {
        stock = 0; // sold out: no price drop, and the next restock is a transition
        catalogEvent(sku, productId, at, { stock });
      } else {
        stock = stock === 0 ? 0 : stock + 1 + Math.floor(rnd() * 3); // stays in stock: no transition
        catalogEvent(sku, productId, at, { stock });
      }
    }
  }
  const currentPrice = (sku: string, at: number): number => {
    let p = 0;
    for (const s of priceAt.get(sku) ?? []) if (s.at <= at) p = s.price;
    return p;
  };

  // --- Customers -----------------------------------------------------------------------------------------
  const customers = new Map<string, Customer>();
  const count = o.customers ?? 150;
  for (let i = 0; i < count; i++) {
    const id = `c${String(i).padStart(3, '0')}`;
    const events: Input[] = [];
    const touched = new Set<string>();
    const add = (topic: InputTopic, value: InputValue) => {
      push(topic, id, value);
      events.push({ topic, key: id, value, partition: partitionOf(id, PARTITIONS) });
    };
    // Profile.
    const kind = rnd();
    const timezone = pick(TIMEZONES);
    const consents = kind < 0.1 ? undefined : kind < 0.2 ? { push: false, email: false, onsite: false } : kind < 0.35 ? { push: false, email: true, onsite: false } : { push: true, email: true, onsite: true };
    const staff = chance(0.06);
    const profile = (updatedAt: number, c: CustomerProfile['consents']): CustomerProfile => ({
      customerId: id,
      updatedAt: Math.round(updatedAt),
      ...(timezone === undefined ? {} : { timezone }),
      consents: c,
      pushTokens: [],
      email: `${id}@example.com`,
      segments: staff ? ['staff'] : [],
      attributes: { clv: Math.round(rnd() * 1000) },
    });
    let describe = consents === undefined ? 'no profile' : `${consents.push ? 'push+' : ''}${consents.email ? 'email' : 'no consent'} ${timezone ?? '(default zone)'}${staff ? ' staff' : ''}`;
    if (consents) add(CUSTOMERS, profile(t0 - 30 * MIN + i * 1000, consents));

    // Visits.
    let t = t0 + between(0, span * 0.5);
    const basket = new Map<string, number>();
    let n = 0;
    const eid = (p: string) => `${id}-${p}${++n}`;
    const visits = 1 + Math.floor(rnd() * 3);
    for (let v = 0; v < visits && t < t0 + span - 40 * MIN; v++) {
      const wait = (a: number, b: number) => (t += Math.round(between(a, b) * MIN));
      // Browse 1–4 products.
      const viewed: { sku: string; productId: string }[] = [];
      const views = 1 + Math.floor(rnd() * 4);
      for (let k = 0; k < views; k++) {
        const s = pick(skus);
        viewed.push(s);
        add(PAGEVIEWS, { eventId: eid('v'), customerId: id, occurredAt: Math.round(t), productId: s.productId, ...(chance(0.6) ? { sku: s.sku } : {}) });
        wait(1, 8);
      }
      // Wish something.
      if (chance(0.45)) {
        const s = chance(0.6) ? pick(viewed) : pick(skus);
        const bySku = chance(0.6);
        touched.add(bySku ? s.sku : s.productId);
        add(WISHLIST, { eventId: eid('w'), customerId: id, occurredAt: Math.round(t), type: 'ITEM_ADDED', productId: s.productId, ...(bySku ? { sku: s.sku } : {}) });
        wait(1, 5);
        if (chance(0.2)) {
          wait(5, 60);
          add(WISHLIST, { eventId: eid('w'), customerId: id, occurredAt: Math.round(t), type: 'ITEM_REMOVED', productId: s.productId, ...(bySku ? { sku: s.sku } : {}) });
          wait(1, 5);
        }
      }
      // Basket.
      if (chance(0.65)) {
        const adds = 1 + Math.floor(rnd() * 3);
        for (let k = 0; k < adds; k++) {
          const s = chance(0.5) ? pick(viewed) : pick(skus);
          const q = 1 + Math.floor(rnd() * 2);
          basket.set(s.sku, (basket.get(s.sku) ?? 0) + q);
          touched.add(s.sku);
          const withPrice = chance(0.8);
          add(BASKET, {
            eventId: eid('b'),
            customerId: id,
            occurredAt: Math.round(t),
            type: 'ITEM_ADDED',
            sku: s.sku,
            productId: s.productId,
            quantity: q,
            ...(withPrice ? { unitPrice: eur(currentPrice(s.sku, t)) } : {}),
          });
          wait(1, 6);
        }
        const r = rnd();
        const inBasket = [...basket.keys()];
        if (r < 0.15 && inBasket.length > 0) {
          const sku = pick(inBasket);
          basket.delete(sku);
          add(BASKET, { eventId: eid('b'), customerId: id, occurredAt: Math.round(t), type: 'ITEM_REMOVED', sku, productId: productOf(sku) });
          wait(1, 6);
        } else if (r < 0.25 && inBasket.length > 0) {
          const sku = pick(inBasket);
          const q = Math.floor(rnd() * 3);
          if (q === 0) basket.delete(sku);
          else basket.set(sku, q);
          add(BASKET, { eventId: eid('b'), customerId: id, occurredAt: Math.round(t), type: 'QUANTITY_CHANGED', sku, productId: productOf(sku), quantity: q });
          wait(1, 6);
        } else if (r < 0.3) {
          add(BASKET, { eventId: eid('b'), customerId: id, occurredAt: Math.round(t), type: 'BASKET_VIEWED' });
          wait(1, 6);
        }
        const checkout = chance(0.35);
        if (checkout && basket.size > 0) {
          add(BASKET, { eventId: eid('b'), customerId: id, occurredAt: Math.round(t), type: 'CHECKOUT_STARTED' });
        }
        // Order: within the gap (nothing fires), or after it (the abandonment stands), or never.
        const o2 = rnd();
        if (basket.size > 0 && o2 < (checkout ? 0.6 : 0.35)) {
          if (chance(0.6)) wait(2, 25);
          else wait(35, 90);
          const items = [...basket].filter(() => chance(0.75));
          if (items.length === 0) items.push([...basket][0] as [string, number]);
          const order: OrderEvent = {
            eventId: eid('o'),
            orderId: `order-${id}-${n}`,
            customerId: id,
            occurredAt: Math.round(t),
            items: items.map(([sku, quantity]) => ({ sku, productId: productOf(sku), quantity, unitPrice: eur(currentPrice(sku, t)) })),
          };
          for (const [sku] of items) basket.delete(sku);
          add(ORDERS, order);
        }
      }
      // A consent change during the history (a held trigger is checked again on release).
      if (consents && v === 0 && chance(0.12)) {
        wait(5, 40);
        const flipped = consents.push || consents.email ? { push: false, email: false, onsite: false } : { push: true, email: true, onsite: true };
        add(CUSTOMERS, profile(t, flipped));
        describe += `, then ${flipped.push ? 'consents' : 'withdraws consent'}`;
      }
      wait(20, 200);
    }
    customers.set(id, { id, profile: describe, partition: partitionOf(id, PARTITIONS), events, skus: touched });
  }

  // Edge customers: an abandonment due exactly at T_END (fires in both), two due after it (fire in neither).
  for (const [k, offset] of [30 * MIN, 20 * MIN, 5 * MIN].entries()) {
    const id = `edge-${k}`;
    const events: Input[] = [];
    const s = skus[k % skus.length] as { sku: string; productId: string };
    const p: CustomerProfile = { customerId: id, updatedAt: t0 - 20 * MIN + k, consents: { push: true, email: true, onsite: true }, pushTokens: [], segments: [], attributes: {} };
    const b: BasketEvent = { eventId: `${id}-b1`, customerId: id, occurredAt: tEnd - offset, type: 'ITEM_ADDED', sku: s.sku, productId: s.productId, quantity: 1 };
    for (const [topic, value] of [[CUSTOMERS, p], [BASKET, b]] as const) {
      push(topic, id, value);
      events.push({ topic, key: id, value, partition: partitionOf(id, PARTITIONS) });
    }
    customers.set(id, { id, profile: `push+email (default zone), abandonment due at T_END${offset === 30 * MIN ? '' : ` + ${(30 * MIN - offset) / MIN} min`}`, partition: partitionOf(id, PARTITIONS), events, skus: new Set([s.sku]) });
  }

  // Event-time order, then distinct times (a tie moves the later one by 1 ms; each customer keeps its order).
  const time = (v: InputValue) => ('occurredAt' in v ? v.occurredAt : v.updatedAt);
  all.sort((x, y) => time(x.input.value) - time(y.input.value) || x.seq - y.seq);
  let last = -Infinity;
  for (const { input } of all) {
    const v = input.value as { occurredAt?: number; updatedAt?: number };
    let at = time(input.value);
    if (at <= last) at = last + 1;
    if ('occurredAt' in v) v.occurredAt = at;
    else v.updatedAt = at;
    last = at;
  }
  if (last >= tEnd) throw new Error(`history runs past T_END (${new Date(last).toISOString()})`);
  const events: Input[] = all.map(({ input }) => ({ ...input, partition: partitionOf(input.key, PARTITIONS) }));
  // Customers' own lists hold the same value objects (times fixed above); keep them in event-time order.
  for (const c of customers.values()) c.events.sort((a, b) => timeOf(a) - timeOf(b));
  const catalog = new Map<string, Input[]>();
  for (const e of events) if (e.topic === CATALOG) catalog.set(e.key, [...(catalog.get(e.key) ?? []), e]);

  const clock = keysPerPartition('zz-clock').map(
    (key, p): Input => ({ topic: BASKET, key, partition: p, value: { eventId: `clock-${p}`, customerId: key, occurredAt: tEnd, type: 'BASKET_VIEWED' } }),
  );
  return { t0, tEnd, events, clock, customers, catalog };
}

function productOf(sku: string): string {
  return `p-${sku.slice(4, -1)}`;
}

const hhmm = (ms: number): string => new Date(ms).toISOString().slice(11, 19);

function describeInput(e: Input): string {
  const v = e.value as unknown as Record<string, unknown>;
  switch (e.topic) {
    case BASKET: {
      const b = e.value as BasketEvent;
      return `basket   ${b.type} ${b.sku ?? ''}${b.quantity === undefined ? '' : ` ×${b.quantity}`}${b.unitPrice ? ` @${b.unitPrice.amount}` : ''}`;
    }
    case ORDERS:
      return `order    [${(e.value as OrderEvent).items.map((i) => `${i.sku}×${i.quantity}`).join(', ')}]`;
    case PAGEVIEWS: {
      const p = e.value as PageviewEvent;
      return `view     ${p.productId}${p.sku ? ` (${p.sku})` : ''}`;
    }
    case WISHLIST: {
      const w = e.value as WishlistEvent;
      return `wishlist ${w.type} ${w.sku ?? `${w.productId} (any size)`}`;
    }
    case CATALOG: {
      const c = e.value as CatalogEvent;
      return `catalog  ${c.sku} ${c.type === 'PRICE_CHANGED' ? `price ${c.price?.amount}` : `stock ${c.stock}`}`;
    }
    case CUSTOMERS: {
      const p = e.value as CustomerProfile;
      return `profile  consents push=${p.consents.push} email=${p.consents.email} tz=${p.timezone ?? '-'}`;
    }
    default:
      return JSON.stringify(v);
  }
}

/** A customer's inputs, and the catalog events of the skus they touched (for failure reports). */
export function timeline(h: ShopHistory, customerId: string): string {
  const c = h.customers.get(customerId);
  if (!c) return `  ${customerId}: (not a generated customer)`;
  const rows = c.events.map((e) => `    ${hhmm(timeOf(e))} ${describeInput(e)}  [${(e.value as { eventId?: string }).eventId ?? ''}]`);
  const cat: string[] = [];
  for (const [sku, list] of h.catalog) {
    if (!c.skus.has(sku) && !c.skus.has(productOf(sku))) continue;
    for (const e of list) cat.push(`    ${hhmm(timeOf(e))} ${describeInput(e)}  [${(e.value as CatalogEvent).eventId}, partition ${e.partition}]`);
  }
  cat.sort();
  return [`  ${customerId} (${c.profile}; partition ${c.partition}):`, ...rows, ...(cat.length > 0 ? ['    -- catalog of its skus:', ...cat] : [])].join('\n');
}
