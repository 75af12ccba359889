/**
 * Kafka offsets as kafkajs gives them: decimal strings of int64s. Fifteen digits are below 2^53, so the common
 * case is exact in double arithmetic and costs no BigInt (these run once per record).
 */

/** The offset after `offset`. */
export function nextOffset(offset: string): string {
  const n = offset.length < 16 ? Number(offset) : NaN;
  return Number.isSafeInteger(n) ? String(n + 1) : (BigInt(offset) + 1n).toString();
}

/** Whether offset `a` is below offset `b`. */
export function offsetBefore(a: string, b: string): boolean {
  if (a.length < 16 && b.length < 16) return Number(a) < Number(b);
  return BigInt(a) < BigInt(b);
}
