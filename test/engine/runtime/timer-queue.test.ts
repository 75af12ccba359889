import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TimerDomain } from '../../../src/engine/api/processor.js';
import { TimerQueue, timerId, type QueuedTimer } from '../../../src/engine/runtime/timer-queue.js';
import { mulberry32 } from '../../../src/util/prng.js';

const order = (a: QueuedTimer, b: QueuedTimer): number => a.time - b.time || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

test('timer queue: re-registrations (a new timer object, or the pending one re-armed) move a timer in place, cancels leave at once, and due timers pop in (time, id) order, as a sorted model says', () => {
  const rnd = mulberry32(5);
  const q = new TimerQueue();
  const model = new Map<string, QueuedTimer>();
  let now = 0;
  for (let step = 0; step < 20_000; step++) {
    const r = rnd();
    const key = `c${Math.floor(rnd() * 200)}`;
    const name = rnd() < 0.5 ? 'gap' : 'checkout';
    const id = timerId('p', name, key);
    if (r < 0.6) {
      const domain: TimerDomain = rnd() < 0.9 ? 'stream-time' : 'wall-clock';
      const time = now + Math.floor(rnd() * 1000);
      const pending = q.find('p', name, key);
      assert.equal(pending, model.get(id), 'find gives the pending timer of (processor, name, key)');
      if (pending !== undefined && pending.domain === domain && rnd() < 0.5) {
        // Re-armed in place, as StreamTask.registerTimer does: earlier or later, the same object.
        q.retime(pending, time, rnd() < 0.5 ? step : undefined);
        assert.equal(q.get(id), pending);
        continue;
      }
      const t: QueuedTimer = { node: 'p', id, name, key, time, domain };
      q.add(t);
      model.set(id, t);
    } else if (r < 0.75) {
      assert.equal(q.remove(id)?.id, model.get(id)?.id);
      model.delete(id);
    } else {
      now += Math.floor(rnd() * 300);
      for (const domain of ['stream-time', 'wall-clock'] as const) {
        const want = [...model.values()].filter((t) => t.domain === domain && t.time <= now).sort(order);
        const got: QueuedTimer[] = [];
        for (let t = q.popDue(domain, now); t; t = q.popDue(domain, now)) got.push(t);
        assert.deepEqual(got.map((t) => t.id), want.map((t) => t.id), `step ${step}`);
        for (const t of got) model.delete(t.id);
        const next = [...model.values()].filter((t) => t.domain === domain).sort(order)[0];
        assert.equal(q.nextTime(domain), next?.time);
      }
    }
    assert.equal(q.size, model.size);
  }
  assert.deepEqual(q.forKey('c1').map((t) => t.id), [...model.values()].filter((t) => t.key === 'c1').sort(order).map((t) => t.id));
});

test('timer queue: retime sets and clears the data; a removed timer is not found', () => {
  const q = new TimerQueue();
  const t: QueuedTimer = { node: 'p', id: timerId('p', 'n', 'k'), name: 'n', key: 'k', time: 10, domain: 'stream-time' };
  q.add(t);
  q.retime(t, 5, { a: 1 });
  assert.deepEqual([t.time, t.data], [5, { a: 1 }]);
  q.retime(t, 7, undefined);
  assert.equal(t.data, undefined);
  assert.equal(q.nextTime('stream-time'), 7);
  assert.equal(q.popDue('stream-time', 7), t);
  assert.equal(q.find('p', 'n', 'k'), undefined);
  assert.equal(q.size, 0);
});
