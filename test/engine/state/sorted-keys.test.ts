import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keyValueStore, jsonCodec } from '../../../src/engine/api/index.js';
import { compareUtf8, SortedKeys } from '../../../src/engine/state/sorted-keys.js';
import { TaskState } from '../../../src/engine/state/task-state.js';
import { tempDir } from '../../helpers.js';
import { mulberry32 } from '../../../src/util/prng.js';

// Characters whose UTF-16 order differs from UTF-8 byte order (a surrogate pair against U+E000–U+FFFF), a NUL
// separator as composite store keys use, ASCII and a two-byte character.
const ALPHABET = ['a', 'b', 'z', '\u0000', 'é', '\uffee', '\ue000', '😀', '𝄞'];
const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

function randomKey(rnd: () => number): string {
  let k = '';
  const n = 1 + Math.floor(rnd() * 4);
  for (let i = 0; i < n; i++) k += ALPHABET[Math.floor(rnd() * ALPHABET.length)];
  return k;
}

/** The first code point (a whole surrogate pair, never half of one: a lone surrogate has no UTF-8 form). */
const first = (k: string): string => [...k][0] as string;

test('compareUtf8 orders strings as their UTF-8 bytes (RocksDB order), also across surrogate pairs and U+E000–U+FFFF', () => {
  const rnd = mulberry32(7);
  for (let i = 0; i < 20_000; i++) {
    const a = randomKey(rnd);
    const b = randomKey(rnd);
    assert.equal(Math.sign(compareUtf8(a, b)), Math.sign(byBytes(a, b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  }
});

test('SortedKeys: adds, deletes and range walks agree with a sorted array, across block splits', () => {
  const rnd = mulberry32(11);
  const set = new SortedKeys();
  const model = new Set<string>();
  for (let i = 0; i < 6000; i++) {
    const k = `${Math.floor(rnd() * 3000)}`.padStart(4, '0') + (ALPHABET[Math.floor(rnd() * ALPHABET.length)] as string);
    if (rnd() < 0.3) {
      set.delete(k);
      model.delete(k);
    } else {
      set.add(k);
      model.add(k);
    }
  }
  const sorted = [...model].sort(byBytes);
  assert.equal(set.size, sorted.length);
  const all: string[] = [];
  set.forRange(undefined, false, undefined, (k) => all.push(k) > 0);
  assert.deepEqual(all, sorted);
  for (let i = 0; i < 200; i++) {
    const lo = `${Math.floor(rnd() * 3000)}`.padStart(4, '0');
    const hi = `${Math.floor(rnd() * 3000)}`.padStart(4, '0');
    const exclusive = rnd() < 0.5;
    const got: string[] = [];
    set.forRange(lo, exclusive, hi, (k) => got.push(k) < 25);
    const want = sorted.filter((k) => (exclusive ? byBytes(k, lo) > 0 : byBytes(k, lo) >= 0) && byBytes(k, hi) < 0).slice(0, 25);
    assert.deepEqual(got, want, `range ${lo}..${hi}`);
  }
  assert.equal(SortedKeys.from([...sorted].reverse()).size, sorted.length);
});

test('scans of a complete store (answered from memory) equal scans through RocksDB, for random writes, deletes, commits and ranges', async () => {
  const store = keyValueStore('s', jsonCodec<number>());
  const t1 = tempDir();
  const t2 = tempDir();
  // In memory: a fresh store, never evicted. On disk: a one-entry cache, so the store is incomplete after the
  // first commit and every scan reads RocksDB merged with the uncommitted writes.
  const mem = await TaskState.open({ dir: t1.dir, taskId: 'm', stores: [store] });
  const disk = await TaskState.open({ dir: t2.dir, taskId: 'd', stores: [store], cacheMaxEntries: 1 });
  try {
    const rnd = mulberry32(3);
    for (let step = 0; step < 3000; step++) {
      const key = randomKey(rnd);
      const r = rnd();
      if (r < 0.55) {
        mem.put('s', key, step);
        disk.put('s', key, step);
      } else if (r < 0.75) {
        mem.delete('s', key);
        disk.delete('s', key);
      } else if (r < 0.8) {
        await mem.commit();
        await disk.commit();
      } else {
        const a = randomKey(rnd);
        const b = randomKey(rnd);
        const range = [{ prefix: first(a) }, { gte: a, lt: b }, { gt: a }, { prefix: first(a), gt: a, limit: 3 }, { lt: b, limit: 5 }][Math.floor(rnd() * 5)] as Parameters<TaskState['scan']>[1];
        assert.deepEqual(await mem.scan('s', range), await disk.scan('s', range), `step ${step} ${JSON.stringify(range)}`);
      }
    }
    assert.ok(mem.stats.scansInMemory > 100 && mem.stats.scansOnDisk === 0, 'the fresh store answers from memory');
    assert.ok(disk.stats.scansOnDisk > 100, 'the evicted store reads RocksDB');
  } finally {
    await mem.close();
    await disk.close();
    t1.remove();
    t2.remove();
  }
});
