import { Type } from '@sinclair/typebox';

const UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PATTERN = '^([0-9]+)(ms|s|m|h|d)$';

/** A duration: integer milliseconds, or a string like "90s", "60m", "24h", "7d". */
export const Duration = Type.Union([Type.Integer({ minimum: 0 }), Type.String({ pattern: PATTERN })], {
  description: 'milliseconds, or a number with unit ms|s|m|h|d (e.g. "60m")',
});

export function toMs(d: number | string): number {
  if (typeof d === 'number') return d;
  const m = new RegExp(PATTERN).exec(d);
  if (!m) throw new RangeError(`not a duration: ${d}`);
  return Number(m[1]) * UNITS[m[2] as keyof typeof UNITS];
}
