/**
 * Topic set-up: create what the runner needs (inputs, outputs, internal topics with Kafka Streams' settings)
 * with the right partition counts, falling back to auto-creation where the broker has no CreateTopics
 * (librdkafka's mock cluster), reading the message size limit, and checking co-partitioning of the inputs
 * before any task starts.
 */
import type { Admin } from 'kafkajs';

/** kafkajs' ConfigResourceTypes.TOPIC (its enum is not a named ESM export of the CommonJS module). */
const TOPIC_RESOURCE = 2;
import type { Logger } from 'pino';
import { KairosError } from '../errors.js';

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

/** A topic the runner must have, with how to create it when it is missing. */
export interface NeededTopic {
  readonly topic: string;
  /** Partitions to create it with; -1: the broker's num.partitions. */
  readonly numPartitions: number;
  /** Topic configs to create it with (Kafka Streams' settings for internal topics). */
  readonly configs?: Readonly<Record<string, string>>;
  /** Any partition count will do (outputs, the routing topic); else it must have exactly numPartitions. */
  readonly anyPartitions?: boolean;
}

export interface EnsureOptions {
  /** Replication of created topics; -1: the broker's default.replication.factor. @default -1 */
  readonly replicationFactor?: number;
  /** How long to wait for a topic the broker should create on a metadata request. @default 3000 */
  readonly autoCreateWaitMs?: number;
}

/** Kafka Streams' settings for the internal topics (StreamsConfig, InternalTopicManager). */
export const INTERNAL_TOPIC_CONFIGS = {
  /** Compacted, never deleted by time: a restore needs every key's latest value. */
  changelog: { 'cleanup.policy': 'compact' },
  /**
   * Kept until consumed and committed, then purged with DeleteRecords: records carry event time as their
   * timestamp, so time retention would delete a backfill's records as soon as they are written.
   */
  repartition: { 'cleanup.policy': 'delete', 'retention.ms': '-1', 'segment.bytes': String(50 * 1024 * 1024) },
} as const;

/**
 * Creates what is missing of `needed` (CreateTopics with each topic's settings), and checks partition counts.
 * Where the broker refuses CreateTopics (librdkafka's mock cluster has none; a managed cluster without the ACL)
 * a metadata request still lets a broker with auto-creation create them (without the settings; logged).
 * Whatever is still missing then stops start-up with one error naming every topic and how to create it.
 */
export async function ensureTopics(admin: Admin, needed: readonly NeededTopic[], logger: Logger, o: EnsureOptions = {}): Promise<Map<string, number>> {
  if (needed.length === 0) return new Map();
  const existing = new Set(await admin.listTopics());
  const missing = needed.filter((s) => !existing.has(s.topic));
  let refused: string | undefined;
  if (missing.length > 0) {
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((s) => ({
          topic: s.topic,
          numPartitions: s.numPartitions,
          replicationFactor: o.replicationFactor ?? -1,
          configEntries: Object.entries(s.configs ?? {}).map(([name, value]) => ({ name, value })),
        })),
      });
      logger.info({ topics: missing.map((s) => s.topic) }, 'created topics');
    } catch (err) {
      // TOPIC_ALREADY_EXISTS from a concurrent start is fine: the counts are checked below.
      refused = (err as Error).message;
      const already = /already exists/i.test(refused);
      if (!already) logger.warn({ err: refused, topics: missing.map((s) => s.topic) }, 'CreateTopics refused; trying broker auto-creation (topic settings not applied)');
    }
  }
  const counts = await waitForTopics(admin, needed.map((s) => s.topic), o.autoCreateWaitMs ?? 3000);
  const absent = needed.filter((s) => !counts.get(s.topic));
  if (absent.length > 0) {
    const rf = o.replicationFactor ?? -1;
    const how = absent
      .map((s) => {
        const cfg = Object.entries(s.configs ?? {}).map(([k, v]) => ` --config ${k}=${v}`).join('');
        const parts = s.numPartitions > 0 ? ` --partitions ${s.numPartitions}` : '';
        return `  kafka-topics.sh --create --topic ${s.topic}${parts}${rf > 0 ? ` --replication-factor ${rf}` : ''}${cfg}`;
      })
      .join('\n');
    throw new KairosError(
      'KAIROS_ERR_TOPICS_MISSING',
      `${absent.length} topic(s) missing and the broker did not create them${refused ? ` (CreateTopics: ${refused})` : ''}: ${absent.map((s) => s.topic).join(', ')}; create them, e.g.\n${how}`,
      { details: { topics: absent.map((s) => s.topic) } },
    );
  }
  const wrong = needed.filter((s) => !s.anyPartitions && s.numPartitions > 0 && counts.get(s.topic) !== s.numPartitions);
  if (wrong.length > 0) {
    const list = wrong.map((s) => `${s.topic} has ${counts.get(s.topic) ?? 0}, needs ${s.numPartitions}`).join('; ');
    throw new KairosError('KAIROS_ERR_COPARTITION', `topics have the wrong partition count: ${list}`);
  }
  return counts;
}

/** Partition counts of `topics`, retried for up to `waitMs` while some have none yet (creation settling). */
async function waitForTopics(admin: Admin, topics: readonly string[], waitMs: number): Promise<Map<string, number>> {
  const until = Date.now() + waitMs;
  let counts = new Map<string, number>();
  for (let i = 0; ; i++) {
    try {
      const meta = await admin.fetchTopicMetadata({ topics: [...topics] });
      counts = new Map(meta.topics.map((t) => [t.name, t.partitions.length]));
    } catch {
      // UNKNOWN_TOPIC_OR_PARTITION for a missing one: ask for the ones that exist, so the rest is known.
      const present = new Set(await admin.listTopics());
      const known = topics.filter((t) => present.has(t));
      if (known.length > 0) {
        const meta = await admin.fetchTopicMetadata({ topics: known }).catch(() => ({ topics: [] }));
        counts = new Map(meta.topics.map((t) => [t.name, t.partitions.length]));
      }
    }
    if (topics.every((t) => (counts.get(t) ?? 0) > 0) || Date.now() >= until) return counts;
    await sleep(Math.min(100 * 2 ** i, 1000));
  }
}

/**
 * The smallest `max.message.bytes` of `topics` (a topic's limit defaults to the broker's message.max.bytes),
 * or undefined where the broker does not answer DescribeConfigs (the mock cluster).
 */
export async function messageLimit(admin: Admin, topics: readonly string[], logger: Logger): Promise<number | undefined> {
  try {
    const r = await admin.describeConfigs({
      includeSynonyms: false,
      resources: topics.map((name) => ({ type: TOPIC_RESOURCE, name, configNames: ['max.message.bytes'] })),
    });
    let min: number | undefined;
    for (const res of r.resources) {
      for (const e of res.configEntries) {
        const n = Number(e.configValue);
        if (e.configName === 'max.message.bytes' && Number.isFinite(n) && n > 0) min = min === undefined ? n : Math.min(min, n);
      }
    }
    return min;
  } catch (err) {
    logger.info({ err: (err as Error).message }, 'DescribeConfigs not answered; produce requests bounded by Kafka\'s default message.max.bytes');
    return undefined;
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
