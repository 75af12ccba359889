/**
 * An independent reference model of BASKET_ABANDONED / CHECKOUT_ABANDONED (DESIGN §3), used to cross-check what
 * the real engine produced on the same input. It shares no code with the topology: plain maps, no RocksDB, no
 * timer queue.
 *
 * Why a per-customer model is exact for input in event-time order: a customer's timer depends only on that
 * customer's events, and the engine fires every timer due at or before a record's time before processing the
 * record (and, at the end, every timer due by `until`). So "fire this customer's pending timer when their next
 * event is at or after it, and at the end" gives the same triggers as the global stream-time order. Late (out of
 * order) events and state TTL expiry are not modelled; the callers' inputs have neither (streams < 30 days).
 */
import type { BasketEvent, OrderEvent, TriggerType } from '../../schemas/contract.js';

export interface OracleParams {
  readonly inactivityGap: number;
  readonly reentryCooldown: number;
}

export interface ExpectedTrigger {
  readonly customerId: string;
  readonly type: TriggerType;
  readonly at: number;
  readonly causedByEventId: string;
}

interface CustomerModel {
  /** sku → quantity */
  readonly items: Map<string, number>;
  lastActivityType: BasketEvent['type'];
  lastEventId: string;
  lastActivityAt: number;
  timerAt: number | undefined;
  lastSentAt: number | undefined;
}

export class AbandonmentOracle {
  readonly #p: OracleParams;
  readonly #customers = new Map<string, CustomerModel>();
  readonly sent: ExpectedTrigger[] = [];
  readonly suppressed: ExpectedTrigger[] = [];
  /** Events that arrived earlier than the customer's last activity (not modelled; should stay 0). */
  outOfOrder = 0;

  constructor(params: OracleParams) {
    this.#p = params;
  }

  basket(e: BasketEvent): void {
    let c = this.#customers.get(e.customerId);
    if (c) this.#fireIfDue(e.customerId, c, e.occurredAt);
    else {
      c = { items: new Map(), lastActivityType: e.type, lastEventId: e.eventId, lastActivityAt: e.occurredAt, timerAt: undefined, lastSentAt: undefined };
      this.#customers.set(e.customerId, c);
    }
    if (e.occurredAt < c.lastActivityAt) this.outOfOrder++;
    if (e.sku !== undefined) {
      const have = c.items.get(e.sku);
      switch (e.type) {
        case 'ITEM_ADDED':
          c.items.set(e.sku, (have ?? 0) + (e.quantity ?? 1));
          break;
        case 'ITEM_REMOVED':
          if (have !== undefined) {
            if (e.quantity !== undefined && e.quantity < have) c.items.set(e.sku, have - e.quantity);
            else c.items.delete(e.sku);
          }
          break;
        case 'QUANTITY_CHANGED':
          if ((e.quantity ?? 0) <= 0) c.items.delete(e.sku);
          else c.items.set(e.sku, e.quantity ?? 0);
          break;
        default:
          break;
      }
    }
    c.lastActivityAt = e.occurredAt;
    c.lastActivityType = e.type;
    c.lastEventId = e.eventId;
    c.timerAt = c.items.size > 0 ? e.occurredAt + this.#p.inactivityGap : undefined;
  }

  order(e: OrderEvent): void {
    const c = this.#customers.get(e.customerId);
    if (!c) return;
    this.#fireIfDue(e.customerId, c, e.occurredAt);
    c.timerAt = undefined;
    for (const it of e.items) c.items.delete(it.sku);
  }

  /** Fires what is due by `until` (the replay's --until). */
  finish(until: number): void {
    for (const [id, c] of this.#customers) this.#fireIfDue(id, c, until);
  }

  #fireIfDue(customerId: string, c: CustomerModel, now: number): void {
    if (c.timerAt === undefined || c.timerAt > now) return;
    const at = c.timerAt;
    c.timerAt = undefined;
    if (c.items.size === 0) return;
    const t: ExpectedTrigger = {
      customerId,
      type: c.lastActivityType === 'CHECKOUT_STARTED' ? 'CHECKOUT_ABANDONED' : 'BASKET_ABANDONED',
      at,
      causedByEventId: c.lastEventId,
    };
    if (c.lastSentAt !== undefined && at - c.lastSentAt < this.#p.reentryCooldown) this.suppressed.push(t);
    else {
      c.lastSentAt = at;
      this.sent.push(t);
    }
  }
}

/** Identity of a trigger for comparing the model with the engine. */
export const triggerKey = (t: { customerId: string; type: string; at: number; causedByEventId: string }): string =>
  `${t.customerId}\u0000${t.type}\u0000${t.at}\u0000${t.causedByEventId}`;

export interface Comparison {
  readonly expected: number;
  readonly actual: number;
  readonly matching: number;
  /** Up to 5 examples each way. */
  readonly missing: readonly string[];
  readonly unexpected: readonly string[];
}

export function compareTriggers(expected: readonly ExpectedTrigger[], actualKeys: readonly string[]): Comparison {
  const want = new Set(expected.map(triggerKey));
  const got = new Set(actualKeys);
  let matching = 0;
  const unexpected: string[] = [];
  for (const k of got) {
    if (want.has(k)) matching++;
    else if (unexpected.length < 5) unexpected.push(k.replaceAll('\u0000', ' | '));
  }
  const missing: string[] = [];
  for (const k of want) {
    if (missing.length >= 5) break;
    if (!got.has(k)) missing.push(k.replaceAll('\u0000', ' | '));
  }
  return { expected: want.size, actual: got.size, matching, missing, unexpected };
}

export function formatComparison(label: string, c: Comparison): string {
  const ok = c.expected === c.actual && c.matching === c.expected;
  const lines = [
    `${label}: ${ok ? 'AGREES' : 'DIFFERS'} (expected ${c.expected}, engine ${c.actual}, identical ${c.matching})`,
    ...c.missing.map((m) => `  missing from engine output: ${m}`),
    ...c.unexpected.map((m) => `  not expected by the model: ${m}`),
  ];
  return lines.join('\n');
}
