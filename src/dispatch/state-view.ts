/**
 * The dispatcher's own view of what it needs besides the trigger, kept in Redis so every instance shares it:
 *
 * - profiles (`kairos:profile:<customerId>`, JSON of the crm.customers.v1 value; a tombstone deletes it), fed by
 *   the dispatcher consuming crm.customers.v1 (a tombstone also removes the customer's onsite placements).
 *   Triggers carry no addresses, so this is where push tokens,
 *   email, consents, locale and time zone come from; a token FCM rejects is also dropped here at once.
 * - the latest catalog price and stock per sku (`kairos:catalog:<sku>`, a hash), fed from shop.catalog.v1, for
 *   the "does the trigger's reason still hold" check at send time. Older events never overwrite newer ones.
 */
import type { Redis } from 'ioredis';
import type { CatalogEvent, CustomerProfile, Trigger } from '../../schemas/contract.js';
import { redisScript } from './redis-client.js';

export const profileKey = (customerId: string): string => `kairos:profile:${customerId}`;
export const catalogKey = (sku: string): string => `kairos:catalog:${sku}`;
/** Onsite placements of a customer (written by onsite-redis.ts); erased with the profile. */
export const placementsKey = (customerId: string): string => `kairos:placements:${customerId}`;

// Writes a profile unless the stored one is newer (a compacted topic re-read from the start must not roll back).
const PUT_PROFILE = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, old = pcall(cjson.decode, cur)
  if ok and type(old) == 'table' and tonumber(old.updatedAt) and tonumber(old.updatedAt) > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`;

const PUT_CATALOG = `
local at = tonumber(ARGV[1])
if ARGV[2] ~= '' then
  local prev = tonumber(redis.call('HGET', KEYS[1], 'priceAt') or '-1')
  if at >= prev then redis.call('HSET', KEYS[1], 'amount', ARGV[2], 'currency', ARGV[3], 'priceAt', ARGV[1]) end
end
if ARGV[4] ~= '' then
  local prev = tonumber(redis.call('HGET', KEYS[1], 'stockAt') or '-1')
  if at >= prev then redis.call('HSET', KEYS[1], 'stock', ARGV[4], 'stockAt', ARGV[1]) end
end
return 1
`;

const DROP_TOKEN = `
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local p = cjson.decode(cur)
local kept = {}
local removed = 0
for _, t in ipairs(p.pushTokens or {}) do
  if t.token == ARGV[1] then removed = 1 else table.insert(kept, t) end
end
if removed == 0 then return 0 end
if #kept == 0 then p.pushTokens = cjson.decode('[]') else p.pushTokens = kept end
redis.call('SET', KEYS[1], cjson.encode(p))
return 1
`;

const putProfileScript = redisScript('kairosPutProfile', 1, PUT_PROFILE);
const putCatalogScript = redisScript('kairosPutCatalog', 1, PUT_CATALOG);
const dropTokenScript = redisScript('kairosDropToken', 1, DROP_TOKEN);

export async function putProfile(redis: Redis, customerId: string, profile: CustomerProfile | null): Promise<void> {
  // A tombstone erases the customer (GDPR): the profile and the placements waiting for them.
  if (profile === null) await redis.del(profileKey(customerId), placementsKey(customerId));
  else await putProfileScript(redis, profileKey(customerId), JSON.stringify(profile), String(profile.updatedAt));
}

export async function getProfile(redis: Redis, customerId: string): Promise<CustomerProfile | undefined> {
  return parseProfile(await redis.get(profileKey(customerId)));
}

/** A stored profile (`kairos:profile:<customerId>`) as read by GET or MGET. */
export const parseProfile = (raw: string | null | undefined): CustomerProfile | undefined => (raw == null ? undefined : (JSON.parse(raw) as CustomerProfile));

/** Removes a token FCM rejected from the stored profile (the CRM drops it too, from the feedback topic). */
export async function dropPushToken(redis: Redis, customerId: string, token: string): Promise<boolean> {
  return (await dropTokenScript(redis, profileKey(customerId), token)) === 1;
}

export async function putCatalog(redis: Redis, e: CatalogEvent): Promise<void> {
  await putCatalogScript(redis, catalogKey(e.sku), String(e.occurredAt), e.price ? String(e.price.amount) : '', e.price?.currency ?? '', e.stock === undefined ? '' : String(e.stock));
}

export interface CatalogState {
  readonly price?: { readonly amount: number; readonly currency: string };
  readonly stock?: number;
}

export async function getCatalog(redis: Redis, sku: string): Promise<CatalogState> {
  const h = await redis.hgetall(catalogKey(sku));
  return {
    ...(h.amount !== undefined && h.currency !== undefined ? { price: { amount: Number(h.amount), currency: h.currency } } : {}),
    ...(h.stock !== undefined ? { stock: Number(h.stock) } : {}),
  };
}

export type Staleness = { readonly stale: false; readonly live: CatalogState | undefined } | { readonly stale: true; readonly detail: string; readonly live: CatalogState };

interface MoneyLike {
  readonly amount: number;
  readonly currency: string;
}
const isMoney = (x: unknown): x is MoneyLike =>
  typeof x === 'object' && x !== null && typeof (x as MoneyLike).amount === 'number' && typeof (x as MoneyLike).currency === 'string';

/**
 * Whether the trigger's reason still holds with the live catalog. A BASKET_PRICE_DROP is stale when the sku is
 * sold out or its live price is no longer below the reference price the drop was measured from (`oldPrice`):
 * there is no drop left to tell. A live price above the notified one but still below the reference is a smaller
 * drop and is sent, showing the live price. A WISHLIST_BACK_IN_STOCK is stale when the live stock is 0 again.
 * Unknown live state counts as "still holds" (the engine saw it a moment ago). Other types have no live rule.
 */
export async function checkStaleness(redis: Redis, trigger: Trigger): Promise<Staleness> {
  const sku = trigger.payload.sku;
  if (typeof sku !== 'string' || (trigger.type !== 'BASKET_PRICE_DROP' && trigger.type !== 'WISHLIST_BACK_IN_STOCK')) return { stale: false, live: undefined };
  const live = await getCatalog(redis, sku);
  if (trigger.type === 'BASKET_PRICE_DROP') {
    const reference = trigger.payload.oldPrice;
    if (live.stock === 0) return { stale: true, detail: `sku ${sku} is sold out`, live };
    if (isMoney(reference) && live.price && live.price.currency === reference.currency && live.price.amount >= reference.amount) {
      return { stale: true, detail: `sku ${sku} costs ${live.price.amount} ${live.price.currency} again, not below the reference ${reference.amount}`, live };
    }
    return { stale: false, live };
  }
  if (live.stock === 0) return { stale: true, detail: `sku ${sku} is out of stock again`, live };
  return { stale: false, live };
}
