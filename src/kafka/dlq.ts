/**
 * Dead-letter records (DESIGN §4: bad input never stops a partition and is never lost). An undecodable or
 * invalid record goes to `<topic>.dlq` byte for byte — key, value and headers untouched — with the failure
 * and the record's origin added as headers, so it can be inspected, fixed and re-driven.
 */
import type { IHeaders, Message } from 'kafkajs';
import type { FieldError } from '../serde/validate.js';

/** Header names written on every dead-letter record. */
export const DLQ_HEADERS = {
  reason: 'kairos-error-reason',
  errors: 'kairos-error',
  topic: 'kairos-original-topic',
  partition: 'kairos-original-partition',
  offset: 'kairos-original-offset',
  timestamp: 'kairos-original-timestamp',
  failedAt: 'kairos-failed-at',
} as const;

/** Longest `kairos-error` header value, in UTF-8 bytes. */
export const MAX_ERROR_HEADER_BYTES = 8 * 1024;
const MAX_PATH_CHARS = 512;
const MAX_MESSAGE_CHARS = 1024;

/** The dead-letter topic of a topic. */
export const dlqTopic = (topic: string): string => `${topic}.dlq`;

export interface DlqOriginal {
  readonly topic: string;
  readonly partition: number;
  /** Kafka offset as kafkajs gives it (a decimal string). */
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers?: IHeaders | undefined;
  /** The record's Kafka timestamp (epoch ms; kafkajs gives a decimal string). */
  readonly timestamp: string | number;
}

export interface DlqFailure {
  /** Short reason code, e.g. 'not-json', 'invalid' (see DecodeFailureReason in src/kafka/serde.ts). */
  readonly reason: string;
  readonly errors: readonly FieldError[];
}

const clip = (s: string, max: number): string => (s.length > max ? `${s.slice(0, max - 1)}…` : s);

/**
 * The errors as a JSON array of at most MAX_ERROR_HEADER_BYTES bytes. It always stays valid JSON: long
 * paths and messages are clipped, and errors that do not fit are replaced by one `{"path": "", "message":
 * "… N more errors"}` entry.
 */
export function errorsHeader(errors: readonly FieldError[], maxBytes = MAX_ERROR_HEADER_BYTES): string {
  const entries = errors.map((e) => JSON.stringify({ path: clip(String(e.path), MAX_PATH_CHARS), message: clip(String(e.message), MAX_MESSAGE_CHARS) }));
  const join = (parts: readonly string[]): string => `[${parts.join(',')}]`;
  const all = join(entries);
  if (Buffer.byteLength(all) <= maxBytes) return all;
  const kept: string[] = [];
  let bytes = 2; // the brackets
  // Room for the trailing summary entry (and its comma), whatever the count.
  const reserve = Buffer.byteLength(JSON.stringify({ path: '', message: `… ${errors.length} more errors` })) + 1;
  for (const entry of entries) {
    const size = Buffer.byteLength(entry) + (kept.length > 0 ? 1 : 0);
    if (bytes + size + reserve > maxBytes) break;
    kept.push(entry);
    bytes += size;
  }
  kept.push(JSON.stringify({ path: '', message: `… ${errors.length - kept.length} more errors` }));
  return join(kept);
}

/** Copies headers without letting a header named `__proto__` touch the object's prototype. */
function copyHeaders(headers: IHeaders | undefined): IHeaders {
  const out: IHeaders = {};
  if (!headers) return out;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/**
 * The dead-letter record for `original`, which failed with `failure` at `now` (epoch ms). The key, value and
 * original headers are kept as they were; the `kairos-*` headers above are added (replacing any of the same
 * name, e.g. when a re-driven record fails again). The record's timestamp is `now`, so the dead-letter topic's
 * retention counts from the failure. Pure.
 */
export function dlqMessage(original: DlqOriginal, failure: DlqFailure, now: number): Message {
  const headers = copyHeaders(original.headers);
  headers[DLQ_HEADERS.reason] = failure.reason;
  headers[DLQ_HEADERS.errors] = errorsHeader(failure.errors);
  headers[DLQ_HEADERS.topic] = original.topic;
  headers[DLQ_HEADERS.partition] = String(original.partition);
  headers[DLQ_HEADERS.offset] = String(original.offset);
  headers[DLQ_HEADERS.timestamp] = String(original.timestamp);
  headers[DLQ_HEADERS.failedAt] = String(now);
  return { key: original.key, value: original.value, headers, timestamp: String(now) };
}
