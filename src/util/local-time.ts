/**
 * Local wall-clock time in IANA time zones, from the time-zone database Node ships (Intl, ICU). Shared by the
 * guards (quiet hours) and the dispatcher (daily caps per local day).
 *
 * One Intl.DateTimeFormat per zone is cached (building one costs ~66 µs, using it ~1 µs), in a Map bounded to
 * {@link MAX_CACHED_ZONES} entries (the oldest entry goes first); a name that is not a time zone is cached too,
 * so a bad zone in a profile does not cost a failed construction on every call.
 */

/** A local date and time of day as the wall clock in a zone reads it (month 1–12, hour 0–23). */
export interface WallClock {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
}

/** More zones than the time-zone database has (~600 names with aliases), so a working set never thrashes. */
export const MAX_CACHED_ZONES = 1024;
const DAY_MS = 86_400_000;

type Field = 'year' | 'month' | 'day' | 'hour' | 'minute' | 'second';
const FIELDS: readonly Field[] = ['year', 'month', 'day', 'hour', 'minute', 'second'];

/** A zone's formatter, and the order its format() writes the six numbers in (read once from formatToParts). */
interface ZoneFormat {
  readonly f: Intl.DateTimeFormat;
  readonly order: readonly Field[];
}

/** Zone → its format, or null: not a time zone. */
const formats = new Map<string, ZoneFormat | null>();

function formatOf(timeZone: string): ZoneFormat | undefined {
  let z = formats.get(timeZone);
  if (z === undefined) {
    try {
      const f = new Intl.DateTimeFormat('en-GB', {
        timeZone,
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
        hourCycle: 'h23',
      });
      const order = f
        .formatToParts(0)
        .map((p) => p.type)
        .filter((t): t is Field => (FIELDS as readonly string[]).includes(t));
      z = { f, order };
    } catch {
      z = null;
    }
    if (formats.size >= MAX_CACHED_ZONES) {
      const oldest = formats.keys().next();
      if (!oldest.done) formats.delete(oldest.value);
    }
    formats.set(timeZone, z);
  }
  return z ?? undefined;
}

/** Whether `timeZone` names a zone of the time-zone database (e.g. "Europe/Berlin"). */
export function isTimeZone(timeZone: string): boolean {
  return formatOf(timeZone) !== undefined;
}

const NUMBERS = /\d+/g;

/** What the wall clock in `timeZone` reads at the instant `at` (epoch ms), or undefined for an unknown zone. */
export function wallClock(at: number, timeZone: string): WallClock | undefined {
  const z = formatOf(timeZone);
  if (!z) return undefined;
  // format() and the numbers in it: a third of the cost of formatToParts().
  const numbers = z.f.format(at).match(NUMBERS) ?? [];
  const w: Record<Field, number> = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
  for (let i = 0; i < z.order.length; i++) w[z.order[i] as Field] = Number(numbers[i]);
  w.hour %= 24;
  return w;
}

/** Minutes since local midnight in `timeZone` at `at`, or undefined for an unknown zone. */
export function localMinutes(at: number, timeZone: string): number | undefined {
  const w = wallClock(at, timeZone);
  return w && w.hour * 60 + w.minute;
}

/**
 * The wall-clock reading in a known `timeZone` at whole second `s` (epoch seconds), as epoch ms of the same
 * reading in UTC ("local ms", see {@link localMs}).
 */
function localAtSecond(s: number, timeZone: string): number {
  const w = wallClock(s * 1000, timeZone) as WallClock;
  return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
}

/**
 * A local date and time as "local ms": epoch ms of the same reading in UTC. Out-of-range fields roll over
 * (day 32 is the 1st of the next month, minute 1500 is 01:00 the next day), as in Date.UTC.
 */
export function localMs(year: number, month: number, day: number, minuteOfDay = 0): number {
  return Date.UTC(year, month - 1, day, 0, minuteOfDay);
}

/**
 * The first instant (epoch ms) after `after` at which the wall clock in `timeZone` reads the local date and
 * time `local` (see {@link localMs}; whole seconds) or later:
 * - a time the clocks skip (spring forward, e.g. 02:30 in a 02:00→03:00 gap): the first instant after the
 *   gap, when the clock jumps past it;
 * - a time the clocks read twice (autumn, the repeated hour): its first occurrence after `after`;
 * - otherwise the one instant the clock reads it.
 * Undefined for an unknown zone, or when the zone has more than one clock change within a day of `local`.
 */
export function firstInstantAtLocal(local: number, timeZone: string, after = Number.NEGATIVE_INFINITY): number | undefined {
  if (!isTimeZone(timeZone)) return undefined;
  const s = Math.floor(local / 1000);
  if (Number.isFinite(after)) {
    // Usually no clock change between `after` and the time sought: the offset in force at `after` gives it.
    const a = Math.floor(after / 1000);
    const guess = s - (localAtSecond(a, timeZone) / 1000 - a);
    if (guess * 1000 > after && localAtSecond(guess, timeZone) === s * 1000) return guess * 1000;
  }
  // The UTC offsets (s) in force a day before and a day after: the instant is local − one of them.
  const before = localAtSecond(s - DAY_MS / 1000, timeZone) / 1000 - (s - DAY_MS / 1000);
  const later = localAtSecond(s + DAY_MS / 1000, timeZone) / 1000 - (s + DAY_MS / 1000);
  const candidates = before === later ? [s - before] : [s - Math.max(before, later), s - Math.min(before, later)];
  for (const c of candidates) if (c * 1000 > after && localAtSecond(c, timeZone) === s * 1000) return c * 1000;
  // A gap: the clock reads less than `local` just before the change and more after it. Clock changes happen at
  // whole seconds, so a binary search over seconds finds the first one reading `local` or later.
  let lo = Math.max(s - later, Math.floor(after / 1000));
  let hi = s - before;
  if (!(lo < hi) || localAtSecond(lo, timeZone) >= s * 1000 || localAtSecond(hi, timeZone) < s * 1000) return undefined;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (localAtSecond(mid, timeZone) >= s * 1000) hi = mid;
    else lo = mid;
  }
  return hi * 1000;
}
