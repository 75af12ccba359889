/**
 * Per-caller request limits of one route: a fixed window per caller that starts with the caller's first request
 * and lasts `windowMs`, counted in memory (per instance). It answers as @fastify/rate-limit's local store did
 * (which the API used before): the same window, the same least-recently-used bound on callers remembered, and
 * the same header values. Called from the route handler, so a request pays a Map lookup, not a hook and its
 * promises.
 */

/** Callers remembered per route before the least recently seen is forgotten (@fastify/rate-limit's default). */
export const RATE_LIMIT_CALLERS_MAX = 5000;

interface Window {
  count: number;
  startMs: number;
}

export interface RateLimitHit {
  /** The limit that applied. */
  readonly max: number;
  /** Requests left in this window (0 when exceeded). */
  readonly remaining: number;
  /** Seconds until the window ends, rounded up (the `x-ratelimit-reset` and, when exceeded, `retry-after` value). */
  readonly resetSeconds: number;
  readonly exceeded: boolean;
}

export class RouteRateLimiter {
  readonly #windows = new Map<string, Window>();
  /** The caller counted last: its entry is the most recently used already. */
  #last: string | undefined;
  constructor(
    readonly windowMs: number,
    readonly maxCallers = RATE_LIMIT_CALLERS_MAX,
  ) {}

  /** Counts a request of `caller` against `max` per window. */
  hit(caller: string, max: number, nowMs = Date.now()): RateLimitHit {
    let w = this.#windows.get(caller);
    let ttl: number;
    if (w === undefined) {
      w = { count: 1, startMs: nowMs };
      ttl = this.windowMs;
      this.#windows.set(caller, w);
      this.#last = caller;
      if (this.#windows.size > this.maxCallers) {
        const oldest = this.#windows.keys().next();
        if (oldest.done !== true) this.#windows.delete(oldest.value);
      }
    } else {
      // Most recently used last: moved to the end unless it is there already (the caller counted last).
      if (caller !== this.#last) {
        this.#windows.delete(caller);
        this.#windows.set(caller, w);
        this.#last = caller;
      }
      if (w.startMs + this.windowMs <= nowMs) {
        w.count = 1;
        w.startMs = nowMs;
        ttl = this.windowMs;
      } else {
        w.count++;
        ttl = this.windowMs - (nowMs - w.startMs);
      }
    }
    return { max, remaining: Math.max(0, max - w.count), resetSeconds: Math.ceil(ttl / 1000), exceeded: w.count > max };
  }
}

/** A duration as @lukeed/ms formats it long (`1 minute`, `43 seconds`): the rate-limit message's wording. */
export function formatDuration(ms: number): string {
  const units: readonly [number, string][] = [
    [365.25 * 86_400_000, 'year'],
    [86_400_000, 'day'],
    [3_600_000, 'hour'],
    [60_000, 'minute'],
    [1000, 'second'],
  ];
  const abs = Math.abs(ms);
  const sign = ms < 0 ? '-' : '';
  if (abs < 1000) return `${ms} ms`;
  for (let i = units.length - 1; i >= 0; i--) {
    const [size, name] = units[i] as [number, string];
    const next = units[i - 1];
    if (next === undefined || abs < next[0]) {
      const v = abs / size;
      const n = (v | 0) === v ? v : Math.trunc(v + 0.5);
      return `${sign}${n} ${name}${n !== 1 ? 's' : ''}`;
    }
  }
  return `${ms} ms`;
}
