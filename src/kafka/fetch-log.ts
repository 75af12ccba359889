/**
 * The runner's count of fetch responses, for the record order of live input (partition-group.ts, `confirm`).
 *
 * Every fetch response gets the next number as it comes (`arrived`), and a record carries the number of the
 * response that brought it. When a fetch begins, `settled()` tells which responses its answer may vouch for:
 * an input that this answer shows at its end has nothing older than the records of those responses.
 *
 * With `settleMs` 0 that is every response that came before the fetch began: the broker read the input after
 * the record was read from another partition. It does not bound how long the broker may still be appending the
 * other partitions of the producer request the record came with (one request over several partitions is not
 * atomic for a consumer). With `settleMs` > 0 a fetch vouches only for responses that came at least that long
 * before it began, so a record waits for a read of its empty inputs made at least `settleMs` after it came, the
 * bound Kafka Streams' `max.task.idle.ms` gives; it costs about `settleMs` plus one fetch per record while an
 * input of its task is empty.
 */
export class FetchLog {
  readonly settleMs: number;
  readonly #now: () => number;
  #count = 0;
  /** Responses up to this number came at least settleMs ago (settleMs > 0 only). */
  #settled = 0;
  /** Arrival times of responses #settled + 1 … #count, from index #head on (settleMs > 0 only). */
  #times: number[] = [];
  #head = 0;

  /** `now`: a monotonic clock in milliseconds. */
  constructor(settleMs = 0, now: () => number = () => performance.now()) {
    if (!Number.isInteger(settleMs) || settleMs < 0) throw new RangeError(`settleMs must be a non-negative integer, got ${settleMs}`);
    this.settleMs = settleMs;
    this.#now = now;
  }

  /** Responses counted so far. */
  get count(): number {
    return this.#count;
  }

  /** A fetch response came: its number (1, 2, …). */
  arrived(): number {
    this.#count++;
    if (this.settleMs > 0) this.#times.push(this.#now());
    return this.#count;
  }

  /** The responses a fetch beginning now vouches for: records with an arrival up to this number. */
  settled(): number {
    if (this.settleMs === 0) return this.#count;
    const bound = this.#now() - this.settleMs;
    const times = this.#times;
    let head = this.#head;
    while (head < times.length && (times[head] as number) <= bound) head++;
    this.#settled += head - this.#head;
    if (head === times.length) {
      this.#times = [];
      head = 0;
    } else if (head > 1024 && head * 2 > times.length) {
      this.#times = times.slice(head);
      head = 0;
    }
    this.#head = head;
    return this.#settled;
  }
}

/**
 * Records fetched for a task that is still opening (restoring, reading its inputs' end offsets, recovering its
 * outbox). The FETCH event marks an input with records in a response behind until its batch is buffered, but
 * there is no task to mark yet, and the end offsets the task reads while it opens may predate those records.
 * Without this, another input's newer records, fetched later and confirmed by a fetch that found this input
 * empty (its records already fetched, still waiting for the task to open), could run ahead of them. When the
 * task opens, every input with such records at or beyond its position counts as behind until a batch of it is
 * buffered whole.
 */
export class FetchedWhileOpening {
  readonly #seen = new Map<number, Map<string, bigint>>();

  /** A non-empty batch of `topic` for `partition`, whose task is not open, ending before offset `next`. */
  add(partition: number, topic: string, next: bigint): void {
    let topics = this.#seen.get(partition);
    if (topics === undefined) this.#seen.set(partition, (topics = new Map()));
    const known = topics.get(topic);
    if (known === undefined || next > known) topics.set(topic, next);
  }

  /**
   * The inputs of `partition` with records fetched at or beyond the task's position (`positions`, next offsets;
   * an input without one reads whatever was fetched), and forgets the partition.
   */
  take(partition: number, positions: ReadonlyMap<string, string>): string[] {
    const topics = this.#seen.get(partition);
    this.#seen.delete(partition);
    if (topics === undefined) return [];
    const behind: string[] = [];
    for (const [topic, next] of topics) {
      const pos = positions.get(topic);
      if (pos === undefined || next > BigInt(pos)) behind.push(topic);
    }
    return behind;
  }

  /** The partition's task closed: what was fetched for it says nothing about a later owner's task. */
  forget(partition: number): void {
    this.#seen.delete(partition);
  }
}
