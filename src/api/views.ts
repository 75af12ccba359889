/**
 * What the query API answers, assembled from one task's state (active or standby). Topologies that are not
 * enabled simply contribute nothing (their stores are absent from the task).
 */
import type { CustomerProfile, Money } from '../../schemas/contract.js';
import type { KeyValueStoreSpec } from '../engine/api/stores.js';
import type { StateReader, TimerInfo } from '../engine/state/reader.js';
import { basketsStore, basketValue, type BasketItem } from '../../topologies/basket-abandonment/index.js';
import { customersStore as priceDropCustomers, skusStore, subscribersStore } from '../../topologies/basket-price-drop/index.js';
import { sessionsStore } from '../../topologies/browse-abandonment/index.js';
import { profilesStore } from '../../topologies/common/guards.js';
import { historyStore, type RecentDecision, type RecentTrigger } from '../../topologies/common/history.js';
import { customerWishesStore, wishesStore } from '../../topologies/wishlist-restock/index.js';
import type { Scope } from './auth.js';

const SEP = '\u0000';

export interface Freshness {
  readonly servedBy: string;
  readonly source: 'active' | 'standby';
  readonly partition: number;
  /** Largest event time the task has applied (null before any). */
  readonly streamTime: number | null;
  /** Standby only: changelog records not yet applied (null when unknown). */
  readonly lagRecords?: number | null;
}

export function freshnessOf(r: StateReader, servedBy: string): Freshness {
  const f: { -readonly [K in keyof Freshness]: Freshness[K] } = { servedBy, source: r.source, partition: r.partition, streamTime: Number.isFinite(r.streamTime) ? r.streamTime : null };
  if (r.source === 'standby') f.lagRecords = r.lagRecords ?? null;
  return f;
}

export interface ProfileView {
  readonly timezone?: string;
  readonly locale?: string;
  readonly consents: CustomerProfile['consents'];
  readonly segments: string[];
  readonly attributes: CustomerProfile['attributes'];
  readonly updatedAt: number;
  /** Only with the pii scope. */
  readonly email?: string;
  readonly pushTokens?: CustomerProfile['pushTokens'];
}

export interface BasketView {
  readonly items: BasketItem[];
  readonly value: Money | null;
  readonly lastActivityAt: number | null;
  readonly lastActivityType: string | null;
}

export interface CustomerView {
  readonly customerId: string;
  readonly profile: ProfileView | null;
  readonly basket: BasketView | null;
  readonly wishlist: { productId: string; sku: string | null }[];
  readonly browsing: { sessionStart: number; lastViewAt: number; views: number; products: { productId: string; views: number }[] } | null;
  /** Pending timers of this customer (null when the source cannot list them: a standby copy). */
  readonly timers: TimerInfo[] | null;
  readonly triggers: RecentTrigger[];
  readonly decisions: RecentDecision[];
}

/** Built by assignment in the answer's key order (conditional spreads cost several µs per request). */
function profileView(p: CustomerProfile, scopes: ReadonlySet<Scope>): ProfileView {
  const v: { -readonly [K in keyof ProfileView]: ProfileView[K] } = {} as ProfileView;
  if (p.timezone !== undefined) v.timezone = p.timezone;
  if (p.locale !== undefined) v.locale = p.locale;
  v.consents = p.consents;
  v.segments = p.segments;
  v.attributes = p.attributes;
  v.updatedAt = p.updatedAt;
  if (scopes.has('pii')) {
    if (p.email !== undefined) v.email = p.email;
    v.pushTokens = p.pushTokens;
  }
  return v;
}

/** The stores a customer view reads (in `customerView`'s order). */
export const CUSTOMER_STORES = [profilesStore, basketsStore, priceDropCustomers, customerWishesStore, sessionsStore, historyStore] as const;

/** The customer's state in this task, or undefined when the task knows nothing of the customer. */
export async function customerView(r: StateReader, customerId: string, scopes: ReadonlySet<Scope>): Promise<CustomerView | undefined> {
  // One multi-get across the six stores (a reader without it: one get per store).
  const [profile, basket, pdCustomer, wishes, session, history] = r.getMany
    ? await r.getMany(CUSTOMER_STORES, customerId)
    : await Promise.all([
        r.get(profilesStore, customerId),
        r.get(basketsStore, customerId),
        r.get(priceDropCustomers, customerId),
        r.get(customerWishesStore, customerId),
        r.get(sessionsStore, customerId),
        r.get(historyStore, customerId),
      ]);
  const timers = r.timers(customerId);
  const items = basket?.items ?? pdCustomer?.items;
  const known = [profile, basket, pdCustomer, wishes, session, history].some((x) => x !== undefined) || (timers?.length ?? 0) > 0;
  if (!known) return undefined;
  return {
    customerId,
    profile: profile ? profileView(profile, scopes) : null,
    basket: items
      ? { items, value: basketValue(items), lastActivityAt: basket?.lastActivityAt ?? null, lastActivityType: basket?.lastActivityType ?? null }
      : null,
    wishlist: wishes ?? [],
    browsing: session?.session
      ? {
          sessionStart: session.session.start,
          lastViewAt: session.session.lastViewAt,
          views: session.session.views,
          products: session.session.products.map((p) => ({ productId: p.productId, views: p.views })),
        }
      : null,
    timers: timers ?? null,
    triggers: history?.triggers ?? [],
    decisions: history?.decisions ?? [],
  };
}

export interface Page<T> {
  readonly count: number;
  readonly items: T[];
  /** Pass as `cursor` for the next page; null on the last page. */
  readonly nextCursor: string | null;
}

/**
 * A page of entries in key order: their total count, `limit` items after the cursor (a key), and the next
 * cursor. The count needs the whole range (the indexes keep no counters): linear in the watchers of one product.
 */
function pageOf<T>(entries: readonly { key: string; item: T }[], limit: number, cursor: string | undefined): Page<T> {
  const rest = cursor === undefined ? entries : entries.filter((e) => e.key > cursor);
  const items = rest.slice(0, limit);
  const last = items[items.length - 1];
  return { count: entries.length, items: items.map((e) => e.item), nextCursor: rest.length > limit && last ? last.key : null };
}

/** The entries of a prefix range, keyed by what follows the prefix. */
async function range<V>(r: StateReader, spec: KeyValueStoreSpec<V>, prefix: string): Promise<{ key: string; value: V }[]> {
  return (await r.scan(spec, { prefix })).map((e) => ({ key: e.key.slice(prefix.length), value: e.value }));
}

export interface SkuWatchers {
  readonly sku: string;
  /** From the catalog (null until a catalog event for the sku was seen). */
  readonly productId: string | null;
  readonly price: Money | null;
  readonly stock: number | null;
  /** Customers with the sku in their basket (the price-drop index). */
  readonly basket: Page<{ customerId: string; since: number; reference: Money | null }>;
}

/** Basket watchers of a sku, from the sku's task (the price-drop index). */
export async function skuWatchers(r: StateReader, sku: string, limit: number, cursor: string | undefined): Promise<SkuWatchers> {
  const info = await r.get(skusStore, sku);
  const watchers = await range(r, subscribersStore, `${sku}${SEP}`);
  const basket = pageOf(
    watchers.map(({ key, value }) => ({ key, item: { customerId: key, since: value.since, reference: value.reference ?? null } })),
    limit,
    cursor,
  );
  return { sku, productId: info?.productId ?? null, price: info?.price ?? null, stock: info?.stock ?? null, basket };
}

/** Wishlist watchers of a product's sku (and of the product in any size), from the product's task, in key order (sku, then customer). */
export async function productWishers(
  r: StateReader,
  productId: string,
  sku: string | null,
  limit: number,
  cursor: string | undefined,
): Promise<Page<{ customerId: string; sku: string | null; wishedAt: number }>> {
  // Membership keys: productId \0 sku|'' \0 customerId. A sku-less wish (any size) watches every sku.
  const prefix = `${productId}${SEP}`;
  const wishes = await range(r, wishesStore, prefix);
  const matching = wishes.filter(({ value: w }) => sku === null || w.sku === null || w.sku === sku);
  return pageOf(
    matching.map(({ key, value: w }) => ({ key, item: { customerId: w.customerId, sku: w.sku, wishedAt: w.wishedAt } })),
    limit,
    cursor,
  );
}
