/**
 * Produce requests encoded in one pass.
 *
 * kafkajs 2.2.4 (its last release) encodes a produce request record by record: each record, and each of its
 * headers, gets its own `Encoder` with a zero-filled 512-byte buffer, every varint is a `Buffer.from([...])`,
 * every varlong a chain of `Long` objects, and the bytes are copied once per level (record → batch body → batch →
 * partition → topic → request) with a doubling, zero-filled buffer at each. In a Kafka catch-up that was a
 * quarter of the runner's CPU (the changelogs, repartition topics and outputs are produced by the same process
 * that consumes). {@link fastProduceRequest} writes the same bytes — byte for byte, which the tests check
 * against kafkajs' own encoder on random requests — by measuring first and then writing into one buffer, and
 * computes the batch CRC-32C with the CPU's instruction (`@node-rs/crc32`; eight bytes at a time in JavaScript where
 * its binary does not load).
 *
 * {@link installProduceEncoding} puts it in place of kafkajs' `produce/v3/request` module (the v4–v7 requests
 * kafkajs sends are v3 with another version number), which kafkajs loads lazily at the first produce, and lets
 * kafkajs' request framing put the header in front of the payload instead of copying the payload twice. It is
 * installed only for the kafkajs version it was written against and falls back to kafkajs' encoder for what it
 * does not cover (compressed batches, values other than strings and buffers, timestamps that are not safe
 * integers), so kafkajs' own behaviour, errors included, is kept there.
 */
import { createRequire } from 'node:module';
import { batchCrc32c } from '../util/crc32c.js';
import { kafkajsVersionMismatch } from './kafkajs-preload.js';

export { batchCrc32c, crc32c, nativeCrc32cInUse } from '../util/crc32c.js';

const require = createRequire(import.meta.url);

const V3_REQUEST = 'kafkajs/src/protocol/requests/produce/v3/request.js';

type Bytes = Buffer | string | null | undefined;
interface ProduceMessage {
  readonly key?: Bytes;
  readonly value?: Bytes;
  readonly timestamp?: string | number | null;
  readonly headers?: Record<string, Bytes | Bytes[]> | null;
}
interface PartitionData {
  readonly partition: number;
  readonly messages: readonly ProduceMessage[];
  readonly firstSequence?: number;
}
interface TopicData {
  readonly topic: string;
  readonly partitions: readonly PartitionData[];
}
/** kafkajs' Long (BigInt-backed). */
interface KLong {
  getHighBits(): number;
  getLowBits(): number;
}
interface LongModule {
  fromValue(v: unknown): KLong;
  fromInt(v: number): KLong;
}
/** The arguments kafkajs passes to a produce request factory. */
export interface ProduceRequestArgs {
  readonly acks: number;
  readonly timeout: number;
  readonly transactionalId?: string | null;
  readonly producerId?: unknown;
  readonly producerEpoch?: number;
  readonly compression?: number;
  readonly topicData: readonly TopicData[];
}
/** What kafkajs' encoder produces: an Encoder; the request framing reads `buf` and `buffer`. */
export interface EncoderLike {
  buf: Buffer;
  offset: number;
  readonly buffer: Buffer;
  size(): number;
}
export interface ProduceRequest {
  readonly apiKey: number;
  readonly apiVersion: number;
  readonly apiName: string;
  expectResponse(): boolean;
  encode(): Promise<EncoderLike>;
}
export type ProduceRequestFactory = (args: ProduceRequestArgs) => ProduceRequest;

// ---------------------------------------------------------------------------------------------------------------
// Sizes and writers

/** Bytes of an unsigned varint (value < 2^32). */
function uvarintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}
/** zig-zag of a 32-bit int, as kafkajs' Encoder.encodeZigZag then `>>>` (unsigned). */
function zigzag32(v: number): number {
  return ((v << 1) ^ (v >> 31)) >>> 0;
}
/** zig-zag of an integer, exact as a double for |v| < 2^52 (callers check). */
function zigzag64(v: number): number {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}
function uvarlongSize(z: number): number {
  let n = 1;
  while (z >= 0x80) {
    z = Math.floor(z / 0x80);
    n++;
  }
  return n;
}
function writeUvarint(buf: Buffer, at: number, v: number): number {
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[at++] = v;
  return at;
}
function writeUvarlong(buf: Buffer, at: number, z: number): number {
  while (z >= 0x80) {
    buf[at++] = (z % 0x80) | 0x80;
    z = Math.floor(z / 0x80);
  }
  buf[at++] = z;
  return at;
}

/** A record's key, value or header value: its encoded length (-1 for null) or undefined where kafkajs would do otherwise. */
function bytesLength(v: unknown): number | undefined {
  if (v === null || v === undefined) return -1;
  if (typeof v === 'string') return Buffer.byteLength(v, 'utf8');
  if (Buffer.isBuffer(v)) return v.length;
  return undefined;
}
function writeVarBytes(buf: Buffer, at: number, v: Bytes, len: number): number {
  at = writeUvarint(buf, at, zigzag32(len));
  if (len <= 0) return at;
  if (typeof v === 'string') buf.write(v, at, len, 'utf8');
  else (v as Buffer).copy(buf, at);
  return at + len;
}

// ---------------------------------------------------------------------------------------------------------------
// The request

const NO_HEADERS: (readonly [string, Bytes, number, number])[] = [];

interface PlannedRecord {
  readonly m: ProduceMessage;
  readonly tsZigzag: number;
  readonly keyLen: number;
  readonly valueLen: number;
  readonly headers: readonly (readonly [string, Bytes, number, number])[];
  readonly bodySize: number;
}
interface PlannedBatch {
  readonly partition: number;
  readonly firstTimestamp: string | number;
  readonly maxTimestamp: string | number;
  readonly firstSequence: number;
  readonly records: readonly PlannedRecord[];
  /** RecordBatch bytes: firstOffset .. last record. */
  readonly size: number;
}
interface PlannedTopic {
  readonly topic: string;
  readonly topicLen: number;
  readonly batches: readonly PlannedBatch[];
}

/** Min and max as `Array.prototype.sort()` without a comparator orders them (by their string form), as kafkajs does. */
function timestampRange(messages: readonly ProduceMessage[], now: number): [string | number, string | number] {
  let min: string | number | undefined;
  let max: string | number | undefined;
  let minS = '';
  let maxS = '';
  for (const m of messages) {
    const t = m.timestamp;
    if (t === null || t === undefined) continue;
    const s = String(t);
    if (min === undefined || s < minS) {
      min = t;
      minS = s;
    }
    if (max === undefined || s >= maxS) {
      max = t;
      maxS = s;
    }
  }
  return min === undefined || max === undefined ? [now, now] : [min, max];
}

/** undefined: kafkajs' own encoder must do this batch (values it handles otherwise, errors it raises). */
function planBatch(p: PartitionData, now: number): PlannedBatch | undefined {
  const [firstTimestamp, maxTimestamp] = timestampRange(p.messages, now);
  const records: PlannedRecord[] = [];
  // firstOffset, length, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta, 2 timestamps, producer
  // id and epoch, firstSequence, record count
  let size = 8 + 4 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4;
  for (let i = 0; i < p.messages.length; i++) {
    const m = p.messages[i]!;
    const delta = ((m.timestamp || now) as number) - (firstTimestamp as number);
    // zig-zag doubles it: exact in a double below 2^52
    if (!Number.isSafeInteger(delta) || Math.abs(delta) >= 2 ** 52) return undefined;
    const keyLen = bytesLength(m.key);
    const valueLen = bytesLength(m.value);
    if (keyLen === undefined || valueLen === undefined) return undefined;
    const hs = m.headers;
    if (hs === null || (hs !== undefined && typeof hs !== 'object')) return undefined;
    // Most records have no headers: one shared empty list, no allocation per record
    const headers: (readonly [string, Bytes, number, number])[] = hs === undefined ? NO_HEADERS : [];
    let headersSize = 0;
    if (hs !== undefined) {
      for (const name of Object.keys(hs)) {
        const hv = hs[name];
        for (const v of Array.isArray(hv) ? hv : [hv]) {
          // kafkajs measures a header value with Buffer.byteLength, which throws for null
          if (typeof v !== 'string' && !Buffer.isBuffer(v)) return undefined;
          const nameLen = Buffer.byteLength(name, 'utf8');
          const len = typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length;
          headers.push([name, v, nameLen, len]);
          headersSize += uvarintSize(zigzag32(nameLen)) + nameLen + uvarintSize(zigzag32(len)) + len;
        }
      }
    }
    const tsZigzag = zigzag64(delta);
    const bodySize =
      1 +
      uvarlongSize(tsZigzag) +
      uvarintSize(zigzag32(i)) +
      uvarintSize(zigzag32(keyLen)) +
      Math.max(keyLen, 0) +
      uvarintSize(zigzag32(valueLen)) +
      Math.max(valueLen, 0) +
      uvarintSize(zigzag32(headers.length)) +
      headersSize;
    records.push({ m, tsZigzag, keyLen, valueLen, headers, bodySize });
    size += uvarintSize(zigzag32(bodySize)) + bodySize;
  }
  return { partition: p.partition, firstTimestamp, maxTimestamp, firstSequence: p.firstSequence ?? 0, records, size };
}

function writeInt64(buf: Buffer, at: number, l: KLong): number {
  buf.writeInt32BE(l.getHighBits(), at);
  buf.writeInt32BE(l.getLowBits(), at + 4);
  return at + 8;
}

function writeBatch(buf: Buffer, at: number, b: PlannedBatch, attributes: number, producerId: KLong, producerEpoch: number, Long: LongModule): number {
  at = writeInt64(buf, at, Long.fromInt(0));
  buf.writeInt32BE(b.size - 12, at); // the batch's length after firstOffset and this field
  at += 4;
  buf.writeInt32BE(0, at); // partitionLeaderEpoch
  buf.writeInt8(2, at + 4); // magic
  const crcAt = at + 5;
  at += 9;
  const bodyStart = at;
  buf.writeInt16BE(attributes, at);
  buf.writeInt32BE(b.records.length - 1, at + 2);
  at = writeInt64(buf, at + 6, Long.fromValue(b.firstTimestamp));
  at = writeInt64(buf, at, Long.fromValue(b.maxTimestamp));
  at = writeInt64(buf, at, producerId);
  buf.writeInt16BE(producerEpoch, at);
  buf.writeInt32BE(b.firstSequence, at + 2);
  buf.writeInt32BE(b.records.length, at + 6);
  at += 10;
  for (let i = 0; i < b.records.length; i++) {
    const r = b.records[i]!;
    at = writeUvarint(buf, at, zigzag32(r.bodySize));
    buf[at++] = 0; // attributes
    at = writeUvarlong(buf, at, r.tsZigzag);
    at = writeUvarint(buf, at, zigzag32(i));
    at = writeVarBytes(buf, at, r.m.key, r.keyLen);
    at = writeVarBytes(buf, at, r.m.value, r.valueLen);
    at = writeUvarint(buf, at, zigzag32(r.headers.length));
    for (const [name, v, nameLen, len] of r.headers) {
      at = writeUvarint(buf, at, zigzag32(nameLen));
      buf.write(name, at, nameLen, 'utf8');
      at += nameLen;
      at = writeVarBytes(buf, at, v, len);
    }
  }
  buf.writeUInt32BE(batchCrc32c(buf, bodyStart, at), crcAt);
  return at;
}

/**
 * Free bytes in front of an encoder's bytes in the buffer they live in. kafkajs frames a request by writing its
 * header into a new encoder and then the payload after it (`writeEncoder`, a copy into a zero-filled buffer of
 * the next power of two), and once more for the size prefix: two copies of every produce request. With room in
 * front, `writeEncoder` moves the few header bytes in front of the payload instead (see
 * {@link installProduceEncoding}). Taken once: a payload framed a second time is copied as kafkajs does.
 */
interface Room {
  readonly backing: Buffer;
  readonly start: number;
}
const rooms = new WeakMap<object, Room>();
/** Request header (api key, version, correlation id, client id) and size prefix fit in this. */
const FRAMING_ROOM = 512;

/** `Encoder.prototype.writeEncoder` that puts this encoder's bytes in the room in front of `value`'s. */
function framingWriteEncoder(original: (this: EncoderLike, value: unknown) => EncoderLike): (this: EncoderLike, value: unknown) => EncoderLike {
  return function writeEncoder(this: EncoderLike, value: unknown): EncoderLike {
    const room = typeof value === 'object' && value !== null ? rooms.get(value) : undefined;
    if (room === undefined || this.offset > room.start || rooms.has(this)) return original.call(this, value);
    rooms.delete(value as object);
    const payload = value as EncoderLike;
    const start = room.start - this.offset;
    this.buf.copy(room.backing, start, 0, this.offset);
    this.buf = room.backing.subarray(start, room.start + payload.offset);
    this.offset += payload.offset;
    rooms.set(this, { backing: room.backing, start });
    return this;
  };
}

export interface KafkajsInternals {
  readonly Long: LongModule;
  readonly Encoder: new (initialSize?: number) => EncoderLike;
}

/**
 * The produce request (v3 layout) encoded in one pass; `fallback` (kafkajs' own v3 request) for what it does not
 * cover. Same fields and bytes as kafkajs' request.
 */
export function fastProduceRequest(fallback: ProduceRequestFactory, internals: KafkajsInternals): ProduceRequestFactory {
  const { Long, Encoder } = internals;
  return (args) => {
    const base = fallback(args);
    if ((args.compression ?? 0) !== 0) return base;
    const encode = async (): Promise<EncoderLike> => {
      const now = Date.now();
      const transactionalId = args.transactionalId ?? null;
      const producerId = args.producerId === undefined ? Long.fromInt(-1) : Long.fromValue(args.producerId);
      const producerEpoch = args.producerEpoch ?? 0;
      const attributes = transactionalId ? 16 : 0; // kafkajs: transactional = !!transactionalId
      const topics: PlannedTopic[] = [];
      let size = 2 + (transactionalId === null ? 0 : Buffer.byteLength(transactionalId, 'utf8')) + 2 + 4 + 4;
      for (const t of args.topicData) {
        const batches: PlannedBatch[] = [];
        for (const p of t.partitions) {
          const b = planBatch(p, now);
          if (b === undefined) return base.encode();
          batches.push(b);
          size += 4 + 4 + b.size;
        }
        const topicLen = Buffer.byteLength(t.topic, 'utf8');
        topics.push({ topic: t.topic, topicLen, batches });
        size += 2 + topicLen + 4;
      }
      // Room in front for the request header and size prefix kafkajs' framing puts before the payload
      const backing = Buffer.allocUnsafe(FRAMING_ROOM + size);
      const buf = backing.subarray(FRAMING_ROOM);
      let at = 0;
      if (transactionalId === null) at = buf.writeInt16BE(-1, at);
      else {
        at = buf.writeInt16BE(Buffer.byteLength(transactionalId, 'utf8'), at);
        at += buf.write(transactionalId, at, 'utf8');
      }
      at = buf.writeInt16BE(args.acks, at);
      at = buf.writeInt32BE(args.timeout, at);
      at = buf.writeInt32BE(topics.length, at);
      for (const t of topics) {
        at = buf.writeInt16BE(t.topicLen, at);
        at += buf.write(t.topic, at, t.topicLen, 'utf8');
        at = buf.writeInt32BE(t.batches.length, at);
        for (const b of t.batches) {
          at = buf.writeInt32BE(b.partition, at);
          at = buf.writeInt32BE(b.size, at);
          at = writeBatch(buf, at, b, attributes, producerId, producerEpoch, Long);
        }
      }
      if (at !== size) throw new Error(`produce request encoding: wrote ${at} of ${size} bytes`);
      const enc = new Encoder(0);
      enc.buf = buf;
      enc.offset = size;
      rooms.set(enc, { backing, start: FRAMING_ROOM });
      return enc;
    };
    return { ...base, encode };
  };
}

let installed: 'installed' | string | undefined;

/**
 * kafkajs' produce/v3 request factory as the require cache holds it now (kafkajs' own until
 * {@link installProduceEncoding} has run) and the internals the one-pass encoder uses.
 */
export function kafkajsProduceModules(): { readonly own: ProduceRequestFactory; readonly internals: KafkajsInternals } {
  return {
    own: require(V3_REQUEST) as ProduceRequestFactory,
    internals: {
      Long: require('kafkajs/src/utils/long.js') as LongModule,
      Encoder: require('kafkajs/src/protocol/encoder.js') as KafkajsInternals['Encoder'],
    },
  };
}

/**
 * Puts {@link fastProduceRequest} in place of kafkajs' produce/v3 request module; idempotent. Returns
 * 'installed', or why not (another kafkajs version; the module already loaded by a produce).
 */
export function installProduceEncoding(): string {
  if (installed !== undefined) return installed;
  const mismatch = kafkajsVersionMismatch();
  if (mismatch !== undefined) return (installed = `${mismatch}: its own produce encoding is used`);
  const path = require.resolve(V3_REQUEST);
  const dir = path.slice(0, -'v3/request.js'.length);
  const later = [4, 5, 6, 7].filter((v) => require.cache[`${dir}v${v}/request.js`] !== undefined);
  if (later.length > 0) return (installed = `kafkajs produce v${later.join(', v')} already loaded: its own produce encoding is used`);
  const { own, internals } = kafkajsProduceModules();
  const entry = require.cache[path];
  if (entry === undefined) return (installed = 'kafkajs produce request module not in the require cache: its own produce encoding is used');
  entry.exports = fastProduceRequest(own, internals);
  const proto = internals.Encoder.prototype as { writeEncoder: (this: EncoderLike, value: unknown) => EncoderLike };
  proto.writeEncoder = framingWriteEncoder(proto.writeEncoder);
  return (installed = 'installed');
}
