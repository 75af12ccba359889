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

/** A kafkajs RequestQueue (as a broker connection makes it) and the requests it sends. */
function requestQueue(maxInFlightRequests: number | null): { queue: RQ; sent: number[] } {
  const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as new (o: object) => RQ;
  const noop = (): void => undefined;
  const logger = { debug: noop, info: noop, warn: noop, error: noop };
  const queue = new RequestQueue({ maxInFlightRequests, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: 't', broker: 'b:1', logger });
  return { queue, sent: [] };
}
interface RQ {
  pending: unknown[];
  inflight: Map<number, unknown>;
  throttleCheckTimeoutId: unknown;
  push(r: { entry: { correlationId: number; apiKey: number; apiName: string; apiVersion: number }; expectResponse: boolean; sendRequest(): void }): void;
  fulfillRequest(r: { correlationId: number; payload: Buffer; size: number }): void;
  maybeThrottle(ms: number): void;
  destroy(): void;
}
const entry = (correlationId: number) => ({ correlationId, apiKey: 1, apiName: 'Fetch', apiVersion: 11, resolve: () => undefined, reject: () => undefined });

test('kafkajs-preload: an idle request queue schedules no check (kafkajs 2.2.4 re-armed a 1 ms timer forever)', async (t) => {
  const { kafkajsRequestQueuePatch } = await import('../../src/kafka/kafkajs-preload.js');
  assert.equal(kafkajsRequestQueuePatch(), 'installed');
  const { queue, sent } = requestQueue(null);
  // destroy: kafkajs' own loop would keep the test process alive for ever.
  t.after(() => queue.destroy());
  queue.push({ entry: entry(1), expectResponse: true, sendRequest: () => sent.push(1) });
  assert.deepEqual(sent, [1]);
  // The answer checks the queue (fulfillRequest → checkPendingRequests): nothing pending, nothing throttled.
  queue.fulfillRequest({ correlationId: 1, payload: Buffer.alloc(0), size: 0 });
  assert.equal(queue.throttleCheckTimeoutId, null, 'no timer while nothing is pending');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(queue.throttleCheckTimeoutId, null);
});

test('kafkajs-preload: pending requests still go out — when an answer frees a slot, and after a client-side throttle', async (t) => {
  const { queue, sent } = requestQueue(1);
  t.after(() => queue.destroy());
  for (const id of [1, 2, 3]) queue.push({ entry: entry(id), expectResponse: true, sendRequest: () => sent.push(id) });
  assert.deepEqual(sent, [1]);
  assert.equal(queue.pending.length, 2);
  queue.fulfillRequest({ correlationId: 1, payload: Buffer.alloc(0), size: 0 });
  assert.deepEqual(sent, [1, 2]);
  queue.fulfillRequest({ correlationId: 2, payload: Buffer.alloc(0), size: 0 });
  assert.deepEqual(sent, [1, 2, 3]);
  queue.fulfillRequest({ correlationId: 3, payload: Buffer.alloc(0), size: 0 });
  // The check scheduled while requests were pending (10 ms) runs once, finds nothing and schedules no other.
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(queue.throttleCheckTimeoutId, null);
  // Throttled by the broker: the next request waits, its check is scheduled for the throttle's end.
  queue.maybeThrottle(40);
  queue.push({ entry: entry(4), expectResponse: true, sendRequest: () => sent.push(4) });
  assert.deepEqual(sent, [1, 2, 3]);
  assert.notEqual(queue.throttleCheckTimeoutId, null);
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(sent, [1, 2, 3, 4]);
  queue.fulfillRequest({ correlationId: 4, payload: Buffer.alloc(0), size: 0 });
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(queue.throttleCheckTimeoutId, null);
});

test('kafkajs-preload: the consumer FETCH event carries the response\'s batches before kafkajs hands any on (mock cluster, one broker)', async (t) => {
  const { kafkajsFetchPatch } = await import('../../src/kafka/kafkajs-preload.js');
  const { startMockCluster } = await import('../../src/kafka/mock-cluster.js');
  const { produce, testKafka } = await import('../support/kafka.js');
  assert.equal(kafkajsFetchPatch(), 'installed');
  const cluster = await startMockCluster({ brokers: 1 });
  t.after(() => cluster.stop());
  const kafka = testKafka(cluster.brokers);
  // Topics created by the first produce (the mock's default: 4 partitions). One response holds records of several partitions (one broker leads them all).
  for (const topic of ['a', 'b']) await produce(kafka, topic, [0, 1, 0, 1, 0].map((partition, i) => ({ partition, key: `k${i}`, value: `${topic}${i}` })));
  const consumer = kafka.consumer({ groupId: 'fetch-patch', maxWaitTimeInMs: 50 });
  t.after(() => consumer.disconnect());
  // Per partition: records announced by FETCH events and not yet handed to eachBatch.
  const announced = new Map<string, number>();
  const seenBatches: number[] = [];
  consumer.on(consumer.events.FETCH, (e) => {
    const batches = (e.payload as { batches?: { topic: string; partition: number; messages: unknown[]; isEmpty(): boolean }[] }).batches;
    assert.ok(batches !== undefined, 'FETCH carries the batches');
    seenBatches.push(batches.length);
    for (const b of batches) if (!b.isEmpty()) announced.set(`${b.topic}/${b.partition}`, (announced.get(`${b.topic}/${b.partition}`) ?? 0) + b.messages.length);
  });
  await consumer.connect();
  await consumer.subscribe({ topics: ['a', 'b'], fromBeginning: true });
  let handed = 0;
  const done = new Promise<void>((resolve, reject) => {
    void consumer.run({
      partitionsConsumedConcurrently: 4,
      eachBatch: async ({ batch }) => {
        try {
          const key = `${batch.topic}/${batch.partition}`;
          const n = announced.get(key) ?? 0;
          assert.ok(n >= batch.messages.length, `${key}: ${batch.messages.length} records handed on, ${n} announced`);
          announced.set(key, n - batch.messages.length);
          handed += batch.messages.length;
          if (handed === 10) resolve();
        } catch (err) {
          reject(err as Error);
        }
      },
    });
  });
  await done;
  assert.ok(seenBatches.some((n) => n >= 4), `a response with every partition: ${seenBatches.join(',')}`);
});
