import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { jsonCodec, keyValueStore, NOT_LOADED, sessionStore, windowStore } from '../../../src/engine/api/index.js';
import { TaskState } from '../../../src/engine/state/task-state.js';
import { MemoryChangelog, type ChangelogSendOptions } from '../../../src/engine/state/changelog.js';
import { KeyValueView, SessionView, WindowView } from '../../../src/engine/state/stores.js';
import { tempDir } from '../../helpers.js';

const kv = keyValueStore('things', jsonCodec<{ n: number }>());
const ttl = keyValueStore('fleeting', jsonCodec<string>(), { ttlMs: 1000 });

test('real RocksDB: writes are invisible on disk until commit, then survive a reopen with positions and stream time', async () => {
  const t = tempDir();
  try {
    const s1 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
    s1.streamTime = 5000;
    s1.put('things', 'a', { n: 1 });
    s1.setPosition('shop.basket.v1', 0, '42');
    assert.deepEqual(await s1.get('things', 'a'), { n: 1 });
    await s1.close(); // closed without commit: the write is lost, as it must be
    const s2 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
    assert.equal(await s2.get('things', 'a'), undefined);
    assert.equal(s2.position('shop.basket.v1', 0), undefined);
    s2.streamTime = 7000;
    s2.put('things', 'a', { n: 2 });
    s2.setPosition('shop.basket.v1', 0, '43');
    await s2.commit();
    await s2.close();
    const s3 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
    assert.deepEqual(await s3.get('things', 'a'), { n: 2 });
    assert.equal(s3.position('shop.basket.v1', 0), '43');
    assert.equal(s3.streamTime, 7000);
    await s3.close();
  } finally {
    t.remove();
  }
});

test('scan merges uncommitted puts and deletes over RocksDB in byte order, and pages with a cursor', async () => {
  const t = tempDir();
  const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
  try {
    for (const k of ['b', 'd', 'f', 'h']) s.put('things', k, { n: k.charCodeAt(0) });
    await s.commit();
    s.put('things', 'a', { n: 0 });
    s.put('things', 'e', { n: 0 });
    s.delete('things', 'd');
    const view = new KeyValueView<{ n: number }>(s, 'things');
    assert.deepEqual((await view.scan()).map((e) => e.key), ['a', 'b', 'e', 'f', 'h']);
    const page1 = await view.scan({ limit: 2 });
    assert.deepEqual(page1.map((e) => e.key), ['a', 'b']);
    const page2 = await view.scan({ limit: 2, after: 'b' });
    assert.deepEqual(page2.map((e) => e.key), ['e', 'f']);
    assert.deepEqual((await view.scan({ before: 'f' })).map((e) => e.key), ['a', 'b', 'e']);
    s.put('things', 'pre:1', { n: 1 });
    s.put('things', 'pre:2', { n: 2 });
    s.put('things', 'prf', { n: 3 });
    assert.deepEqual((await view.scan({ prefix: 'pre:' })).map((e) => e.key), ['pre:1', 'pre:2']);
  } finally {
    await s.close();
    t.remove();
  }
});

test('TTL sweep passes follow stream time: a new pass starts only after the expiry bound moved a tenth of the TTL', async () => {
  const t = tempDir();
  const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [ttl] });
  try {
    s.streamTime = 1500;
    await s.commit(); // first pass (bound 500)
    s.put('fleeting', 'a', 'x', 1060);
    s.streamTime = 2050;
    await s.commit(); // bound 1050 moved 550 ≥ 100: a pass, 'a' (1060) not expired yet
    assert.equal(s.stats.expired, 0);
    s.streamTime = 2070;
    assert.equal(await s.get('fleeting', 'a'), undefined, 'reads hide it at once (1060 ≤ 2070 − 1000)');
    await s.commit(); // bound 1070 moved 20 < 100: no pass
    assert.equal(s.stats.expired, 0, 'no sweep pass for a small step of stream time');
    s.streamTime = 2200;
    await s.commit(); // bound 1200 moved 150: a pass deletes it
    assert.equal(s.stats.expired, 1);
  } finally {
    await s.close();
    t.remove();
  }
});

test('TTL: entries older than ttlMs of stream time read as absent and are swept into deletes', async () => {
  const t = tempDir();
  const log = new MemoryChangelog();
  const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [ttl], changelog: log });
  try {
    s.streamTime = 1000;
    s.put('fleeting', 'old', 'x');
    s.streamTime = 1500;
    s.put('fleeting', 'new', 'y');
    await s.commit();
    s.streamTime = 2000;
    assert.equal(await s.get('fleeting', 'old'), undefined, 'written at 1000, ttl 1000, now 2000');
    assert.equal(await s.get('fleeting', 'new'), 'y');
    await s.commit();
    assert.equal(s.stats.expired, 1);
    assert.equal(log.size('0_0'), 3, 'the sweep logged a tombstone for the expired key (beside the live key and the stream time)');
    assert.equal((await s.scan('fleeting')).length, 1);
  } finally {
    await s.close();
    t.remove();
  }
});

test('restore takes stream time from the committed stream time, never from changelog record timestamps (a broker may stamp them with the wall clock)', async () => {
  const a = tempDir();
  const b = tempDir();
  const log = new MemoryChangelog();
  try {
    const s1 = await TaskState.open({ dir: a.dir, taskId: '0_4', stores: [kv], changelog: log });
    s1.streamTime = 10;
    s1.put('things', 'k', { n: 1 });
    await s1.commit();
    await s1.close();
    const s2 = await TaskState.open({ dir: join(b.dir, 'task'), taskId: '0_4', stores: [kv] });
    for await (const batch of log.read('0_4')) await s2.restore(batch.map((e) => ({ ...e, timestamp: Date.now() })));
    assert.equal(s2.streamTime, 10);
    assert.deepEqual(await s2.get('things', 'k'), { n: 1 });
    await s2.close();
  } finally {
    a.remove();
    b.remove();
  }
});

test('changelog: every committed change is logged and a fresh database restores from it', async () => {
  const a = tempDir();
  const b = tempDir();
  const log = new MemoryChangelog();
  try {
    const s1 = await TaskState.open({ dir: a.dir, taskId: '0_3', stores: [kv], changelog: log });
    s1.streamTime = 10;
    for (let i = 0; i < 100; i++) s1.put('things', `k${i}`, { n: i });
    s1.setPosition('shop.basket.v1', 3, '100');
    await s1.commit();
    s1.delete('things', 'k7');
    s1.put('things', 'k8', { n: 800 });
    await s1.commit();
    await s1.close();
    const s2 = await TaskState.open({ dir: join(b.dir, 'task'), taskId: '0_3', stores: [kv] });
    const restored = await s2.restoreFrom(log);
    assert.equal(restored, 102, '100 store entries, the consumed position and the stream time');
    assert.equal(s2.position('shop.basket.v1', 3), '100', 'positions travel with the changelog');
    assert.equal(await s2.get('things', 'k7'), undefined);
    assert.deepEqual(await s2.get('things', 'k8'), { n: 800 });
    assert.equal((await s2.scan('things')).length, 99);
    assert.equal(s2.streamTime, 10);
    await s2.close();
  } finally {
    a.remove();
    b.remove();
  }
});

test('a failing changelog commits nothing locally', async () => {
  const t = tempDir();
  const s = await TaskState.open({
    dir: t.dir,
    taskId: '0_0',
    stores: [kv],
    changelog: { send: () => Promise.reject(new Error('broker down')) },
  });
  try {
    s.put('things', 'a', { n: 1 });
    await assert.rejects(s.commit(), (e: Error & { code?: string }) => e.code === 'KAIROS_ERR_CHANGELOG');
    assert.equal(s.dirtyCount, 1, 'the change stays pending for the next try');
  } finally {
    await s.close();
    t.remove();
  }
});

test('keys reach RocksDB as UTF-8 whatever their characters (NUL, accents, surrogate pairs; a lone surrogate as U+FFFD, as Buffer.from encodes it): commit, reopen, get, prefetch and scan agree', async () => {
  const t = tempDir();
  const keys = ['plain', 'a\u0000b', 'café', '😀-𝄞', '\ue000\uffee'];
  const lone = 'x\ud800y';
  try {
    const s1 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv], changelog: new MemoryChangelog() });
    keys.forEach((k, i) => s1.put('things', k, { n: i }));
    s1.put('things', lone, { n: 99 });
    await s1.commit();
    await s1.close();
    const s2 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
    for (const [i, k] of keys.entries()) assert.deepEqual(await s2.get('things', k), { n: i }, `get ${JSON.stringify(k)}`);
    // The lone surrogate was stored under its replacement character, as Buffer.from(key, 'utf8') writes it.
    assert.deepEqual(await s2.get('things', 'x\ufffdy'), { n: 99 });
    await s2.close();
    const s4 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
    assert.equal(await s4.prefetchMany([['things', [...keys, 'absent']]]), keys.length + 1);
    for (const [i, k] of keys.entries()) assert.deepEqual(await s4.get('things', k), { n: i }, `prefetched ${JSON.stringify(k)}`);
    const scanned = (await s4.scan('things')).map((r) => r.key);
    const expected = [...keys, 'x\ufffdy'].sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
    assert.deepEqual(scanned, expected);
    await s4.close();
  } finally {
    t.remove();
  }
});

test('peek answers synchronously what get would, without a RocksDB read: cached values, absent keys of a complete store; NOT_LOADED otherwise', async () => {
  const t = tempDir();
  try {
    const s1 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
    assert.equal(s1.peek('things', 'a'), undefined, 'a fresh store is complete: absent without a read');
    s1.put('things', 'a', { n: 1 });
    assert.deepEqual(s1.peek('things', 'a'), { n: 1 });
    await s1.commit();
    await s1.close();
    const s2 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
    try {
      const reads = s2.stats.reads;
      assert.equal(s2.peek('things', 'a'), NOT_LOADED, 'on disk, not cached: get must read it');
      assert.equal(s2.peek('things', 'zzz'), NOT_LOADED, 'an incomplete store cannot tell absent without a read');
      assert.equal(s2.stats.reads, reads, 'peek never reads RocksDB');
      assert.deepEqual(await s2.get('things', 'a'), { n: 1 });
      assert.deepEqual(s2.peek('things', 'a'), { n: 1 }, 'cached once read');
      assert.equal(await s2.prefetchMany([['things', ['zzz']]]), 1);
      assert.equal(s2.peek('things', 'zzz'), undefined, 'absent, known from the prefetch');
      s2.delete('things', 'a');
      assert.equal(s2.peek('things', 'a'), undefined, 'an uncommitted delete');
      assert.equal(new KeyValueView<{ n: number }>(s2, 'things').peek('zzz'), undefined, 'the store view answers the same');
    } finally {
      await s2.close();
    }
  } finally {
    t.remove();
  }
});

test('cache: a bounded number of clean entries stay in memory; misses go to RocksDB', async () => {
  const t = tempDir();
  const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv], cacheMaxEntries: 100 });
  try {
    for (let i = 0; i < 1000; i++) s.put('things', `k${i}`, { n: i });
    await s.commit();
    s.stats.cacheHits = s.stats.cacheMisses = 0;
    for (let i = 0; i < 1000; i++) assert.deepEqual(await s.get('things', `k${i}`), { n: i });
    assert.ok(s.stats.cacheMisses > 800, `expected misses after eviction, got ${s.stats.cacheMisses}`);
    assert.ok((await s.approximateSize()) >= 0);
  } finally {
    await s.close();
    t.remove();
  }
});

test('cache: eviction gives entries read since it last passed a second chance (hot keys stay cached, cold ones go)', async () => {
  const t = tempDir();
  const first = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
  for (let i = 0; i < 100; i++) first.put('things', `k${i}`, { n: i });
  await first.commit();
  await first.close();
  // Reopened: the store is not complete, so misses read RocksDB and their answers (absent) enter the cache.
  const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv], cacheMaxEntries: 100 });
  try {
    for (let i = 0; i < 100; i++) assert.deepEqual(await s.get('things', `k${i}`), { n: i });
    // k0..k9 are the oldest entries of the Map, and read again: eviction passes them over for the unread ones.
    for (let i = 0; i < 10; i++) assert.deepEqual(await s.get('things', `k${i}`), { n: i });
    // 50 misses read RocksDB (absent) and enter the full cache, evicting as they go.
    for (let i = 0; i < 50; i++) assert.equal(await s.get('things', `new${i}`), undefined);
    assert.ok(s.stats.evicted >= 50, `expected evictions, got ${s.stats.evicted}`);
    const misses = s.stats.cacheMisses;
    for (let i = 0; i < 10; i++) assert.deepEqual(await s.get('things', `k${i}`), { n: i });
    assert.equal(s.stats.cacheMisses, misses, 'the keys read again stayed cached');
    // Cold keys (loaded once, never read again) went first: reading them back needs RocksDB and gives their values.
    for (let i = 10; i < 60; i++) assert.deepEqual(await s.get('things', `k${i}`), { n: i });
    assert.ok(s.stats.cacheMisses - misses >= 40, `expected the cold keys evicted, got ${s.stats.cacheMisses - misses} misses`);
  } finally {
    await s.close();
    t.remove();
  }
});

test('cache memory budget: after a commit the cache fits its byte budget (largest store first), reads stay right, and a complete store becomes incomplete only when a live entry goes', async () => {
  const t = tempDir();
  const big = keyValueStore('big', jsonCodec<string>());
  const small = keyValueStore('small', jsonCodec<number>());
  const budget = 256 * 1024;
  const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [big, small], cacheMaxBytes: budget });
  try {
    // ~1 KB values: 2,000 of them are far over a 256 KiB budget; uncommitted, they all stay.
    for (let i = 0; i < 2000; i++) s.put('big', `b${i}`, 'x'.repeat(1000) + i);
    for (let i = 0; i < 50; i++) s.put('small', `s${i}`, i);
    assert.equal(s.stats.evicted, 0, 'dirty entries are never evicted');
    await s.commit();
    assert.ok(s.cacheBytes <= budget, `cache ${s.cacheBytes} B over the ${budget} B budget after the commit`);
    assert.ok(s.stats.evicted > 1500, `expected most big entries evicted, got ${s.stats.evicted}`);
    // The small store is not the largest: it keeps its entries (no misses reading it back).
    const misses = s.stats.cacheMisses;
    for (let i = 0; i < 50; i++) assert.equal(await s.get('small', `s${i}`), i);
    assert.equal(s.stats.cacheMisses, misses, 'the small store stayed cached');
    // Evicted entries read back from RocksDB, and reading them keeps the budget.
    for (let i = 0; i < 2000; i++) assert.equal(await s.get('big', `b${i}`), 'x'.repeat(1000) + i);
    assert.ok(s.stats.cacheMisses - misses > 1500);
    assert.ok(s.cacheBytes <= budget * 1.1, `cache ${s.cacheBytes} B after reading back`);
    // An evicted live entry makes the store incomplete: a scan now reads RocksDB and still sees every row.
    assert.equal((await s.scan('big')).length, 2000);
    assert.ok(s.stats.scansOnDisk >= 1);
  } finally {
    await s.close();
    t.remove();
  }
});

test('a spill (commit with coldest) writes only the uncommitted entries not read since, oldest first, until it has the bytes asked for, and they leave the cache; the entries left uncommitted are estimated anew from what it measured; the entries in use stay', async () => {
  const t = tempDir();
  const big = keyValueStore('big', jsonCodec<string>());
  const budget = 256 * 1024;
  const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [big], cacheMaxBytes: budget });
  const key = (i: number): string => `b${String(i).padStart(4, '0')}`;
  try {
    for (let i = 0; i < 1000; i++) s.put('big', key(i), 'x'.repeat(1000) + i);
    // The last 50 are in use: read since they were written.
    for (let i = 950; i < 1000; i++) assert.equal(s.peek('big', key(i)), 'x'.repeat(1000) + i);
    assert.equal(s.dirtyCount, 1000);
    // Before any commit, one write in 32 was encoded to measure the store's values: every entry after the first
    // sample is estimated from ~1 KB values, only the first 31 from the initial guess.
    const perEntry = s.cacheBytes / 1000;
    assert.ok(perEntry > 1300, `${Math.round(perEntry)} B per entry before any commit`);
    const bytes = s.cacheBytes - budget * 0.7;
    const { changes } = await s.commit({ coldest: bytes });
    // Taken: the oldest unread entries, just enough for `bytes` (the 31 guessed small ones count less); written,
    // they left the cache.
    const expected = Math.ceil(bytes / perEntry);
    assert.ok(changes >= expected && changes <= expected + 31, `the entries the spill asked for, no more: ${changes}, expected ${expected} to ${expected + 31}`);
    assert.equal(s.dirtyCount, 1000 - changes, 'what the spill did not take stays uncommitted');
    assert.equal(s.stats.evicted, changes);
    for (let i = 0; i < changes; i++) assert.equal(s.peek('big', key(i)), NOT_LOADED, `${key(i)} written and evicted`);
    // The rest is now estimated from the ~1 KB values the spill measured, not the guess.
    assert.ok(s.cacheBytes / s.dirtyCount > 1300, `${Math.round(s.cacheBytes / s.dirtyCount)} B per entry`);
    // More spills bring the cache under its budget; the entries in use are never taken.
    while (s.cacheBytes > budget) await s.commit({ coldest: s.cacheBytes - budget * 0.7 });
    for (let i = 950; i < 1000; i++) assert.notEqual(s.peek('big', key(i)), NOT_LOADED, `${key(i)} in use, cached`);
    assert.ok(s.dirtyCount >= 50, 'the entries in use are still uncommitted');
    // Everything reads back right, spilled or not; a full commit writes the rest.
    for (let i = 0; i < 1000; i++) assert.equal(await s.get('big', key(i)), 'x'.repeat(1000) + i);
    await s.commit();
    assert.equal(s.dirtyCount, 0);
    assert.equal((await s.scan('big')).length, 1000);
  } finally {
    await s.close();
    t.remove();
  }
});

test('size sampling: one write in 32 is encoded until a full commit has measured the store (spills do not count); after it, writes are not encoded again and a new entry is estimated from that commit\'s average', async () => {
  const t = tempDir();
  let encodes = 0;
  const codec = jsonCodec<string>();
  const counted = keyValueStore('counted', { ...codec, encodeText: (v: string) => (encodes++, JSON.stringify(v)) });
  const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [counted] });
  try {
    for (let i = 0; i < 320; i++) s.put('counted', `a${i}`, 'x'.repeat(500));
    assert.equal(encodes, 10, 'one write in 32 sampled before any commit');
    // A spill measures only the entries it takes: sampling goes on.
    await s.commit({ coldest: 1 });
    encodes = 0;
    for (let i = 0; i < 64; i++) s.put('counted', `b${i}`, 'x'.repeat(500));
    assert.equal(encodes, 2, 'still sampled after a spill');
    encodes = 0;
    await s.commit();
    assert.equal(encodes, 383, 'the full commit encodes every uncommitted entry once');
    encodes = 0;
    const before = s.cacheBytes;
    for (let i = 0; i < 320; i++) s.put('counted', `c${i}`, 'x'.repeat(500));
    assert.equal(encodes, 0, 'no sampling once a full commit has measured the store');
    // Estimated from the commit's average (~500 encoded bytes plus the key and the entry's overhead).
    const perEntry = (s.cacheBytes - before) / 320;
    assert.ok(perEntry > 500 && perEntry < 1200, `${Math.round(perEntry)} B per new entry`);
    await s.commit();
    assert.equal(encodes, 320);
  } finally {
    await s.close();
    t.remove();
  }
});

test('window store: fetch by time range, retention from window start', async () => {
  const t = tempDir();
  const spec = windowStore('views-per-hour', jsonCodec<number>(), { windowSizeMs: 3_600_000, retentionMs: 7_200_000 });
  const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [spec] });
  try {
    const w = new WindowView(s, spec);
    s.streamTime = 3_600_000 * 3 - 1;
    w.put('c1', 0, 1);
    w.put('c1', 3_600_000, 2);
    w.put('c1', 7_200_000, 3);
    w.put('c2', 3_600_000, 9);
    await s.commit();
    assert.deepEqual(await w.fetch('c1', 0, 7_200_000), [
      { windowStart: 3_600_000, value: 2 },
      { windowStart: 7_200_000, value: 3 },
    ], 'window at 0 is past its 2 h retention just before stream time 3h');
    assert.equal(await w.get('c2', 3_600_000), 9);
  } finally {
    await s.close();
    t.remove();
  }
});

test('session store: findSessions by end/start bounds, remove merges', async () => {
  const t = tempDir();
  const spec = sessionStore('sessions', jsonCodec<string[]>(), { retentionMs: 10_000_000 });
  const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [spec] });
  try {
    const ss = new SessionView(s, spec);
    s.streamTime = 100;
    ss.put('c1', { start: 10, end: 20 }, ['p1']);
    ss.put('c1', { start: 50, end: 60 }, ['p2']);
    ss.put('c10', { start: 15, end: 25 }, ['x']);
    const hits = await ss.findSessions('c1', 15, 55);
    assert.deepEqual(hits.map((h) => h.window), [{ start: 10, end: 20 }, { start: 50, end: 60 }]);
    assert.deepEqual((await ss.findSessions('c1', 21, 100)).map((h) => h.value), [['p2']]);
    ss.remove('c1', { start: 10, end: 20 });
    ss.put('c1', { start: 10, end: 60 }, ['p1', 'p2']);
    ss.remove('c1', { start: 50, end: 60 });
    await s.commit();
    assert.deepEqual((await ss.findSessions('c1', 0, 1000)).map((h) => h.value), [['p1', 'p2']]);
  } finally {
    await s.close();
    t.remove();
  }
});

test('beforeLocalWrite (exactly-once transaction commit) runs after the changelog and before RocksDB; a failure writes nothing locally', async () => {
  const t = tempDir();
  const order: string[] = [];
  const changelog = {
    send: (_task: string, entries: readonly { store: string }[]) => {
      order.push(`changelog:${entries.length}`);
      return Promise.resolve();
    },
  };
  try {
    const s1 = await TaskState.open({ dir: t.dir, taskId: '0_1', stores: [kv], changelog });
    s1.put('things', 'a', { n: 1 });
    s1.setPosition('in', 1, '5');
    await s1.commit({ beforeLocalWrite: () => Promise.resolve(void order.push('txn-commit')) });
    assert.deepEqual(order, ['changelog:2', 'txn-commit']);
    s1.put('things', 'b', { n: 2 });
    s1.setPosition('in', 1, '9');
    await assert.rejects(s1.commit({ beforeLocalWrite: () => Promise.reject(new Error('transaction aborted')) }), /transaction aborted/);
    await s1.close();
    const s2 = await TaskState.open({ dir: t.dir, taskId: '0_1', stores: [kv] });
    assert.deepEqual(await s2.get('things', 'a'), { n: 1 });
    assert.equal(await s2.get('things', 'b'), undefined, 'nothing of the failed commit reached RocksDB');
    assert.equal(s2.position('in', 1), '5');
    await s2.close();
  } finally {
    t.remove();
  }
});

test('beforeComplete is awaited between the changelog entries and their completion, alongsideLocalWrite runs while RocksDB writes; a rejected beforeComplete commits nothing, a rejected alongsideLocalWrite undoes nothing', async () => {
  const t = tempDir();
  const order: string[] = [];
  const changelog = {
    async send(_task: string, entries: readonly { store: string }[], o: ChangelogSendOptions = {}): Promise<void> {
      order.push(`entries:${entries.length}`);
      await o.beforeComplete?.();
      order.push('marker');
    },
  };
  try {
    const s1 = await TaskState.open({ dir: t.dir, taskId: '0_1', stores: [kv], changelog });
    s1.put('things', 'a', { n: 1 });
    s1.setPosition('in', 1, '5');
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let done = false;
    const committing = s1
      .commit({
        beforeComplete: () => Promise.resolve(void order.push('internal acknowledged')),
        alongsideLocalWrite: async () => {
          order.push('alongside');
          await gate;
          order.push('alongside done');
        },
      })
      .then(() => (done = true));
    while (!order.includes('alongside')) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(done, false, 'the commit waits for what runs alongside its local write');
    release();
    await committing;
    assert.deepEqual(order, ['entries:2', 'internal acknowledged', 'marker', 'alongside', 'alongside done']);

    order.length = 0;
    s1.put('things', 'b', { n: 2 });
    s1.setPosition('in', 1, '9');
    let ranAlongside = false;
    await assert.rejects(
      s1.commit({ beforeComplete: () => Promise.reject(new Error('repartition send failed')), alongsideLocalWrite: () => Promise.resolve(void (ranAlongside = true)) }),
      (err: Error) => /changelog write failed/.test(err.message) && /repartition send failed/.test(String((err.cause as Error).message)),
    );
    assert.deepEqual(order, ['entries:2'], 'no completion after a rejected beforeComplete');
    assert.equal(ranAlongside, false);

    // The changes of the failed commit go with the next, whose alongside part fails on its own.
    s1.put('things', 'c', { n: 3 });
    await s1.commit({ alongsideLocalWrite: () => Promise.reject(new Error('outputs failed')) });
    await s1.close();
    const s2 = await TaskState.open({ dir: t.dir, taskId: '0_1', stores: [kv] });
    assert.deepEqual([await s2.get('things', 'a'), await s2.get('things', 'b'), await s2.get('things', 'c')], [{ n: 1 }, { n: 2 }, { n: 3 }]);
    assert.equal(s2.position('in', 1), '9');
    await s2.close();
  } finally {
    t.remove();
  }
});

test('a prepared commit writes what it took; writes made while it is in flight stay uncommitted for the next one, also a key it took', async () => {
  const t = tempDir();
  try {
    // A changelog that answers only when told: the commit is in flight meanwhile.
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const sent: string[] = [];
    const changelog = {
      async send(_task: string, entries: readonly { store: string; key: Buffer; value: Buffer | null }[]): Promise<void> {
        await gate;
        for (const e of entries) if (e.store === 'things') sent.push(`${e.key.toString()}=${e.value?.subarray(8).toString() ?? 'null'}`);
      },
    };
    const s1 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv], changelog });
    s1.streamTime = 1000;
    s1.put('things', 'a', { n: 1 });
    s1.put('things', 'b', { n: 1 });
    s1.setPosition('shop.basket.v1', 0, '10');
    const prepared = await s1.prepareCommit();
    assert.equal(prepared.positions.get('shop.basket.v1\u00000'), '10');
    const finishing = prepared.finish();
    // Processing goes on while the commit is in flight.
    s1.put('things', 'a', { n: 2 });
    s1.put('things', 'c', { n: 2 });
    s1.setPosition('shop.basket.v1', 0, '12');
    assert.deepEqual(await s1.get('things', 'a'), { n: 2 });
    assert.equal(s1.dirtyCount, 2, 'a (again) and c belong to the next commit');
    release();
    await finishing;
    assert.deepEqual(sent.sort(), ['a={"n":1}', 'b={"n":1}']);
    assert.equal(s1.dirtyCount, 2);
    assert.equal(s1.positions().get('shop.basket.v1\u00000'), '10', 'the committed position is the one taken');
    assert.equal(s1.position('shop.basket.v1', 0), '12');
    await s1.close(); // without the second commit
    const s2 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
    assert.deepEqual(await s2.get('things', 'a'), { n: 1 });
    assert.deepEqual(await s2.get('things', 'b'), { n: 1 });
    assert.equal(await s2.get('things', 'c'), undefined);
    assert.equal(s2.position('shop.basket.v1', 0), '10');
    await s2.close();
  } finally {
    t.remove();
  }
});

test('a prepared commit that fails or is abandoned leaves its changes to the next commit, with what was written since', async () => {
  const t = tempDir();
  try {
    let fail = true;
    const changelog = new MemoryChangelog();
    const flaky = {
      send(task: string, entries: readonly Parameters<MemoryChangelog['send']>[1][number][]): Promise<void> {
        return fail ? Promise.reject(new Error('broker away')) : changelog.send(task, entries);
      },
    };
    const s1 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv], changelog: flaky });
    s1.put('things', 'a', { n: 1 });
    s1.setPosition('shop.basket.v1', 0, '5');
    const first = await s1.prepareCommit();
    s1.put('things', 'b', { n: 1 });
    await assert.rejects(first.finish(), /changelog write failed/);
    assert.equal(s1.dirtyCount, 2);
    const second = await s1.prepareCommit();
    second.abandon();
    assert.equal(s1.dirtyCount, 2);
    assert.equal(s1.positions().get('shop.basket.v1\u00000'), undefined);
    fail = false;
    await s1.commit();
    assert.equal(s1.dirtyCount, 0);
    assert.equal(changelog.size('0_0') >= 3, true, 'a, b and the position');
    await s1.close();
    const s2 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
    assert.deepEqual(await s2.get('things', 'a'), { n: 1 });
    assert.deepEqual(await s2.get('things', 'b'), { n: 1 });
    assert.equal(s2.position('shop.basket.v1', 0), '5');
    await s2.close();
  } finally {
    t.remove();
  }
});

test('point reads of keys a commit in flight did not take answer from RocksDB without waiting for it; its own keys answer from the cache, and a scan waits', async () => {
  const t = tempDir();
  try {
    // Committed first: "old" in RocksDB, then evicted (a cache of one entry), so reading it needs RocksDB.
    const s0 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv] });
    s0.put('things', 'old', { n: 7 });
    s0.put('things', 'other', { n: 8 });
    await s0.commit();
    await s0.close();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const changelog = {
      async send(): Promise<void> {
        await gate;
      },
    };
    const s1 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv], changelog, cacheMaxEntries: 1 });
    s1.put('things', 'new', { n: 1 });
    s1.delete('things', 'other');
    const prepared = await s1.prepareCommit();
    const finishing = prepared.finish();
    let landed = false;
    void finishing.then(() => (landed = true));
    // The changelog holds the commit back: these reads must not wait for it (they would never answer here).
    const reads = Promise.all([s1.get('things', 'old'), s1.getMany([['things', 'old'], ['things', 'new'], ['things', 'other']]), s1.prefetchMany([['things', ['old']]])]);
    const answered = await Promise.race([reads, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 2000))]);
    assert.notEqual(answered, 'timeout', 'point reads waited for the commit in flight');
    const [old, many] = answered as [unknown, unknown[], number];
    assert.deepEqual(old, { n: 7 });
    assert.deepEqual(many, [{ n: 7 }, { n: 1 }, undefined], 'keys the commit took answer from the cache: the put, and the delete');
    assert.equal(landed, false);
    // A scan merges RocksDB with uncommitted keys; the taken ones are in neither until the commit lands.
    const scan = s1.scan('things');
    let scanned = false;
    void scan.then(() => (scanned = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(scanned, false, 'the scan waits for the commit in flight');
    release();
    await finishing;
    assert.deepEqual(
      (await scan).map((r) => r.key),
      ['new', 'old'],
    );
    await s1.close();
  } finally {
    t.remove();
  }
});

test('prefetchMany loads the missing keys of several stores with one RocksDB multi-get; cached and complete stores are not read', async () => {
  const t = tempDir();
  const other = keyValueStore('others', jsonCodec<string>());
  try {
    const s0 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv, other] });
    for (const k of ['a', 'b', 'c']) {
      s0.put('things', k, { n: k.charCodeAt(0) });
      s0.put('others', k, k.toUpperCase());
    }
    await s0.commit();
    await s0.close();
    const s1 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [kv, other] });
    s1.put('things', 'c', { n: 0 }); // in the cache: not read
    const loaded = await s1.prefetchMany([
      ['things', ['a', 'b', 'c', 'a']],
      ['others', ['b', 'x']],
    ]);
    assert.equal(loaded, 4, 'things a, b; others b, x (absent)');
    assert.equal(s1.stats.reads, 1, 'one multi-get for both stores');
    const misses = s1.stats.cacheMisses;
    assert.deepEqual(await s1.get('things', 'b'), { n: 98 });
    assert.deepEqual(await s1.get('things', 'c'), { n: 0 });
    assert.equal(await s1.get('others', 'b'), 'B');
    assert.equal(await s1.get('others', 'x'), undefined);
    assert.equal(s1.stats.cacheMisses, misses, 'every read answered from memory');
    assert.equal(s1.stats.reads, 1);
    await s1.close();
  } finally {
    t.remove();
  }
});
