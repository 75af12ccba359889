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

/**
 * Retries `attempt` with exponential backoff (100 ms doubling, at most 2 s) while it returns an Error (not ready
 * yet) or throws; gives up with KAIROS_ERR_KAFKA naming `what` after `attempts`.
 */
async function retryMetadata<T>(what: string, attempts: number, logger: Logger, attempt: () => Promise<T | Error>): Promise<T> {
  let lastErr: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      const r = await attempt();
      if (!(r instanceof Error)) return r;
      lastErr = r;
    } catch (err) {
      lastErr = err;
    }
    logger.debug({ what, attempt: i + 1, err: (lastErr as Error).message }, 'metadata not ready, retrying');
    await sleep(Math.min(100 * 2 ** i, 2000));
  }
  throw new KairosError('KAIROS_ERR_KAFKA', `${what} not available: ${(lastErr as Error).message}`, { cause: lastErr });
}

/** Partition count per topic (auto-creating missing ones where the broker allows), retrying transient errors. */
export function partitionCounts(admin: Admin, topics: readonly string[], logger: Logger, attempts = 20): Promise<Map<string, number>> {
  return retryMetadata(`metadata for ${topics.join(', ')}`, attempts, logger, async () => {
    const meta = await admin.fetchTopicMetadata({ topics: [...topics] });
    const counts = new Map(meta.topics.map((t) => [t.name, t.partitions.length]));
    return topics.every((t) => (counts.get(t) ?? 0) > 0) ? counts : new Error(`no partitions yet for ${topics.filter((t) => !counts.get(t)).join(', ')}`);
  });
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
export function partitionOffsets(admin: Admin, topic: string, partition: number, logger: Logger, attempts = 15): Promise<{ low: string; high: string }> {
  return retryMetadata(`offsets of ${topic}[${partition}]`, attempts, logger, async () => {
    const o = (await admin.fetchTopicOffsets(topic)).find((x) => x.partition === partition);
    return o ? { low: o.low, high: o.high } : new Error(`no partition ${partition}`);
  });
}
