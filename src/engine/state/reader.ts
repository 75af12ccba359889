/**
 * Read-only access to one task's state for queries (the HTTP API): an active task, or a standby copy that
 * says how far behind it is. Reads go through the task state's cache, so they see uncommitted writes of an
 * active task (as Kafka Streams' interactive queries do).
 */
import type { TimerDomain } from '../api/processor.js';
import type { KeyValueStoreSpec } from '../api/stores.js';
import type { EntryVersions, StateScan, TaskState } from './task-state.js';

export type { EntryVersions } from './task-state.js';

export interface TimerInfo {
  /** The processor that registered it. */
  readonly processor: string;
  readonly name: string;
  /** When it fires (epoch ms, in its domain). */
  readonly time: number;
  readonly domain: TimerDomain;
}

export interface StateReader {
  readonly source: 'active' | 'standby';
  readonly partition: number;
  /** The task's stream time (largest event time applied), -Infinity before any. */
  readonly streamTime: number;
  /** Standby only: changelog records the copy has not applied yet (undefined when unknown). */
  readonly lagRecords: number | undefined;
  get<V>(spec: KeyValueStoreSpec<V>, key: string): Promise<V | undefined>;
  /**
   * One key in several stores, answered as `get` answers each, with one multi-get for what the cache does not
   * hold (absent stores: undefined). Optional: a reader without it is read with `get` per store.
   */
  getMany?<const S extends readonly KeyValueStoreSpec<unknown>[]>(specs: S, key: string): Promise<ValuesOf<S>>;
  scan<V>(spec: KeyValueStoreSpec<V>, range: StateScan): Promise<{ key: string; value: V }[]>;
  /**
   * Versions of one key in several stores, synchronously (TaskState.versionsOfKey): equal and defined in two calls,
   * with the stream time in the range they state, `get` and `getMany` answer the same for them. Optional: a
   * reader without it never lets its answers be reused.
   */
  versions?(specs: readonly KeyValueStoreSpec<unknown>[], key: string): EntryVersions;
  /**
   * The state's stream time now, when `versions` would answer again the versions `taken` (an answer of this
   * reader's `versions`) gives, checked on the entries it kept rather than by a lookup per store
   * (TaskState.streamTimeIfUnchanged); undefined when any moved or `taken` is another state's. Optional.
   */
  streamTimeIfUnchanged?(taken: EntryVersions): number | undefined;
  /** Pending timers of a key (undefined where not known: a standby copy keeps timers only on disk). */
  timers(key: string): TimerInfo[] | undefined;
}

/** The values `getMany` answers for a list of store specs. */
export type ValuesOf<S extends readonly KeyValueStoreSpec<unknown>[]> = { -readonly [K in keyof S]: S[K] extends KeyValueStoreSpec<infer V> ? V | undefined : never };

/** The names of a list of store specs, computed once per list (the API passes the same constant list each time). */
const namesOf = new WeakMap<readonly KeyValueStoreSpec<unknown>[], readonly string[]>();
function storeNames(specs: readonly KeyValueStoreSpec<unknown>[]): readonly string[] {
  let names = namesOf.get(specs);
  if (names === undefined) {
    names = specs.map((s) => s.name);
    namesOf.set(specs, names);
  }
  return names;
}

export function stateReader(
  state: TaskState,
  opts: { source: 'active' | 'standby'; partition: number; lagRecords?: number; timers?: (key: string) => TimerInfo[] },
): StateReader {
  return {
    source: opts.source,
    partition: opts.partition,
    streamTime: state.streamTime,
    lagRecords: opts.lagRecords,
    async get<V>(spec: KeyValueStoreSpec<V>, key: string): Promise<V | undefined> {
      if (!state.hasStore(spec.name)) return undefined;
      return (await state.get(spec.name, key)) as V | undefined;
    },
    async getMany<const S extends readonly KeyValueStoreSpec<unknown>[]>(specs: S, key: string): Promise<ValuesOf<S>> {
      return (await state.getMany(specs.map((spec) => [spec.name, key] as const))) as ValuesOf<S>;
    },
    async scan<V>(spec: KeyValueStoreSpec<V>, range: StateScan): Promise<{ key: string; value: V }[]> {
      if (!state.hasStore(spec.name)) return [];
      return (await state.scan(spec.name, range)).map((e) => ({ key: e.key, value: e.value as V }));
    },
    versions: (specs, key) => state.versionsOfKey(storeNames(specs), key),
    streamTimeIfUnchanged: (taken) => state.streamTimeIfUnchanged(taken),
    timers: (key) => opts.timers?.(key),
  };
}
