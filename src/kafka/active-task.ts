/**
 * One task as the Kafka runner drives it (Kafka Streams' StreamTask plus its share of the TaskManager): the
 * fetched records of its partition wait in a PartitionGroup (event-time order), are processed through the
 * StreamTask, and are committed in this order:
 *   1. records for the runner's own tasks (repartition topics, re-routed records) and the task state's
 *      changelog entries, with the commit's external outputs (triggers, audit records, dead letters) in its
 *      outbox store, produced together (one request) and acknowledged,
 *   2. the changelog's commit marker, which completes the commit,
 *   3. one RocksDB batch with the changes and the consumed positions, and while it writes: the outbox produced
 *      and acknowledged, then consumer offsets committed; then consumed repartition records purged.
 * A crash between steps repeats work but never loses it, and never shows a decision the state does not hold:
 * an external output exists only once its commit is complete (src/engine/state/outbox.ts), and a new owner
 * first sends what the last commit's outbox still holds (repeats have the same deterministic ids). Internal
 * records may repeat, and the state never applies a record twice: a task skips records below its positions.
 * Exactly-once puts everything in one Kafka transaction of the task's own producer instead.
 */
import type { Consumer, IHeaders, KafkaMessage, Message, Producer, Transaction } from 'kafkajs';
import type { Logger } from 'pino';
import type { OutputRecord } from '../engine/api/record.js';
import type { PrefetchRecord } from '../engine/api/stores.js';
import type { StreamTask } from '../engine/runtime/task.js';
import type { PreparedCommit } from '../engine/state/task-state.js';
import { OUTBOX_STORE, outboxBytes, outboxKey, type OutboxEntry, type OutboxGroup } from '../engine/state/outbox.js';
import { dlqMessage, dlqTopic } from './dlq.js';
import { type Buffered, PartitionGroup } from './partition-group.js';
import { sendBounded, type RecordCollector, type TopicMessages } from './record-collector.js';
import type { RepartitionPurger } from './purger.js';
import type { RunnerMetrics } from './runner-metrics.js';
import type { DecodeResult } from './serde.js';
import { bytesFingerprint } from '../util/crc32c.js';
import { nextOffset, offsetBefore } from '../util/offsets.js';
import type { Settled } from '../util/grouped-calls.js';

/** Headers of a record routed to its key's task through the reroute topic. */

export const REROUTE_HEADERS = { topic: 'kairos-reroute-topic', partition: 'kairos-reroute-partition', offset: 'kairos-reroute-offset' } as const;

/** A fetched record as the group keeps it. */
export interface Fetched {
  readonly message: KafkaMessage;
  readonly decoded: DecodeResult;
  /** The topic the record belongs to: its own, or for a re-routed one the input it was first written to. */
  readonly topic: string;
  /** Where it was first written (a re-routed record's origin); else the fetched partition. */
  readonly partition: number;
  readonly offset: string;
  /** Set when the key hashes to another partition: the task that owns the key. */
  readonly rerouteTo?: number;
}

/** What every task of one runner shares. */
export interface TaskEnv {
  readonly groupId: string;
  readonly logger: Logger;
  readonly metrics: RunnerMetrics | undefined;
  readonly collector: RecordCollector;
  /** Deletes consumed repartition records (undefined before start and after stop). */
  readonly purger: () => RepartitionPurger | undefined;
  readonly consumer: () => Consumer | undefined;
  /**
   * Commits consumed offsets for the group; the tasks committing together share one OffsetCommit request.
   * Rejects when the commit failed.
   */
  readonly commitOffsets: (offsets: readonly { topic: string; partition: number; offset: string }[]) => Promise<void>;
  /** Left the group: offsets are no longer committed. */
  readonly left: () => boolean;
  /**
   * The membership epoch now: it changes when the consumer rejoins as a new member (the membership was lost), and
   * undefined while the membership may be lost unnoticed (nothing confirmed it for a session timeout). A commit
   * whose task was opened in another epoch, or that finds none, sends no store records if it has not yet, and no
   * commit marker (a restore skips store records after the last marker, unless a later owner's marker covers them).
   */
  readonly membershipEpoch: () => number | undefined;
  /** Every topic whose consumed offsets are committed (external inputs, repartition topics, reroute topic). */
  readonly sources: readonly string[];
  /** External inputs: waited for by the event-time merge. */
  readonly external: readonly string[];
  /** Internal inputs written by the runner's own tasks: merged, never waited for, purged once consumed. */
  readonly internal: readonly string[];
  /** The reroute topic (an internal input waited for like an external one). */
  readonly rerouteTopic: string;
  /** Topics the runner writes whose records keep event time as their timestamp (repartition topics). */
  readonly keepsEventTime: ReadonlySet<string>;
  readonly encode: (topic: string, value: unknown) => Promise<Buffer>;
  readonly clock: () => number;
  readonly commitIntervalMs: number;
  /**
   * A caught-up task whose external outputs (triggers, audit records, dead letters) have waited this
   * long commits without waiting for the commit interval: outputs go out with their commit (the outbox), so the
   * interval alone would hold a trigger back for up to a whole interval.
   */
  readonly outputLingerMs: number;
  /** A commit that ran while the task processed on has landed (the runner then commits what became due meanwhile). */
  readonly onCommitLanded: ((task: ActiveTask) => void) | undefined;
  /**
   * A drain stopped at a record that waits for an input (the runner then reads the ends of the empty inputs whose
   * confirmation alone holds it back, end-probe.ts, rather than waiting for the next fetch). Undefined: it waits.
   */
  readonly onHeld?: ((task: ActiveTask) => void) | undefined;
  /**
   * Commits the task, under the lock `drain` holds, when its commit became due while it drained a long buffer (the
   * first fetches of a catch-up bring megabytes per partition): at-least-once only; returns once the commit has
   * taken its changes. Undefined: a drain never commits.
   */
  readonly commitWhileDraining?: ((task: ActiveTask) => Promise<void>) | undefined;
  readonly maxTaskIdleMs: number;
  /** How often consumed repartition records are deleted from the broker (ms). */
  readonly purgeIntervalMs: number;
  readonly onOutput: ((topic: string, record: OutputRecord) => void) | undefined;
  /** Logs a re-routed record's producer pattern once. */
  readonly noteRerouted: (topic: string, key: string, from: number, to: number) => void;
}

/**
 * Bytes of outputs per outbox entry (a group of outputs in produce order, so a commit writes a few outbox
 * entries, changelog records and deletes instead of one per output: the outbox was a third of the changelog
 * records a catch-up wrote): well below a produce request's bound, as the entry's changelog record must fit one.
 */
const OUTBOX_GROUP_BYTES = 256 * 1024;

/** The outputs as groups of at most about `maxBytes` each (an output larger than that alone), in order. */
function outboxGroups(topicMessages: readonly TopicMessages[], maxBytes: number): OutboxGroup[] {
  const out: OutboxGroup[] = [];
  let group: OutboxEntry[] = [];
  let size = 0;
  for (const t of topicMessages) {
    for (const message of t.messages) {
      const n = outboxBytes(t.topic, message);
      if (size + n > maxBytes && group.length > 0) {
        out.push(group);
        group = [];
        size = 0;
      }
      group.push({ topic: t.topic, message });
      size += n;
    }
  }
  if (group.length > 0) out.push(group);
  return out;
}

interface PendingOutput {
  readonly topic: string;
  readonly record: OutputRecord;
}

/** A promise's outcome, as a promise that never rejects. */
function settledOf<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then(
    (value) => ({ ok: true, value }),
    (error: unknown) => ({ ok: false, error }),
  );
}

export class ActiveTask {
  readonly partition: number;
  readonly group: PartitionGroup<Fetched>;
  readonly #env: TaskEnv;
  readonly #log: Logger;
  task!: StreamTask;
  outputs: PendingOutput[] = [];
  /** Dead letters and re-routed records: already bytes, produced with the outputs. */
  raw: TopicMessages[] = [];
  /** Per input: the offset after the last record buffered (from the restored position when the task opened). */
  readonly fetchedTo = new Map<string, bigint>();
  /**
   * Per input the task had no position in and found empty when it opened: its end then. Until a batch of it
   * comes (`fetchedTo`), nothing below it is left to fetch (end-probe.ts).
   */
  readonly emptyAtOpen = new Map<string, bigint>();
  /**
   * Per waited-for input: the highest end offset known (the end offsets read when the task opened, then every
   * batch's high watermark). A batch says how far its input went when the broker read it, which can be before
   * the task opened (a response that came while it restored): its stale high watermark must not undo a newer end.
   */
  readonly #knownEnd = new Map<string, bigint>();
  /**
   * Per input: offsets [from, to) after the last record fetched that hold nothing to process: transaction markers
   * and aborted records, which kafkajs does not hand on. Once every record before `from` is processed the
   * position moves to `to` (#advanceTail), as the Java consumer's position moves past them.
   */
  readonly #unhanded = new Map<string, { readonly from: bigint; readonly to: bigint }>();
  /** The waited-for inputs (external and reroute): their records make the task's stream time. */
  readonly #waited: ReadonlySet<string>;
  /** The largest event time processed from a waited-for input. */
  #streamTime = -Infinity;
  /**
   * Records processed from a waited-for input with an event time below #streamTime: out-of-order input, or a
   * record fetched after a newer one of another input passed it (kairos_task_late_records_total). Records taken
   * again but already in the state (a fetch from the group's committed offsets after a rebalance) do not count.
   */
  #late = 0;
  /** The record that set #streamTime (for the late-record log). */
  #streamTimeSetBy: { readonly topic: string; readonly offset: string } | undefined;
  /** When a late record was last logged (at most one a minute per task, with the count since). */
  #lateLoggedAt = -Infinity;
  #lateLogged = 0;
  /**
   * Records taken from the group that the state already holds (below the task's position): fetched again, as
   * after a seek back or a fetch from the group's committed offsets (kairos_task_records_skipped_total).
   */
  #skipped = 0;
  /** Processed since the last commit. */
  pending = false;
  lastCommitAt: number;
  #lastPurgeAt = 0;
  /** The cluster has no DeleteRecords (librdkafka's mock): consumed repartition records are never purged. */
  #purgeDisabled = false;
  /** The last purge failed (logged once until one succeeds again). */
  #purgeFailing = false;
  /** The purge running, if any: neither the commit that started it nor the next one waits for it. */
  #purging: Promise<void> | undefined;
  /** Exactly-once: the task's transactional producer and its open transaction. */
  readonly txProducer: Producer | undefined;
  txn: Transaction | undefined;
  /** Outbox store keys written by earlier commits (deleted by the next commit once nothing is unsent). */
  #outboxKeys: string[] = [];
  /** External outputs of complete commits not yet acknowledged by the broker (their keys stay in the outbox). */
  #outboxUnsent: TopicMessages[] = [];
  #outboxSeq = 0;
  /** Keys of buffered records not loaded yet (prefetched by the next drain). */
  #unfetched: PrefetchRecord[] = [];
  /** Serialises batches, punctuation and close on this task. */
  #chain: Promise<void> = Promise.resolve();
  closed = false;

  /** The membership epoch the task was opened in (TaskEnv.membershipEpoch). */
  readonly epoch: number;

  constructor(env: TaskEnv, partition: number, txProducer: Producer | undefined, epoch: number) {
    this.#env = env;
    this.partition = partition;
    this.txProducer = txProducer;
    this.epoch = epoch;
    this.lastCommitAt = Date.now();
    this.#log = env.logger.child({ partition });
    this.#waited = new Set([...env.external, env.rerouteTopic]);
    this.group = new PartitionGroup<Fetched>({
      waitFor: [...this.#waited],
      others: env.internal.filter((t) => t !== env.rerouteTopic),
      maxIdleMs: env.maxTaskIdleMs,
    });
  }

  /**
   * The end offset of `topic` as far as the task knows: the larger of `end` (a batch's high watermark, or the end
   * offset read when the task opened) and every end it was told before.
   */
  knownEnd(topic: string, end: bigint): bigint {
    const known = this.#knownEnd.get(topic);
    if (known !== undefined && known >= end) return known;
    this.#knownEnd.set(topic, end);
    return end;
  }

  /**
   * Offsets [from, to) of `topic` at the end of what was fetched hold only transaction markers or aborted
   * records. Without this the committed offset of an input written in transactions (the runner's own repartition
   * topics under exactly-once, or a transactional producer upstream) stays one marker short of its end for ever:
   * a lag that never reaches 0, and a marker fetched again after every restart. `fromStart`: nothing of the
   * input was fetched before (no position, nothing buffered), so the range begins where the task starts reading.
   */
  skipUnhanded(topic: string, from: bigint, to: bigint, fromStart: boolean): void {
    if (to <= from) return;
    if (fromStart && this.task.state.position(topic, this.partition) === undefined) {
      this.#unhanded.delete(topic);
      this.task.state.setPosition(topic, this.partition, String(to));
      this.pending = true;
      return;
    }
    // The newest range stands for the older ones: the position jumps over a range followed by records anyway.
    this.#unhanded.set(topic, { from, to });
    if (this.#advanceTail(topic)) this.pending = true;
  }

  /** Moves the position over the input's unhanded range once every record before it is processed. */
  #advanceTail(topic: string): boolean {
    const range = this.#unhanded.get(topic);
    if (range === undefined) return false;
    const at = this.task.state.position(topic, this.partition);
    // Records before the range still to process (buffered, or fetched before the first position was set).
    if (at === undefined || BigInt(at) < range.from) return false;
    this.#unhanded.delete(topic);
    // Processed beyond it: the range was before records that came later.
    if (BigInt(at) > range.from) return false;
    this.task.state.setPosition(topic, this.partition, String(range.to));
    return true;
  }

  /** The sink for StreamTask output. */
  collect(topic: string, record: OutputRecord): void {
    this.#lingering(topic);
    this.outputs.push({ topic, record });
  }

  /** Dead letters and re-routed records, produced with the outputs. */
  #pushRaw(t: TopicMessages): void {
    this.#lingering(t.topic);
    this.raw.push(t);
  }

  /**
   * Wall time the oldest external output not taken by a commit was written (undefined: none waiting). Records for
   * the runner's own tasks (repartition, reroute) do not make a commit due sooner: another task would then read
   * them, with their event times, sooner than before, and a repartition record of a later event time moves that
   * task's stream time past an external input record produced earlier but not yet fetched (the event-time merge
   * knows an input lags only from its last fetch). A rare race of live input either way (see README, *Weak*), but
   * one the linger made likelier: the live equivalence test saw it once in ten runs.
   */
  #outputsSince: number | undefined;

  #lingering(topic: string): void {
    if (this.#outputsSince === undefined && !this.#internal(topic)) this.#outputsSince = Date.now();
  }

  /** Runs `fn` on the task after everything queued before it. */
  exclusive(fn: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(() => (this.closed ? undefined : fn()));
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** Something to commit: processed records or outputs. */
  get hasWork(): boolean {
    return this.pending || this.outputs.length > 0 || this.raw.length > 0 || this.#outboxUnsent.length > 0;
  }

  /**
   * Takes over what the previous owner's last complete commit left in the outbox (its outputs may not have
   * gone out): sent with this task's first commit. Returns how many.
   */
  async recoverOutbox(): Promise<number> {
    const entries = await this.task.state.scan(OUTBOX_STORE);
    if (entries.length === 0) return 0;
    this.#outboxKeys = entries.map((e) => e.key);
    const byTopic = new Map<string, Message[]>();
    let count = 0;
    for (const e of entries) {
      for (const x of e.value as OutboxGroup) {
        let list = byTopic.get(x.topic);
        if (!list) byTopic.set(x.topic, (list = []));
        list.push(x.message);
        count++;
      }
    }
    this.#outboxUnsent = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    this.#outboxSeq = Math.max(...entries.map((e) => parseInt(e.key, 36))) + 1;
    this.pending = true;
    return count;
  }

  /**
   * Buffers a fetched batch of one input. Its keys are loaded from RocksDB, one multi-get per store keyed by
   * the record key, before the next drain processes it: a restored or long-running task reads a key it does
   * not hold in memory once per batch instead of once per store and record (a RocksDB read costs a trip
   * through the thread pool, about 7 µs of this thread's time alone).
   */
  add(topic: string, items: readonly Buffered<Fetched>[]): void {
    this.group.add(topic, items);
    for (const { record: r } of items) {
      if (r.decoded.ok && r.rerouteTo === undefined) this.#unfetched.push({ topic: r.topic, key: r.decoded.key, value: r.decoded.value });
    }
  }

  /** Processes buffered records in event-time order until the group is empty or waits for a lagging input. */
  async drain(): Promise<number> {
    // Loaded once a record can run: until then the records wait for another input (the other batches of the same
    // fetch response, a confirming fetch), and their keys are loaded with those of the records that come next, in
    // one multi-get instead of one per batch.
    if (this.#unfetched.length > 0 && this.group.ready) {
      const keys = this.#unfetched;
      this.#unfetched = [];
      await this.task.prefetch(keys);
    }
    let count = 0;
    const commitWhileDraining = this.txProducer === undefined ? this.#env.commitWhileDraining : undefined;
    const forcedBefore = this.group.forcedCount;
    const lateBefore = this.#late;
    const skippedBefore = this.#skipped;
    let held: boolean;
    try {
      for (;;) {
        const n = this.group.next();
        if (n.kind !== 'record') {
          held = n.kind === 'waiting';
          break;
        }
        // Awaited only when the task returned a promise (a timer due, a read from RocksDB).
        const pending = this.#processOne(n.topic, n.item.record, n.item.timestamp);
        if (pending !== undefined) await pending;
        count++;
        this.pending = true;
        if ((count & 255) === 0) {
          // A long drain (the first fetches of a catch-up bring ~10,000 records per task) commits when its interval has
          // passed, as the batches between fetches would: its repartition records reach the next tasks, and its
          // outputs go out, while the rest of the buffer is processed. And it gives the event loop a turn: records
          // that need no read run without one, and the commit's produce requests, RocksDB write and the fetch
          // responses of the other partitions wait for it. Before, the first commit of a catch-up on the broker came
          // 2.7–7.4 s after start (load-tests/README.md, *Seventeenth session*).
          if (commitWhileDraining !== undefined && this.commitDue(false)) await commitWhileDraining(this);
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }
    } finally {
      this.#countProcessed();
    }
    if (held) this.#env.onHeld?.(this);
    if (this.#late > lateBefore) this.#env.metrics?.lateRecords.inc({ partition: String(this.partition) }, this.#late - lateBefore);
    if (this.#skipped > skippedBefore) this.#env.metrics?.skippedRecords.inc({ partition: String(this.partition) }, this.#skipped - skippedBefore);
    if (this.group.forcedCount > forcedBefore) {
      this.#env.metrics?.idleForced.inc({ partition: String(this.partition) }, this.group.forcedCount - forcedBefore);
      this.#log.warn({ waitedMs: this.#env.maxTaskIdleMs }, 'an input known to lag sent nothing for maxTaskIdleMs; processing without it (order by event time not guaranteed)');
    }
    return count;
  }

  #processOne(bufferTopic: string, r: Fetched, timestamp: number): void | Promise<void> {
    const p = this.partition;
    const m = r.message;
    const done = this.task.state.position(bufferTopic, p);
    if (done !== undefined && offsetBefore(m.offset, done)) {
      this.#skipped++; // already in the state (restored or committed)
      return;
    }
    const d = r.decoded;
    if (!d.ok) {
      this.#env.metrics?.failed.inc({ topic: r.topic, reason: d.reason });
      this.#pushRaw({
        topic: dlqTopic(r.topic),
        messages: [
          dlqMessage(
            { topic: r.topic, partition: r.partition, offset: r.offset, key: m.key, value: m.value, ...(m.headers ? { headers: m.headers } : {}), timestamp: m.timestamp },
            { reason: d.reason, errors: d.errors },
            this.#env.clock(),
          ),
        ],
      });
      this.task.state.setPosition(bufferTopic, p, nextOffset(m.offset));
      return;
    }
    if (r.rerouteTo !== undefined) {
      // Written by a producer whose partitioner put the key elsewhere: the key's own task processes it, so a
      // customer's state lives in one task whichever client produced its events, and the query API finds it.
      const headers: IHeaders = { ...(m.headers ?? {}) };
      headers[REROUTE_HEADERS.topic] = r.topic;
      headers[REROUTE_HEADERS.partition] = String(p);
      headers[REROUTE_HEADERS.offset] = m.offset;
      this.#pushRaw({ topic: this.#env.rerouteTopic, messages: [{ key: m.key, value: m.value, partition: r.rerouteTo, timestamp: m.timestamp, headers }] });
      this.#env.metrics?.rerouted.inc({ topic: r.topic });
      this.#env.noteRerouted(r.topic, d.key ?? '', p, r.rerouteTo);
      this.task.state.setPosition(bufferTopic, p, nextOffset(m.offset));
      return;
    }
    if (this.#waited.has(bufferTopic)) {
      if (timestamp < this.#streamTime) this.#noteLate(bufferTopic, m.offset, timestamp);
      else {
        this.#streamTime = timestamp;
        this.#streamTimeSetBy = { topic: bufferTopic, offset: m.offset };
      }
    }
    const record = { topic: r.topic, partition: r.partition, offset: r.offset, key: d.key, value: d.value, timestamp, fingerprint: m.value === null ? undefined : bytesFingerprint(m.value) };
    const processed = this.task.process(record, { topic: bufferTopic, partition: p, offset: m.offset });
    if (typeof processed !== 'boolean') return processed.then(() => this.#countOne(r.topic));
    this.#countOne(r.topic);
  }

  /**
   * Counts a record taken below the task's stream time, and logs the first and then at most one a minute: out-of-
   * order input upstream, or records of one input that reached the task after newer ones of another passed them
   * (replay would have taken them in event-time order, so triggers may differ from replay's).
   */
  #noteLate(topic: string, offset: string, timestamp: number): void {
    this.#late++;
    const now = Date.now();
    if (now - this.#lateLoggedAt < 60_000) return;
    this.#log.warn(
      {
        topic,
        offset,
        timestamp,
        streamTime: this.#streamTime,
        streamTimeSetBy: this.#streamTimeSetBy,
        lateSinceLastLog: this.#late - this.#lateLogged,
        lagging: this.group.lagging(),
      },
      'record taken below the task\'s stream time (late): out of event-time order with the records before it',
    );
    this.#lateLoggedAt = now;
    this.#lateLogged = this.#late;
  }

  #countOne(topic: string): void {
    this.#processed.set(topic, (this.#processed.get(topic) ?? 0) + 1);
  }

  /**
   * Records processed per topic since the last `#countProcessed`: added to the counter once per drain, not per
   * record (a labelled increment hashes its labels each time).
   */
  readonly #processed = new Map<string, number>();

  #countProcessed(): void {
    if (this.#processed.size === 0) return;
    const metrics = this.#env.metrics;
    if (metrics !== undefined) for (const [topic, n] of this.#processed) metrics.processed.inc({ topic }, n);
    this.#processed.clear();
  }

  /** Wall-clock punctuation: timers, and idle advance once the task has processed everything there is. */
  async punctuate(): Promise<number> {
    const drained = await this.drain();
    // Idle advance never moves a task past events it has not seen: only with nothing buffered and every
    // input known to be at its end.
    const fired = this.group.caughtUp ? await this.task.punctuateWallClock() : 0;
    if (fired > 0) this.pending = true;
    return drained + fired;
  }

  /**
   * Work is pending and the commit interval has passed (or `force`). Also due: a task with nothing else to commit
   * than the outbox entries of its last commit (their outputs were acknowledged) once an interval has passed
   * since — one more commit deletes them, so a task that goes quiet does not leave its last outputs to be sent
   * again by the next owner. A busy task's next commit deletes them anyway. And due, sooner: a caught-up task
   * whose outputs have waited `outputLingerMs`. Unless forced, never while the last commit is still writing:
   * the task processes on, and the commit follows once that one has landed (`onCommitLanded`).
   */
  commitDue(force = false): boolean {
    if (!this.hasWork && this.#outboxKeys.length === 0) return false;
    if (force) return true;
    if (this.#inflight !== undefined) return false;
    const now = Date.now();
    if (now - this.lastCommitAt >= this.#env.commitIntervalMs) return true;
    // Live (every input at its end): records held back for a fetch's confirmation do not hold the outputs.
    return this.#outputsSince !== undefined && now - this.#outputsSince >= this.#env.outputLingerMs && this.group.atEnd;
  }

  /** The last commit is still writing (at least once: it runs while the task processes on). */
  get committing(): boolean {
    return this.#inflight !== undefined;
  }

  /**
   * Commits when work is pending and the commit interval has passed (or `force`). `wait: false` (the periodic
   * commits of an at-least-once runner) returns once the commit has taken its changes: its writes run while
   * the task processes on, and the next commit waits for them. Otherwise it returns when the commit, and any
   * commit still writing, is complete.
   */
  async maybeCommit(force = false, wait = true): Promise<void> {
    if (this.commitDue(force)) await this.commit(wait);
    else if (wait) await this.#previous();
  }

  /**
   * The writes of the last at-least-once commit (`commit(false)`), running while the task processes on. It
   * never rejects: a failure is logged, and the failed commit's changes and outputs go with the next commit.
   */
  #inflight: Promise<void> | undefined;

  /** Waits for the commit still writing (at-least-once) to land or fail, without starting one. */
  settle(): Promise<void> {
    return this.#previous();
  }

  /** Waits for the commit still writing. */
  async #previous(): Promise<void> {
    const inflight = this.#inflight;
    if (inflight === undefined) return;
    await inflight;
    if (this.#inflight === inflight) this.#inflight = undefined;
  }

  /** Outputs, dead letters and re-routed records first, then state with positions, then consumer offsets. */
  async commit(wait = true): Promise<void> {
    // One commit at a time, in order.
    await this.#previous();
    // Nothing of a task whose membership may be lost goes out (see #checkMembership); its changes stay pending.
    this.#checkMembership();
    for (const topic of [...this.#unhanded.keys()]) this.#advanceTail(topic);
    const env = this.#env;
    const end = env.metrics?.commitSeconds.startTimer();
    this.pending = false;
    this.lastCommitAt = Date.now();
    const outputs = this.outputs;
    const raw = this.raw;
    this.#outputsSince = undefined;
    const byTopic = new Map<string, Message[]>();
    const now = String(Date.now());
    for (const o of outputs) {
      let list = byTopic.get(o.topic);
      if (!list) byTopic.set(o.topic, (list = []));
      list.push({
        key: o.record.key === null ? null : String(o.record.key),
        value: await env.encode(o.topic, o.record.value),
        // Repartition records carry event time (the next task orders by it); outputs carry the time they were
        // written, so a topic's time retention counts from then, not from a backfill's event times.
        timestamp: env.keepsEventTime.has(o.topic) ? String(o.record.timestamp) : now,
        ...(o.record.headers ? { headers: o.record.headers } : {}),
      });
    }
    for (const r of raw) {
      let list = byTopic.get(r.topic);
      if (!list) byTopic.set(r.topic, (list = []));
      list.push(...r.messages);
    }
    const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    // Taken now: what is processed while the produce is in flight belongs to the next commit.
    this.outputs = [];
    this.raw = [];
    const requeue = (again: (topic: string) => boolean = () => true): void => {
      // Nothing is lost: the outputs go again with the next commit (at-least-once, equal ids) — after the state
      // commit from the outbox (#outboxUnsent), before it as outputs again.
      const o = outputs.filter((x) => again(x.topic));
      const r = raw.filter((x) => again(x.topic));
      this.outputs = [...o, ...this.outputs];
      this.raw = [...r, ...this.raw];
      for (const x of o) this.#lingering(x.topic);
      for (const x of r) this.#lingering(x.topic);
      this.pending = true;
    };
    if (this.txProducer) {
      // Outputs an at-least-once run left in the outbox go in this transaction. A failure rebuilds the task from
      // its last local commit (the runner's #resetTask).
      this.#clearOutbox();
      await this.#commitTransaction([...this.#outboxUnsent, ...topicMessages]);
      this.#outboxUnsent = [];
      this.#counted(outputs, raw);
      end?.();
      this.#purgeSoon();
      return;
    }
    const internal = topicMessages.filter((t) => this.#internal(t.topic));
    const external = topicMessages.filter((t) => !this.#internal(t.topic));
    if (this.#outboxUnsent.length === 0) this.#clearOutbox();
    for (const value of outboxGroups(external, Math.min(OUTBOX_GROUP_BYTES, Math.floor(env.collector.maxRequestBytes / 2)))) {
      const key = outboxKey(this.#outboxSeq++);
      this.task.state.put(OUTBOX_STORE, key, value);
      this.#outboxKeys.push(key);
    }
    let prepared: PreparedCommit;
    try {
      prepared = await this.task.state.prepareCommit();
    } catch (err) {
      requeue();
      throw err;
    }
    const writes = (async (): Promise<void> => {
      // Repartition and re-routed records go in one produce request with the changelog's store entries (the
      // collector groups the sends of one turn), and are acknowledged before the commit marker. The outputs —
      // with those of earlier commits still unsent — go once the marker is: a trigger or audit record exists
      // only once its commit is complete. They and then the consumer offsets are sent while RocksDB writes.
      const internalSent = internal.length > 0 ? settledOf(env.collector.send(internal)) : undefined;
      const recovered = this.#outboxUnsent;
      const outgoing = recovered.length > 0 ? [...recovered, ...external] : external;
      this.#outboxUnsent = [];
      let outputsSent: Settled<unknown> | undefined;
      let changelogComplete = false;
      try {
        await prepared.finish({
          beforeComplete: async () => {
            if (internalSent !== undefined) {
              const r = await internalSent;
              if (!r.ok) throw r.error;
            }
            // The process may have stood still past its session while this commit wrote, or rejoined as a new member
            // since (another instance may own the task now and have written its changelog): no marker, so the
            // commit counts for nothing.
            this.#checkMembership();
          },
          alongsideLocalWrite: async () => {
            changelogComplete = true;
            if (outgoing.length > 0) outputsSent = await settledOf(env.collector.send(outgoing));
            // The positions this commit made durable, not those of what was processed since; after the outputs,
            // so offsets covering an input mean its outputs are out.
            if (outputsSent === undefined || outputsSent.ok) await this.#commitOffsets(prepared.positions);
          },
        });
      } catch (err) {
        prepared.abandon();
        if (changelogComplete) {
          // Only the local write failed: the changelog holds the commit, its outbox among it. The changes are
          // written again with the next commit; outputs not acknowledged go from the outbox.
          if (outputsSent !== undefined && !outputsSent.ok) this.#outboxUnsent = [...outgoing, ...this.#outboxUnsent];
          else this.#counted(outputs, raw);
          this.pending = true;
        } else {
          // Nothing committed: the outputs go again with the next commit, as outputs; repartition records too,
          // unless they were acknowledged (a repeat would reach the next task twice).
          const internalOk = internalSent === undefined || (await internalSent).ok;
          this.#outboxUnsent = [...recovered, ...this.#outboxUnsent];
          requeue((topic) => !internalOk || !this.#internal(topic));
        }
        throw err;
      }
      if (outputsSent !== undefined && !outputsSent.ok) {
        // The state is committed with the outputs in its outbox: they go with the next commit.
        this.#outboxUnsent = [...outgoing, ...this.#outboxUnsent];
        this.pending = true;
        throw outputsSent.error;
      }
      this.#counted(outputs, raw);
      end?.();
      this.#purgeSoon();
    })();
    if (wait) {
      await writes;
      return;
    }
    const inflight: Promise<void> = writes
      .catch((err: unknown) => {
        this.#log.warn({ err: (err as Error).message }, 'commit failed; its changes and outputs go with the next one');
      })
      .then(() => {
        if (this.#inflight !== inflight) return;
        this.#inflight = undefined;
        if (!this.closed) this.#env.onCommitLanded?.(this);
      });
    this.#inflight = inflight;
  }

  /** Throws unless the membership this task was opened in is still the confirmed one (TaskEnv.membershipEpoch). */
  #checkMembership(): void {
    const now = this.#env.membershipEpoch();
    if (now !== this.epoch) throw new Error(now === undefined ? 'group membership not confirmed for a session timeout; commit held back' : 'the group membership this task was opened in was lost; commit dropped');
  }

  #counted(outputs: readonly PendingOutput[], raw: readonly TopicMessages[]): void {
    const env = this.#env;
    const emitted = new Map<string, number>();
    for (const o of outputs) {
      emitted.set(o.topic, (emitted.get(o.topic) ?? 0) + 1);
      env.onOutput?.(o.topic, o.record);
    }
    if (env.metrics !== undefined) for (const [topic, n] of emitted) env.metrics.emitted.inc({ topic }, n);
    for (const r of raw) if (r.topic.endsWith('.dlq')) env.metrics?.dlq.inc({ topic: r.topic.slice(0, -'.dlq'.length) }, r.messages.length);
  }

  /** Records for the runner's own tasks (produced before the state commit, not through the outbox). */
  #internal(topic: string): boolean {
    return this.#env.keepsEventTime.has(topic) || topic === this.#env.rerouteTopic;
  }

  /** Deletes the outbox entries of earlier commits (their outputs were acknowledged), with the next commit. */
  #clearOutbox(): void {
    for (const key of this.#outboxKeys) this.task.state.delete(OUTBOX_STORE, key);
    this.#outboxKeys = [];
  }

  /** Consumer offsets to commit: the positions given (a commit's), else the task's latest. */
  #offsets(positions?: ReadonlyMap<string, string>): { topic: string; partition: number; offset: string }[] {
    return this.#env.sources.flatMap((topic) => {
      const next = positions ? (positions.get(`${topic}\u0000${this.partition}`) ?? this.task.state.positions().get(`${topic}\u0000${this.partition}`)) : this.task.state.position(topic, this.partition);
      return next === undefined ? [] : [{ topic, partition: this.partition, offset: next }];
    });
  }

  async #commitOffsets(positions: ReadonlyMap<string, string>): Promise<void> {
    const done = this.#offsets(positions);
    if (done.length === 0 || !this.#env.consumer() || this.#env.left()) return;
    try {
      await this.#env.commitOffsets(done);
    } catch (err) {
      // The state holds the positions; a failed offset commit only means re-reading records we then skip.
      this.#log.warn({ err: (err as Error).message }, 'offset commit failed');
    }
  }

  /**
   * Exactly-once commit: outputs, dead letters, changelog and consumer offsets in one Kafka transaction of the
   * task's own transactional producer; the local RocksDB write happens only after the transaction committed.
   * On failure the transaction is aborted and the caller rebuilds the task from its last local commit.
   */
  async #commitTransaction(topicMessages: TopicMessages[]): Promise<void> {
    const txn = await (this.txProducer as Producer).transaction();
    this.txn = txn;
    const offsets = this.#offsets();
    try {
      if (topicMessages.length > 0) await sendBounded(txn, topicMessages, this.#env.collector.maxRequestBytes);
      await this.task.commit({
        beforeLocalWrite: async () => {
          if (offsets.length > 0) {
            await txn.sendOffsets({
              consumerGroupId: this.#env.groupId,
              topics: offsets.map((o) => ({ topic: o.topic, partitions: [{ partition: o.partition, offset: o.offset }] })),
            });
          }
          await txn.commit();
        },
      });
    } catch (err) {
      this.#log.error({ err }, 'transaction failed; aborting and rebuilding the task from its last commit');
      if (txn.isActive()) await txn.abort().catch((e: unknown) => this.#log.warn({ err: e }, 'abort failed'));
      throw err;
    } finally {
      this.txn = undefined;
    }
  }

  /**
   * Deletes the repartition records this task consumed and committed (Kafka Streams purges them the same way):
   * the topics keep records without time retention, so a backfill's event-time timestamps cannot expire them.
   * Started after a commit once `purgeIntervalMs` has passed; it runs beside the task's next commits (it deletes
   * only below positions a complete commit made durable, which a restore never goes back behind). A failure is
   * logged once, counted in `kairos_repartition_purge_failed_total` and retried at the next interval; only a
   * cluster without DeleteRecords (librdkafka's mock) turns it off.
   */
  #purgeSoon(): void {
    const purger = this.#env.purger();
    if (this.closed || this.#purging !== undefined || this.#purgeDisabled || !purger || Date.now() - this.#lastPurgeAt < this.#env.purgeIntervalMs) return;
    // Positions taken now: those of the commit that just completed.
    const positions = this.task.state.positions();
    const targets = this.#env.internal.flatMap((topic) => {
      const offset = positions.get(`${topic}\u0000${this.partition}`);
      return offset === undefined ? [] : [{ topic, offset }];
    });
    if (targets.length === 0) return;
    this.#lastPurgeAt = Date.now();
    this.#purging = this.#purge(purger, targets).finally(() => {
      this.#purging = undefined;
    });
  }

  /** The purge still running, if any (never rejects): awaited before the task's state and clients close. */
  purged(): Promise<void> {
    return this.#purging ?? Promise.resolve();
  }

  async #purge(purger: RepartitionPurger, targets: readonly { topic: string; offset: string }[]): Promise<void> {
    // All topics at once: the purger sends one request per topic for every task that asked meanwhile.
    const results = await Promise.allSettled(targets.map(({ topic, offset }) => purger.purge(topic, this.partition, offset)));
    let failed = false;
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') continue;
      const { topic, offset } = targets[i] as { topic: string; offset: string };
      if (apiUnsupported(r.reason)) {
        if (!this.#purgeDisabled) this.#log.info({ topic }, 'the cluster does not support DeleteRecords; consumed repartition records are not purged');
        this.#purgeDisabled = true;
        return;
      }
      this.#env.metrics?.purgeFailed.inc({ topic });
      if (!this.#purgeFailing && !failed) this.#log.warn({ err: purgeError(r.reason), topic, offset }, 'deleting consumed repartition records failed; retried every purge interval');
      failed = true;
    }
    if (!failed && this.#purgeFailing) this.#log.info('consumed repartition records purged again');
    this.#purgeFailing = failed;
  }
}

/** What a failed DeleteRecords says, with the partitions' own errors (kafkajs wraps them in one message). */
function purgeError(err: unknown): string {
  const e = err as Error & { partitions?: readonly { partition: number; error?: Error & { type?: string } }[] };
  const parts = (e.partitions ?? []).filter((p) => p.error !== undefined).map((p) => `partition ${p.partition}: ${p.error?.type ?? p.error?.message ?? ''}`);
  return parts.length > 0 ? `${e.message} (${parts.join('; ')})` : e.message;
}

/**
 * The broker does not know the request's API (kafkajs' KafkaJSServerDoesNotSupportApiKey, which its retrier hands on
 * as a KafkaJSNonRetriableError with the same message).
 */
function apiUnsupported(err: unknown): boolean {
  for (let e = err as (Error & { cause?: unknown }) | undefined, depth = 0; e instanceof Error && depth < 5; e = e.cause as typeof e, depth++) {
    if (e.name === 'KafkaJSServerDoesNotSupportApiKey' || e.message === 'The Kafka server does not support the requested API version') return true;
  }
  return false;
}
