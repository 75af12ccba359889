/**
 * The customer's recent triggers and decisions, for the query API (`GET /v1/customers/:id`): the last stage
 * before crm.triggers.v1 and crm.trigger-audit.v1, in the customer's own task. It keeps the newest
 * {@link MAX_TRIGGERS} triggers and {@link MAX_DECISIONS} audit decisions per customer and passes every record
 * on unchanged to its sink. A profile tombstone on crm.customers.v1 erases the customer here too (and, when the
 * guards are off, everywhere: it is then the only reader of that topic).
 */
import { jsonCodec, keyValueStore, NOT_LOADED, type KeyValueStore, type Processor, type ProcessorContext, type StreamRecord, type TopologyBuilder } from '../../src/engine/api/index.js';
import type { CustomerProfile, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { AUDIT_TOPIC, TRIGGERS_TOPIC } from './campaign.js';

export const HISTORY = 'history';
const CUSTOMERS_TOPIC = 'crm.customers.v1';
export const MAX_TRIGGERS = 10;
export const MAX_DECISIONS = 25;
const DAY = 86_400_000;

export type RecentTrigger = Pick<Trigger, 'triggerId' | 'type' | 'occurredAt' | 'campaignId' | 'variant' | 'channels' | 'causedBy' | 'payload' | 'expiresAt'> & {
  readonly rule: string;
};
export type RecentDecision = Pick<TriggerAudit, 'auditId' | 'triggerId' | 'type' | 'occurredAt' | 'campaignId' | 'variant' | 'decision' | 'reason' | 'detail'>;

export interface CustomerHistory {
  /** Newest first. */
  triggers: RecentTrigger[];
  /** Newest first. */
  decisions: RecentDecision[];
}

export const historyStore = keyValueStore('history.recent', jsonCodec<CustomerHistory>(), {
  keyedByRecordKey: true,
  ttlMs: 30 * DAY,
  doc: `customerId → the last ${MAX_TRIGGERS} triggers and ${MAX_DECISIONS} guard decisions (query API)`,
});

const isAudit = (v: Trigger | TriggerAudit): v is TriggerAudit => 'auditId' in v;

/** Inserts newest-first by time (ties: later arrival first), dropping an equal id and keeping `max`. */
function insert<T extends { occurredAt: number }>(list: T[], item: T, same: (a: T) => boolean, max: number): T[] {
  const rest = list.filter((x) => !same(x));
  const i = rest.findIndex((x) => x.occurredAt <= item.occurredAt);
  if (i < 0) rest.push(item);
  else rest.splice(i, 0, item);
  return rest.slice(0, max);
}

class HistoryProcessor implements Processor<Trigger | TriggerAudit | CustomerProfile | null, Trigger | TriggerAudit> {
  #ctx!: ProcessorContext<Trigger | TriggerAudit>;

  init(ctx: ProcessorContext<Trigger | TriggerAudit>): void {
    this.#ctx = ctx;
  }

  process(record: StreamRecord<Trigger | TriggerAudit | CustomerProfile | null>): void | Promise<void> {
    if (record.topic === CUSTOMERS_TOPIC) {
      if (record.value === null && record.key !== null) this.#ctx.eraseKey(record.key);
      return;
    }
    const v = record.value as Trigger | TriggerAudit | null;
    if (v === null) return;
    // Without a promise when the customer's history is in memory, else after reading it.
    const store = this.#ctx.getStore(historyStore);
    const stored = store.peek(v.customerId);
    if (stored !== NOT_LOADED) return this.#record(record, v, store, stored);
    return store.get(v.customerId).then((h) => this.#record(record, v, store, h));
  }

  #record(record: StreamRecord<unknown>, v: Trigger | TriggerAudit, store: KeyValueStore<CustomerHistory>, stored: CustomerHistory | undefined): void {
    const h = stored ?? { triggers: [], decisions: [] };
    if (isAudit(v)) {
      const d: RecentDecision = {
        auditId: v.auditId,
        triggerId: v.triggerId,
        type: v.type,
        occurredAt: v.occurredAt,
        campaignId: v.campaignId,
        variant: v.variant,
        decision: v.decision,
        reason: v.reason,
        ...(v.detail === undefined ? {} : { detail: v.detail }),
      };
      h.decisions = insert(h.decisions, d, (x) => x.auditId === d.auditId, MAX_DECISIONS);
      store.put(v.customerId, h);
      this.#ctx.forward({ key: v.customerId, value: v, timestamp: record.timestamp }, 'history.audit');
      return;
    }
    const t: RecentTrigger = {
      triggerId: v.triggerId,
      type: v.type,
      occurredAt: v.occurredAt,
      campaignId: v.campaignId,
      variant: v.variant,
      channels: v.channels,
      causedBy: v.causedBy,
      payload: v.payload,
      expiresAt: v.expiresAt,
      rule: v.explanation.rule,
    };
    h.triggers = insert(h.triggers, t, (x) => x.triggerId === t.triggerId, MAX_TRIGGERS);
    store.put(v.customerId, h);
    this.#ctx.forward({ key: v.customerId, value: v, timestamp: record.timestamp }, 'history.triggers');
  }
}

/**
 * Adds the history stage with the trigger and audit sinks; returns its node name, the `output` the guards (or,
 * without guards, the topologies) forward to.
 */
export function addHistory(builder: TopologyBuilder): string {
  const customers = builder.ensureSource(CUSTOMERS_TOPIC);
  builder
    .addProcessor(HISTORY, () => new HistoryProcessor(), [customers], 'recent triggers and decisions per customer (query API); passes both on')
    .addStore(historyStore, [HISTORY])
    .addSink('history.triggers', TRIGGERS_TOPIC, [HISTORY])
    .addSink('history.audit', AUDIT_TOPIC, [HISTORY]);
  return HISTORY;
}
