/**
 * The Kafka runner (DESIGN §4): one consumer group over the topology's source topics, one StreamTask per input
 * partition number (co-partitioned inputs), batches processed through the task, then committed in this order:
 *   1. outputs and dead letters produced and acknowledged,
 *   2. task state committed (changelog first, then one RocksDB batch with the consumed positions),
 *   3. consumer offsets committed.
 * A crash between steps repeats work but never loses it: outputs may repeat (with the same deterministic
 * trigger ids), state never applies a record twice, because a task skips records below its own positions.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Admin, Consumer, EachBatchPayload, Kafka, KafkaMessage, Message, PartitionAssigner, Producer, Transaction } from 'kafkajs';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { OutputRecord } from '../engine/api/record.js';
import type { StoreSpecLike } from '../engine/api/processor.js';
import type { StoreOf } from '../engine/api/stores.js';
import type { Topology } from '../engine/api/topology.js';
import { changelogTopic, POSITIONS_STORE } from '../engine/state/changelog.js';
import { TaskState } from '../engine/state/task-state.js';
import { stateReader, type StateReader } from '../engine/state/reader.js';
import { partitionOf } from './partitioner.js';
import { StreamTask } from '../engine/runtime/task.js';
import { KairosError } from '../errors.js';
import { kairosStickyAssigner, type TaskRouting } from './assignor.js';
import { publishingAssigner, RoutingFollower, routingTopic } from './routing.js';
import { StandbyFollower, standbyPartitions } from './standby.js';
import { KafkaChangelogWriter, restoreFromChangelog } from './changelog.js';
import { dlqMessage, dlqTopic } from './dlq.js';
import type { DecodeResult, TopicSerde } from './serde.js';
import { isTopicName } from '../../schemas/contract.js';
import { runnerMetrics, type RunnerMetrics } from './runner-metrics.js';
import { checkCopartitioned, ensureTopics, partitionCounts, partitionOffsets } from './topics.js';

export interface KafkaRunnerOptions {
  readonly topology: Topology;
  readonly kafka: Kafka;
  /** @default `kairos-<applicationId>` */
  readonly groupId?: string;
  /** Root of the task directories (`<stateDir>/<groupId>/task-<partition>`). */
  readonly stateDir: string;
  /** Wire format of inputs and outputs (JSON, or Avro through a Schema Registry). */
  readonly serde: TopicSerde;
  readonly logger: Logger;
  readonly registry?: Registry;
  /** @default the co-partitioning, state-sticky 'kairos-sticky' assigner */
  readonly partitionAssigners?: PartitionAssigner[];
  /** host:port of this instance's query API, advertised in the group metadata. */
  readonly apiAddress?: string;
  /**
   * Warm copies of other instances' tasks kept by this one (followed from their changelogs), so a failover
   * restores only the tail. Needs `apiAddress` (placement is by address). @default 0
   */
  readonly standbyReplicas?: number;
  /**
   * at_least_once: outputs, then state, then offsets (repeats possible, with equal trigger ids).
   * exactly_once: Kafka transactions per task (needs a real broker; the mock cluster has none). @default at_least_once
   */
  readonly processingGuarantee?: 'at_least_once' | 'exactly_once';
  /** Producer idempotence (librdkafka's mock cluster does not support it). @default true */
  readonly idempotent?: boolean;
  /** @default 500 */
  readonly maxWaitTimeInMs?: number;
  /** Wall-clock punctuation and idle flush interval. @default 1000 */
  readonly punctuateIntervalMs?: number;
  /** Stream time follows the wall clock after this much quiet on a task. @default 5000 */
  readonly idleAdvanceMs?: number;
  /**
   * How long a task waits for an input that is known to have unfetched records before it processes the
   * others anyway (Kafka Streams' max.task.idle.ms). @default 2000
   */
  readonly maxTaskIdleMs?: number;
  /**
   * A task commits (outputs, changelog, RocksDB, offsets) at most this often while batches keep coming, and on
   * the next punctuation otherwise (Kafka Streams' commit.interval.ms). @default 500
   */
  readonly commitIntervalMs?: number;
  /** @default 30000 */
  readonly sessionTimeout?: number;
  /** @default 3000 */
  readonly heartbeatInterval?: number;
  readonly clock?: () => number;
  /**
   * Called for every output record once it is durably written (after the commit's produce succeeded), in
   * order: what the application counts as sent (trigger metrics) without the runner knowing the topics.
   */
  readonly onOutput?: (topic: string, record: OutputRecord) => void;
}

interface Pending {
  readonly topic: string;
  readonly record: OutputRecord;
}

interface Buffered {
  readonly message: KafkaMessage;
  readonly decoded: DecodeResult;
  /** Event time: the value's, else the Kafka timestamp. */
  readonly timestamp: number;
}

interface TaskHandle {
  readonly partition: number;
  /** Fetched, not yet processed records per input topic, in offset order. */
  readonly buffers: Map<string, Buffered[]>;
  /** Per input topic: the last fetch left records behind (true), reached the end (false), or none yet (absent). */
  readonly behind: Map<string, boolean>;
  waitingSince: number | undefined;
  /** Processed since the last commit. */
  pending: boolean;
  lastCommitAt: number;
  readonly task: StreamTask;
  outputs: Pending[];
  dead: { topic: string; message: Message }[];
  /** Exactly-once: the task's transactional producer and its open transaction. */
  txProducer: Producer | undefined;
  txn: Transaction | undefined;
  /** Serialises batches, punctuation and close on this task. */
  chain: Promise<void>;
  closed: boolean;
}

export class KafkaRunner {
  readonly #o: KafkaRunnerOptions;
  readonly #groupId: string;
  readonly #log: Logger;
  readonly #metrics: RunnerMetrics | undefined;
  readonly #tasks = new Map<number, Promise<TaskHandle>>();
  readonly #sources: string[];
  readonly #externalSources: string[];
  readonly #maxTaskIdleMs: number;
  readonly #commitIntervalMs: number;
  #admin: Admin | undefined;
  #producer: Producer | undefined;
  #consumer: Consumer | undefined;
  #timer: NodeJS.Timeout | undefined;
  #partitions = 0;
  #stopping = false;
  #left = false;
  #started = false;
  readonly #opened = new Set<number>();
  #assigned = new Set<number>();
  #routing: TaskRouting | undefined;
  #standby: StandbyFollower | undefined;
  #routingFollower: RoutingFollower | undefined;

  constructor(options: KafkaRunnerOptions) {
    this.#o = options;
    this.#groupId = options.groupId ?? `kairos-${options.topology.applicationId}`;
    this.#log = options.logger.child({ component: 'kafka-runner', group: this.#groupId });
    this.#metrics = options.registry ? runnerMetrics(options.registry, () => this.#openStates()) : undefined;
    this.#sources = [...new Set([...options.topology.nodes.values()].flatMap((n) => (n.kind === 'source' ? n.topics : [])))].sort();
    if (this.#sources.length === 0) throw new KairosError('KAIROS_ERR_TOPOLOGY', 'the topology reads no topic');
    this.#externalSources = this.#sources.filter((t) => !options.topology.repartitionTopics.includes(t));
    this.#maxTaskIdleMs = options.maxTaskIdleMs ?? 2000;
    this.#commitIntervalMs = options.commitIntervalMs ?? 500;
  }

  get groupId(): string {
    return this.#groupId;
  }

  /** Started, and every assigned task is open with its state restored. */
  get ready(): boolean {
    return this.#started && !this.#stopping && [...this.#assigned].every((p) => this.#opened.has(p));
  }

  /** Open tasks' states (for the state metrics collected at scrape time). */
  async #openStates(): Promise<{ partition: number; state: TaskState }[]> {
    const out: { partition: number; state: TaskState }[] = [];
    for (const p of this.#opened) {
      const h = await this.#tasks.get(p)?.catch(() => undefined);
      if (h && !h.closed) out.push({ partition: p, state: h.task.state });
    }
    return out;
  }

  /** Partitions whose tasks this instance holds. */
  get assignedPartitions(): number[] {
    return [...this.#assigned].sort((a, b) => a - b);
  }

  /** Stores of every task, for changelog topics and restore. */
  get #storeNames(): string[] {
    return [...StreamTask.storeSpecs(this.#o.topology).map((s) => s.name), POSITIONS_STORE];
  }

  async start(): Promise<void> {
    const { kafka } = this.#o;
    this.#admin = kafka.admin();
    await this.#admin.connect();
    const internal = new Set(this.#o.topology.repartitionTopics);
    const external = this.#sources.filter((t) => !internal.has(t));
    const counts = await partitionCounts(this.#admin, external, this.#log);
    this.#partitions = checkCopartitioned(counts, external);
    const app = this.#o.topology.applicationId;
    const sinks = [...new Set([...this.#o.topology.nodes.values()].flatMap((n) => (n.kind === 'sink' && !internal.has(n.topic) ? [n.topic] : [])))];
    await ensureTopics(
      this.#admin,
      [
        // Repartition topics get the inputs' partition count, so a re-keyed record lands in the task owning its key.
        ...[...internal].map((t) => ({ topic: t, numPartitions: this.#partitions })),
        ...this.#storeNames.map((s) => ({ topic: changelogTopic(app, s), numPartitions: this.#partitions, compacted: true })),
        ...external.map((t) => ({ topic: dlqTopic(t), numPartitions: this.#partitions })),
        { topic: routingTopic(app), numPartitions: 1, compacted: true, anyPartitions: true },
      ],
      this.#log,
    );
    if (sinks.length > 0) await partitionCounts(this.#admin, sinks, this.#log);
    this.#producer = kafka.producer({
      idempotent: this.#o.idempotent ?? true,
      ...(this.#o.idempotent === false ? {} : { maxInFlightRequests: 1 }),
      allowAutoTopicCreation: true,
    });
    await this.#producer.connect();
    if ((this.#o.standbyReplicas ?? 0) > 0) {
      if (this.#o.apiAddress === undefined) throw new KairosError('KAIROS_ERR_CONFIG', 'standby replicas need the instance\'s API address (placement is by address)');
      this.#standby = new StandbyFollower({
        kafka,
        topology: this.#o.topology,
        groupId: this.#groupId,
        stateDir: this.#o.stateDir,
        stores: this.#storeNames,
        logger: this.#log,
        maxWaitTimeInMs: this.#o.maxWaitTimeInMs ?? 500,
        onApplied: (p, n) => this.#metrics?.standbyApplied.inc({ partition: String(p) }, n),
      });
    }
    this.#routingFollower = new RoutingFollower(kafka, routingTopic(app), this.#log, (r) => {
      this.#routing = r;
      this.#updateStandby();
    });
    await this.#routingFollower.start(this.#o.maxWaitTimeInMs ?? 500);
    await this.#startConsumer();
    const every = this.#o.punctuateIntervalMs ?? 1000;
    this.#timer = setInterval(() => void this.#punctuate(), Math.min(every, this.#commitIntervalMs));
    this.#started = true;
    this.#log.info({ sources: this.#sources, partitions: this.#partitions }, 'kafka runner started');
  }

  async #startConsumer(): Promise<void> {
    const consumer = this.#o.kafka.consumer({
      groupId: this.#groupId,
      maxWaitTimeInMs: this.#o.maxWaitTimeInMs ?? 500,
      sessionTimeout: this.#o.sessionTimeout ?? 30_000,
      heartbeatInterval: this.#o.heartbeatInterval ?? 3000,
      partitionAssigners: this.#o.partitionAssigners ?? [
        publishingAssigner(
          kairosStickyAssigner({
            apiAddress: () => this.#o.apiAddress,
            ownedPartitions: () => this.#localPartitions(),
            standbyOwned: () => new Map(this.#externalSources.map((t) => [t, this.standbyPartitions])),
          }),
          () => this.#producer,
          routingTopic(this.#o.topology.applicationId),
          this.#log,
        ),
      ],
    });
    this.#consumer = consumer;
    let rebalancingSince: number | undefined;
    consumer.on(consumer.events.REBALANCING, () => {
      rebalancingSince ??= Date.now();
      // Commit every task now, while the group rebalances: a task that moves is restored elsewhere from its
      // changelog, and the sooner its last changes are there the less the next owner has to redo.
      for (const hp of this.#tasks.values()) {
        void hp
          .then((h) => this.#exclusive(h, () => (h.pending || h.outputs.length > 0 || h.dead.length > 0 ? this.#commit(h) : Promise.resolve())))
          .catch((err: unknown) => this.#log.warn({ err }, 'commit at rebalance failed'));
      }
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.#metrics?.rebalances.inc();
      if (rebalancingSince !== undefined) this.#metrics?.rebalancePause.observe((Date.now() - rebalancingSince) / 1000);
      rebalancingSince = undefined;
      const assigned = new Set<number>();
      for (const parts of Object.values(e.payload.memberAssignment)) for (const p of parts) assigned.add(p);
      this.#log.info({ partitions: [...assigned].sort((a, b) => a - b) }, 'assignment');
      for (const p of this.#tasks.keys()) if (!assigned.has(p)) void this.#closeTask(p);
      this.#assigned = assigned;
      // Open (and restore) every assigned task now, not on its first batch, so readiness means restored.
      for (const p of assigned) this.#taskFor(p).catch((err: unknown) => this.#log.error({ err, partition: p }, 'opening task failed'));
      this.#metrics?.tasks.set(assigned.size);
      this.#updateStandby();
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (e.payload.restart || this.#stopping) return; // kafkajs restarts it itself
      // kafkajs gives up on non-retriable errors (e.g. a coordinator answering SyncGroup out of turn). A
      // stream processor must not silently stop consuming: start a fresh consumer, which rejoins the group.
      this.#log.error({ err: e.payload.error.message }, 'consumer crashed without restart; starting a new one');
      this.#metrics?.consumerRestarts.inc();
      this.#assigned = new Set();
      setTimeout(() => {
        if (this.#stopping || this.#consumer !== consumer) return;
        consumer
          .disconnect()
          .catch(() => undefined)
          .then(() => (this.#stopping ? undefined : this.#startConsumer()))
          .catch((err: unknown) => this.#log.error({ err }, 'consumer restart failed'));
      }, 1000);
    });
    await consumer.connect();
    await consumer.subscribe({ topics: this.#sources, fromBeginning: true });
    await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, partitionsConsumedConcurrently: 1, eachBatch: (b) => this.#eachBatch(b) });
  }

  /** Where every task runs (API addresses), from the assignment the group leader published; undefined before. */
  get routing(): TaskRouting | undefined {
    return this.#routing;
  }

  /** The task (partition) that owns a key of the inputs, as producers partition them; undefined before start. */
  partitionOf(key: string): number | undefined {
    return this.#partitions > 0 ? partitionOf(key, this.#partitions) : undefined;
  }

  /**
   * Read access to a task's state on this instance: the active task when it runs here (open and restored),
   * else a warm standby copy (with its lag), else undefined.
   */
  async reader(partition: number): Promise<StateReader | undefined> {
    if (this.#opened.has(partition) && this.#assigned.has(partition)) {
      const h = await this.#tasks.get(partition)?.catch(() => undefined);
      if (h && !h.closed) return stateReader(h.task.state, { source: 'active', partition, timers: (key) => h.task.timerInfosFor(key) });
    }
    const copy = this.#standby?.copy(partition);
    if (copy) return stateReader(copy.state, { source: 'standby', partition, ...(copy.lagRecords === undefined ? {} : { lagRecords: copy.lagRecords }) });
    return undefined;
  }

  /** A store of an open task, for reads (the query API); undefined when this instance does not run the task. */
  async store<S extends StoreSpecLike>(partition: number, spec: S): Promise<StoreOf<S> | undefined> {
    if (!this.#opened.has(partition)) return undefined;
    const h = await this.#tasks.get(partition);
    return h && !h.closed ? h.task.store(spec) : undefined;
  }

  /** Standby partitions this instance keeps warm. */
  get standbyPartitions(): number[] {
    return this.#standby?.partitions ?? [];
  }

  /** Keeps standby copies of the tasks the current routing places here (none of the tasks this instance runs). */
  #updateStandby(): void {
    const me = this.#o.apiAddress;
    if (!this.#standby || !this.#routing || me === undefined || this.#stopping) return;
    const wanted = standbyPartitions(this.#routing, me, this.#o.standbyReplicas ?? 0);
    for (const p of this.#assigned) wanted.delete(p);
    this.#standby.update(wanted).catch((err: unknown) => this.#log.warn({ err }, 'standby update failed'));
  }

  /** Commits and closes every task, leaves the group, disconnects. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#timer) clearInterval(this.#timer);
    // Commit every task while still in the group (offsets included), then leave, then close the stores.
    for (const hp of this.#tasks.values()) {
      const h = await hp.catch(() => undefined);
      if (h) await this.#exclusive(h, () => this.#commit(h)).catch((err: unknown) => this.#log.error({ err }, 'final commit failed'));
    }
    await this.#consumer?.disconnect();
    this.#left = true;
    await this.#standby?.stop();
    await this.#routingFollower?.stop();
    for (const p of [...this.#tasks.keys()]) await this.#closeTask(p);
    await this.#producer?.disconnect();
    await this.#admin?.disconnect();
    this.#log.info('kafka runner stopped');
  }

  /** Source partitions whose state this instance holds (open tasks and task directories on disk). */
  #localPartitions(): Map<string, number[]> {
    const parts = new Set<number>(this.#tasks.keys());
    const root = join(this.#o.stateDir, this.#groupId);
    if (existsSync(root)) {
      for (const name of readdirSync(root)) {
        const m = /^task-([0-9]+)$/.exec(name);
        if (m) parts.add(Number(m[1]));
      }
    }
    for (const p of this.standbyPartitions) if (!this.#tasks.has(p)) parts.delete(p);
    const list = [...parts].sort((a, b) => a - b);
    return new Map(this.#sources.map((t) => [t, list]));
  }

  #taskFor(partition: number): Promise<TaskHandle> {
    let h = this.#tasks.get(partition);
    if (!h) {
      h = this.#openTask(partition);
      this.#tasks.set(partition, h);
      h.catch(() => this.#tasks.delete(partition));
    }
    return h;
  }

  async #openTask(partition: number): Promise<TaskHandle> {
    const app = this.#o.topology.applicationId;
    const taskId = `task-${partition}`;
    const dir = join(this.#o.stateDir, this.#groupId, taskId);
    // A warm standby copy of this task becomes the starting point; the follower lets go of the directory.
    await this.#standby?.release(partition);
    // Restore first, on the bare state, so the task starts with complete stores and timers.
    const bare = await TaskState.open({ dir, taskId, stores: StreamTask.storeSpecs(this.#o.topology) });
    let behind: Map<string, boolean>;
    let restoredPositions: ReadonlyMap<string, string>;
    try {
      const n = await restoreFromChangelog({
        kafka: this.#o.kafka,
        admin: this.#admin as Admin,
        state: bare,
        applicationId: app,
        stores: this.#storeNames,
        partition,
        groupId: this.#groupId,
        logger: this.#log,
        onProgress: (p) => this.#metrics?.restoreRemaining.set({ partition: String(partition) }, Number(p.remaining)),
        onTrimmed: (topic, n) => this.#metrics?.restoreTrimmed.inc({ topic }, Number(n)),
        transactional: this.#o.processingGuarantee === 'exactly_once',
      });
      this.#metrics?.restored.inc({ partition: String(partition) }, n);
      this.#metrics?.restoreRemaining.set({ partition: String(partition) }, 0);
      behind = await this.#initialLag(partition, bare);
      restoredPositions = new Map(this.#sources.flatMap((t) => {
        const next = bare.position(t, partition);
        return next === undefined ? [] : [[t, next] as const];
      }));
    } finally {
      await bare.close();
    }
    let txProducer: Producer | undefined;
    if (this.#o.processingGuarantee === 'exactly_once') {
      // One transactional producer per input partition: its id fences a zombie owner of the same task.
      txProducer = this.#o.kafka.producer({ transactionalId: `${this.#groupId}-task-${partition}`, idempotent: true, maxInFlightRequests: 1 });
      await txProducer.connect();
    }
    const handle: TaskHandle = {
      partition,
      task: undefined as unknown as StreamTask,
      buffers: new Map(),
      behind,
      waitingSince: undefined,
      pending: false,
      lastCommitAt: Date.now(),
      outputs: [],
      dead: [],
      chain: Promise.resolve(),
      closed: false,
      txProducer,
      txn: undefined,
    };
    const task = await StreamTask.create({
      topology: this.#o.topology,
      taskId,
      partition,
      stateDir: dir,
      logger: this.#log,
      clock: this.#o.clock ?? Date.now,
      // Exactly-once: changelog records go into the task's open transaction.
      changelog: new KafkaChangelogWriter(() => handle.txn ?? (this.#producer as Producer), app, partition),
      collector: { send: (topic, record) => handle.outputs.push({ topic, record }) },
      idleAdvanceMs: this.#o.idleAdvanceMs ?? 5000,
    });
    (handle as { task: StreamTask }).task = task;
    // Fetch from the task's own positions, not from the group's committed offsets: a previous owner's last
    // offset commit can land after its last changelog write was restored here, and records between the two
    // would be skipped. A batch fetched before this seek is stale and dropped (eachBatch checks isStale()).
    for (const [topic, offset] of restoredPositions) this.#consumer?.seek({ topic, partition, offset });
    this.#opened.add(partition);
    this.#log.info({ partition, dir }, 'task opened');
    return handle;
  }

  /**
   * Whether each input partition of a new task has records beyond the task's position (end offsets from the
   * broker), so the first batches wait for each other instead of racing ahead by batch order.
   */
  async #initialLag(partition: number, state: TaskState): Promise<Map<string, boolean>> {
    const behind = new Map<string, boolean>();
    for (const topic of this.#externalSources) {
      const o = await partitionOffsets(this.#admin as Admin, topic, partition, this.#log);
      const pos = BigInt(state.position(topic, partition) ?? o.low);
      behind.set(topic, BigInt(o.high) > pos);
    }
    return behind;
  }

  /** Runs `fn` on the task after everything queued before it. */
  #exclusive(h: TaskHandle, fn: () => Promise<void>): Promise<void> {
    const run = h.chain.then(() => (h.closed ? undefined : fn()));
    h.chain = run.catch(() => undefined);
    return run;
  }

  /**
   * Fetched records are decoded into the task's per-topic buffers, then the task processes, across its input
   * topics, always the buffered record with the smallest event time (as Kafka Streams' PartitionGroup does), so
   * a basket batch and an orders batch of the same partition interleave by event time instead of batch order.
   */
  async #eachBatch({ batch, heartbeat, isRunning, isStale, resolveOffset }: EachBatchPayload): Promise<void> {
    if (batch.isEmpty()) return;
    let h: TaskHandle | undefined;
    try {
      h = await this.#openWhileHeartbeating(batch.partition, heartbeat, isRunning);
    } catch (err) {
      // Opening (restoring) failed; it is retried with the next batch. Nothing was resolved, so the records are
      // fetched again — failing the batch would make kafkajs restart the whole consumer after a long pause.
      this.#log.error({ err, partition: batch.partition }, 'task could not be opened; retrying');
      await new Promise((r) => setTimeout(r, 1000));
      return;
    }
    if (!h) return; // a rebalance or stop came first; nothing was resolved, so the records are fetched again
    await this.#exclusive(h, async () => {
      const { topic, partition } = batch;
      const buffer = h.buffers.get(topic) ?? [];
      h.buffers.set(topic, buffer);
      for (const m of batch.messages) {
        if (!isRunning() || isStale()) break;
        const decoded = await this.#decode(topic, m.key, m.value, isRunning);
        const timestamp = decoded.ok && decoded.timestamp !== undefined ? decoded.timestamp : Number(m.timestamp);
        buffer.push({ message: m, decoded, timestamp });
        // Resolved once buffered: the consumer fetches on; what is committed follows the task's own positions.
        resolveOffset(m.offset);
      }
      const last = batch.lastOffset();
      const lag = BigInt(batch.highWatermark) - BigInt(last) - 1n;
      h.behind.set(topic, lag > 0n);
      this.#metrics?.lag.set({ topic, partition: String(partition) }, Math.max(0, Number(lag)));
      await heartbeat();
      const n = await this.#drain(h, false);
      if (n > 0 || h.outputs.length > 0 || h.dead.length > 0) h.pending = true;
      // Commits are batched over commitIntervalMs: one changelog write, RocksDB batch and offset commit for
      // many small fetches (the punctuation commits what is left when no further batch comes).
      if (h.pending && Date.now() - h.lastCommitAt >= this.#commitIntervalMs) await this.#commit(h);
    });
    await heartbeat();
  }

  /**
   * Processes buffered records in event-time order. It stops when an input topic has nothing buffered but is
   * known to have more to fetch (its next records may be older), unless `force` (max idle time passed).
   */
  async #drain(h: TaskHandle, force: boolean): Promise<number> {
    let count = 0;
    for (;;) {
      let best: string | undefined;
      let bestTs = Infinity;
      let waiting = false;
      for (const topic of this.#externalSources) {
        const buf = h.buffers.get(topic);
        const head = buf?.[0];
        if (!head) {
          if (h.behind.get(topic) !== false) waiting = true; // unknown or lagging: more may come
          continue;
        }
        if (head.timestamp < bestTs) {
          bestTs = head.timestamp;
          best = topic;
        }
      }
      for (const topic of this.#o.topology.repartitionTopics) {
        const head = h.buffers.get(topic)?.[0];
        if (head && head.timestamp < bestTs) {
          bestTs = head.timestamp;
          best = topic;
        }
      }
      if (best === undefined) break;
      if (waiting && !force) {
        h.waitingSince ??= Date.now();
        if (Date.now() - h.waitingSince < this.#maxTaskIdleMs) break;
      }
      h.waitingSince = undefined;
      const r = (h.buffers.get(best) as Buffered[]).shift() as Buffered;
      await this.#processOne(h, best, r);
      count++;
    }
    return count;
  }

  async #processOne(h: TaskHandle, topic: string, { message: m, decoded: d, timestamp }: Buffered): Promise<void> {
    const partition = h.partition;
    const done = h.task.state.position(topic, partition);
    if (done !== undefined && BigInt(m.offset) < BigInt(done)) return; // already in the state (restored or committed)
    if (!d.ok) {
      this.#metrics?.failed.inc({ topic, reason: d.reason });
      h.dead.push({
        topic: dlqTopic(topic),
        message: dlqMessage(
          { topic, partition, offset: m.offset, key: m.key, value: m.value, ...(m.headers ? { headers: m.headers } : {}), timestamp: m.timestamp },
          { reason: d.reason, errors: d.errors },
          (this.#o.clock ?? Date.now)(),
        ),
      });
      h.task.state.setPosition(topic, partition, (BigInt(m.offset) + 1n).toString());
      return;
    }
    await h.task.process({ topic, partition, offset: m.offset, key: d.key, value: d.value, timestamp });
    this.#metrics?.processed.inc({ topic });
  }

  /** Decodes a record; a registry outage is retried with backoff (never dead-lettered), other failures returned. */
  async #decode(topic: string, key: Buffer | null, value: Buffer | null, isRunning: () => boolean): Promise<DecodeResult> {
    if (this.#o.topology.repartitionTopics.includes(topic)) return decodeInternal(key, value);
    if (!isTopicName(topic)) return { ok: false, reason: 'invalid', errors: [{ path: '', message: `no schema for topic ${topic}` }], retriable: false };
    for (let attempt = 0; ; attempt++) {
      const d = await this.#o.serde.decode(topic, key, value);
      if (d.ok || !d.retriable || !isRunning()) return d;
      const wait = Math.min(100 * 2 ** attempt, 10_000);
      this.#log.warn({ topic, reason: d.reason, errors: d.errors, retryInMs: wait }, 'decode failed transiently; retrying');
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  #encode(topic: string, value: unknown): Promise<Buffer> {
    if (!isTopicName(topic)) return Promise.resolve(Buffer.from(JSON.stringify(value), 'utf8'));
    return this.#o.serde.encode(topic, value);
  }

  /**
   * The task of a partition, waiting for it to open (a restore can take a while) without blocking the group:
   * heartbeats go on, and a pending rebalance (heartbeat throws) or stop ends the wait with undefined.
   */
  async #openWhileHeartbeating(partition: number, heartbeat: () => Promise<void>, isRunning: () => boolean): Promise<TaskHandle | undefined> {
    const hp = this.#taskFor(partition);
    let settled = false;
    const ready = hp.then(
      (h) => ((settled = true), h),
      (err: unknown) => {
        settled = true;
        throw err;
      },
    );
    for (;;) {
      const h = await Promise.race([ready, new Promise<undefined>((r) => setTimeout(() => r(undefined), 500))]);
      if (h) return h;
      if (settled) return ready;
      if (!isRunning()) return undefined;
      try {
        await heartbeat();
      } catch (err) {
        this.#log.info({ partition, err: (err as Error).message }, 'rebalance while the task was opening');
        return undefined;
      }
    }
  }

  async #punctuate(): Promise<void> {
    for (const [p, hp] of this.#tasks) {
      if (!this.#assigned.has(p)) continue;
      try {
        const h = await hp;
        await this.#exclusive(h, async () => {
          const drained = await this.#drain(h, false);
          const buffered = [...h.buffers.values()].some((b) => b.length > 0);
          // Idle advance only once the task has processed what it fetched.
          const fired = drained + (buffered ? 0 : await h.task.punctuateWallClock());
          this.#metrics?.timersPending.set({ partition: String(p) }, h.task.pendingTimers);
          if (fired > 0) h.pending = true;
          if ((h.pending || h.outputs.length > 0) && Date.now() - h.lastCommitAt >= this.#commitIntervalMs) await this.#commit(h);
        });
      } catch (err) {
        this.#log.error({ err, partition: p }, 'punctuation failed');
      }
    }
  }

  /** Outputs and dead letters first, then state with positions, then consumer offsets. */
  async #commit(h: TaskHandle): Promise<void> {
    const end = this.#metrics?.commitSeconds.startTimer();
    h.pending = false;
    h.lastCommitAt = Date.now();
    const producer = this.#producer as Producer;
    const byTopic = new Map<string, Message[]>();
    for (const o of h.outputs) {
      let list = byTopic.get(o.topic);
      if (!list) byTopic.set(o.topic, (list = []));
      list.push({
        key: o.record.key === null ? null : String(o.record.key),
        value: await this.#encode(o.topic, o.record.value),
        timestamp: String(o.record.timestamp),
        ...(o.record.headers ? { headers: o.record.headers } : {}),
      });
    }
    for (const d of h.dead) {
      let list = byTopic.get(d.topic);
      if (!list) byTopic.set(d.topic, (list = []));
      list.push(d.message);
    }
    const offsets = (): { topic: string; partition: number; offset: string }[] =>
      this.#sources.flatMap((topic) => {
        const next = h.task.state.position(topic, h.partition);
        return next === undefined ? [] : [{ topic, partition: h.partition, offset: next }];
      });
    const count = (): void => {
      for (const o of h.outputs) {
        this.#metrics?.emitted.inc({ topic: o.topic });
        this.#o.onOutput?.(o.topic, o.record);
      }
      for (const d of h.dead) this.#metrics?.dlq.inc({ topic: d.message.headers?.['kairos-original-topic']?.toString() ?? d.topic });
      h.outputs = [];
      h.dead = [];
    };
    const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    if (h.txProducer) {
      await this.#commitTransaction(h, topicMessages, offsets());
      count();
      end?.();
      return;
    }
    if (topicMessages.length > 0) await producer.sendBatch({ acks: -1, topicMessages });
    count();
    await h.task.commit();
    const done = offsets();
    if (done.length > 0 && this.#consumer && !this.#left) {
      try {
        await this.#consumer.commitOffsets(done);
      } catch (err) {
        // The state holds the positions; a failed offset commit only means re-reading records we then skip.
        this.#log.warn({ err: (err as Error).message, partition: h.partition }, 'offset commit failed');
      }
    }
    end?.();
  }

  /**
   * Exactly-once commit: outputs, dead letters, changelog and consumer offsets in one Kafka transaction of
   * the task's own transactional producer; the local RocksDB write happens only after the transaction
   * committed. On failure the transaction is aborted and the task is rebuilt from its last local commit, and
   * the consumer re-reads from there.
   */
  async #commitTransaction(h: TaskHandle, topicMessages: { topic: string; messages: Message[] }[], offsets: { topic: string; partition: number; offset: string }[]): Promise<void> {
    const txn = await (h.txProducer as Producer).transaction();
    h.txn = txn;
    try {
      if (topicMessages.length > 0) await txn.sendBatch({ acks: -1, topicMessages });
      await h.task.commit({
        beforeLocalWrite: async () => {
          if (offsets.length > 0) {
            await txn.sendOffsets({
              consumerGroupId: this.#groupId,
              topics: offsets.map((o) => ({ topic: o.topic, partitions: [{ partition: o.partition, offset: o.offset }] })),
            });
          }
          await txn.commit();
        },
      });
    } catch (err) {
      this.#log.error({ err, partition: h.partition }, 'transaction failed; aborting and rebuilding the task from its last commit');
      if (txn.isActive()) await txn.abort().catch((e: unknown) => this.#log.warn({ err: e }, 'abort failed'));
      await this.#resetTask(h);
      throw err;
    } finally {
      h.txn = undefined;
    }
  }

  /** Drops a task's uncommitted in-memory state and makes the consumer re-read from its last local commit. */
  async #resetTask(h: TaskHandle): Promise<void> {
    const committed = new Map(h.task.state.positions());
    h.closed = true;
    this.#tasks.delete(h.partition);
    this.#opened.delete(h.partition);
    await h.task.close().catch((err: unknown) => this.#log.warn({ err }, 'closing a failed task'));
    await h.txProducer?.disconnect().catch(() => undefined);
    for (const topic of this.#sources) {
      const next = committed.get(`${topic}\u0000${h.partition}`);
      if (next !== undefined) this.#consumer?.seek({ topic, partition: h.partition, offset: next });
    }
  }

  async #closeTask(partition: number): Promise<void> {
    const hp = this.#tasks.get(partition);
    if (!hp) return;
    this.#tasks.delete(partition);
    this.#opened.delete(partition);
    // Per-task gauges go with the task: a frozen value here would double-count (or alert) once another
    // instance reports the same partition.
    const label = String(partition);
    for (const topic of this.#sources) this.#metrics?.lag.remove({ topic, partition: label });
    this.#metrics?.timersPending.remove({ partition: label });
    this.#metrics?.restoreRemaining.remove({ partition: label });
    let h: TaskHandle;
    try {
      h = await hp;
    } catch {
      return;
    }
    await this.#exclusive(h, async () => {
      await this.#commit(h);
      h.closed = true;
      await h.task.close();
      await h.txProducer?.disconnect();
      this.#log.info({ partition }, 'task closed');
    }).catch((err: unknown) => this.#log.error({ err, partition }, 'closing task failed'));
  }
}

/** Records of the topology's own repartition topics: JSON it wrote itself; the event time is the Kafka timestamp. */
function decodeInternal(key: Buffer | null, value: Buffer | null): DecodeResult {
  if (key === null) return { ok: false, reason: 'no-key', errors: [{ path: '/key', message: 'repartitioned records are keyed' }], retriable: false };
  try {
    return { ok: true, key: key.toString('utf8'), value: value === null ? null : (JSON.parse(value.toString('utf8')) as unknown), timestamp: undefined };
  } catch (err) {
    return { ok: false, reason: 'not-json', errors: [{ path: '/value', message: (err as Error).message }], retriable: false };
  }
}
