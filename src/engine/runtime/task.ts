/**
 * A stream task: one input partition of a topology, its state and its timers. Runners (replay, test driver,
 * Kafka) feed it records in order; it advances stream time, fires due timers before the record that passes
 * them, routes the record through the processors and hands sink output to the runner's collector.
 */
import type { Logger } from 'pino';
import { KairosError } from '../../errors.js';
import type { TimerInfo } from '../state/reader.js';
import type { Processor, ProcessorContext, StoreSpecLike, Timer, TimerData, TimerDomain, TimerService } from '../api/processor.js';
import type { OutputRecord, RecordOrigin, StreamRecord } from '../api/record.js';
import type { KeyValueStoreSpec, PrefetchRecord, StoreOf, StoreSpec } from '../api/stores.js';
import { jsonCodec } from '../api/codecs.js';
import type { ProcessorNode, Topology } from '../api/topology.js';
import type { ChangelogWriter } from '../state/changelog.js';
import { createView, type AnyStoreView } from '../state/stores.js';
import { TaskState, TIMER_STORE, type CommitOptions } from '../state/task-state.js';
import { TimerQueue, timerId, type QueuedTimer } from './timer-queue.js';
import { outboxSpec } from '../state/outbox.js';
import { nextOffset } from '../../util/offsets.js';

/** Receives what sinks emit. `origin` is the input record that caused it (undefined from a timer). */
export interface RecordCollector {
  send(topic: string, record: OutputRecord, origin: RecordOrigin | undefined): void;
}

export interface TaskOptions {
  readonly topology: Topology;
  readonly taskId: string;
  readonly partition: number;
  /** This task's RocksDB directory. */
  readonly stateDir: string;
  readonly collector: RecordCollector;
  readonly logger: Logger;
  /** Wall clock in epoch ms. */
  readonly clock: () => number;
  readonly changelog?: ChangelogWriter;
  readonly cacheMaxEntries?: number;
  /** The state cache's memory budget in bytes (TaskStateOptions.cacheMaxBytes). */
  readonly cacheMaxBytes?: number;
  /**
   * When no record arrived for this long (wall clock), stream time advances with the wall clock (minus the
   * lag last observed between wall clock and event time), so stream-time timers fire on quiet partitions.
   * @default 5000 ms; Infinity turns it off (replay).
   */
  readonly idleAdvanceMs?: number;
  /**
   * Route records sent to the topology's repartition topics straight back into this task instead of the
   * collector: for single-task runners (replay, test driver, embedded), where every key lives in this task.
   * @default false (the Kafka runner produces them, and the owner of the new key reads them)
   */
  readonly loopbackRepartition?: boolean;
}

interface PersistedTimer {
  node: string;
  name: string;
  key: string;
  time: number;
  domain: TimerDomain;
  data?: TimerData;
}

const timerSpec: KeyValueStoreSpec<PersistedTimer> = { kind: 'key-value', name: TIMER_STORE, codec: jsonCodec<PersistedTimer>() };

/** Timers whose keys are loaded with one multi-get before a wave of firings. */
const PREFETCH_CHUNK = 256;

export interface TaskStats {
  recordsProcessed: number;
  recordsSkipped: number;
  timersFired: number;
  recordsEmitted: number;
}

export class StreamTask {
  readonly taskId: string;
  readonly partition: number;
  readonly stats: TaskStats = { recordsProcessed: 0, recordsSkipped: 0, timersFired: 0, recordsEmitted: 0 };
  readonly state: TaskState;
  readonly #topology: Topology;
  readonly #opts: TaskOptions;
  readonly #processors = new Map<string, Processor<unknown, unknown>>();
  readonly #contexts = new Map<string, NodeContext>();
  readonly #sourceByTopic = new Map<string, string>();
  readonly #timers = new TimerQueue();
  /**
   * Records waiting for a processor, first in first out: slots [#queueHead, #queueTail) of two parallel arrays,
   * reused from slot 0 once the queue is empty (an object per queued record, and `shift()`, were a hot spot).
   */
  readonly #queueNodes: string[] = [];
  readonly #queueRecords: (StreamRecord | undefined)[] = [];
  #queueHead = 0;
  #queueTail = 0;
  /** Records looped back from repartition topics and not prefetched yet (a fan-out wave's page). */
  #unfetched: StreamRecord[] = [];
  /** Timers whose keys were prefetched ahead of their firing. */
  readonly #timersFetched = new Set<QueuedTimer>();
  /** Stores keyed by the record key (prefetched per batch, erased with the key). */
  readonly #prefetchStores: string[] = [];
  /**
   * Per processor that registers timers: the stores keyed by the record key that its firing can read (its own
   * and those of the processors downstream of it, up to a sink), filled on first use.
   */
  readonly #timerStores = new Map<string, readonly string[]>();
  /** What a batch loads ahead: per store, the topics whose records reach its processors and the key each reads. */
  readonly #fetchPlans: { readonly store: string; readonly topics: ReadonlySet<string>; readonly keyOf: (r: PrefetchRecord) => string | undefined }[] = [];
  readonly #pendingErase = new Set<string>();
  readonly #repartitionTopics: ReadonlySet<string>;
  readonly #loopback: ReadonlySet<string>;
  #origin: RecordOrigin | undefined;
  #lastRecordWall: number;
  #closed = false;

  private constructor(opts: TaskOptions, state: TaskState) {
    this.#opts = opts;
    this.#topology = opts.topology;
    this.taskId = opts.taskId;
    this.partition = opts.partition;
    this.state = state;
    // Quiet time counts from when the task opened: a new or restored task must not jump its stream time to
    // the wall clock before it has read its backlog.
    this.#lastRecordWall = opts.clock();
    for (const node of this.#topology.nodes.values()) {
      if (node.kind === 'source') for (const t of node.topics) this.#sourceByTopic.set(t, node.name);
    }
    for (const { spec } of this.#topology.stores.values()) {
      if (spec.kind !== 'key-value') continue;
      if (spec.keyedByRecordKey) {
        this.#prefetchStores.push(spec.name);
        this.#fetchPlans.push({ store: spec.name, topics: this.#topicsReaching(spec.name), keyOf: (r) => r.key ?? undefined });
      } else if (spec.prefetchKey) {
        const keyOf = spec.prefetchKey;
        this.#fetchPlans.push({
          store: spec.name,
          topics: this.#topicsReaching(spec.name),
          keyOf: (r) => {
            try {
              return keyOf(r);
            } catch {
              return undefined; // a value the processor will reject: nothing to load for it
            }
          },
        });
      }
    }
    this.#loopback = new Set(opts.loopbackRepartition ? this.#topology.repartitionTopics : []);
    this.#repartitionTopics = new Set(this.#topology.repartitionTopics);
    state.onPrepare(() => this.#persistTimers());
  }

  /** Every store a task of `topology` holds: the topology's stores plus the internal timer and outbox stores. */
  static storeSpecs(topology: Topology): StoreSpec<unknown>[] {
    return [...[...topology.stores.values()].map((s) => s.spec), timerSpec as StoreSpec<unknown>, outboxSpec as StoreSpec<unknown>];
  }

  static async create(opts: TaskOptions): Promise<StreamTask> {
    const stores = StreamTask.storeSpecs(opts.topology);
    const state = await TaskState.open({
      dir: opts.stateDir,
      taskId: opts.taskId,
      stores,
      ...(opts.changelog ? { changelog: opts.changelog } : {}),
      ...(opts.cacheMaxEntries === undefined ? {} : { cacheMaxEntries: opts.cacheMaxEntries }),
      ...(opts.cacheMaxBytes === undefined ? {} : { cacheMaxBytes: opts.cacheMaxBytes }),
    });
    const task = new StreamTask(opts, state);
    try {
      await task.#init();
    } catch (err) {
      await state.close();
      throw err;
    }
    return task;
  }

  get streamTime(): number {
    return this.state.streamTime;
  }

  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Pending timers for a key across all processors (queries, tests). */
  timersFor(key: string): Timer[] {
    return this.#timers.forKey(key).map(publicTimer);
  }

  /** Pending timers for a key with the processor that registered each (queries). */
  timerInfosFor(key: string): TimerInfo[] {
    return this.#timers.forKey(key).map((t) => ({ processor: t.node, name: t.name, time: t.time, domain: t.domain }));
  }

  /** The store a spec names, for queries and the test driver. */
  store<S extends StoreSpecLike>(spec: S): StoreOf<S> {
    const view = this.#view(spec.name);
    return view as unknown as StoreOf<S>;
  }

  /**
   * Loads, with one RocksDB multi-get, what the given records' processing will read from stores keyed by the
   * record key (`keyedByRecordKey`) or by a key the record tells (`prefetchKey`). Runners call it with a batch
   * before processing it.
   */
  async prefetch(records: Iterable<PrefetchRecord>): Promise<void> {
    if (!this.#anyToFetch()) return;
    const list = [...records];
    const reads: [string, string[]][] = [];
    for (const plan of this.#fetchPlans) {
      // A complete store (everything it holds is cached) has nothing to load.
      if (this.state.isComplete(plan.store)) continue;
      // Only keys of topics whose records reach a processor of this store (a sku-keyed catalog record never
      // reads a customer-keyed store).
      const keys: string[] = [];
      for (const r of list) {
        if (!plan.topics.has(r.topic)) continue;
        const key = plan.keyOf(r);
        if (key !== undefined) keys.push(key);
      }
      if (keys.length > 0) reads.push([plan.store, keys]);
    }
    if (reads.length > 0) await this.state.prefetchMany(reads);
  }

  /** Whether a store loaded ahead may hold keys in RocksDB that its cache does not (else no prefetch is needed). */
  #anyToFetch(): boolean {
    for (const plan of this.#fetchPlans) if (!this.state.isComplete(plan.store)) return true;
    return false;
  }

  /** Per store keyed by record key: the source topics whose records reach one of its processors directly. */
  #topicsReaching(store: string): Set<string> {
    const processors = this.#topology.stores.get(store)?.processors ?? [];
    const topics = new Set<string>();
    for (const [topic, source] of this.#sourceByTopic) {
      const reached = this.#processorsFrom(this.#topology.children.get(source) ?? []);
      if (processors.some((p) => reached.has(p))) topics.add(topic);
    }
    return topics;
  }

  /**
   * The processors among `nodes` and downstream of them. Sinks end the walk: past a repartition topic the record
   * key is another one.
   */
  #processorsFrom(nodes: readonly string[]): Set<string> {
    const seen = new Set<string>();
    const queue = [...nodes];
    while (queue.length > 0) {
      const n = queue.pop() as string;
      if (seen.has(n) || this.#topology.nodes.get(n)?.kind !== 'processor') continue;
      seen.add(n);
      queue.push(...(this.#topology.children.get(n) ?? []));
    }
    return seen;
  }

  /** Whether the topology reads this topic. */
  reads(topic: string): boolean {
    return this.#sourceByTopic.has(topic);
  }

  /**
   * Processes one record: stream time moves to its timestamp (timers due by then fire first, in time order),
   * then the record flows through the topology. Returns false when no source reads its topic.
   * `consumed`: where the record was read, recorded as this task's position (default: the record's own
   * coordinates; a record routed here from another partition is read from an internal topic).
   */
  process(record: StreamRecord, consumed: RecordOrigin = record): boolean | Promise<boolean> {
    // Without a promise when no timer is due and every processor the record reaches answers from memory (most
    // records of a replay or a caught-up task): an async frame and a promise per record were a tenth of what a
    // replay allocated. Callers await the result either way.
    this.#checkOpen();
    const source = this.#sourceByTopic.get(record.topic);
    const now = this.#opts.clock();
    this.#lastRecordWall = now;
    // The lag between wall clock and event time is measured on external inputs only: repartitioned records
    // come back later with their original event time and would make the idle advance fall behind.
    if (!this.#repartitionTopics.has(record.topic)) this.state.wallClockLag = Math.max(0, now - record.timestamp);
    if (record.timestamp > this.state.streamTime) {
      // Most records have no timer due before them: stream time moves without a trip through the timer loop.
      if (this.#streamTimerDue(record.timestamp)) {
        const advanced = this.#advance(record.timestamp);
        if (typeof advanced !== 'number') return advanced.then(() => this.#flow(source, record, consumed));
        return this.#flow(source, record, consumed);
      }
      this.state.streamTime = record.timestamp;
    }
    return this.#flow(source, record, consumed);
  }

  /** The record through the topology from its source, once stream time has moved to it. */
  #flow(source: string | undefined, record: StreamRecord, consumed: RecordOrigin): boolean | Promise<boolean> {
    if (source === undefined) {
      // A topic no source reads only moves stream time (replay inputs carry every topic); no position kept.
      this.stats.recordsSkipped++;
      return false;
    }
    this.state.setPosition(consumed.topic, consumed.partition, nextOffset(consumed.offset));
    // The record is its own origin (topic, partition, offset): no object per record. Processors copy what they keep.
    this.#origin = record;
    let drained: void | Promise<void>;
    try {
      const children = this.#topology.children.get(source);
      if (children !== undefined) for (let i = 0; i < children.length; i++) this.#dispatch(children[i] as string, record);
      drained = this.#drain();
    } catch (err) {
      this.#origin = undefined;
      throw err;
    }
    if (drained === undefined) return this.#afterRecord();
    return drained.then(
      () => this.#afterRecord(),
      (err: unknown) => {
        this.#origin = undefined;
        throw err;
      },
    );
  }

  /**
   * Once the record's drain is done: the erasures it asked for, then a timer registered at or below stream time
   * fires now (DESIGN §4): a record that reaches this task late (through a repartition topic, or out of order)
   * must not leave a timer waiting for a later record.
   */
  #afterRecord(): boolean | Promise<boolean> {
    try {
      this.#applyErasures();
    } finally {
      this.#origin = undefined;
    }
    if (this.#streamTimerDue(this.state.streamTime)) {
      const advanced = this.#advance(this.state.streamTime);
      if (typeof advanced !== 'number') {
        return advanced.then(() => {
          this.stats.recordsProcessed++;
          return true;
        });
      }
    }
    this.stats.recordsProcessed++;
    return true;
  }

  #streamTimerDue(time: number): boolean {
    const next = this.#timers.nextTime('stream-time');
    return next !== undefined && next <= time;
  }

  /** Moves stream time forward to `time` (never back) and fires the stream-time timers due by then. */
  async advanceStreamTime(time: number): Promise<number> {
    this.#checkOpen();
    return this.#advance(time);
  }

  /**
   * advanceStreamTime without a promise while every firing answers from memory (its keys loaded, its processor
   * and what it forwards to done without waiting): a promise and a turn of the microtask queue per timer were
   * the engine's largest allocation of a replay after the records themselves. Once something must be waited
   * for, the rest runs in {@link #advanceAsync}.
   */
  #advance(time: number): number | Promise<number> {
    let fired = 0;
    for (;;) {
      const t = this.#timers.popDue('stream-time', time);
      if (!t) break;
      if (!this.#timersFetched.delete(t) && this.#anyToFetch()) return this.#advanceAsync(time, fired, t);
      // Stream time steps through each timer, so a timer sees the time it was due at.
      this.state.streamTime = t.time;
      const firing = this.#fire(t);
      fired++;
      if (firing !== undefined) return firing.then(() => this.#advanceAsync(time, fired, undefined));
    }
    this.state.streamTime = time;
    return fired;
  }

  /** The rest of #advance: `due`, popped and not loaded yet, first. */
  async #advanceAsync(time: number, firedBefore: number, due: QueuedTimer | undefined): Promise<number> {
    let fired = firedBefore;
    let t = due;
    for (;;) {
      if (t === undefined) {
        t = this.#timers.popDue('stream-time', time);
        if (!t) break;
        if (!this.#timersFetched.delete(t) && this.#anyToFetch()) await this.#prefetchTimers(t, 'stream-time', time);
      } else await this.#prefetchTimers(t, 'stream-time', time);
      this.state.streamTime = t.time;
      await this.#fire(t);
      fired++;
      t = undefined;
    }
    this.state.streamTime = time;
    return fired;
  }

  /**
   * Wall-clock punctuation: fires wall-clock timers due by `now`, and when the partition has been quiet for
   * `idleAdvanceMs`, advances stream time to `now` minus the last observed lag.
   */
  async punctuateWallClock(now = this.#opts.clock()): Promise<number> {
    this.#checkOpen();
    let fired = 0;
    for (;;) {
      const t = this.#timers.popDue('wall-clock', now);
      if (!t) break;
      if (!this.#timersFetched.delete(t) && this.#anyToFetch()) await this.#prefetchTimers(t, 'wall-clock', now);
      await this.#fire(t);
      fired++;
    }
    const idle = this.#opts.idleAdvanceMs ?? 5000;
    // Only once this task has seen a record (the lag is kept with the state, so a restored task has it):
    // without one, the distance between wall clock and event time is unknown, and moving to the wall clock
    // would leave every older event that arrives later below stream time (a task started on empty topics,
    // then fed a backlog).
    const lag = this.state.wallClockLag;
    if (Number.isFinite(idle) && lag !== undefined && now - this.#lastRecordWall >= idle) {
      const target = now - lag;
      if (target > this.state.streamTime) fired += await this.advanceStreamTime(target);
    }
    // Stream-time timers a wall-clock timer registered at or below stream time.
    return fired + (await this.advanceStreamTime(this.state.streamTime));
  }

  /**
   * Before a timer fires whose key was not loaded ahead: loads, with one multi-get per store, the keys of it
   * and of the next due timers (up to a chunk), so a wave of firings (abandonment at the end of a quiet spell,
   * a restored task catching up) does not read RocksDB one key at a time. Callers skip it for a timer loaded
   * with an earlier chunk (`#timersFetched`) and when no store needs loading.
   */
  async #prefetchTimers(t: QueuedTimer, domain: TimerDomain, upTo: number): Promise<void> {
    this.#timersFetched.clear();
    const due = this.#timers.peekDue(domain, upTo, PREFETCH_CHUNK);
    for (const d of due) this.#timersFetched.add(d);
    // Only the stores each timer's firing can reach: an abandonment timer reads the baskets and the history,
    // not the other topologies' stores, which for a customer of one basket event were never loaded.
    const keysByStore = new Map<string, string[]>();
    for (const timer of [t, ...due]) {
      for (const store of this.#storesFiring(timer.node)) {
        const keys = keysByStore.get(store);
        if (keys === undefined) keysByStore.set(store, [timer.key]);
        else keys.push(timer.key);
      }
    }
    if (keysByStore.size > 0) await this.state.prefetchMany(keysByStore);
  }

  /** The record-keyed stores of `node` and of the processors downstream of it (a sink ends the walk). */
  #storesFiring(node: string): readonly string[] {
    let stores = this.#timerStores.get(node);
    if (stores !== undefined) return stores;
    const seen = this.#processorsFrom([node]);
    stores = this.#prefetchStores.filter((store) => this.#topology.stores.get(store)?.processors.some((p) => seen.has(p)) === true);
    this.#timerStores.set(node, stores);
    return stores;
  }

  commit(options?: CommitOptions): Promise<{ changes: number }> {
    this.#checkOpen();
    return this.state.commit(options);
  }

  /** Closes processors, then the state. Call commit() first to keep uncommitted work. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    let first: unknown;
    for (const [name, p] of this.#processors) {
      try {
        await p.close?.();
      } catch (err) {
        this.#opts.logger.error({ err, processor: name }, 'processor close failed');
        first ??= err;
      }
    }
    await this.state.close();
    if (first !== undefined) throw first;
  }

  async #init(): Promise<void> {
    for (const row of await this.state.scan(TIMER_STORE)) {
      const p = row.value as PersistedTimer;
      this.#timers.add({ ...p, id: row.key, heapAt: -1 });
    }
    for (const node of this.#topology.nodes.values()) {
      if (node.kind !== 'processor') continue;
      const processor = node.supplier() as Processor<unknown, unknown>;
      const ctx = new NodeContext(this, node);
      this.#processors.set(node.name, processor);
      this.#contexts.set(node.name, ctx);
    }
    for (const [name, p] of this.#processors) await p.init?.(this.#contexts.get(name) as NodeContext);
  }

  readonly #views = new Map<string, AnyStoreView>();
  #view(name: string): AnyStoreView {
    let v = this.#views.get(name);
    if (!v) {
      const s = this.#topology.stores.get(name);
      if (!s) throw new KairosError('KAIROS_ERR_STORE_NOT_CONNECTED', `topology ${this.#topology.applicationId} has no store "${name}"`);
      v = createView(this.state, s.spec);
      this.#views.set(name, v);
    }
    return v;
  }

  /** @internal used by NodeContext */
  storeFor(node: ProcessorNode, name: string): AnyStoreView {
    if (!node.stores.includes(name)) {
      throw new KairosError('KAIROS_ERR_STORE_NOT_CONNECTED', `processor "${node.name}" is not connected to store "${name}"`);
    }
    return this.#view(name);
  }

  /** @internal */
  forwardFrom(node: string, record: OutputRecord, child: string | undefined): void {
    const children = this.#topology.children.get(node) ?? [];
    if (child !== undefined) {
      if (!children.includes(child)) throw new KairosError('KAIROS_ERR_TOPOLOGY', `"${node}" has no child "${child}"`);
      this.#dispatch(child, this.#streamOf(record));
      return;
    }
    if (children.length === 0) return;
    // One record for all children, as a source record is: processors get it read-only.
    const stream = this.#streamOf(record);
    for (let i = 0; i < children.length; i++) this.#dispatch(children[i] as string, stream);
  }

  /**
   * The record as its children get it. The input record itself, forwarded unchanged (a stage that passes records
   * on, like the input dedup), goes on as it is: it already holds the coordinates #asStream would copy into a new
   * one (two objects per input record less).
   */
  #streamOf(record: OutputRecord): StreamRecord {
    const origin: object | undefined = this.#origin;
    return record === origin ? (record as StreamRecord) : this.#asStream(record);
  }

  /** @internal */
  get origin(): RecordOrigin | undefined {
    return this.#origin;
  }

  /** @internal */
  get wallClock(): number {
    return this.#opts.clock();
  }

  /** @internal */
  get logger(): Logger {
    return this.#opts.logger;
  }

  /** @internal */
  get applicationId(): string {
    return this.#topology.applicationId;
  }

  /**
   * @internal erasure of a key across the task: customer-keyed stores and all timers of the key. Applied once
   * every processor has seen the current record, so a topology can still read what it must withdraw elsewhere
   * (e.g. the customer's entries in product-side indexes) when the tombstone reaches it.
   */
  eraseKey(key: string): void {
    this.#pendingErase.add(key);
  }

  #applyErasures(): void {
    if (this.#pendingErase.size === 0) return;
    for (const key of this.#pendingErase) {
      for (const store of this.#prefetchStores) this.state.delete(store, key);
      for (const t of this.#timers.forKey(key)) this.cancelTimer(t.node, t.name, key);
      this.#opts.logger.info({ task: this.taskId }, 'key erased from every customer-keyed store');
    }
    this.#pendingErase.clear();
  }

  /** @internal */
  registerTimer(node: string, t: Timer): void {
    if (!Number.isFinite(t.time)) throw new RangeError(`timer "${t.name}" for key "${t.key}": time must be finite`);
    const pending = this.#timers.find(node, t.name, t.key);
    if (pending !== undefined && pending.domain === t.domain) {
      // Re-armed (a session's end, moved on by each of its events): the same object, moved in the heap.
      this.#timers.retime(pending, t.time, t.data);
      this.#timerChanges.add(pending.id);
      return;
    }
    const id = pending?.id ?? timerId(node, t.name, t.key);
    const q: QueuedTimer =
      t.data === undefined
        ? { node, id, name: t.name, key: t.key, time: t.time, domain: t.domain, heapAt: -1 }
        : { node, id, name: t.name, key: t.key, time: t.time, domain: t.domain, data: t.data, heapAt: -1 };
    // Replaces a pending timer of the same id (another domain) in place.
    this.#timers.add(q);
    this.#timerChanges.add(id);
  }

  /**
   * Ids of timers registered, cancelled or fired since the last commit. The queue is the timers' truth while the
   * task runs; each commit writes the latest of every changed id into the timer store (`#persistTimers`), so a
   * timer re-armed on every event (a session's inactivity) costs one store write per commit, not per event.
   */
  readonly #timerChanges = new Set<string>();

  /** Called by the state at the start of each commit: the changed timers become store writes of that commit. */
  #persistTimers(): void {
    for (const id of this.#timerChanges) {
      const t = this.#timers.get(id);
      if (t === undefined) this.state.delete(TIMER_STORE, id);
      else this.state.put(TIMER_STORE, id, { node: t.node, name: t.name, key: t.key, time: t.time, domain: t.domain, ...(t.data === undefined ? {} : { data: t.data }) } satisfies PersistedTimer);
    }
    this.#timerChanges.clear();
  }

  /** @internal */
  cancelTimer(node: string, name: string, key: string): void {
    const id = timerId(node, name, key);
    if (this.#timers.remove(id)) this.#timerChanges.add(id);
  }

  /** @internal */
  getTimer(node: string, name: string, key: string): Timer | undefined {
    const t = this.#timers.get(timerId(node, name, key));
    return t && publicTimer(t);
  }

  /** @internal */
  timersOf(node: string, key: string): Timer[] {
    return this.#timers
      .forKey(key)
      .filter((t) => t.node === node)
      .map(publicTimer);
  }

  #asStream(record: OutputRecord): StreamRecord {
    // Literals of one shape (no spreads): this runs for every forward, and spreads made it a hot spot.
    const o = this.#origin;
    const stream: StreamRecord = {
      topic: o === undefined ? '' : o.topic,
      partition: o === undefined ? this.partition : o.partition,
      offset: o === undefined ? '-1' : o.offset,
      key: record.key,
      value: record.value,
      timestamp: record.timestamp,
      // The runners' input records carry one (a processor's forwards have none): the same fields in the same
      // order keep every record one shape for the processors' property loads.
      fingerprint: undefined,
    };
    return record.headers === undefined ? stream : { ...stream, headers: record.headers };
  }

  #dispatch(nodeName: string, record: StreamRecord): void {
    const node = this.#topology.nodes.get(nodeName);
    if (node?.kind === 'sink' && this.#loopback.has(node.topic)) {
      const source = this.#sourceByTopic.get(node.topic) as string;
      const looped: StreamRecord = { ...record, topic: node.topic };
      const children = this.#topology.children.get(source);
      if (children !== undefined) for (let i = 0; i < children.length; i++) this.#enqueue(children[i] as string, looped);
      if (this.#prefetchStores.length > 0) this.#unfetched.push(looped);
      return;
    }
    if (node?.kind === 'sink') {
      this.#opts.collector.send(node.topic, { key: record.key, value: record.value, timestamp: record.timestamp, ...(record.headers ? { headers: record.headers } : {}) }, this.#origin);
      this.stats.recordsEmitted++;
    } else this.#enqueue(nodeName, record);
  }

  #enqueue(node: string, record: StreamRecord): void {
    this.#queueNodes[this.#queueTail] = node;
    this.#queueRecords[this.#queueTail] = record;
    this.#queueTail++;
  }

  /**
   * Processes the queued records, breadth-first: a forward is processed after the forwarding call returns, so
   * forward() stays synchronous. Returns a promise only once a processor (or a prefetch) did.
   */
  #drain(): void | Promise<void> {
    while (this.#queueHead < this.#queueTail) {
      const pending = this.#step();
      if (pending !== undefined) return this.#drainAsync(pending);
    }
  }

  /** #drain once something had to be waited for: the rest of the queue in one async loop. */
  async #drainAsync(first: Promise<unknown>): Promise<void> {
    await first;
    while (this.#queueHead < this.#queueTail) {
      const pending = this.#step();
      if (pending !== undefined) await pending;
    }
  }

  /**
   * Loads ahead what the looped-back records (keyed anew, e.g. a wave's page of customers) will read, in one go,
   * or else processes the next queued record. A processor that finished without a promise (its reads were in
   * memory) costs no turn of the microtask queue: a promise is returned only when there is one to wait for.
   */
  #step(): void | Promise<unknown> {
    if (this.#unfetched.length > 0) {
      const records = this.#unfetched;
      this.#unfetched = [];
      if (this.#anyToFetch()) return this.prefetch(records);
    }
    const i = this.#queueHead++;
    const node = this.#queueNodes[i] as string;
    const record = this.#queueRecords[i] as StreamRecord;
    this.#queueRecords[i] = undefined;
    if (this.#queueHead === this.#queueTail) this.#queueHead = this.#queueTail = 0;
    const p = this.#processors.get(node) as Processor<unknown, unknown>;
    return p.process(record);
  }

  /** Fires a timer and processes what it forwards; a promise only once something had to be waited for. */
  #fire(t: QueuedTimer): void | Promise<void> {
    this.#timerChanges.add(t.id);
    const p = this.#processors.get(t.node);
    if (!p?.onTimer) {
      this.#opts.logger.warn({ timer: t.name, node: t.node }, 'timer for a processor without onTimer dropped');
      return;
    }
    const saved = this.#origin;
    this.#origin = undefined;
    let pending: Promise<void> | undefined;
    let drained = false;
    try {
      const fired = p.onTimer(publicTimer(t));
      if (fired === undefined) {
        drained = true;
        pending = this.#drain() ?? undefined;
      } else pending = fired;
    } catch (err) {
      this.#origin = saved;
      throw err;
    }
    if (pending === undefined) {
      this.#origin = saved;
      this.stats.timersFired++;
      return;
    }
    return this.#fireAsync(pending, drained, saved);
  }

  async #fireAsync(pending: Promise<void>, drained: boolean, saved: RecordOrigin | undefined): Promise<void> {
    try {
      await pending;
      if (!drained) {
        const rest = this.#drain();
        if (rest !== undefined) await rest;
      }
    } finally {
      this.#origin = saved;
    }
    this.stats.timersFired++;
  }

  #checkOpen(): void {
    if (this.#closed) throw new KairosError('KAIROS_ERR_STATE_CLOSED', `task ${this.taskId} is closed`);
  }
}

function publicTimer(t: QueuedTimer): Timer {
  return { name: t.name, key: t.key, time: t.time, domain: t.domain, ...(t.data === undefined ? {} : { data: t.data }) };
}

class NodeContext implements ProcessorContext<unknown> {
  readonly timers: TimerService;
  readonly logger: Logger;

  constructor(
    private readonly task: StreamTask,
    private readonly node: ProcessorNode,
  ) {
    this.logger = task.logger.child({ processor: node.name, task: task.taskId });
    const name = node.name;
    this.timers = {
      register: (t) => task.registerTimer(name, t),
      cancel: (timerName, key) => task.cancelTimer(name, timerName, key),
      get: (timerName, key) => task.getTimer(name, timerName, key),
      pending: (key) => task.timersOf(name, key),
    };
  }

  get applicationId(): string {
    return this.task.applicationId;
  }
  get taskId(): string {
    return this.task.taskId;
  }
  get partition(): number {
    return this.task.partition;
  }

  getStore<S extends StoreSpecLike>(spec: S): StoreOf<S> {
    return this.task.storeFor(this.node, spec.name) as unknown as StoreOf<S>;
  }

  streamTime(): number {
    return this.task.streamTime;
  }

  wallClockTime(): number {
    return this.task.wallClock;
  }

  recordOrigin(): RecordOrigin | undefined {
    return this.task.origin;
  }

  forward(record: OutputRecord<unknown>, child?: string): void {
    this.task.forwardFrom(this.node.name, record, child);
  }

  eraseKey(key: string): void {
    this.task.eraseKey(key);
  }
}
