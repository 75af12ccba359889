/**
 * Standby replicas: warm copies of tasks this instance does not run. A follower keeps, for each standby
 * partition, the task's RocksDB directory up to date from its changelog topics, so when the partition moves
 * here (its owner died or the group rebalanced) the restore only reads the tail since the last checkpoint.
 *
 * Placement is computed by every member from the routing the leader published in the assignment: with the
 * distinct owner addresses sorted, the standby copies of a task owned by the i-th owner live on owners
 * i+1 … i+n (mod the number of owners), never on the owner itself.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Consumer, Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import type { Topology } from '../engine/api/topology.js';
import { changelogTopic, type ChangelogEntry } from '../engine/state/changelog.js';
import { TaskState } from '../engine/state/task-state.js';
import { StreamTask } from '../engine/runtime/task.js';
import type { TaskRouting } from './assignor.js';

/** The partitions `me` keeps standby copies of, given the routing of the current generation. */
export function standbyPartitions(routing: TaskRouting, me: string, replicas: number): Set<number> {
  const owners = [...new Set([...routing.tasks.values()].filter((a): a is string => a !== null))].sort();
  const out = new Set<number>();
  if (replicas < 1 || owners.length < 2 || !owners.includes(me)) return out;
  const n = Math.min(replicas, owners.length - 1);
  for (const [p, owner] of routing.tasks) {
    if (owner === null || owner === me) continue;
    const i = owners.indexOf(owner);
    for (let k = 1; k <= n; k++) if (owners[(i + k) % owners.length] === me) out.add(p);
  }
  return out;
}

export interface StandbyOptions {
  readonly kafka: Kafka;
  readonly topology: Topology;
  readonly groupId: string;
  readonly stateDir: string;
  /** Store names whose changelogs to follow (including the internal ones). */
  readonly stores: readonly string[];
  readonly logger: Logger;
  readonly maxWaitTimeInMs?: number;
  /** Called with the records applied to a standby partition. */
  readonly onApplied?: (partition: number, records: number) => void;
}

export class StandbyFollower {
  readonly #o: StandbyOptions;
  readonly #log: Logger;
  readonly #states = new Map<number, TaskState>();
  /** Per standby partition and changelog topic: records between the local copy and the log end, as last fetched. */
  readonly #lag = new Map<number, Map<string, bigint>>();
  readonly #topics: string[];
  readonly #storeByTopic: Map<string, string>;
  #consumer: Consumer | undefined;
  /** Serialises updates, releases and stop. */
  #chain: Promise<void> = Promise.resolve();

  constructor(options: StandbyOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: 'standby' });
    this.#storeByTopic = new Map(options.stores.map((s) => [changelogTopic(options.topology.applicationId, s), s]));
    this.#topics = [...this.#storeByTopic.keys()];
  }

  /** Standby partitions kept now. */
  get partitions(): number[] {
    return [...this.#states.keys()].sort((a, b) => a - b);
  }

  /**
   * A standby copy for reads (the query API during a rebalance), with how far it trails its changelogs in
   * records, summed over the changelogs fetched so far (undefined before the first fetch). Reads see the copy as
   * of its last applied batch.
   */
  copy(partition: number): { state: TaskState; lagRecords: number | undefined } | undefined {
    const state = this.#states.get(partition);
    if (!state) return undefined;
    const lags = this.#lag.get(partition);
    const lagRecords = lags && lags.size > 0 ? Number([...lags.values()].reduce((a, b) => a + b, 0n)) : undefined;
    return { state, lagRecords };
  }

  /** Follows exactly `partitions` from now on (opening and closing their local states). */
  update(partitions: ReadonlySet<number>): Promise<void> {
    return this.#serial(async () => {
      const current = new Set(this.#states.keys());
      if (current.size === partitions.size && [...partitions].every((p) => current.has(p))) return;
      await this.#stopConsumer();
      for (const p of current) if (!partitions.has(p)) await this.#close(p);
      for (const p of partitions) {
        if (this.#states.has(p)) continue;
        const taskId = `task-${p}`;
        const dir = join(this.#o.stateDir, this.#o.groupId, taskId);
        this.#states.set(p, await TaskState.open({ dir, taskId, stores: StreamTask.storeSpecs(this.#o.topology) }));
      }
      this.#log.info({ partitions: this.partitions }, 'standby partitions');
      if (this.#states.size > 0) await this.#startConsumer();
    });
  }

  /** Stops following `partition` and closes its state, so the active task can open the directory. */
  release(partition: number): Promise<void> {
    return this.#serial(async () => {
      if (!this.#states.has(partition)) return;
      await this.#stopConsumer();
      await this.#close(partition);
      this.#log.info({ partition }, 'standby promoted to active');
      if (this.#states.size > 0) await this.#startConsumer();
    });
  }

  stop(): Promise<void> {
    return this.#serial(async () => {
      await this.#stopConsumer();
      for (const p of [...this.#states.keys()]) await this.#close(p);
    });
  }

  #serial(fn: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(fn);
    this.#chain = run.catch((err: unknown) => this.#log.error({ err }, 'standby update failed'));
    return run;
  }

  async #close(p: number): Promise<void> {
    const s = this.#states.get(p);
    this.#states.delete(p);
    this.#lag.delete(p);
    if (s) {
      await s.commit();
      await s.close();
    }
  }

  async #stopConsumer(): Promise<void> {
    const c = this.#consumer;
    this.#consumer = undefined;
    await c?.disconnect();
  }

  async #startConsumer(): Promise<void> {
    const consumer = this.#o.kafka.consumer({
      groupId: `${this.#o.groupId}-standby-${randomUUID()}`,
      maxWaitTimeInMs: this.#o.maxWaitTimeInMs ?? 500,
      allowAutoTopicCreation: false,
    });
    this.#consumer = consumer;
    const states = this.#states;
    consumer.on(consumer.events.GROUP_JOIN, () => {
      // Each standby partition resumes where its local copy ends (its changelog checkpoint).
      for (const [p, state] of states) {
        for (const topic of this.#topics) consumer.seek({ topic, partition: p, offset: state.position(topic, p) ?? '0' });
      }
    });
    await consumer.connect();
    await consumer.subscribe({ topics: this.#topics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const state = states.get(batch.partition);
        if (!state || this.#consumer !== consumer) {
          consumer.pause([{ topic: batch.topic, partitions: [batch.partition] }]);
          return;
        }
        const from = BigInt(state.position(batch.topic, batch.partition) ?? '0');
        const store = this.#storeByTopic.get(batch.topic) as string;
        const entries: ChangelogEntry[] = [];
        let next = from;
        for (const m of batch.messages) {
          const off = BigInt(m.offset);
          if (off < from) continue;
          if (m.key) entries.push({ store, key: m.key, value: m.value, timestamp: Number(m.timestamp) });
          next = off + 1n;
        }
        let lags = this.#lag.get(batch.partition);
        if (!lags) this.#lag.set(batch.partition, (lags = new Map()));
        const high = BigInt(batch.highWatermark);
        lags.set(batch.topic, high > next ? high - next : 0n);
        if (next === from) return;
        if (entries.length > 0) await state.restore(entries);
        state.setPosition(batch.topic, batch.partition, next.toString());
        await state.commit();
        this.#o.onApplied?.(batch.partition, entries.length);
      },
    });
  }
}
