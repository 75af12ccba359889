import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
// Kairos' Kafka client first, as the runner imports it: the preload runs before kafkajs loads
import { createKafka } from '../../src/kafka/client.js';
import { groupMessagesPerPartition, kafkajsPreload } from '../../src/kafka/kafkajs-preload.js';
import { mulberry32 } from '../../src/util/prng.js';

const require = createRequire(import.meta.url);
type Group = typeof groupMessagesPerPartition;

/** kafkajs' own module, compiled from its file (the require cache holds the replacement). */
function kafkajsOwn(): Group {
  const path = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
  const m = { exports: {} as unknown };
  new Function('module', 'exports', 'require', readFileSync(path, 'utf8'))(m, m.exports, require);
  return m.exports as Group;
}

test('kafkajs-preload: grouping per partition equals kafkajs 2.2.4 (keys, their order, the messages in order)', () => {
  const own = kafkajsOwn();
  const rnd = mulberry32(9);
  for (let i = 0; i < 200; i++) {
    const n = 1 + Math.floor(rnd() * 12);
    const partitionMetadata = Array.from({ length: n }, (_, p) => ({ partitionId: p }));
    const messages = Array.from({ length: Math.floor(rnd() * 300) }, (_, j) => ({ key: `k${j}`, value: String(j), partition: Math.floor(rnd() * n) }));
    const partitioner = ({ message }: { message: { partition: number } }): number => message.partition;
    const args = { topic: 't', partitionMetadata, messages, partitioner };
    const mine = groupMessagesPerPartition(args);
    const theirs = own(args);
    assert.deepEqual(Object.keys(mine), Object.keys(theirs));
    assert.deepEqual(mine, theirs);
    for (const k of Object.keys(mine)) assert.notEqual(mine[k], messages);
  }
  assert.deepEqual(groupMessagesPerPartition({ topic: 't', partitionMetadata: [], messages: [1], partitioner: () => 0 }), {});
});

test('kafkajs-preload: installed ahead of kafkajs, and kafkajs producers group with it', () => {
  assert.equal(kafkajsPreload(), 'installed');
  assert.ok(require.cache[require.resolve('kafkajs/src/producer/sendMessages.js')] !== undefined, 'kafkajs loaded');
  assert.equal(require('kafkajs/src/producer/groupMessagesPerPartition.js'), groupMessagesPerPartition);
  assert.ok(createKafka);
});
