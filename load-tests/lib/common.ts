/**
 * Small helpers shared by the load-test scripts: flag parsing, number formatting, disk usage, memory sampling.
 * Nothing here touches the engine.
 */
import { lstatSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (the folder holding package.json), from this file's location. */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Thrown for bad command-line flags; the scripts print the message and exit with status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A usage error: ours, or node:util parseArgs rejecting a flag (unknown option, missing value). */
export function isUsageError(err: unknown): err is Error {
  return err instanceof UsageError || (err instanceof TypeError && 'code' in err && typeof err.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS'));
}

/** Parses a non-negative integer flag; accepts `1_000_000`, `1,000,000` and `1e6`. */
export function parseCount(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text.replace(/[_,]/g, ''));
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${name} must be a non-negative integer, got "${text}"`);
  return n;
}

/** Parses an epoch-ms or ISO-8601 time flag. */
export function parseTime(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (/^[0-9]+$/.test(text)) return Number(text);
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new UsageError(`--${name} must be epoch milliseconds or an ISO date-time, got "${text}"`);
  return t;
}

/** 1234567 → "1,234,567". */
/**
 * The benchmarks' "median of N runs": the middle value, the upper of the two middle ones for an even count (a value
 * that was measured, not an average of two); NaN for none.
 */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
}

export const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

/** Bytes → "12.3 MiB". */
export function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u] ?? 'B'}`;
}

export const fmtSecs = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

export const isoOf = (ms: number): string => (Number.isFinite(ms) ? new Date(ms).toISOString() : '-');

export interface DiskUsage {
  /** Sum of file sizes (what `du --apparent-size` reports). */
  readonly apparentBytes: number;
  /** Allocated blocks × 512 (what `du` reports). */
  readonly allocatedBytes: number;
  readonly files: number;
}

/** `du` of a directory tree, without following symlinks. */
export function diskUsage(dir: string): DiskUsage {
  let apparentBytes = 0;
  let allocatedBytes = 0;
  let files = 0;
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else {
        const st = lstatSync(p);
        apparentBytes += st.size;
        allocatedBytes += st.blocks * 512;
        files++;
      }
    }
  };
  walk(dir);
  return { apparentBytes, allocatedBytes, files };
}

/**
 * Samples RSS and heap while a phase runs, so a phase's own peak can be told apart from the process-lifetime
 * peak (`resourceUsage().maxRSS`), which also covers earlier phases. The timer is unref'd.
 */
export class MemorySampler {
  peakRss = 0;
  peakHeapUsed = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(everyMs = 200) {
    this.sample();
    this.#timer = setInterval(() => this.sample(), everyMs);
    this.#timer.unref();
  }

  sample(): void {
    const m = process.memoryUsage();
    if (m.rss > this.peakRss) this.peakRss = m.rss;
    if (m.heapUsed > this.peakHeapUsed) this.peakHeapUsed = m.heapUsed;
  }

  stop(): void {
    this.sample();
    clearInterval(this.#timer);
  }
}

/** Process-lifetime peak resident set size in bytes. */
export const maxRssBytes = (): number => process.resourceUsage().maxRSS * 1024;

/** Left-aligned text table. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** Counts into a plain object, sorted by key for stable output. */
export function sortedCounts(m: ReadonlyMap<string, number>): Record<string, number> {
  return Object.fromEntries([...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function bump(m: Map<string, number>, key: string, by = 1): void {
  m.set(key, (m.get(key) ?? 0) + by);
}

/**
 * Node's flags for a V8 CPU profile written into `dir` when the process exits (none without a dir);
 * KAIROS_BENCH_PROFILE_INTERVAL=<µs> sets the sampling interval (Node's default 1000).
 */
export function cpuProfileArgs(dir: string | undefined): string[] {
  if (dir === undefined) return [];
  const interval = process.env.KAIROS_BENCH_PROFILE_INTERVAL;
  return ['--cpu-prof', '--cpu-prof-dir', dir, ...(interval === undefined ? [] : ['--cpu-prof-interval', interval])];
}

/**
 * The sum of every series of metric `name` (with or without labels) in a Prometheus text exposition; with
 * `labels`, of the series that have each of them with that value.
 */
export function sumMetric(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    if (wanted.length > 0) {
      const set = rest[0] === '{' ? rest.slice(1, rest.indexOf('}')).split(',') : [];
      if (!wanted.every((w) => set.includes(w))) continue;
    }
    total += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return total;
}
