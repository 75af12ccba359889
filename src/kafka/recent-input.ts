/**
 * The recent input of the engine as replay lines: every record of the input topics written since a time (the
 * broker's record timestamps), up to the end offsets at the start of the read, decoded with the instance's serde
 * and ordered by event time — the console's backtest over "the last N hours". Bounded in records and time; a
 * consumer of its own throw-away group, so the engine's offsets are never touched.
 */
import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import type { TopicName } from '../../schemas/contract.js';
import type { TopicSerde } from './serde.js';

/** What the topologies read (replay accepts these and the outputs; outputs are not replayed). */
export const INPUT_TOPICS: readonly TopicName[] = ['crm.customers.v1', 'shop.catalog.v1', 'shop.basket.v1', 'shop.wishlist.v1', 'shop.orders.v1', 'shop.pageviews.v1'];

export interface RecentInputOptions {
  readonly kafka: Kafka;
  readonly serde: TopicSerde;
  /** Epoch ms: records with a broker timestamp at or after it. */
  readonly since: number;
  readonly maxRecords: number;
  readonly timeoutMs: number;
  readonly topics?: readonly TopicName[];
}

export interface RecentInput {
  /** NDJSON envelopes in event-time order. */
  readonly ndjson: string;
  readonly records: number;
  /** Records that did not decode (skipped, as the engine skips them to its DLQ). */
  readonly undecodable: number;
  /** true when maxRecords or the time limit stopped the read before the end offsets. */
  readonly truncated: boolean;
}

export async function readRecentInput(o: RecentInputOptions): Promise<RecentInput> {
  const admin = o.kafka.admin();
  await admin.connect();
  /** topic → partition → [start offset, end offset) */
  const ranges = new Map<string, Map<number, [bigint, bigint]>>();
  try {
    const existing = new Set(await admin.listTopics());
    for (const topic of o.topics ?? INPUT_TOPICS) {
      if (!existing.has(topic)) continue;
      const [from, fromZero, ends] = await Promise.all([admin.fetchTopicOffsetsByTimestamp(topic, o.since), admin.fetchTopicOffsetsByTimestamp(topic, 0), admin.fetchTopicOffsets(topic)]);
      const parts = new Map<number, [bigint, bigint]>();
      for (const e of ends) {
        // A broker that cannot look offsets up by time (librdkafka's mock answers the end offset even for time 0)
        // is read from its first offset; the records' timestamps filter the window then.
        const lookup = fromZero.find((f) => f.partition === e.partition)?.offset;
        const unsupported = lookup === e.high && BigInt(e.low) < BigInt(e.high);
        const start = BigInt(unsupported ? e.low : (from.find((f) => f.partition === e.partition)?.offset ?? e.high));
        const end = BigInt(e.high);
        if (start >= 0n && start < end) parts.set(e.partition, [start, end]);
      }
      if (parts.size > 0) ranges.set(topic, parts);
    }
  } finally {
    await admin.disconnect();
  }
  const envelopes: { at: number; seq: number; line: string }[] = [];
  let undecodable = 0;
  let pending = [...ranges.values()].reduce((n, p) => n + p.size, 0);
  if (pending === 0) return { ndjson: '', records: 0, undecodable: 0, truncated: false };
  const consumer = o.kafka.consumer({ groupId: `kairos-console-backtest-${randomUUID()}`, maxWaitTimeInMs: 250 });
  let truncated = false;
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [...ranges.keys()], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        truncated = true;
        resolve();
      }, o.timeoutMs);
      const done = new Set<string>();
      // Once the group has assigned the partitions, start each one at its first offset in the window.
      consumer.on(consumer.events.GROUP_JOIN, () => {
        for (const [topic, parts] of ranges) for (const [partition, [start]] of parts) consumer.seek({ topic, partition, offset: start.toString() });
      });
      consumer
        .run({
          autoCommit: false,
          eachBatchAutoResolve: true,
          eachBatch: async ({ batch }) => {
            const range = ranges.get(batch.topic)?.get(batch.partition);
            const id = `${batch.topic}\u0000${batch.partition}`;
            if (range === undefined || done.has(id)) return;
            for (const m of batch.messages) {
              const offset = BigInt(m.offset);
              if (offset < range[0]) continue;
              if (offset >= range[1]) break;
              if (Number(m.timestamp) < o.since) {
                if (offset === range[1] - 1n) break;
                continue;
              }
              const d = await o.serde.decode(batch.topic as TopicName, m.key, m.value);
              if (!d.ok) undecodable++;
              else {
                const env = { topic: batch.topic, key: d.key, value: d.value, ...(d.value === null ? { timestamp: Number(m.timestamp) } : {}) };
                envelopes.push({ at: d.timestamp ?? Number(m.timestamp), seq: envelopes.length, line: JSON.stringify(env) });
              }
              if (envelopes.length >= o.maxRecords) {
                truncated = true;
                clearTimeout(timer);
                resolve();
                return;
              }
              if (offset === range[1] - 1n) break;
            }
            const last = batch.messages[batch.messages.length - 1];
            if (last !== undefined && BigInt(last.offset) >= range[1] - 1n && !done.has(id)) {
              done.add(id);
              if (--pending === 0) {
                clearTimeout(timer);
                resolve();
              }
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect().catch(() => undefined);
  }
  envelopes.sort((a, b) => a.at - b.at || a.seq - b.seq);
  return { ndjson: envelopes.map((e) => e.line).join('\n') + (envelopes.length > 0 ? '\n' : ''), records: envelopes.length, undecodable, truncated };
}
