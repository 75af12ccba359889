/**
 * The outbox: a task's external outputs (triggers, audit records, dead letters) of one commit, written into the
 * task's state with that commit and produced only after it. Every task holds the store (like the timer store);
 * only the Kafka runner's at-least-once commit fills it (src/kafka/active-task.ts). Why: an output produced
 * before its commit is complete is a decision the next owner cannot see — it processes the same inputs again
 * and may decide otherwise (a fan-out trigger arriving in another order: the cap picks another trigger), and
 * both decisions would be out. With the outbox, an output exists only once its commit does, and a commit that
 * completed but whose outputs did not go out leaves them in the store, so the next owner sends them first.
 */
import type { IHeaders, Message } from 'kafkajs';
import { jsonCodec } from '../api/codecs.js';
import type { KeyValueStoreSpec } from '../api/stores.js';

export const OUTBOX_STORE = '_outbox';

/** One produced message, as bytes (base64): the topic's serde already ran. */
export interface OutboxEntry {
  readonly topic: string;
  readonly key: string | null;
  readonly value: string | null;
  readonly timestamp?: string;
  readonly partition?: number;
  /** Header values as base64 (a list for repeated headers). */
  readonly headers?: Record<string, string | string[]>;
}

export const outboxSpec: KeyValueStoreSpec<OutboxEntry> = { kind: 'key-value', name: OUTBOX_STORE, codec: jsonCodec<OutboxEntry>() };

/** Store key of the n-th outbox entry: sorts in produce order. */
export const outboxKey = (n: number): string => n.toString(36).padStart(11, '0');

const b64 = (v: Buffer | string): string => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v).toString('base64');

export function toOutbox(topic: string, m: Message): OutboxEntry {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(m.headers ?? {})) {
    if (v === undefined) continue;
    headers[k] = Array.isArray(v) ? v.map(b64) : b64(v);
  }
  return {
    topic,
    key: m.key === null || m.key === undefined ? null : b64(m.key),
    value: m.value === null ? null : b64(m.value),
    ...(m.timestamp === undefined ? {} : { timestamp: m.timestamp }),
    ...(m.partition === undefined ? {} : { partition: m.partition }),
    ...(Object.keys(headers).length > 0 ? { headers } : {}),
  };
}

export function fromOutbox(e: OutboxEntry): Message {
  const headers: IHeaders = {};
  for (const [k, v] of Object.entries(e.headers ?? {})) headers[k] = Array.isArray(v) ? v.map((x) => Buffer.from(x, 'base64')) : Buffer.from(v, 'base64');
  return {
    key: e.key === null ? null : Buffer.from(e.key, 'base64'),
    value: e.value === null ? null : Buffer.from(e.value, 'base64'),
    ...(e.timestamp === undefined ? {} : { timestamp: e.timestamp }),
    ...(e.partition === undefined ? {} : { partition: e.partition }),
    ...(e.headers ? { headers } : {}),
  };
}
