/**
 * One topology, three runners (DESIGN §4): the replay runner and the Kafka runner must agree on what fires.
 *
 * A deterministic shop history (about a hundred customers, a few hundred basket and order events over six
 * simulated hours, event times well in the past) goes once through `kairos replay` and once through a
 * KafkaRunner against librdkafka's mock cluster; the triggers and the audit records must be the same.
 *
 * Two differences between the runners are bridged honestly rather than papered over:
 * - Stream time. Replay has one stream time; in Kafka every partition (task) has its own, and a quiet task
 *   follows the wall clock after `idleAdvanceMs`, which would fire timers replay (without --until) never
 *   fires. So the runner gets an idle advance far beyond the test, and the input ends with one "clock" event
 *   per partition at T_END (a BASKET_VIEWED of a dummy customer with an empty basket, sent explicitly to each
 *   of the 4 partitions; replay reads the same four lines at the end). Every task's stream time then reaches
 *   T_END, and both runners must fire exactly the timers due by T_END.
 * - Where a trigger came from. `causedBy.partition/offset` are Kafka coordinates in one runner and line
 *   numbers in the other; only `causedBy.eventId` (and topic) are compared.
 *
 * Kafka reads shop.basket.v1 and shop.orders.v1 independently; whether an order is seen before the basket
 * events that precede it in event time is up to the runner. The test checks the outcome, not the mechanism.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Partitioners, type Message, type PartitionMetadata } from 'kafkajs';
import type { BasketEvent, OrderEvent, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { KafkaRunner } from '../../src/kafka/runner.js';
import { JsonSerde } from '../../src/kafka/serde.js';
import { tempDir } from '../helpers.js';
import { produce, silent, testKafka } from '../support/kafka.js';
import { groupLag, outputCollector, viaReplay as replayInputs, type Outputs } from '../support/equivalence.js';
import type { Input as ReplayInput } from '../support/shop-history.js';
import { mulberry32 } from '../../src/util/prng.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
/** Well in the past, so no event time is anywhere near the wall clock. */
const T0 = Date.UTC(2026, 5, 1, 8, 0, 0);
const GAP = 30 * MIN;
const COOLDOWN = 2 * HOUR;
/** The clock events' time: every timer due by then fires in both runners, none due later. */
const T_END = T0 + 7 * HOUR;
const PARTITIONS = 4;
const CAMPAIGNS = { guards: { enabled: false }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '30m', reentryCooldown: '2h' } } } };
const BASKET = 'shop.basket.v1';
const ORDERS = 'shop.orders.v1';
const CLOCK_CUSTOMER = 'zz-clock';
/** The runner has caught up and nothing new was output for this long: done. */
const QUIET_MS = 3000;
const KAFKA_TIMEOUT_MS = 120_000;

let cluster: MockCluster;
before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  await cluster.stop();
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const iso = (ms: number): string => new Date(ms).toISOString().slice(11, 19);

// ---------------------------------------------------------------------------------------------------------
// The shop history

type Input = { readonly topic: typeof BASKET; readonly value: BasketEvent } | { readonly topic: typeof ORDERS; readonly value: OrderEvent };

/** A small, seeded PRNG: the same history on every run. */
const prng = mulberry32;

const price = (sku: number) => ({ amount: 499 + sku * 250, currency: 'EUR' });

/** One customer's events, on the customer's own (strictly increasing) clock. */
class Shopper {
  readonly events: Input[] = [];
  #t: number;
  #n = 0;

  constructor(
    readonly id: string,
    readonly scenario: string,
    start: number,
    private readonly rnd: () => number,
  ) {
    this.#t = start;
  }

  get time(): number {
    return this.#t;
  }

  /** Lets between `min` and `max` minutes pass (millisecond resolution, never 0). */
  wait(min: number, max: number): this {
    this.#t += Math.max(1, Math.round((min + this.rnd() * (max - min)) * MIN));
    return this;
  }

  basket(type: BasketEvent['type'], sku?: number, quantity?: number): this {
    this.events.push({
      topic: BASKET,
      value: {
        eventId: `${this.id}-b${++this.#n}`,
        customerId: this.id,
        occurredAt: this.#t,
        type,
        ...(sku === undefined ? {} : { sku: `sku-${sku}`, productId: `p-${sku}` }),
        ...(quantity === undefined ? {} : { quantity }),
        ...(sku !== undefined && (type === 'ITEM_ADDED' || type === 'QUANTITY_CHANGED') ? { unitPrice: price(sku) } : {}),
      },
    });
    return this;
  }

  add(sku: number, quantity = 1): this {
    return this.basket('ITEM_ADDED', sku, quantity);
  }

  order(skus: number[]): this {
    const n = ++this.#n;
    this.events.push({
      topic: ORDERS,
      value: {
        eventId: `${this.id}-o${n}`,
        orderId: `order-${this.id}-${n}`,
        customerId: this.id,
        occurredAt: this.#t,
        items: skus.map((sku) => ({ sku: `sku-${sku}`, productId: `p-${sku}`, quantity: 1, unitPrice: price(sku) })),
      },
    });
    return this;
  }
}

interface Scenario {
  /** Start window in minutes after T0. */
  readonly start: readonly [number, number];
  /** Abandonment triggers sent and suppressed by cooldown (in event time, by T_END): the intended outcome. */
  readonly sent: number;
  readonly suppressed: number;
  readonly play: (s: Shopper, sku: () => number) => void;
}

const SCENARIOS: Record<string, Scenario> = {
  // Items added, then nothing: BASKET_ABANDONED GAP after the last add.
  abandoned: { start: [0, 300], sent: 1, suppressed: 0, play: (s, sku) => s.add(sku()).wait(1, 8).add(sku(), 2).wait(1, 8).add(sku()) },
  // Checkout started, then nothing: CHECKOUT_ABANDONED.
  'checkout-abandoned': { start: [0, 300], sent: 1, suppressed: 0, play: (s, sku) => s.add(sku()).wait(2, 10).add(sku()).wait(2, 10).basket('CHECKOUT_STARTED') },
  // Checkout, then an order for everything within the gap: nothing.
  'checked-out': {
    start: [0, 300],
    sent: 0,
    suppressed: 0,
    play: (s, sku) => {
      const a = sku();
      const b = sku() + 100;
      s.add(a).wait(1, 5).add(b).wait(1, 5).basket('CHECKOUT_STARTED').wait(2, 20).order([a, b]);
    },
  },
  // An order for one of two items cancels the timer; the rest fires only after new activity.
  'partial-order-then-back': {
    start: [0, 240],
    sent: 1,
    suppressed: 0,
    play: (s, sku) => {
      const a = sku();
      const b = sku() + 100;
      s.add(a).wait(1, 5).add(b).wait(1, 10).order([a]).wait(40, 90).add(sku() + 200);
    },
  },
  // Everything removed again (ITEM_REMOVED, QUANTITY_CHANGED to 0): an empty basket fires nothing.
  emptied: {
    start: [0, 300],
    sent: 0,
    suppressed: 0,
    play: (s, sku) => {
      const a = sku();
      const b = sku() + 100;
      s.add(a).wait(1, 10).add(b, 2).wait(1, 10).basket('ITEM_REMOVED', a).wait(1, 10).basket('QUANTITY_CHANGED', b, 0);
    },
  },
  // Abandoned; back within the cooldown and abandoned again (suppressed, audited); back after it (sent).
  cooldown: {
    start: [0, 90],
    sent: 2,
    suppressed: 1,
    play: (s, sku) => {
      s.add(sku()); // fires at +30 min
      s.wait(35, 50).add(sku() + 100); // fires at +65..+80 min: within the 2 h cooldown
      s.wait(100, 130).add(sku() + 200); // fires at +165.. min: after it
    },
  },
  // Abandoned (fires at +30 min), bought much later: the trigger stands.
  'ordered-after-abandoning': {
    start: [0, 240],
    sent: 1,
    suppressed: 0,
    play: (s, sku) => {
      const a = sku();
      const b = sku() + 100;
      s.add(a).wait(1, 5).add(b).wait(45, 120).order([a, b]);
    },
  },
  // Bought within the gap, then a new item: abandoned after the new item.
  'bought-then-back': {
    start: [0, 240],
    sent: 1,
    suppressed: 0,
    play: (s, sku) => {
      const a = sku();
      s.add(a).wait(2, 20).order([a]).wait(10, 60).add(sku() + 100);
    },
  },
  // Quantity changes, a view and a partial removal keep resetting the gap; fires after the last of them.
  fiddling: {
    start: [0, 240],
    sent: 1,
    suppressed: 0,
    play: (s, sku) => {
      const a = sku();
      s.add(a).wait(5, 25).basket('QUANTITY_CHANGED', a, 3).wait(5, 25).basket('ITEM_REMOVED', a, 1).wait(5, 25).basket('BASKET_VIEWED');
    },
  },
  // Checkout started, then another item: the last activity is an add, so BASKET_ABANDONED.
  'checkout-then-more': {
    start: [0, 300],
    sent: 1,
    suppressed: 0,
    play: (s, sku) => s.add(sku()).wait(2, 8).basket('CHECKOUT_STARTED').wait(10, 25).add(sku() + 100),
  },
  // An order with no basket activity at all: nothing.
  'order-only': { start: [0, 360], sent: 0, suppressed: 0, play: (s, sku) => s.order([sku()]) },
  // Still pending at T_END (due after it): neither runner fires it.
  'still-pending': { start: [395, 415], sent: 0, suppressed: 0, play: (s, sku) => s.add(sku()) },
  // Due exactly at T_END: fires in both (timers due at the stream time fire).
  'due-at-end': { start: [390, 390], sent: 1, suppressed: 0, play: (s, sku) => s.add(sku()) },
};

interface History {
  /** Customer id → its scenario and events. */
  readonly shoppers: ReadonlyMap<string, Shopper>;
  /** Every customer event, in event-time order (clock events not included). */
  readonly events: readonly Input[];
  /** One clock event per partition, all at T_END. */
  readonly clock: readonly BasketEvent[];
}

function history(customers = 100, seed = 0x6b616972): History {
  const rnd = prng(seed);
  const names = Object.keys(SCENARIOS);
  const shoppers = new Map<string, Shopper>();
  for (let i = 0; i < customers; i++) {
    const scenario = names[i % names.length] as string;
    const spec = SCENARIOS[scenario] as Scenario;
    const [from, to] = spec.start;
    const start = T0 + Math.round((from + rnd() * (to - from)) * MIN);
    const s = new Shopper(`c${String(i).padStart(3, '0')}`, scenario, start, rnd);
    spec.play(s, () => 1 + Math.floor(rnd() * 40));
    const last = s.events.at(-1)?.value.occurredAt ?? start;
    if (last >= T_END) throw new Error(`scenario ${scenario} of ${s.id} ends after T_END (${iso(last)})`);
    shoppers.set(s.id, s);
  }
  // Event-time order; ties (none expected) by customer, which keeps each customer's own order.
  const events = [...shoppers.values()].flatMap((s) => s.events.map((e, n) => ({ e, n })));
  events.sort((x, y) => x.e.value.occurredAt - y.e.value.occurredAt || x.e.value.customerId.localeCompare(y.e.value.customerId) || x.n - y.n);
  // One dummy customer per partition, keyed so that murmur2 puts it there: a record on a partition its key does
  // not hash to is routed to its key's task, so one key on every partition would reach one task only.
  const clockKeys: string[] = [];
  for (let i = 0; clockKeys.length < PARTITIONS; i++) {
    const key = `${CLOCK_CUSTOMER}-${i}`;
    if (partitionOf(key) === clockKeys.length) clockKeys.push(key);
  }
  const clock = clockKeys.map((customerId, p): BasketEvent => ({ eventId: `clock-${p}`, customerId, occurredAt: T_END, type: 'BASKET_VIEWED' }));
  return { shoppers, events: events.map((x) => x.e), clock };
}

// ---------------------------------------------------------------------------------------------------------
// Comparison

type Output = Trigger | TriggerAudit;
type Normalised = Record<string, unknown>;

/** Everything but where the cause sits in the input (partition/offset differ between runners by design). */
function normalise(o: Output): Normalised {
  return { ...o, causedBy: { eventId: o.causedBy.eventId, topic: o.causedBy.topic } };
}

const stable = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) : x,
  );

function summary(o: Output): string {
  const decision = 'decision' in o ? ` ${o.decision}/${o.reason}` : '';
  return `${o.type}${decision} ${o.customerId} at ${iso(o.occurredAt)} caused by ${o.causedBy.eventId}`;
}

/** `path: replay … / kafka …` for every leaf (or array) that differs between two JSON values. */
function leafDiff(a: unknown, b: unknown, path = ''): string[] {
  const isObject = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);
  if (isObject(a) && isObject(b)) {
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort().flatMap((k) => leafDiff(a[k], b[k], path === '' ? k : `${path}.${k}`));
  }
  if (stable(a) === stable(b)) return [];
  const show = (x: unknown) => (x === undefined ? '(absent)' : stable(x));
  return [`${path}: replay ${show(a)} / kafka ${show(b)}`];
}

/**
 * Differences between the replay and Kafka outputs of one topic, by id; [] when they agree. Kafka delivers at
 * least once, so a repeated id is allowed as long as it is the same record.
 */
interface Difference {
  readonly customerId: string;
  readonly occurredAt: number;
  readonly text: string;
}

function differences<T extends Output>(what: string, idOf: (o: T) => string, fromReplay: readonly T[], fromKafka: readonly T[]): Difference[] {
  const found: Difference[] = [];
  const note = (o: T, text: string) => found.push({ customerId: o.customerId, occurredAt: o.occurredAt, text });
  const index = (list: readonly T[], runner: string): Map<string, T> => {
    const m = new Map<string, T>();
    for (const o of list) {
      const id = idOf(o);
      const seen = m.get(id);
      if (seen && stable(normalise(seen)) !== stable(normalise(o))) {
        note(o, `${what} ${id}: ${runner} emitted two different records with this id:\n      ${stable(normalise(seen))}\n      ${stable(normalise(o))}`);
      }
      m.set(id, o);
    }
    return m;
  };
  const r = index(fromReplay, 'replay');
  const k = index(fromKafka, 'kafka');
  for (const [id, o] of r) {
    if (!k.has(id)) {
      note(o, `${what.padEnd(7)} missing from kafka: ${summary(o)} [${id}]`);
    }
  }
  for (const [id, o] of k) {
    if (!r.has(id)) {
      note(o, `${what.padEnd(7)} only in kafka:     ${summary(o)} [${id}]`);
    }
  }
  for (const [id, a] of r) {
    const b = k.get(id);
    if (!b) continue;
    const na = normalise(a);
    const nb = normalise(b);
    const diffs = leafDiff(na, nb);
    if (diffs.length > 0) {
      note(a, `${what.padEnd(7)} differs:           ${summary(a)} [${id}]\n${diffs.map((d) => `      ${d}`).join('\n')}`);
    }
  }
  return found;
}

/** The partition the producer's default (Java-compatible murmur2) partitioner gives a customer's events. */
const partitionOf = (() => {
  const partitioner = Partitioners.DefaultPartitioner();
  const partitionMetadata: PartitionMetadata[] = Array.from({ length: PARTITIONS }, (_, p) => ({ partitionErrorCode: 0, partitionId: p, leader: 0, replicas: [0], isr: [0] }));
  return (customerId: string): number => partitioner({ topic: BASKET, partitionMetadata, message: { key: customerId, value: null } });
})();

function timeline(h: History, customerId: string): string {
  const s = h.shoppers.get(customerId);
  if (!s) return `  ${customerId}: (not a generated customer)`;
  const rows = s.events.map((e) => {
    const v = e.value;
    const what = e.topic === ORDERS ? `ORDER [${(v as OrderEvent).items.map((i) => i.sku).join(', ')}]` : `${(v as BasketEvent).type} ${(v as BasketEvent).sku ?? ''}`;
    return `    ${iso(v.occurredAt)} ${v.eventId} ${what}`;
  });
  return `  ${customerId} (${s.scenario}, partition ${partitionOf(customerId)}):\n${rows.join('\n')}`;
}

// ---------------------------------------------------------------------------------------------------------
// The two runners

/** `kairos replay` over the history and its clock events (support/equivalence.ts runs it). */
function viaReplay(dir: string, h: History): Promise<Outputs> {
  const inputs: ReplayInput[] = [...h.events, ...h.clock.map((value) => ({ topic: BASKET as typeof BASKET, value }))].map((e) => ({
    topic: e.topic,
    key: e.value.customerId,
    value: e.value,
    partition: partitionOf(e.value.customerId),
  }));
  return replayInputs(dir, inputs, CAMPAIGNS);
}

// ---------------------------------------------------------------------------------------------------------

test('the same events through replay and through Kafka (librdkafka\'s mock cluster) give the same triggers', { timeout: 240_000 }, async (t) => {
  const dir = tempDir('kairos-equivalence-');
  try {
    const h = history();
    const all = [...h.events, ...h.clock];
    t.diagnostic(
      `history: ${h.shoppers.size} customers, ${h.events.filter((e) => e.topic === BASKET).length} basket and ${h.events.filter((e) => e.topic === ORDERS).length} order events ` +
        `from ${iso(h.events[0]?.value.occurredAt ?? T0)} to ${iso(h.events.at(-1)?.value.occurredAt ?? T0)}, + ${h.clock.length} clock events at ${iso(T_END)} (${all.length} in all)`,
    );

    // 1. Replay: the reference.
    let started = performance.now();
    const expected = await viaReplay(dir.dir, h);
    t.diagnostic(`replay: ${expected.triggers.length} triggers, ${expected.audits.length} audit records in ${(performance.now() - started).toFixed(0)} ms`);

    // The history exercises what it claims to (checked on replay, the runner the topology tests already trust).
    const sentBy = new Map<string, number>();
    const suppressedBy = new Map<string, number>();
    for (const a of expected.audits) {
      const m = a.decision === 'SENT' ? sentBy : suppressedBy;
      m.set(a.customerId, (m.get(a.customerId) ?? 0) + 1);
    }
    for (const [id, s] of h.shoppers) {
      const spec = SCENARIOS[s.scenario] as Scenario;
      assert.equal(sentBy.get(id) ?? 0, spec.sent, `replay: ${id} (${s.scenario}) should get ${spec.sent} trigger(s)\n${timeline(h, id)}`);
      assert.equal(suppressedBy.get(id) ?? 0, spec.suppressed, `replay: ${id} (${s.scenario}) should get ${spec.suppressed} cooldown suppression(s)\n${timeline(h, id)}`);
    }
    assert.equal(expected.triggers.length, [...sentBy.values()].reduce((a, b) => a + b, 0));
    assert.ok(expected.triggers.some((x) => x.type === 'CHECKOUT_ABANDONED') && expected.triggers.some((x) => x.type === 'BASKET_ABANDONED'));
    assert.ok(expected.audits.some((a) => a.decision === 'SUPPRESSED' && a.reason === 'cooldown'));
    assert.ok(expected.triggers.every((x) => x.occurredAt <= T_END && x.explanation.params.inactivityGap === GAP && x.explanation.params.reentryCooldown === COOLDOWN));

    // 2. Kafka: the whole history is on the topics before the runner starts (a backlog to catch up with). Every
    // third event is delivered twice, as a retrying shop producer does (the copy a few records later): the
    // input dedup stage (DESIGN §3, idempotent input) must drop the copies, so Kafka still equals replay of the
    // single delivery.
    const kafka = testKafka(cluster.brokers);
    started = performance.now();
    const msg = (e: Input['value']): Message => ({ key: e.customerId, value: JSON.stringify(e) });
    const redelivered = (list: Message[]): Message[] => {
      const out: Message[] = [];
      const copies: { due: number; m: Message }[] = [];
      list.forEach((m, i) => {
        out.push(m);
        if (i % 3 === 0) copies.push({ due: i + 1 + (i % 4), m });
        while (copies[0] && copies[0].due <= i) out.push((copies.shift() as { m: Message }).m);
      });
      return [...out, ...copies.map((c) => c.m)];
    };
    const baskets = redelivered(h.events.filter((e) => e.topic === BASKET).map((e) => msg(e.value)));
    const orders = redelivered(h.events.filter((e) => e.topic === ORDERS).map((e) => msg(e.value)));
    await produce(kafka, BASKET, [
      ...baskets, // partitioned by key: co-partitioned with orders
      ...h.clock.map((e, p) => ({ ...msg(e), partition: p })), // one per partition, the last record of each
    ]);
    await produce(kafka, ORDERS, orders);
    t.diagnostic(`produced ${baskets.length + orders.length + h.clock.length} records (${all.length} events, ${baskets.length + orders.length + h.clock.length - all.length} of them twice) in ${(performance.now() - started).toFixed(0)} ms`);

    const groupId = 'kairos-equivalence';
    const runner = new KafkaRunner({
      topology: buildTopology(resolveCampaigns(CAMPAIGNS), 'equivalence'),
      kafka,
      groupId,
      stateDir: join(dir.dir, 'kafka-state'),
      serde: new JsonSerde(),
      logger: silent,
      idempotent: false,
      maxWaitTimeInMs: 100,
      punctuateIntervalMs: 200,
      // Stream time must never follow the wall clock here: the clock events move every task to T_END instead.
      idleAdvanceMs: 1e12,
      sessionTimeout: 10_000,
      heartbeatInterval: 1000,
    });
    const admin = kafka.admin();
    const out = await outputCollector(kafka);
    let waited: string;
    const runStart = Date.now();
    try {
      await admin.connect();
      await runner.start();
      // Done when the group's committed offsets cover both inputs (the runner acknowledges outputs before it
      // commits offsets) and no output record has come for QUIET_MS.
      let caughtUpAt: number | undefined;
      for (;;) {
        const lag = await groupLag(admin, groupId, [BASKET, ORDERS]);
        const now = Date.now();
        if (lag.total === 0) caughtUpAt ??= now;
        else caughtUpAt = undefined;
        if (caughtUpAt !== undefined && now - caughtUpAt >= QUIET_MS && now - out.lastAt() >= QUIET_MS) {
          waited = `caught up ${((caughtUpAt - runStart) / 1000).toFixed(1)} s after start`;
          break;
        }
        if (now - runStart > KAFKA_TIMEOUT_MS) {
          waited = `NOT caught up within ${KAFKA_TIMEOUT_MS / 1000} s: lag ${lag.total} (${lag.detail})`;
          break;
        }
        await sleep(250);
      }
    } finally {
      await runner.stop();
      await out.stop();
      await admin.disconnect();
    }
    t.diagnostic(`kafka: ${waited}; ${out.triggers.length} triggers, ${out.audits.length} audit records`);

    // 3. Compare.
    const tr = differences('trigger', (x: Trigger) => x.triggerId, expected.triggers, out.triggers);
    const au = differences('audit', (x: TriggerAudit) => x.auditId, expected.audits, out.audits);
    if (tr.length + au.length > 0 || waited.startsWith('NOT')) {
      // Grouped by customer: the customer's history (with its partition), then what each runner made of it.
      const byCustomer = new Map<string, Difference[]>();
      for (const d of [...tr, ...au]) byCustomer.set(d.customerId, [...(byCustomer.get(d.customerId) ?? []), d]);
      const customers = [...byCustomer.keys()].sort();
      const byScenario = new Map<string, number>();
      for (const c of customers) {
        const sc = h.shoppers.get(c)?.scenario ?? '?';
        byScenario.set(sc, (byScenario.get(sc) ?? 0) + 1);
      }
      const perPartition = (list: readonly Trigger[], p: number) => new Set(list.filter((x) => partitionOf(x.customerId) === p).map((x) => x.triggerId)).size;
      const head = `replay and kafka disagree (${waited}): ${tr.length} trigger and ${au.length} audit difference(s) for ${customers.length} customer(s)`;
      t.diagnostic(head);
      const SHOWN = 12;
      assert.fail(
        [
          head,
          `customers by scenario: ${[...byScenario].map(([s, n]) => `${s} ${n}`).join(', ')}`,
          `triggers by partition, replay → kafka: ${Array.from({ length: PARTITIONS }, (_, p) => `p${p} ${perPartition(expected.triggers, p)} → ${perPartition(out.triggers, p)}`).join(', ')}`,
          ...customers.slice(0, SHOWN).flatMap((c) => [
            timeline(h, c),
            ...(byCustomer.get(c) ?? []).sort((x, y) => x.occurredAt - y.occurredAt).map((d) => `    ! ${d.text}`),
          ]),
          ...(customers.length > SHOWN ? [`  … and ${customers.length - SHOWN} more customer(s): ${customers.slice(SHOWN).join(', ')}`] : []),
        ].join('\n'),
      );
    }
    assert.equal(new Set(out.triggers.map((x) => x.triggerId)).size, expected.triggers.length);
    assert.equal(new Set(out.audits.map((x) => x.auditId)).size, expected.audits.length);
  } finally {
    dir.remove();
  }
});
