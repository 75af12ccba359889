/**
 * Store views: the typed KeyValueStore / WindowStore / SessionStore a processor gets, over a TaskState.
 * Window and session keys are composite: `<key>\0<16-digit zero-padded time>`, so RocksDB's byte order is
 * time order within a key.
 */
import type {
  KeyRange,
  KeyValue,
  KeyValueStore,
  KeyValueStoreSpec,
  NotLoaded,
  SessionEntry,
  SessionStore,
  SessionStoreSpec,
  SessionWindow,
  StoreSpec,
  WindowEntry,
  WindowStore,
  WindowStoreSpec,
} from '../api/stores.js';
import type { TaskState } from './task-state.js';

const SEP = '\u0000';
const pad = (t: number): string => {
  if (!Number.isInteger(t) || t < 0) throw new RangeError(`store time must be a non-negative integer, got ${t}`);
  return t.toString().padStart(16, '0');
};
function checkKey(key: string): string {
  if (key.includes(SEP)) throw new TypeError('window and session store keys cannot contain U+0000');
  return key;
}

export class KeyValueView<V> implements KeyValueStore<V> {
  constructor(
    private readonly state: TaskState,
    readonly name: string,
  ) {}

  get(key: string): Promise<V | undefined> {
    return this.state.get(this.name, key) as Promise<V | undefined>;
  }

  peek(key: string): V | undefined | NotLoaded {
    return this.state.peek(this.name, key) as V | undefined | NotLoaded;
  }

  put(key: string, value: V): void {
    this.state.put(this.name, key, value);
  }

  delete(key: string): void {
    this.state.delete(this.name, key);
  }

  async scan(range: KeyRange = {}): Promise<KeyValue<V>[]> {
    const rows = await this.state.scan(this.name, {
      ...(range.prefix === undefined ? {} : { prefix: range.prefix }),
      ...(range.after === undefined ? {} : { gt: range.after }),
      ...(range.before === undefined ? {} : { lt: range.before }),
      ...(range.limit === undefined ? {} : { limit: range.limit }),
    });
    return rows.map((r) => ({ key: r.key, value: r.value as V }));
  }
}

export class WindowView<V> implements WindowStore<V> {
  readonly windowSizeMs: number;
  constructor(
    private readonly state: TaskState,
    spec: WindowStoreSpec<V>,
  ) {
    this.name = spec.name;
    this.windowSizeMs = spec.windowSizeMs;
  }
  readonly name: string;

  put(key: string, windowStart: number, value: V): void {
    // The write's timestamp is the window start, so retention counts from it.
    this.state.put(this.name, checkKey(key) + SEP + pad(windowStart), value, windowStart);
  }

  get(key: string, windowStart: number): Promise<V | undefined> {
    return this.state.get(this.name, checkKey(key) + SEP + pad(windowStart)) as Promise<V | undefined>;
  }

  delete(key: string, windowStart: number): void {
    this.state.delete(this.name, checkKey(key) + SEP + pad(windowStart));
  }

  async fetch(key: string, fromStart: number, toStart: number): Promise<WindowEntry<V>[]> {
    const base = checkKey(key) + SEP;
    const rows = await this.state.scan(this.name, { gte: base + pad(Math.max(0, fromStart)), lt: base + pad(toStart + 1) });
    return rows.map((r) => ({ windowStart: Number(r.key.slice(base.length)), value: r.value as V }));
  }
}

export class SessionView<V> implements SessionStore<V> {
  readonly name: string;
  constructor(
    private readonly state: TaskState,
    spec: SessionStoreSpec<V>,
  ) {
    this.name = spec.name;
  }

  async findSessions(key: string, earliestEnd: number, latestStart: number): Promise<SessionEntry<V>[]> {
    const base = checkKey(key) + SEP;
    const rows = await this.state.scan(this.name, { gte: base + pad(Math.max(0, earliestEnd)), prefix: base });
    const out: SessionEntry<V>[] = [];
    for (const r of rows) {
      const [end, start] = r.key.slice(base.length).split(SEP).map(Number) as [number, number];
      if (start <= latestStart) out.push({ key, window: { start, end }, value: r.value as V });
    }
    return out.sort((a, b) => a.window.start - b.window.start);
  }

  put(key: string, window: SessionWindow, value: V): void {
    if (window.end < window.start) throw new RangeError(`session end ${window.end} before start ${window.start}`);
    this.state.put(this.name, this.#k(key, window), value, window.end);
  }

  remove(key: string, window: SessionWindow): void {
    this.state.delete(this.name, this.#k(key, window));
  }

  #k(key: string, w: SessionWindow): string {
    return checkKey(key) + SEP + pad(w.end) + SEP + pad(w.start);
  }
}

export type AnyStoreView = KeyValueView<unknown> | WindowView<unknown> | SessionView<unknown>;

export function createView(state: TaskState, spec: StoreSpec<unknown>): AnyStoreView {
  switch (spec.kind) {
    case 'key-value':
      return new KeyValueView<unknown>(state, (spec satisfies KeyValueStoreSpec<unknown>).name);
    case 'window':
      return new WindowView<unknown>(state, spec);
    case 'session':
      return new SessionView<unknown>(state, spec);
  }
}
