/**
 * A task's record order (Kafka Streams' PartitionGroup): fetched records wait here, one FIFO per input topic,
 * and the task always takes, across its inputs, the buffered record with the smallest event time, so a basket
 * batch and an orders batch of one partition interleave by event time, not by batch order.
 *
 * The ordering rule, in one place (DESIGN §4, "Kafka == replay"):
 * - An external input with nothing buffered is waited for while it is known to have more to fetch (its high
 *   watermark is above what the task has taken from it) or while nothing is known yet (no fetch has come back
 *   and no end offset was read). Its next record may be older than every buffered one.
 * - That holds right after a task opens (start, restore, rebalance): the lag of each input is read from the
 *   broker when the task opens, so the first batch of one input cannot run ahead of another input whose first
 *   fetch is late.
 * - Internal inputs (repartition topics, written by other tasks whenever they commit) are never waited for:
 *   their records may come at any time, and the topologies' cross-task joins are order-insensitive.
 * - Waiting ends only by data (or by the broker saying the input is caught up); `maxIdleMs` is a last resort
 *   against a broker that never answers for one partition, logged and counted when it is taken.
 */

export interface Buffered<R> {
  readonly record: R;
  /** Event time used for the order: the value's, else the Kafka timestamp. */
  readonly timestamp: number;
}

export interface GroupOptions {
  /** Inputs whose gaps the task waits for (the external source topics). */
  readonly waitFor: readonly string[];
  /** Inputs merged by event time but never waited for (repartition topics). */
  readonly others: readonly string[];
  /** Longest wait for a lagging input before processing without it. @default 60000 */
  readonly maxIdleMs?: number;
  readonly clock?: () => number;
}

export type NextResult<R> =
  | { readonly kind: 'record'; readonly topic: string; readonly item: Buffered<R> }
  /** Records are buffered, but an input known to lag has none: wait for its fetch. */
  | { readonly kind: 'waiting'; readonly topics: readonly string[]; readonly since: number }
  | { readonly kind: 'empty' };

export class PartitionGroup<R> {
  readonly #waitFor: readonly string[];
  readonly #others: readonly string[];
  readonly #buffers = new Map<string, Buffered<R>[]>();
  /** Heads of the FIFOs: index of the next record, so shift() stays O(1) on long buffers. */
  readonly #heads = new Map<string, number>();
  /** Per waited-for input: more to fetch (true), at the end (false), unknown (absent). */
  readonly #behind = new Map<string, boolean>();
  readonly #maxIdleMs: number;
  readonly #clock: () => number;
  #waitingSince: number | undefined;
  /** How often the last-resort timeout was taken (for a metric). */
  forcedCount = 0;

  constructor(o: GroupOptions) {
    this.#waitFor = [...o.waitFor];
    this.#others = [...o.others];
    this.#maxIdleMs = o.maxIdleMs ?? 60_000;
    this.#clock = o.clock ?? Date.now;
    for (const t of [...this.#waitFor, ...this.#others]) {
      this.#buffers.set(t, []);
      this.#heads.set(t, 0);
    }
  }

  /** Appends fetched records of one input (offset order). */
  add(topic: string, items: readonly Buffered<R>[]): void {
    const buf = this.#buffers.get(topic);
    if (!buf) throw new RangeError(`partition group: unknown input ${topic}`);
    for (const i of items) buf.push(i);
  }

  /** What the broker said of an input after a fetch or an offsets request: records left beyond what was fetched. */
  setBehind(topic: string, behind: boolean): void {
    if (this.#waitFor.includes(topic)) this.#behind.set(topic, behind);
  }

  behind(topic: string): boolean | undefined {
    return this.#behind.get(topic);
  }

  /** Records buffered, over all inputs. */
  get size(): number {
    let n = 0;
    for (const [t, b] of this.#buffers) n += b.length - (this.#heads.get(t) ?? 0);
    return n;
  }

  /** Nothing buffered and every waited-for input known to be at its end: the task has seen all there is. */
  get caughtUp(): boolean {
    return this.size === 0 && this.#waitFor.every((t) => this.#behind.get(t) === false);
  }

  /** Inputs the group waits for now (nothing buffered, more to come or unknown). */
  lagging(): string[] {
    return this.#waitFor.filter((t) => this.#headOf(t) === undefined && this.#behind.get(t) !== false);
  }

  /** The next record in event-time order, or why there is none. Ties go to the input listed first. */
  next(): NextResult<R> {
    let best: string | undefined;
    let bestTs = Infinity;
    for (const topic of this.#waitFor) {
      const head = this.#headOf(topic);
      if (head && head.timestamp < bestTs) {
        bestTs = head.timestamp;
        best = topic;
      }
    }
    for (const topic of this.#others) {
      const head = this.#headOf(topic);
      if (head && head.timestamp < bestTs) {
        bestTs = head.timestamp;
        best = topic;
      }
    }
    if (best === undefined) {
      this.#waitingSince = undefined;
      return { kind: 'empty' };
    }
    // Internal records wait too: a lagging external input's next record may be older still.
    const lagging = this.lagging();
    if (lagging.length > 0) {
      const now = this.#clock();
      this.#waitingSince ??= now;
      if (now - this.#waitingSince < this.#maxIdleMs) return { kind: 'waiting', topics: lagging, since: this.#waitingSince };
      this.forcedCount++;
    }
    this.#waitingSince = undefined;
    return { kind: 'record', topic: best, item: this.#take(best) };
  }

  /** Drops everything buffered (a seek or a reset makes it stale). */
  clear(): void {
    for (const t of this.#buffers.keys()) {
      this.#buffers.set(t, []);
      this.#heads.set(t, 0);
    }
    this.#waitingSince = undefined;
  }

  #headOf(topic: string): Buffered<R> | undefined {
    return this.#buffers.get(topic)?.[this.#heads.get(topic) ?? 0];
  }

  #take(topic: string): Buffered<R> {
    const buf = this.#buffers.get(topic) as Buffered<R>[];
    let head = this.#heads.get(topic) ?? 0;
    const item = buf[head] as Buffered<R>;
    head++;
    if (head === buf.length) {
      buf.length = 0;
      head = 0;
    } else if (head > 1024 && head * 2 > buf.length) {
      buf.splice(0, head);
      head = 0;
    }
    this.#heads.set(topic, head);
    return item;
  }
}
