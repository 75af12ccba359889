/**
 * The Kafka side of task state: every commit's store changes (and consumed input positions) go to compacted
 * changelog topics `<applicationId>-<store>-changelog`, partition = task partition; a task whose local state is
 * missing or behind its changelog is restored from its checkpoint to the log end before it processes anything.
 */
import { randomUUID } from 'node:crypto';
import type { Admin, Kafka, Message, Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { changelogTopic, POSITIONS_STORE, type ChangelogCheckpoint, type ChangelogEntry, type ChangelogSendOptions, type ChangelogWriter } from '../engine/state/changelog.js';
import type { TaskState } from '../engine/state/task-state.js';
import { KairosError } from '../errors.js';
import type { FetchEventPayload } from './kafkajs-preload.js';
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
  /** Store changelog topic → its end after the last complete commit, over every commit (see send). */
  readonly #ends: Map<string, string>;

  /**
   * `send`: the runner's record collector (at-least-once) or the task's transaction (exactly-once).
   * `committed`: where each store changelog stood after the last complete commit before this writer (the
   * restored state's checkpoints), so the first marker covers stores this writer has not written yet.
   */
  constructor(send: ChangelogSend, applicationId: string, partition: number, committed: ReadonlyMap<string, string> = new Map()) {
    this.#send = send;
    this.#applicationId = applicationId;
    this.#partition = partition;
    this.#ends = new Map(committed);
  }

  /**
   * Store entries first (the runner's repartition records go in the same request: `beforeComplete` waits for
   * them), then the consumed positions, then a commit marker on the positions changelog whose
   * value is where every store changelog got to — every store, also those this commit did not write, so the
   * last marker alone is enough (the compacted positions log keeps only the last one). A commit whose
   * requests were cut short (a kill between two of them) has no marker: a restore stops each store at the
   * last marker's offsets and skips the rest, so restored stores and positions always belong to one complete
   * commit (no record applied twice).
   */
  async send(_taskId: string, entries: readonly ChangelogEntry[], options: ChangelogSendOptions = {}): Promise<ChangelogCheckpoint> {
    const stores = new Map<string, Message[]>();
    const positions: Message[] = [];
    const positionsTopic = changelogTopic(this.#applicationId, POSITIONS_STORE);
    for (const e of entries) {
      const m: Message = { key: e.key, value: e.value, partition: this.#partition, ...(Number.isFinite(e.timestamp) && e.timestamp >= 0 ? { timestamp: String(e.timestamp) } : {}) };
      if (e.store === POSITIONS_STORE) {
        positions.push(m);
        continue;
      }
      const topic = changelogTopic(this.#applicationId, e.store);
      let list = stores.get(topic);
      if (!list) stores.set(topic, (list = []));
      list.push(m);
    }
    const checkpoint = stores.size > 0 ? await this.#send([...stores].map(([topic, messages]) => ({ topic, messages }))) : new Map<string, string>();
    // What else the commit needs durable before its marker (the runner's repartition records, sent alongside).
    await options.beforeComplete?.();
    const ends = new Map(this.#ends);
    for (const [k, v] of checkpoint) ends.set(k.slice(0, k.lastIndexOf('\u0000')), v);
    positions.push({ key: COMMIT_MARKER_KEY, value: JSON.stringify(Object.fromEntries(ends)), partition: this.#partition });
    for (const [k, v] of await this.#send([{ topic: positionsTopic, messages: positions }])) checkpoint.set(k, v);
    // Only now is the commit complete; a failed send leaves the ends where the last complete commit put them.
    for (const [k, v] of ends) this.#ends.set(k, v);
    return checkpoint;
  }
}

/** Key of the commit marker in the positions changelog (no input topic name is empty, so no collision). */
export const COMMIT_MARKER_KEY = '\u0000commit';

/** A commit marker's value: store changelog topic → its end offset after that commit. */
export function commitMarkerEnds(value: Buffer | null): Record<string, string> {
  return value ? (JSON.parse(value.toString('utf8')) as Record<string, string>) : {};
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

/** Keys of store changelog records a restore skipped (a commit without its marker): rewrite them at the next commit. */
export type RestoreRepair = Map<string, Set<string>>;

/**
 * Brings `state` up to its last complete commit in the changelog, starting at its checkpoint. Returns the
 * number of entries applied (0 when the local state was current, without touching the broker's groups).
 *
 * Consistency: positions and stores are restored to the same commit. The positions changelog is read first,
 * up to its end taken before anything else (a previous owner may still be writing), and its last commit
 * marker gives where each store changelog stood after that commit. Store records beyond (a commit cut short
 * by a kill, whose positions never came) are skipped, and their keys go to `repair`: the task rewrites them
 * at its first commit, so they are superseded before a later marker covers them. No marker after the local
 * checkpoint (or none at all, for an empty state) means no commit completed since: everything after the
 * checkpoint is skipped, stores and positions alike — the inputs behind it are processed again.
 */
export async function restoreFromChangelog(opts: RestoreOptions & { readonly repair?: RestoreRepair }): Promise<number> {
  const { state, partition: p, logger } = opts;
  const positionsTopic = changelogTopic(opts.applicationId, POSITIONS_STORE);
  // The positions changelog always: its commit markers say how far each store's log is complete.
  const storeByTopic = new Map([...new Set([...opts.stores, POSITIONS_STORE])].map((s) => [changelogTopic(opts.applicationId, s), s]));
  const ranges = new Map<string, { next: bigint; end: bigint }>();
  // The positions changelog's end first (see above), then the stores'.
  for (const topic of [positionsTopic, ...[...storeByTopic.keys()].filter((t) => t !== positionsTopic)]) {
    if (!storeByTopic.has(topic)) continue;
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
    ranges.set(topic, { next, end });
  }
  const remaining = (): bigint => [...ranges.values()].reduce((a, t) => a + (t.end > t.next ? t.end - t.next : 0n), 0n);
  if (remaining() === 0n) return 0;
  logger.info({ partition: p, topics: [...ranges].filter(([, r]) => r.end > r.next).map(([t]) => t), records: remaining().toString() }, 'restoring task state from changelog');
  let restored = 0;
  // Phase 1: positions, applied commit by commit (up to each marker); what follows the last marker is dropped.
  const pos = ranges.get(positionsTopic);
  let ends: Record<string, string> | undefined;
  if (pos && pos.end > pos.next) {
    let held: ChangelogEntry[] = [];
    let heldUpTo = pos.next;
    restored += await readRanges(opts, new Map([[positionsTopic, pos]]), async (_topic, messages) => {
      let applied = 0;
      for (const m of messages) {
        if (m.key?.toString('utf8') === COMMIT_MARKER_KEY) {
          // Markers name every store's end; merged anyway, so a store a marker leaves out keeps an earlier end.
          ends = { ...ends, ...commitMarkerEnds(m.value) };
          applied += held.length > 0 ? await state.restore(held) : 0;
          held = [];
          heldUpTo = BigInt(m.offset) + 1n;
          continue;
        }
        if (m.key) held.push({ store: POSITIONS_STORE, key: m.key, value: m.value, timestamp: Number(m.timestamp) });
      }
      return { applied, next: heldUpTo };
    });
    if (held.length > 0) {
      logger.warn({ partition: p, dropped: held.length }, 'positions after the last commit marker dropped (a commit cut short); its inputs are processed again');
      // Rewritten at the next commit, so the dropped ones are superseded before a later marker covers them.
      opts.repair?.set(POSITIONS_STORE, new Set());
    }
    state.setPosition(positionsTopic, p, heldUpTo.toString());
    await state.commit();
  }
  // Phase 2: stores, each up to where the last complete commit left it.
  const stores = new Map([...ranges].filter(([t, r]) => t !== positionsTopic && r.end > r.next));
  const limit = (topic: string, r: { next: bigint; end: bigint }): bigint => {
    // No marker read: no commit completed after the local checkpoint (an empty state: none at all, e.g. the
    // first commit was cut short by a kill), so whatever follows the checkpoint belongs to a commit cut short.
    if (ends === undefined) return r.next;
    // A store no complete commit wrote to since the checkpoint: its records after it belong to a commit cut short.
    const e = ends[topic];
    if (e === undefined) return r.next;
    const upTo = BigInt(e);
    return upTo < r.next ? r.next : upTo > r.end ? r.end : upTo;
  };
  let skipped = 0;
  restored += await readRanges(opts, stores, async (topic, messages) => {
    const store = storeByTopic.get(topic) as string;
    const r = stores.get(topic) as { next: bigint; end: bigint };
    const upTo = limit(topic, r);
    const entries: ChangelogEntry[] = [];
    let next = r.next;
    for (const m of messages) {
      const off = BigInt(m.offset);
      if (off >= upTo) {
        // Everything below upTo is read (compaction may have removed its last records): the checkpoint is upTo.
        if (upTo > next) next = upTo;
        skipped++;
        if (m.key && opts.repair) {
          let keys = opts.repair.get(store);
          if (!keys) opts.repair.set(store, (keys = new Set()));
          keys.add(m.key.toString('utf8'));
        }
        continue;
      }
      if (m.key) entries.push({ store, key: m.key, value: m.value, timestamp: Number(m.timestamp) });
      next = off + 1n;
    }
    return { applied: entries.length > 0 ? await state.restore(entries) : 0, next };
  });
  if (skipped > 0) logger.warn({ partition: p, skipped }, 'store changelog records after the last commit marker skipped (a commit cut short); their keys are rewritten at the next commit');
  logger.info({ partition: p, restored }, 'task state restored');
  return restored;
}

interface LogMessage {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly offset: string;
  readonly timestamp: string;
}

/** Bytes fetched per partition and round during a restore. */
const RESTORE_FETCH_BYTES = 16 * 1024 * 1024;

/**
 * The messages with next ≤ offset < end. A fetched batch is in offset order, so the bounds are found by
 * looking at its ends (one BigInt each) rather than at every message; usually the whole batch is in range.
 */
function inOffsetRange<M extends { readonly offset: string }>(messages: M[], next: bigint, end: bigint): M[] {
  const first = messages[0];
  const last = messages.at(-1);
  if (first === undefined || last === undefined) return [];
  if (BigInt(first.offset) >= next && BigInt(last.offset) < end) return messages;
  return messages.filter((m) => BigInt(m.offset) >= next && BigInt(m.offset) < end);
}

/**
 * Reads each topic's partition over its range with one throwaway consumer; `apply` gets the in-range
 * messages of a batch and returns what it applied and the next offset to record as the topic's checkpoint.
 */
async function readRanges(
  opts: RestoreOptions,
  ranges: ReadonlyMap<string, { next: bigint; end: bigint }>,
  apply: (topic: string, messages: LogMessage[]) => Promise<{ applied: number; next: bigint }>,
): Promise<number> {
  const { state, partition: p, logger } = opts;
  const todo = new Map([...ranges].filter(([, r]) => r.end > r.next).map(([t, r]) => [t, { next: r.next, end: r.end }]));
  if (todo.size === 0) return 0;
  const remaining = (): bigint => [...todo.values()].reduce((a, t) => a + (t.end - t.next), 0n);
  // Large fetches: a restore reads whole logs (kafkajs' defaults, 1 MiB per partition, made a 1M-customer
  // restore ~1,300 fetch rounds per store, each applied and checkpointed before the next).
  const consumer = opts.kafka.consumer({
    groupId: `${opts.groupId}-restore-${p}-${randomUUID()}`,
    maxWaitTimeInMs: opts.maxWaitTimeInMs ?? 100,
    maxBytesPerPartition: RESTORE_FETCH_BYTES,
    maxBytes: 4 * RESTORE_FETCH_BYTES,
    allowAutoTopicCreation: false,
  });
  let restored = 0;
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [...todo.keys()], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const seeked = new Set<string>();
      const idleRounds = new Map<string, number>();
      const seenData = new Set<string>();
      // Every partition read to its end offset: the restore is done.
      const allRead = (): boolean => [...todo.values()].every((x) => x.next >= x.end);
      // A transactional (exactly-once) changelog ends in commit markers, which kafkajs never hands on: the end of
      // a batch (its last offset counts its markers) or a batch of markers alone (no eachBatch, only the
      // END_BATCH_PROCESS event below) says how far the partition was read, so the restore ends at once instead of
      // after idle fetch rounds.
      const readThrough = (t: { next: bigint; end: bigint }, lastOffset: string): void => {
        const through = BigInt(lastOffset) + 1n;
        if (through > t.next) t.next = through > t.end ? t.end : through;
      };
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            const t = todo.get(batch.topic);
            if (batch.partition !== p || !t) {
              consumer.pause([{ topic: batch.topic, partitions: [batch.partition] }]);
              return;
            }
            const inRange = inOffsetRange(batch.messages, t.next, t.end);
            idleRounds.set(batch.topic, 0);
            seenData.add(batch.topic);
            const last = inRange.at(-1);
            if (last) {
              const r = await apply(batch.topic, inRange);
              restored += r.applied;
              t.next = BigInt(last.offset) + 1n;
              if (r.next > BigInt(state.position(batch.topic, p) ?? '-1')) state.setPosition(batch.topic, p, r.next.toString());
              await state.commit();
              opts.onProgress?.({ partition: p, restored, remaining: remaining() });
            }
            // Transaction markers after the batch's last record are read too (kafkajs does not hand them on).
            readThrough(t, batch.lastOffset());
            if (allRead()) resolve();
          },
        })
        .catch(reject);
      consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
        const { topic, partition, batchSize, firstOffset, lastOffset } = e.payload;
        const t = todo.get(topic);
        // Only markers, starting at or before where the restore has read to (a later one could follow records
        // not yet handed on).
        if (partition !== p || t === undefined || batchSize > 0 || firstOffset === null || BigInt(firstOffset) > t.next) return;
        readThrough(t, lastOffset);
        if (allRead()) resolve();
      });
      // What a fetch at the restore's position says without a record to hand on (the response's batches, before
      // kafkajs hands any on: kafkajs-preload.ts). Transaction markers and aborted records alone: the offsets
      // through the last of them hold nothing to restore. Nothing at all at or after the position, below the end:
      // the rest is batches the log cleaner emptied (an aborted transaction's records removed, the batch kept
      // for its producer's state; kafkajs decodes no record from it and fetches the same offset again) — complete
      // once two responses in a row that held no record for any partition (so none was cut short by the
      // response's byte limit) said so. Only fetches at the position count: kafkajs leaves a partition out of
      // its fetches while its last batch is being applied, and such rounds say nothing.
      // Per topic: the position of its last such fetch, and the quiet responses in a row that found nothing there.
      const quietAt = new Map<string, { readonly at: bigint; readonly rounds: number }>();
      consumer.on(consumer.events.FETCH, (e) => {
        const { batches } = e.payload as FetchEventPayload;
        if (batches === undefined) {
          legacyIdleRound();
          return;
        }
        const quiet = batches.every((b) => b.isEmptyIncludingFiltered());
        for (const b of batches) {
          const t = b.partition === p ? todo.get(b.topic) : undefined;
          if (t === undefined || t.next >= t.end || !b.isEmpty() || BigInt(b.fetchedOffset) !== t.next) continue;
          if (!b.isEmptyIncludingFiltered()) {
            readThrough(t, b.lastOffset());
            continue;
          }
          const last = quietAt.get(b.topic);
          const rounds = (last?.at === t.next ? last.rounds : 0) + (quiet ? 1 : 0);
          quietAt.set(b.topic, { at: t.next, rounds });
          if (rounds >= 2) {
            logger.info({ topic: b.topic, partition: p, at: t.next.toString(), end: t.end.toString() }, 'changelog has no record from here to its end (batches emptied by the log cleaner); restore of it complete');
            t.next = t.end;
          }
        }
        if (allRead()) resolve();
      });
      // Without the response's batches (kafkajs other than 2.2.4): a transactional (exactly-once) changelog a few
      // offsets short of its end (its last commit markers) that fetches nothing for several rounds is complete.
      const legacyIdleRound = (): void => {
        if (!opts.transactional || seeked.size < todo.size) return;
        for (const [topic, t] of todo) {
          if (t.next >= t.end || t.end - t.next > 10n) continue;
          const n = (idleRounds.get(topic) ?? 0) + 1;
          idleRounds.set(topic, n);
          if ((seenData.has(topic) && n >= 5) || n >= 30) {
            logger.info({ topic, partition: p, at: t.next.toString(), end: t.end.toString() }, 'changelog has no more records before its end offset (transaction markers); restore of it complete');
            t.next = t.end;
          }
        }
        if (allRead()) resolve();
      };
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
  return restored;
}
