/**
 * The end-offset probe (src/kafka/end-probe.ts): it confirms an empty input of a live task only where a fetch sent
 * at the same moment would have, and leaves everything else to the fetch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { EndProbe, type ProbedTask, type ReadEnds } from '../../src/kafka/end-probe.js';
import { PartitionGroup } from '../../src/kafka/partition-group.js';

const silent = pino({ level: 'silent' });
const flush = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

/** A task with a basket record (arrival 5) held back by two empty inputs at their end, confirmed up to 2. */
function heldTask(partition: number, fetched: Record<string, bigint>, emptyAtOpen: Record<string, bigint> = {}): ProbedTask & { group: PartitionGroup<string> } {
  const group = new PartitionGroup<string>({ waitFor: ['basket', 'orders', 'views'], others: [] });
  for (const t of ['basket', 'orders', 'views']) {
    group.setBehind(t, false);
    group.confirm(t, 2);
  }
  group.add('basket', [{ record: 'b1', timestamp: 10, arrival: 5 }]);
  return { partition, closed: false, fetchedTo: new Map(Object.entries(fetched)), emptyAtOpen: new Map(Object.entries(emptyAtOpen)), group };
}

function ends(table: Record<string, Record<number, bigint>>, calls: ReadonlyMap<string, readonly number[]>[] = []): ReadEnds {
  return async (partitions) => {
    calls.push(partitions);
    await flush();
    return new Map(Object.entries(table).map(([t, ps]) => [t, new Map(Object.entries(ps).map(([p, e]) => [Number(p), e]))]));
  };
}

test('partition group: the inputs whose confirmation alone holds the next record back', () => {
  const g = new PartitionGroup<string>({ waitFor: ['basket', 'orders', 'views'], others: ['repartition'] });
  assert.deepEqual(g.unconfirmed(), [], 'nothing buffered');
  for (const t of ['basket', 'orders', 'views']) g.setBehind(t, false);
  g.confirm('orders', 7);
  g.add('basket', [{ record: 'b1', timestamp: 10, arrival: 5 }]);
  assert.deepEqual(g.unconfirmed(), ['views'], 'orders is confirmed past the record, views is not');
  g.setBehind('orders', true);
  assert.deepEqual(g.unconfirmed(), [], 'an input with more to fetch: the fetch decides');
  g.setBehind('orders', false);
  g.confirm('views', 5);
  assert.deepEqual(g.unconfirmed(), [], 'the record can run');
  assert.equal(g.next().kind, 'record');
});

test('an input whose end is no further than its task fetched is confirmed up to the responses that had come when its task asked; the task drains once all are', async () => {
  const task = heldTask(3, { basket: 1n, orders: 40n, views: 9n });
  assert.deepEqual(task.group.unconfirmed(), ['orders', 'views']);
  let settled = 6;
  const drained: number[] = [];
  const results: string[] = [];
  const calls: ReadonlyMap<string, readonly number[]>[] = [];
  const probe = new EndProbe({
    readEnds: async (p) => {
      const r = await ends({ orders: { 3: 40n }, views: { 3: 9n } }, calls)(p);
      settled = 99; // responses that came while the request was out vouch for nothing
      return r;
    },
    count: () => settled,
    settled: () => settled,
    delayMs: 0,
    onConfirmed: (t) => drained.push(t.partition),
    logger: silent,
    onResult: (r, n) => results.push(`${r} ${n}`),
  });
  probe.want(task);
  await flush();
  await flush();
  assert.deepEqual(calls.map((c) => Object.fromEntries(c)), [{ orders: [3], views: [3] }]);
  assert.deepEqual(drained, [3]);
  assert.deepEqual(results, ['confirmed 2']);
  assert.deepEqual(task.group.unconfirmed(), []);
  const n = task.group.next();
  assert.equal(n.kind, 'record');
  // Confirmed up to 6, not 99: a record that came with response 7 still waits.
  task.group.add('basket', [{ record: 'b2', timestamp: 20, arrival: 7 }]);
  assert.deepEqual(task.group.unconfirmed(), ['orders', 'views']);
});

test('an input with records beyond what its task fetched is left to the fetch: not confirmed, and the task is not drained for the other', async () => {
  const task = heldTask(1, { basket: 1n, orders: 40n, views: 9n });
  const drained: number[] = [];
  const results: string[] = [];
  const probe = new EndProbe({ readEnds: ends({ orders: { 1: 40n }, views: { 1: 10n } }), count: () => 6, settled: () => 6, delayMs: 0, onConfirmed: (t) => drained.push(t.partition), logger: silent, onResult: (r, n) => results.push(`${r} ${n}`) });
  probe.want(task);
  await flush();
  await flush();
  assert.deepEqual(drained, []);
  assert.deepEqual(results.sort(), ['behind 1', 'confirmed 1']);
  assert.deepEqual(task.group.unconfirmed(), ['views']);
});

test('an input the task never fetched counts as fetched to its end when the task opened, if it was empty then', async () => {
  const opened = heldTask(0, { basket: 1n }, { orders: 0n, views: 0n });
  const grew = heldTask(2, { basket: 1n }, { orders: 0n });
  const drained: number[] = [];
  const probe = new EndProbe({ readEnds: ends({ orders: { 0: 0n, 2: 0n }, views: { 0: 0n, 2: 0n } }), count: () => 6, settled: () => 6, delayMs: 0, onConfirmed: (t) => drained.push(t.partition), logger: silent });
  probe.want(opened);
  probe.want(grew);
  await flush();
  await flush();
  assert.deepEqual(drained, [0], 'views of task 2: nothing known of it, so only a fetch confirms it');
});

test('one request at a time: tasks that ask while one is out go together in the next; a failed request confirms nothing and the fetch takes over', async () => {
  const calls: ReadonlyMap<string, readonly number[]>[] = [];
  const results: string[] = [];
  const drained: number[] = [];
  const readEnds: ReadEnds = async (p) => {
    calls.push(p);
    await flush();
    if (calls.length === 1) throw new Error('NOT_LEADER_OR_FOLLOWER');
    return new Map(['orders', 'views'].map((t) => [t, new Map([4, 5, 6].map((q) => [q, 1n]))]));
  };
  const probe = new EndProbe({ readEnds, count: () => 6, settled: () => 6, delayMs: 0, onConfirmed: (t) => drained.push(t.partition), logger: silent, onResult: (r, n) => results.push(`${r} ${n}`) });
  const [a, b, c] = [4, 5, 6].map((p) => heldTask(p, { basket: 1n, orders: 1n, views: 1n })) as [ReturnType<typeof heldTask>, ReturnType<typeof heldTask>, ReturnType<typeof heldTask>];
  probe.want(a);
  await new Promise((r) => setTimeout(r, 1));
  assert.equal(calls.length, 1);
  probe.want(b);
  probe.want(c);
  await new Promise((r) => setTimeout(r, 1));
  assert.equal(calls.length, 1, 'the others wait for the request that is out');
  await new Promise((r) => setTimeout(r, 150)); // the failure, its back-off (50 ms), the next request
  assert.deepEqual(
    calls.map((m) => Object.fromEntries(m)),
    [{ orders: [4], views: [4] }, { orders: [5, 6], views: [5, 6] }],
  );
  assert.deepEqual(results, ['failed 1', 'confirmed 4']);
  assert.deepEqual(drained, [5, 6]);
  assert.deepEqual(a.group.unconfirmed(), ['orders', 'views'], 'asked only in the failed request: it waits for a fetch, or asks again');
  probe.want(a);
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(drained, [5, 6, 4]);
  probe.stop();
  probe.want(a);
  assert.equal(calls.length, 3, 'a stopped probe reads nothing');
});

test('the probe reads only once a task has waited delayMs, and not at all when a fetch confirmed it meanwhile; it vouches for the responses that had come when the task asked', async () => {
  const t0 = performance.now();
  let sentAt = -1;
  let count = 5;
  const calls: ReadonlyMap<string, readonly number[]>[] = [];
  const make = (): EndProbe<ReturnType<typeof heldTask>> =>
    new EndProbe({
      readEnds: async (p) => {
        sentAt = performance.now() - t0;
        return ends({ orders: { 1: 9n, 2: 9n }, views: { 1: 9n, 2: 9n } }, calls)(p);
      },
      count: () => count,
      settled: () => 100,
      delayMs: 60,
      onConfirmed: () => undefined,
      logger: silent,
    });
  const slow = heldTask(1, { basket: 1n, orders: 9n, views: 9n });
  const probe = make();
  probe.want(slow);
  count = 50; // responses that come after the task asked vouch for nothing its request reads
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(calls.length, 0, 'not before delayMs');
  await new Promise((r) => setTimeout(r, 80));
  assert.ok(sentAt >= 55, `sent after the delay (${sentAt.toFixed(0)} ms)`);
  assert.deepEqual(slow.group.unconfirmed(), []);
  slow.group.add('basket', [{ record: 'b2', timestamp: 20, arrival: 6 }]);
  slow.group.next();
  assert.deepEqual(slow.group.unconfirmed(), ['orders', 'views'], 'confirmed up to 5, the count when it asked, not 50');
  // A fetch confirms the inputs before the delay has passed: nothing to read.
  const quick = heldTask(2, { basket: 1n, orders: 9n, views: 9n });
  const probe2 = make();
  probe2.want(quick);
  quick.group.confirm('orders', 5);
  quick.group.confirm('views', 5);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(calls.length, 1, 'no request for a task a fetch confirmed');
  probe.stop();
  probe2.stop();
});
