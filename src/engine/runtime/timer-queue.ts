/**
 * Pending timers of one task: in memory for speed (a map plus one min-heap per domain), persisted through the
 * task's internal timer store so they survive restarts and move with the task's changelog.
 *
 * Order is total and deterministic: (time, processor, name, key). Cancelled or replaced timers stay in the
 * heap and are skipped when they surface (lazy deletion).
 */
import type { Timer, TimerDomain } from '../api/processor.js';

export interface QueuedTimer extends Timer {
  readonly node: string;
  readonly id: string;
}

export function timerId(node: string, name: string, key: string): string {
  return `${node}\u0000${name}\u0000${key}`;
}

function before(a: QueuedTimer, b: QueuedTimer): boolean {
  return a.time < b.time || (a.time === b.time && a.id < b.id);
}

class MinHeap {
  readonly items: QueuedTimer[] = [];

  push(t: QueuedTimer): void {
    const a = this.items;
    a.push(t);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(a[i] as QueuedTimer, a[p] as QueuedTimer)) break;
      [a[i], a[p]] = [a[p] as QueuedTimer, a[i] as QueuedTimer];
      i = p;
    }
  }

  peek(): QueuedTimer | undefined {
    return this.items[0];
  }

  pop(): QueuedTimer | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l] as QueuedTimer, a[m] as QueuedTimer)) m = l;
        if (r < a.length && before(a[r] as QueuedTimer, a[m] as QueuedTimer)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m] as QueuedTimer, a[i] as QueuedTimer];
        i = m;
      }
    }
    return top;
  }
}

export class TimerQueue {
  readonly #live = new Map<string, QueuedTimer>();
  readonly #byKey = new Map<string, Set<string>>();
  readonly #heaps: Record<TimerDomain, MinHeap> = { 'stream-time': new MinHeap(), 'wall-clock': new MinHeap() };

  get size(): number {
    return this.#live.size;
  }

  add(t: QueuedTimer): void {
    this.#live.set(t.id, t);
    let ids = this.#byKey.get(t.key);
    if (!ids) this.#byKey.set(t.key, (ids = new Set()));
    ids.add(t.id);
    this.#heaps[t.domain].push(t);
    this.#compact(t.domain);
  }

  get(id: string): QueuedTimer | undefined {
    return this.#live.get(id);
  }

  remove(id: string): QueuedTimer | undefined {
    const t = this.#live.get(id);
    if (!t) return undefined;
    this.#live.delete(id);
    const ids = this.#byKey.get(t.key);
    ids?.delete(id);
    if (ids?.size === 0) this.#byKey.delete(t.key);
    return t;
  }

  forKey(key: string): QueuedTimer[] {
    const ids = this.#byKey.get(key);
    return ids ? [...ids].map((id) => this.#live.get(id) as QueuedTimer).sort((a, b) => (before(a, b) ? -1 : 1)) : [];
  }

  /** Removes and returns the earliest live timer of the domain due at or before `upTo`. */
  popDue(domain: TimerDomain, upTo: number): QueuedTimer | undefined {
    const heap = this.#heaps[domain];
    for (;;) {
      const top = heap.peek();
      if (!top || top.time > upTo) return undefined;
      heap.pop();
      if (this.#live.get(top.id) === top) {
        this.remove(top.id);
        return top;
      }
    }
  }

  /**
   * Up to `limit` live timers of the domain due at or before `upTo`, in no particular order: the earliest ones
   * (a walk of the heap that stops below any entry due later, so it costs about `limit` steps). For prefetching
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
      if (this.#live.get(t.id) === t) out.push(t);
      const l = 2 * i + 1;
      if (l + 1 < a.length) stack.push(l + 1);
      if (l < a.length) stack.push(l);
    }
    return out;
  }

  /** Earliest live timer time of a domain (for tests and metrics). */
  nextTime(domain: TimerDomain): number | undefined {
    const heap = this.#heaps[domain];
    for (;;) {
      const top = heap.peek();
      if (!top) return undefined;
      if (this.#live.get(top.id) === top) return top.time;
      heap.pop();
    }
  }

  all(): QueuedTimer[] {
    return [...this.#live.values()];
  }

  /** Rebuilds a heap when stale entries dominate it, so memory follows live timers, not registrations. */
  #compact(domain: TimerDomain): void {
    const heap = this.#heaps[domain];
    if (heap.items.length < 1024 || heap.items.length < 4 * this.#live.size) return;
    const live = heap.items.filter((t) => this.#live.get(t.id) === t);
    heap.items.length = 0;
    for (const t of live) heap.push(t);
  }
}
