/**
 * Idempotent input (DESIGN §3, topologies/common/dedup.ts): a record redelivered with the same key and eventId
 * within the dedup window changes nothing — same triggers, same audit, same state as one delivery — on every
 * input topic; after the window it is applied again; the dedup state is bounded and survives a restart and a
 * restore from the changelog; replay drops the same records and says how many.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import pino from 'pino';
import type { BasketEvent, CatalogEvent, OrderEvent, PageviewEvent, WishlistEvent } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { run } from '../../src/cli/main.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { MemoryChangelog } from '../../src/engine/state/changelog.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { NdjsonWriter, type LineSink } from '../../src/replay/ndjson-writer.js';
import { replay } from '../../src/replay/replay.js';
import { basketsStore } from '../../topologies/basket-abandonment/index.js';
import { DEDUP_TOPICS, dedupStore, dedupStoreName, fingerprint, seenEventsCodec, type InputDuplicate, type SeenEvents } from '../../topologies/common/dedup.js';
import { mulberry32 } from '../../src/util/prng.js';
import { tempDir } from '../helpers.js';
import { audits, triggers } from '../support/outputs.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const at = (min: number): number => T0 + min * MIN;

const BASKET = 'shop.basket.v1';
const ORDERS = 'shop.orders.v1';
const WISHLIST = 'shop.wishlist.v1';
const PAGEVIEWS = 'shop.pageviews.v1';
const CATALOG = 'shop.catalog.v1';

interface Input {
  readonly topic: string;
  readonly key: string;
  readonly value: BasketEvent | OrderEvent | WishlistEvent | PageviewEvent | CatalogEvent;
}
/** A record, or stream time moved to `advance` (timers fire). */
type Step = Input | { readonly advance: number };

const price = (amount: number) => ({ amount, currency: 'EUR' });
const basket = (id: string, customerId: string, min: number, type: BasketEvent['type'], sku?: string, extra: Partial<BasketEvent> = {}): Input => ({
  topic: BASKET,
  key: customerId,
  value: { eventId: id, customerId, occurredAt: at(min), type, ...(sku === undefined ? {} : { sku, productId: `p-${sku}`, quantity: 1 }), ...extra },
});
const order = (id: string, customerId: string, min: number, skus: string[]): Input => ({
  topic: ORDERS,
  key: customerId,
  value: {
    eventId: id,
    orderId: `order-${id}`,
    customerId,
    occurredAt: at(min),
    items: skus.map((sku) => ({ sku, productId: `p-${sku}`, quantity: 1, unitPrice: price(1000) })),
  },
});
const wish = (id: string, customerId: string, min: number, type: WishlistEvent['type'], productId: string, sku?: string): Input => ({
  topic: WISHLIST,
  key: customerId,
  value: { eventId: id, customerId, occurredAt: at(min), type, productId, ...(sku === undefined ? {} : { sku }) },
});
const view = (id: string, customerId: string, min: number, productId: string): Input => ({
  topic: PAGEVIEWS,
  key: customerId,
  value: { eventId: id, customerId, occurredAt: at(min), productId },
});
const catalog = (id: string, sku: string, min: number, change: { price?: number; stock?: number }): Input => ({
  topic: CATALOG,
  key: sku,
  value: {
    eventId: id,
    sku,
    productId: `p-${sku}`,
    occurredAt: at(min),
    type: change.stock === undefined ? 'PRICE_CHANGED' : 'STOCK_CHANGED',
    ...(change.price === undefined ? {} : { price: price(change.price) }),
    ...(change.stock === undefined ? {} : { stock: change.stock }),
  },
});

/**
 * Every record twice in a row, and the records named in `late` once more right after the step `after` (a
 * producer retry that lands after later events; it keeps its own event time).
 */
function redelivered(steps: readonly Step[], late: readonly string[], after: string): Step[] {
  const out: Step[] = [];
  const byId = new Map<string, Input>();
  for (const s of steps) {
    out.push(s);
    if ('advance' in s) continue;
    byId.set(s.value.eventId, s);
    out.push({ ...s, value: { ...s.value } });
    if (s.value.eventId === after) for (const id of late) out.push(byId.get(id) as Input);
  }
  return out;
}

/** Offsets differ when records are delivered twice (they are other records); everything else must not. */
function withoutOffsets(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (k, v: unknown) => (k === 'offset' ? undefined : v))) as unknown;
}

interface Outcome {
  readonly triggers: unknown[];
  readonly audits: unknown[];
  /** Every store but the dedup stores: key → value. */
  readonly state: Record<string, unknown>;
  readonly duplicates: InputDuplicate[];
}

async function runSteps(steps: readonly Step[], config: Record<string, unknown> = {}): Promise<Outcome> {
  const duplicates: InputDuplicate[] = [];
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false }, ...config }), 'dedup', { onInputDuplicate: (d) => duplicates.push(d) });
  const d = await TopologyTestDriver.create(topology);
  try {
    for (const s of steps) {
      if ('advance' in s) await d.advanceStreamTime(s.advance);
      else await d.pipe(s.topic, s.key, s.value);
    }
    const state: Record<string, unknown> = {};
    for (const store of d.task.state.storeNames().sort()) {
      if (store.endsWith('.dedup')) continue;
      for (const e of await d.task.state.scan(store)) state[`${store} ${e.key}`] = e.value;
    }
    return { triggers: withoutOffsets(triggers(d)) as unknown[], audits: withoutOffsets(audits(d)) as unknown[], state: withoutOffsets(state) as Record<string, unknown>, duplicates };
  } finally {
    await d.close();
  }
}

/** One scenario per input topic, each with a late redelivery that changes the outcome when applied again. */
const SCENARIOS: { topic: string; steps: Step[]; late: string[]; after: string; why: string }[] = [
  {
    topic: BASKET,
    // Added once, removed once: the basket is empty, nothing is abandoned. Applied twice, the add leaves one
    // unit behind (the issue-14 case), and the late retry of the add another one.
    steps: [basket('b1', 'anna', 0, 'ITEM_ADDED', 'jacket'), basket('b2', 'anna', 10, 'ITEM_REMOVED', 'jacket'), { advance: at(6 * 60) }],
    late: ['b1'],
    after: 'b2',
    why: 'an emptied basket must not be reported abandoned',
  },
  {
    topic: ORDERS,
    // Bought, then the same sku added again: abandoned. The order's retry after the new add must not remove it.
    steps: [basket('o1', 'ben', 0, 'ITEM_ADDED', 'shoe'), order('o2', 'ben', 5, ['shoe']), basket('o3', 'ben', 20, 'ITEM_ADDED', 'shoe'), { advance: at(6 * 60) }],
    late: ['o2'],
    after: 'o3',
    why: 'a retried order must not cancel a later basket',
  },
  {
    topic: WISHLIST,
    // Wished, unwished, then back in stock: nobody to notify. A retried wish must not bring the wish back.
    steps: [
      catalog('w0', 'lamp-1', -5, { stock: 0 }),
      wish('w1', 'cleo', 0, 'ITEM_ADDED', 'p-lamp-1', 'lamp-1'),
      wish('w2', 'cleo', 10, 'ITEM_REMOVED', 'p-lamp-1', 'lamp-1'),
      catalog('w3', 'lamp-1', 30, { stock: 5 }),
      { advance: at(6 * 60) },
    ],
    late: ['w1'],
    after: 'w2',
    why: 'a retried wish must not be notified after its removal',
  },
  {
    topic: PAGEVIEWS,
    // Two products viewed, session over, abandoned once; retried views must not count again.
    steps: [view('v1', 'dora', 0, 'p-1'), view('v2', 'dora', 5, 'p-2'), { advance: at(60) }, view('v3', 'dora', 70, 'p-3'), { advance: at(6 * 60) }],
    late: ['v1', 'v2'],
    after: 'v3',
    why: 'retried views must not extend or reopen a session',
  },
  {
    topic: CATALOG,
    // In the basket at 100; sold out, restocked, then a drop to 70 fires. The retried sell-out must not make
    // the sku look sold out again (no trigger for sold-out skus).
    steps: [
      basket('c1', 'eve', 0, 'ITEM_ADDED', 'mug', { unitPrice: price(10_000) }),
      catalog('c2', 'mug', 10, { stock: 0 }),
      catalog('c3', 'mug', 20, { stock: 8 }),
      catalog('c4', 'mug', 40, { price: 7_000 }),
      { advance: at(6 * 60) },
    ],
    late: ['c2'],
    after: 'c3',
    why: 'a retried catalog change must not undo a later one',
  },
];

for (const s of SCENARIOS) {
  test(`redelivered ${s.topic} records change nothing: same triggers, audit and state as one delivery (${s.why})`, async () => {
    const once = await runSteps(s.steps);
    const twice = await runSteps(redelivered(s.steps, s.late, s.after));
    const inputs = s.steps.filter((x) => !('advance' in x)).length;
    assert.deepEqual(twice.triggers, once.triggers);
    assert.deepEqual(twice.audits, once.audits);
    assert.deepEqual(twice.state, once.state);
    assert.equal(once.duplicates.length, 0);
    assert.equal(twice.duplicates.length, inputs + s.late.length, 'every second delivery dropped and counted');
    assert.ok(twice.duplicates.every((d) => !d.conflict));
    assert.ok(twice.duplicates.some((d) => d.topic === s.topic));
  });
}

test('without deduplication (dedupWindow 0) the redeliveries of these scenarios do change the outcome', async () => {
  // The scenarios above are only worth something if applying a record twice shows: this is the issue-14 bug.
  const off = { input: { dedupWindow: 0 } };
  for (const s of SCENARIOS) {
    const once = await runSteps(s.steps, off);
    const twice = await runSteps(redelivered(s.steps, s.late, s.after), off);
    assert.equal(twice.duplicates.length, 0);
    assert.notDeepEqual({ t: twice.triggers, s: twice.state }, { t: once.triggers, s: once.state }, `${s.topic}: ${s.why}`);
  }
  const basketCase = SCENARIOS[0] as (typeof SCENARIOS)[number];
  const twice = await runSteps(redelivered(basketCase.steps, basketCase.late, basketCase.after), off);
  assert.deepEqual(
    (twice.triggers as { type: string }[]).map((t) => t.type),
    ['BASKET_ABANDONED'],
    'applied twice, ITEM_ADDED ×2 then one ITEM_REMOVED leaves a unit: abandoned',
  );
});

test('ITEM_ADDED twice then one ITEM_REMOVED: the basket is empty and no abandonment fires', async () => {
  const d = await TopologyTestDriver.create(buildTopology(resolveCampaigns({ guards: { enabled: false } })));
  try {
    const add = basket('e1', 'anna', 0, 'ITEM_ADDED', 'jacket');
    await d.pipe(BASKET, 'anna', add.value);
    await d.pipe(BASKET, 'anna', add.value);
    assert.equal((await d.store(basketsStore).get('anna'))?.items[0]?.quantity, 1);
    const remove = basket('e2', 'anna', 5, 'ITEM_REMOVED', 'jacket');
    await d.pipe(BASKET, 'anna', remove.value);
    assert.deepEqual((await d.store(basketsStore).get('anna'))?.items ?? [], []);
    await d.advanceStreamTime(at(24 * 60));
    assert.deepEqual(triggers(d), []);
  } finally {
    await d.close();
  }
});

test('the window is per record key: the same eventId under another key is another event', async () => {
  const out = await runSteps([basket('same', 'anna', 0, 'ITEM_ADDED', 'a'), { ...basket('same', 'bob', 0, 'ITEM_ADDED', 'a') }, { advance: at(3 * 60) }]);
  assert.equal(out.duplicates.length, 0);
  assert.equal(out.triggers.length, 2);
});

test('a redelivery after the window is applied again; within it, it is dropped (stream time since the first sighting)', async () => {
  const config = { input: { dedupWindow: '2h' } };
  const add = basket('x1', 'anna', 0, 'ITEM_ADDED', 'jacket');
  const steps: Step[] = [
    add,
    basket('x2', 'anna', 119, 'BASKET_VIEWED'),
    add, // stream time 119 min after the first sighting: dropped
    basket('x3', 'anna', 120, 'BASKET_VIEWED'),
    add, // 120 min: the window has passed, applied again (quantity 2)
    add, // and remembered again from now on: dropped
  ];
  const out = await runSteps(steps, config);
  assert.equal(out.duplicates.length, 2);
  const baskets = out.state['basket-abandonment.baskets anna'] as { items: { quantity: number }[] };
  assert.equal(baskets.items[0]?.quantity, 2);
});

test('same eventId with other content: the first delivery wins, counted as a conflict', async () => {
  const first = basket('c', 'anna', 0, 'ITEM_ADDED', 'jacket');
  const other = basket('c', 'anna', 0, 'ITEM_ADDED', 'jacket', { quantity: 5 });
  const out = await runSteps([first, other, first]);
  assert.deepEqual(
    out.duplicates.map((d) => d.conflict),
    [true, false],
  );
  assert.equal((out.state['basket-abandonment.baskets anna'] as { items: { quantity: number }[] }).items[0]?.quantity, 1);
});

test('the dedup state is bounded: ids expire a window after their first sighting and idle keys are swept', async () => {
  const windowMs = HOUR;
  const d = await TopologyTestDriver.create(buildTopology(resolveCampaigns({ guards: { enabled: false }, input: { dedupWindow: '1h' } })));
  try {
    const store = d.store(dedupStore(PAGEVIEWS, windowMs));
    // One view a minute for 5 hours: never more than an hour's ids are kept for the key.
    let max = 0;
    for (let m = 0; m < 300; m++) {
      await d.pipe(PAGEVIEWS, 'dora', view(`pv${m}`, 'dora', m, `p-${m % 7}`).value);
      max = Math.max(max, (await store.get('dora'))?.size ?? 0);
    }
    assert.equal(max, 60, 'ids seen in the last hour of stream time');
    // Many keys with one event each, then stream time moves on: every key expires (reads absent) and the
    // commit-time TTL sweep deletes them from RocksDB.
    for (let i = 0; i < 50; i++) await d.pipe(PAGEVIEWS, `c${i}`, view(`once${i}`, `c${i}`, 300, 'p-1').value);
    assert.equal((await d.task.state.scan(dedupStoreName(PAGEVIEWS))).length, 51);
    await d.advanceStreamTime(at(300) + 2 * windowMs);
    await d.task.commit();
    assert.equal(await store.get('c0'), undefined);
    assert.equal((await d.task.state.scan(dedupStoreName(PAGEVIEWS))).length, 0, 'nothing live');
    assert.ok(d.task.state.stats.expired >= 51, `swept from RocksDB (${d.task.state.stats.expired})`);
  } finally {
    await d.close();
  }
});

test('dedup state is task state: a redelivery after a restart, or to a task restored from the changelog, is dropped', async () => {
  const changelog = new MemoryChangelog();
  const duplicates: InputDuplicate[] = [];
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false } }), 'dedup', { onInputDuplicate: (x) => duplicates.push(x) });
  const add = basket('r1', 'anna', 0, 'ITEM_ADDED', 'jacket');
  const stock = catalog('r2', 'jacket', 1, { stock: 3 });
  const a = await TopologyTestDriver.create(topology, { changelog });
  try {
    await a.pipe(BASKET, 'anna', add.value);
    await a.pipe(CATALOG, 'jacket', stock.value);
    await a.restart();
    await a.pipe(BASKET, 'anna', add.value);
    assert.equal(duplicates.length, 1, 'after a restart');
  } finally {
    await a.close();
  }
  const b = await TopologyTestDriver.create(topology);
  try {
    await b.task.state.restoreFrom(changelog);
    const seen = (await b.store(dedupStore(CATALOG, DAY)).get('jacket')) as SeenEvents;
    assert.deepEqual([...seen.keys()], ['r2'], 'the catalog stage is keyed by sku, in the sku task');
    await b.pipe(BASKET, 'anna', add.value);
    await b.pipe(CATALOG, 'jacket', stock.value);
    assert.equal(duplicates.length, 3, 'after a restore from the changelog');
    assert.equal((await b.store(basketsStore).get('anna'))?.items[0]?.quantity, 1);
  } finally {
    await b.close();
  }
});

test('every input topic with eventIds has one dedup stage, whichever topologies read it; profiles have none', () => {
  const topology = buildTopology(resolveCampaigns({}));
  for (const topic of DEDUP_TOPICS) {
    assert.deepEqual(topology.children.get(topic), [dedupStoreName(topic)], `${topic} → its dedup stage only`);
    assert.equal(topology.stores.get(dedupStoreName(topic))?.spec.ttlMs, DAY);
  }
  assert.ok(!topology.nodes.has('crm.customers.v1.dedup'));
  assert.ok((topology.children.get('shop.basket.v1.dedup') ?? []).length >= 3, 'basket is read by three topologies through one stage');
  const off = buildTopology(resolveCampaigns({ input: { dedupWindow: 0 } }));
  assert.ok(![...off.stores.keys()].some((s) => s.endsWith('.dedup')));
  assert.throws(() => resolveCampaigns({ input: { dedupWindow: '1 day' } }), /dedupWindow/);
});

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

const nullSink: LineSink = { write: () => undefined, flush: () => Promise.resolve() } as unknown as LineSink;

test('replay: redelivered lines give the triggers of one delivery, and the summary counts the dropped ones', async (t) => {
  const scenario = SCENARIOS.flatMap((s) => s.steps.filter((x): x is Input => !('advance' in x)));
  const lines = (inputs: readonly Input[]): string => inputs.map((i) => JSON.stringify({ topic: i.topic, key: i.key, value: i.value })).join('\n') + '\n';
  const once = [...scenario].sort((x, y) => x.value.occurredAt - y.value.occurredAt);
  const twice = once.flatMap((i) => [i, i]);
  const run1 = async (input: string): Promise<string> => {
    const out = new Capture();
    const triggersOut = new NdjsonWriter(out, false, 'test');
    await replay({
      topology: buildTopology(resolveCampaigns({ guards: { enabled: false } })),
      input: Readable.from([input]),
      triggers: triggersOut,
      errors: nullSink,
      until: at(24 * 60),
      logger: pino({ level: 'silent' }),
    });
    await triggersOut.flush();
    return out.text;
  };
  // causedBy.offset is the causing line's number − 1, which the extra lines shift; everything else is equal.
  const parsed = (text: string): unknown => withoutOffsets(text.trim().split('\n').map((l) => JSON.parse(l) as unknown));
  const a = await run1(lines(once));
  assert.equal((parsed(a) as unknown[]).length, 4);
  assert.deepEqual(parsed(await run1(lines(twice))), parsed(a));

  const { dir, remove } = tempDir();
  t.after(remove);
  const input = join(dir, 'twice.ndjson');
  writeFileSync(input, lines(twice));
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify({ guards: { enabled: false } }));
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await run(['replay', '--input', input, '--config', configPath, '--output', join(dir, 'triggers.ndjson'), '--errors', join(dir, 'errors.ndjson')], { stdout, stderr });
  assert.equal(code, 0, stderr.text);
  assert.match(stderr.text, new RegExp(`, ${once.length} duplicates dropped;`));
});

test('stored form: one flat array with time differences, read back equal; the first form ([[id, at, hash], …]) is still read, its entries marked legacy', () => {
  const seen: SeenEvents = new Map([
    ['E1', { at: 1730678400000, hash: 0 }],
    ['é"\\', { at: 1730678400000, hash: 4294967295 }],
    ['E3', { at: 1730678461234, hash: 17 }],
  ]);
  const text = seenEventsCodec.encodeText?.(seen) ?? '';
  assert.equal(text, '[2,"E1",1730678400000,0,"é\\"\\\\",0,4294967295,"E3",61234,17]');
  assert.equal(seenEventsCodec.encode(seen).toString('utf8'), text);
  assert.deepEqual(seenEventsCodec.decode(Buffer.from(text)), seen);
  assert.deepEqual(seenEventsCodec.decode(Buffer.from('[2]')), new Map());
  const legacy = seenEventsCodec.decode(Buffer.from('[["E1",1730678400000,12],["E2",1730678401000,34]]'));
  assert.deepEqual(legacy, new Map([
    ['E1', { at: 1730678400000, hash: 12, legacy: true }],
    ['E2', { at: 1730678401000, hash: 34, legacy: true }],
  ]));
  // Written again, legacy entries take the flat form (their hashes kept, so still marked when read).
  assert.equal(seenEventsCodec.encodeText?.(legacy), '[2,"E1",1730678400000,12,"E2",1000,34]');
});

test('a redelivery of an id first seen in the first stored form is dropped as a redelivery, never a conflict: its hash was of the value, not of bytes', async () => {
  const duplicates: InputDuplicate[] = [];
  const topology = buildTopology(resolveCampaigns({ guards: { enabled: false } }), 'dedup', { onInputDuplicate: (x) => duplicates.push(x) });
  const d = await TopologyTestDriver.create(topology);
  try {
    // As an earlier version stored it (a hash that matches no fingerprint of this record).
    d.task.state.put(dedupStoreName(BASKET), 'anna', seenEventsCodec.decode(Buffer.from(`[["old",${at(0)},1]]`)), at(0));
    await d.pipe(BASKET, 'anna', basket('old', 'anna', 1, 'ITEM_ADDED', 'jacket').value);
    // A new id: first seen now, so other content under it is a conflict again.
    await d.pipe(BASKET, 'anna', basket('new', 'anna', 2, 'ITEM_ADDED', 'jacket').value);
    await d.pipe(BASKET, 'anna', basket('new', 'anna', 2, 'ITEM_ADDED', 'jacket', { quantity: 5 }).value);
    assert.deepEqual(duplicates, [
      { topic: BASKET, key: 'anna', conflict: false },
      { topic: BASKET, key: 'anna', conflict: true },
    ]);
    assert.equal((await d.store(basketsStore).get('anna'))?.items[0]?.quantity, 1, 'only "new" was applied');
  } finally {
    await d.close();
  }
});

test('replay fingerprints input lines: an identical line is a redelivery, a line reusing an eventId with other content a conflict', async (t) => {
  const { dir, remove } = tempDir();
  t.after(remove);
  const line = (i: Input): string => JSON.stringify({ topic: i.topic, key: i.key, value: i.value });
  const first = basket('b1', 'anna', 0, 'ITEM_ADDED', 'jacket');
  const other = basket('b1', 'anna', 0, 'ITEM_ADDED', 'jacket', { quantity: 5 });
  const input = join(dir, 'in.ndjson');
  writeFileSync(input, [line(first), line(first), line(other), line(view('v1', 'anna', 1, 'p-1'))].join('\n') + '\n');
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify({ guards: { enabled: false } }));
  const stderr = new Capture();
  const code = await run(['replay', '--input', input, '--config', configPath, '--output', join(dir, 'triggers.ndjson')], { stdout: new Capture(), stderr });
  assert.equal(code, 0, stderr.text);
  assert.match(stderr.text, /, 2 duplicates dropped \(1 with other content\);/);
});

test('fingerprint: the FNV-1a of the value\'s JSON text, without building it — the same number as hashing JSON.stringify for escapes, surrogates, numbers, nesting, holes and non-plain values', () => {
  const reference = (v: unknown): number => {
    const text = JSON.stringify(v);
    let h = 0x811c9dc5;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
    return h >>> 0;
  };
  const rnd = mulberry32(99);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const strings = ['', 'C000001', 'a"b', 'back\\slash', 'tab\tnew\nline\r\u0008\u000c', '\u0000\u001f\u007f', 'Größe 🧥', '\ud83e', 'x\udc00y', '\udc00\ud800', '\u2028\u2029', 'é'.repeat(50)];
  const numbers = [0, -0, 1, -1.5, 1e21, 1e-7, 0.1 + 0.2, Number.MAX_SAFE_INTEGER, NaN, Infinity, -Infinity, 1730678400000];
  const gen = (depth: number): unknown => {
    const r = rnd();
    if (depth > 3 || r < 0.35) return pick<unknown>([...strings, ...numbers, true, false, null]);
    if (r < 0.6) return Array.from({ length: Math.floor(rnd() * 4) }, () => (rnd() < 0.1 ? undefined : gen(depth + 1)));
    const o: Record<string, unknown> = {};
    for (let i = Math.floor(rnd() * 5); i > 0; i--) o[pick([...strings, '7', '10', 'key'])] = rnd() < 0.1 ? pick<unknown>([undefined, () => 1]) : gen(depth + 1);
    return o;
  };
  for (let i = 0; i < 3000; i++) {
    const v = { eventId: `E${i}`, value: gen(0) };
    assert.equal(fingerprint(v), reference(v), JSON.stringify(v));
  }
  // Not plain data: a toJSON, a Date, a class instance — still the number of the JSON text.
  class Box {
    constructor(readonly n: number) {}
  }
  for (const v of [{ eventId: 'E', at: new Date(0) }, { eventId: 'E', b: new Box(2) }, { eventId: 'E', t: { toJSON: () => 'x' } }, { eventId: 'E', m: new Map([[1, 2]]) }]) assert.equal(fingerprint(v), reference(v));
  // A real input record.
  const basket = { eventId: 'E2', customerId: 'C006115', occurredAt: 1730678418205, type: 'ITEM_ADDED', sku: 'P000072-XS', productId: 'P000072', quantity: 1, unitPrice: { amount: 4099, currency: 'EUR' } };
  assert.equal(fingerprint(basket), reference(basket));
});
