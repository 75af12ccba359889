/**
 * The outbox: a task's external outputs (triggers, audit records, dead letters) of one commit, written into the
 * task's state with that commit and produced only after it. Every task holds the store (like the timer store);
 * only the Kafka runner's at-least-once commit fills it (src/kafka/active-task.ts). Why: an output produced
 * before its commit is complete is a decision the next owner cannot see — it processes the same inputs again
 * and may decide otherwise (a fan-out trigger arriving in another order: the cap picks another trigger), and
 * both decisions would be out. With the outbox, an output exists only once its commit does, and a commit that
 * completed but whose outputs did not go out leaves them in the store, so the next owner sends them first.
 *
 * One entry holds a group of outputs in produce order, in a binary form ({@link outboxCodec}): the messages'
 * bytes as the topic's serde made them, copied once, and deflated when the group is 4 KiB or more. Earlier
 * versions wrote JSON with base64 bytes (a third more bytes, and a base64 pass and a JSON pass over every
 * trigger, for state that is read only after a crash), then the binary form uncompressed; both are still read.
 *
 * Why deflate: the outbox is a second copy of every trigger and audit record, written to RocksDB and to the
 * changelog topic (with the broker's replicas, once per replica) and read back only after a crash. Uncompressed it
 * was a quarter of the bytes a live instance wrote to the broker (load-tests/README.md, *Twentieth session*); JSON
 * outputs deflate 7–13× at level 1, and the instance's CPU did not grow: the compression costs about what writing
 * the larger bytes to RocksDB, into produce requests and to the socket cost.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { IHeaders, Message } from 'kafkajs';
import type { Codec, KeyValueStoreSpec } from '../api/stores.js';

export const OUTBOX_STORE = '_outbox';

/** One produced message: its topic and the message as the topic's serde made it. */
export interface OutboxEntry {
  readonly topic: string;
  readonly message: Message;
}

/** Outputs in produce order. */
export type OutboxGroup = readonly OutboxEntry[];

/** First byte of the binary form (JSON, the earliest form, starts with `{`). */
const BINARY = 0x01;
/** First byte of the binary form deflated: 0x02, then the binary form after its first byte, raw deflate. */
const DEFLATED = 0x02;
/** Groups smaller than this stay uncompressed (deflate's fixed cost, little to gain). */
const DEFLATE_FROM_BYTES = 4096;
const HAS_KEY = 1;
const HAS_VALUE = 2;
const HAS_TIMESTAMP = 4;
const HAS_PARTITION = 8;
const HAS_HEADERS = 16;

type Bytes = Buffer | string;

const bytesLength = (v: Bytes): number => (typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length);
const uvarintSize = (v: number): number => (v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5);
const fieldSize = (v: Bytes): number => {
  const n = bytesLength(v);
  return uvarintSize(n) + n;
};

function headerValues(headers: IHeaders): [name: string, values: Bytes | Bytes[]][] {
  const out: [string, Bytes | Bytes[]][] = [];
  for (const [name, v] of Object.entries(headers)) if (v !== undefined) out.push([name, v]);
  return out;
}

/** Binary form: 0x01, count, then per output: topic, flags, key, value, timestamp, partition, headers. */
function encodeGroup(group: OutboxGroup): Buffer {
  const headerLists: ([string, Bytes | Bytes[]][] | undefined)[] = [];
  let size = 1 + uvarintSize(group.length);
  for (const { topic, message: m } of group) {
    size += fieldSize(topic) + 1;
    if (m.key !== null && m.key !== undefined) size += fieldSize(m.key);
    if (m.value !== null) size += fieldSize(m.value);
    if (m.timestamp !== undefined) size += fieldSize(m.timestamp);
    if (m.partition !== undefined) size += uvarintSize(m.partition);
    const headers = m.headers === undefined ? undefined : headerValues(m.headers);
    headerLists.push(headers);
    if (headers !== undefined) {
      size += uvarintSize(headers.length);
      for (const [name, v] of headers) {
        size += fieldSize(name) + 1;
        if (Array.isArray(v)) {
          size += uvarintSize(v.length);
          for (const x of v) size += fieldSize(x);
        } else size += fieldSize(v);
      }
    }
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  const uvarint = (v: number): void => {
    while (v >= 0x80) {
      out[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    out[at++] = v;
  };
  const field = (v: Bytes): void => {
    if (typeof v === 'string') {
      const n = Buffer.byteLength(v, 'utf8');
      uvarint(n);
      at += out.write(v, at, 'utf8');
    } else {
      uvarint(v.length);
      out.set(v, at);
      at += v.length;
    }
  };
  out[at++] = BINARY;
  uvarint(group.length);
  group.forEach(({ topic, message: m }, i) => {
    const headers = headerLists[i];
    field(topic);
    const hasKey = m.key !== null && m.key !== undefined;
    out[at++] =
      (hasKey ? HAS_KEY : 0) |
      (m.value !== null ? HAS_VALUE : 0) |
      (m.timestamp !== undefined ? HAS_TIMESTAMP : 0) |
      (m.partition !== undefined ? HAS_PARTITION : 0) |
      (headers !== undefined ? HAS_HEADERS : 0);
    if (hasKey) field(m.key as Bytes);
    if (m.value !== null) field(m.value);
    if (m.timestamp !== undefined) field(m.timestamp);
    if (m.partition !== undefined) uvarint(m.partition);
    if (headers !== undefined) {
      uvarint(headers.length);
      for (const [name, v] of headers) {
        field(name);
        if (Array.isArray(v)) {
          out[at++] = 1;
          uvarint(v.length);
          for (const x of v) field(x);
        } else {
          out[at++] = 0;
          field(v);
        }
      }
    }
  });
  if (at !== size) throw new Error(`outbox encoding wrote ${at} of ${size} bytes`);
  return out;
}

/** The binary form from `start` (after its marker byte). */
function decodeGroup(bytes: Buffer, start: number): OutboxEntry[] {
  let at = start;
  const uvarint = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= bytes.length) throw new RangeError('outbox entry truncated');
      const b = bytes[at++] as number;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
    }
  };
  const raw = (): Buffer => {
    const n = uvarint();
    if (at + n > bytes.length) throw new RangeError('outbox entry truncated');
    // A copy: the entry outlives the buffer RocksDB returned.
    const b = Buffer.from(bytes.subarray(at, at + n));
    at += n;
    return b;
  };
  const text = (): string => {
    const n = uvarint();
    if (at + n > bytes.length) throw new RangeError('outbox entry truncated');
    const s = bytes.toString('utf8', at, at + n);
    at += n;
    return s;
  };
  const count = uvarint();
  const out: OutboxEntry[] = [];
  for (let i = 0; i < count; i++) {
    const topic = text();
    if (at >= bytes.length) throw new RangeError('outbox entry truncated');
    const flags = bytes[at++] as number;
    const key = flags & HAS_KEY ? raw() : null;
    const value = flags & HAS_VALUE ? raw() : null;
    const timestamp = flags & HAS_TIMESTAMP ? text() : undefined;
    const partition = flags & HAS_PARTITION ? uvarint() : undefined;
    let headers: IHeaders | undefined;
    if (flags & HAS_HEADERS) {
      headers = {};
      for (let n = uvarint(); n > 0; n--) {
        const name = text();
        const isList = bytes[at++] === 1;
        if (isList) {
          const list: Buffer[] = [];
          for (let k = uvarint(); k > 0; k--) list.push(raw());
          headers[name] = list;
        } else headers[name] = raw();
      }
    }
    const message: Message = {
      key,
      value,
      ...(timestamp === undefined ? {} : { timestamp }),
      ...(partition === undefined ? {} : { partition }),
      ...(headers === undefined ? {} : { headers }),
    };
    out.push({ topic, message });
  }
  if (at !== bytes.length) throw new RangeError(`outbox entry has ${bytes.length - at} bytes after its last output`);
  return out;
}

/** An output as earlier versions stored it: JSON, bytes as base64, a list of such in `group`. */
interface JsonOutboxEntry {
  readonly topic: string;
  readonly key: string | null;
  readonly value: string | null;
  readonly timestamp?: string;
  readonly partition?: number;
  readonly headers?: Record<string, string | string[]>;
  readonly group?: readonly JsonOutboxEntry[];
}

function fromJson(e: JsonOutboxEntry): OutboxEntry {
  const headers: IHeaders = {};
  for (const [k, v] of Object.entries(e.headers ?? {})) headers[k] = Array.isArray(v) ? v.map((x) => Buffer.from(x, 'base64')) : Buffer.from(v, 'base64');
  return {
    topic: e.topic,
    message: {
      key: e.key === null ? null : Buffer.from(e.key, 'base64'),
      value: e.value === null ? null : Buffer.from(e.value, 'base64'),
      ...(e.timestamp === undefined ? {} : { timestamp: e.timestamp }),
      ...(e.partition === undefined ? {} : { partition: e.partition }),
      ...(e.headers ? { headers } : {}),
    },
  };
}

/** The binary form, deflated from 4 KiB; decodes the earlier forms too (uncompressed, JSON: a group or one output). */
export const outboxCodec: Codec<OutboxGroup> = {
  name: 'outbox-v3',
  encode: (group) => {
    const binary = encodeGroup(group);
    if (binary.length < DEFLATE_FROM_BYTES) return binary;
    const deflated = deflateRawSync(binary.subarray(1), { level: 1 });
    const out = Buffer.allocUnsafe(1 + deflated.length);
    out[0] = DEFLATED;
    deflated.copy(out, 1);
    return out;
  },
  decode: (bytes) => {
    if (bytes[0] === BINARY) return decodeGroup(bytes, 1);
    if (bytes[0] === DEFLATED) return decodeGroup(inflateRawSync(bytes.subarray(1)), 0);
    const e = JSON.parse(bytes.toString('utf8')) as JsonOutboxEntry;
    return (e.group ?? [e]).map(fromJson);
  },
};

export const outboxSpec: KeyValueStoreSpec<OutboxGroup> = { kind: 'key-value', name: OUTBOX_STORE, codec: outboxCodec };

/** Store key of the n-th outbox entry: sorts in produce order. */
export const outboxKey = (n: number): string => n.toString(36).padStart(11, '0');

/** The bytes an output takes in an outbox entry, about (for sizing groups). */
export function outboxBytes(topic: string, m: Message): number {
  let n = 16 + topic.length + (m.key === null || m.key === undefined ? 0 : bytesLength(m.key)) + (m.value === null ? 0 : bytesLength(m.value));
  if (m.headers !== undefined) for (const [name, v] of headerValues(m.headers)) n += 8 + name.length + (Array.isArray(v) ? v.reduce((s, x) => s + 4 + bytesLength(x), 0) : bytesLength(v));
  return n;
}
