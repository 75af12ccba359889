/** The event-time merge of a task's inputs (src/kafka/partition-group.ts): the ordering rule of DESIGN §4. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PartitionGroup, type NextResult } from '../../src/kafka/partition-group.js';

const item = (id: string, timestamp: number) => ({ record: id, timestamp });
const taken = (r: NextResult<string>): string => (r.kind === 'record' ? r.item.record : r.kind);

function drain(g: PartitionGroup<string>): string[] {
  const out: string[] = [];
  for (;;) {
    const n = g.next();
    if (n.kind !== 'record') return out;
    out.push(n.item.record);
  }
}

test('records of several inputs come out in event-time order, whatever the batch order', () => {
  const g = new PartitionGroup<string>({ waitFor: ['basket', 'orders'], others: [] });
  g.add('basket', [item('b1', 10), item('b2', 30), item('b3', 50)]);
  g.add('orders', [item('o1', 20), item('o2', 40)]);
  g.setBehind('basket', false);
  g.setBehind('orders', false);
  assert.deepEqual(drain(g), ['b1', 'o1', 'b2', 'o2', 'b3']);
  assert.equal(g.caughtUp, true);
});

test('an input known to lag is waited for, also before its first fetch; data ends the wait', () => {
  let now = 0;
  const g = new PartitionGroup<string>({ waitFor: ['basket', 'orders'], others: [], maxIdleMs: 60_000, clock: () => now });
  g.setBehind('basket', false);
  g.setBehind('orders', true); // the broker said: records beyond the task's position (read when the task opened)
  g.add('basket', [item('b1', 10), item('b2', 30)]);
  const n = g.next();
  assert.equal(n.kind, 'waiting');
  assert.deepEqual(n.kind === 'waiting' ? n.topics : [], ['orders']);
  now = 59_000;
  assert.equal(taken(g.next()), 'waiting');
  // The order at 20 was older than b2: it must come between them.
  g.add('orders', [item('o1', 20)]);
  g.setBehind('orders', false);
  assert.deepEqual(drain(g), ['b1', 'o1', 'b2']);
});

test('an input nothing is known of yet (no fetch, no end offset) is waited for too', () => {
  const g = new PartitionGroup<string>({ waitFor: ['basket', 'orders'], others: [] });
  g.add('basket', [item('b1', 10)]);
  assert.equal(taken(g.next()), 'waiting');
  g.setBehind('orders', false);
  assert.equal(taken(g.next()), 'b1');
});

test('internal inputs are merged by event time but never waited for', () => {
  const g = new PartitionGroup<string>({ waitFor: ['basket'], others: ['repartition'] });
  g.setBehind('basket', false);
  g.add('repartition', [item('r1', 5), item('r2', 25)]);
  g.add('basket', [item('b1', 10)]);
  assert.deepEqual(drain(g), ['r1', 'b1', 'r2']);
  // Nothing from the repartition topic and nothing known of it: no wait.
  g.add('basket', [item('b2', 30)]);
  assert.deepEqual(drain(g), ['b2']);
});

test('internal records wait for a lagging external input (its next record may be older)', () => {
  const g = new PartitionGroup<string>({ waitFor: ['basket'], others: ['repartition'] });
  g.setBehind('basket', true);
  g.add('repartition', [item('r1', 50)]);
  assert.equal(taken(g.next()), 'waiting');
});

test('maxIdleMs is a last resort: taken once, counted, and the wait starts again afterwards', () => {
  let now = 1000;
  const g = new PartitionGroup<string>({ waitFor: ['a', 'b'], others: [], maxIdleMs: 100, clock: () => now });
  g.setBehind('b', true);
  g.add('a', [item('a1', 1), item('a2', 2)]);
  assert.equal(taken(g.next()), 'waiting');
  now += 100;
  assert.equal(taken(g.next()), 'a1');
  assert.equal(g.forcedCount, 1);
  // A fresh wait for the next record.
  assert.equal(taken(g.next()), 'waiting');
});

test('long buffers stay in order across the internal compaction of consumed heads', () => {
  const g = new PartitionGroup<string>({ waitFor: ['a'], others: [] });
  g.setBehind('a', false);
  const n = 5000;
  g.add('a', Array.from({ length: n }, (_, i) => item(String(i), i)));
  const first = Array.from({ length: 3000 }, () => taken(g.next()));
  g.add('a', [item('late', n)]);
  const rest = drain(g);
  assert.deepEqual([...first, ...rest], [...Array.from({ length: n }, (_, i) => String(i)), 'late']);
  assert.equal(g.size, 0);
  g.add('a', [item('x', 1)]);
  g.clear();
  assert.equal(g.size, 0);
  assert.throws(() => g.add('nope', []), RangeError);
});

test('a record passes an input at its end only once a fetch sent after the record came answered for that input', () => {
  const g = new PartitionGroup<string>({ waitFor: ['basket', 'orders'], others: ['repartition'] });
  const at = (id: string, timestamp: number, arrival: number) => ({ record: id, timestamp, arrival });
  g.setBehind('basket', false);
  g.setBehind('orders', false);
  // Response 3 (its fetch began when 2 had come) held the basket half of a producer request; the orders half
  // was written just after the fetch read the orders partition.
  g.confirm('basket', 2);
  g.confirm('orders', 2);
  g.add('basket', [at('b1', 30, 3)]);
  const n = g.next();
  assert.equal(n.kind, 'waiting');
  assert.deepEqual(n.kind === 'waiting' ? n.topics : [], ['orders']);
  // Response 4, begun when 3 had come, holds the older order: it goes first.
  g.confirm('orders', 3);
  g.add('orders', [at('o1', 20, 4)]);
  assert.equal(taken(g.next()), 'o1');
  // b1 came with 3 and orders is confirmed through 3; the basket input's own confirmation does not matter
  // while it has records buffered.
  assert.equal(taken(g.next()), 'b1');
  // A repartition record waits like any other; records with no arrival (0) never wait.
  g.add('repartition', [at('r1', 5, 5), item('r0', 6)]);
  assert.equal(taken(g.next()), 'waiting');
  g.confirm('basket', 4);
  assert.equal(taken(g.next()), 'waiting', 'orders is confirmed only through 3 (o1 came with 4)');
  g.confirm('orders', 5);
  assert.equal(taken(g.next()), 'waiting', 'basket is confirmed only through 4');
  g.confirm('basket', 5);
  assert.deepEqual(drain(g), ['r1', 'r0']);
  // Confirmations never move back, and a record with no arrival passes at once.
  g.confirm('orders', 1);
  g.add('repartition', [item('r2', 7)]);
  assert.deepEqual(drain(g), ['r2']);
  // An input that lags is waited for whatever its confirmation.
  g.setBehind('orders', true);
  g.add('basket', [at('b2', 40, 5)]);
  assert.equal(taken(g.next()), 'waiting');
});

test('ready tells whether next() would hand a record on, without taking it or starting the wait', () => {
  let now = 0;
  const g = new PartitionGroup<string>({ waitFor: ['basket', 'orders'], others: ['repartition'], maxIdleMs: 1000, clock: () => now });
  assert.equal(g.ready, false, 'nothing buffered');
  g.setBehind('basket', false);
  g.setBehind('orders', true);
  g.add('basket', [item('b1', 10)]);
  g.add('repartition', [item('r1', 5)]);
  assert.equal(g.ready, false, 'an input lags');
  now = 5000;
  // ready did not start the wait: the last resort counts from the first next() that waited.
  assert.equal(g.ready, false);
  assert.equal(taken(g.next()), 'waiting');
  assert.equal(g.size, 2);
  now = 5999;
  assert.equal(g.ready, false);
  now = 6000;
  assert.equal(g.ready, true, 'the last resort would take it now');
  assert.equal(g.forcedCount, 0);
  assert.equal(taken(g.next()), 'r1');
  assert.equal(g.forcedCount, 1);
  g.setBehind('orders', false);
  assert.equal(g.ready, true);
  assert.equal(g.ready, true, 'asking twice takes nothing');
  assert.deepEqual(drain(g), ['b1']);
  // A record that arrived after the last confirmation of an empty input waits, as next() says.
  g.add('basket', [{ record: 'b2', timestamp: 20, arrival: 3 }]);
  assert.equal(g.ready, false);
  assert.equal(taken(g.next()), 'waiting');
  g.confirm('orders', 3);
  assert.equal(g.ready, true);
  assert.equal(taken(g.next()), 'b2');
});
