import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Partitioners } from 'kafkajs';
import { partitionOf } from '../../src/kafka/partitioner.js';
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
