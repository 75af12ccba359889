/** Test helpers around librdkafka's mock cluster (started per test file through Debian's kcat). */
import { randomUUID } from 'node:crypto';
import type { Kafka, KafkaMessage, Message } from 'kafkajs';
import pino from 'pino';
import { createKafka } from '../../src/kafka/client.js';
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
