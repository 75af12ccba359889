/**
 * Store API: what processors see. Reads are async (RocksDB lives behind the native boundary; hot keys are
 * answered from the task's cache without touching it); writes are buffered in the cache and become durable,
 * together with the consumed offsets, when the task commits.
 *
 * Values handed out by `get` belong to the store's cache: mutate a copy, or mutate and `put` it back in the
 * same `process` call.
 */

/** Turns values into bytes and back. A codec must be deterministic: equal values give equal bytes. */
export interface Codec<V> {
  readonly name: string;
  encode(value: V): Buffer;
  decode(bytes: Buffer): V;
  /**
   * For a text codec: the value as the UTF-8 text `encode` would return the bytes of. The state layer then
   * writes it straight into the stored value (after its timestamp header), without an intermediate buffer.
   */
  encodeText?(value: V): string;
}

export interface KeyValue<V> {
  readonly key: string;
  readonly value: V;
}

/** A key range for scans. Bounds are compared as UTF-8 byte strings. */
export interface KeyRange {
  /** Only keys starting with this prefix. */
  readonly prefix?: string;
  /** Keys strictly greater than this one: the cursor of the previous page. */
  readonly after?: string;
  /** Keys strictly less than this one. */
  readonly before?: string;
  /** At most this many entries (a page). @default unlimited */
  readonly limit?: number;
}

/** What `peek` answers for a key whose value is not in memory: `get` reads it. */
export const NOT_LOADED: unique symbol = Symbol('kairos.not-loaded');
export type NotLoaded = typeof NOT_LOADED;

export interface ReadOnlyKeyValueStore<V> {
  readonly name: string;
  get(key: string): Promise<V | undefined>;
  /**
   * What `get` would answer, synchronously, when that needs no RocksDB read (the value is in the task's cache,
   * or the store is complete and the key absent); else NOT_LOADED. For processors that run without a promise
   * on the common path (a record whose keys the runner loaded ahead) and `await get` on the other.
   */
  peek(key: string): V | undefined | NotLoaded;
  /** Entries in key order, merged from the cache and RocksDB. Page with `after` = last key seen. */
  scan(range?: KeyRange): Promise<KeyValue<V>[]>;
}

export interface KeyValueStore<V> extends ReadOnlyKeyValueStore<V> {
  put(key: string, value: V): void;
  delete(key: string): void;
}

export interface WindowEntry<V> {
  readonly windowStart: number;
  readonly value: V;
}

/** Fixed windows per key; a window is kept for `retentionMs` of stream time after its start. */
export interface WindowStore<V> {
  readonly name: string;
  readonly windowSizeMs: number;
  put(key: string, windowStart: number, value: V): void;
  get(key: string, windowStart: number): Promise<V | undefined>;
  delete(key: string, windowStart: number): void;
  /** Windows of `key` whose start lies in [fromStart, toStart], oldest first. */
  fetch(key: string, fromStart: number, toStart: number): Promise<WindowEntry<V>[]>;
}

export interface SessionWindow {
  readonly start: number;
  readonly end: number;
}

export interface SessionEntry<V> {
  readonly key: string;
  readonly window: SessionWindow;
  readonly value: V;
}

/** Sessions per key, as in Kafka Streams' SessionStore. */
export interface SessionStore<V> {
  readonly name: string;
  /** Sessions of `key` that end at or after `earliestEnd` and start at or before `latestStart`. */
  findSessions(key: string, earliestEnd: number, latestStart: number): Promise<SessionEntry<V>[]>;
  put(key: string, window: SessionWindow, value: V): void;
  remove(key: string, window: SessionWindow): void;
}

export type StoreKind = 'key-value' | 'window' | 'session';

interface StoreSpecBase<K extends StoreKind, V> {
  readonly kind: K;
  /** Explicit, stable name: part of every RocksDB key and of the changelog topic. [a-z0-9.-]+ */
  readonly name: string;
  readonly codec: Codec<V>;
  /** Entries not written for this long (stream time) read as absent and are purged. @default none */
  readonly ttlMs?: number;
  /** Keep a changelog for this store. @default true */
  readonly changelog?: boolean;
  readonly doc?: string;
}

export interface KeyValueStoreSpec<V> extends StoreSpecBase<'key-value', V> {
  /**
   * The store is keyed by the input record's key (e.g. customerId). Runners then load the keys of a whole
   * batch of records from RocksDB in one multi-get before processing it, instead of one read per record.
   */
  readonly keyedByRecordKey?: boolean;
  /**
   * For a store keyed by something else: the key it is read with when a record of a topic reaching its
   * processors is processed, where the record tells (e.g. `sku \0 customerId` of a subscription change keyed
   * by sku). Runners load these keys with the batch's multi-get, as for `keyedByRecordKey`. Undefined: nothing
   * to load ahead. Only an optimization: a wrong or missing key costs a read, never a wrong answer; a function
   * that throws is ignored.
   */
  readonly prefetchKey?: (record: PrefetchRecord) => string | undefined;
}

/** What `prefetchKey` sees of a record: it runs before the record is processed, on the fetched batch. */
export interface PrefetchRecord {
  readonly topic: string;
  readonly key: string | null;
  readonly value: unknown;
}
export interface WindowStoreSpec<V> extends StoreSpecBase<'window', V> {
  readonly windowSizeMs: number;
  readonly retentionMs: number;
}
export interface SessionStoreSpec<V> extends StoreSpecBase<'session', V> {
  readonly retentionMs: number;
}
export type StoreSpec<V = unknown> = KeyValueStoreSpec<V> | WindowStoreSpec<V> | SessionStoreSpec<V>;

/** The store type a spec gives a processor. */
export type StoreOf<S> = S extends KeyValueStoreSpec<infer V>
  ? KeyValueStore<V>
  : S extends WindowStoreSpec<infer V>
    ? WindowStore<V>
    : S extends SessionStoreSpec<infer V>
      ? SessionStore<V>
      : never;

const STORE_NAME = /^[a-z0-9][a-z0-9.-]{0,127}$/;

function checkName(name: string): string {
  if (!STORE_NAME.test(name)) {
    throw new TypeError(`store name "${name}" must match ${String(STORE_NAME)}`);
  }
  return name;
}

export function keyValueStore<V>(name: string, codec: Codec<V>, options: Omit<KeyValueStoreSpec<V>, 'kind' | 'name' | 'codec'> = {}): KeyValueStoreSpec<V> {
  return { kind: 'key-value', name: checkName(name), codec, ...options };
}

export function windowStore<V>(
  name: string,
  codec: Codec<V>,
  options: Omit<WindowStoreSpec<V>, 'kind' | 'name' | 'codec'>,
): WindowStoreSpec<V> {
  if (!(options.windowSizeMs > 0) || !(options.retentionMs >= options.windowSizeMs)) {
    throw new TypeError(`window store "${name}": need windowSizeMs > 0 and retentionMs >= windowSizeMs`);
  }
  return { kind: 'window', name: checkName(name), codec, ...options };
}

export function sessionStore<V>(
  name: string,
  codec: Codec<V>,
  options: Omit<SessionStoreSpec<V>, 'kind' | 'name' | 'codec'>,
): SessionStoreSpec<V> {
  if (!(options.retentionMs > 0)) throw new TypeError(`session store "${name}": need retentionMs > 0`);
  return { kind: 'session', name: checkName(name), codec, ...options };
}
