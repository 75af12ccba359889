/**
 * Pending timers of one task: in memory for speed (one indexed min-heap per domain, plus an index by key),
 * persisted through the task's internal timer store so they survive restarts and move with the task's changelog.
 *
 * Order is total and deterministic: (time, processor, name, key). The heap knows where each timer sits, so a
 * re-registered timer (an abandonment timer re-armed on every event of its customer) moves in place and a
 * cancelled one leaves at once: no stale entries to skip or compact.
 */
import type { Timer, TimerData, TimerDomain } from '../api/processor.js';

export interface QueuedTimer extends Timer {
  readonly node: string;
  readonly id: string;
  /** Changed in place by {@link TimerQueue.retime} (a re-armed timer keeps its object). */
  time: number;
  data?: TimerData;
  /**
   * Where the timer sits in its domain's heap (kept by the heap; -1 or absent when in none): a heap step moves
   * a number on the timer instead of updating a Map entry keyed by the timer's id.
   */
  heapAt?: number;
}

export function timerId(node: string, name: string, key: string): string {
  return `${node}\u0000${name}\u0000${key}`;
}

function before(a: QueuedTimer, b: QueuedTimer): boolean {
  return a.time < b.time || (a.time === b.time && a.id < b.id);
}

/**
 * A binary min-heap that keeps each item's position on the item (`heapAt`), for removal and replacement in
 * O(log n). A timer is in at most one heap at a time (its domain's).
 */
class IndexedHeap {
  readonly items: QueuedTimer[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): QueuedTimer | undefined {
    return this.items[0];
  }

  /** Whether `t` (this object) is in this heap. */
  #holds(t: QueuedTimer): boolean {
    const i = t.heapAt;
    return i !== undefined && i >= 0 && this.items[i] === t;
  }

  /** Adds the timer, in place of `old` (the pending timer with its id, if in this heap). */
  set(t: QueuedTimer, old: QueuedTimer | undefined): void {
    if (old === undefined || !this.#holds(old)) {
      this.items.push(t);
      this.#up(this.items.length - 1, t);
      return;
    }
    const i = old.heapAt as number;
    old.heapAt = -1;
    if (before(t, old)) this.#up(i, t);
    else this.#down(i, t);
  }

  /** Moves `t`, whose time was `was` and is now `t.time`, to its place. */
  moved(t: QueuedTimer, was: number): void {
    if (!this.#holds(t)) return;
    const i = t.heapAt as number;
    if (t.time < was) this.#up(i, t);
    else this.#down(i, t);
  }

  delete(t: QueuedTimer): void {
    if (!this.#holds(t)) return;
    const i = t.heapAt as number;
    t.heapAt = -1;
    const a = this.items;
    const last = a.pop() as QueuedTimer;
    if (i === a.length) return;
    this.#up(i, last);
    this.#down(last.heapAt as number, last);
  }

  /** Places `t` at slot `i` or above, moving the parents it passes down. */
  #up(i: number, t: QueuedTimer): void {
    const a = this.items;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = a[p] as QueuedTimer;
      if (!before(t, parent)) break;
      a[i] = parent;
      parent.heapAt = i;
      i = p;
    }
    a[i] = t;
    t.heapAt = i;
  }

  /** Places `t` at slot `i` or below, moving the children it passes up. */
  #down(i: number, t: QueuedTimer): void {
    const a = this.items;
    const n = a.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && before(a[r] as QueuedTimer, a[l] as QueuedTimer) ? r : l;
      const child = a[c] as QueuedTimer;
      if (!before(child, t)) break;
      a[i] = child;
      child.heapAt = i;
      i = c;
    }
    a[i] = t;
    t.heapAt = i;
  }
}

export class TimerQueue {
  readonly #live = new Map<string, QueuedTimer>();
  /**
   * processor → timer name → key → timer: finds a timer without building its id (a string concatenation, and
   * the hash of a new string, per registration: a session timer is re-armed on every page view).
   */
  readonly #byName = new Map<string, Map<string, Map<string, QueuedTimer>>>();
  readonly #byKey = new Map<string, Set<string>>();
  readonly #heaps: Record<TimerDomain, IndexedHeap> = { 'stream-time': new IndexedHeap(), 'wall-clock': new IndexedHeap() };

  get size(): number {
    return this.#live.size;
  }

  /** Adds a timer, replacing the one with its id (in place when the domain is the same). */
  add(t: QueuedTimer): void {
    const old = this.#live.get(t.id);
    if (old !== undefined && old.domain !== t.domain) this.#heaps[old.domain].delete(old);
    this.#live.set(t.id, t);
    let names = this.#byName.get(t.node);
    if (names === undefined) this.#byName.set(t.node, (names = new Map()));
    let keys = names.get(t.name);
    if (keys === undefined) names.set(t.name, (keys = new Map()));
    keys.set(t.key, t);
    if (old === undefined || old.key !== t.key) {
      let ids = this.#byKey.get(t.key);
      if (!ids) this.#byKey.set(t.key, (ids = new Set()));
      ids.add(t.id);
    }
    this.#heaps[t.domain].set(t, old !== undefined && old.domain === t.domain ? old : undefined);
  }

  get(id: string): QueuedTimer | undefined {
    return this.#live.get(id);
  }

  /** The pending timer of `node` named `name` for `key`. */
  find(node: string, name: string, key: string): QueuedTimer | undefined {
    return this.#byName.get(node)?.get(name)?.get(key);
  }

  /** Re-arms a pending timer in place: a new time (and data), the same domain. */
  retime(t: QueuedTimer, time: number, data: TimerData | undefined): void {
    const was = t.time;
    t.time = time;
    if (data !== undefined || t.data !== undefined) t.data = data;
    if (time !== was) this.#heaps[t.domain].moved(t, was);
  }

  remove(id: string): QueuedTimer | undefined {
    const t = this.#live.get(id);
    if (!t) return undefined;
    this.#live.delete(id);
    this.#heaps[t.domain].delete(t);
    const keys = this.#byName.get(t.node)?.get(t.name);
    if (keys?.get(t.key) === t) keys.delete(t.key);
    const ids = this.#byKey.get(t.key);
    ids?.delete(id);
    if (ids?.size === 0) this.#byKey.delete(t.key);
    return t;
  }

  forKey(key: string): QueuedTimer[] {
    const ids = this.#byKey.get(key);
    return ids ? [...ids].map((id) => this.#live.get(id) as QueuedTimer).sort((a, b) => (before(a, b) ? -1 : 1)) : [];
  }

  /** Removes and returns the earliest timer of the domain due at or before `upTo`. */
  popDue(domain: TimerDomain, upTo: number): QueuedTimer | undefined {
    const top = this.#heaps[domain].peek();
    if (!top || top.time > upTo) return undefined;
    this.remove(top.id);
    return top;
  }

  /**
   * Up to `limit` timers of the domain due at or before `upTo`, in no particular order: the earliest ones (a
   * walk of the heap that stops below any entry due later, so it costs about `limit` steps). For prefetching
   * what the next firings will read.
   */
  peekDue(domain: TimerDomain, upTo: number, limit: number): QueuedTimer[] {
    const a = this.#heaps[domain].items;
    const out: QueuedTimer[] = [];
    const stack = a.length > 0 ? [0] : [];
    while (stack.length > 0 && out.length < limit) {
      const i = stack.pop() as number;
      const t = a[i] as QueuedTimer;
      if (t.time > upTo) continue;
      out.push(t);
      const l = 2 * i + 1;
      if (l + 1 < a.length) stack.push(l + 1);
      if (l < a.length) stack.push(l);
    }
    return out;
  }

  /** Earliest timer time of a domain. */
  nextTime(domain: TimerDomain): number | undefined {
    return this.#heaps[domain].peek()?.time;
  }

  all(): QueuedTimer[] {
    return [...this.#live.values()];
  }
}
