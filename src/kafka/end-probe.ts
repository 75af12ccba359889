/**
 * Confirms the empty inputs of a live task with a ListOffsets request when the next fetch is slow to do it
 * (partition-group.ts, *Record order*).
 *
 * A record that came while another input of its task had nothing buffered waits until a read of that input made
 * after the record came says it is still at its end: the other half of the producer request the record came with
 * may be on its way (a fetch can read one partition after the write and another before it). The next fetch
 * response says so, but kafkajs sends that fetch once the batches of the last one are handed on, and the broker
 * holds it until new data comes or `maxWaitTimeInMs` (500 ms) passes: on sparse input every record waited up to
 * the fetch wait, and a timer, which fires on stream time, as long for the record that moved it.
 *
 * With the probe on (`KAIROS_INPUT_END_PROBE_MS`, off by default), a record still held back only by such
 * confirmations `delayMs` after its task asked gets them from a ListOffsets request: it reads each input's end
 * (the last stable offset, as the read_committed consumer sees it) just as a fetch would. An input whose end is no
 * further than what its task has fetched holds nothing older than the records of the fetch responses that had
 * come `delayMs` before the request went (and, with `inputSettleMs`, at least that long before:
 * `FetchLog.settled()`), and is confirmed up to them; an input with more to fetch is left to the fetch that brings
 * it, and a failed request to the next fetch. While records flow the next fetch confirms first and no request goes.
 *
 * What it gives up, and why it is off by default: the fetch that comes back with the next record also says that
 * the broker finished appending the record's own producer request (it handles one request per connection at a
 * time), which a read after a fixed delay does not; only the delay bounds that append window, as
 * `inputSettleMs` does for fetches. On the broker, live equivalence runs (`kafka-vs-replay.ts --mode before`, 32
 * partitions) differed in 2 of 3 with a probe sent at once, 2 of 10 with a 50 ms delay (one of them by 162 late
 * records across 16 tasks in one burst), 1 of 7 with the fetch only (load-tests/README.md, *Twenty-second
 * session*). In return a record on sparse input waits about the delay instead of up to the fetch wait.
 *
 * One request at a time per runner: the tasks whose delay has passed go in one request per broker.
 */
import type { Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import { kafkajsVersionMismatch } from './kafkajs-preload.js';

/** Ends (next offset after the last stable one) per topic and partition, read with one request per broker. */
export type ReadEnds = (partitions: ReadonlyMap<string, readonly number[]>) => Promise<Map<string, Map<number, bigint>>>;

/** A task the probe confirms inputs of (ActiveTask). */
export interface ProbedTask {
  readonly closed: boolean;
  readonly fetchedTo: ReadonlyMap<string, bigint>;
  readonly emptyAtOpen: ReadonlyMap<string, bigint>;
  readonly partition: number;
  readonly group: {
    /** The inputs whose confirmation up to `through` would let its next record go (partition-group.ts). */
    unconfirmed(through?: number): readonly string[];
    confirm(topic: string, through: number): void;
  };
}

export interface EndProbeOptions<T extends ProbedTask> {
  readonly readEnds: ReadEnds;
  /** Fetch responses counted so far (FetchLog.count). */
  readonly count: () => number;
  /** The fetch responses a read beginning now vouches for (FetchLog.settled). */
  readonly settled: () => number;
  /** How long a task waits for a fetch to confirm its inputs before the probe reads their ends (> 0). */
  readonly delayMs: number;
  /** A task had its inputs confirmed: process what it can now. */
  readonly onConfirmed: (task: T) => void;
  readonly logger: Logger;
  readonly onResult?: (result: 'confirmed' | 'behind' | 'failed', n: number) => void;
}

export class EndProbe<T extends ProbedTask> {
  readonly #o: EndProbeOptions<T>;
  /** Tasks that asked, with when they first asked and the responses counted then (in the order they asked). */
  #wanted = new Map<T, { readonly at: number; readonly count: number }>();
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #stopped = false;
  #failures = 0;

  constructor(o: EndProbeOptions<T>) {
    this.#o = o;
  }

  /** A task holds a record back only for the confirmation of empty inputs: read their ends if no fetch does soon. */
  want(task: T): void {
    if (this.#stopped || this.#wanted.has(task)) return;
    this.#wanted.set(task, { at: performance.now(), count: this.#o.count() });
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    this.#wanted.clear();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The next request once the first task waiting has waited `delayMs` (none while one is out). */
  #schedule(extraMs = 0): void {
    if (this.#running || this.#timer !== undefined || this.#stopped) return;
    const first = this.#wanted.values().next();
    if (first.done === true) return;
    const wait = Math.max(0, first.value.at + this.#o.delayMs - performance.now()) + extraMs;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#run();
    }, wait);
  }

  async #run(): Promise<void> {
    this.#running = true;
    let backoff = 0;
    try {
      // The tasks that asked at least delayMs ago, and the responses that had come when the last of them asked.
      const due = performance.now() - this.#o.delayMs;
      let counted = 0;
      const tasks: T[] = [];
      for (const [task, w] of this.#wanted) {
        if (w.at > due) break;
        this.#wanted.delete(task);
        counted = w.count;
        if (!task.closed) tasks.push(task);
      }
      // What the request vouches for: taken before it goes (with inputSettleMs, only responses that old).
      const through = Math.min(counted, this.#o.settled());
      const asks: [T, readonly string[]][] = [];
      const partitions = new Map<string, number[]>();
      for (const task of tasks) {
        const topics = task.group.unconfirmed(through);
        if (topics.length === 0) {
          // Held back by a record that came later (it asked while the task was waiting already): its own turn.
          if (task.group.unconfirmed().length > 0) this.#wanted.set(task, { at: performance.now(), count: this.#o.count() });
          continue;
        }
        asks.push([task, topics]);
        for (const topic of topics) {
          let list = partitions.get(topic);
          if (list === undefined) partitions.set(topic, (list = []));
          list.push(task.partition);
        }
      }
      if (asks.length === 0) return;
      let ends: Map<string, Map<number, bigint>>;
      try {
        ends = await this.#o.readEnds(partitions);
        this.#failures = 0;
      } catch (err) {
        if (this.#stopped) return;
        // The next fetch confirms them as before; a broker that keeps failing is not asked in a tight loop.
        this.#o.onResult?.('failed', 1);
        if (this.#failures++ === 0) this.#o.logger.warn({ err: (err as Error).message }, 'reading input end offsets failed; empty inputs wait for the next fetch');
        backoff = Math.min(1000, 50 * this.#failures);
        return;
      }
      let confirmed = 0;
      let behind = 0;
      for (const [task, topics] of asks) {
        if (task.closed) continue;
        let all = true;
        for (const topic of topics) {
          // Nothing fetched since it opened: an input that was empty then is fetched to its end of then.
          const end = ends.get(topic)?.get(task.partition);
          const fetched = task.fetchedTo.get(topic) ?? task.emptyAtOpen.get(topic);
          if (end !== undefined && fetched !== undefined && end <= fetched) {
            task.group.confirm(topic, through);
            confirmed++;
          } else {
            all = false;
            behind++;
          }
        }
        // With one input still behind the record waits for the fetch that brings it, which drains the task.
        if (all) this.#o.onConfirmed(task);
      }
      if (confirmed > 0) this.#o.onResult?.('confirmed', confirmed);
      if (behind > 0) this.#o.onResult?.('behind', behind);
    } finally {
      this.#running = false;
      this.#schedule(backoff);
    }
  }
}

/** kafkajs' private Cluster API used here (kafkajs 2.2.4: src/cluster/index.js). */
interface KafkajsCluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  addMultipleTargetTopics(topics: string[]): Promise<void>;
  refreshMetadata(): Promise<void>;
  fetchTopicsOffset(topics: { topic: string; partitions: { partition: number }[]; fromBeginning: boolean }[]): Promise<{ topic: string; partitions: { partition: number; offset: string }[] }[]>;
}

const READ_COMMITTED = 1;

/**
 * ListOffsets (latest, read_committed: the last stable offset) for many topics and partitions in one request per
 * broker, through a kafkajs cluster of its own (kafkajs' admin asks one topic at a time, twice). Undefined when the
 * installed kafkajs is not the version whose internals this relies on: the probe is then off.
 */
export function kafkajsEnds(kafka: Kafka, logger: Logger): { readEnds: ReadEnds; close: () => Promise<void> } | undefined {
  if (kafkajsVersionMismatch() !== undefined) return undefined;
  const symbol = Object.getOwnPropertySymbols(kafka).find((s) => s.description === 'private:Kafka:createCluster');
  const create = symbol === undefined ? undefined : (kafka as unknown as Record<symbol, unknown>)[symbol];
  if (typeof create !== 'function') return undefined;
  const cluster = (create as (o: object) => KafkajsCluster)({ allowAutoTopicCreation: false, isolationLevel: READ_COMMITTED });
  let connected: Promise<void> | undefined;
  const known = new Set<string>();
  let stale = false;
  const readEnds: ReadEnds = async (partitions) => {
    connected ??= cluster.connect().catch((err: unknown) => {
      connected = undefined;
      throw err;
    });
    await connected;
    const fresh = [...partitions.keys()].filter((t) => !known.has(t));
    if (fresh.length > 0) {
      await cluster.addMultipleTargetTopics([...known, ...fresh]);
      for (const t of fresh) known.add(t);
      stale = false;
    } else if (stale) {
      await cluster.refreshMetadata();
      stale = false;
    }
    let res: Awaited<ReturnType<KafkajsCluster['fetchTopicsOffset']>>;
    try {
      res = await cluster.fetchTopicsOffset([...partitions].map(([topic, ps]) => ({ topic, fromBeginning: false, partitions: ps.map((partition) => ({ partition })) })));
    } catch (err) {
      // A leader that moved, a topic recreated: the metadata is read again before the next request.
      stale = true;
      throw err;
    }
    const out = new Map<string, Map<number, bigint>>();
    for (const { topic, partitions: ps } of res) out.set(topic, new Map(ps.map((p) => [p.partition, BigInt(p.offset)])));
    return out;
  };
  return {
    readEnds,
    close: async () => {
      if (connected === undefined) return;
      await cluster.disconnect().catch((err: unknown) => logger.debug({ err }, 'end-offset reader disconnect failed'));
    },
  };
}
