import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Partitioners } from 'kafkajs';
import { murmur2Partitioner, partitionOf } from '../../src/kafka/partitioner.js';
import { mulberry32 } from '../../src/util/prng.js';

test('partitionOf agrees with kafkajs DefaultPartitioner (Java murmur2) for every key length and non-ASCII keys', () => {
  const kafkajs = Partitioners.DefaultPartitioner();
  const rnd = mulberry32(7);
  const keys = ['C000001', 'P000198-M', '', 'ä', 'ключ', '顧客-42', 'a', 'ab', 'abc', 'abcd', 'abcde'];
  for (let i = 0; i < 2000; i++) keys.push(Array.from({ length: 1 + Math.floor(rnd() * 40) }, () => String.fromCharCode(32 + Math.floor(rnd() * 2000))).join(''));
  for (const n of [1, 3, 4, 12, 64]) {
    const partitionMetadata = Array.from({ length: n }, (_, i) => ({ partitionId: i, leader: 0, replicas: [0], isr: [0], offlineReplicas: [], partitionErrorCode: 0 }));
    for (const key of keys) assert.equal(partitionOf(key, n), kafkajs({ topic: 't', partitionMetadata, message: { key, value: null } }), `key ${JSON.stringify(key)}, ${n} partitions`);
  }
  assert.throws(() => partitionOf('k', 0), RangeError);
});

test('murmur2Partitioner (the runner producers\') picks what kafkajs DefaultPartitioner picks: string and Buffer keys of any length (also past its scratch buffer), a message\'s own partition, keyless messages over the partitions with a leader', () => {
  const kafkajs = Partitioners.DefaultPartitioner();
  const ours = murmur2Partitioner();
  const rnd = mulberry32(11);
  const keys: (string | Buffer)[] = ['C000001', '', 'ä', '顧客-42', '\u{1F9E5}', 'x'.repeat(341), 'é'.repeat(342), '𝄞'.repeat(300), 'y'.repeat(5000), Buffer.from([0, 255, 7]), Buffer.alloc(0)];
  for (let i = 0; i < 2000; i++) {
    const s = Array.from({ length: 1 + Math.floor(rnd() * 60) }, () => String.fromCodePoint(32 + Math.floor(rnd() * 70000))).join('');
    keys.push(i % 2 === 0 ? s : Buffer.from(s, 'utf8'));
  }
  for (const n of [1, 3, 4, 12]) {
    const partitionMetadata = Array.from({ length: n }, (_, i) => ({ partitionId: i, leader: 0, replicas: [0], isr: [0], offlineReplicas: [], partitionErrorCode: 0 }));
    for (const key of keys) {
      const message = { key, value: null };
      assert.equal(ours({ topic: 't', partitionMetadata, message }), kafkajs({ topic: 't', partitionMetadata, message }), `key ${JSON.stringify(key)}, ${n} partitions`);
    }
    assert.equal(ours({ topic: 't', partitionMetadata, message: { key: 'C1', value: null, partition: n - 1 } }), n - 1);
  }
  // Keyless: round-robin over the partitions that have a leader (1 and 3 here), never the others.
  const partitionMetadata = [0, 1, 2, 3].map((i) => ({ partitionId: i, leader: i % 2 === 1 ? 0 : -1, replicas: [0], isr: [0], offlineReplicas: [], partitionErrorCode: 0 }));
  const picked = Array.from({ length: 8 }, () => ours({ topic: 'k', partitionMetadata, message: { key: null, value: null } }));
  assert.deepEqual([...new Set(picked)].sort(), [1, 3]);
  assert.ok(picked.every((p, i) => i === 0 || p !== picked[i - 1]), `alternates: ${picked.join(',')}`);
});
