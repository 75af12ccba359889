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
 * - An input with records in a fetch response not yet handed on is behind too (the runner marks it when the
 *   response comes, before kafkajs hands any of its batches on): records of one response keep their order.
 * - An input at its end counts as such for a record only when a fetch sent after the record came said so
 *   (`confirm`, with fetches numbered by the runner; a record's `arrival` is the number of its response). The
 *   records one producer request writes to several partitions are not seen at once by a consumer: a fetch may
 *   read one partition after the write and another before it (one broker), or the partitions' leaders answer
 *   in separate responses (several brokers). The record from the first half then waits for the next fetch of
 *   the input that looked empty, which holds the other half unless the broker is still appending it (nothing
 *   bounds that; a fetch that waits for data narrows it, one sent without a wait widened it: README, Weak).
 *   The price is one more fetch round trip for a record whose task has an empty input; while records flow,
 *   that fetch comes back at once, and when they stop it takes up to the fetch wait (maxWaitTimeInMs). Kafka
 *   Streams leaves this to `max.task.idle.ms`.
 * - Internal inputs (repartition topics, written by other tasks whenever they commit) are never waited for:
 *   their records may come at any time, and the topologies' cross-task joins are order-insensitive.
 * - Waiting ends only by data (or by the broker saying the input is caught up); `maxIdleMs` is a last resort
 *   against a broker that never answers for one partition, logged and counted when it is taken.
 */

export interface Buffered<R> {
  readonly record: R;
  /** Event time used for the order: the value's, else the Kafka timestamp. */
  readonly timestamp: number;
  /** The number of the fetch response that brought it (`confirm`); 0 or absent: it waits for no confirmation. */
  readonly arrival?: number;
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

/** One input's FIFO: the buffered records and the index of the next one, so taking stays O(1) on long buffers. */
interface Input<R> {
  readonly topic: string;
  /** An external input: the group waits for it while it lags (GroupOptions.waitFor). */
  readonly waited: boolean;
  buf: Buffered<R>[];
  head: number;
  /** Waited-for inputs only: more to fetch (true), at the end (false), unknown (undefined). */
  behind: boolean | undefined;
  /** Waited-for inputs only: records that arrived up to this fetch number may pass it while it is empty (`confirm`). */
  confirmed: number;
}

export class PartitionGroup<R> {
  /** External inputs first, in the order given (ties go to the input listed first), then the internal ones. */
  readonly #inputs: readonly Input<R>[];
  readonly #byTopic = new Map<string, Input<R>>();
  readonly #maxIdleMs: number;
  readonly #clock: () => number;
  #waitingSince: number | undefined;
  /** How often the last-resort timeout was taken (for a metric). */
  forcedCount = 0;

  constructor(o: GroupOptions) {
    const inputs: Input<R>[] = [];
    const waitFor = new Set(o.waitFor);
    for (const topic of [...o.waitFor, ...o.others]) {
      // A topic listed twice is one input, waited for if listed in waitFor.
      if (this.#byTopic.has(topic)) continue;
      const input: Input<R> = { topic, waited: waitFor.has(topic), buf: [], head: 0, behind: undefined, confirmed: 0 };
      inputs.push(input);
      this.#byTopic.set(topic, input);
    }
    this.#inputs = inputs;
    this.#maxIdleMs = o.maxIdleMs ?? 60_000;
    this.#clock = o.clock ?? Date.now;
  }

  /** Appends fetched records of one input (offset order). */
  add(topic: string, items: readonly Buffered<R>[]): void {
    const input = this.#byTopic.get(topic);
    if (!input) throw new RangeError(`partition group: unknown input ${topic}`);
    for (const i of items) input.buf.push(i);
  }

  /** What the broker said of an input after a fetch or an offsets request: records left beyond what was fetched. */
  setBehind(topic: string, behind: boolean): void {
    const input = this.#byTopic.get(topic);
    if (input?.waited === true) input.behind = behind;
  }

  /**
   * A fetch that began when `through` responses had come (the runner's count) answered for this input: a record
   * that arrived with one of those responses (`Buffered.arrival` ≤ `through`) no longer waits for it while the
   * input is at its end and has nothing buffered. Only ever moves forward.
   */
  confirm(topic: string, through: number): void {
    const input = this.#byTopic.get(topic);
    if (input?.waited === true && through > input.confirmed) input.confirmed = through;
  }

  behind(topic: string): boolean | undefined {
    const input = this.#byTopic.get(topic);
    return input?.waited === true ? input.behind : undefined;
  }

  /** Records buffered, over all inputs. */
  get size(): number {
    let n = 0;
    for (const input of this.#inputs) n += input.buf.length - input.head;
    return n;
  }

  /**
   * Every waited-for input known to be at its end, whatever is buffered: a live task. After a drain, what is
   * still buffered then only waits for a fetch to confirm an empty input (`confirm`).
   */
  get atEnd(): boolean {
    return this.#inputs.every((input) => !input.waited || input.behind === false);
  }

  /** Nothing buffered and every waited-for input known to be at its end: the task has seen all there is. */
  get caughtUp(): boolean {
    return this.size === 0 && this.atEnd;
  }

  /** Inputs the group waits for now (nothing buffered, and more to come, unknown, or not confirmed for `arrival`). */
  lagging(arrival = 0): string[] {
    return this.#inputs
      .filter((input) => input.waited && input.head === input.buf.length && (input.behind !== false || input.confirmed < arrival))
      .map((input) => input.topic);
  }

  /**
   * The inputs whose confirmation alone holds the next record back: known at their end, nothing buffered, and
   * confirmed only up to responses before the record's arrival. Empty when nothing is held back, when an input
   * is behind (or unknown): the fetch that brings its records decides then, not a confirmation (end-probe.ts),
   * or when the record came after response `through`, so a confirmation up to it would not let it go.
   */
  unconfirmed(through = Infinity): string[] {
    if (this.#choose() === undefined || !this.#lags) return [];
    const arrival = this.#arrival ?? 0;
    if (arrival > through) return [];
    const topics: string[] = [];
    for (const input of this.#inputs) {
      if (!input.waited || input.head !== input.buf.length) continue;
      if (input.behind !== false) return [];
      if (input.confirmed < arrival) topics.push(input.topic);
    }
    return topics;
  }

  /** The next record in event-time order, or why there is none. Ties go to the input listed first. */
  next(): NextResult<R> {
    const best = this.#choose();
    if (best === undefined) {
      this.#waitingSince = undefined;
      return { kind: 'empty' };
    }
    if (this.#lags) {
      const now = this.#clock();
      this.#waitingSince ??= now;
      if (now - this.#waitingSince < this.#maxIdleMs) return { kind: 'waiting', topics: this.lagging(this.#arrival), since: this.#waitingSince };
      this.forcedCount++;
    }
    this.#waitingSince = undefined;
    return { kind: 'record', topic: best.topic, item: this.#take(best) };
  }

  /**
   * Whether `next()` would hand a record on now (also one the last-resort timeout would force), without taking
   * it or starting a wait: a runner loads what the buffered records will read only once one of them can run, so
   * the batches of one fetch response that wait for each other are loaded together.
   */
  get ready(): boolean {
    if (this.#choose() === undefined) return false;
    if (!this.#lags) return true;
    const now = this.#clock();
    return now - (this.#waitingSince ?? now) >= this.#maxIdleMs;
  }

  /** Set by #choose: whether its input has to wait, and the arrival of its head record. */
  #lags = false;
  #arrival: number | undefined;

  /** The input whose head is next in event-time order (and #lags, #arrival), for `next` and `ready`. */
  #choose(): Input<R> | undefined {
    // Once per record: one pass over the inputs, no lookups by name and no allocation.
    const inputs = this.#inputs;
    let best: Input<R> | undefined;
    let bestHead: Buffered<R> | undefined;
    let bestTs = Infinity;
    let lags = false;
    // The least confirmation of the waited-for inputs at their end with nothing buffered.
    let confirmed = Infinity;
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i] as Input<R>;
      const head = input.buf[input.head];
      if (head === undefined) {
        if (input.waited) {
          if (input.behind !== false) lags = true;
          else if (input.confirmed < confirmed) confirmed = input.confirmed;
        }
      } else if (head.timestamp < bestTs) {
        bestTs = head.timestamp;
        best = input;
        bestHead = head;
      }
    }
    if (best === undefined) return undefined;
    // Internal records wait too: a lagging external input's next record may be older still. So does a record
    // that came after the last confirmation of an empty input (the other half of its producer's request).
    const arrival = bestHead?.arrival;
    if (!lags && arrival !== undefined && arrival > confirmed) lags = true;
    this.#lags = lags;
    this.#arrival = arrival;
    return best;
  }

  /** Drops everything buffered (a seek or a reset makes it stale). */
  clear(): void {
    for (const input of this.#inputs) {
      input.buf = [];
      input.head = 0;
    }
    this.#waitingSince = undefined;
  }

  #take(input: Input<R>): Buffered<R> {
    const buf = input.buf;
    let head = input.head;
    const item = buf[head] as Buffered<R>;
    head++;
    if (head === buf.length) {
      buf.length = 0;
      head = 0;
    } else if (head > 1024 && head * 2 > buf.length) {
      buf.splice(0, head);
      head = 0;
    }
    input.head = head;
    return item;
  }
}
