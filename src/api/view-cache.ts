/**
 * The serialized customer views, kept per customer and scope while the state they were built from is unchanged.
 * Serializing a view cost more than reading it (issue 17); a view's bytes are reused only when every entry it
 * read has the version it had when the view was built (TaskState.versionsOfKey: a new number on every write, load,
 * eviction or restore; a hit checks the entries kept from then, TaskState.streamTimeIfUnchanged, rather than
 * looking the key up in six stores), the stream time has not moved past an expiry of one of them, and the key's
 * pending timers are the ones the view lists. Anything that cannot be known (a reader without versions, an entry not
 * cached) builds the view as before. What depends on the request (`freshness`) is never cached.
 */
import type { EntryVersions, StateReader, TimerInfo } from '../engine/state/reader.js';
import type { Scope } from './auth.js';
import { CUSTOMER_STORES, customerView } from './views.js';

interface Entry {
  /** What the view was built from: the reader's `versions` answer (all known), its stream time. */
  readonly taken: EntryVersions;
  readonly liveUntil: number;
  readonly timers: readonly TimerInfo[] | null;
  readonly text: string;
  /** Kept or served since eviction last passed it over (second chance: see `#set`). */
  used: boolean;
}

export interface ViewCacheOptions {
  /** Customers (per scope variant) kept, least recently used dropped first (approximately: second chance). @default 10000 */
  readonly maxEntries?: number;
  /** Characters of serialized views kept; views larger than a tenth of this are not kept. @default 16777216 */
  readonly maxChars?: number;
}

/** PII and non-PII answers differ: each has its own entry, and a caller only ever gets its own variant. */
const variant = (scopes: ReadonlySet<Scope>, customerId: string): string => (scopes.has('pii') ? 'p' : 'n') + customerId;

function sameTimers(a: readonly TimerInfo[] | null, b: readonly TimerInfo[] | undefined): boolean {
  if (a === null || b === undefined) return a === null && b === undefined;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as TimerInfo;
    const y = b[i] as TimerInfo;
    if (x.processor !== y.processor || x.name !== y.name || x.time !== y.time || x.domain !== y.domain) return false;
  }
  return true;
}

/** The versions if all are known, else undefined. */
function known(v: EntryVersions | undefined): readonly number[] | undefined {
  if (v === undefined) return undefined;
  for (const n of v.versions) if (n === undefined) return undefined;
  return v.versions as readonly number[];
}

function sameVersions(a: readonly (number | undefined)[], b: readonly (number | undefined)[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class CustomerViewCache {
  readonly #entries = new Map<string, Entry>();
  readonly #maxEntries: number;
  readonly #maxChars: number;
  #chars = 0;
  hits = 0;
  misses = 0;

  constructor(options: ViewCacheOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#maxChars = options.maxChars ?? 16 * 1024 * 1024;
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * The customer's view as `customerView` would serialize it now, without its closing brace (the answer appends
   * `freshness`), when the kept one is still that: synchronously, so a hit needs no promise. Undefined: not kept,
   * or no longer the view of this state (then `build`).
   */
  cached(r: StateReader, scopes: ReadonlySet<Scope>, customerId: string): string | undefined {
    const id = variant(scopes, customerId);
    const cached = this.#entries.get(id);
    if (cached === undefined) return undefined;
    let st: number | undefined;
    if (r.streamTimeIfUnchanged !== undefined) st = r.streamTimeIfUnchanged(cached.taken);
    else {
      const now = r.versions?.(CUSTOMER_STORES, customerId);
      st = now !== undefined && sameVersions(cached.taken.versions, now.versions) ? now.streamTime : undefined;
    }
    if (st === undefined) return undefined;
    if (st >= cached.taken.streamTime && st < cached.liveUntil && sameTimers(cached.timers, r.timers(customerId))) {
      this.hits++;
      // Marked, not moved: eviction gives it a second chance (#set), so a hit writes no Map.
      cached.used = true;
      return cached.text;
    }
    return undefined;
  }

  /**
   * The customer's view built from the state now (as `cached` gives it: serialized, without its closing brace),
   * kept for later requests when nothing it read moved while it was read; undefined when the task does not know
   * the customer.
   */
  async build(r: StateReader, scopes: ReadonlySet<Scope>, customerId: string): Promise<string | undefined> {
    const id = variant(scopes, customerId);
    const before = r.versions?.(CUSTOMER_STORES, customerId);
    const cached = this.#entries.get(id);
    this.misses++;
    const view = await customerView(r, customerId, scopes);
    if (view === undefined) {
      if (cached !== undefined) this.#drop(id, cached);
      return undefined;
    }
    const json = JSON.stringify(view);
    const text = json.slice(0, -1);
    // Kept only when nothing the view read moved while it was read (the versions taken before and after agree):
    // then the bytes are those of the state these versions name.
    const versions = known(before);
    const after = versions === undefined ? undefined : r.versions?.(CUSTOMER_STORES, customerId);
    if (before !== undefined && versions !== undefined && after !== undefined && after.streamTime === before.streamTime && sameVersions(versions, after.versions)) {
      this.#set(id, { taken: after, liveUntil: Math.min(before.liveUntil, after.liveUntil), timers: view.timers, text, used: true });
    } else if (cached !== undefined) this.#drop(id, cached);
    return text;
  }

  #set(id: string, e: Entry): void {
    if (e.text.length > this.#maxChars / 10) return;
    const old = this.#entries.get(id);
    if (old !== undefined) this.#drop(id, old);
    this.#entries.set(id, e);
    this.#chars += e.text.length;
    // Oldest first; one kept or served since the walk last passed it moves to the end instead, unmarked (second
    // chance: approximately least recently used first, and a hit only sets the mark). A moved entry is dropped when
    // the walk reaches it again, so the walk ends.
    for (const [k, v] of this.#entries) {
      if (this.#entries.size <= this.#maxEntries && this.#chars <= this.#maxChars) break;
      if (v.used) {
        v.used = false;
        this.#entries.delete(k);
        this.#entries.set(k, v);
      } else this.#drop(k, v);
    }
  }

  #drop(id: string, e: Entry): void {
    this.#entries.delete(id);
    this.#chars -= e.text.length;
  }
}
