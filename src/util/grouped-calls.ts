/**
 * Group commit: calls that arrive in the same turn of the event loop, or while a group is in flight, are run
 * together as the next group, one group at a time, in arrival order. The record collector's produce requests
 * and the runner's offset commits use it, so the tasks of an instance committing together share round trips.
 */

/** What one call of a group came to. */
export type Settled<O> = { readonly ok: true; readonly value: O } | { readonly ok: false; readonly error: unknown };

export class GroupedCalls<I, O> {
  readonly #queue: { readonly input: I; readonly resolve: (o: O) => void; readonly reject: (err: unknown) => void }[] = [];
  #busy = false;

  /** `runGroup` answers every input of a group, in order. */
  constructor(private readonly runGroup: (inputs: readonly I[]) => Promise<readonly Settled<O>[]>) {}

  call(input: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#queue.push({ input, resolve, reject });
      if (!this.#busy) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#busy = true;
    try {
      // The calls of the same turn join the first group.
      await new Promise<void>((r) => setImmediate(r));
      while (this.#queue.length > 0) {
        const group = this.#queue.splice(0);
        let results: readonly Settled<O>[];
        try {
          results = await this.runGroup(group.map((g) => g.input));
        } catch (error) {
          results = group.map(() => ({ ok: false, error }));
        }
        group.forEach((g, i) => {
          const r = results[i] ?? { ok: false, error: new Error('grouped call left unanswered') };
          if (r.ok) g.resolve(r.value);
          else g.reject(r.error);
        });
      }
    } finally {
      this.#busy = false;
    }
  }
}
