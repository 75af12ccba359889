/**
 * The Kafka runner (DESIGN §4), the StreamThread of Kafka Streams: one consumer group over the topology's
 * source topics, one task per input partition number (co-partitioned inputs). This module owns the group's
 * life (start, topics, assignment, rebalance, consumer restarts, stop); the parts have their own modules:
 * - active-task.ts: one task — record order, processing, the commit pipeline (outputs → state → offsets);
 * - partition-group.ts: the event-time merge of a task's inputs (the ordering rule, in one place);
 * - record-collector.ts: produce requests bounded by the broker's size limit, failed producers replaced;
 * - topics.ts: topic creation with Kafka Streams' settings, message size limits, co-partitioning.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Admin, Consumer, EachBatchPayload, Kafka, KafkaMessage, PartitionAssigner, Producer } from 'kafkajs';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { OutputRecord } from '../engine/api/record.js';
import type { StoreSpecLike } from '../engine/api/processor.js';
import type { StoreOf } from '../engine/api/stores.js';
import type { Topology } from '../engine/api/topology.js';
import { changelogTopic, POSITIONS_STORE } from '../engine/state/changelog.js';
import { untilDeadline } from '../util/deadline.js';
import { TaskState } from '../engine/state/task-state.js';
import { stateReader, type StateReader } from '../engine/state/reader.js';
import { murmur2Partitioner, partitionOf } from './partitioner.js';
import { RepartitionPurger } from './purger.js';
import { StreamTask } from '../engine/runtime/task.js';
import { KairosError } from '../errors.js';
import { kairosStickyAssigner, type TaskRouting } from './assignor.js';
import { publishingAssigner, RoutingFollower, routingTopic } from './routing.js';
import { StandbyFollower, standbyPartitions } from './standby.js';
import { KafkaChangelogWriter, restoreFromChangelog, type RestoreRepair } from './changelog.js';
import { dlqTopic } from './dlq.js';
import { ActiveTask, REROUTE_HEADERS, type Fetched, type TaskEnv } from './active-task.js';
import { RecordCollector, sendBounded } from './record-collector.js';
import type { DecodeResult, TopicSerde } from './serde.js';
import { isTopicName } from '../../schemas/contract.js';
import { runnerMetrics, type RunnerMetrics } from './runner-metrics.js';
import { checkCopartitioned, ensureTopics, INTERNAL_TOPIC_CONFIGS, messageLimit, partitionOffsets, type NeededTopic } from './topics.js';
import { GroupedCalls } from '../util/grouped-calls.js';
import type { FetchEventPayload } from './kafkajs-preload.js';
import { EndProbe, kafkajsEnds } from './end-probe.js';
import { FetchedWhileOpening, FetchLog } from './fetch-log.js';
import type { Buffered } from './partition-group.js';

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
  /** How long stop() may take before it closes the stores without the final commit (broker gone). @default 25000 */
  readonly stopTimeoutMs?: number;
  /**
   * Last resort of the event-time merge: how long a task waits for an input known to have unfetched records
   * before it processes the others anyway (logged and counted; order is then not guaranteed). The wait
   * normally ends with the input's next fetch. @default 60000
   */
  readonly maxTaskIdleMs?: number;
  /**
   * Live input: a record passes an input of its task that has nothing buffered only once a fetch begun at least
   * this long after the record came has answered for that input (fetch-log.ts; Kafka Streams'
   * max.task.idle.ms). 0: a fetch begun after the record came. @default 0
   */
  readonly inputSettleMs?: number;
  /**
   * A live record held back this long (at least inputSettleMs) only by the confirmation of empty inputs gets it
   * from a ListOffsets request rather than the next fetch, which comes with the next record or after
   * maxWaitTimeInMs (end-probe.ts); 0: off. Off by default: the fetch that comes with the next record also says
   * that the record's own producer request is appended whole, which a read after a fixed time does not.
   * @default 0
   */
  readonly inputEndProbeMs?: number;
  /** Partitions of output (and input) topics the runner creates when missing; default: the inputs' count. */
  readonly topicPartitions?: number;
  /** Replication factor of the topics the runner creates; -1: the broker's default. @default -1 */
  readonly replicationFactor?: number;
  /** retention.ms of the dead-letter topics the runner creates (records are stamped with their failure time). @default 30 days */
  readonly dlqRetentionMs?: number;
  /** Upper bound of one partition's record batch in a produce request; default: the smallest max.message.bytes of the topics written. */
  readonly maxRequestBytes?: number;
  /** How often a task deletes the repartition records it consumed and committed. @default 30000 */
  readonly purgeIntervalMs?: number;
  /**
   * A task commits (outputs, changelog, RocksDB, offsets) at most this often while batches keep coming, and on
   * the next punctuation otherwise (Kafka Streams' commit.interval.ms). @default 500
   */
  readonly commitIntervalMs?: number;
  /**
   * A caught-up task commits once its oldest external output not yet committed (a trigger, an audit record, a
   * dead letter) has waited this long, without waiting for the commit interval: outputs go out after their
   * commit (the outbox), so the interval alone would hold them back for up to a whole interval. Records for the
   * runner's own tasks (repartition, reroute) do not shorten the wait. Commits never queue up behind each other:
   * while one is writing, outputs gather for the next. @default 20
   */
  readonly outputLingerMs?: number;
  /**
   * How many partitions' batches the consumer hands over at once (kafkajs partitionsConsumedConcurrently):
   * tasks are independent, and while one waits (a commit's round trips, RocksDB reads) another processes.
   * A task's batches stay in order. @default 4
   */
  readonly partitionsConsumedConcurrently?: number;
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

/** Where each producer pattern of misplaced keys was first seen (logged once per topic and pattern). */
function partitionerPattern(key: string, partitions: number, actual: number): string {
  // librdkafka's default (consistent_random) and the Confluent clients hash with CRC32.
  return (crc32(Buffer.from(key, 'utf8')) >>> 0) % partitions === actual ? 'crc32 (librdkafka consistent_random: kcat, confluent-kafka clients)' : 'unknown partitioner';
}

export class KafkaRunner {
  readonly #o: KafkaRunnerOptions;
  readonly #groupId: string;
  readonly #log: Logger;
  readonly #metrics: RunnerMetrics | undefined;
  readonly #tasks = new Map<number, Promise<ActiveTask>>();
  /** Tasks being closed (or reset): a task opens again once its previous handle has let go of its state directory. */
  readonly #closing = new Map<number, Promise<void>>();
  /** The consumer's member id at its last join (a join under another one: the membership was lost). */
  #memberId: string | undefined;
  /**
   * When the coordinator last confirmed the membership: a join, or a heartbeat it answered (0: not yet) — the
   * time the heartbeat was sent (#heartbeatSentAt), so an answer read after a pause does not vouch for the pause.
   */
  #confirmedAt = 0;
  #heartbeatSentAt: number | undefined;
  /** When the consumer last sent a JoinGroup request. */
  #joinSentAt: number | undefined;
  /** Counts lost memberships: a task opened under an earlier one never commits (ActiveTask.epoch). */
  #epoch = 0;
  /** Per task, the latest open (#taskFor): an open superseded by a close meanwhile leaves its handle unopened. */
  readonly #openGen = new Map<number, number>();
  /** Every topic the consumer reads: external inputs, repartition topics, the reroute topic. */
  readonly #sources: string[];
  readonly #externalSources: string[];
  readonly #internalSources: string[];
  readonly #rerouteTopic: string;
  readonly #repartitionTopics: ReadonlySet<string>;
  readonly #commitIntervalMs: number;
  readonly #reroutePatterns = new Set<string>();
  #env: TaskEnv | undefined;
  #collector: RecordCollector | undefined;
  #admin: Admin | undefined;
  #purger: RepartitionPurger | undefined;
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
  /**
   * Offset commits of the tasks that commit together go out as one OffsetCommit request (the first waits a turn
   * of the event loop for the others, and those arriving while one is in flight form the next); a failure fails
   * every commit of its request.
   */
  readonly #offsetCommits = new GroupedCalls<readonly { topic: string; partition: number; offset: string }[], void>(async (group) => {
    const consumer = this.#consumer;
    if (!consumer || this.#left) throw new KairosError('KAIROS_ERR_KAFKA', 'no consumer in the group');
    await consumer.commitOffsets(group.flat());
    return group.map(() => ({ ok: true, value: undefined }));
  });

  constructor(options: KafkaRunnerOptions) {
    this.#o = options;
    this.#groupId = options.groupId ?? `kairos-${options.topology.applicationId}`;
    this.#log = options.logger.child({ component: 'kafka-runner', group: this.#groupId });
    this.#metrics = options.registry ? runnerMetrics(options.registry, () => this.#openStates()) : undefined;
    const topologySources = [...new Set([...options.topology.nodes.values()].flatMap((n) => (n.kind === 'source' ? n.topics : [])))].sort();
    if (topologySources.length === 0) throw new KairosError('KAIROS_ERR_TOPOLOGY', 'the topology reads no topic');
    this.#externalSources = topologySources.filter((t) => !options.topology.repartitionTopics.includes(t));
    this.#rerouteTopic = rerouteTopic(options.topology.applicationId);
    this.#internalSources = [...options.topology.repartitionTopics, this.#rerouteTopic];
    this.#repartitionTopics = new Set(options.topology.repartitionTopics);
    this.#sources = [...topologySources, this.#rerouteTopic];
    this.#commitIntervalMs = options.commitIntervalMs ?? 500;
    this.#fetches = new FetchLog(options.inputSettleMs ?? 0);
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

  /** Output topics of the topology (sinks that are not its own repartition topics). */
  get #sinks(): string[] {
    const internal = new Set(this.#o.topology.repartitionTopics);
    return [...new Set([...this.#o.topology.nodes.values()].flatMap((n) => (n.kind === 'sink' && !internal.has(n.topic) ? [n.topic] : [])))].sort();
  }

  /**
   * Inputs first (existing ones fix the partition count; missing ones are created co-partitioned with them),
   * then outputs and internal topics with Kafka Streams' settings, then the message size limit.
   */
  async #setupTopics(admin: Admin): Promise<void> {
    const app = this.#o.topology.applicationId;
    const existing = new Set(await admin.listTopics());
    const presentInputs = this.#externalSources.filter((t) => existing.has(t));
    let inputCounts = new Map<string, number>();
    if (presentInputs.length > 0) {
      const meta = await admin.fetchTopicMetadata({ topics: presentInputs });
      inputCounts = new Map(meta.topics.map((t) => [t.name, t.partitions.length]));
      checkCopartitioned(inputCounts, presentInputs);
    }
    const inputPartitions = inputCounts.values().next().value ?? this.#o.topicPartitions ?? -1;
    const missingInputs = this.#externalSources.filter((t) => !existing.has(t));
    if (missingInputs.length > 0) {
      this.#log.info({ topics: missingInputs, partitions: inputPartitions }, 'input topics missing; creating them co-partitioned with the others');
    }
    const rf = this.#o.replicationFactor ?? -1;
    const counts = await ensureTopics(admin, this.#externalSources.map((t) => ({ topic: t, numPartitions: inputPartitions, anyPartitions: inputPartitions < 0 })), this.#log, {
      replicationFactor: rf,
    });
    this.#partitions = checkCopartitioned(counts, this.#externalSources);
    const n = this.#partitions;
    const repartition = INTERNAL_TOPIC_CONFIGS.repartition;
    const needed: NeededTopic[] = [
      ...this.#sinks.map((t) => ({ topic: t, numPartitions: this.#o.topicPartitions ?? n, anyPartitions: true })),
      // Repartition topics get the inputs' partition count, so a re-keyed record lands in the task owning its key.
      ...this.#internalSources.map((t) => ({ topic: t, numPartitions: n, configs: repartition })),
      ...this.#storeNames.map((s) => ({ topic: changelogTopic(app, s), numPartitions: n, configs: INTERNAL_TOPIC_CONFIGS.changelog })),
      ...this.#externalSources.map((t) => ({
        topic: dlqTopic(t),
        numPartitions: n,
        configs: { 'cleanup.policy': 'delete', 'retention.ms': String(this.#o.dlqRetentionMs ?? 30 * 86_400_000) },
      })),
      { topic: routingTopic(app), numPartitions: 1, configs: INTERNAL_TOPIC_CONFIGS.changelog, anyPartitions: true },
    ];
    await ensureTopics(admin, needed, this.#log, { replicationFactor: rf });
    const limit = await messageLimit(admin, needed.map((t) => t.topic), this.#log);
    if (limit !== undefined) this.#collector?.setMessageLimit(limit);
    this.#log.info({ partitions: n, maxRequestBytes: this.#collector?.maxRequestBytes }, 'topics ready');
  }

  async start(): Promise<void> {
    const { kafka } = this.#o;
    this.#admin = kafka.admin();
    await this.#admin.connect();
    this.#collector = new RecordCollector({
      kafka,
      idempotent: this.#o.idempotent ?? true,
      logger: this.#log,
      ...(this.#o.maxRequestBytes === undefined ? {} : { maxRequestBytes: this.#o.maxRequestBytes }),
      onReplaced: (reason) => this.#metrics?.producerReplaced.inc({ reason }),
      stopping: () => this.#stopping,
      held: () => this.#unconfirmed(),
    });
    await this.#setupTopics(this.#admin);
    await this.#collector.connect();
    this.#purger = new RepartitionPurger(kafka);
    await this.#purger.connect();
    const asked = this.#o.inputEndProbeMs ?? 0;
    const probeMs = asked > 0 ? Math.max(asked, this.#fetches.settleMs) : 0;
    const reader = probeMs > 0 ? kafkajsEnds(kafka, this.#log) : undefined;
    if (reader !== undefined) {
      const probe = new EndProbe<ActiveTask>({
        readEnds: reader.readEnds,
        count: () => this.#fetches.count,
        settled: () => this.#fetches.settled(),
        delayMs: probeMs,
        onConfirmed: (h) => this.#drainSoon(h),
        logger: this.#log,
        onResult: (result, n) => this.#metrics?.endProbes.inc({ result }, n),
      });
      this.#endProbe = { probe, close: reader.close };
    }
    const app = this.#o.topology.applicationId;
    const repartition = new Set(this.#o.topology.repartitionTopics);
    this.#env = {
      groupId: this.#groupId,
      logger: this.#log,
      metrics: this.#metrics,
      collector: this.#collector,
      purger: () => this.#purger,
      consumer: () => this.#consumer,
      commitOffsets: (offsets) => this.#offsetCommits.call(offsets),
      left: () => this.#left,
      membershipEpoch: () => this.#membershipEpoch(),
      sources: this.#sources,
      external: this.#externalSources,
      internal: this.#internalSources,
      rerouteTopic: this.#rerouteTopic,
      keepsEventTime: new Set([...repartition, this.#rerouteTopic]),
      encode: (topic, value) => this.#encode(topic, value),
      clock: this.#o.clock ?? Date.now,
      commitIntervalMs: this.#commitIntervalMs,
      outputLingerMs: this.#o.outputLingerMs ?? 20,
      onHeld: (task) => this.#endProbe?.probe.want(task),
      onCommitLanded: (task) => {
        // What became due while the commit was writing (outputs that lingered, the interval) commits now
        // rather than with the next batch or punctuation.
        void this.#commitTogether(task, false).catch((err: unknown) => this.#log.warn({ err, partition: task.partition }, 'commit failed; retried with the next one'));
      },
      commitWhileDraining: (task) => this.#commitOrReset(task, false, false),
      maxTaskIdleMs: this.#o.maxTaskIdleMs ?? 60_000,
      purgeIntervalMs: this.#o.purgeIntervalMs ?? 30_000,
      onOutput: this.#o.onOutput,
      noteRerouted: (topic, key, from, to) => {
        const pattern = partitionerPattern(key, this.#partitions, from);
        const id = `${topic}\u0000${pattern}`;
        if (this.#reroutePatterns.has(id)) return;
        this.#reroutePatterns.add(id);
        this.#log.warn(
          { topic, pattern, example: { partition: from, keyPartition: to } },
          'records on a partition their key does not hash to (murmur2, the Java and kafkajs default): routed to the key\'s task; configure the producer with the murmur2 partitioner (librdkafka: partitioner=murmur2_random)',
        );
      },
    };
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
          () => this.#collector?.current,
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
      // Complete, under the task's lock: closing a task that moves waits for it (its changelog, outputs and
      // offsets are out before it closes). As every commit, an exactly-once commit that failed rebuilds the task
      // from its last local commit (its outputs were taken from it; without the reset a kept task would go on
      // past them).
      for (const hp of this.#tasks.values()) {
        void hp.then((h) => h.exclusive(() => this.#commitOrReset(h, true, true))).catch((err: unknown) => this.#log.warn({ err }, 'commit at rebalance failed'));
      }
    });
    // Records of a task's input in a fetch response that kafkajs has not handed on yet (it hands a response's
    // batches on one by one, several at a time): that input is behind until its batch is buffered, so a task
    // draining another input's batch of the same response — a repartition record, or a newer record of another
    // input — waits for them instead of moving stream time past them. The FETCH event carries the response's
    // batches (kafkajs-preload.ts, fetchWithBatches) and comes before any of them is handed on; a batch that is
    // handed on whole sets the input's lag again (#eachBatch).
    //
    // Fetch responses are numbered as they come (#fetches); each batch's records carry their response's number
    // (their arrival), and every input a response answers for is confirmed up to the responses its fetch vouches
    // for (those that came before it began; with inputSettleMs, at least that long before): an input at its end
    // holds a record back until such a fetch has answered for it (partition-group.ts), so the other half of a
    // producer request that reached this response half-written, or whose partitions other brokers lead, comes
    // first. A task left waiting only for that is drained here: no batch of this response may be its own.
    consumer.on(consumer.events.FETCH_START, (e) => {
      this.#fetchStarts.set(e.payload.nodeId, this.#fetches.settled());
    });
    consumer.on(consumer.events.FETCH, (e) => {
      const { batches, nodeId } = e.payload as FetchEventPayload;
      if (batches === undefined) return;
      const arrival = this.#fetches.arrived();
      const began = this.#fetchStarts.get(nodeId);
      let answered: Set<ActiveTask> | undefined;
      let fed: Set<ActiveTask> | undefined;
      for (const b of batches) {
        const h = this.#taskNow(b.partition);
        if (!b.isEmpty()) {
          this.#arrivals.set(b, arrival);
          if (h === undefined) {
            // Its task is still opening (or not this instance's): the input counts as behind once it opens.
            this.#fetchedWhileOpening.add(b.partition, b.topic, BigInt(b.lastOffset()) + 1n);
            continue;
          }
          if (h.closed) continue;
          h.group.setBehind(b.topic, true);
          (fed ??= new Set()).add(h);
        } else if (h === undefined || h.closed) continue;
        if (began !== undefined) h.group.confirm(b.topic, began);
        (answered ??= new Set()).add(h);
      }
      if (answered !== undefined) for (const h of answered) if (fed?.has(h) !== true && h.group.size > 0) this.#drainSoon(h);
    });
    // Batches kafkajs does not hand to eachBatch (only transaction markers or aborted records) still say how
    // far an input goes: without them a task could wait for records that never come. Only such a batch, and
    // only when it starts where the task has fetched to: one fetched before a seek back (a restore, a reset)
    // says nothing about the records the task still has to read. A batch that starts exactly there also moves
    // the task's position past it once the records before are processed (ActiveTask.skipUnhanded), so the
    // committed offset reaches the end of an input written in transactions.
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      const { topic, partition, highWatermark, batchSize, firstOffset, lastOffset } = e.payload;
      const hp = this.#tasks.get(partition);
      if (!hp || !this.#opened.has(partition) || batchSize > 0) return;
      void hp
        .then((h) => {
          const to = h.fetchedTo.get(topic);
          if (to !== undefined && firstOffset !== null && BigInt(firstOffset) > to) return;
          h.group.setBehind(topic, h.knownEnd(topic, BigInt(highWatermark)) - BigInt(lastOffset) - 1n > 0n);
          if (firstOffset === null || (to !== undefined && BigInt(firstOffset) !== to) || !this.#sources.includes(topic)) return;
          const end = BigInt(lastOffset) + 1n;
          return h.exclusive(async () => {
            // Read again under the lock: a batch buffered meanwhile moved it, and this range is then behind it.
            const now = h.fetchedTo.get(topic);
            if (now !== to) return;
            h.fetchedTo.set(topic, end);
            h.skipUnhanded(topic, BigInt(firstOffset), end, to === undefined);
          });
        })
        .catch(() => undefined);
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.#metrics?.rebalances.inc();
      if (rebalancingSince !== undefined) this.#metrics?.rebalancePause.observe((Date.now() - rebalancingSince) / 1000);
      rebalancingSince = undefined;
      const assigned = new Set<number>();
      for (const parts of Object.values(e.payload.memberAssignment)) for (const p of parts) assigned.add(p);
      this.#log.info({ partitions: [...assigned].sort((a, b) => a - b) }, 'assignment');
      // A join under a new member id means the membership was lost (an expired session: kafkajs rejoins as a new
      // member; a consumer replaced after a crash): another instance may have owned any task meanwhile and moved
      // its changelog and offsets on. Every open task is closed without a commit (what it holds uncommitted may be
      // stale) and opened again below, restored from its changelog, as Kafka Streams closes lost tasks dirty.
      // Also a join asked for after a silence longer than the session: the coordinator has let the member go, even
      // if it hands out the same id again (librdkafka's mock cluster reuses ids).
      const silent = this.#confirmedAt > 0 && this.#joinSentAt !== undefined && this.#joinSentAt - this.#confirmedAt > (this.#o.sessionTimeout ?? 30_000);
      const lost = (this.#memberId !== undefined && e.payload.memberId !== this.#memberId) || silent;
      this.#memberId = e.payload.memberId;
      this.#confirmedAt = Date.now();
      if (lost) {
        this.#epoch++;
        this.#metrics?.membershipLost.inc();
        this.#log.warn({ tasks: [...this.#tasks.keys()].sort((a, b) => a - b) }, 'rejoined the group as a new member (the membership was lost); closing every open task without a commit to restore it');
        for (const p of [...this.#tasks.keys()]) void this.#closeTask(p, undefined, true);
      } else for (const p of this.#tasks.keys()) if (!assigned.has(p)) void this.#closeTask(p);
      // A task kept open here fetches again from the group's committed offsets (kafkajs starts every assigned
      // partition there after a join): what it processed since its last commit is skipped by position
      // (kairos_task_records_skipped_total). Seeking kept tasks to where they fetched to was tried and taken
      // out: on the broker it went with late records in kept tasks (README, Weak).
      this.#assigned = assigned;
      // Open (and restore) every assigned task now, not on its first batch, so readiness means restored.
      for (const p of assigned) this.#taskFor(p).catch((err: unknown) => this.#log.error({ err, partition: p }, 'opening task failed'));
      this.#metrics?.tasks.set(assigned.size);
      this.#updateStandby();
    });
    consumer.on(consumer.events.REQUEST, (e) => {
      if (e.payload.apiName === 'Heartbeat') this.#heartbeatSentAt = e.payload.sentAt;
      else if (e.payload.apiName === 'JoinGroup') this.#joinSentAt = e.payload.sentAt;
    });
    consumer.on(consumer.events.HEARTBEAT, () => {
      this.#confirmedAt = this.#heartbeatSentAt ?? Date.now();
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
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: Math.max(1, this.#o.partitionsConsumedConcurrently ?? 4),
      eachBatch: (b) => this.#eachBatch(b),
    });
  }

  /**
   * One commit for the instance: when `due` (a task whose commit interval has passed, or undefined for
   * every task) needs a commit, every open task with work commits with it, concurrently, so their produce
   * requests and offset commits are shared (the record collector groups them): a handful of round trips per
   * instance instead of per task. Each task commits under its own lock (never while holding another), in its
   * own order (outputs → state → outbox → offsets). The failure of `due`'s commit is thrown; the others' are
   * logged (their work stays pending for the next commit).
   */
  async #commitTogether(due: ActiveTask | undefined, force: boolean): Promise<void> {
    if (due !== undefined && !due.commitDue(force)) return;
    const tasks: ActiveTask[] = [];
    for (const [p, hp] of this.#tasks) {
      if (!this.#opened.has(p) || !this.#assigned.has(p)) continue;
      const h = await hp.catch(() => undefined);
      // Tasks with work join the commit; a task whose only work is deleting its last outbox entries once it is due.
      // Not a task whose last commit is still writing: joining would hold its processing until that one landed.
      if (h && !h.closed && h !== due && !h.committing && (h.hasWork || h.commitDue(false))) tasks.push(h);
    }
    if (due === undefined) {
      // Punctuation: only the tasks whose interval has passed decide; the rest join them.
      const lead = tasks.find((h) => h.commitDue(force));
      if (lead === undefined) return;
    }
    const others = tasks.map((h) =>
      h.exclusive(() => this.#commitOrReset(h, true)).catch((err: unknown) => this.#log.warn({ err, partition: h.partition }, 'commit failed; retried with the next one')),
    );
    try {
      if (due !== undefined) await due.exclusive(() => this.#commitOrReset(due, true));
    } finally {
      await Promise.all(others);
    }
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
    const now = this.readerNow(partition);
    if (now !== undefined) return now;
    if (this.#opened.has(partition) && this.#assigned.has(partition)) {
      const h = await this.#tasks.get(partition)?.catch(() => undefined);
      if (h && !h.closed) return this.#activeReader(h);
    }
    return this.#standbyReader(partition);
  }

  /**
   * What `reader` answers, when that is known without waiting: undefined also while an assigned task's handle is
   * still being opened (then `reader` waits for it). The query API answers a cached view with it in the request's
   * own turn.
   */
  readerNow(partition: number): StateReader | undefined {
    if (this.#opened.has(partition) && this.#assigned.has(partition)) {
      const hp = this.#tasks.get(partition);
      if (hp !== undefined) {
        const h = this.#settledTasks.get(hp);
        // Not settled yet (a rejected handle is no task: the standby copy answers, as in `reader`).
        if (h === undefined) return undefined;
        if (h !== null && !h.closed) return this.#activeReader(h);
      }
    }
    return this.#standbyReader(partition);
  }

  /**
   * The open task of a partition when its handle has settled, without waiting (undefined while it opens, and for a
   * partition this instance does not run).
   */
  #taskNow(partition: number): ActiveTask | undefined {
    if (!this.#opened.has(partition)) return undefined;
    const hp = this.#tasks.get(partition);
    if (hp === undefined) return undefined;
    return this.#settledTasks.get(hp) ?? undefined;
  }

  /** The handles #tasks holds, once settled (null: rejected), for `readerNow` and `#taskNow` (set in #taskFor). */
  readonly #settledTasks = new WeakMap<Promise<ActiveTask>, ActiveTask | null>();
  /**
   * Fetch responses so far (their numbers, see the FETCH listener), and for each node's fetch in flight the
   * responses it vouches for (all that came before it began, or at least inputSettleMs before).
   */
  readonly #fetches: FetchLog;
  /**
   * Reads the ends of empty inputs that hold live records back (end-probe.ts), with the close of its reader;
   * undefined: off (`inputEndProbeMs`), or kafkajs differs.
   */
  #endProbe: { readonly probe: EndProbe<ActiveTask>; readonly close: () => Promise<void> } | undefined;
  /** Inputs with records fetched for a task still opening (fetch-log.ts). */
  readonly #fetchedWhileOpening = new FetchedWhileOpening();
  readonly #fetchStarts = new Map<number, number>();
  /** The number of the response each fetched batch came in, for its records (`Buffered.arrival`). */
  readonly #arrivals = new WeakMap<object, number>();

  /** Processes what a task can now (a fetch confirmed an input it waited for), then commits if one is due. */
  #drainSoon(h: ActiveTask): void {
    if (this.#unconfirmed()) return; // the next batch asks the coordinator first (#eachBatch)
    void h
      .exclusive(async () => {
        if (!h.closed) await h.drain();
      })
      .then(() => this.#commitTogether(h, false))
      .catch((err: unknown) => this.#log.error({ err, partition: h.partition }, 'processing after a fetch failed'));
  }
  /**
   * The last reader made per task state (active or standby copy), given again while the state's stream time (and
   * a standby copy's lag) are the ones it states: a reader is immutable and reads through to the state, so it is
   * the one a new call would make, and a query pays no reader object and closures. Weak: a closed task's state
   * is not kept for it.
   */
  readonly #readers = new WeakMap<TaskState, StateReader>();

  #activeReader(h: ActiveTask): StateReader {
    const state = h.task.state;
    const last = this.#readers.get(state);
    if (last !== undefined && last.streamTime === state.streamTime) return last;
    const task = h.task;
    const reader = stateReader(state, { source: 'active', partition: h.partition, timers: (key) => task.timerInfosFor(key) });
    this.#readers.set(state, reader);
    return reader;
  }

  #standbyReader(partition: number): StateReader | undefined {
    const copy = this.#standby?.copy(partition);
    if (!copy) return undefined;
    const last = this.#readers.get(copy.state);
    if (last !== undefined && last.streamTime === copy.state.streamTime && last.lagRecords === copy.lagRecords) return last;
    const reader = stateReader(copy.state, { source: 'standby', partition, ...(copy.lagRecords === undefined ? {} : { lagRecords: copy.lagRecords }) });
    this.#readers.set(copy.state, reader);
    return reader;
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

  /**
   * Commits every task while still in the group (offsets included), leaves, closes the stores. Bounded by
   * `stopTimeoutMs`: with the broker gone, a commit or a leave would retry for minutes, so past the deadline the
   * stores are closed without it (the next owner restores the last complete commit; nothing is lost).
   */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#endProbe?.probe.stop();
    const deadline = Date.now() + (this.#o.stopTimeoutMs ?? 25_000);
    const log = this.#log;
    // Every task's final commit at once (their requests are shared).
    await Promise.all(
      [...this.#tasks].map(async ([p, hp]) => {
        const h = await hp.catch(() => undefined);
        // Not with a membership that may be lost (#current): the next owner reads it again.
        if (h && this.#current(h)) await untilDeadline(h.exclusive(() => h.maybeCommit(true)), deadline, `final commit of task ${p}`, log);
      }),
    );
    if (this.#consumer) await untilDeadline(this.#consumer.disconnect(), deadline, 'leaving the consumer group', log);
    this.#left = true;
    if (this.#standby) await untilDeadline(this.#standby.stop(), deadline, 'stopping the standby follower', log);
    if (this.#routingFollower) await untilDeadline(this.#routingFollower.stop(), deadline, 'stopping the routing follower', log);
    for (const p of [...this.#tasks.keys()]) await this.#closeTask(p, deadline);
    if (this.#collector) await untilDeadline(this.#collector.disconnect(), deadline, 'disconnecting the producer', log);
    if (this.#purger) await untilDeadline(this.#purger.disconnect(), deadline, 'disconnecting the purger\'s admin client', log);
    if (this.#endProbe) await untilDeadline(this.#endProbe.close(), deadline, 'disconnecting the end-offset reader', log);
    if (this.#admin) await untilDeadline(this.#admin.disconnect(), deadline, 'disconnecting the admin client', log);
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

  #taskFor(partition: number): Promise<ActiveTask> {
    const known = this.#tasks.get(partition);
    if (known) return known;
    const h = this.#openTask(partition, this.#supersede(partition));
    this.#tasks.set(partition, h);
    // Settled handles are known synchronously (#taskNow, readerNow); a rejected one leaves #tasks (unless
    // another open of the task took its place meanwhile).
    h.then(
      (t) => this.#settledTasks.set(h, t),
      () => {
        this.#settledTasks.set(h, null);
        if (this.#tasks.get(partition) === h) this.#tasks.delete(partition);
      },
    );
    return h;
  }

  /** A new generation of the task's open: an open still running under the previous one will not count as opened. */
  #supersede(partition: number): number {
    const gen = (this.#openGen.get(partition) ?? 0) + 1;
    this.#openGen.set(partition, gen);
    return gen;
  }

  async #openTask(partition: number, gen: number): Promise<ActiveTask> {
    const epoch = this.#epoch;
    // The previous handle of this task (closed for a rebalance, a lost membership or a reset) lets go first.
    await this.#closing.get(partition);
    // A warm standby copy of this task becomes the starting point; the follower lets go of the directory.
    await this.#standby?.release(partition);
    // Exactly-once: the task's producer fences a previous owner first, so nothing it commits lands after the restore.
    const txProducer = this.#o.processingGuarantee === 'exactly_once' ? await this.#fencingProducer(partition) : undefined;
    try {
      return await this.#openFenced(partition, gen, epoch, txProducer);
    } catch (err) {
      await txProducer?.disconnect().catch(() => undefined);
      throw err;
    }
  }

  /**
   * The transactional producer of a task (one per input partition: its id fences a previous owner of the same
   * task), its transactional id initialised now. kafkajs initialises that id only at the first `transaction()`,
   * which came after the restore, and never for a task with nothing to process: an owner paused past its session
   * (a zombie) that woke up could still commit a transaction it had open, after the new owner had restored
   * without it, and its outputs were sent twice (`kafka-vs-replay --mode pause --guarantee exactly_once`: 4
   * triggers repeated). Initialising the id bumps the producer epoch, so the zombie's EndTxn is refused and the
   * coordinator aborts its open transaction, as Kafka Streams' `initTransactions()` at task creation does. An
   * empty transaction begun and aborted sends only the InitProducerId (kafkajs sends no EndTxn without partitions).
   */
  async #fencingProducer(partition: number): Promise<Producer> {
    const producer = this.#o.kafka.producer({ createPartitioner: murmur2Partitioner, transactionalId: `${this.#groupId}-task-${partition}`, idempotent: true, maxInFlightRequests: 1 });
    try {
      await producer.connect();
      const txn = await producer.transaction();
      await txn.abort();
      return producer;
    } catch (err) {
      await producer.disconnect().catch(() => undefined);
      throw err;
    }
  }

  async #openFenced(partition: number, gen: number, epoch: number, txProducer: Producer | undefined): Promise<ActiveTask> {
    const app = this.#o.topology.applicationId;
    const env = this.#env as TaskEnv;
    const taskId = `task-${partition}`;
    const dir = join(this.#o.stateDir, this.#groupId, taskId);
    // Restore first, on the bare state, so the task starts with complete stores and timers.
    const bare = await TaskState.open({ dir, taskId, stores: StreamTask.storeSpecs(this.#o.topology) });
    let ends: Map<string, { readonly high: bigint; readonly behind: boolean }>;
    let confirmedAt: number;
    let restoredPositions: ReadonlyMap<string, string>;
    let committedEnds: ReadonlyMap<string, string>;
    const repair: RestoreRepair = new Map();
    try {
      const n = await restoreFromChangelog({
        repair,
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
      // Records of the responses that came before the end offsets were asked for (at least inputSettleMs
      // before) need no later fetch.
      confirmedAt = this.#fetches.settled();
      ends = await this.#initialEnds(partition, bare);
      const positionsOf = (topics: readonly string[]): Map<string, string> =>
        new Map(
          topics.flatMap((t) => {
            const next = bare.position(t, partition);
            return next === undefined ? [] : [[t, next] as const];
          }),
        );
      restoredPositions = positionsOf(this.#sources);
      // Where the store changelogs stood after the last complete commit: the writer's first marker names them.
      committedEnds = positionsOf(this.#storeNames.filter((s) => s !== POSITIONS_STORE).map((s) => changelogTopic(app, s)));
    } finally {
      await bare.close();
    }
    const handle = new ActiveTask(env, partition, txProducer, epoch);
    for (const [topic, { high, behind }] of ends) {
      handle.knownEnd(topic, high);
      handle.group.setBehind(topic, behind);
      handle.group.confirm(topic, confirmedAt);
      if (!behind && !restoredPositions.has(topic)) handle.emptyAtOpen.set(topic, high);
    }
    for (const [topic, offset] of restoredPositions) handle.fetchedTo.set(topic, BigInt(offset));
    const collector = this.#collector as RecordCollector;
    handle.task = await StreamTask.create({
      topology: this.#o.topology,
      taskId,
      partition,
      stateDir: dir,
      logger: this.#log,
      clock: this.#o.clock ?? Date.now,
      // Exactly-once: changelog records go into the task's open transaction.
      changelog: new KafkaChangelogWriter(
        (tm) => (handle.txn ? sendBounded(handle.txn, tm, collector.maxRequestBytes) : collector.send(tm)),
        app,
        partition,
        committedEnds,
      ),
      collector: { send: (topic, record) => handle.collect(topic, record) },
      idleAdvanceMs: this.#o.idleAdvanceMs ?? 5000,
    });
    if (repair.size > 0) {
      // Supersede what a commit cut short left in the changelog, with the next commit.
      const n = await handle.task.state.rewrite(repair, repair.has(POSITIONS_STORE));
      handle.pending = true;
      this.#log.info({ partition, keys: n }, 'changelog keys of an incomplete commit rewritten with the next commit');
    }
    const unsent = await handle.recoverOutbox();
    if (unsent > 0) this.#log.info({ partition, outputs: unsent }, 'outputs of the last complete commit taken from its outbox; sent again with the first commit');
    // Fetch from the task's own positions, not from the group's committed offsets: a previous owner's last
    // offset commit can land after its last changelog write was restored here, and records between the two
    // would be skipped. A batch fetched before this seek is stale and dropped (eachBatch checks isStale()).
    if (this.#openGen.get(partition) !== gen) {
      // Closed (a rebalance, a lost membership) while it opened: #closeHandle closes this handle; a newer open
      // seeks and counts as opened.
      this.#log.info({ partition }, 'task closed while it opened');
      return handle;
    }
    for (const [topic, offset] of restoredPositions) this.#consumer?.seek({ topic, partition, offset });
    // Records fetched while the task opened, not yet buffered: their inputs wait for them (fetch-log.ts). In the
    // same turn as #opened.add, so no FETCH event falls between the two.
    for (const topic of this.#fetchedWhileOpening.take(partition, restoredPositions)) handle.group.setBehind(topic, true);
    this.#opened.add(partition);
    this.#log.info({ partition, dir, lagging: [...ends].filter(([, e]) => e.behind).map(([t]) => t) }, 'task opened');
    return handle;
  }

  /**
   * Each waited-for input's end offset (from the broker) and whether it has records beyond the task's position,
   * so the first batches wait for each other instead of racing ahead by batch order — also right after a
   * restore or a rebalance, when one input's first fetch comes late. The end stays known to the task: a batch
   * fetched before it opened carries an older high watermark (ActiveTask.knownEnd).
   */
  async #initialEnds(partition: number, state: TaskState): Promise<Map<string, { readonly high: bigint; readonly behind: boolean }>> {
    const ends = new Map<string, { readonly high: bigint; readonly behind: boolean }>();
    for (const topic of [...this.#externalSources, this.#rerouteTopic]) {
      const o = await partitionOffsets(this.#admin as Admin, topic, partition, this.#log);
      const high = BigInt(o.high);
      ends.set(topic, { high, behind: high > BigInt(state.position(topic, partition) ?? o.low) });
    }
    return ends;
  }

  /**
   * Fetched records are decoded into the task's partition group; the task then processes, across its inputs,
   * always the buffered record with the smallest event time (partition-group.ts has the rule).
   */
  async #eachBatch({ batch, heartbeat, isRunning, isStale, resolveOffset }: EachBatchPayload): Promise<void> {
    if (batch.isEmpty()) return;
    // After a pause longer than the session (a batch fetched before it, handed on after): ask the coordinator
    // before processing. A lost membership throws here, and kafkajs rejoins (as a new member: every task is then
    // closed without a commit and restored); a confirmed one goes on.
    if (this.#unconfirmed()) await heartbeat();
    let h: ActiveTask | undefined;
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
    const task = h;
    await task.exclusive(async () => {
      const { topic, partition } = batch;
      const items: Buffered<Fetched>[] = [];
      const arrival = this.#arrivals.get(batch) ?? 0;
      const external = this.#externalSources.includes(topic);
      // Whether to go on (kafkajs' isStale serialises the topic and partition to JSON on every call): it can only
      // change while this loop awaits, so it is asked again after an asynchronous decode, not per record.
      let live = isRunning() && !isStale();
      for (const m of batch.messages) {
        if (!live) break;
        let fetched = this.#fetchedNow(topic, partition, m, external);
        if (fetched === undefined) {
          fetched = await this.#fetched(topic, partition, m, external, isRunning);
          live = isRunning() && !isStale();
        }
        const d = fetched.decoded;
        const timestamp = d.ok && d.timestamp !== undefined ? d.timestamp : Number(m.timestamp);
        items.push({ record: fetched, timestamp, arrival });
      }
      task.add(topic, items);
      const last = items.at(-1);
      if (last) {
        // Resolved once buffered (the last one stands for all before it: kafkajs parses each offset it is
        // given): the consumer fetches on; what is committed follows the task's own positions.
        resolveOffset(last.record.message.offset);
        task.fetchedTo.set(topic, BigInt(last.record.message.offset) + 1n);
        // Markers or aborted records after the last record (a real broker returns them in the same batch).
        const after = BigInt(last.record.message.offset) + 1n;
        const end = BigInt(batch.lastOffset()) + 1n;
        if (items.length === batch.messages.length && end > after) {
          task.fetchedTo.set(topic, end);
          task.skipUnhanded(topic, after, end, false);
        }
      }
      // Only a batch taken whole says how far the input goes: one cut short (a stale batch from before a seek,
      // or a stop) leaves records behind it, and marking the input caught up would let later records of other
      // inputs run ahead of them (stream time jumps, and their events are dropped as too late).
      // Its high watermark is the end when the broker read it, which may be older than the end the task read
      // when it opened (a response that came while it opened): the larger one counts.
      if (items.length === batch.messages.length) {
        const lag = task.knownEnd(topic, BigInt(batch.highWatermark)) - BigInt(batch.lastOffset()) - 1n;
        task.group.setBehind(topic, lag > 0n);
        if (external) this.#metrics?.lag.set({ topic, partition: String(partition) }, Math.max(0, Number(lag)));
      }
      await heartbeat();
      await task.drain();
    });
    // Commits are batched over commitIntervalMs: one changelog write, RocksDB batch and offset commit for
    // many small fetches (the punctuation commits what is left when no further batch comes), and made for
    // every task of the instance at once (#commitTogether). Outside the task's lock: the commit takes each
    // task's lock in turn.
    await this.#commitTogether(task, false);
    await heartbeat();
  }

  /** A fetched record decoded, with its origin and, when its key belongs to another task, where it goes. */
  async #fetched(topic: string, partition: number, m: KafkaMessage, external: boolean, isRunning: () => boolean): Promise<Fetched> {
    if (topic === this.#rerouteTopic) {
      const h = m.headers ?? {};
      const original = h[REROUTE_HEADERS.topic]?.toString() ?? '';
      const decoded = isTopicName(original)
        ? await this.#decode(original, m.key, m.value, isRunning)
        : ({ ok: false, reason: 'invalid', errors: [{ path: '/headers', message: `re-routed record without a known ${REROUTE_HEADERS.topic} header` }], retriable: false } as const);
      return {
        message: m,
        decoded,
        topic: isTopicName(original) ? original : topic,
        partition: Number(h[REROUTE_HEADERS.partition]?.toString() ?? partition),
        offset: h[REROUTE_HEADERS.offset]?.toString() ?? m.offset,
      };
    }
    return this.#withOwner(topic, partition, m, external, await this.#decode(topic, m.key, m.value, isRunning));
  }

  /** `#fetched` without a promise, where the record decodes synchronously (JSON, internal records); else undefined. */
  #fetchedNow(topic: string, partition: number, m: KafkaMessage, external: boolean): Fetched | undefined {
    if (topic === this.#rerouteTopic) return undefined;
    const decoded = this.#decodeNow(topic, m.key, m.value);
    return decoded === undefined ? undefined : this.#withOwner(topic, partition, m, external, decoded);
  }

  /** A decoded record of `topic`; when its key belongs to another partition, marked for re-routing there. */
  #withOwner(topic: string, partition: number, m: KafkaMessage, external: boolean, decoded: DecodeResult): Fetched {
    if (external && decoded.ok && decoded.key !== null) {
      const owner = partitionOf(decoded.key, this.#partitions);
      if (owner !== partition) return { message: m, decoded, topic, partition, offset: m.offset, rerouteTo: owner };
    }
    return { message: m, decoded, topic, partition, offset: m.offset };
  }

  /**
   * Commits when due; an exactly-once commit that failed rebuilds the task from its last local commit. An
   * at-least-once commit returns once it has taken its changes (unless `wait`): its writes (changelog, RocksDB,
   * outputs, offsets) run while the task processes the next batches, and the task's next commit waits for them.
   */
  async #commitOrReset(task: ActiveTask, force: boolean, wait = false): Promise<void> {
    // The membership may be lost: the changes wait (a join under a new member id drops them, a heartbeat lets them go).
    if (!this.#current(task)) return;
    try {
      await task.maybeCommit(force, wait);
    } catch (err) {
      if (task.txProducer) await this.#resetTask(task);
      throw err;
    }
  }

  /** Decodes a record; a registry outage is retried with backoff (never dead-lettered), other failures returned. */
  async #decode(topic: string, key: Buffer | null, value: Buffer | null, isRunning: () => boolean): Promise<DecodeResult> {
    const now = this.#decodeNow(topic, key, value);
    if (now !== undefined) return now;
    // #decodeNow answered for a topic without a schema: this only narrows the type.
    if (!isTopicName(topic)) return noSchema(topic);
    for (let attempt = 0; ; attempt++) {
      const d = await this.#o.serde.decode(topic, key, value);
      if (d.ok || !d.retriable || !isRunning()) return d;
      const wait = Math.min(100 * 2 ** attempt, 10_000);
      this.#log.warn({ topic, reason: d.reason, errors: d.errors, retryInMs: wait }, 'decode failed transiently; retrying');
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /**
   * A record's decoding when it needs no I/O: internal records, a topic without a schema, a serde with
   * `decodeSync` (unless it failed transiently); else undefined.
   */
  #decodeNow(topic: string, key: Buffer | null, value: Buffer | null): DecodeResult | undefined {
    if (this.#repartitionTopics.has(topic)) return decodeInternal(key, value);
    if (!isTopicName(topic)) return noSchema(topic);
    const serde = this.#o.serde;
    if (serde.decodeSync === undefined) return undefined;
    const d = serde.decodeSync(topic, key, value);
    return !d.ok && d.retriable ? undefined : d;
  }

  #encode(topic: string, value: unknown): Promise<Buffer> {
    if (!isTopicName(topic)) return Promise.resolve(Buffer.from(JSON.stringify(value), 'utf8'));
    return this.#o.serde.encode(topic, value);
  }

  /**
   * The task of a partition, waiting for it to open (a restore can take a while) without blocking the group:
   * heartbeats go on, and a pending rebalance (heartbeat throws) or stop ends the wait with undefined.
   */
  async #openWhileHeartbeating(partition: number, heartbeat: () => Promise<void>, isRunning: () => boolean): Promise<ActiveTask | undefined> {
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
    if (this.#unconfirmed()) return; // no timers fire, no commit, until the membership is confirmed again
    for (const [p, hp] of this.#tasks) {
      if (!this.#assigned.has(p)) continue;
      try {
        const h = await hp;
        await h.exclusive(async () => {
          await h.punctuate();
          this.#metrics?.timersPending.set({ partition: String(p) }, h.task.pendingTimers);
        });
      } catch (err) {
        this.#log.error({ err, partition: p }, 'punctuation failed');
      }
    }
    try {
      await this.#commitTogether(undefined, false);
    } catch (err) {
      this.#log.error({ err }, 'commit at punctuation failed');
    }
  }

  /** Drops a task's uncommitted in-memory state and makes the consumer re-read from its last local commit. */
  async #resetTask(h: ActiveTask): Promise<void> {
    const committed = new Map(h.task.state.positions());
    // Only while this handle is still the task's (a rebalance or a lost membership may have replaced it already).
    const hp = this.#tasks.get(h.partition);
    const current = hp !== undefined && this.#settledTasks.get(hp) === h;
    if (current) {
      this.#tasks.delete(h.partition);
      this.#opened.delete(h.partition);
      this.#supersede(h.partition);
    }
    await this.#whileClosing(h.partition, this.#release(h));
    if (!current) return;
    for (const topic of this.#sources) {
      const next = committed.get(`${topic}\u0000${h.partition}`);
      if (next !== undefined) this.#consumer?.seek({ topic, partition: h.partition, offset: next });
    }
  }

  /**
   * Whether the membership may be lost without the consumer knowing yet: nothing confirmed it for a session
   * timeout (the process stood still — a long pause, a frozen VM — or the coordinator was out of reach). Until a
   * heartbeat or a join confirms it again, nothing is processed or committed: another instance may run the tasks
   * now, and a stale task's changelog records and outputs would land after that owner's.
   */
  #unconfirmed(): boolean {
    return this.#confirmedAt > 0 && Date.now() - this.#confirmedAt > (this.#o.sessionTimeout ?? 30_000);
  }

  /** The membership epoch now; undefined while it may be lost unnoticed (TaskEnv.membershipEpoch). */
  #membershipEpoch(): number | undefined {
    return this.#unconfirmed() ? undefined : this.#epoch;
  }

  /** Whether a task may commit: it was opened under the membership the consumer holds now, and that one is confirmed. */
  #current(h: ActiveTask): boolean {
    return h.epoch === this.#membershipEpoch();
  }

  /** Registers a task's closing until it is done, for #openTask (`closing` never rejects). */
  #whileClosing(partition: number, closing: Promise<void>): Promise<void> {
    this.#closing.set(partition, closing);
    void closing.then(() => {
      if (this.#closing.get(partition) === closing) this.#closing.delete(partition);
    });
    return closing;
  }

  /**
   * Commits and closes a task; with a `deadline` (stop), closes its stores without the commit once it passes.
   * `dirty` (a lost membership): closes without a commit, once the commit still writing has landed or failed;
   * what the task held uncommitted is dropped and read again by whoever owns the task now.
   */
  #closeTask(partition: number, deadline?: number, dirty = false): Promise<void> {
    const hp = this.#tasks.get(partition);
    if (!hp) return Promise.resolve();
    return this.#whileClosing(partition, this.#closeHandle(partition, hp, deadline, dirty));
  }

  async #closeHandle(partition: number, hp: Promise<ActiveTask>, deadline: number | undefined, dirty: boolean): Promise<void> {
    this.#tasks.delete(partition);
    this.#opened.delete(partition);
    this.#supersede(partition); // an open still running does not count as opened (#openTask)
    this.#fetchedWhileOpening.forget(partition);
    // Per-task gauges go with the task: a frozen value here would double-count (or alert) once another
    // instance reports the same partition.
    const label = String(partition);
    for (const topic of this.#sources) this.#metrics?.lag.remove({ topic, partition: label });
    this.#metrics?.timersPending.remove({ partition: label });
    this.#metrics?.restoreRemaining.remove({ partition: label });
    let h: ActiveTask;
    try {
      h = await hp;
    } catch {
      return;
    }
    const closing = h
      .exclusive(async () => {
        if (dirty || !this.#current(h)) await h.settle();
        else await h.maybeCommit(true);
        await this.#release(h);
        this.#log.info({ partition, dirty }, dirty ? 'task closed without a commit' : 'task closed');
      })
      .catch((err: unknown) => this.#log.error({ err, partition }, 'closing task failed'));
    if (deadline === undefined) return closing;
    const r = await untilDeadline(closing, deadline, `closing task ${partition}`, this.#log);
    if (r.done || h.closed) return;
    // A commit still waits on the broker: close the stores under it (its local write then fails, harmlessly).
    await this.#release(h);
    this.#log.info({ partition }, 'task closed without its last commit');
  }

  /**
   * Closes a task's state (dropping what is uncommitted) and its transactional producer, once a purge of its consumed
   * repartition records still running has ended (it stops at its next topic). Exactly-once: nothing is
   * sent between commits, so no transaction is open; the next producer with the task's transactional id fences this one.
   */
  async #release(h: ActiveTask): Promise<void> {
    h.closed = true;
    // Bounded: a purge stops at its next topic, but a broker that does not answer would hold the close.
    await untilDeadline(h.purged(), Date.now() + 2000, `task ${h.partition}'s purge of consumed repartition records`, this.#log);
    await h.task.close().catch((err: unknown) => this.#log.warn({ err, partition: h.partition }, 'closing the task state failed'));
    await h.txProducer?.disconnect().catch(() => undefined);
  }
}

/** The internal topic through which records on a partition their key does not hash to reach the key's task. */
export function rerouteTopic(applicationId: string): string {
  return `${applicationId}-rerouted-repartition`;
}

/** The decoding of a record of a topic the contract does not know. */
function noSchema(topic: string): DecodeResult {
  return { ok: false, reason: 'invalid', errors: [{ path: '', message: `no schema for topic ${topic}` }], retriable: false };
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
