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
import { changelogTopic, POSITIONS_STORE, type ChangelogEntry } from '../engine/state/changelog.js';
import { TaskState } from '../engine/state/task-state.js';
import { StreamTask } from '../engine/runtime/task.js';
import type { TaskRouting } from './assignor.js';
import { COMMIT_MARKER_KEY, commitMarkerEnds } from './changelog.js';

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

interface Fetched {
  readonly offset: bigint;
  readonly entry: ChangelogEntry;
}

/** A commit marker seen, with the positions records before it. */
interface PendingCommit {
  readonly offset: bigint;
  readonly entries: readonly Fetched[];
  readonly ends: ReadonlyMap<string, bigint>;
}

/**
 * One standby partition's view of its changelogs, applied commit by commit as the active restore does
 * (src/kafka/changelog.ts): a store record is applied once a commit marker covers it (the marker names where
 * every store log stood after that commit), and a commit's positions are applied, and the positions log's
 * checkpoint moved past its marker, only once the stores hold everything up to that marker's ends. A commit
 * cut short by a kill never reaches the copy, and a copy promoted to active restores the rest from its own
 * checkpoints. What is held here is refetched after a consumer restart (it reseeks to the checkpoints).
 */
class CommittedCut {
  /** Store changelog topic → its end after the last commit marker seen (markers name every store). */
  readonly #ends = new Map<string, bigint>();
  /** Store records fetched beyond the ends known, per topic, in offset order. */
  readonly #pending = new Map<string, Fetched[]>();
  /** Per topic: the offset after the last record fetched (nothing below it is still to come). */
  readonly #fetched = new Map<string, bigint>();
  /** Positions records after the last marker whose commit is complete here; each marker closes a group. */
  #held: Fetched[] = [];
  readonly #commits: PendingCommit[] = [];

  constructor(
    readonly state: TaskState,
    readonly partition: number,
    readonly positionsTopic: string,
  ) {}

  /** Forgets what was fetched and not applied (the consumer starts again from the checkpoints). */
  reset(): void {
    this.#pending.clear();
    this.#fetched.clear();
    this.#held = [];
    this.#commits.length = 0;
  }

  /** Takes a batch of `topic` (records at or past the checkpoint); returns how many entries were applied. */
  async take(topic: string, store: string, messages: readonly { offset: string; key: Buffer | null; value: Buffer | null; timestamp: string }[]): Promise<number> {
    const from = this.#from(topic);
    const fresh: Fetched[] = [];
    for (const m of messages) {
      const offset = BigInt(m.offset);
      if (offset < from || !m.key) continue;
      fresh.push({ offset, entry: { store, key: m.key, value: m.value, timestamp: Number(m.timestamp) } });
    }
    const last = messages.at(-1);
    if (last && BigInt(last.offset) + 1n > from) this.#fetched.set(topic, BigInt(last.offset) + 1n);
    if (topic === this.positionsTopic) {
      for (const f of fresh) {
        if (f.entry.key.toString('utf8') !== COMMIT_MARKER_KEY) {
          this.#held.push(f);
          continue;
        }
        const ends = new Map(Object.entries(commitMarkerEnds(f.entry.value)).map(([t, e]) => [t, BigInt(e)]));
        for (const [t, e] of ends) if (e > (this.#ends.get(t) ?? -1n)) this.#ends.set(t, e);
        this.#commits.push({ offset: f.offset, entries: this.#held, ends });
        this.#held = [];
      }
    } else {
      let list = this.#pending.get(topic);
      if (!list) this.#pending.set(topic, (list = []));
      list.push(...fresh);
    }
    return this.#apply();
  }

  /** Where the next fetch of `topic` starts: after what was fetched, or the checkpoint. */
  #from(topic: string): bigint {
    return this.#fetched.get(topic) ?? BigInt(this.state.position(topic, this.partition) ?? '0');
  }

  async #apply(): Promise<number> {
    const entries: ChangelogEntry[] = [];
    const moved = new Map<string, bigint>();
    // Store records a marker covers.
    for (const [topic, list] of this.#pending) {
      const end = this.#ends.get(topic);
      if (end === undefined) continue;
      let n = 0;
      while (n < list.length && (list[n] as Fetched).offset < end) entries.push((list[n++] as Fetched).entry);
      if (n === 0) continue;
      moved.set(topic, (list[n - 1] as Fetched).offset + 1n);
      list.splice(0, n);
    }
    // Complete commits: every store fetched up to the marker's ends (or already past them here).
    while (this.#commits.length > 0) {
      const c = this.#commits[0] as PendingCommit;
      const complete = [...c.ends].every(([topic, end]) => this.#from(topic) >= end);
      if (!complete) break;
      this.#commits.shift();
      for (const f of c.entries) entries.push(f.entry);
      moved.set(this.positionsTopic, c.offset + 1n);
    }
    if (moved.size === 0) return 0;
    const applied = entries.length > 0 ? await this.state.restore(entries) : 0;
    for (const [topic, next] of moved) this.state.setPosition(topic, this.partition, next.toString());
    await this.state.commit();
    return applied;
  }
}

export class StandbyFollower {
  readonly #o: StandbyOptions;
  readonly #log: Logger;
  readonly #states = new Map<number, CommittedCut>();
  /** Per standby partition and changelog topic: records between the local copy and the log end, as last fetched. */
  readonly #lag = new Map<number, Map<string, bigint>>();
  readonly #topics: string[];
  readonly #storeByTopic: Map<string, string>;
  readonly #positionsTopic: string;
  #consumer: Consumer | undefined;
  /** Serialises updates, releases and stop. */
  #chain: Promise<void> = Promise.resolve();

  constructor(options: StandbyOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: 'standby' });
    this.#storeByTopic = new Map(options.stores.map((s) => [changelogTopic(options.topology.applicationId, s), s]));
    this.#topics = [...this.#storeByTopic.keys()];
    this.#positionsTopic = changelogTopic(options.topology.applicationId, POSITIONS_STORE);
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
    const state = this.#states.get(partition)?.state;
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
        this.#states.set(p, new CommittedCut(await TaskState.open({ dir, taskId, stores: StreamTask.storeSpecs(this.#o.topology) }), p, this.#positionsTopic));
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
    const s = this.#states.get(p)?.state;
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

  /** Records of the changelog after what was read (`lastOffset`, else the copy's checkpoint) up to its high watermark. */
  #setLag(partition: number, topic: string, highWatermark: string, lastOffset: string | undefined, state: TaskState): void {
    let lags = this.#lag.get(partition);
    if (!lags) this.#lag.set(partition, (lags = new Map()));
    const high = BigInt(highWatermark);
    const next = lastOffset !== undefined ? BigInt(lastOffset) + 1n : BigInt(state.position(topic, partition) ?? '0');
    lags.set(topic, high > next ? high - next : 0n);
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
      // Each standby partition resumes where its local copy ends (its changelog checkpoints).
      for (const [p, cut] of states) {
        cut.reset();
        for (const topic of this.#topics) consumer.seek({ topic, partition: p, offset: cut.state.position(topic, p) ?? '0' });
      }
    });
    // A batch of transaction markers alone is not handed to eachBatch: without it an exactly-once changelog's copy
    // would report a lag of its final markers for ever.
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      const { topic, partition, batchSize, highWatermark, lastOffset, firstOffset } = e.payload;
      const cut = states.get(partition);
      if (batchSize > 0 || firstOffset === null || !cut || this.#consumer !== consumer) return;
      this.#setLag(partition, topic, highWatermark, lastOffset, cut.state);
    });
    await consumer.connect();
    await consumer.subscribe({ topics: this.#topics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const cut = states.get(batch.partition);
        if (!cut || this.#consumer !== consumer) {
          consumer.pause([{ topic: batch.topic, partitions: [batch.partition] }]);
          return;
        }
        const last = batch.messages.at(-1);
        // The batch's last offset counts the transaction markers after its last record (exactly-once changelogs).
        this.#setLag(batch.partition, batch.topic, batch.highWatermark, last ? batch.lastOffset() : undefined, cut.state);
        if (!last) return;
        const applied = await cut.take(batch.topic, this.#storeByTopic.get(batch.topic) as string, batch.messages);
        if (applied > 0) this.#o.onApplied?.(batch.partition, applied);
      },
    });
  }
}
