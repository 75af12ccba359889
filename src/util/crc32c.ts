/**
 * CRC-32C (Castagnoli): with the CPU's instruction (SSE 4.2, ARMv8 CRC) through `@node-rs/crc32` where its prebuilt
 * binary loads, else in JavaScript, eight bytes at a time. Record batch checksums (src/kafka/produce-encoding.ts) and
 * input record fingerprints ({@link bytesFingerprint}) use it.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Slicing-by-8 tables of the JavaScript version. */
const CRC_TABLES: Int32Array[] = (() => {
  const t0 = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t0[n] = c;
  }
  const tables = [t0];
  for (let k = 1; k < 8; k++) {
    const prev = tables[k - 1]!;
    const t = new Int32Array(256);
    for (let n = 0; n < 256; n++) t[n] = t0[prev[n]! & 0xff]! ^ (prev[n]! >>> 8);
    tables.push(t);
  }
  return tables;
})();

/** CRC-32C in JavaScript: of `buf[start, end)`, as an unsigned 32-bit number (what kafkajs' crc32C returns). */
export function crc32c(buf: Uint8Array, start = 0, end = buf.length): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC_TABLES as [Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array];
  let crc = -1;
  let i = start;
  for (const last8 = end - 8; i <= last8; i += 8) {
    const a = crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    crc =
      t7[a & 0xff]! ^
      t6[(a >>> 8) & 0xff]! ^
      t5[(a >>> 16) & 0xff]! ^
      t4[a >>> 24]! ^
      t3[buf[i + 4]!]! ^
      t2[buf[i + 5]!]! ^
      t1[buf[i + 6]!]! ^
      t0[buf[i + 7]!]!;
  }
  for (; i < end; i++) crc = t0[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

type NativeCrc32c = (input: Uint8Array | string, initialState?: number) => number;

/**
 * The CPU's CRC-32C instruction (SSE 4.2, ARMv8 CRC) through `@node-rs/crc32`, when its prebuilt binary loads on this
 * platform; else undefined and {@link crc32c} in JavaScript is used. About ten times the JavaScript version on a
 * record batch of a few kilobytes or more (load-tests/README.md, *Seventeenth session*), where it was 4–5 % of the
 * runner's CPU in a live run.
 */
const nativeCrc32c: NativeCrc32c | undefined = (() => {
  try {
    const { crc32c: native } = require('@node-rs/crc32') as { crc32c: NativeCrc32c };
    // The check value of CRC-32C: a binary that computes something else is not used.
    return native(Buffer.from('123456789')) >>> 0 === 0xe3069283 ? native : undefined;
  } catch {
    return undefined;
  }
})();

/** Whether record batch checksums are computed by the native CRC-32C (else in JavaScript). */
export const nativeCrc32cInUse = nativeCrc32c !== undefined;

/** CRC-32C of `buf[start, end)`, unsigned: natively when available, else {@link crc32c}. */
export function batchCrc32c(buf: Buffer, start: number, end: number): number {
  return nativeCrc32c === undefined ? crc32c(buf, start, end) : nativeCrc32c(buf.subarray(start, end)) >>> 0;
}

/**
 * A fingerprint of bytes as read (a Kafka message value, a replay input line): their CRC-32C, unsigned. A string
 * counts as its UTF-8 encoding. Tells a byte-identical redelivery from another record reusing its id.
 */
export function bytesFingerprint(bytes: Uint8Array | string): number {
  if (nativeCrc32c !== undefined) return nativeCrc32c(bytes) >>> 0;
  const b = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
  return crc32c(b, 0, b.length);
}
