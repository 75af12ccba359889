/**
 * Runs a topology in-process with no broker, like Kafka Streams' TopologyTestDriver: each `pipe` returns once
 * the record and everything it caused (timers, forwards, outputs) is done, and by default commits, so stores
 * on disk always hold what the test saw. Stream time follows the records; the wall clock is fake.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import type { StoreSpecLike, Timer } from '../api/processor.js';
import type { OutputRecord, RecordHeaders, RecordOrigin } from '../api/record.js';
import type { StoreOf } from '../api/stores.js';
import type { Topology } from '../api/topology.js';
import type { ChangelogWriter } from '../state/changelog.js';
import { StreamTask, type TaskOptions } from '../runtime/task.js';

export interface TestDriverOptions {
  /** RocksDB directory; a fresh temporary one (removed on close) by default. */
  readonly stateDir?: string;
  /** Initial fake wall clock (epoch ms). @default 0 */
  readonly wallClock?: number;
  /** Event time of a piped record when none is given. @default the value's occurredAt/updatedAt, else the wall clock */
  readonly timestampOf?: (topic: string, value: unknown) => number | undefined;
  readonly changelog?: ChangelogWriter;
  /** Commit after every piped record. @default true */
  readonly commitEachRecord?: boolean;
  readonly partition?: number;
  readonly logger?: Logger;
  readonly idleAdvanceMs?: number;
}

export interface DriverOutput<V = unknown> extends OutputRecord<V> {
  readonly topic: string;
  readonly origin: RecordOrigin | undefined;
}

export interface PipeOptions {
  readonly timestamp?: number;
  readonly headers?: RecordHeaders;
}

function defaultTimestamp(_topic: string, value: unknown): number | undefined {
  if (value !== null && typeof value === 'object') {
    const v = value as { occurredAt?: unknown; updatedAt?: unknown };
    if (typeof v.occurredAt === 'number') return v.occurredAt;
    if (typeof v.updatedAt === 'number') return v.updatedAt;
  }
  return undefined;
}

interface DriverIo {
  wall: number;
  readonly outputs: DriverOutput[];
}

function taskOptions(topology: Topology, opts: TestDriverOptions, dir: string, io: DriverIo): TaskOptions {
  return {
    topology,
    taskId: `0_${opts.partition ?? 0}`,
    partition: opts.partition ?? 0,
    stateDir: dir,
    logger: opts.logger ?? pino({ level: 'silent' }),
    clock: () => io.wall,
    collector: { send: (topic, record, origin) => io.outputs.push({ topic, ...record, origin }) },
    idleAdvanceMs: opts.idleAdvanceMs ?? Infinity,
    loopbackRepartition: true,
    ...(opts.changelog ? { changelog: opts.changelog } : {}),
  };
}

export class TopologyTestDriver {
  readonly #topology: Topology;
  readonly #opts: TestDriverOptions;
  readonly #dir: string;
  readonly #ownsDir: boolean;
  readonly #io: DriverIo;
  readonly #offsets = new Map<string, bigint>();
  #task: StreamTask;

  private constructor(topology: Topology, opts: TestDriverOptions, dir: string, ownsDir: boolean, io: DriverIo, task: StreamTask) {
    this.#topology = topology;
    this.#opts = opts;
    this.#dir = dir;
    this.#ownsDir = ownsDir;
    this.#io = io;
    this.#task = task;
  }

  static async create(topology: Topology, opts: TestDriverOptions = {}): Promise<TopologyTestDriver> {
    const ownsDir = opts.stateDir === undefined;
    const dir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'kairos-driver-'));
    const io: DriverIo = { wall: opts.wallClock ?? 0, outputs: [] };
    const task = await StreamTask.create(taskOptions(topology, opts, dir, io));
    return new TopologyTestDriver(topology, opts, dir, ownsDir, io, task);
  }

  get task(): StreamTask {
    return this.#task;
  }

  get streamTime(): number {
    return this.#task.streamTime;
  }

  get wallClock(): number {
    return this.#io.wall;
  }

  get stateDir(): string {
    return this.#dir;
  }

  /** Feeds one record; resolves when it and all it caused are processed. */
  async pipe(topic: string, key: string | null, value: unknown, options: PipeOptions = {}): Promise<void> {
    const timestamp = options.timestamp ?? (this.#opts.timestampOf ?? defaultTimestamp)(topic, value) ?? this.#io.wall;
    const offset = this.#offsets.get(topic) ?? 0n;
    this.#offsets.set(topic, offset + 1n);
    await this.#task.process({
      topic,
      partition: this.#task.partition,
      offset: offset.toString(),
      key,
      value,
      timestamp,
      ...(options.headers ? { headers: options.headers } : {}),
    });
    if (this.#opts.commitEachRecord !== false) await this.#task.commit();
  }

  /** Moves stream time to `time`, firing stream-time timers due by then. */
  async advanceStreamTime(time: number): Promise<number> {
    const n = await this.#task.advanceStreamTime(time);
    await this.#task.commit();
    return n;
  }

  /** Moves the fake wall clock forward and runs wall-clock punctuation (idle stream-time advance included). */
  async advanceWallClock(byMs: number): Promise<number> {
    this.#io.wall += byMs;
    const n = await this.#task.punctuateWallClock(this.#io.wall);
    await this.#task.commit();
    return n;
  }

  /** Outputs sent to `topic` since the last read, removed from the driver. */
  readOutput<V = unknown>(topic: string): DriverOutput<V>[] {
    const out: DriverOutput<V>[] = [];
    for (let i = 0; i < this.#io.outputs.length; ) {
      const o = this.#io.outputs[i] as DriverOutput;
      if (o.topic === topic) {
        out.push(o as DriverOutput<V>);
        this.#io.outputs.splice(i, 1);
      } else i++;
    }
    return out;
  }

  /** All unread outputs, in emission order, without removing them. */
  peekOutputs(): readonly DriverOutput[] {
    return this.#io.outputs;
  }

  store<S extends StoreSpecLike>(spec: S): StoreOf<S> {
    return this.#task.store(spec);
  }

  timers(key: string): Timer[] {
    return this.#task.timersFor(key);
  }

  /** Commits, closes and reopens the task on the same directory: what a process restart does. */
  async restart(): Promise<void> {
    await this.#task.commit();
    await this.#task.close();
    this.#task = await StreamTask.create(taskOptions(this.#topology, this.#opts, this.#dir, this.#io));
  }

  async close(): Promise<void> {
    if (!this.#task.state.isClosed) {
      await this.#task.commit();
      await this.#task.close();
    }
    if (this.#ownsDir) rmSync(this.#dir, { recursive: true, force: true });
  }
}
