/**
 * crm.customers.v1 for `kairos segments sync`: read the compacted topic from the beginning up to the high
 * watermarks seen at the start (the current profile of every customer; a tombstone erases one), and publish
 * updated profiles. Reading uses a throwaway consumer group that never commits.
 */
import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import type { CustomerProfile } from '../../schemas/contract.js';
import { KairosError } from '../errors.js';
import type { TopicSerde } from './serde.js';

export const PROFILES_TOPIC = 'crm.customers.v1';

export interface ProfileSnapshot {
  /** customerId → profile, or null when the newest record is a tombstone. */
  readonly profiles: Map<string, CustomerProfile | null>;
  /** Records that did not decode (skipped). */
  readonly invalid: number;
  readonly records: number;
}

export interface ProfileTopic {
  read(onProgress?: (records: number, total: number) => void): Promise<ProfileSnapshot>;
  publish(profiles: readonly CustomerProfile[]): Promise<void>;
}

export function profileTopic(kafka: Kafka, serde: TopicSerde, logger: Logger, options: { timeoutMs?: number; maxWaitTimeInMs?: number } = {}): ProfileTopic {
  const log = logger.child({ component: 'profiles' });
  return {
    async read(onProgress) {
      const admin = kafka.admin();
      await admin.connect();
      let ends: { partition: number; high: string; low: string }[];
      try {
        ends = await admin.fetchTopicOffsets(PROFILES_TOPIC);
      } finally {
        await admin.disconnect();
      }
      const remaining = new Map(ends.filter((e) => BigInt(e.high) > BigInt(e.low)).map((e) => [e.partition, BigInt(e.high) - 1n]));
      const total = ends.reduce((s, e) => s + Number(BigInt(e.high) - BigInt(e.low)), 0);
      const profiles = new Map<string, CustomerProfile | null>();
      let invalid = 0;
      let records = 0;
      if (remaining.size === 0) return { profiles, invalid, records };
      const consumer = kafka.consumer({ groupId: `kairos-segments-read-${randomUUID()}`, maxWaitTimeInMs: options.maxWaitTimeInMs ?? 500 });
      await consumer.connect();
      try {
        await consumer.subscribe({ topics: [PROFILES_TOPIC], fromBeginning: true });
        await new Promise<void>((resolve, reject) => {
          const timeoutMs = options.timeoutMs ?? 600_000;
          const timer = setTimeout(
            () => reject(new KairosError('KAIROS_ERR_KAFKA', `reading ${PROFILES_TOPIC} did not reach its end within ${timeoutMs} ms (${records} of ${total} records)`)),
            timeoutMs,
          );
          consumer
            .run({
              autoCommit: false,
              eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
                for (const m of batch.messages) {
                  const end = remaining.get(batch.partition);
                  if (end === undefined || BigInt(m.offset) > end) break;
                  records++;
                  const d = await serde.decode(PROFILES_TOPIC, m.key, m.value);
                  if (d.ok) profiles.set(d.key, d.value as CustomerProfile | null);
                  else invalid++;
                  resolveOffset(m.offset);
                  if (BigInt(m.offset) >= end) remaining.delete(batch.partition);
                }
                onProgress?.(records, total);
                await heartbeat();
                if (remaining.size === 0) {
                  clearTimeout(timer);
                  resolve();
                }
              },
            })
            .catch((err: unknown) => {
              clearTimeout(timer);
              reject(err instanceof Error ? err : new Error(String(err)));
            });
        });
      } finally {
        await consumer.disconnect();
      }
      if (invalid > 0) log.warn({ invalid }, `${PROFILES_TOPIC}: records that do not decode were skipped`);
      return { profiles, invalid, records };
    },

    async publish(profiles) {
      if (profiles.length === 0) return;
      const producer = kafka.producer({ allowAutoTopicCreation: true, idempotent: false });
      await producer.connect();
      try {
        for (let i = 0; i < profiles.length; i += 500) {
          const chunk = profiles.slice(i, i + 500);
          const messages = await Promise.all(chunk.map(async (p) => ({ key: p.customerId, value: await serde.encode(PROFILES_TOPIC, p) })));
          await producer.send({ topic: PROFILES_TOPIC, acks: -1, messages });
        }
      } finally {
        await producer.disconnect();
      }
    },
  };
}
