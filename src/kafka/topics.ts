/**
 * Topic set-up: create what the topology needs (changelogs compacted, DLQs) with the right partition counts,
 * retrying while metadata is not ready, falling back to auto-creation where the broker has no CreateTopics
 * (librdkafka's mock cluster), and checking co-partitioning of the inputs before any task starts.
 */
import type { Admin } from 'kafkajs';
import type { Logger } from 'pino';
import { KairosError } from '../errors.js';

export interface TopicSpec {
  readonly topic: string;
  readonly numPartitions: number;
  readonly compacted?: boolean;
  readonly retentionMs?: number;
  /** Any partition count will do (a topic used through one key, e.g. the routing topic). */
  readonly anyPartitions?: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Partition count per topic (auto-creating missing ones where the broker allows), retrying transient errors. */
export async function partitionCounts(admin: Admin, topics: readonly string[], logger: Logger, attempts = 20): Promise<Map<string, number>> {
  let lastErr: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      const meta = await admin.fetchTopicMetadata({ topics: [...topics] });
      const counts = new Map(meta.topics.map((t) => [t.name, t.partitions.length]));
      if (topics.every((t) => (counts.get(t) ?? 0) > 0)) return counts;
      lastErr = new Error(`no partitions yet for ${topics.filter((t) => !counts.get(t)).join(', ')}`);
    } catch (err) {
      lastErr = err;
    }
    logger.debug({ err: lastErr, attempt: i + 1 }, 'topic metadata not ready, retrying');
    await sleep(Math.min(100 * 2 ** i, 2000));
  }
  throw new KairosError('KAIROS_ERR_KAFKA', `metadata for ${topics.join(', ')} not available: ${(lastErr as Error).message}`, { cause: lastErr });
}

/**
 * Inputs read by one task must be co-partitioned: the same key lands on the same partition number, so the
 * counts must be equal. Throws naming every topic and its count.
 */
export function checkCopartitioned(counts: ReadonlyMap<string, number>, topics: readonly string[]): number {
  const distinct = new Set(topics.map((t) => counts.get(t)));
  if (distinct.size !== 1) {
    const list = topics.map((t) => `${t}=${counts.get(t) ?? 'missing'}`).join(', ');
    throw new KairosError('KAIROS_ERR_COPARTITION', `input topics are not co-partitioned (partition counts differ): ${list}; give them the same partition count`);
  }
  return counts.get(topics[0] as string) as number;
}

/**
 * Creates missing topics. Where CreateTopics is refused (the mock cluster, or no ACL for it), falls back to
 * auto-creation through a metadata request and says so; then verifies every topic has the partitions asked for.
 */
export async function ensureTopics(admin: Admin, specs: readonly TopicSpec[], logger: Logger): Promise<void> {
  if (specs.length === 0) return;
  const existing = new Set(await admin.listTopics());
  const missing = specs.filter((s) => !existing.has(s.topic));
  if (missing.length > 0) {
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((s) => ({
          topic: s.topic,
          numPartitions: s.numPartitions,
          configEntries: [
            ...(s.compacted ? [{ name: 'cleanup.policy', value: 'compact' }] : []),
            ...(s.retentionMs === undefined ? [] : [{ name: 'retention.ms', value: String(s.retentionMs) }]),
          ],
        })),
      });
      logger.info({ topics: missing.map((s) => s.topic) }, 'created topics');
    } catch (err) {
      logger.warn({ err: (err as Error).message, topics: missing.map((s) => s.topic) }, 'CreateTopics refused; relying on broker auto-creation (cleanup policy not set)');
    }
  }
  const counts = await partitionCounts(
    admin,
    specs.map((s) => s.topic),
    logger,
  );
  const wrong = specs.filter((s) => !s.anyPartitions && counts.get(s.topic) !== s.numPartitions);
  if (wrong.length > 0) {
    const list = wrong.map((s) => `${s.topic} has ${counts.get(s.topic) ?? 0}, needs ${s.numPartitions}`).join('; ');
    throw new KairosError('KAIROS_ERR_COPARTITION', `internal topics have the wrong partition count: ${list}`);
  }
}

/**
 * Low and high offsets of one partition, retried while the broker's metadata for a just-created topic settles
 * (kafkajs fails with a TypeError when ListOffsets comes back empty).
 */
export async function partitionOffsets(admin: Admin, topic: string, partition: number, logger: Logger, attempts = 15): Promise<{ low: string; high: string }> {
  let lastErr: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      const o = (await admin.fetchTopicOffsets(topic)).find((x) => x.partition === partition);
      if (o) return { low: o.low, high: o.high };
      lastErr = new Error(`no partition ${partition}`);
    } catch (err) {
      lastErr = err;
    }
    logger.debug({ topic, partition, attempt: i + 1, err: (lastErr as Error).message }, 'offsets not available yet, retrying');
    await sleep(Math.min(100 * 2 ** i, 2000));
  }
  throw new KairosError('KAIROS_ERR_KAFKA', `offsets of ${topic}[${partition}] not available: ${(lastErr as Error).message}`, { cause: lastErr });
}
