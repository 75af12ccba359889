/**
 * Runs a topology as N tasks (one per partition) with no broker, to test what DESIGN §4 asks of the Kafka
 * runner: the same triggers as replay whatever the order in which records reach the tasks.
 *
 * - Input records go to the partition of their key (the `partitioner` option, e.g. Kafka's murmur2
 *   `partitionOf`); every task owns one partition of every topic, as in the Kafka runner.
 * - A task reads its partitions in event-time order among the records it can see (the runner's partition
 *   group does the same: the smallest timestamp of the partition heads first). Input partitions are visible
 *   from the start (a backlog).
 * - Records a task sends to a repartition topic are *not* looped back: they wait in the task's outbox until it
 *   publishes them (a commit, in Kafka), then are appended to the owning partition's log, FIFO per producer,
 *   interleaved between producers in publication order. The schedule, driven by a seeded PRNG, decides when a
 *   task publishes and which task runs next, so repartition records reach their task late and in
 *   adversarial (but per-partition FIFO) order:
 *   - `inputs-first`: nothing is published until every task has read all of its input (the catch-up of a
 *     backlog, where the repartition topics are far behind), then records are published at random;
 *   - `random`: after each record a task publishes with `publishProbability`, and the next task is picked at random.
 * - Optionally a task restarts (commit, close, reopen on its directory) after a record.
 *
 * Each task is committed after every record, so a restart loses nothing. Stream time is per task; timers fire
 * as a task's stream time passes them, and `finish(until)` moves every task to `until`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import type { StoreSpecLike } from '../api/processor.js';
import type { OutputRecord, RecordOrigin } from '../api/record.js';
import type { StoreOf } from '../api/stores.js';
import type { Topology } from '../api/topology.js';
import { StreamTask, type TaskOptions } from '../runtime/task.js';
import { mulberry32 } from '../../util/prng.js';

/** The partition of a non-null key among `partitions` (the producers' partitioner). */
export type Partitioner = (key: string, partitions: number) => number;

export type MultiTaskSchedule = 'inputs-first' | 'random';

export interface MultiTaskDriverOptions {
  /** Number of partitions, i.e. tasks. */
  readonly partitions: number;
  readonly partitioner: Partitioner;
  /** Seed of the PRNG (mulberry32) that drives the schedule. @default 1 */
  readonly seed?: number;
  /** @default 'random' */
  readonly schedule?: MultiTaskSchedule;
  /** Chance that a task publishes its pending repartition records after processing one record. @default 0.25 */
  readonly publishProbability?: number;
  /** Chance that a task restarts (commit, close, reopen) after processing one record. @default 0 */
  readonly restartProbability?: number;
  /** Event time of an input record when none is given. @default the value's occurredAt/updatedAt, else 0 */
  readonly timestampOf?: (topic: string, value: unknown) => number | undefined;
  /** Parent directory of the tasks' RocksDB directories; a fresh temporary one (removed on close) by default. */
  readonly stateDir?: string;
  readonly logger?: Logger;
}

export interface MultiTaskOutput<V = unknown> extends OutputRecord<V> {
  readonly topic: string;
  /** The task that emitted it. */
  readonly partition: number;
}

interface QueuedRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: string | null;
  readonly value: unknown;
  readonly timestamp: number;
}

/** One partition of one topic: a log and the owning task's read position. */
interface PartitionLog {
  readonly topic: string;
  readonly records: QueuedRecord[];
  read: number;
}

interface TaskSlot {
  readonly partition: number;
  readonly dir: string;
  task: StreamTask;
  /** Repartition records sent but not published yet, in send order. */
  readonly outbox: { topic: string; record: OutputRecord }[];
  /** topic → this partition's log. */
  readonly logs: Map<string, PartitionLog>;
}

function defaultTimestamp(_topic: string, value: unknown): number | undefined {
  if (value !== null && typeof value === 'object') {
    const v = value as { occurredAt?: unknown; updatedAt?: unknown };
    if (typeof v.occurredAt === 'number') return v.occurredAt;
    if (typeof v.updatedAt === 'number') return v.updatedAt;
  }
  return undefined;
}

export class MultiTaskDriver {
  readonly #topology: Topology;
  readonly #opts: MultiTaskDriverOptions;
  readonly #dir: string;
  readonly #ownsDir: boolean;
  readonly #slots: TaskSlot[];
  readonly #repartition: ReadonlySet<string>;
  readonly #outputs: MultiTaskOutput[] = [];
  readonly #random: () => number;
  /** 'inputs-first': publication held back until every input record is read. */
  #holding: boolean;
  #processed = 0;
  #restarts = 0;

  private constructor(topology: Topology, opts: MultiTaskDriverOptions, dir: string, ownsDir: boolean, slots: TaskSlot[]) {
    this.#topology = topology;
    this.#opts = opts;
    this.#dir = dir;
    this.#ownsDir = ownsDir;
    this.#slots = slots;
    this.#repartition = new Set(topology.repartitionTopics);
    this.#random = mulberry32(opts.seed ?? 1);
    this.#holding = opts.schedule === 'inputs-first';
  }

  static async create(topology: Topology, opts: MultiTaskDriverOptions): Promise<MultiTaskDriver> {
    if (!Number.isInteger(opts.partitions) || opts.partitions < 1) throw new RangeError(`partitions must be a positive integer, not ${opts.partitions}`);
    const ownsDir = opts.stateDir === undefined;
    const dir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'kairos-multi-'));
    const slots: TaskSlot[] = [];
    for (let p = 0; p < opts.partitions; p++) {
      slots.push({ partition: p, dir: join(dir, `task-${p}`), task: undefined as unknown as StreamTask, outbox: [], logs: new Map() });
    }
    const driver = new MultiTaskDriver(topology, opts, dir, ownsDir, slots);
    for (const slot of slots) slot.task = await StreamTask.create(driver.#taskOptions(slot));
    return driver;
  }

  #taskOptions(slot: TaskSlot): TaskOptions {
    return {
      topology: this.#topology,
      taskId: `0_${slot.partition}`,
      partition: slot.partition,
      stateDir: slot.dir,
      logger: this.#opts.logger ?? pino({ level: 'silent' }),
      clock: () => 0,
      idleAdvanceMs: Infinity,
      loopbackRepartition: false,
      collector: {
        send: (topic: string, record: OutputRecord, _origin: RecordOrigin | undefined) => {
          if (this.#repartition.has(topic)) slot.outbox.push({ topic, record });
          else this.#outputs.push({ topic, partition: slot.partition, ...record });
        },
      },
    };
  }

  /** The tasks, by partition (stores and stream time, for assertions). */
  get tasks(): readonly StreamTask[] {
    return this.#slots.map((s) => s.task);
  }

  /** Records processed (input and repartition) and restarts done so far. */
  get stats(): { processed: number; restarts: number } {
    return { processed: this.#processed, restarts: this.#restarts };
  }

  /** The partition (task) of a key. */
  partitionOf(key: string): number {
    return this.#opts.partitioner(key, this.#opts.partitions);
  }

  /** Queues an input record on its key's partition (a null key goes to partition 0). Nothing runs until `run`. */
  send(topic: string, key: string | null, value: unknown, timestamp?: number): void {
    const ts = timestamp ?? (this.#opts.timestampOf ?? defaultTimestamp)(topic, value) ?? 0;
    this.#append(key === null ? 0 : this.partitionOf(key), topic, key, value, ts);
    if (this.#opts.schedule === 'inputs-first') this.#holding = true;
  }

  #append(partition: number, topic: string, key: string | null, value: unknown, timestamp: number): void {
    const slot = this.#slots[partition] as TaskSlot;
    let log = slot.logs.get(topic);
    if (!log) {
      log = { topic, records: [], read: 0 };
      slot.logs.set(topic, log);
    }
    log.records.push({ topic, partition, offset: String(log.records.length), key, value, timestamp });
  }

  /** Moves a task's outbox to the owning partitions' logs. */
  #publish(slot: TaskSlot): void {
    for (const { topic, record } of slot.outbox.splice(0)) {
      const p = record.key === null ? slot.partition : this.partitionOf(record.key);
      this.#append(p, topic, record.key, record.value, record.timestamp);
    }
  }

  /** The log whose head this task reads next: the smallest timestamp among its visible heads (ties: first log). */
  #next(slot: TaskSlot): PartitionLog | undefined {
    let best: PartitionLog | undefined;
    let bestTs = Infinity;
    for (const log of slot.logs.values()) {
      const head = log.records[log.read];
      if (head !== undefined && head.timestamp < bestTs) {
        best = log;
        bestTs = head.timestamp;
      }
    }
    return best;
  }

  #hasInput(): boolean {
    return this.#slots.some((s) => [...s.logs.values()].some((l) => !this.#repartition.has(l.topic) && l.read < l.records.length));
  }

  /**
   * Runs until every task has read everything it can see and every outbox is published: picks a task with a
   * record to read (at random), lets it read one, then maybe publishes its outbox and maybe restarts it.
   */
  async run(): Promise<void> {
    const publishP = this.#opts.publishProbability ?? 0.25;
    const restartP = this.#opts.restartProbability ?? 0;
    for (;;) {
      if (this.#holding && !this.#hasInput()) this.#holding = false;
      const ready = this.#slots.filter((s) => this.#next(s) !== undefined);
      if (ready.length === 0) {
        const waiting = this.#slots.filter((s) => s.outbox.length > 0);
        if (waiting.length === 0) return;
        // Nothing to read: some task publishes (which one is up to the PRNG).
        this.#publish(waiting[Math.floor(this.#random() * waiting.length)] as TaskSlot);
        continue;
      }
      const slot = ready[Math.floor(this.#random() * ready.length)] as TaskSlot;
      const log = this.#next(slot) as PartitionLog;
      const r = log.records[log.read++] as QueuedRecord;
      await slot.task.process({ topic: r.topic, partition: r.partition, offset: r.offset, key: r.key, value: r.value, timestamp: r.timestamp });
      await slot.task.commit();
      this.#processed++;
      if (!this.#holding && this.#random() < publishP) this.#publish(slot);
      if (restartP > 0 && this.#random() < restartP) await this.#restart(slot);
    }
  }

  async #restart(slot: TaskSlot): Promise<void> {
    await slot.task.commit();
    await slot.task.close();
    slot.task = await StreamTask.create(this.#taskOptions(slot));
    this.#restarts++;
  }

  /**
   * Runs everything, then moves every task's stream time to `until` (firing its timers), and repeats while
   * that produced work; a task with timers still pending (e.g. a paging step registered one millisecond past
   * its stream time) is moved on a millisecond at a time.
   */
  async finish(until: number): Promise<void> {
    for (let round = 0; ; round++) {
      await this.run();
      let fired = 0;
      for (const slot of this.#slots) {
        const t = slot.task;
        const target = round > 0 && t.pendingTimers > 0 ? Math.max(until, t.streamTime + 1) : Math.max(until, t.streamTime);
        fired += await t.advanceStreamTime(target);
        await t.commit();
      }
      const work = this.#slots.some((s) => s.outbox.length > 0 || this.#next(s) !== undefined);
      if (fired === 0 && !work && round > 0) return;
      if (round > 100_000) throw new Error('MultiTaskDriver.finish: still busy after 100000 rounds');
    }
  }

  /** Outputs (non-repartition topics) sent to `topic` since the last read, removed from the driver. */
  readOutput<V = unknown>(topic: string): MultiTaskOutput<V>[] {
    const out: MultiTaskOutput<V>[] = [];
    for (let i = 0; i < this.#outputs.length; ) {
      const o = this.#outputs[i] as MultiTaskOutput;
      if (o.topic === topic) {
        out.push(o as MultiTaskOutput<V>);
        this.#outputs.splice(i, 1);
      } else i++;
    }
    return out;
  }

  /** The store of the task that owns `key`. */
  store<S extends StoreSpecLike>(spec: S, key: string): StoreOf<S> {
    return (this.#slots[this.partitionOf(key)] as TaskSlot).task.store(spec);
  }

  async close(): Promise<void> {
    for (const slot of this.#slots) {
      if (!slot.task.state.isClosed) {
        await slot.task.commit();
        await slot.task.close();
      }
    }
    if (this.#ownsDir) rmSync(this.#dir, { recursive: true, force: true });
  }
}
