/**
 * Replay input lines (DESIGN §5): `{"topic": "...", "key": "...", "value": {...}}`, optionally `"timestamp"`
 * (epoch ms; needed only for tombstones, whose event time is otherwise the current stream time).
 */
import { isTopicName, TOPICS, type TopicName } from '../../schemas/contract.js';
import { validateValue, type FieldError } from '../serde/validate.js';

export interface DecodedRecord {
  readonly topic: TopicName;
  readonly key: string;
  /** null only for a tombstone of a topic that allows them. */
  readonly value: unknown;
  /** The value's event time, or the envelope's timestamp; undefined for a tombstone without one. */
  readonly timestamp: number | undefined;
}

export interface LineError {
  readonly line: number;
  readonly errors: readonly FieldError[];
}

export type DecodedLine = { readonly ok: true; readonly record: DecodedRecord } | { readonly ok: false; readonly error: LineError };

const ENVELOPE_FIELDS = new Set(['topic', 'key', 'value', 'timestamp']);

function fail(line: number, errors: FieldError[]): DecodedLine {
  return { ok: false, error: { line, errors } };
}

/** Parses and validates one line. Never throws. */
export function decodeEnvelopeLine(text: string, line: number): DecodedLine {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return fail(line, [{ path: '', message: `not valid JSON: ${(err as Error).message}` }]);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return fail(line, [{ path: '', message: 'an envelope must be a JSON object {"topic", "key", "value"}' }]);
  }
  const env = json as Record<string, unknown>;
  const errors: FieldError[] = [];
  for (const k of Object.keys(env)) if (!ENVELOPE_FIELDS.has(k)) errors.push({ path: `/${k}`, message: 'unknown envelope field (allowed: topic, key, value, timestamp)' });
  const { topic, key, value, timestamp } = env;
  if (typeof topic !== 'string') errors.push({ path: '/topic', message: 'required string' });
  else if (!isTopicName(topic)) errors.push({ path: '/topic', message: `unknown topic "${topic}"; known: ${Object.keys(TOPICS).join(', ')}` });
  if (typeof key !== 'string' || key.length === 0) errors.push({ path: '/key', message: 'required non-empty string' });
  if (timestamp !== undefined && !(typeof timestamp === 'number' && Number.isSafeInteger(timestamp) && timestamp >= 0)) {
    errors.push({ path: '/timestamp', message: 'must be epoch milliseconds (a non-negative integer)' });
  }
  if (!('value' in env)) errors.push({ path: '/value', message: 'required (an object, or null for a tombstone)' });
  if (errors.length > 0 || typeof topic !== 'string' || !isTopicName(topic) || typeof key !== 'string') return fail(line, errors);
  const spec = TOPICS[topic];
  if (value === null) {
    if (!spec.tombstones) return fail(line, [{ path: '/value', message: `null (tombstone) is not allowed on ${topic}` }]);
    return { ok: true, record: { topic, key, value: null, timestamp: timestamp as number | undefined } };
  }
  const v = validateValue(topic, value);
  if (!v.ok) return fail(line, v.errors.map((e) => ({ path: `/value${e.path}`, message: e.message })));
  const fields = v.value as Record<string, unknown>;
  if (fields[spec.keyField] !== key) {
    return fail(line, [{ path: '/key', message: `must equal value.${spec.keyField} ("${String(fields[spec.keyField])}"), got "${key}"` }]);
  }
  return { ok: true, record: { topic, key, value: v.value, timestamp: (timestamp as number | undefined) ?? (fields[spec.timestampField] as number) } };
}
