/**
 * A small simulated shop for `kairos demo`: customers view products, fill baskets, start checkouts, and buy
 * or leave. Seeded, so a run is reproducible in what it sends (not in when).
 */
import type { BasketEvent, CatalogEvent, CustomerProfile, OrderEvent, PageviewEvent, WishlistEvent } from '../../schemas/contract.js';
import { mulberry32 } from '../util/prng.js';

export type ShopRecord =
  | { readonly topic: 'shop.basket.v1'; readonly key: string; readonly value: BasketEvent }
  | { readonly topic: 'shop.orders.v1'; readonly key: string; readonly value: OrderEvent }
  | { readonly topic: 'shop.pageviews.v1'; readonly key: string; readonly value: PageviewEvent }
  | { readonly topic: 'crm.customers.v1'; readonly key: string; readonly value: CustomerProfile }
  | { readonly topic: 'shop.catalog.v1'; readonly key: string; readonly value: CatalogEvent }
  | { readonly topic: 'shop.wishlist.v1'; readonly key: string; readonly value: WishlistEvent };

const TIMEZONES = ['Europe/Berlin', 'Europe/London', 'America/New_York', 'Asia/Tokyo'] as const;

const PRODUCTS = [
  { productId: 'jacket', sku: 'jacket-m', price: 12999 },
  { productId: 'sneaker', sku: 'sneaker-42', price: 8999 },
  { productId: 'scarf', sku: 'scarf-one', price: 2499 },
  { productId: 'backpack', sku: 'backpack-20l', price: 6999 },
  { productId: 'watch', sku: 'watch-steel', price: 19999 },
] as const;

interface Shopper {
  readonly id: string;
  basket: string[];
  checkout: boolean;
  /** When the shopper leaves for good (no more events). */
  leavesAt: number;
  buys: boolean;
}

export class ShopSimulator {
  readonly #rand: () => number;
  readonly #shoppers = new Map<string, Shopper>();
  #next = 0;
  #seq = 0;

  constructor(seed = 42) {
    this.#rand = mulberry32(seed);
  }

  /** The events of one tick at wall time `now`: new shoppers arrive, active ones act. */
  #ticks = 0;

  /** The product on sale (20 % off) until the next catalog step, if any. */
  #onSale: (typeof PRODUCTS)[number] | undefined;

  /**
   * The catalog's side (ticks of 250 ms), early enough that the first triggers come within seconds: the watch
   * starts sold out and comes back after 7 s, then every 15 s (restock waves for its wishers); from 4 s on,
   * every 5 s a sale alternates with its end: 20 % off the product most often in a basket (price drops for the
   * baskets holding it), then back to its price.
   */
  #catalog(now: number, out: ShopRecord[]): void {
    const t = this.#ticks++;
    const watch = PRODUCTS[4];
    const stock = (stock: number): void => {
      out.push({ topic: 'shop.catalog.v1', key: watch.sku, value: { eventId: this.#id(), sku: watch.sku, productId: watch.productId, occurredAt: now, type: 'STOCK_CHANGED', stock } });
    };
    if (t === 0) stock(0);
    if (t >= 28 && (t - 28) % 60 === 0) stock(5);
    if (t >= 28 && (t - 28) % 60 === 30) stock(0);
    if (t >= 24 && (t - 24) % 20 === 0) {
      const ended = this.#onSale;
      const price = (p: (typeof PRODUCTS)[number], amount: number): void => {
        out.push({ topic: 'shop.catalog.v1', key: p.sku, value: { eventId: this.#id(), sku: p.sku, productId: p.productId, occurredAt: now, type: 'PRICE_CHANGED', price: { amount, currency: 'EUR' } } });
      };
      if (ended !== undefined) {
        price(ended, ended.price);
        this.#onSale = undefined;
      } else {
        const p = this.#mostInBaskets();
        price(p, Math.round(p.price * 0.8));
        this.#onSale = p;
      }
    }
  }

  /** Baskets left behind by shoppers who did not buy (still baskets for the engine, until they expire). */
  readonly #leftBaskets: string[][] = [];

  /** Of the products that go on sale (not the watch), the one in most baskets now (ties: catalog order). */
  #mostInBaskets(): (typeof PRODUCTS)[number] {
    const onSale = PRODUCTS.slice(0, 4);
    const baskets = [...[...this.#shoppers.values()].map((s) => s.basket), ...this.#leftBaskets];
    const count = (sku: string): number => baskets.filter((b) => b.includes(sku)).length;
    return onSale.reduce((best, p) => (count(p.sku) > count(best.sku) ? p : best), onSale[0] ?? PRODUCTS[0]);
  }

  tick(now: number, arrivals = 1): ShopRecord[] {
    const out: ShopRecord[] = [];
    this.#catalog(now, out);
    for (let i = 0; i < arrivals; i++) {
      const id = `demo-${String(++this.#next).padStart(4, '0')}`;
      this.#shoppers.set(id, { id, basket: [], checkout: false, leavesAt: now + 2000 + this.#rand() * 8000, buys: this.#rand() < 0.35 });
      // Every shopper has a profile: consents (a few opted out of everything), a time zone for quiet hours.
      const optedOut = this.#rand() < 0.1;
      out.push({
        topic: 'crm.customers.v1',
        key: id,
        value: {
          customerId: id,
          updatedAt: now,
          timezone: TIMEZONES[Math.floor(this.#rand() * TIMEZONES.length)] ?? 'Europe/Berlin',
          consents: { push: !optedOut, email: !optedOut && this.#rand() < 0.7, onsite: !optedOut },
          pushTokens: [],
          segments: [],
          attributes: { clv: Math.round(this.#rand() * 1000) },
        },
      });
    }
    for (const s of [...this.#shoppers.values()]) {
      if (now >= s.leavesAt) {
        if (s.buys && s.basket.length > 0) out.push(this.#order(s, now));
        else if (s.basket.length > 0 && this.#leftBaskets.push(s.basket) > 100) this.#leftBaskets.shift();
        this.#shoppers.delete(s.id);
        continue;
      }
      if (this.#rand() > 0.4) continue;
      const p = PRODUCTS[Math.floor(this.#rand() * PRODUCTS.length)] ?? PRODUCTS[0];
      const r = this.#rand();
      if (r < 0.08 && p.productId === 'watch') {
        out.push({ topic: 'shop.wishlist.v1', key: s.id, value: { eventId: this.#id(), customerId: s.id, occurredAt: now, type: 'ITEM_ADDED', productId: p.productId } });
      } else if (r < 0.4) out.push({ topic: 'shop.pageviews.v1', key: s.id, value: { eventId: this.#id(), customerId: s.id, occurredAt: now, productId: p.productId, sku: p.sku } });
      else if (r < 0.75 && !s.basket.includes(p.sku)) {
        s.basket.push(p.sku);
        out.push(this.#basket(s, now, 'ITEM_ADDED', p.sku));
      } else if (r < 0.85 && s.basket.length > 0) {
        const sku = s.basket.pop() as string;
        out.push(this.#basket(s, now, 'ITEM_REMOVED', sku));
      } else if (s.basket.length > 0 && !s.checkout) {
        s.checkout = true;
        out.push(this.#basket(s, now, 'CHECKOUT_STARTED'));
      }
    }
    return out;
  }

  #id(): string {
    return `demo-ev-${++this.#seq}`;
  }

  #basket(s: Shopper, now: number, type: BasketEvent['type'], sku?: string): ShopRecord {
    const p = PRODUCTS.find((x) => x.sku === sku);
    const value: BasketEvent = {
      eventId: this.#id(),
      customerId: s.id,
      occurredAt: now,
      type,
      ...(p ? { sku: p.sku, productId: p.productId, quantity: 1, unitPrice: { amount: p.price, currency: 'EUR' } } : {}),
    };
    return { topic: 'shop.basket.v1', key: s.id, value };
  }

  #order(s: Shopper, now: number): ShopRecord {
    const items = s.basket.map((sku) => {
      const p = PRODUCTS.find((x) => x.sku === sku) ?? PRODUCTS[0];
      return { sku: p.sku, productId: p.productId, quantity: 1, unitPrice: { amount: p.price, currency: 'EUR' } };
    });
    return { topic: 'shop.orders.v1', key: s.id, value: { eventId: this.#id(), orderId: `order-${s.id}`, customerId: s.id, occurredAt: now, items } };
  }
}
