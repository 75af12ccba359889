/**
 * TaskState.versions (what lets the query API reuse a serialized view): a version moves with every write of an
 * entry, including a put back of an object changed in place, and with eviction, reload and reopen; a key that is
 * not cached has none unless its store is complete; entries with a TTL say until when their answer holds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsonCodec, keyValueStore } from '../../../src/engine/api/index.js';
import { stateReader } from '../../../src/engine/state/reader.js';
import { TaskState } from '../../../src/engine/state/task-state.js';
import { tempDir } from '../../helpers.js';

const a = keyValueStore('a', jsonCodec<{ n: number }>());
const ttl = keyValueStore('fleeting', jsonCodec<string>(), { ttlMs: 1000 });

test('a version moves with every write (also of an object changed in place) and stays with reads', async () => {
  const t = tempDir();
  try {
    const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [a, ttl] });
    // A fresh store is complete: an absent key has a version, the same until something leaves the cache.
    const [absent] = s.versionsOfKey(['a'], 'k').versions;
    assert.notEqual(absent, undefined);
    assert.deepEqual(s.versionsOfKey(['a'], 'k').versions, [absent]);
    s.put('a', 'k', { n: 1 });
    const [v1] = s.versionsOfKey(['a'], 'k').versions;
    assert.notEqual(v1, absent);
    const obj = (await s.get('a', 'k')) as { n: number };
    assert.deepEqual(s.versionsOfKey(['a'], 'k').versions, [v1], 'a read does not move it');
    obj.n = 2;
    s.put('a', 'k', obj);
    const [v2] = s.versionsOfKey(['a'], 'k').versions;
    assert.notEqual(v2, v1, 'the same object put back is a new version');
    await s.commit();
    assert.deepEqual(s.versionsOfKey(['a'], 'k').versions, [v2], 'a commit does not move it');
    s.delete('a', 'k');
    const [v3] = s.versionsOfKey(['a'], 'k').versions;
    assert.ok(v3 !== v2 && v3 !== absent);
    await s.commit();
    // Committed delete of a complete store: dropped from the cache; absent again, under a new number.
    const [v4] = s.versionsOfKey(['a'], 'k').versions;
    assert.ok(v4 !== undefined && v4 !== absent && v4 !== v3);
    assert.deepEqual(s.versionsOfKey(['not-a-store'], 'k').versions, [0]);
    await s.close();
  } finally {
    t.remove();
  }
});

test('eviction, reload and reopen never give an entry a version it had', async () => {
  const t = tempDir();
  try {
    const s1 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [a] });
    for (let i = 0; i < 20; i++) s1.put('a', `k${i}`, { n: i });
    await s1.commit();
    const before = s1.versionsOfKey(['a'], 'k0').versions[0];
    await s1.close();
    // Reopened: the store holds data, so it is not complete: what is not cached has no version until read.
    const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [a], cacheMaxEntries: 5 });
    assert.deepEqual([...s.versionsOfKey(['a'], 'k0').versions, ...s.versionsOfKey(['a'], 'missing').versions], [undefined, undefined]);
    assert.deepEqual(await s.getMany([['a', 'k0'], ['a', 'missing']]), [{ n: 0 }, undefined]);
    const [loaded, missing] = [...s.versionsOfKey(['a'], 'k0').versions, ...s.versionsOfKey(['a'], 'missing').versions];
    assert.ok(loaded !== undefined && missing !== undefined && loaded !== before, 'a load is a new number, also after reopen');
    // Reading 19 other keys evicts k0 (5 entries per store at most).
    for (let i = 1; i < 20; i++) await s.get('a', `k${i}`);
    assert.ok(s.stats.evicted > 0);
    assert.deepEqual(s.versionsOfKey(['a'], 'k0').versions, [undefined], 'evicted: unknown');
    await s.get('a', 'k0');
    const [reloaded] = s.versionsOfKey(['a'], 'k0').versions;
    assert.ok(reloaded !== undefined && reloaded !== loaded);
    // Through the reader.
    const r = stateReader(s, { source: 'standby', partition: 0 });
    assert.deepEqual(r.versions?.([a], 'k0').versions, [reloaded]);
    await s.close();
  } finally {
    t.remove();
  }
});

test('liveUntil: the stream time at which a live entry with a TTL expires', async () => {
  const t = tempDir();
  try {
    const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [a, ttl] });
    s.streamTime = 1000;
    s.put('fleeting', 'k', 'soon gone', 1000);
    s.put('a', 'k', { n: 1 });
    const v = s.versionsOfKey(['fleeting', 'a'], 'k');
    assert.equal(v.streamTime, 1000);
    assert.equal(v.liveUntil, 2000);
    s.streamTime = 1999;
    assert.equal(await s.get('fleeting', 'k'), 'soon gone');
    s.streamTime = 2000;
    assert.equal(await s.get('fleeting', 'k'), undefined);
    // Expired already: nothing more to expire.
    assert.equal(s.versionsOfKey(['fleeting'], 'k').liveUntil, Infinity);
    await s.close();
  } finally {
    t.remove();
  }
});
