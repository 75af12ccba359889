/**
 * TaskState.getMany (the query API's one multi-get per customer view) answers each (store, key) exactly as
 * get() does: uncommitted writes, committed values read from RocksDB, deletes, absent keys, expired entries and
 * stores the task does not have. Also through stateReader().getMany.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsonCodec, keyValueStore } from '../../../src/engine/api/index.js';
import { stateReader } from '../../../src/engine/state/reader.js';
import { TaskState } from '../../../src/engine/state/task-state.js';
import { tempDir } from '../../helpers.js';

const a = keyValueStore('a', jsonCodec<{ n: number }>());
const b = keyValueStore('b', jsonCodec<string>());
const ttl = keyValueStore('fleeting', jsonCodec<string>(), { ttlMs: 1000 });
const other = keyValueStore('not-in-this-task', jsonCodec<string>());

test('getMany answers every (store, key) as get does, from the cache and from RocksDB', async () => {
  const t = tempDir();
  try {
    const s1 = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [a, b, ttl] });
    s1.streamTime = 1000;
    s1.put('a', 'k1', { n: 1 });
    s1.put('b', 'k1', 'one');
    s1.put('a', 'k2', { n: 2 });
    s1.put('fleeting', 'k1', 'soon gone', 1000);
    await s1.commit();
    await s1.close();
    // Reopened: nothing cached, so the first reads go to RocksDB.
    const s = await TaskState.open({ dir: t.dir, taskId: '0_0', stores: [a, b, ttl] });
    s.streamTime = 1500;
    s.put('b', 'k2', 'uncommitted');
    s.delete('a', 'k2');
    const reads = [
      ['a', 'k1'],
      ['b', 'k1'],
      ['a', 'k2'],
      ['b', 'k2'],
      ['a', 'missing'],
      ['fleeting', 'k1'],
      ['not-in-this-task', 'k1'],
    ] as const;
    const first = await s.getMany(reads);
    const expected = [{ n: 1 }, 'one', undefined, 'uncommitted', undefined, 'soon gone', undefined];
    assert.deepEqual(first, expected);
    // Now from the cache; each equals get().
    assert.deepEqual(await s.getMany(reads), expected);
    for (const [i, [store, key]] of reads.entries()) if (s.hasStore(store)) assert.deepEqual(await s.get(store, key), expected[i], `${store}/${key}`);
    // Expiry applies as in get().
    s.streamTime = 2500;
    assert.deepEqual(await s.getMany([['fleeting', 'k1']]), [undefined]);
    assert.equal(await s.get('fleeting', 'k1'), undefined);
    // The reader's typed form.
    const r = stateReader(s, { source: 'active', partition: 0 });
    assert.ok(r.getMany);
    assert.deepEqual(await r.getMany([a, b, other], 'k1'), [{ n: 1 }, 'one', undefined]);
    await s.close();
  } finally {
    t.remove();
  }
});
