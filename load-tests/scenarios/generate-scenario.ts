/**
 * Writes load-tests/scenarios/all-triggers.ndjson: a small, hand-designed shop morning that produces every
 * trigger type through the guards, plus the guard decisions (no consent, quiet hours held then released).
 *
 *   npx tsx load-tests/scenarios/generate-scenario.ts
 *   node bin/kairos.js replay --input load-tests/scenarios/all-triggers.ndjson --audit audit.ndjson
 *
 * Every value is typed by the contract and validated before it is written.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BasketEvent, CatalogEvent, CustomerProfile, OrderEvent, PageviewEvent, TopicName, TopicValue, WishlistEvent } from '../../schemas/contract.js';
import { TOPICS } from '../../schemas/contract.js';
import { validateValue } from '../../src/serde/validate.js';

const T0 = Date.UTC(2026, 10, 20, 8, 0, 0); // Friday 09:00 in Berlin
const MIN = 60_000;
const eur = (amount: number) => ({ amount, currency: 'EUR' });

interface Line {
  readonly at: number;
  readonly seq: number;
  readonly topic: TopicName;
  readonly value: TopicValue<TopicName>;
}
const lines: Line[] = [];
let seq = 0;
function emit<T extends TopicName>(topic: T, value: TopicValue<T>, at: number): void {
  const v = validateValue(topic, value);
  if (!v.ok) throw new Error(`invalid ${topic} value: ${JSON.stringify(v.errors)}`);
  lines.push({ at, seq: seq++, topic, value });
}

const profile = (customerId: string, timezone: string, consent = true): CustomerProfile => ({
  customerId,
  updatedAt: T0 - 24 * 60 * MIN,
  timezone,
  locale: 'de-DE',
  consents: { push: consent, email: consent, onsite: consent },
  pushTokens: consent ? [{ token: `fcm-${customerId}`, platform: 'android' }] : [],
  email: `${customerId}@example.com`,
  segments: ['newsletter'],
  attributes: { clv: 420 },
});
let ev = 0;
const id = (p: string) => `${p}-${++ev}`;
const basket = (customerId: string, m: number, type: BasketEvent['type'], sku?: string, price?: number): void => {
  const e: BasketEvent = {
    eventId: id('b'),
    customerId,
    occurredAt: T0 + m * MIN,
    type,
    ...(sku === undefined ? {} : { sku, productId: sku.split('-')[0] as string, quantity: 1 }),
    ...(price === undefined ? {} : { unitPrice: eur(price) }),
  };
  emit('shop.basket.v1', e, e.occurredAt);
};
const view = (customerId: string, m: number, productId: string): void => {
  const e: PageviewEvent = { eventId: id('v'), customerId, occurredAt: T0 + m * MIN, productId };
  emit('shop.pageviews.v1', e, e.occurredAt);
};
const catalog = (sku: string, m: number, change: { price?: number; stock?: number }): void => {
  const e: CatalogEvent = {
    eventId: id('c'),
    sku,
    productId: sku.split('-')[0] as string,
    occurredAt: T0 + m * MIN,
    type: change.price === undefined ? 'STOCK_CHANGED' : 'PRICE_CHANGED',
    ...(change.price === undefined ? {} : { price: eur(change.price) }),
    ...(change.stock === undefined ? {} : { stock: change.stock }),
  };
  emit('shop.catalog.v1', e, e.occurredAt);
};
const wish = (customerId: string, m: number, productId: string, sku?: string): void => {
  const e: WishlistEvent = { eventId: id('w'), customerId, occurredAt: T0 + m * MIN, type: 'ITEM_ADDED', productId, ...(sku === undefined ? {} : { sku }) };
  emit('shop.wishlist.v1', e, e.occurredAt);
};
const order = (customerId: string, m: number, sku: string, price: number): void => {
  const e: OrderEvent = {
    eventId: id('o'),
    orderId: id('order'),
    customerId,
    occurredAt: T0 + m * MIN,
    items: [{ sku, productId: sku.split('-')[0] as string, quantity: 1, unitPrice: eur(price) }],
  };
  emit('shop.orders.v1', e, e.occurredAt);
};

for (const [c, tz, consent] of [
  ['anna', 'Europe/Berlin', true],
  ['ben', 'Europe/Paris', true],
  ['carl', 'Europe/Berlin', true],
  ['dora', 'Europe/Vienna', true],
  ['emma', 'Europe/Berlin', true],
  ['frank', 'Europe/Berlin', false],
  ['yuki', 'Asia/Tokyo', true],
  ['kenji', 'Asia/Tokyo', true],
  ['gina', 'Europe/Berlin', true],
] as const) {
  emit('crm.customers.v1', profile(c, tz, consent), T0 - 24 * 60 * MIN);
}

// The catalog knows the jacket's price and that the boots are sold out.
catalog('jacket-m', 0, { price: 12999 });
catalog('boots-38', 0, { stock: 0 });

// BASKET_ABANDONED: anna adds a scarf and leaves.
view('anna', 1, 'scarf');
basket('anna', 2, 'ITEM_ADDED', 'scarf-one', 2499);
// CHECKOUT_ABANDONED: ben starts the checkout and leaves.
basket('ben', 3, 'ITEM_ADDED', 'sneaker-42', 8999);
basket('ben', 6, 'CHECKOUT_STARTED');
// BASKET_PRICE_DROP: carl has the jacket in his basket at 129.99; 30 minutes later it costs 99.99 (−23 %).
basket('carl', 4, 'ITEM_ADDED', 'jacket-m', 12999);
catalog('jacket-m', 34, { price: 9999 });
// WISHLIST_BACK_IN_STOCK: dora wishes the boots in any size; size 38 comes back (5 in stock).
wish('dora', 5, 'boots');
catalog('boots-38', 40, { stock: 5 });
// BROWSE_ABANDONED: emma looks at three products and buys nothing.
view('emma', 10, 'lamp');
view('emma', 14, 'rug');
view('emma', 20, 'vase');
view('emma', 22, 'lamp');
// Guard: frank has no consent; his abandoned basket is audited, not sent.
basket('frank', 8, 'ITEM_ADDED', 'mug-1', 1299);
// Guards: yuki (Tokyo) abandons a basket at 18:15 local: sent. Kenji (Tokyo) adds at 22:35 local; his
// abandonment at 23:35 local falls in the quiet hours: HELD until 08:00 Tokyo (23:00 UTC), then SENT.
basket('yuki', 15, 'ITEM_ADDED', 'cap-1', 1999);
basket('kenji', 335, 'ITEM_ADDED', 'kite-1', 4999);
// Gina buys what she added: no abandonment.
basket('gina', 12, 'ITEM_ADDED', 'belt-1', 3999);
order('gina', 25, 'belt-1', 3999);
// Clock: traffic of other customers moves stream time past every timer and kenji's quiet hours (23:00 UTC).
for (let m = 30; m <= 930; m += 60) view('zoe', m, 'socks');

lines.sort((a, b) => a.at - b.at || a.seq - b.seq);
const out = lines.map((l) => JSON.stringify({ topic: l.topic, key: String((l.value as Record<string, unknown>)[TOPICS[l.topic].keyField]), value: l.value })).join('\n') + '\n';
const path = join(import.meta.dirname, 'all-triggers.ndjson');
writeFileSync(path, out);
console.log(`wrote ${path}: ${lines.length} lines`);
