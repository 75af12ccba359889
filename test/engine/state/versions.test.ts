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

test('streamTimeIfUnchanged answers as comparing versionsOfKey again would, through writes, deletes, eviction, reload and clear', async () => {
  const t = tempDir();
  try {
    const b = keyValueStore('b', jsonCodec<{ n: number }>());
    const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [a, b, ttl], cacheMaxEntries: 6 });
    const stores = ['a', 'b', 'fleeting', 'not-a-store'];
    const keys = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7'];
    // A small deterministic generator: the same sequence every run.
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    s.streamTime = 0;
    const taken = new Map<string, ReturnType<TaskState['versionsOfKey']>>();
    let agreed = 0;
    let unchanged = 0;
    for (let step = 0; step < 600; step++) {
      const key = keys[rand(keys.length)] as string;
      const store = (['a', 'b', 'fleeting'] as const)[rand(3)] as 'a' | 'b' | 'fleeting';
      switch (rand(6)) {
        case 0:
          s.put(store, key, store === 'fleeting' ? `v${step}` : { n: step });
          break;
        case 1: {
          const obj = (await s.get(store, key)) as { n: number } | string | undefined;
          if (obj !== undefined && typeof obj === 'object') {
            obj.n++;
            s.put(store, key, obj);
          }
          break;
        }
        case 2:
          s.delete(store, key);
          break;
        case 3:
          await s.commit();
          break;
        case 4:
          // Reads load and evict (6 entries per store at most).
          await s.get(store, key);
          break;
        default:
          s.streamTime += 100;
      }
      for (const k of keys) {
        const now = s.versionsOfKey(stores, k);
        const before = taken.get(k);
        if (before !== undefined) {
          const known = before.versions.every((v) => v !== undefined);
          const same = known && before.versions.every((v, i) => v === now.versions[i]);
          const answer = s.streamTimeIfUnchanged(before);
          assert.equal(answer !== undefined, same, `step ${step}, ${k}: ${JSON.stringify(before.versions)} then ${JSON.stringify(now.versions)}`);
          if (answer !== undefined) {
            assert.equal(answer, now.streamTime);
            unchanged++;
          }
          agreed++;
        }
        if (before === undefined || rand(3) === 0) taken.set(k, now);
      }
      if (step === 400) {
        // Reopen-like: every entry leaves the cache at once.
        await s.commit();
        await s.restore([]);
      }
    }
    assert.ok(agreed > 4000 && unchanged > 200 && unchanged < agreed, `${agreed} checks, ${unchanged} unchanged`);
    // Another state's answer, and a closed state, are never unchanged.
    const t2 = tempDir();
    const other = await TaskState.open({ dir: t2.dir, taskId: '0_1', stores: [a, b, ttl] });
    const mine = s.versionsOfKey(stores, 'k0');
    assert.equal(other.streamTimeIfUnchanged(mine), undefined);
    assert.equal(s.streamTimeIfUnchanged({ versions: [...mine.versions], streamTime: mine.streamTime, liveUntil: mine.liveUntil }), undefined, 'only an answer of versionsOfKey');
    await other.close();
    t2.remove();
    const r = stateReader(s, { source: 'active', partition: 0 });
    const viaReader = r.versions?.([a, b], 'k1');
    assert.ok(viaReader !== undefined);
    await s.close();
    assert.equal(r.streamTimeIfUnchanged?.(viaReader), undefined, 'closed');
  } finally {
    t.remove();
  }
});
