/**
 * The produce side (src/kafka/record-collector.ts) and topic set-up (src/kafka/topics.ts) where the mock
 * cluster cannot show the broker's behaviour: a scripted producer answers the way a real broker does
 * (MESSAGE_TOO_LARGE, then OUT_OF_ORDER_SEQUENCE_NUMBER on the same idempotent producer), and a scripted admin
 * refuses CreateTopics without auto-creation. The same paths run against the mock cluster in runner tests and
 * were run on a real Apache Kafka 4.0 broker (README, Kafka section).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Admin, Kafka, Message, Producer, ProducerBatch, RecordMetadata } from 'kafkajs';
import { isKairosError } from '../../src/errors.js';
import { chunkTopicMessages, isTooLarge, messageBytes, RecordCollector, sendBounded } from '../../src/kafka/record-collector.js';
import { ensureTopics } from '../../src/kafka/topics.js';
import { silent } from '../support/kafka.js';

const msg = (i: number, size = 100): Message => ({ key: `k${String(i).padStart(4, '0')}`, value: 'x'.repeat(size), partition: 0 });

test('requests are cut at the byte bound, in order, and a record above the bound is an error naming the topic', () => {
  const messages = Array.from({ length: 100 }, (_, i) => msg(i));
  const per = messageBytes(messages[0] as Message);
  const chunks = chunkTopicMessages([{ topic: 'a', messages }, { topic: 'b', messages: messages.slice(0, 10) }], per * 30);
  assert.ok(chunks.length >= 4);
  for (const c of chunks) assert.ok(c.reduce((n, t) => n + t.messages.reduce((m, x) => m + messageBytes(x), 0), 0) <= per * 30);
  const a = chunks.flatMap((c) => c.filter((t) => t.topic === 'a').flatMap((t) => t.messages.map((m) => m.key)));
  assert.deepEqual(a, messages.map((m) => m.key));
  assert.throws(
    () => chunkTopicMessages([{ topic: 'big', messages: [msg(1, 5000)] }], 1000),
    (err: unknown) => isKairosError(err, 'KAIROS_ERR_RECORD_TOO_LARGE') && /big/.test(err.message),
  );
});

test('a request carries up to the bound for every partition, not for all of them together; unpartitioned records count as one batch per topic; the request has its own bound', () => {
  const per = messageBytes(msg(0));
  const spread = Array.from({ length: 400 }, (_, i) => ({ ...msg(i), partition: i % 8 }));
  // 8 partitions × 50 records: 50 records of each fit the 60-record bound, so one request holds all.
  assert.equal(chunkTopicMessages([{ topic: 'a', messages: spread }], per * 60).length, 1);
  // Without explicit partitions the partitioner may put all in one: cut as one batch.
  const loose = spread.map(({ partition: _p, ...m }) => m);
  assert.equal(chunkTopicMessages([{ topic: 'a', messages: loose }], per * 60).length, 7);
  // Two topics' partition 0 are two batches.
  assert.equal(chunkTopicMessages([{ topic: 'a', messages: spread.slice(0, 50) }, { topic: 'b', messages: spread.slice(0, 50) }], per * 60).length, 1);
  // The request bound cuts too, in order.
  const chunks = chunkTopicMessages([{ topic: 'a', messages: spread }], per * 60, per * 100);
  assert.equal(chunks.length, 4);
  assert.deepEqual(chunks.flatMap((c) => c.flatMap((t) => t.messages.map((m) => m.key))), spread.map((m) => m.key));
});

/** A producer that behaves like an idempotent producer on a real broker with a size limit. */
class ScriptedBroker {
  readonly log: { producer: number; records: number; failed: boolean }[] = [];
  readonly written: string[] = [];
  producers = 0;
  offset = 0;
  /** Requests above this many bytes fail with MESSAGE_TOO_LARGE. */
  limit = Infinity;
  /** The next request of every producer after a failure fails with OUT_OF_ORDER_SEQUENCE_NUMBER. */
  readonly broken = new Set<number>();
  failNext = 0;

  kafka(): Kafka {
    return { producer: () => this.#producer() } as unknown as Kafka;
  }

  #producer(): Producer {
    const id = ++this.producers;
    const send = (b: ProducerBatch): Promise<RecordMetadata[]> => {
      const records = (b.topicMessages ?? []).flatMap((t) => t.messages);
      const entry = { producer: id, records: records.length, failed: true };
      this.log.push(entry);
      if (this.broken.has(id)) return Promise.reject(Object.assign(new Error('The broker received an out of order sequence number'), { type: 'OUT_OF_ORDER_SEQUENCE_NUMBER' }));
      // As a broker does: the limit applies to each partition's record batch.
      const batches = new Map<string, number>();
      for (const t of b.topicMessages ?? []) for (const m of t.messages) batches.set(`${t.topic}/${m.partition ?? '*'}`, (batches.get(`${t.topic}/${m.partition ?? '*'}`) ?? 0) + messageBytes(m));
      if ([...batches.values()].some((bytes) => bytes > this.limit)) {
        this.broken.add(id);
        return Promise.reject(Object.assign(new Error('The request included a message larger than the max message size the server will accept'), { type: 'MESSAGE_TOO_LARGE' }));
      }
      if (this.failNext > 0) {
        this.failNext--;
        this.broken.add(id);
        return Promise.reject(new Error('Connection error: socket hang up'));
      }
      entry.failed = false;
      const base = this.offset;
      this.offset += records.length;
      this.written.push(...records.map((m) => String(m.key)));
      return Promise.resolve((b.topicMessages ?? []).map((t) => ({ topicName: t.topic, partition: 0, errorCode: 0, baseOffset: String(base) })));
    };
    return { connect: () => Promise.resolve(), disconnect: () => Promise.resolve(), sendBatch: send } as unknown as Producer;
  }
}

test('one request for a commit within the bounds: every topic\'s messages in one list, topics in order of first appearance, messages in order, empty lists left out; above the bound the same order across requests', () => {
  let seed = 7;
  const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  for (let round = 0; round < 50; round++) {
    const input = Array.from({ length: 1 + rand(8) }, () => ({
      topic: `t${rand(4)}`,
      messages: Array.from({ length: rand(6) }, (_, i) => ({ ...msg(round * 100 + i, rand(300)), ...(rand(3) === 0 ? { partition: undefined } : { partition: rand(3) }) })),
    }));
    const want = new Map<string, (string | Buffer | null | undefined)[]>();
    for (const { topic, messages } of input) for (const m of messages) (want.get(topic) ?? want.set(topic, []).get(topic))?.push(m.key);
    const total = input.reduce((n, t) => n + t.messages.reduce((a, m) => a + messageBytes(m), 0), 0);
    for (const bound of [1_000_000, Math.max(400, Math.floor(total / 3))]) {
      const chunks = chunkTopicMessages(input, bound);
      if (bound >= total) assert.equal(chunks.length, want.size === 0 ? 0 : 1, 'one request within the bounds');
      for (const c of chunks) {
        assert.equal(new Set(c.map((t) => t.topic)).size, c.length, 'a topic once per request');
        for (const t of c) assert.ok(t.messages.length > 0, 'no empty topic list');
      }
      if (bound >= total) assert.deepEqual(chunks[0]?.map((t) => t.topic) ?? [], [...want.keys()], 'topics in order of first appearance');
      const got = new Map<string, (string | Buffer | null | undefined)[]>();
      for (const c of chunks) for (const t of c) for (const m of t.messages) (got.get(t.topic) ?? got.set(t.topic, []).get(t.topic))?.push(m.key);
      assert.deepEqual(got, want, `round ${round}, bound ${bound}`);
    }
  }
});

test('a request the broker refuses as too large halves the bound, replaces the producer and writes everything in order', async () => {
  const broker = new ScriptedBroker();
  const messages = Array.from({ length: 400 }, (_, i) => msg(i));
  broker.limit = messageBytes(messages[0] as Message) * 50;
  const replaced: string[] = [];
  const c = new RecordCollector({ kafka: broker.kafka(), idempotent: true, logger: silent, onReplaced: (r) => replaced.push(r) });
  await c.connect();
  const offsets = await c.send([{ topic: 'crm.trigger-audit.v1', messages }]);
  assert.deepEqual(broker.written, messages.map((m) => m.key));
  assert.ok(replaced.includes('too-large'));
  assert.ok(c.maxRequestBytes <= broker.limit);
  assert.equal(offsets.get('crm.trigger-audit.v1\u00000'), '400');
  // No request went through a producer after it had failed (no out-of-order sequence wedge).
  for (const id of broker.broken) assert.equal(broker.log.filter((l) => l.producer === id).at(-1)?.failed, true);
  assert.equal(broker.log.filter((l) => l.failed).length, broker.broken.size);
});

test('any failed request replaces the producer and is repeated; a record too large for any request fails the send', async () => {
  const broker = new ScriptedBroker();
  broker.failNext = 2;
  const c = new RecordCollector({ kafka: broker.kafka(), idempotent: true, logger: silent });
  await c.connect();
  await c.send([{ topic: 't', messages: [msg(1), msg(2)] }]);
  assert.deepEqual(broker.written, ['k0001', 'k0002']);
  assert.equal(broker.producers, 3);
  broker.limit = 50;
  const fixed = new RecordCollector({ kafka: broker.kafka(), idempotent: true, logger: silent, maxRequestBytes: 10_000 });
  await fixed.connect();
  await assert.rejects(fixed.send([{ topic: 't', messages: [msg(3, 200)] }]), (err: unknown) => isKairosError(err, 'KAIROS_ERR_RECORD_TOO_LARGE'));
  assert.equal(isTooLarge({ type: 'RECORD_LIST_TOO_LARGE' }), true);
  assert.equal(isTooLarge(new Error('timeout')), false);
});

test('while held (the runner: a membership not confirmed after a stall) no request goes out: each send fails at once, without replacing the producer; once released they go out again', async () => {
  const broker = new ScriptedBroker();
  let held = true;
  const replaced: string[] = [];
  const c = new RecordCollector({ kafka: broker.kafka(), idempotent: true, logger: silent, held: () => held, onReplaced: (r) => replaced.push(r) });
  await c.connect();
  await assert.rejects(c.send([{ topic: 't', messages: [msg(1)] }]), /produce held back/);
  assert.deepEqual(broker.written, []);
  assert.deepEqual(replaced, []);
  held = false;
  await c.send([{ topic: 't', messages: [msg(2)] }]);
  assert.deepEqual(broker.written, ['k0002']);
});

test('sendBounded (exactly-once: through the transaction) cuts requests and reports where each partition got to', async () => {
  const broker = new ScriptedBroker();
  const p = broker.kafka().producer();
  const messages = Array.from({ length: 100 }, (_, i) => msg(i));
  const offsets = await sendBounded(p, [{ topic: 'cl', messages }], messageBytes(messages[0] as Message) * 10);
  assert.equal(broker.log.length, 10);
  assert.equal(offsets.get('cl\u00000'), '100');
});

test('topics the broker neither creates nor auto-creates stop start-up at once with one error naming each and how to create it', async () => {
  const admin = {
    listTopics: () => Promise.resolve(['shop.basket.v1']),
    createTopics: () => Promise.reject(new Error('Cluster authorization failed')),
    fetchTopicMetadata: ({ topics }: { topics: string[] }) =>
      topics.every((t) => t === 'shop.basket.v1')
        ? Promise.resolve({ topics: topics.map((name) => ({ name, partitions: [{ partitionId: 0 }] })) })
        : Promise.reject(new Error('This server does not host this topic-partition')),
  } as unknown as Admin;
  await assert.rejects(
    ensureTopics(
      admin,
      [
        { topic: 'shop.basket.v1', numPartitions: 1 },
        { topic: 'crm.triggers.v1', numPartitions: 1, anyPartitions: true },
        { topic: 'app-x-repartition', numPartitions: 1, configs: { 'retention.ms': '-1' } },
      ],
      silent,
      { autoCreateWaitMs: 300 },
    ),
    (err: unknown) =>
      isKairosError(err, 'KAIROS_ERR_TOPICS_MISSING') &&
      /crm\.triggers\.v1, app-x-repartition/.test(err.message) &&
      /--config retention\.ms=-1/.test(err.message) &&
      /Cluster authorization failed/.test(err.message),
  );
});

test('sends arriving together go out as one request (group commit), each caller answered with its own partitions; a failing one fails alone', async () => {
  const broker = new ScriptedBroker();
  const c = new RecordCollector({ kafka: broker.kafka(), idempotent: true, logger: silent, maxRequestBytes: 10_000 });
  await c.connect();
  const [a, b, d] = await Promise.all([
    c.send([{ topic: 'a', messages: [msg(1), msg(2)] }]),
    c.send([{ topic: 'b', messages: [msg(3)] }]),
    c.send([{ topic: 'd', messages: [msg(4), msg(5), msg(6)] }]),
  ]);
  assert.equal(broker.log.length, 1, 'one produce request for the three sends');
  assert.deepEqual(broker.written, ['k0001', 'k0002', 'k0003', 'k0004', 'k0005', 'k0006']);
  assert.deepEqual([...a], [['a\u00000', '2']]);
  assert.deepEqual([...b], [['b\u00000', '1']]);
  assert.deepEqual([...d], [['d\u00000', '3']]);
  // A send whose record fits no request fails on its own; the sends grouped with it are written, in order.
  const before = broker.written.length;
  const results = await Promise.allSettled([
    c.send([{ topic: 'a', messages: [msg(7)] }]),
    c.send([{ topic: 'a', messages: [msg(8, 20_000)] }]),
    c.send([{ topic: 'b', messages: [msg(9)] }]),
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
  assert.ok(results[1]?.status === 'rejected' && isKairosError(results[1].reason, 'KAIROS_ERR_RECORD_TOO_LARGE'));
  assert.deepEqual(broker.written.slice(before), ['k0007', 'k0009']);
  // A send arriving while one is in flight waits for it (order across sends is kept).
  const first = c.send([{ topic: 'a', messages: [msg(10)] }]);
  await new Promise((r) => setImmediate(r));
  const second = c.send([{ topic: 'a', messages: [msg(11)] }]);
  await Promise.all([first, second]);
  assert.deepEqual(broker.written.slice(-2), ['k0010', 'k0011']);
});
