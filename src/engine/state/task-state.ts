/**
 * The state of one task: one RocksDB database, a write-back cache of decoded values in front of it, and a
 * commit that writes every store change, the consumed positions and the stream time in one write batch.
 *
 * Layers, outermost first (as in Kafka Streams): store views (src/engine/state/stores.ts) → cache (here) →
 * changelog (sent at commit, before the local write) → RocksDB.
 *
 * Stored value layout: 8-byte big-endian float64 timestamp (stream time of the write, used for TTL and
 * retention) followed by the codec's bytes.
 */
import { KairosError } from '../../errors.js';
import { NOT_LOADED, type Codec, type StoreSpec } from '../api/stores.js';
import { POSITIONS_STORE, type ChangelogEntry, type ChangelogReader, type ChangelogWriter } from './changelog.js';
import { RocksDb, type BatchOp, type RocksOptions } from './rocksdb.js';
import { compareUtf8, SortedKeys } from './sorted-keys.js';

const ABSENT: unique symbol = Symbol('absent');
/**
 * `size`: estimated heap bytes of the entry (key, decoded value, bookkeeping), for the cache's memory budget.
 * `version`: a number no other entry of this process has had; a new one on every write of the entry, on every
 * load from RocksDB, and when the entry leaves the cache (so one holding the object sees it is no longer the
 * key's: `TaskState.versionsOfKey`, `streamTimeIfUnchanged`).
 * `used`: read since eviction last passed it (a second chance: eviction moves it to the recent end instead).
 */
type Cached = { value: unknown; ts: number; dirty: boolean; used: boolean; version: number; size?: number };

/**
 * Process-wide (not per task): a task reopened on the same partition, or a standby copy of it, never repeats a
 * number an earlier state gave, so a version seen once identifies one state of one entry.
 */
let lastVersion = 0;
const nextVersion = (): number => ++lastVersion;

/** The cache entry of a key RocksDB does not hold (the negative cache). */
const absentEntry = (): Cached => ({ value: ABSENT, ts: -Infinity, dirty: false, used: false, version: nextVersion() });

/**
 * Heap bytes per cache entry besides key and value: the Map slot, the entry object, its dirty-set slot, the
 * key's string header. With DECODED_FACTOR, measured on the 20 stores of a 300k-event replay's state (every
 * entry read back and decoded into a Map of entries, the heap compared after a full GC): 160 + 1.3 × encoded
 * bytes is within 5 % of the heap per entry for 17 stores (250 B for a browse session of 66 encoded bytes,
 * 2.8 kB for a history of 2 kB), 25 % under for the dedup stores, 827 B per entry over all 194k. Entries the
 * topologies build in place share strings with their inputs and take less.
 */
const ENTRY_OVERHEAD = 160;
/** A decoded value takes about this many times its encoded bytes on the heap (see ENTRY_OVERHEAD). */
const DECODED_FACTOR = 1.3;
const entrySize = (key: string, encodedBytes: number): number => ENTRY_OVERHEAD + 2 * key.length + DECODED_FACTOR * encodedBytes;
/** One write in this many is encoded (and thrown away) to measure its store's values (StoreState.avgEncoded). */
const SIZE_SAMPLE_EVERY = 32;
/** The moving average of sampled sizes weighs the last sample 1/SIZE_SAMPLE_WINDOW. */
const SIZE_SAMPLE_WINDOW = 64;

const META = '\u0001';
const STREAM_TIME_KEY = Buffer.from(`${META}stream-time`);
const OFFSET_PREFIX = `${META}offset\u0000`;
const LAG_KEY = Buffer.from(`${META}wall-lag`);
/**
 * Key of the wall-clock lag in the positions changelog (input position keys are `topic \0 partition`, and no
 * topic name is empty, so this cannot collide).
 */
const LAG_CHANGELOG_KEY = '\u0000wall-lag';
/**
 * Key of the stream time in the positions changelog, written with every commit that moves it: a restore takes
 * stream time from here, never from changelog record timestamps (a broker may set those, e.g. for a commit
 * made before the first record, or with LogAppendTime, and a wall-clock stream time would drop every event).
 */
const STREAM_TIME_CHANGELOG_KEY = '\u0000stream-time';
const HEADER = 8;

/** Internal store of persisted timers; not nameable by users (their names cannot start with '_'). */
export const TIMER_STORE = '_timers';

export interface TaskStateOptions {
  /** Directory of this task's database, e.g. <stateDir>/<applicationId>/<taskId>. */
  readonly dir: string;
  readonly taskId: string;
  readonly stores: readonly StoreSpec<unknown>[];
  readonly changelog?: ChangelogWriter;
  /** Cached entries per store (clean entries beyond this are evicted, not read recently first: second chance, see #hit). @default 2000000 */
  readonly cacheMaxEntries?: number;
  /**
   * Memory budget of the task's cache in bytes (estimated heap: keys, decoded values, bookkeeping). Over it,
   * clean entries are evicted, not read recently first, from the largest stores; uncommitted ones stay until
   * the commit. @default 128 MiB
   */
  readonly cacheMaxBytes?: number;
  readonly rocks?: RocksOptions;
}

export interface StateStats {
  cacheHits: number;
  cacheMisses: number;
  puts: number;
  deletes: number;
  commits: number;
  changelogEntries: number;
  expired: number;
  /** Keys loaded by prefetch (multi-get) rather than one read each. */
  prefetched: number;
  /** RocksDB reads made: single gets (a miss of `get`) and multi-gets (`getMany`, a prefetch of any number of stores). */
  reads: number;
  /** Scans answered from the cache (the store is complete), without RocksDB. */
  scansInMemory: number;
  /** Scans that read RocksDB. */
  scansOnDisk: number;
  /** Clean entries evicted from the cache (entry limit or memory budget). */
  evicted: number;
}

export interface CommitOptions {
  /** Expired entries deleted per store and commit. @default 1000 */
  readonly sweepLimit?: number;
  /** Runs after the changelog write and before the local RocksDB write; a rejection commits nothing locally. */
  readonly beforeLocalWrite?: () => Promise<void>;
  /**
   * Awaited after the changelog's entries are written and before the changelog write is made complete (see
   * ChangelogSendOptions), or before the local write when there is nothing to log: what must be durable
   * before the commit counts. A rejection commits nothing.
   */
  readonly beforeComplete?: () => Promise<void>;
  /**
   * Started once the changelog write is complete (after `beforeLocalWrite`), and run while RocksDB writes: the
   * commit returns when both are done (scans and the cache wait only for RocksDB). It cannot undo the commit,
   * so it must handle its own failures (a rejection is ignored). The runner sends the commit's outputs and then
   * the consumer offsets in it. With no changelog entries to write (no changelog, or nothing logged) it starts
   * while the only durable write is still landing: nothing that needs the commit complete may go in it then.
   */
  readonly alongsideLocalWrite?: () => Promise<void>;
  /**
   * Return once the local RocksDB write has started, not when it has landed: processing goes on while RocksDB
   * writes on its own thread. The next commit, scans of RocksDB and close() wait for it, and a failure of it
   * is thrown there (point reads need not: the keys it writes stay in the cache until it has landed). For
   * runners whose local copy is not the durable one (replay: a crash starts over).
   * @default false
   */
  readonly background?: boolean;
  /**
   * Take only this many bytes (the cache's size estimate) of uncommitted entries, those not read since the
   * last eviction pass first, then the oldest in the cache: a spill, so the memory budget can be met by
   * evicting them, while the entries in use stay uncommitted in the cache and are encoded once, at a later
   * commit (or never, for a temporary state). Every position and the stream time go with it, so it is only
   * for runners whose local copy is not the durable one and never resumes from a commit (replay).
   */
  readonly coldest?: number;
}

/** What a prepared commit's `finish` runs with it. */
export type FinishOptions = Pick<CommitOptions, 'beforeLocalWrite' | 'beforeComplete' | 'alongsideLocalWrite'>;

/** A commit whose changes are taken (TaskState.prepareCommit) and not written yet. */
export interface PreparedCommit {
  /** RocksDB operations the commit writes (0: nothing to commit). */
  readonly changes: number;
  /** The input positions the commit makes durable (`topic \u0000 partition` → next offset). */
  readonly positions: ReadonlyMap<string, string>;
  /** Writes the changelog, then RocksDB; rejects, with the changes kept for the next commit, on failure. */
  finish(options?: FinishOptions): Promise<{ changes: number }>;
  /** Gives the taken changes back uncommitted (the commit will not be finished). */
  abandon(): void;
}

export interface StoredEntry<V> {
  readonly key: string;
  readonly value: V;
  /** Stream time of the write. */
  readonly ts: number;
}

/** What `TaskState.versionsOfKey` answers. */
export interface EntryVersions {
  /** One per read: the entry's version, or undefined where it is not known without a read. */
  readonly versions: (number | undefined)[];
  /** The task's stream time when the versions were taken. */
  readonly streamTime: number;
  /** Stream time at which the first live entry read with a TTL expires (Infinity when none will). */
  readonly liveUntil: number;
}

/**
 * A `versionsOfKey` answer that keeps what it read: the cache entries themselves, and for a key a complete store
 * does not hold, the store (its absence version), so `TaskState.streamTimeIfUnchanged` checks them again without
 * looking the key up in each store's Map.
 */
class TakenVersions implements EntryVersions {
  constructor(
    readonly state: TaskState,
    readonly key: string,
    readonly versions: (number | undefined)[],
    readonly streamTime: number,
    readonly liveUntil: number,
    readonly entries: (Cached | undefined)[],
    readonly absentFrom: (StoreState | undefined)[],
  ) {}
}

export interface StateScan {
  readonly gte?: string;
  readonly gt?: string;
  readonly lt?: string;
  readonly prefix?: string;
  readonly limit?: number;
}

class StoreState {
  readonly cache = new Map<string, Cached>();
  /** Keys written since the last commit took its changes (prepareCommit). */
  dirty = new Set<string>();
  readonly prefix: string;
  readonly prefixBuf: Buffer;
  readonly endBuf: Buffer;
  /** TTL sweep position: the last key examined (undefined between passes). */
  sweepAfter: string | undefined;
  /** The expiry bound of the last completed sweep pass. */
  sweptBefore = -Infinity;
  /**
   * Every entry RocksDB holds for this store is also in the cache (its range was empty when the task opened or
   * restored, and no live entry was evicted since): a key the cache does not hold is absent, with no read.
   */
  complete = false;
  /**
   * The cache's keys in order, kept while the store is complete and once a scan asked for it: a complete store
   * answers scans from memory.
   */
  index: SortedKeys | undefined;
  /**
   * The version of every key a complete store does not cache (absent): renewed whenever a key leaves the cache
   * or the store becomes complete, so an answer "absent" given under one number stays true while it lasts.
   */
  absentVersion = nextVersion();

  constructor(readonly spec: StoreSpec<unknown>) {
    this.prefix = `${spec.name}\u0000`;
    this.prefixBuf = Buffer.from(this.prefix, 'utf8');
    this.endBuf = Buffer.from(`${spec.name}\u0001`, 'utf8');
  }

  /** Entries written at or before this (stream time) are expired, or -Infinity when the store keeps everything. */
  expiryBefore(streamTime: number): number {
    const ttl = this.spec.kind === 'key-value' ? this.spec.ttlMs : this.spec.retentionMs;
    return ttl === undefined ? -Infinity : streamTime - ttl;
  }

  get codec(): Codec<unknown> {
    return this.spec.codec;
  }

  /** Estimated heap bytes of this store's cache entries. */
  bytes = 0;
  /**
   * Encoded bytes per value: the size estimate of a value not encoded yet. Measured by every commit (its
   * average) and, until a full commit has measured the store, by encoding one write in SIZE_SAMPLE_EVERY (a
   * moving average of the new entries among them), so a store a replay never commits is not counted at a guess.
   */
  avgEncoded = 128;
  /**
   * A full commit (not a spill) has measured this store's values: every entry it took got its exact size and
   * the average is theirs. From then on writes are not sampled: a task that commits every few hundred
   * milliseconds (the Kafka runner) measures each entry it writes within that time anyway, and the sampling
   * would encode values a second time (about 1 % of a catch-up's CPU). A replay, which commits at the end or
   * spills only its coldest entries, keeps sampling.
   */
  measuredByCommit = false;
  /** Writes since the last one sampled for its encoded size. */
  writesSinceSample = 0;
  /** Samples taken so far, up to SIZE_SAMPLE_WINDOW (the moving average's weight). */
  samples = 0;

  /** Takes a new entry's encoded size into the moving average. */
  sampleSize(encodedBytes: number): void {
    if (this.samples < SIZE_SAMPLE_WINDOW) this.samples++;
    this.avgEncoded += (encodedBytes - this.avgEncoded) / this.samples;
  }

  /** Adds or replaces a cache entry, keeping the index and the byte count. */
  setEntry(key: string, e: Cached): void {
    const old = this.cache.get(key);
    if (old === undefined) this.index?.add(key);
    else {
      this.bytes -= old.size ?? 0;
      // No longer the key's entry: a holder of the old object sees a version it never gave (TakenVersions).
      if (old !== e) old.version = nextVersion();
    }
    e.size ??= entrySize(key, e.value === ABSENT ? 0 : this.avgEncoded);
    this.bytes += e.size;
    this.cache.set(key, e);
  }

  /** Sets an entry's size once its encoded length is known (at commit). */
  resize(key: string, e: Cached, encodedBytes: number): void {
    const size = entrySize(key, encodedBytes);
    this.bytes += size - (e.size ?? 0);
    e.size = size;
  }

  /** Drops a clean cache entry; dropping a live one makes the store incomplete. */
  dropEntry(key: string, e: Cached): void {
    this.cache.delete(key);
    this.bytes -= e.size ?? 0;
    e.version = nextVersion();
    this.absentVersion = nextVersion();
    if (e.value !== ABSENT) {
      this.complete = false;
      this.index = undefined;
    } else this.index?.delete(key);
  }

  clear(complete: boolean): void {
    for (const e of this.cache.values()) e.version = nextVersion();
    this.cache.clear();
    this.bytes = 0;
    this.dirty.clear();
    this.index = undefined;
    this.complete = complete;
    this.absentVersion = nextVersion();
  }
}

export class TaskState {
  readonly taskId: string;
  readonly stats: StateStats = { cacheHits: 0, cacheMisses: 0, puts: 0, deletes: 0, commits: 0, changelogEntries: 0, expired: 0, prefetched: 0, reads: 0, scansInMemory: 0, scansOnDisk: 0, evicted: 0 };
  readonly #db: RocksDb;
  readonly #stores = new Map<string, StoreState>();
  readonly #changelog: ChangelogWriter | undefined;
  readonly #cacheMax: number;
  readonly #cacheMaxBytes: number;
  /** An eviction pass found too few clean entries to reach the budget: retried after the next commit. */
  #budgetBlocked = false;
  readonly #positionKeys = new Map<string, string[]>();
  readonly #positions = new Map<string, string>();
  readonly #pendingPositions = new Map<string, string>();
  #streamTime = -Infinity;
  #committedStreamTime = -Infinity;
  #lag: number | undefined;
  #committedLag: number | undefined;
  #closed = false;
  /** The local write of the last commit, while it runs (CommitOptions.background). */
  #writing: Promise<void> | undefined;
  #beforePrepare: (() => void) | undefined;

  private constructor(db: RocksDb, options: TaskStateOptions) {
    this.#db = db;
    this.taskId = options.taskId;
    this.#changelog = options.changelog;
    this.#cacheMax = options.cacheMaxEntries ?? 2_000_000;
    this.#cacheMaxBytes = options.cacheMaxBytes ?? 128 * 1024 * 1024;
    for (const spec of options.stores) this.#stores.set(spec.name, new StoreState(spec));
  }

  static async open(options: TaskStateOptions): Promise<TaskState> {
    const names = new Set<string>();
    for (const s of options.stores) {
      if (names.has(s.name)) throw new KairosError('KAIROS_ERR_TOPOLOGY', `store "${s.name}" defined twice in task ${options.taskId}`);
      names.add(s.name);
    }
    const db = await RocksDb.open(options.dir, options.rocks);
    const state = new TaskState(db, options);
    const st = await db.get(STREAM_TIME_KEY);
    if (st) state.#streamTime = state.#committedStreamTime = st.readDoubleBE(0);
    const lag = await db.get(LAG_KEY);
    if (lag) state.#lag = state.#committedLag = lag.readDoubleBE(0);
    for (const [k, v] of await db.scan({ gte: Buffer.from(OFFSET_PREFIX), lt: Buffer.from(`${META}offset\u0001`) })) {
      state.#positions.set(k.toString('utf8').slice(OFFSET_PREFIX.length), v.toString('utf8'));
    }
    await state.#checkComplete();
    return state;
  }

  get location(): string {
    return this.#db.location;
  }

  get streamTime(): number {
    return this.#streamTime;
  }

  set streamTime(t: number) {
    if (t > this.#streamTime) this.#streamTime = t;
  }

  /**
   * Wall clock minus event time of the last input record processed (ms), kept with the state (and its
   * changelog) so a restarted or moved task's idle advance follows the wall clock as before; undefined until a
   * record was processed.
   */
  get wallClockLag(): number | undefined {
    return this.#lag;
  }

  set wallClockLag(lag: number | undefined) {
    this.#lag = lag;
  }

  /** Committed position per "topic\u0000partition": the offset of the next record to consume. */
  positions(): ReadonlyMap<string, string> {
    return this.#positions;
  }

  position(topic: string, partition: number): string | undefined {
    const key = this.#positionKey(topic, partition);
    return this.#pendingPositions.get(key) ?? this.#positions.get(key);
  }

  /** Records the next offset to consume; written with the next commit. */
  setPosition(topic: string, partition: number, nextOffset: string): void {
    this.#pendingPositions.set(this.#positionKey(topic, partition), nextOffset);
  }

  /** Both run once per record: the "topic \0 partition" key is built once per input. */
  #positionKey(topic: string, partition: number): string {
    let keys = this.#positionKeys.get(topic);
    if (keys === undefined) this.#positionKeys.set(topic, (keys = []));
    return (keys[partition] ??= `${topic}\u0000${partition}`);
  }

  hasStore(name: string): boolean {
    return this.#stores.has(name);
  }

  storeNames(): string[] {
    return [...this.#stores.keys()];
  }

  /** What `get` answers when that needs no RocksDB read, synchronously; else NOT_LOADED (nothing counted then). */
  peek(store: string, key: string): unknown {
    return this.#peek(this.#store(store), key);
  }

  #peek(s: StoreState, key: string): unknown {
    const cached = s.cache.get(key);
    if (cached !== undefined) return this.#hit(s, cached);
    if (!s.complete) return NOT_LOADED;
    // Nothing on disk that the cache does not hold (a fresh task, e.g. a replay): absent, without a read.
    this.stats.cacheMisses++;
    return undefined;
  }

  async get(store: string, key: string): Promise<unknown> {
    const s = this.#store(store);
    const now = this.#peek(s, key);
    if (now !== NOT_LOADED) return now;
    this.stats.cacheMisses++;
    // No wait for a commit still writing: every key it holds stays in the cache until it has landed (uncommitted
    // entries are never evicted), so a key missing here is not in it, and RocksDB has its committed value.
    this.stats.reads++;
    const bytes = await this.#db.get(s.prefix + key);
    // A put may have happened while RocksDB was read (another processor awaiting in between): it wins.
    const raced = s.cache.get(key);
    if (raced !== undefined) return this.#live(s, raced);
    const entry: Cached = bytes === undefined ? absentEntry() : this.#decode(s, key, bytes);
    s.setEntry(key, entry);
    if (s.cache.size > this.#cacheMax) this.#evict(s);
    this.#keepBudget(0);
    return this.#live(s, entry);
  }

  /**
   * Reads (store, key) pairs of several stores at once, each answered as `get` answers it: cache hits from the
   * cache, the misses with one RocksDB multi-get across the stores (the query API's customer view). A store this
   * task does not have answers undefined.
   */
  async getMany(reads: readonly (readonly [store: string, key: string])[]): Promise<unknown[]> {
    this.#checkOpen();
    const out: unknown[] = new Array<unknown>(reads.length).fill(undefined);
    let missing: { i: number; s: StoreState; key: string }[] | undefined;
    for (let i = 0; i < reads.length; i++) {
      const [store, key] = reads[i] as readonly [string, string];
      const s = this.#stores.get(store);
      if (s === undefined) continue;
      const cached = s.cache.get(key);
      if (cached !== undefined) {
        out[i] = this.#hit(s, cached);
        continue;
      }
      this.stats.cacheMisses++;
      if (s.complete) continue;
      (missing ??= []).push({ i, s, key });
    }
    if (missing === undefined) return out;
    // As in get: a key of a commit still writing is in the cache, so these reads need not wait for it.
    this.stats.reads++;
    const values = await this.#db.getMany(missing.map((m) => m.s.prefix + m.key));
    missing.forEach(({ i, s, key }, j) => {
      // A put may have happened while RocksDB was read: it wins.
      const raced = s.cache.get(key);
      if (raced !== undefined) {
        out[i] = this.#live(s, raced);
        return;
      }
      const bytes = values[j];
      const entry: Cached = bytes === undefined ? absentEntry() : this.#decode(s, key, bytes);
      s.setEntry(key, entry);
      if (s.cache.size > this.#cacheMax) this.#evict(s);
      out[i] = this.#live(s, entry);
    });
    this.#keepBudget(0);
    return out;
  }

  /**
   * The versions of one key's entries in several stores (the query API's customer view), synchronously and without reading RocksDB: equal numbers from two
   * calls mean the entry was not written (put or delete), evicted, reloaded or restored in between, so what
   * `get` answered for it then it answers now, as long as the stream time stays within
   * [`streamTime`, `liveUntil`) (entries of stores with a TTL expire by stream time, without a write). Undefined
   * where this cannot be known without a read: an entry not in the cache of a store that is not complete. A
   * store the task does not have answers 0 (it answers absent for the task's lifetime).
   *
   * Processors may change a stored object in place before they put it back: the version moves with the put, so
   * a reader comparing versions sees the change at the latest when the processor writes it (as it sees it in
   * the value then).
   */
  versionsOfKey(stores: readonly string[], key: string): EntryVersions {
    this.#checkOpen();
    const n = stores.length;
    const versions = new Array<number | undefined>(n);
    const entries = new Array<Cached | undefined>(n);
    const absentFrom = new Array<StoreState | undefined>(n);
    const streamTime = this.#streamTime;
    let liveUntil = Infinity;
    for (let i = 0; i < n; i++) {
      const s = this.#stores.get(stores[i] as string);
      if (s === undefined) {
        versions[i] = 0;
        continue;
      }
      const e = s.cache.get(key);
      if (e === undefined) {
        if (s.complete) {
          versions[i] = s.absentVersion;
          absentFrom[i] = s;
        } else versions[i] = undefined;
        continue;
      }
      versions[i] = e.version;
      entries[i] = e;
      if (e.value === ABSENT) continue;
      const ttl = s.spec.kind === 'key-value' ? s.spec.ttlMs : s.spec.retentionMs;
      // Live until stream time reaches ts + ttl (see #live); an entry expired already stays so as time moves on.
      if (ttl !== undefined && e.ts + ttl > streamTime && e.ts + ttl < liveUntil) liveUntil = e.ts + ttl;
    }
    return new TakenVersions(this, key, versions, streamTime, liveUntil, entries, absentFrom);
  }

  /**
   * The stream time now, when `versionsOfKey` would answer the versions `taken` (an answer of this state's
   * `versionsOfKey`) gives again: every entry it read is still the key's with that version, and every store that
   * did not hold the key still does not. Checked on the entries `taken` kept, without looking the key up in each
   * store (the query API's cached views check this per request). Undefined when any moved, when a version was not
   * known, or when `taken` is not this open state's.
   */
  streamTimeIfUnchanged(taken: EntryVersions): number | undefined {
    if (this.#closed || !(taken instanceof TakenVersions) || taken.state !== this) return undefined;
    const { versions, entries, absentFrom } = taken;
    for (let i = 0; i < versions.length; i++) {
      const v = versions[i];
      const e = entries[i];
      if (e !== undefined) {
        if (e.version !== v) return undefined;
        continue;
      }
      const s = absentFrom[i];
      if (s !== undefined) {
        if (s.absentVersion !== v || s.cache.has(taken.key)) return undefined;
      } else if (v !== 0) return undefined;
    }
    return this.#streamTime;
  }

  /**
   * Called at the start of every commit, before it takes the changes: a writer that buffers its own (the task's
   * timers, whose queue is their truth while the task runs) puts them into the state then.
   */
  onPrepare(fn: () => void): void {
    this.#beforePrepare = fn;
  }

  /**
   * Whether everything the store holds is in the cache (a fresh task, e.g. a replay, until its budget evicts a
   * live entry): its reads, scans and prefetches never touch RocksDB.
   */
  isComplete(store: string): boolean {
    return this.#store(store).complete;
  }

  /**
   * Loads the keys not in the cache, of every store given, with one RocksDB multi-get, so the following gets hit
   * the cache (a fetched batch touches a dozen stores; a multi-get per store was a trip through the thread pool
   * each). Keys written meanwhile keep their newer value. Returns how many keys were loaded.
   */
  async prefetchMany(reads: Iterable<readonly [store: string, keys: Iterable<string>]>): Promise<number> {
    const missing: { s: StoreState; key: string }[] = [];
    for (const [store, keys] of reads) {
      const s = this.#store(store);
      if (s.complete) continue;
      for (const key of new Set(keys)) if (!s.cache.has(key)) missing.push({ s, key });
    }
    if (missing.length === 0) return 0;
    // As in get: a key of a commit still writing is in the cache, so these reads need not wait for it.
    this.stats.reads++;
    const values = await this.#db.getMany(missing.map(({ s, key }) => s.prefix + key));
    const loaded = new Map<StoreState, number>();
    missing.forEach(({ s, key }, i) => {
      loaded.set(s, (loaded.get(s) ?? 0) + 1);
      if (s.cache.has(key)) return;
      const bytes = values[i];
      s.setEntry(key, bytes === undefined ? absentEntry() : this.#decode(s, key, bytes));
    });
    this.stats.prefetched += missing.length;
    let slack = 0;
    for (const [s, n] of loaded) {
      // Evict only down to the limit plus this batch, so the prefetched entries survive until they are read.
      if (s.cache.size > this.#cacheMax + n) this.#evict(s);
      slack += n * entrySize('', s.avgEncoded);
    }
    // As with the entry limit, the batch itself may exceed the budget until it is read.
    this.#keepBudget(slack);
    return missing.length;
  }

  put(store: string, key: string, value: unknown, ts = this.#streamTime): void {
    if (value === undefined) throw new TypeError(`store "${store}": cannot put undefined (use delete)`);
    this.#write(this.#store(store), key, value, ts);
    this.stats.puts++;
  }

  delete(store: string, key: string): void {
    this.#write(this.#store(store), key, ABSENT, this.#streamTime);
    this.stats.deletes++;
  }

  /**
   * Entries in UTF-8 key order, merging uncommitted writes over RocksDB; expired entries are skipped. A complete
   * store (RocksDB holds nothing the cache does not) is scanned in memory, through an ordered index of its keys.
   */
  async scan(store: string, range: StateScan = {}): Promise<StoredEntry<unknown>[]> {
    const s = this.#store(store);
    const lower = range.gt ?? range.gte ?? range.prefix;
    const lowerInclusive = range.gt === undefined;
    if (s.complete) return this.#scanInMemory(s, range, lower, lowerInclusive);
    this.stats.scansOnDisk++;
    let upperBuf = s.endBuf;
    if (range.prefix !== undefined) upperBuf = Buffer.concat([Buffer.from(s.prefix + range.prefix, 'utf8'), Buffer.from([0xff])]);
    if (range.lt !== undefined) {
      const lt = Buffer.from(s.prefix + range.lt, 'utf8');
      if (Buffer.compare(lt, upperBuf) < 0) upperBuf = lt;
    }
    const lowerBuf = Buffer.from(s.prefix + (lower ?? ''), 'utf8');
    const inRange = (key: string): boolean => {
      if (range.prefix !== undefined && !key.startsWith(range.prefix)) return false;
      if (lower !== undefined) {
        const c = compareUtf8(key, lower);
        if (c < 0 || (c === 0 && !lowerInclusive)) return false;
      }
      return Buffer.compare(Buffer.from(s.prefix + key, 'utf8'), upperBuf) < 0;
    };
    const limit = range.limit ?? Infinity;
    // Uncommitted deletes can hide rows, so over-read by the number of dirty entries.
    const dbLimit = Number.isFinite(limit) ? limit + s.dirty.size : undefined;
    // A scan does wait: the keys a commit still writing took are no longer in `dirty`, and a new key of it
    // would be missing from both sides of the merge until RocksDB holds it.
    if (this.#writing) await this.#landed();
    const rows = await this.#db.scan({
      ...(lowerInclusive ? { gte: lowerBuf } : { gt: lowerBuf }),
      lt: upperBuf,
      ...(dbLimit === undefined ? {} : { limit: dbLimit }),
    });
    const merged = new Map<string, Cached>();
    for (const [k, v] of rows) {
      const key = k.toString('utf8').slice(s.prefix.length);
      merged.set(key, s.cache.get(key) ?? this.#decode(s, key, v));
    }
    for (const key of s.dirty) {
      if (inRange(key)) merged.set(key, s.cache.get(key) as Cached);
    }
    const keys = [...merged.keys()].sort(compareUtf8);
    const out: StoredEntry<unknown>[] = [];
    for (const key of keys) {
      if (out.length >= limit) break;
      const e = merged.get(key) as Cached;
      const value = this.#live(s, e);
      if (value !== undefined) out.push({ key, value, ts: e.ts });
    }
    return out;
  }

  #scanInMemory(s: StoreState, range: StateScan, lower: string | undefined, lowerInclusive: boolean): StoredEntry<unknown>[] {
    this.stats.scansInMemory++;
    const limit = range.limit ?? Infinity;
    const out: StoredEntry<unknown>[] = [];
    // An empty store (the timers' scan when a fresh task opens) needs no index, which every put would then keep.
    if (limit <= 0 || s.cache.size === 0) return out;
    const { prefix } = range;
    let from = lower;
    let exclusive = !lowerInclusive;
    // Keys with the prefix are one contiguous range starting at the prefix itself.
    if (prefix !== undefined && (from === undefined || compareUtf8(from, prefix) < 0)) {
      from = prefix;
      exclusive = false;
    }
    s.index ??= SortedKeys.from(s.cache.keys());
    s.index.forRange(from, exclusive, range.lt, (key) => {
      if (prefix !== undefined && !key.startsWith(prefix)) return false;
      const e = s.cache.get(key) as Cached;
      const value = this.#live(s, e);
      if (value !== undefined) out.push({ key, value, ts: e.ts });
      return out.length < limit;
    });
    return out;
  }

  /** Timestamp of an entry's last write, if it is live. */
  async timestampOf(store: string, key: string): Promise<number | undefined> {
    const value = await this.get(store, key);
    return value === undefined ? undefined : this.#store(store).cache.get(key)?.ts;
  }

  /** The cache's memory budget in bytes (TaskStateOptions.cacheMaxBytes). */
  get cacheMaxBytes(): number {
    return this.#cacheMaxBytes;
  }

  /** Number of uncommitted changes: the runner commits when this grows large. */
  get dirtyCount(): number {
    let n = 0;
    for (const s of this.#stores.values()) n += s.dirty.size;
    return n;
  }

  /**
   * Makes every change since the last commit durable: changelog first, then one RocksDB write batch holding
   * the store changes, the positions and the stream time. Also sweeps a bounded number of expired entries.
   */
  async commit(options: CommitOptions = {}): Promise<{ changes: number }> {
    const prepared = await this.prepareCommit(options);
    if (options.background !== true) return prepared.finish(options);
    const done = prepared.finish(options);
    // A handler now, so a failure nobody awaits yet is not an unhandled rejection; #landed() rethrows it.
    done.catch(() => undefined);
    this.#writing = done.then(() => undefined);
    return { changes: prepared.changes };
  }

  /** Waits until the last commit's background write has landed (its failure is thrown here, once). */
  async landed(): Promise<void> {
    if (this.#writing) await this.#landed();
  }

  /**
   * The first half of a commit: sweeps expired entries and takes every change since the last commit (encoded,
   * with the positions, stream time and lag as they are now). Processing may go on once this returns: what it
   * writes belongs to the next commit. `finish()` writes what was taken (changelog, then RocksDB) and only then
   * marks it committed; until it has landed, scans of RocksDB and the next commit wait for it, and the taken
   * entries stay in the cache (uncommitted entries are never evicted), so point reads of other keys need not.
   * If `finish()` fails, or `abandon()` is called, the taken changes stay uncommitted and go with the next
   * commit, with whatever was written since.
   */
  async prepareCommit(options: Pick<CommitOptions, 'sweepLimit' | 'coldest'> = {}): Promise<PreparedCommit> {
    this.#checkOpen();
    // One commit at a time, in order; a failed background write fails this commit.
    if (this.#writing) await this.#landed();
    // A spill is about memory: expired entries wait for a full commit (reads hide them already).
    if (options.coldest === undefined) await this.#sweepExpired(options.sweepLimit ?? 1000);
    this.#beforePrepare?.();
    const ops: BatchOp[] = [];
    const entries: ChangelogEntry[] = [];
    const streamTime = this.#streamTime;
    const dropAfter: [StoreState, string][] = [];
    const taken: [StoreState, Set<string>][] = [];
    const spill = options.coldest === undefined ? undefined : this.#coldest(options.coldest);
    for (const s of this.#stores.values()) {
      if (s.dirty.size === 0) continue;
      let encodedBytes = 0;
      let encodedCount = 0;
      // Changelog entries only where a changelog is written (not in replay). RocksDB keys go to the binding as
      // strings (it encodes them): a Buffer per key only for the changelog.
      const logged = this.#changelog !== undefined && s.spec.changelog !== false;
      let keys = s.dirty;
      if (spill === undefined) s.dirty = new Set();
      else {
        const picked = spill.get(s);
        if (picked === undefined) continue;
        keys = picked;
        for (const key of keys) s.dirty.delete(key);
      }
      taken.push([s, keys]);
      for (const key of keys) {
        const e = s.cache.get(key) as Cached;
        if (s.complete && e.value === ABSENT) dropAfter.push([s, key]);
        const full = s.prefix + key;
        if (e.value === ABSENT) {
          ops.push({ type: 'del', key: full });
          if (logged) entries.push({ store: s.spec.name, key: Buffer.from(key, 'utf8'), value: null, timestamp: streamTime });
        } else {
          const value = this.#encode(s, e);
          s.resize(key, e, value.length);
          encodedBytes += value.length;
          encodedCount++;
          ops.push({ type: 'put', key: full, value });
          if (logged) entries.push({ store: s.spec.name, key: Buffer.from(key, 'utf8'), value, timestamp: streamTime });
        }
      }
      if (encodedCount > 0) {
        s.avgEncoded = Math.ceil(encodedBytes / encodedCount);
        if (spill === undefined) s.measuredByCommit = true;
      }
      if (spill !== undefined && encodedCount > 0) {
        // The entries a spill leaves uncommitted keep the estimate they got when written, from the average of
        // some earlier commit (or a guess before the first): raised to the average just measured, so the budget
        // counts what the cache holds. A full commit measures them all.
        for (const key of s.dirty) {
          const e = s.cache.get(key) as Cached;
          const estimate = entrySize(key, e.value === ABSENT ? 0 : s.avgEncoded);
          if ((e.size ?? 0) < estimate) s.resize(key, e, e.value === ABSENT ? 0 : s.avgEncoded);
        }
      }
    }
    const positions = new Map(this.#pendingPositions);
    for (const [k, v] of positions) {
      ops.push({ type: 'put', key: Buffer.from(OFFSET_PREFIX + k, 'utf8'), value: Buffer.from(v, 'utf8') });
      if (this.#changelog) entries.push({ store: POSITIONS_STORE, key: Buffer.from(k, 'utf8'), value: Buffer.from(v, 'utf8'), timestamp: streamTime });
    }
    if (streamTime !== this.#committedStreamTime) {
      const b = Buffer.allocUnsafe(8);
      b.writeDoubleBE(streamTime, 0);
      ops.push({ type: 'put', key: STREAM_TIME_KEY, value: b });
      if (this.#changelog && Number.isFinite(streamTime)) {
        entries.push({ store: POSITIONS_STORE, key: Buffer.from(STREAM_TIME_CHANGELOG_KEY, 'utf8'), value: Buffer.from(String(streamTime), 'utf8'), timestamp: streamTime });
      }
    }
    const lag = this.#lag;
    // Only with other changes: a lag alone is not worth a commit.
    const withLag = lag !== undefined && lag !== this.#committedLag && ops.length > 0;
    if (withLag) {
      const b = Buffer.allocUnsafe(8);
      b.writeDoubleBE(lag, 0);
      ops.push({ type: 'put', key: LAG_KEY, value: b });
      if (this.#changelog) entries.push({ store: POSITIONS_STORE, key: Buffer.from(LAG_CHANGELOG_KEY, 'utf8'), value: Buffer.from(String(lag), 'utf8'), timestamp: streamTime });
    }
    let settled = false;
    let release: () => void = () => undefined;
    const giveBack = (): void => {
      for (const [s, keys] of taken) for (const key of keys) s.dirty.add(key);
    };
    const settle = (): void => {
      settled = true;
      release();
    };
    const finish = async (o: FinishOptions = {}): Promise<{ changes: number }> => {
      if (settled) throw new Error(`task ${this.taskId}: a prepared commit finished twice`);
      if (ops.length === 0) {
        settle();
        await o.beforeComplete?.();
        await o.beforeLocalWrite?.();
        await o.alongsideLocalWrite?.().catch(() => undefined);
        return { changes: 0 };
      }
      // Until this commit has landed, scans of RocksDB (which does not hold it yet) and the next commit wait.
      const landed = new Promise<void>((resolve) => (release = resolve));
      this.#writing = landed;
      // Runs on once RocksDB has landed (scans and the cache need not wait for it); awaited before returning.
      let alongside: Promise<void> | undefined;
      try {
        const changelog = entries.length > 0 ? this.#changelog : undefined;
        if (changelog === undefined) await o.beforeComplete?.();
        else {
          try {
            const checkpoint = await changelog.send(this.taskId, entries, o.beforeComplete ? { beforeComplete: o.beforeComplete } : {});
            // The changelog positions reached go into the same batch: local state says how far the log covers it.
            if (checkpoint) {
              for (const [k, v] of checkpoint) {
                ops.push({ type: 'put', key: Buffer.from(OFFSET_PREFIX + k, 'utf8'), value: Buffer.from(v, 'utf8') });
                positions.set(k, v);
              }
            }
          } catch (err) {
            throw new KairosError('KAIROS_ERR_CHANGELOG', `task ${this.taskId}: changelog write failed; nothing committed`, { cause: err });
          }
          this.stats.changelogEntries += entries.length;
        }
        // Exactly-once: the Kafka transaction (outputs, changelog, offsets) commits here; if it fails, nothing is
        // written locally and the caller rebuilds the task from disk.
        await o.beforeLocalWrite?.();
        alongside = o.alongsideLocalWrite?.().catch(() => undefined);
        await this.#db.batch(ops);
      } catch (err) {
        giveBack();
        settle();
        await alongside;
        throw err;
      }
      for (const [s, keys] of taken) {
        for (const key of keys) {
          // Written again since it was taken: still uncommitted.
          if (s.dirty.has(key)) continue;
          const e = s.cache.get(key);
          if (e) e.dirty = false;
        }
        if (s.cache.size > this.#cacheMax) this.#evict(s);
      }
      for (const [s, key] of dropAfter) {
        const e = s.cache.get(key);
        // A complete store needs no record of a deleted key: absent from the cache means absent.
        if (e !== undefined && !e.dirty && e.value === ABSENT) s.dropEntry(key, e);
      }
      if (spill !== undefined) {
        // What a spill wrote leaves the cache, unless it was written or read again meanwhile.
        for (const [s, keys] of taken) {
          for (const key of keys) {
            const e = s.cache.get(key);
            if (e === undefined || e.dirty || e.used) continue;
            s.dropEntry(key, e);
            this.stats.evicted++;
          }
        }
      }
      for (const [k, v] of positions) {
        this.#positions.set(k, v);
        // Positions moved on since they were taken stay pending for the next commit.
        if (this.#pendingPositions.get(k) === v) this.#pendingPositions.delete(k);
      }
      this.#committedStreamTime = streamTime;
      if (withLag) this.#committedLag = lag;
      this.#budgetBlocked = false;
      this.stats.commits++;
      settle();
      // What was taken is clean now: the memory budget can be met.
      this.#keepBudget(0);
      await alongside;
      return { changes: ops.length };
    };
    return {
      changes: ops.length,
      positions,
      finish,
      abandon: () => {
        if (settled) return;
        giveBack();
        settle();
      },
    };
  }

  /**
   * Uncommitted keys worth at least `bytes` of the cache's estimate (or all there are), per store: first those
   * not read since the last eviction pass, oldest in the cache first, from the largest stores down; then, if
   * that is not enough, the others in the same order. The spill drops them from the cache once written, except
   * those written or read again by then.
   */
  #coldest(bytes: number): Map<StoreState, Set<string>> {
    const out = new Map<StoreState, Set<string>>();
    let total = 0;
    const stores = [...this.#stores.values()].filter((s) => s.dirty.size > 0).sort((a, b) => b.bytes - a.bytes);
    for (const used of [false, true]) {
      for (const s of stores) {
        let keys = out.get(s);
        for (const [key, e] of s.cache) {
          if (total >= bytes) return out;
          if (!e.dirty || e.used !== used || !s.dirty.has(key)) continue;
          if (keys === undefined) out.set(s, (keys = new Set()));
          keys.add(key);
          total += e.size ?? 0;
          // Its second chance, as an eviction pass gives it: read again before the spill lands, it stays.
          e.used = false;
        }
      }
    }
    return out;
  }

  /**
   * Writes the current value (or a delete) of these keys again with the next commit, and every position:
   * after a restore that skipped changelog records of a commit cut short, the rewrite supersedes them.
   */
  async rewrite(keys: ReadonlyMap<string, ReadonlySet<string>>, positions: boolean): Promise<number> {
    let n = 0;
    for (const [store, set] of keys) {
      if (!this.#stores.has(store)) continue;
      for (const key of set) {
        const value = await this.get(store, key);
        if (value === undefined) this.delete(store, key);
        else this.put(store, key, value);
        n++;
      }
    }
    if (positions) for (const [k, v] of this.#positions) if (!this.#pendingPositions.has(k)) this.#pendingPositions.set(k, v);
    return n;
  }

  /** Applies changelog entries straight to RocksDB (restore); returns how many applied. The cache is dropped. */
  async restore(entries: readonly ChangelogEntry[]): Promise<number> {
    this.#checkOpen();
    if (this.#writing) await this.#landed();
    const ops: BatchOp[] = [];
    let applied = 0;
    for (const e of entries) {
      applied++;
      if (e.store === POSITIONS_STORE) {
        const k = e.key.toString('utf8');
        if (e.value === null) continue;
        if (k === STREAM_TIME_CHANGELOG_KEY) {
          const t = Number(e.value.toString('utf8'));
          if (Number.isFinite(t) && t > this.#streamTime) this.#streamTime = t;
          continue;
        }
        // Other keys starting with U+0000 are the changelog's own (commit markers, outbox), not input positions.
        if (k.startsWith('\u0000') && k !== LAG_CHANGELOG_KEY) continue;
        if (k === LAG_CHANGELOG_KEY) {
          const lag = Number(e.value.toString('utf8'));
          if (Number.isFinite(lag)) {
            const b = Buffer.allocUnsafe(8);
            b.writeDoubleBE(lag, 0);
            ops.push({ type: 'put', key: LAG_KEY, value: b });
            this.#lag = this.#committedLag = lag;
          }
          continue;
        }
        ops.push({ type: 'put', key: Buffer.from(OFFSET_PREFIX + k, 'utf8'), value: e.value });
        this.#positions.set(k, e.value.toString('utf8'));
        continue;
      }
      const s = this.#stores.get(e.store);
      if (!s) {
        applied--;
        continue;
      }
      const full = Buffer.concat([s.prefixBuf, e.key]);
      ops.push(e.value === null ? { type: 'del', key: full } : { type: 'put', key: full, value: e.value });
    }
    if (Number.isFinite(this.#streamTime) && this.#streamTime !== this.#committedStreamTime) {
      const b = Buffer.allocUnsafe(8);
      b.writeDoubleBE(this.#streamTime, 0);
      ops.push({ type: 'put', key: STREAM_TIME_KEY, value: b });
      this.#committedStreamTime = this.#streamTime;
    }
    await this.#db.batch(ops);
    for (const s of this.#stores.values()) s.clear(false);
    await this.#checkComplete();
    return applied;
  }

  async restoreFrom(reader: ChangelogReader): Promise<number> {
    let n = 0;
    for await (const batch of reader.read(this.taskId)) n += await this.restore(batch);
    return n;
  }

  /** Approximate on-disk bytes of one store, or of the whole task. */
  async approximateSize(store?: string): Promise<number> {
    if (this.#writing) await this.#landed();
    if (store === undefined) return this.#db.approximateSize(Buffer.from([0]), Buffer.from([0xff]));
    const s = this.#store(store);
    return this.#db.approximateSize(s.prefixBuf, s.endBuf);
  }

  rocksProperty(name: string): string {
    return this.#db.property(name);
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** Closes RocksDB. Uncommitted changes are dropped: commit first. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    let failed: unknown;
    try {
      if (this.#writing) await this.#landed();
    } catch (err) {
      failed = err;
    }
    await this.#db.close();
    if (failed !== undefined) throw failed;
  }

  /** Waits for the last commit's background write; its failure is thrown once, here. */
  async #landed(): Promise<void> {
    const writing = this.#writing;
    try {
      await writing;
    } finally {
      if (this.#writing === writing) this.#writing = undefined;
    }
  }

  #store(name: string): StoreState {
    this.#checkOpen();
    const s = this.#stores.get(name);
    if (!s) throw new KairosError('KAIROS_ERR_STORE_NOT_CONNECTED', `task ${this.taskId} has no store "${name}"`);
    return s;
  }

  #checkOpen(): void {
    if (this.#closed) throw new KairosError('KAIROS_ERR_STATE_CLOSED', `task ${this.taskId}: state is closed`);
  }

  /**
   * A read the cache answers: counted, and the entry marked used. Eviction gives a used entry a second chance
   * (CLOCK, in the Map's insertion order) rather than every read moving it to the recent end: a delete and a
   * re-insert per read cost more than the read, on every read of every record.
   */
  #hit(s: StoreState, cached: Cached): unknown {
    this.stats.cacheHits++;
    cached.used = true;
    return this.#live(s, cached);
  }

  /**
   * Whether eviction may drop a clean entry now. A used one is not: it loses the mark and moves to the recent
   * end of its store's Map (where the running eviction pass meets it again, after the entries not read since).
   */
  #evictable(s: StoreState, key: string, e: Cached): boolean {
    if (!e.used) return true;
    e.used = false;
    s.cache.delete(key);
    s.cache.set(key, e);
    return false;
  }

  #live(s: StoreState, e: Cached): unknown {
    if (e.value === ABSENT) return undefined;
    const before = s.expiryBefore(this.#streamTime);
    if (before !== -Infinity && e.ts <= before) return undefined;
    return e.value;
  }

  #write(s: StoreState, key: string, value: unknown, ts: number): void {
    // The entry's size: measured for one write in SIZE_SAMPLE_EVERY; else a new entry gets the store's average
    // of new entries and a rewritten one keeps its last size (a key written often, whose value grows — a basket,
    // a customer's history — is measured again often; an average over all writes would count every entry at
    // the size of the most written ones). Once a full commit has measured the store, its commits measure
    // every entry (StoreState.measuredByCommit).
    let encoded = value === ABSENT ? 0 : -1;
    if (encoded < 0 && !s.measuredByCommit && ++s.writesSinceSample >= SIZE_SAMPLE_EVERY) {
      s.writesSinceSample = 0;
      encoded = this.#encodedLength(s, value);
    }
    const e = s.cache.get(key);
    if (e) {
      e.value = value;
      e.ts = ts;
      e.dirty = true;
      e.version = nextVersion();
      if (encoded >= 0) s.resize(key, e, encoded);
    } else {
      const added: Cached = { value, ts, dirty: true, used: false, version: nextVersion() };
      if (encoded > 0) {
        s.sampleSize(encoded);
        added.size = entrySize(key, encoded);
      }
      s.setEntry(key, added);
    }
    s.dirty.add(key);
  }

  /** Encoded bytes of a value (without the header), for the size estimate. */
  #encodedLength(s: StoreState, value: unknown): number {
    const codec = s.codec;
    return codec.encodeText === undefined ? codec.encode(value).length : Buffer.byteLength(codec.encodeText(value), 'utf8');
  }

  #decode(s: StoreState, key: string, bytes: Buffer): Cached {
    try {
      return { value: s.codec.decode(bytes.subarray(HEADER)), ts: bytes.readDoubleBE(0), dirty: false, used: false, version: nextVersion(), size: entrySize(key, bytes.length) };
    } catch (err) {
      throw new KairosError('KAIROS_ERR_STATE_CORRUPT', `store "${s.spec.name}" key "${key}": cannot decode with codec ${s.codec.name}`, { cause: err });
    }
  }

  #encode(s: StoreState, e: Cached): Buffer {
    const codec = s.codec;
    if (codec.encodeText !== undefined) {
      // One buffer per value: the header, then the text encoded in place.
      const text = codec.encodeText(e.value);
      const out = Buffer.allocUnsafe(HEADER + Buffer.byteLength(text, 'utf8'));
      out.writeDoubleBE(e.ts, 0);
      out.write(text, HEADER, 'utf8');
      return out;
    }
    const body = codec.encode(e.value);
    const out = Buffer.allocUnsafe(HEADER + body.length);
    out.writeDoubleBE(e.ts, 0);
    body.copy(out, HEADER);
    return out;
  }

  /** Estimated heap bytes of the cache (every store). */
  get cacheBytes(): number {
    let n = 0;
    for (const s of this.#stores.values()) n += s.bytes;
    return n;
  }

  /**
   * Keeps the cache within its memory budget (plus `slack`, e.g. a prefetched batch not read yet): evicts
   * clean entries, not read recently first, from the largest stores down to 90 % of the budget. When
   * uncommitted entries alone exceed it, nothing more can go until the next commit, so no pass runs until then
   * (a pass over dirty entries on every read would make a large uncommitted wave quadratic).
   */
  #keepBudget(slack: number): void {
    if (this.#budgetBlocked) return;
    let total = this.cacheBytes;
    if (total <= this.#cacheMaxBytes + slack) return;
    const target = this.#cacheMaxBytes * 0.9;
    for (const s of [...this.#stores.values()].sort((a, b) => b.bytes - a.bytes)) {
      for (const [key, e] of s.cache) {
        if (total <= target) return;
        if (e.dirty || !this.#evictable(s, key, e)) continue;
        total -= e.size ?? 0;
        s.dropEntry(key, e);
        this.stats.evicted++;
      }
    }
    this.#budgetBlocked = true;
  }

  #evict(s: StoreState): void {
    const target = Math.floor(this.#cacheMax * 0.9);
    // Dirty entries stay until the next commit. When they alone fill the cache, scanning past them for a few
    // clean ones on every access would make a large uncommitted wave quadratic: wait until a tenth of the cache
    // (or all that is needed) is clean, so each scan frees many entries.
    const clean = s.cache.size - s.dirty.size;
    if (clean < Math.min(s.cache.size - target, Math.ceil(this.#cacheMax * 0.1))) return;
    for (const [key, e] of s.cache) {
      if (s.cache.size <= target) break;
      if (e.dirty || !this.#evictable(s, key, e)) continue;
      // A live entry leaves the cache: from now on a miss must read RocksDB.
      s.dropEntry(key, e);
      this.stats.evicted++;
    }
  }

  /** Marks complete the stores whose range holds nothing in RocksDB (their caches must be empty). */
  async #checkComplete(): Promise<void> {
    for (const s of this.#stores.values()) {
      s.complete = s.cache.size === 0 && (await this.#db.scan({ gte: s.prefixBuf, lt: s.endBuf, limit: 1 })).length === 0;
      s.absentVersion = nextVersion();
    }
  }

  /**
   * Deletes up to `limit` expired entries per store, resuming where the last sweep stopped. A new pass over a
   * store starts only once its expiry bound moved by a tenth of its TTL (at most a minute of stream time) since
   * the last pass: reads already hide expired entries, so sweeping is about disk, not correctness, and a scan
   * on every commit would be hot-path work for nothing.
   */
  async #sweepExpired(limit: number): Promise<void> {
    for (const s of this.#stores.values()) {
      const before = s.expiryBefore(this.#streamTime);
      if (before === -Infinity || limit <= 0) continue;
      const ttl = this.#streamTime - before;
      if (s.sweepAfter === undefined && before - s.sweptBefore < Math.min(ttl / 10, 60_000)) continue;
      if (s.complete) {
        // Everything the store holds is cached: sweep the cache, no RocksDB scan.
        let n = 0;
        for (const [key, e] of s.cache) {
          if (n >= limit) break;
          if (!e.dirty && e.value !== ABSENT && e.ts <= before) {
            this.#write(s, key, ABSENT, this.#streamTime);
            this.stats.expired++;
            n++;
          }
        }
        if (n < limit) s.sweptBefore = before;
        continue;
      }
      const rows = await this.#db.scan({
        ...(s.sweepAfter === undefined ? { gte: s.prefixBuf } : { gt: Buffer.from(s.prefix + s.sweepAfter, 'utf8') }),
        lt: s.endBuf,
        limit,
      });
      for (const [k, v] of rows) {
        const key = k.toString('utf8').slice(s.prefix.length);
        const cached = s.cache.get(key);
        const ts = cached ? cached.ts : v.readDoubleBE(0);
        if (ts <= before && cached?.dirty !== true) {
          this.#write(s, key, ABSENT, this.#streamTime);
          this.stats.expired++;
        }
      }
      const last = rows[rows.length - 1];
      s.sweepAfter = rows.length < limit || !last ? undefined : last[0].toString('utf8').slice(s.prefix.length);
      if (s.sweepAfter === undefined) s.sweptBefore = before;
    }
  }
}
