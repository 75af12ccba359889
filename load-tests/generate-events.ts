/**
 * Seeded generator of a realistic shop event stream: NDJSON replay envelopes `{"topic","key","value"}` in
 * event-time order, valid per schemas/contract.ts.
 *
 * Model (a discrete-event simulation, one min-heap ordered by (time, sequence)):
 *  - Visits arrive as a Poisson process whose rate follows a 24 h traffic curve (thinning). A visit picks a
 *    customer uniformly among those not already in a session.
 *  - A session has an intent drawn at its start (browse, abandon the basket, abandon the checkout, buy; or, for a
 *    customer whose basket still holds items, come back to buy / check out / prune / add more). The intent gives
 *    a script of actions; each action becomes an event only when it is due, so it sees the basket, wishlist and
 *    catalog prices as they are then. In-session gaps are log-normal (median 15-150 s, capped at 20 min).
 *  - At a session's end the customer comes back with some probability: a fifth of the returns within the hour
 *    (inside the default 60 min abandonment gap, so they re-arm instead of firing), the rest hours to days later.
 *  - Product popularity is Zipf-like (s = 1.05 over products; each product has 1-5 sizes = skus). Prices are
 *    per product, log-normal around 35 EUR, ending in .99.
 *  - A separate Poisson process emits catalog PRICE_CHANGED (drops, raises, back to list price) and
 *    STOCK_CHANGED (sell-outs and restocks), key = sku, ~3 % of the stream.
 *
 * The same seed and options give byte-identical output. Import `generateEvents` (a generator of lines) or
 * `writeEvents` (to a stream, with back-pressure); run this file for the CLI:
 *
 *   npx tsx load-tests/generate-events.ts --events 1e6 --customers 100000 --seed 42 --out /tmp/events.ndjson
 */
import { createWriteStream } from 'node:fs';
import { resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { TOPICS, type BasketEvent, type CatalogEvent, type OrderEvent, type PageviewEvent, type TopicName, type WishlistEvent } from '../schemas/contract.js';
import { validateValue } from '../src/serde/validate.js';
import { fmtInt, isoOf, isUsageError, parseCount, parseTime, UsageError } from './lib/common.js';
import { mulberry32 } from '../src/util/prng.js';

export interface GenerateOptions {
  /** Number of events (lines). @default 1_000_000 */
  readonly events: number;
  /** Customer population. @default 100_000 */
  readonly customers: number;
  /** Catalog size in skus. @default 20_000 */
  readonly skus: number;
  /** PRNG seed. @default 42 */
  readonly seed: number;
  /** Event time of the stream's start, epoch ms. @default 2024-11-04T00:00:00Z */
  readonly start: number;
  /** Target span of the stream in days (the visit rate is derived from it; the real span varies a little). @default 7 */
  readonly days: number;
}

export const DEFAULT_OPTIONS: GenerateOptions = {
  events: 1_000_000,
  customers: 100_000,
  skus: 20_000,
  seed: 42,
  start: Date.UTC(2024, 10, 4),
  days: 7,
};

export type Intent = 'browse' | 'abandon-basket' | 'abandon-checkout' | 'buy' | 'return-buy' | 'return-checkout' | 'return-prune' | 'return-add';

/** What a run produced; filled in while the generator runs. */
export interface GeneratorStats {
  events: number;
  firstEventAt: number;
  lastEventAt: number;
  /** Per topic, and per topic and type ("shop.basket.v1 ITEM_ADDED"). */
  byKind: Record<string, number>;
  sessions: number;
  sessionsByIntent: Record<string, number>;
  /** Sessions that were returns of the same customer (scheduled at the end of an earlier session). */
  returnSessions: number;
  /** Distinct customers with at least one event. */
  customersSeen: number;
  /** Sessions that ended with items in the basket and no order in the session: candidates for abandonment. */
  sessionsEndingWithItems: number;
  /** …of which the last basket event was CHECKOUT_STARTED. */
  sessionsEndingInCheckout: number;
  orders: number;
}

export function newStats(): GeneratorStats {
  return {
    events: 0,
    firstEventAt: Number.NaN,
    lastEventAt: Number.NaN,
    byKind: {},
    sessions: 0,
    sessionsByIntent: {},
    returnSessions: 0,
    customersSeen: 0,
    sessionsEndingWithItems: 0,
    sessionsEndingInCheckout: 0,
    orders: 0,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Randomness

export { mulberry32 };

class Random {
  readonly #next: () => number;
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }
  float(): number {
    return this.#next();
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }
  chance(p: number): boolean {
    return this.#next() < p;
  }
  /** Exponential with the given mean. */
  exp(mean: number): number {
    return -Math.log(1 - this.#next()) * mean;
  }
  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.#next();
    const v = this.#next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  /** Log-normal with the given median, clamped to [min, max]. */
  logNormal(median: number, sigma: number, min: number, max: number): number {
    return Math.min(max, Math.max(min, median * Math.exp(sigma * this.normal())));
  }
  /** Number of failures before the first success (mean (1-p)/p). */
  geometric(p: number): number {
    return Math.floor(Math.log(1 - this.#next()) / Math.log(1 - p));
  }
}

/** Zipf-like sampler over ranks 0..n-1: P(k) ∝ 1/(k+1)^s, by binary search over the CDF. */
class Zipf {
  readonly #cdf: Float64Array;
  constructor(n: number, s: number) {
    this.#cdf = new Float64Array(n);
    let sum = 0;
    for (let k = 0; k < n; k++) this.#cdf[k] = sum += 1 / Math.pow(k + 1, s);
    for (let k = 0; k < n; k++) this.#cdf[k] = (this.#cdf[k] as number) / sum;
  }
  sample(u: number): number {
    const cdf = this.#cdf;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The simulation

const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const CURRENCY = 'EUR';
const SIZES = ['XS', 'S', 'M', 'L', 'XL'];
/** Share of the stream that is catalog events. */
const CATALOG_SHARE = 0.03;
/**
 * Session events one visit produces, its returns included. Measured with this model (1M events, seeds 1-5:
 * 8.24-8.29) and used only to derive the visit rate from --days; the actual span is reported in the stats.
 */
const EVENTS_PER_VISIT = 8.27;
/** Relative traffic per UTC hour: night trough, evening peak. */
const HOURLY = [0.35, 0.22, 0.15, 0.11, 0.1, 0.13, 0.22, 0.38, 0.55, 0.66, 0.72, 0.77, 0.82, 0.8, 0.77, 0.76, 0.79, 0.86, 0.95, 1, 1, 0.92, 0.75, 0.53];
const MEAN_HOURLY = HOURLY.reduce((a, b) => a + b, 0) / HOURLY.length;

type Action = 'view' | 'add' | 'remove' | 'qty' | 'viewBasket' | 'checkout' | 'order' | 'wishAdd' | 'wishRemove';

interface Session {
  readonly customer: number;
  readonly intent: Intent;
  readonly actions: Action[];
  i: number;
  /** Last product viewed in this session, or -1. */
  lastViewed: number;
  ordered: boolean;
  lastBasketType: BasketEvent['type'] | undefined;
}

type Entry =
  | { readonly at: number; readonly seq: number; readonly kind: 'visit' }
  | { readonly at: number; readonly seq: number; readonly kind: 'catalog' }
  | { readonly at: number; readonly seq: number; readonly kind: 'return'; readonly customer: number }
  | { readonly at: number; readonly seq: number; readonly kind: 'step'; readonly session: Session };

/** Binary min-heap on (at, seq): a total order, so equal times keep a deterministic order. */
class EntryHeap {
  readonly #a: Entry[] = [];
  get size(): number {
    return this.#a.length;
  }
  push(e: Entry): void {
    const a = this.#a;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = a[p] as Entry;
      if (!less(e, parent)) break;
      a[i] = parent;
      i = p;
    }
    a[i] = e;
  }
  pop(): Entry | undefined {
    const a = this.#a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const r = l + 1;
        const c = r < a.length && less(a[r] as Entry, a[l] as Entry) ? r : l;
        if (!less(a[c] as Entry, last)) break;
        a[i] = a[c] as Entry;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}
const less = (x: Entry, y: Entry): boolean => x.at < y.at || (x.at === y.at && x.seq < y.seq);

class ShopSimulation {
  readonly #o: GenerateOptions;
  readonly #stats: GeneratorStats;
  readonly #rng: Random;
  readonly #heap = new EntryHeap();
  #seq = 0;
  #now: number;
  #eventSeq = 0;
  #orderSeq = 0;

  // Catalog: products own 1-5 consecutive skus.
  readonly #productZipf: Zipf;
  readonly #productIds: string[] = [];
  readonly #productFirstSku: number[] = [];
  readonly #productSkuCount: number[] = [];
  readonly #basePrice: number[] = [];
  readonly #skuIds: string[] = [];
  readonly #skuProduct: Int32Array;
  readonly #price: Int32Array;
  readonly #stock: Int32Array;

  // Customers.
  readonly #customerIds: string[];
  readonly #inSession: Uint8Array;
  readonly #seen: Uint8Array;
  /** A shuffled customer order for first visits, and how many have had theirs. */
  readonly #visitOrder: Int32Array;
  #firstVisits = 0;
  /** customer → sku → quantity; only customers with a non-empty basket. */
  readonly #baskets = new Map<number, Map<number, number>>();
  /** customer → wished products (with the sku, or -1 for any size). */
  readonly #wishlists = new Map<number, Array<{ product: number; sku: number }>>();

  readonly #visitMaxRate: number;
  readonly #catalogMeanGap: number;

  constructor(o: GenerateOptions, stats: GeneratorStats) {
    this.#o = o;
    this.#stats = stats;
    this.#rng = new Random(o.seed);
    this.#now = o.start;
    const rng = this.#rng;

    this.#skuProduct = new Int32Array(o.skus);
    this.#price = new Int32Array(o.skus);
    this.#stock = new Int32Array(o.skus);
    const pWidth = Math.max(6, String(o.skus).length);
    for (let sku = 0, p = 0; sku < o.skus; p++) {
      const count = Math.min(o.skus - sku, 1 + rng.int(5));
      const productId = `P${String(p).padStart(pWidth, '0')}`;
      // Log-normal list price around 35 EUR, ending in .99.
      const base = Math.floor(rng.logNormal(3500, 0.8, 200, 100_000) / 100) * 100 - 1;
      this.#productIds.push(productId);
      this.#productFirstSku.push(sku);
      this.#productSkuCount.push(count);
      this.#basePrice.push(base);
      for (let k = 0; k < count; k++, sku++) {
        this.#skuIds.push(count === 1 ? `${productId}-OS` : `${productId}-${SIZES[k] ?? k}`);
        this.#skuProduct[sku] = p;
        this.#price[sku] = base;
        this.#stock[sku] = rng.chance(0.08) ? 0 : 1 + rng.int(200);
      }
    }
    this.#productZipf = new Zipf(this.#productIds.length, 1.05);

    const cWidth = Math.max(6, String(o.customers).length);
    this.#customerIds = Array.from({ length: o.customers }, (_, i) => `C${String(i).padStart(cWidth, '0')}`);
    this.#inSession = new Uint8Array(o.customers);
    this.#seen = new Uint8Array(o.customers);
    this.#visitOrder = new Int32Array(o.customers);
    for (let i = 0; i < o.customers; i++) this.#visitOrder[i] = i;
    for (let i = o.customers - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = this.#visitOrder[i] as number;
      this.#visitOrder[i] = this.#visitOrder[j] as number;
      this.#visitOrder[j] = t;
    }

    const spanMs = o.days * DAY;
    const visitRate = ((1 - CATALOG_SHARE) * o.events) / EVENTS_PER_VISIT / spanMs;
    // Thinning: candidates arrive at the peak rate and are kept with probability HOURLY[h] (peak = 1).
    this.#visitMaxRate = visitRate / MEAN_HOURLY;
    this.#catalogMeanGap = spanMs / Math.max(1, CATALOG_SHARE * o.events);
    this.#push({ at: o.start, seq: this.#seq++, kind: 'visit' });
    this.#push({ at: o.start + Math.round(rng.exp(this.#catalogMeanGap)), seq: this.#seq++, kind: 'catalog' });
  }

  get emitted(): number {
    return this.#eventSeq;
  }

  /** The next envelope line in event-time order. */
  next(): string {
    for (;;) {
      const e = this.#heap.pop();
      if (!e) throw new Error('generator: event queue ran dry'); // cannot happen: visits and catalog reschedule themselves
      if (e.at < this.#now) throw new Error(`generator: time went back from ${this.#now} to ${e.at}`);
      this.#now = e.at;
      switch (e.kind) {
        case 'visit': {
          this.#scheduleNextVisit();
          const customer = this.#pickIdleCustomer();
          if (customer >= 0) this.#startSession(customer, false);
          break;
        }
        case 'return':
          if (this.#inSession[e.customer] === 0) this.#startSession(e.customer, true);
          break;
        case 'catalog':
          this.#push({ at: this.#now + Math.max(1, Math.round(this.#rng.exp(this.#catalogMeanGap))), seq: this.#seq++, kind: 'catalog' });
          return this.#catalogEvent();
        case 'step':
          return this.#step(e.session);
      }
    }
  }

  /** Called after the last line: totals that need the whole run. */
  finish(): void {
    let seen = 0;
    for (const s of this.#seen) seen += s;
    this.#stats.customersSeen = seen;
  }

  #push(e: Entry): void {
    this.#heap.push(e);
  }

  #scheduleNextVisit(): void {
    let t = this.#now;
    for (;;) {
      t += Math.max(1, Math.round(this.#rng.exp(1 / this.#visitMaxRate)));
      const hour = Math.floor((t % DAY) / HOUR);
      if (this.#rng.chance(HOURLY[hour] ?? 1)) break;
    }
    this.#push({ at: t, seq: this.#seq++, kind: 'visit' });
  }

  /**
   * Most visits (85 %) come from customers not seen before, in a shuffled order, so the whole population shows
   * up; the rest from any customer (the returning-visitor share of web analytics), on top of scheduled returns.
   */
  #pickIdleCustomer(): number {
    if (this.#firstVisits < this.#o.customers && this.#rng.chance(0.85)) return this.#visitOrder[this.#firstVisits++] as number;
    for (let tries = 0; tries < 8; tries++) {
      const c = this.#rng.int(this.#o.customers);
      if (this.#inSession[c] === 0) return c;
    }
    return -1;
  }

  #startSession(customer: number, isReturn: boolean): void {
    const rng = this.#rng;
    const basketSize = this.#baskets.get(customer)?.size ?? 0;
    let intent: Intent;
    const r = rng.float();
    if (basketSize > 0 && r < 0.6) {
      intent = r < 0.3 ? 'return-buy' : r < 0.4 ? 'return-checkout' : r < 0.5 ? 'return-prune' : 'return-add';
    } else {
      const q = rng.float();
      intent = q < 0.58 ? 'browse' : q < 0.78 ? 'abandon-basket' : q < 0.86 ? 'abandon-checkout' : 'buy';
    }
    const session: Session = { customer, intent, actions: this.#script(intent), i: 0, lastViewed: -1, ordered: false, lastBasketType: undefined };
    this.#inSession[customer] = 1;
    this.#stats.sessions++;
    if (isReturn) this.#stats.returnSessions++;
    this.#stats.sessionsByIntent[intent] = (this.#stats.sessionsByIntent[intent] ?? 0) + 1;
    this.#push({ at: this.#now, seq: this.#seq++, kind: 'step', session });
  }

  /** The action script of an intent; actions that no longer make sense when due become page views. */
  #script(intent: Intent): Action[] {
    const rng = this.#rng;
    const a: Action[] = [];
    const views = (n: number): void => {
      for (let i = 0; i < n; i++) a.push('view');
    };
    const shop = (): void => {
      const adds = 1 + (rng.chance(0.35) ? 1 : 0) + (rng.chance(0.12) ? 1 : 0);
      for (let k = 0; k < adds; k++) {
        views(1 + Math.min(10, rng.geometric(0.45)));
        a.push('add');
      }
      if (rng.chance(0.12)) a.push('qty');
      if (rng.chance(0.1)) a.push('remove');
      if (rng.chance(0.08)) a.push('view', 'wishAdd');
      views(rng.int(3));
    };
    switch (intent) {
      case 'browse':
        views(1 + Math.min(40, rng.geometric(0.2)));
        if (rng.chance(0.12)) a.splice(1 + rng.int(a.length), 0, 'wishAdd');
        if (rng.chance(0.03)) a.push('wishRemove');
        break;
      case 'abandon-basket':
      case 'return-add':
        if (intent === 'return-add') a.push('viewBasket');
        shop();
        if (rng.chance(0.35)) a.push('viewBasket');
        break;
      case 'abandon-checkout':
        shop();
        if (rng.chance(0.7)) a.push('viewBasket');
        a.push('checkout');
        break;
      case 'buy':
        shop();
        if (rng.chance(0.7)) a.push('viewBasket');
        a.push('checkout', 'order');
        break;
      case 'return-buy':
        a.push('viewBasket');
        views(rng.int(3));
        a.push('checkout', 'order');
        break;
      case 'return-checkout':
        a.push('viewBasket', 'checkout');
        break;
      case 'return-prune':
        a.push('viewBasket', 'remove');
        if (rng.chance(0.3)) a.push('remove');
        views(rng.int(3));
        break;
    }
    return a;
  }

  /** Emits a session's next action and schedules the one after it, or ends the session. */
  #step(s: Session): string {
    const action = s.actions[s.i++] ?? 'view';
    const line = this.#emitAction(s, action);
    const next = s.actions[s.i];
    if (next !== undefined) this.#push({ at: this.#now + this.#gapBefore(next), seq: this.#seq++, kind: 'step', session: s });
    else this.#endSession(s);
    return line;
  }

  #gapBefore(next: Action): number {
    const rng = this.#rng;
    let ms: number;
    switch (next) {
      case 'order':
        ms = rng.logNormal(150 * SEC, 0.6, 20 * SEC, 20 * MIN); // payment
        break;
      case 'checkout':
        ms = rng.logNormal(45 * SEC, 0.7, 5 * SEC, 20 * MIN);
        break;
      case 'add':
      case 'wishAdd':
        ms = rng.logNormal(15 * SEC, 0.8, 2 * SEC, 20 * MIN);
        break;
      default:
        ms = rng.logNormal(30 * SEC, 0.9, 2 * SEC, 20 * MIN);
    }
    return Math.round(ms);
  }

  #endSession(s: Session): void {
    const c = s.customer;
    this.#inSession[c] = 0;
    const hasItems = (this.#baskets.get(c)?.size ?? 0) > 0;
    if (hasItems && !s.ordered && s.lastBasketType !== undefined) {
      this.#stats.sessionsEndingWithItems++;
      if (s.lastBasketType === 'CHECKOUT_STARTED') this.#stats.sessionsEndingInCheckout++;
    }
    const rng = this.#rng;
    if (rng.chance(hasItems ? 0.5 : 0.25)) {
      // A fifth of the returns fall inside the hour (re-arming the abandonment timer); the rest come later.
      const gap = rng.chance(0.2) ? 5 * MIN + rng.int(50 * MIN) : rng.logNormal(18 * HOUR, 1.1, HOUR, 14 * DAY);
      this.#push({ at: this.#now + Math.round(gap), seq: this.#seq++, kind: 'return', customer: c });
    }
  }

  #emitAction(s: Session, action: Action): string {
    const c = s.customer;
    const basket = this.#baskets.get(c);
    switch (action) {
      case 'view':
        return this.#pageview(s);
      case 'add':
        return this.#add(s);
      case 'remove':
        return basket && basket.size > 0 ? this.#remove(s, basket) : this.#pageview(s);
      case 'qty':
        return basket && basket.size > 0 ? this.#quantity(s, basket) : this.#pageview(s);
      case 'viewBasket':
        return this.#basket(s, { type: 'BASKET_VIEWED' });
      case 'checkout':
        return basket && basket.size > 0 ? this.#basket(s, { type: 'CHECKOUT_STARTED' }) : this.#pageview(s);
      case 'order':
        return basket && basket.size > 0 ? this.#order(s, basket) : this.#pageview(s);
      case 'wishAdd':
        return this.#wishAdd(s);
      case 'wishRemove': {
        const list = this.#wishlists.get(c);
        return list && list.length > 0 ? this.#wishRemove(s, list) : this.#pageview(s);
      }
    }
  }

  #popularProduct(): number {
    return this.#productZipf.sample(this.#rng.float());
  }

  #skuOf(product: number): number {
    return (this.#productFirstSku[product] as number) + this.#rng.int(this.#productSkuCount[product] as number);
  }

  #money(amount: number): { amount: number; currency: string } {
    return { amount, currency: CURRENCY };
  }

  #pageview(s: Session): string {
    const rng = this.#rng;
    // Shoppers often look at a product again (size charts, reviews), otherwise the next popular product.
    const product = s.lastViewed >= 0 && rng.chance(0.15) ? s.lastViewed : this.#popularProduct();
    s.lastViewed = product;
    const value: PageviewEvent = {
      eventId: this.#eventId(),
      customerId: this.#customerIds[s.customer] as string,
      occurredAt: this.#now,
      productId: this.#productIds[product] as string,
      ...(rng.chance(0.6) ? { sku: this.#skuIds[this.#skuOf(product)] as string } : {}),
    };
    return this.#line('shop.pageviews.v1', value.customerId, value, 'shop.pageviews.v1', s.customer);
  }

  #add(s: Session): string {
    const rng = this.#rng;
    const product = s.lastViewed >= 0 ? s.lastViewed : this.#popularProduct();
    const sku = this.#skuOf(product);
    const quantity = rng.chance(0.85) ? 1 : rng.chance(0.8) ? 2 : 3;
    let basket = this.#baskets.get(s.customer);
    if (!basket) this.#baskets.set(s.customer, (basket = new Map()));
    basket.set(sku, (basket.get(sku) ?? 0) + quantity);
    return this.#basket(s, {
      type: 'ITEM_ADDED',
      sku: this.#skuIds[sku] as string,
      productId: this.#productIds[product] as string,
      quantity,
      // Some shops' basket services do not send the price; the contract makes it optional.
      ...(rng.chance(0.92) ? { unitPrice: this.#money(this.#price[sku] as number) } : {}),
    });
  }

  #remove(s: Session, basket: Map<number, number>): string {
    const skus = [...basket.keys()];
    const sku = skus[this.#rng.int(skus.length)] as number;
    const have = basket.get(sku) as number;
    // Half of the removals name a quantity; one fewer when several are in the basket.
    const partial = have > 1 && this.#rng.chance(0.5);
    if (partial) basket.set(sku, have - 1);
    else basket.delete(sku);
    if (basket.size === 0) this.#baskets.delete(s.customer);
    return this.#basket(s, {
      type: 'ITEM_REMOVED',
      sku: this.#skuIds[sku] as string,
      productId: this.#productIds[this.#skuProduct[sku] as number] as string,
      ...(partial ? { quantity: 1 } : {}),
    });
  }

  #quantity(s: Session, basket: Map<number, number>): string {
    const skus = [...basket.keys()];
    const sku = skus[this.#rng.int(skus.length)] as number;
    const have = basket.get(sku) as number;
    let q = 1 + this.#rng.int(4);
    if (q === have) q++;
    basket.set(sku, q);
    return this.#basket(s, { type: 'QUANTITY_CHANGED', sku: this.#skuIds[sku] as string, productId: this.#productIds[this.#skuProduct[sku] as number] as string, quantity: q });
  }

  #basket(s: Session, fields: Omit<BasketEvent, 'eventId' | 'customerId' | 'occurredAt'>): string {
    const value: BasketEvent = { eventId: this.#eventId(), customerId: this.#customerIds[s.customer] as string, occurredAt: this.#now, ...fields };
    s.lastBasketType = fields.type;
    return this.#line('shop.basket.v1', value.customerId, value, `shop.basket.v1 ${fields.type}`, s.customer);
  }

  #order(s: Session, basket: Map<number, number>): string {
    let skus = [...basket.keys()];
    // Most orders take the whole basket; some leave items behind (which then stay without a timer).
    if (skus.length > 1 && this.#rng.chance(0.15)) skus = skus.slice(0, 1 + this.#rng.int(skus.length - 1));
    const value: OrderEvent = {
      eventId: this.#eventId(),
      orderId: `O${++this.#orderSeq}`,
      customerId: this.#customerIds[s.customer] as string,
      occurredAt: this.#now,
      items: skus.map((sku) => ({
        sku: this.#skuIds[sku] as string,
        productId: this.#productIds[this.#skuProduct[sku] as number] as string,
        quantity: basket.get(sku) as number,
        unitPrice: this.#money(this.#price[sku] as number),
      })),
    };
    for (const sku of skus) basket.delete(sku);
    if (basket.size === 0) this.#baskets.delete(s.customer);
    s.ordered = true;
    this.#stats.orders++;
    return this.#line('shop.orders.v1', value.customerId, value, 'shop.orders.v1', s.customer);
  }

  #wishAdd(s: Session): string {
    const rng = this.#rng;
    let list = this.#wishlists.get(s.customer);
    if (!list) this.#wishlists.set(s.customer, (list = []));
    let product = s.lastViewed >= 0 ? s.lastViewed : this.#popularProduct();
    if (list.some((w) => w.product === product)) product = this.#popularProduct();
    const sku = rng.chance(0.5) ? this.#skuOf(product) : -1;
    list.push({ product, sku });
    const value: WishlistEvent = {
      eventId: this.#eventId(),
      customerId: this.#customerIds[s.customer] as string,
      occurredAt: this.#now,
      type: 'ITEM_ADDED',
      productId: this.#productIds[product] as string,
      ...(sku >= 0 ? { sku: this.#skuIds[sku] as string } : {}),
    };
    return this.#line('shop.wishlist.v1', value.customerId, value, 'shop.wishlist.v1 ITEM_ADDED', s.customer);
  }

  #wishRemove(s: Session, list: Array<{ product: number; sku: number }>): string {
    const [w] = list.splice(this.#rng.int(list.length), 1);
    const { product, sku } = w as { product: number; sku: number };
    const value: WishlistEvent = {
      eventId: this.#eventId(),
      customerId: this.#customerIds[s.customer] as string,
      occurredAt: this.#now,
      type: 'ITEM_REMOVED',
      productId: this.#productIds[product] as string,
      ...(sku >= 0 ? { sku: this.#skuIds[sku] as string } : {}),
    };
    return this.#line('shop.wishlist.v1', value.customerId, value, 'shop.wishlist.v1 ITEM_REMOVED', s.customer);
  }

  #catalogEvent(): string {
    const rng = this.#rng;
    // Popular products are repriced and restocked more often; the long tail gets a share too.
    const sku = rng.chance(0.6) ? this.#skuOf(this.#popularProduct()) : rng.int(this.#o.skus);
    const product = this.#skuProduct[sku] as number;
    const base = {
      eventId: this.#eventId(),
      sku: this.#skuIds[sku] as string,
      productId: this.#productIds[product] as string,
      occurredAt: this.#now,
    };
    let value: CatalogEvent;
    if (rng.chance(0.65)) {
      const list = this.#basePrice[product] as number;
      const cur = this.#price[sku] as number;
      let next: number;
      if (cur >= list) next = rng.chance(0.8) ? cur * (1 - 0.1 - rng.float() * 0.3) : cur * (1.05 + rng.float() * 0.05);
      else next = rng.chance(0.5) ? list : cur * (0.8 + rng.float() * 0.15);
      next = Math.max(99, Math.floor(next / 100) * 100 + 99);
      if (next === cur) next = cur + 100;
      this.#price[sku] = next;
      value = { ...base, type: 'PRICE_CHANGED', price: this.#money(next) };
    } else {
      const cur = this.#stock[sku] as number;
      const next = cur > 0 ? (rng.chance(0.3) ? 0 : 1 + rng.int(300)) : 5 + rng.int(296);
      this.#stock[sku] = next;
      value = { ...base, type: 'STOCK_CHANGED', stock: next };
    }
    return this.#line('shop.catalog.v1', value.sku, value, `shop.catalog.v1 ${value.type}`, -1);
  }

  #eventId(): string {
    return `E${++this.#eventSeq}`;
  }

  #line(topic: TopicName, key: string, value: object, kind: string, customer: number): string {
    const st = this.#stats;
    st.events++;
    if (st.events === 1) st.firstEventAt = this.#now;
    st.lastEventAt = this.#now;
    st.byKind[kind] = (st.byKind[kind] ?? 0) + 1;
    if (kind !== topic) st.byKind[topic] = (st.byKind[topic] ?? 0) + 1;
    if (customer >= 0) this.#seen[customer] = 1;
    return JSON.stringify({ topic, key, value });
  }
}

export function resolveOptions(partial: Partial<GenerateOptions>): GenerateOptions {
  const o = { ...DEFAULT_OPTIONS, ...partial };
  if (o.customers < 1) throw new UsageError('--customers must be at least 1');
  if (o.skus < 1) throw new UsageError('--skus must be at least 1');
  if (!(o.days > 0)) throw new UsageError('--days must be positive');
  return o;
}

/**
 * The event stream as NDJSON lines (without the newline), in event-time order. `stats` is filled in as lines
 * are produced; its totals are complete once the generator is exhausted.
 */
export function* generateEvents(options: Partial<GenerateOptions> = {}, stats: GeneratorStats = newStats()): Generator<string, GeneratorStats> {
  const o = resolveOptions(options);
  const sim = new ShopSimulation(o, stats);
  while (sim.emitted < o.events) yield sim.next();
  sim.finish();
  return stats;
}

export interface WriteProgress {
  readonly events: number;
  readonly total: number;
  readonly simTime: number;
  readonly elapsedMs: number;
}

/** Writes the stream to `out` with back-pressure (in ~1 MiB chunks). Does not end `out`. */
export async function writeEvents(
  options: Partial<GenerateOptions>,
  out: Writable,
  onProgress?: (p: WriteProgress) => void,
  progressEvery = 100_000,
): Promise<GeneratorStats> {
  const o = resolveOptions(options);
  const stats = newStats();
  const started = performance.now();
  let chunk: string[] = [];
  let size = 0;
  // A write error (disk full, EPIPE when piped into `head`) must end the run, not leave it waiting for 'drain'.
  let failed: Error | undefined;
  const onError = (err: Error): void => {
    failed ??= err;
  };
  out.on('error', onError);
  const flush = async (): Promise<void> => {
    if (failed) throw failed;
    if (chunk.length === 0) return;
    const data = chunk.join('\n') + '\n';
    chunk = [];
    size = 0;
    if (out.write(data)) return;
    await new Promise<void>((res, rej) => {
      const drained = (): void => {
        out.off('error', errored);
        res();
      };
      const errored = (err: Error): void => {
        out.off('drain', drained);
        rej(err);
      };
      out.once('drain', drained);
      out.once('error', errored);
    });
  };
  try {
    for (const line of generateEvents(o, stats)) {
      chunk.push(line);
      size += line.length;
      if (size >= 1 << 20) await flush();
      if (onProgress && stats.events % progressEvery === 0) {
        onProgress({ events: stats.events, total: o.events, simTime: stats.lastEventAt, elapsedMs: performance.now() - started });
      }
    }
    await flush();
  } finally {
    out.off('error', onError);
  }
  return stats;
}

export interface SelfCheck {
  readonly checked: number;
  readonly errors: readonly string[];
}

/**
 * Validates lines the way a consumer would: JSON, known topic, value valid per the contract (`validateValue`,
 * cross-field rules included), key = the topic's key field, event time never going back.
 */
export function selfCheck(lines: Iterable<string>, limit: number): SelfCheck {
  const errors: string[] = [];
  let checked = 0;
  let last = -Infinity;
  for (const text of lines) {
    if (checked >= limit) break;
    checked++;
    const env = JSON.parse(text) as { topic: string; key: string; value: unknown };
    if (!Object.hasOwn(TOPICS, env.topic)) {
      errors.push(`line ${checked}: unknown topic ${env.topic}`);
      continue;
    }
    const topic = env.topic as TopicName;
    const v = validateValue(topic, env.value);
    if (!v.ok) {
      errors.push(`line ${checked}: ${v.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`);
      continue;
    }
    const fields = v.value as Record<string, unknown>;
    const spec = TOPICS[topic];
    if (fields[spec.keyField] !== env.key) errors.push(`line ${checked}: key ${env.key} ≠ value.${spec.keyField}`);
    const t = fields[spec.timestampField] as number;
    if (t < last) errors.push(`line ${checked}: event time ${t} before ${last}`);
    last = Math.max(last, t);
  }
  return { checked, errors };
}

export function formatStats(s: GeneratorStats): string {
  const pct = (n: number, of: number): string => `${((100 * n) / Math.max(1, of)).toFixed(1)}%`;
  const kinds = Object.entries(s.byKind)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, n]) => `  ${k.padEnd(36)} ${fmtInt(n).padStart(10)}  ${pct(n, s.events).padStart(6)}`);
  const intents = Object.entries(s.sessionsByIntent)
    .sort(([, a], [, b]) => b - a)
    .map(([k, n]) => `  ${k.padEnd(36)} ${fmtInt(n).padStart(10)}  ${pct(n, s.sessions).padStart(6)}`);
  return [
    `events ${fmtInt(s.events)}, ${isoOf(s.firstEventAt)} .. ${isoOf(s.lastEventAt)} (${((s.lastEventAt - s.firstEventAt) / DAY).toFixed(2)} days)`,
    `customers seen ${fmtInt(s.customersSeen)}; sessions ${fmtInt(s.sessions)} (${fmtInt(s.returnSessions)} returns); orders ${fmtInt(s.orders)}`,
    `sessions ending with items in the basket and no order: ${fmtInt(s.sessionsEndingWithItems)} (${fmtInt(s.sessionsEndingInCheckout)} right after CHECKOUT_STARTED)`,
    'by topic / type:',
    ...kinds,
    'sessions by intent:',
    ...intents,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// CLI

async function main(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      events: { type: 'string' },
      customers: { type: 'string' },
      skus: { type: 'string' },
      seed: { type: 'string' },
      start: { type: 'string' },
      days: { type: 'string' },
      out: { type: 'string', short: 'o' },
      check: { type: 'string' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'usage: tsx load-tests/generate-events.ts [--events 1000000] [--customers 100000] [--skus 20000] [--seed 42]\n' +
        '         [--start <ms|ISO>] [--days 7] [--out file.ndjson] [--check 10000 (lines validated first; 0 = none, "all")] [--quiet]\n',
    );
    return;
  }
  const days = values.days === undefined ? DEFAULT_OPTIONS.days : Number(values.days);
  const opts = resolveOptions({
    events: parseCount('events', values.events, DEFAULT_OPTIONS.events),
    customers: parseCount('customers', values.customers, DEFAULT_OPTIONS.customers),
    skus: parseCount('skus', values.skus, DEFAULT_OPTIONS.skus),
    seed: parseCount('seed', values.seed, DEFAULT_OPTIONS.seed),
    start: parseTime('start', values.start, DEFAULT_OPTIONS.start),
    days,
  });
  const checkLimit = values.check === 'all' ? Infinity : parseCount('check', values.check, 10_000);

  // Self-check first, on a separate generator instance (same seed ⇒ the same lines as the output).
  if (checkLimit > 0) {
    const started = performance.now();
    const r = selfCheck(generateEvents({ ...opts, events: Math.min(opts.events, checkLimit) }), checkLimit);
    if (r.errors.length > 0) {
      process.stderr.write(`generate: self-check FAILED on ${r.errors.length} of ${r.checked} lines:\n  ${r.errors.slice(0, 20).join('\n  ')}\n`);
      process.exitCode = 1;
      return;
    }
    if (!values.quiet) process.stderr.write(`generate: self-check ok: first ${fmtInt(r.checked)} lines valid per the contract (${((performance.now() - started) / 1000).toFixed(2)} s)\n`);
  }

  const out = values.out === undefined || values.out === '-' ? process.stdout : createWriteStream(values.out);
  const stats = await writeEvents(opts, out, (p) => {
    if (values.quiet) return;
    process.stderr.write(
      `generate: ${fmtInt(p.events)} / ${fmtInt(p.total)} events (${((100 * p.events) / p.total).toFixed(0)}%), ` +
        `event time ${isoOf(p.simTime)}, ${fmtInt(p.events / (p.elapsedMs / 1000))} events/s\n`,
    );
  });
  if (out !== process.stdout) {
    out.end();
    await finished(out);
  }
  if (!values.quiet) process.stderr.write(`${formatStats(stats)}\n`);
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (invokedDirectly) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    // The reader went away (`… | head`): not an error of the generator.
    if (err instanceof Error && 'code' in err && err.code === 'EPIPE') return;
    process.stderr.write(`generate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = isUsageError(err) ? 2 : 1;
  });
}
