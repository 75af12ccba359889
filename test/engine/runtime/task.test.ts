import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  jsonCodec,
  keyValueStore,
  TopologyBuilder,
  type Processor,
  type ProcessorContext,
  type StreamRecord,
  type Timer,
} from '../../../src/engine/api/index.js';
import { TopologyTestDriver } from '../../../src/engine/testing/test-driver.js';
import { MemoryChangelog } from '../../../src/engine/state/changelog.js';
import { tempDir } from '../../helpers.js';

interface Ev {
  id: string;
  occurredAt: number;
  kind: 'touch' | 'stop' | 'wall';
}
const counts = keyValueStore('counts', jsonCodec<number>());

/** Counts events per key and, 100 ms of stream time after the last one, forwards a "quiet" record. */
class QuietDetector implements Processor<Ev, { key: string; count: number; at: number }> {
  #ctx!: ProcessorContext<{ key: string; count: number; at: number }>;
  init(ctx: ProcessorContext<{ key: string; count: number; at: number }>): void {
    this.#ctx = ctx;
  }
  async process(r: StreamRecord<Ev>): Promise<void> {
    const key = r.key as string;
    const store = this.#ctx.getStore(counts);
    if (r.value.kind === 'stop') {
      this.#ctx.timers.cancel('quiet', key);
      return;
    }
    if (r.value.kind === 'wall') {
      this.#ctx.timers.register({ name: 'ping', key, time: this.#ctx.wallClockTime() + 1000, domain: 'wall-clock' });
      return;
    }
    store.put(key, ((await store.get(key)) ?? 0) + 1);
    this.#ctx.timers.register({ name: 'quiet', key, time: r.timestamp + 100, domain: 'stream-time', data: { eventId: r.value.id } });
  }
  async onTimer(t: Timer): Promise<void> {
    const count = (await this.#ctx.getStore(counts).get(t.key)) ?? 0;
    this.#ctx.forward({ key: t.key, value: { key: t.key, count, at: t.time }, timestamp: t.time }, t.name === 'ping' ? 'pings' : 'upper');
  }
}

class Upper implements Processor<{ key: string; count: number; at: number }, string> {
  #ctx!: ProcessorContext<string>;
  init(ctx: ProcessorContext<string>): void {
    this.#ctx = ctx;
  }
  process(r: StreamRecord<{ key: string; count: number; at: number }>): void {
    this.#ctx.forward({ key: r.key, value: `${r.value.key.toUpperCase()}:${r.value.count}@${r.value.at}`, timestamp: r.timestamp });
  }
}

function topology() {
  return new TopologyBuilder('test-app')
    .addSource('in', ['events'])
    .addProcessor('detect', () => new QuietDetector(), ['in'])
    .addProcessor('upper', () => new Upper(), ['detect'])
    .addSink('out', 'quiet', ['upper'])
    .addSink('pings', 'pings', ['detect'])
    .addStore(counts, ['detect'])
    .build();
}

const ev = (id: string, occurredAt: number, kind: Ev['kind'] = 'touch'): Ev => ({ id, occurredAt, kind });

test('stream-time timers fire in time order before the record that passes them, and forwards reach sinks', async () => {
  const d = await TopologyTestDriver.create(topology());
  try {
    await d.pipe('events', 'a', ev('1', 1000));
    await d.pipe('events', 'b', ev('2', 1050));
    await d.pipe('events', 'a', ev('3', 1060)); // re-arms a to 1160
    assert.deepEqual(d.timers('a').map((t) => t.time), [1160]);
    await d.pipe('events', 'c', ev('4', 1200)); // passes b (1150) and a (1160)
    assert.deepEqual(d.readOutput<string>('quiet').map((o) => o.value), ['B:1@1150', 'A:2@1160']);
    assert.equal(d.streamTime, 1200);
    await d.pipe('events', 'c', ev('5', 1250, 'stop'));
    assert.equal(await d.advanceStreamTime(10_000), 0, 'cancelled timer does not fire');
    assert.deepEqual(d.readOutput('quiet'), []);
  } finally {
    await d.close();
  }
});

test('late records do not move stream time back', async () => {
  const d = await TopologyTestDriver.create(topology());
  try {
    await d.pipe('events', 'a', ev('1', 5000));
    await d.pipe('events', 'b', ev('2', 4000));
    assert.equal(d.streamTime, 5000);
    await d.advanceStreamTime(5100);
    assert.deepEqual(d.readOutput<string>('quiet').map((o) => o.value), ['B:1@4100', 'A:1@5100']);
  } finally {
    await d.close();
  }
});

test('timers and stores survive a restart of the task on the same RocksDB directory', async () => {
  const t = tempDir();
  const d = await TopologyTestDriver.create(topology(), { stateDir: t.dir });
  try {
    await d.pipe('events', 'a', ev('1', 1000));
    await d.pipe('events', 'a', ev('2', 1010));
    await d.restart();
    assert.equal(await d.store(counts).get('a'), 2);
    assert.deepEqual(d.timers('a'), [{ name: 'quiet', key: 'a', time: 1110, domain: 'stream-time', data: { eventId: '2' } }]);
    assert.equal(d.streamTime, 1010);
    await d.advanceStreamTime(2000);
    assert.deepEqual(d.readOutput<string>('quiet').map((o) => o.value), ['A:2@1110']);
  } finally {
    await d.close();
    t.remove();
  }
});

test('wall-clock timers fire on the wall clock; quiet partitions advance stream time', async () => {
  const d = await TopologyTestDriver.create(topology(), { wallClock: 1_000_000, idleAdvanceMs: 5000 });
  try {
    await d.pipe('events', 'w', ev('1', 999_000, 'wall'));
    await d.pipe('events', 'a', ev('2', 999_000)); // quiet timer at 999_100; lag 1000 ms
    await d.advanceWallClock(999);
    assert.deepEqual(d.readOutput('pings'), []);
    await d.advanceWallClock(1);
    assert.equal(d.readOutput('pings').length, 1);
    assert.deepEqual(d.readOutput('quiet'), [], 'not idle long enough yet');
    await d.advanceWallClock(5000); // idle 6 s: stream time → now - lag = 1_005_000
    assert.deepEqual(d.readOutput<string>('quiet').map((o) => o.value), ['A:1@999100']);
    assert.equal(d.streamTime, 1_005_000);
  } finally {
    await d.close();
  }
});

test('timers move with the changelog: a task restored elsewhere fires them', async () => {
  const log = new MemoryChangelog();
  const d1 = await TopologyTestDriver.create(topology(), { changelog: log });
  await d1.pipe('events', 'a', ev('1', 1000));
  await d1.close();
  const t = tempDir();
  try {
    const d2 = await TopologyTestDriver.create(topology(), { stateDir: t.dir });
    await d2.task.state.restoreFrom(log);
    await d2.restart(); // reload the timer queue from the restored state
    await d2.advanceStreamTime(1100);
    assert.deepEqual(d2.readOutput<string>('quiet').map((o) => o.value), ['A:1@1100']);
    await d2.close();
  } finally {
    t.remove();
  }
});

test('a processor cannot reach a store it is not connected to', async () => {
  const other = keyValueStore('other', jsonCodec<number>());
  const topo = new TopologyBuilder('t2')
    .addSource('in', ['events'])
    .addProcessor('p', () => ({ process: async () => void (await ctxRef.ctx?.getStore(other).get('x')) , init: (c: ProcessorContext) => void (ctxRef.ctx = c) }), ['in'])
    .addProcessor('q', () => ({ process: () => undefined }), ['in'])
    .addStore(other, ['q'])
    .build();
  const ctxRef: { ctx?: ProcessorContext } = {};
  const d = await TopologyTestDriver.create(topo);
  try {
    await assert.rejects(d.pipe('events', 'k', ev('1', 1)), (e: Error & { code?: string }) => e.code === 'KAIROS_ERR_STORE_NOT_CONNECTED');
  } finally {
    await d.close();
  }
});

test('topology builder rejects malformed graphs and describes itself', () => {
  assert.throws(() => new TopologyBuilder('x').addProcessor('p', () => ({ process: () => undefined }), ['nope']), /parent "nope" is not defined/);
  assert.throws(() => new TopologyBuilder('x').addSource('s', ['t']).addSource('s', ['u']), /defined twice/);
  assert.throws(() => new TopologyBuilder('x').addSource('s', ['t']).build(), /has no processor/);
  const text = topology().describe();
  assert.match(text, /Source: in \(topics: \[events\]\) --> detect/);
  assert.match(text, /counts: key-value, codec json, changelog test-app-counts-changelog/);
  const mermaid = topology().describeMermaid();
  assert.match(mermaid, /^flowchart LR/);
  assert.match(mermaid, /n_detect -\.- s_counts/);
});

test('a timer registered at or below stream time fires at once, not with a later record (a record that reached the task late)', async () => {
  const d = await TopologyTestDriver.create(topology());
  try {
    await d.pipe('events', 'b', ev('1', 5000)); // stream time 5000; b's timer at 5100
    await d.pipe('events', 'a', ev('2', 1000)); // late: a's timer at 1100, below stream time
    assert.deepEqual(d.readOutput<string>('quiet').map((o) => o.value), ['A:1@1100'], 'fired with the record that registered it');
    assert.equal(d.streamTime, 5000, 'stream time never moves back');
  } finally {
    await d.close();
  }
});

test('idle advance needs a known lag: a task that has seen no record never jumps to the wall clock; the lag survives a restore', async () => {
  const d = await TopologyTestDriver.create(topology(), { wallClock: 1_000_000, idleAdvanceMs: 5000 });
  try {
    await d.advanceWallClock(60_000);
    assert.equal(d.streamTime, -Infinity, 'no record, no lag: stream time stays where the data is');
    // Events of three days ago, produced a minute after the task started: their timers still fire.
    const old = 1_060_000 - 3 * 86_400_000;
    await d.pipe('events', 'a', ev('1', old));
    await d.pipe('events', 'b', ev('2', old + 50));
    await d.pipe('events', 'c', ev('3', old + 200)); // passes a's and b's timers
    assert.deepEqual(d.readOutput<string>('quiet').map((o) => o.value), ['A:1@' + String(old + 100), 'B:1@' + String(old + 150)]);
    // Quiet now: stream time follows the wall clock minus the lag seen on the last record.
    await d.advanceWallClock(6000);
    assert.deepEqual(d.readOutput<string>('quiet').map((o) => o.value), ['C:1@' + String(old + 300)]);
  } finally {
    await d.close();
  }
  const log = new MemoryChangelog();
  const t = tempDir();
  try {
    const d1 = await TopologyTestDriver.create(topology(), { changelog: log, wallClock: 1_000_000, idleAdvanceMs: 5000 });
    await d1.pipe('events', 'a', ev('1', 999_000)); // lag 1000 ms, timer at 999_100
    await d1.close();
    const d2 = await TopologyTestDriver.create(topology(), { stateDir: t.dir, wallClock: 1_000_500, idleAdvanceMs: 5000 });
    await d2.task.state.restoreFrom(log);
    await d2.restart();
    assert.equal(d2.task.state.wallClockLag, 1000, 'the lag travels with the changelog');
    await d2.advanceWallClock(6000); // quiet since open: stream time → now - 1000
    assert.deepEqual(d2.readOutput<string>('quiet').map((o) => o.value), ['A:1@999100']);
    await d2.close();
  } finally {
    t.remove();
  }
});

test('timers reach the timer store with each commit (the queue holds them in between): a timer re-armed 50 times is one write, its latest; fired ones are deletes; restored, the pending one fires', async () => {
  const log = new MemoryChangelog();
  const timerWrites: string[] = [];
  const counting = {
    send(task: string, entries: Parameters<MemoryChangelog['send']>[1]): Promise<void> {
      for (const e of entries) if (e.store === '_timers') timerWrites.push(e.value === null ? 'delete' : JSON.parse(e.value.subarray(8).toString('utf8')).time);
      return log.send(task, entries);
    },
  };
  const d1 = await TopologyTestDriver.create(topology(), { changelog: counting, commitEachRecord: false });
  for (let i = 0; i < 50; i++) await d1.pipe('events', 'a', ev(String(i), 1000 + i));
  await d1.task.commit();
  assert.deepEqual(timerWrites, [1149], '50 registrations of one timer between commits: its last');
  // Armed and fired between two commits (b at 2000, fired by c's record at 2200): only a delete, as before.
  timerWrites.length = 0;
  await d1.pipe('events', 'b', ev('b', 2000));
  await d1.pipe('events', 'c', ev('c', 2200));
  await d1.task.commit();
  assert.deepEqual(timerWrites.map(String).sort(), ['2300', 'delete', 'delete'], 'a fired (its 1149 < 2000), b fired (2100 < 2200), c armed');
  await d1.close();
  const t = tempDir();
  try {
    const d2 = await TopologyTestDriver.create(topology(), { stateDir: t.dir });
    await d2.task.state.restoreFrom(log);
    await d2.restart();
    assert.deepEqual(d2.timers('c').map((x) => x.time), [2300]);
    assert.deepEqual(d2.timers('a'), []);
    await d2.advanceStreamTime(2300);
    assert.deepEqual(d2.readOutput<string>('quiet').map((o) => o.value), ['C:1@2300']);
    await d2.close();
  } finally {
    t.remove();
  }
});

test('prefetchKey: a batch loads the keys its records will read from a store keyed otherwise (sku + customer) with one multi-get; a key function that throws is ignored', async () => {
  interface Change {
    customer: string;
  }
  let throwFor = '';
  const watchers = keyValueStore('watchers', jsonCodec<number>(), {
    prefetchKey: (r) => {
      const c = (r.value as Change).customer;
      if (c === throwFor) throw new Error('bad value');
      return `${r.key ?? ''}|${c}`;
    },
  });
  class Watch implements Processor<Change, never> {
    #ctx!: ProcessorContext<never>;
    init(ctx: ProcessorContext<never>): void {
      this.#ctx = ctx;
    }
    async process(r: StreamRecord<Change>): Promise<void> {
      const store = this.#ctx.getStore(watchers);
      const key = `${r.key ?? ''}|${r.value.customer}`;
      store.put(key, ((await store.get(key)) ?? 0) + 1);
    }
  }
  const topo = new TopologyBuilder('pk').addSource('in', ['changes']).addProcessor('watch', () => new Watch(), ['in']).addStore(watchers, ['watch']).build();
  const t = tempDir();
  const d = await TopologyTestDriver.create(topo, { stateDir: t.dir });
  try {
    const batch = ['c1', 'c2', 'c3', 'c4'].map((customer, i) => ({ topic: 'changes', key: 'sku-1', value: { customer }, timestamp: 1000 + i }));
    for (const r of batch) await d.pipe(r.topic, r.key, r.value, { timestamp: r.timestamp });
    // On the same disk the store is no longer known to be complete: a key not in memory must be loaded.
    await d.restart();
    const stats = d.task.state.stats;
    throwFor = 'c4';
    await d.task.prefetch(batch);
    assert.equal(stats.prefetched, 3, 'c1-c3 loaded ahead; c4 skipped (its key function threw)');
    const missesBefore = stats.cacheMisses;
    for (const r of batch.slice(0, 3)) await d.pipe(r.topic, r.key, r.value, { timestamp: r.timestamp + 10 });
    assert.equal(stats.cacheMisses, missesBefore, 'the prefetched keys were read from memory');
    assert.equal(await d.store(watchers).get('sku-1|c2'), 2);
  } finally {
    await d.close();
    t.remove();
  }
});

test('a timer firing loads ahead only the record-keyed stores its processor and those downstream of it read, not every such store of the task', async () => {
  const seen = keyValueStore('seen', jsonCodec<number>(), { keyedByRecordKey: true });
  const tally = keyValueStore('tally', jsonCodec<number>(), { keyedByRecordKey: true });
  const other = keyValueStore('other', jsonCodec<number>(), { keyedByRecordKey: true });
  /** Remembers a key and fires 100 ms later; downstream, Tally counts the firing. */
  class Remind implements Processor<number, number> {
    #ctx!: ProcessorContext<number>;
    init(ctx: ProcessorContext<number>): void {
      this.#ctx = ctx;
    }
    process(r: StreamRecord<number>): void {
      this.#ctx.getStore(seen).put(r.key as string, r.value);
      this.#ctx.timers.register({ name: 'remind', key: r.key as string, time: r.timestamp + 100, domain: 'stream-time' });
    }
    async onTimer(t: Timer): Promise<void> {
      this.#ctx.forward({ key: t.key, value: (await this.#ctx.getStore(seen).get(t.key)) ?? 0, timestamp: t.time });
    }
  }
  class Tally implements Processor<number, never> {
    #ctx!: ProcessorContext<never>;
    init(ctx: ProcessorContext<never>): void {
      this.#ctx = ctx;
    }
    async process(r: StreamRecord<number>): Promise<void> {
      const store = this.#ctx.getStore(tally);
      store.put(r.key as string, ((await store.get(r.key as string)) ?? 0) + r.value);
    }
  }
  /** Another source's processor with its own record-keyed store: a reminder's firing never reads it. */
  class Other implements Processor<number, never> {
    #ctx!: ProcessorContext<never>;
    init(ctx: ProcessorContext<never>): void {
      this.#ctx = ctx;
    }
    process(r: StreamRecord<number>): void {
      this.#ctx.getStore(other).put(r.key as string, r.value);
    }
  }
  const topo = new TopologyBuilder('tp')
    .addSource('in', ['reminders'])
    .addSource('in2', ['others'])
    .addProcessor('remind', () => new Remind(), ['in'])
    .addProcessor('tally', () => new Tally(), ['remind'])
    .addProcessor('other', () => new Other(), ['in2'])
    .addStore(seen, ['remind'])
    .addStore(tally, ['tally'])
    .addStore(other, ['other'])
    .build();
  const t = tempDir();
  const d = await TopologyTestDriver.create(topo, { stateDir: t.dir });
  try {
    await d.pipe('others', 'k0', 1, { timestamp: 500 });
    for (const [i, key] of ['k1', 'k2', 'k3'].entries()) await d.pipe('reminders', key, i + 1, { timestamp: 1000 + i });
    await d.advanceStreamTime(1200);
    for (const [i, key] of ['k1', 'k2', 'k3'].entries()) await d.pipe('reminders', key, i + 1, { timestamp: 1300 + i });
    // Reopened on the same disk, no store that holds anything is known to be complete: keys must be loaded.
    await d.restart();
    const stats = d.task.state.stats;
    const before = stats.prefetched;
    await d.advanceStreamTime(2000);
    assert.equal(stats.prefetched - before, 6, 'k1-k3 loaded ahead from seen and tally (downstream), none from other');
    assert.deepEqual(await Promise.all(['k1', 'k2', 'k3'].map((k) => d.store(tally).get(k))), [2, 4, 6]);
  } finally {
    await d.close();
    t.remove();
  }
});
