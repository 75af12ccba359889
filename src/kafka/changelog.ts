/**
 * The Kafka side of task state: every commit's store changes (and consumed input positions) go to compacted
 * changelog topics `<applicationId>-<store>-changelog`, partition = task partition; a task whose local state is
 * missing or behind its changelog is restored from its checkpoint to the log end before it processes anything.
 */
import { randomUUID } from 'node:crypto';
import type { Admin, Kafka, Message, Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { changelogTopic, POSITIONS_STORE, type ChangelogCheckpoint, type ChangelogEntry, type ChangelogWriter } from '../engine/state/changelog.js';
import type { TaskState } from '../engine/state/task-state.js';
import { KairosError } from '../errors.js';
import { partitionOffsets } from './topics.js';
import { DEFAULT_MAX_MESSAGE_BYTES, sendBounded, type ProducedOffsets, type TopicMessages } from './record-collector.js';

/** How the writer sends: bounded, in order, returning the next offset reached per explicit partition. */
export type ChangelogSend = (topicMessages: readonly TopicMessages[]) => Promise<ProducedOffsets>;

/** A send straight through a producer (tests, benchmarks): bounded requests, no retry. */
export function producerSend(producer: Pick<Producer, 'sendBatch'>, maxRequestBytes = DEFAULT_MAX_MESSAGE_BYTES - 4096): ChangelogSend {
  return (tm) => sendBounded(producer, tm, maxRequestBytes);
}

export class KafkaChangelogWriter implements ChangelogWriter {
  readonly #send: ChangelogSend;
  readonly #applicationId: string;
  readonly #partition: number;

  /** `send`: the runner's record collector (at-least-once) or the task's transaction (exactly-once). */
  constructor(send: ChangelogSend, applicationId: string, partition: number) {
    this.#send = send;
    this.#applicationId = applicationId;
    this.#partition = partition;
  }

  async send(_taskId: string, entries: readonly ChangelogEntry[]): Promise<ChangelogCheckpoint> {
    const byTopic = new Map<string, Message[]>();
    for (const e of entries) {
      const topic = changelogTopic(this.#applicationId, e.store);
      let list = byTopic.get(topic);
      if (!list) byTopic.set(topic, (list = []));
      list.push({ key: e.key, value: e.value, partition: this.#partition, ...(Number.isFinite(e.timestamp) && e.timestamp >= 0 ? { timestamp: String(e.timestamp) } : {}) });
    }
    // Requests are cut at the broker's size limit; the checkpoint is where each changelog partition got to.
    return this.#send([...byTopic].map(([topic, messages]) => ({ topic, messages })));
  }
}

export interface RestoreProgress {
  readonly partition: number;
  readonly restored: number;
  /** Records still to read, summed over the changelog topics. */
  readonly remaining: bigint;
}

export interface RestoreOptions {
  readonly kafka: Kafka;
  readonly admin: Admin;
  /** The task's state, opened without a changelog writer. */
  readonly state: TaskState;
  readonly applicationId: string;
  /** Store names whose changelogs to read (including the internal ones). */
  readonly stores: readonly string[];
  readonly partition: number;
  readonly groupId: string;
  readonly logger: Logger;
  readonly onProgress?: (p: RestoreProgress) => void;
  readonly maxWaitTimeInMs?: number;
  /** The changelog is written in transactions (exactly-once): its end may be commit markers, never delivered. */
  readonly transactional?: boolean;
  /**
   * Called when the changelog's log start has moved past the local checkpoint (or past 0 for an empty state):
   * records were deleted before this task read them, so keys written only there are lost. Compacted changelog
   * topics never move their log start; retention by time or size (or the mock broker's 5 MiB cap) does.
   */
  readonly onTrimmed?: (topic: string, records: bigint) => void;
}

/**
 * Brings `state` up to the end of its changelog partitions, starting at its checkpoint. Returns the number of
 * entries applied (0 when the local state was current, without touching the broker's consumer groups).
 */
export async function restoreFromChangelog(opts: RestoreOptions): Promise<number> {
  const { state, partition: p, logger } = opts;
  // The consumed positions' changelog end is taken first: a previous owner may still be writing its final
  // commit (store entries and positions go to different topics), and positions that run ahead of the restored
  // stores would make the task skip records whose effects it does not have. Positions behind the stores only
  // mean reprocessing.
  const stores = [...opts.stores].sort((a, b) => Number(b === POSITIONS_STORE) - Number(a === POSITIONS_STORE));
  const storeByTopic = new Map(stores.map((s) => [changelogTopic(opts.applicationId, s), s]));
  const todo = new Map<string, { next: bigint; end: bigint }>();
  for (const topic of storeByTopic.keys()) {
    const o = await partitionOffsets(opts.admin, topic, p, logger);
    const end = BigInt(o.high);
    const low = BigInt(o.low);
    const checkpoint = state.position(topic, p);
    // An empty state starts at 0: a compacted changelog keeps its log start there, so a later start means deletion.
    let next = checkpoint === undefined ? 0n : BigInt(checkpoint);
    if (next > end) {
      logger.warn({ topic, partition: p, checkpoint, end: o.high }, 'local checkpoint is past the changelog end (topic recreated?); reading the whole log');
      next = low;
    }
    if (next < low) {
      logger.error(
        { topic, partition: p, checkpoint: checkpoint ?? null, logStart: o.low, lost: (low - next).toString() },
        'changelog records were deleted before this task restored them (the topic must be compacted, without time or size retention); restoring what is left',
      );
      opts.onTrimmed?.(topic, low - next);
      next = low;
    }
    if (next < end) todo.set(topic, { next, end });
  }
  if (todo.size === 0) return 0;
  const remaining = (): bigint => [...todo.values()].reduce((a, t) => a + (t.end - t.next), 0n);
  logger.info({ partition: p, topics: [...todo.keys()], records: remaining().toString() }, 'restoring task state from changelog');
  const consumer = opts.kafka.consumer({ groupId: `${opts.groupId}-restore-${p}-${randomUUID()}`, maxWaitTimeInMs: opts.maxWaitTimeInMs ?? 100, allowAutoTopicCreation: false });
  let restored = 0;
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [...todo.keys()], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const seeked = new Set<string>();
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            const t = todo.get(batch.topic);
            if (batch.partition !== p || !t) {
              consumer.pause([{ topic: batch.topic, partitions: [batch.partition] }]);
              return;
            }
            const entries: ChangelogEntry[] = [];
            const store = storeByTopic.get(batch.topic) as string;
            let next = t.next;
            for (const m of batch.messages) {
              const off = BigInt(m.offset);
              if (off < t.next || off >= t.end) continue;
              if (m.key) entries.push({ store, key: m.key, value: m.value, timestamp: Number(m.timestamp) });
              next = off + 1n;
            }
            idleRounds.set(batch.topic, 0);
            seenData.add(batch.topic);
            if (entries.length > 0) restored += await state.restore(entries);
            if (next > t.next) {
              t.next = next;
              state.setPosition(batch.topic, p, next.toString());
              await state.commit();
              opts.onProgress?.({ partition: p, restored, remaining: remaining() });
            }
            if ([...todo.values()].every((x) => x.next >= x.end)) resolve();
          },
        })
        .catch(reject);
      // A transactional (exactly-once) changelog ends in commit markers, which are never delivered: a partition
      // a few offsets short of its end that fetches nothing for several rounds (after data came, or for long)
      // is complete.
      const idleRounds = new Map<string, number>();
      const seenData = new Set<string>();
      if (opts.transactional) {
        consumer.on(consumer.events.FETCH, () => {
          if (seeked.size < todo.size) return;
          for (const [topic, t] of todo) {
            if (t.next >= t.end || t.end - t.next > 10n) continue;
            const n = (idleRounds.get(topic) ?? 0) + 1;
            idleRounds.set(topic, n);
            if ((seenData.has(topic) && n >= 5) || n >= 30) {
              logger.info({ topic, partition: p, at: t.next.toString(), end: t.end.toString() }, 'changelog has no more records before its end offset (transaction markers); restore of it complete');
              t.next = t.end;
            }
          }
          if ([...todo.values()].every((x) => x.next >= x.end)) resolve();
        });
      }
      consumer.on(consumer.events.GROUP_JOIN, () => {
        for (const [topic, t] of todo) {
          if (seeked.has(topic)) continue;
          seeked.add(topic);
          consumer.seek({ topic, partition: p, offset: t.next.toString() });
        }
      });
      consumer.on(consumer.events.CRASH, (e) => reject(new KairosError('KAIROS_ERR_CHANGELOG', `restore consumer crashed: ${e.payload.error.message}`, { cause: e.payload.error })));
    });
  } finally {
    await consumer.disconnect();
  }
  logger.info({ partition: p, restored }, 'task state restored');
  return restored;
}
