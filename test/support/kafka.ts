/** Test helpers around librdkafka's mock cluster (started per test file through Debian's kcat). */
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import type { Kafka, KafkaMessage, Message } from 'kafkajs';
import pino from 'pino';
import { createKafka } from '../../src/kafka/client.js';
import { crc32c } from '../../src/kafka/produce-encoding.js';
import type { KafkaRunnerOptions } from '../../src/kafka/runner.js';
import { JsonSerde } from '../../src/kafka/serde.js';

export const silent = pino({ level: process.env.KAIROS_TEST_LOG ?? 'silent' });

export function testKafka(brokers: readonly string[]): Kafka {
  return createKafka({ brokers, clientId: `test-${randomUUID().slice(0, 8)}`, logger: silent, requestTimeout: 10_000 });
}

export async function produce(kafka: Kafka, topic: string, messages: Message[]): Promise<void> {
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  try {
    await producer.send({ topic, messages, acks: -1 });
  } finally {
    await producer.disconnect();
  }
}

const zigzagVarint = (v: number): number[] => {
  let z = ((v << 1) ^ (v >> 31)) >>> 0;
  const out: number[] = [];
  while (z >= 0x80) {
    out.push((z & 0x7f) | 0x80);
    z >>>= 7;
  }
  out.push(z);
  return out;
};

/**
 * A record batch (v2) holding one transaction marker (control record: key = version 0 and the type, value =
 * version 0 and coordinator epoch 0), marked transactional and control, as a transaction coordinator writes it.
 */
function markerBatch(type: 'abort' | 'commit', producerId: bigint): Buffer {
  const key = Buffer.alloc(4);
  key.writeInt16BE(type === 'commit' ? 1 : 0, 2);
  const value = Buffer.alloc(6);
  const body = Buffer.from([0, ...zigzagVarint(0), ...zigzagVarint(0), ...zigzagVarint(key.length), ...key, ...zigzagVarint(value.length), ...value, ...zigzagVarint(0)]);
  const record = Buffer.concat([Buffer.from(zigzagVarint(body.length)), body]);
  const fields = Buffer.alloc(2 + 4 + 8 + 8 + 8 + 2 + 4 + 4);
  const now = BigInt(Date.now());
  let at = fields.writeInt16BE(0x30, 0); // transactional | control
  at = fields.writeInt32BE(0, at); // lastOffsetDelta
  at = fields.writeBigInt64BE(now, at);
  at = fields.writeBigInt64BE(now, at);
  at = fields.writeBigInt64BE(producerId, at);
  at = fields.writeInt16BE(0, at); // producer epoch
  at = fields.writeInt32BE(-1, at); // base sequence
  fields.writeInt32BE(1, at); // one record
  const crcd = Buffer.concat([fields, record]);
  const head = Buffer.alloc(8 + 4 + 4 + 1 + 4);
  head.writeInt32BE(4 + 1 + 4 + crcd.length, 8); // batch length after this field
  head.writeInt32BE(-1, 12); // partition leader epoch
  head.writeInt8(2, 16); // magic
  head.writeUInt32BE(crc32c(crcd) >>> 0, 17);
  return Buffer.concat([head, crcd]);
}

/**
 * Appends a transaction marker to a partition with a raw Produce request (v3) to its leader. A real broker
 * refuses control batches from clients and writes them itself at the end of a transaction; librdkafka's mock
 * cluster appends it, and kafkajs' transactions do not run against the mock (its coordinator lookup fails).
 * Consumers then see what a transactional producer leaves: a record kafkajs does not hand on.
 */
export async function appendTransactionMarker(kafka: Kafka, topic: string, partition: number, type: 'abort' | 'commit' = 'commit'): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  let address: { host: string; port: number };
  try {
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    const leader = meta.topics[0]?.partitions.find((p) => p.partitionId === partition)?.leader;
    const broker = (await admin.describeCluster()).brokers.find((b) => b.nodeId === leader);
    if (broker === undefined) throw new Error(`no leader known for ${topic}[${partition}]`);
    address = broker;
  } finally {
    await admin.disconnect();
  }
  const client = Buffer.from('kairos-test');
  const name = Buffer.from(topic);
  const batch = markerBatch(type, 4242n);
  const header = Buffer.alloc(2 + 2 + 4 + 2);
  header.writeInt16BE(0, 0); // Produce
  header.writeInt16BE(3, 2);
  header.writeInt32BE(1, 4); // correlation id
  header.writeInt16BE(client.length, 8);
  const body = Buffer.alloc(2 + 2 + 4 + 4 + 2);
  body.writeInt16BE(-1, 0); // no transactional id
  body.writeInt16BE(-1, 2); // acks: all
  body.writeInt32BE(10_000, 4);
  body.writeInt32BE(1, 8); // one topic
  body.writeInt16BE(name.length, 12);
  const part = Buffer.alloc(12);
  part.writeInt32BE(1, 0); // one partition
  part.writeInt32BE(partition, 4);
  part.writeInt32BE(batch.length, 8);
  const payload = Buffer.concat([header, client, body, name, part, batch]);
  const size = Buffer.alloc(4);
  size.writeInt32BE(payload.length);
  const socket = connect(address.port, address.host);
  try {
    const response = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      socket.once('error', reject);
      socket.on('data', (d: Buffer) => {
        chunks.push(d);
        const all = Buffer.concat(chunks);
        if (all.length >= 4 && all.length >= 4 + all.readInt32BE(0)) resolve(all);
      });
      socket.write(Buffer.concat([size, payload]));
    });
    // size, correlation id, topics (1), topic name, partitions (1), partition, error code
    const errorCode = response.readInt16BE(4 + 4 + 4 + 2 + name.length + 4 + 4);
    if (errorCode !== 0) throw new Error(`the broker refused the marker for ${topic}[${partition}]: error code ${errorCode}`);
  } finally {
    socket.destroy();
  }
}

export interface Collected {
  readonly topic: string;
  readonly partition: number;
  readonly message: KafkaMessage;
}

/** Reads `topics` from the beginning until `done(all)` holds or the timeout passes; returns what it read. */
export async function collect(kafka: Kafka, topics: string[], done: (all: readonly Collected[]) => boolean, timeoutMs = 30_000): Promise<Collected[]> {
  const consumer = kafka.consumer({ groupId: `collect-${randomUUID()}`, maxWaitTimeInMs: 100 });
  const all: Collected[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics, fromBeginning: true });
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      void consumer.run({
        eachMessage: ({ topic, partition, message }) => {
          all.push({ topic, partition, message });
          if (done(all)) {
            clearTimeout(timer);
            resolve();
          }
          return Promise.resolve();
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
  return all;
}

export const json = <T>(m: KafkaMessage): T => JSON.parse((m.value as Buffer).toString('utf8')) as T;

/**
 * KafkaRunner options every test against the mock cluster shares: JSON, silent, no idempotence (the mock has
 * none), short fetch waits, quick punctuation, a short session so a stopped member is released soon.
 */
export function mockRunnerDefaults(): Pick<KafkaRunnerOptions, 'serde' | 'logger' | 'idempotent' | 'maxWaitTimeInMs' | 'punctuateIntervalMs' | 'sessionTimeout' | 'heartbeatInterval'> {
  return { serde: new JsonSerde(), logger: silent, idempotent: false, maxWaitTimeInMs: 100, punctuateIntervalMs: 200, sessionTimeout: 10_000, heartbeatInterval: 1000 };
}
