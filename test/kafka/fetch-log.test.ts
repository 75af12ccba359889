/** The runner's count of fetch responses and what a fetch vouches for (src/kafka/fetch-log.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FetchedWhileOpening, FetchLog } from '../../src/kafka/fetch-log.js';
import { PartitionGroup } from '../../src/kafka/partition-group.js';

test('without a settle time a fetch vouches for every response that came before it began', () => {
  const log = new FetchLog(0, () => assert.fail('no clock is read without a settle time'));
  assert.equal(log.settled(), 0);
  assert.equal(log.arrived(), 1);
  assert.equal(log.arrived(), 2);
  assert.equal(log.settled(), 2);
  assert.equal(log.count, 2);
});

test('with a settle time a fetch vouches only for responses that came at least that long before it began', () => {
  let now = 1_000;
  const log = new FetchLog(50, () => now);
  assert.equal(log.arrived(), 1); // at 1000
  now = 1_020;
  assert.equal(log.arrived(), 2); // at 1020
  assert.equal(log.settled(), 0, 'response 1 came 20 ms ago');
  now = 1_049;
  assert.equal(log.settled(), 0);
  now = 1_050;
  assert.equal(log.settled(), 1, 'response 1 came exactly 50 ms ago');
  now = 1_069;
  assert.equal(log.arrived(), 3); // at 1069
  assert.equal(log.settled(), 1);
  now = 1_070;
  assert.equal(log.settled(), 2);
  now = 5_000;
  assert.equal(log.settled(), 3);
  assert.equal(log.settled(), 3, 'never moves back, nothing left to settle');
  assert.equal(log.count, 3);
});

test('a long run of responses keeps its memory to those inside the settle time', () => {
  let now = 0;
  const log = new FetchLog(10, () => now);
  for (let i = 1; i <= 100_000; i++) {
    now = i;
    log.arrived();
    // A fetch begins after every response: it vouches for those up to 10 ms old.
    assert.equal(log.settled(), Math.max(0, i - 10));
  }
});

test('a record waits for a fetch begun a settle time after it came, then passes an input at its end', () => {
  let now = 0;
  const log = new FetchLog(30, () => now);
  const g = new PartitionGroup<string>({ waitFor: ['basket', 'orders'], others: [] });
  g.setBehind('basket', false);
  g.setBehind('orders', false);
  // A basket record comes in response 1; orders look empty.
  const arrival = log.arrived();
  g.add('basket', [{ record: 'b1', timestamp: 10, arrival }]);
  g.setBehind('basket', true);
  g.setBehind('basket', false);
  // A fetch begun 5 ms later answers for orders: not long enough after the record came.
  now = 5;
  g.confirm('orders', log.settled());
  assert.equal(g.next().kind, 'waiting');
  log.arrived();
  // One begun 30 ms after it does.
  now = 30;
  g.confirm('orders', log.settled());
  const n = g.next();
  assert.equal(n.kind === 'record' ? n.item.record : n.kind, 'b1');
});

test('a settle time must be a non-negative integer', () => {
  assert.throws(() => new FetchLog(-1), /non-negative integer/);
  assert.throws(() => new FetchLog(1.5), /non-negative integer/);
});

test('records fetched while a task opens make their inputs behind when it opens, if at or past its position', () => {
  const w = new FetchedWhileOpening();
  w.add(3, 'shop.orders.v1', 120n);
  w.add(3, 'shop.orders.v1', 110n); // an older batch of the same input: the furthest one counts
  w.add(3, 'shop.basket.v1', 50n);
  w.add(3, 'shop.pageviews.v1', 7n);
  w.add(5, 'shop.basket.v1', 9n);
  // orders: fetched up to 120, the task reads from 100; basket: the batch ends before 50, the task reads from 50
  // (a stale batch from before its seek); page views: no position, so whatever was fetched is still to read.
  const behind = w.take(3, new Map([['shop.orders.v1', '100'], ['shop.basket.v1', '50']]));
  assert.deepEqual(behind.sort(), ['shop.orders.v1', 'shop.pageviews.v1']);
  assert.deepEqual(w.take(3, new Map()), [], 'taken once: the partition is forgotten');
  w.forget(5);
  assert.deepEqual(w.take(5, new Map()), [], 'a closed task forgets what was fetched for it');
});

test('an input behind for records fetched while its task opened holds another input\'s newer records until they are buffered', () => {
  // The task opened with both inputs at their end by the broker's end offsets; orders records were fetched
  // meanwhile, not yet buffered. A fetch that then finds orders empty (its records are already fetched) must
  // not let a newer basket record pass them.
  const w = new FetchedWhileOpening();
  w.add(0, 'orders', 11n);
  const g = new PartitionGroup<string>({ waitFor: ['basket', 'orders'], others: [] });
  g.setBehind('basket', false);
  g.setBehind('orders', false);
  for (const topic of w.take(0, new Map([['orders', '10'], ['basket', '20']]))) g.setBehind(topic, true);
  g.add('basket', [{ record: 'b-new', timestamp: 200, arrival: 5 }]);
  g.confirm('orders', 9);
  assert.equal(g.next().kind, 'waiting', 'the newer basket record waits');
  g.add('orders', [{ record: 'o-old', timestamp: 100, arrival: 4 }]);
  g.setBehind('orders', false);
  const first = g.next();
  assert.equal(first.kind === 'record' ? first.item.record : first.kind, 'o-old');
});
