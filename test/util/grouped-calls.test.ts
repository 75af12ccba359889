import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GroupedCalls } from '../../src/util/grouped-calls.js';

test('grouped calls: calls of one turn run as one group, later ones as the next group once it is done, each answered with its own result or error', async () => {
  const groups: number[][] = [];
  let release: (() => void) | undefined;
  const grouped = new GroupedCalls<number, number>(async (inputs) => {
    groups.push([...inputs]);
    if (groups.length === 1) await new Promise<void>((r) => (release = r));
    return inputs.map((n) => (n < 0 ? { ok: false, error: new Error(`negative ${n}`) } : { ok: true, value: n * 10 }));
  });
  const first = [grouped.call(1), grouped.call(2), grouped.call(-3)];
  await new Promise<void>((r) => setImmediate(r));
  await new Promise<void>((r) => setImmediate(r));
  // While the first group is in flight, these wait and then go together.
  const second = [grouped.call(4), grouped.call(5)];
  release?.();
  const settled = await Promise.allSettled([...first, ...second]);
  assert.deepEqual(groups, [[1, 2, -3], [4, 5]]);
  assert.deepEqual(
    settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message)),
    [10, 20, 'negative -3', 40, 50],
  );
});

test('grouped calls: a group that throws rejects each of its calls, and the next group still runs', async () => {
  let n = 0;
  const grouped = new GroupedCalls<string, string>(async (inputs) => {
    n++;
    if (n === 1) throw new Error('broker gone');
    return inputs.map((s) => ({ ok: true, value: s.toUpperCase() }));
  });
  const failed = await Promise.allSettled([grouped.call('a'), grouped.call('b')]);
  assert.deepEqual(failed.map((s) => s.status), ['rejected', 'rejected']);
  assert.equal(await grouped.call('c'), 'C');
});
