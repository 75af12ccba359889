/**
 * Confirms the empty inputs of a live task with a ListOffsets request instead of the next fetch
 * (partition-group.ts, *Record order*).
 *
 * A record that came while another input of its task had nothing buffered waits until a read of that input made
 * after the record came says it is still at its end: the other half of the producer request the record came with
 * may be on its way (a fetch can read one partition after the write and another before it). Until now only the
 * next fetch response could say so, and kafkajs sends that fetch once the batches of the last one are handed on,
 * and the broker holds it until new data comes or `maxWaitTimeInMs` (500 ms) passes. So every live record with an
 * empty input waited for the next record to reach the broker: about the gap between two producer requests (20 ms
 * p50 at 2,000 events/s in ticks of 20 ms, load-tests/README.md, *Twenty-second session*), up to the fetch wait
 * when input is sparse. A timer fires on stream time, so a trigger waited as long for the record that moved it.
 *
 * A ListOffsets request sent after the record came reads each input's end (the last stable offset, as the
 * read_committed consumer sees it) just as a fetch would, and comes back at once. An input whose end is no further
 * than what its task has fetched holds nothing older than the records of the fetch responses that had come when
 * the request was sent (`FetchLog.settled()`, which with `inputSettleMs` counts only responses that came at least
 * that long before, so the probe waits that long first): it is confirmed up to them, exactly as a fetch sent then
 * would confirm it. An input with more to fetch is left to the fetch that brings it, and a failed request to the
 * next fetch: the probe only ever confirms what a fetch would have.
 *
 * One request at a time per runner: tasks that ask while one is out go in the next, sent when it comes back.
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
    /** The inputs whose confirmation alone holds its next record back (partition-group.ts). */
    unconfirmed(): readonly string[];
    confirm(topic: string, through: number): void;
  };
}

export interface EndProbeOptions<T extends ProbedTask> {
  readonly readEnds: ReadEnds;
  /** The fetch responses a read beginning now vouches for (FetchLog.settled). */
  readonly settled: () => number;
  /** FetchLog.settleMs: a probe waits this long before it reads, so the records that asked for it are covered. */
  readonly settleMs: number;
  /** A task had an input confirmed: process what it can now. */
  readonly onConfirmed: (task: T) => void;
  readonly logger: Logger;
  readonly onResult?: (result: 'confirmed' | 'behind' | 'failed', n: number) => void;
}

export class EndProbe<T extends ProbedTask> {
  readonly #o: EndProbeOptions<T>;
  #wanted = new Set<T>();
  #running = false;
  #stopped = false;
  #failures = 0;

  constructor(o: EndProbeOptions<T>) {
    this.#o = o;
  }

  /** A task holds a record back only for the confirmation of empty inputs: read their ends soon. */
  want(task: T): void {
    if (this.#stopped) return;
    this.#wanted.add(task);
    if (!this.#running) void this.#run();
  }

  stop(): void {
    this.#stopped = true;
    this.#wanted.clear();
  }

  async #run(): Promise<void> {
    this.#running = true;
    try {
      while (this.#wanted.size > 0 && !this.#stopped) {
        if (this.#o.settleMs > 0) await new Promise((r) => setTimeout(r, this.#o.settleMs));
        const tasks = [...this.#wanted];
        this.#wanted.clear();
        const asks: [T, readonly string[]][] = [];
        const partitions = new Map<string, number[]>();
        for (const task of tasks) {
          if (task.closed) continue;
          const topics = task.group.unconfirmed();
          if (topics.length === 0) continue;
          asks.push([task, topics]);
          for (const topic of topics) {
            let list = partitions.get(topic);
            if (list === undefined) partitions.set(topic, (list = []));
            list.push(task.partition);
          }
        }
        if (asks.length === 0) continue;
        // Taken before the request goes: the responses that had come by then are the ones its answer vouches for.
        const through = this.#o.settled();
        let ends: Map<string, Map<number, bigint>>;
        try {
          ends = await this.#o.readEnds(partitions);
          this.#failures = 0;
        } catch (err) {
          if (this.#stopped) return;
          // The next fetch confirms them as before; a broker that keeps failing is not asked in a tight loop.
          this.#o.onResult?.('failed', 1);
          if (this.#failures++ === 0) this.#o.logger.warn({ err: (err as Error).message }, 'reading input end offsets failed; empty inputs wait for the next fetch');
          await new Promise((r) => setTimeout(r, Math.min(1000, 50 * this.#failures)));
          continue;
        }
        let confirmed = 0;
        let behind = 0;
        for (const [task, topics] of asks) {
          if (task.closed) continue;
          let all = true;
          for (const topic of topics) {
            const end = ends.get(topic)?.get(task.partition);
            // Nothing fetched since it opened: an input that was empty then is fetched to its end of then.
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
      }
    } finally {
      this.#running = false;
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
