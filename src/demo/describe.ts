/**
 * One line per demo decision that says what happened and why: for a price drop the sku, old → new price and the
 * drop; for a restock the sku and its stock; for browse the products viewed; for abandonment the basket and the
 * rule. Read from the trigger's payload and explanation (the audit record carries the explanation only).
 */
import type { Trigger, TriggerAudit } from '../../schemas/contract.js';

interface Money {
  readonly amount: number;
  readonly currency: string;
}

const isMoney = (v: unknown): v is Money =>
  typeof v === 'object' && v !== null && typeof (v as Money).amount === 'number' && typeof (v as Money).currency === 'string';

const record = (v: unknown): Readonly<Record<string, unknown>> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});

/** Minor units in the currency's own decimals: 12999 EUR → "129.99 EUR". */
export function formatMoney(m: Money): string {
  let digits = 2;
  try {
    digits = new Intl.NumberFormat('en', { style: 'currency', currency: m.currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    // Not a currency Intl knows: two decimals.
  }
  return `${(m.amount / 10 ** digits).toFixed(digits)} ${m.currency}`;
}

/** "15s", "90m", "2h" from milliseconds, for rule parameters. */
function formatDuration(ms: unknown): string {
  if (typeof ms !== 'number') return String(ms);
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

const time = (epochMs: number): string => new Date(epochMs).toISOString().slice(11, 19);

/** What a decision is about, from its type, explanation and (for a trigger) payload. */
function what(type: Trigger['type'], explanation: Trigger['explanation'], payload: Readonly<Record<string, unknown>>): string {
  const observed = record(explanation.observed);
  const params = record(explanation.params);
  switch (type) {
    case 'BASKET_PRICE_DROP': {
      const sku = typeof payload.sku === 'string' ? payload.sku : 'a basket item';
      const before = isMoney(payload.oldPrice) ? payload.oldPrice : isMoney(observed.referencePrice) ? observed.referencePrice : undefined;
      const after = isMoney(payload.newPrice) ? payload.newPrice : isMoney(observed.newPrice) ? observed.newPrice : undefined;
      const pct = typeof observed.dropPercent === 'number' ? ` (−${observed.dropPercent.toFixed(1)} %)` : '';
      const prices = before && after ? `${formatMoney(before)} → ${formatMoney(after)}${pct}` : 'price dropped';
      return `${sku} in the basket: ${prices}, ≥ ${String(params.minDropPercent ?? '?')} % below its price when added`;
    }
    case 'WISHLIST_BACK_IN_STOCK': {
      const sku = typeof payload.sku === 'string' ? payload.sku : typeof observed.wishedSku === 'string' ? observed.wishedSku : 'a wished product';
      const stock = typeof payload.stock === 'number' ? payload.stock : observed.stock;
      const was = typeof observed.previousStock === 'number' ? ` (was ${observed.previousStock})` : '';
      return `${sku} on the wishlist is back in stock: ${String(stock)} in stock${was}`;
    }
    case 'BROWSE_ABANDONED': {
      const products = Array.isArray(payload.products)
        ? payload.products.map((p) => {
            const r = record(p);
            return `${String(r.productId)}${typeof r.views === 'number' && r.views > 1 ? ` ×${r.views}` : ''}`;
          })
        : [];
      const viewed = products.length > 0 ? products.join(', ') : `${String(observed.distinctProducts ?? '?')} products`;
      return `viewed ${viewed}, added none to the basket; session over after ${formatDuration(params.sessionGap)} without a view`;
    }
    case 'BASKET_ABANDONED':
    case 'CHECKOUT_ABANDONED': {
      const items = Array.isArray(payload.items) ? payload.items.map((i) => String(record(i).sku)) : [];
      const count = items.length > 0 ? items.length : typeof observed.itemCount === 'number' ? observed.itemCount : 0;
      const value = isMoney(payload.basketValue) ? payload.basketValue : isMoney(observed.basketValue) ? observed.basketValue : undefined;
      const basket = `${count} item${count === 1 ? '' : 's'}${value ? ` worth ${formatMoney(value)}` : ''}${items.length > 0 ? ` (${items.join(', ')})` : ''}`;
      const start = type === 'CHECKOUT_ABANDONED' ? 'checkout started with' : 'basket with';
      return `${start} ${basket}, then no basket activity and no order for ${formatDuration(params.inactivityGap)}`;
    }
  }
}

/** A sent trigger: time, SENT, type, customer, what and why, channels. */
export function describeTrigger(t: Trigger): string {
  return `${time(t.occurredAt)}  ${'SENT'.padEnd(10)} ${t.type.padEnd(22)} ${t.customerId}  ${what(t.type, t.explanation, record(t.payload))}  → ${t.channels.join('+')}\n`;
}

/**
 * A decision not to send (or not yet): time, decision, type, customer, what, and the guard's reason. An audit
 * carries no payload: `skuOf` names the sku of the catalog event that caused it, where the caller knows it.
 */
export function describeAudit(a: TriggerAudit, skuOf: (eventId: string) => string | undefined = () => undefined): string {
  const sku = skuOf(a.causedBy.eventId);
  const payload = sku === undefined ? {} : { sku };
  return `${time(a.occurredAt)}  ${a.decision.padEnd(10)} ${a.type.padEnd(22)} ${a.customerId}  ${what(a.type, a.explanation, payload)}  ✗ ${a.reason}${a.detail ? `: ${a.detail}` : ''}\n`;
}
