/**
 * Record (de)serialisation for Kafka topics (DESIGN §2): JSON in development and replay, Avro through a
 * Confluent-compatible Schema Registry in production. Both check every value against the contract
 * (schemas/contract.ts) with the same rules as the replay envelope (src/replay/envelope.ts): the key is a
 * non-empty UTF-8 string equal to `value[keyField]`, null values (tombstones) only where the topic allows them.
 *
 * Decoding never throws: every failure is a `DecodeFailure` with a short reason code and the bad fields, ready
 * for the dead-letter queue (src/kafka/dlq.ts). Error paths are JSON pointers into the record: `/key`,
 * `/value` (the whole value) or `/value/<field>…`. Encoding an invalid value throws KAIROS_ERR_SERDE naming the
 * fields.
 */
import avro from 'avsc';
import { COMPATIBILITY, SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { TOPICS, type TopicName } from '../../schemas/contract.js';
import { KairosError } from '../errors.js';
import { fromAvro, toAvro } from '../serde/avro-value.js';
import { generatedSchemaFiles } from '../serde/schema-files.js';
import { validateValue, type FieldError } from '../serde/validate.js';

/**
 * Why a record could not be decoded:
 * - `no-key`: the key is missing, empty or not UTF-8 text;
 * - `tombstone-not-allowed`: a null value on a topic without tombstones;
 * - `not-json`: the value is not UTF-8 JSON (JsonSerde);
 * - `bad-avro`: the value is not in Confluent wire format, or its bytes do not read with their writer schema;
 * - `unknown-schema`: the schema id is not in the registry, is not Avro, or is a different record than the topic's;
 * - `registry-unavailable`: the registry could not be asked (network, 5xx). Not the record's fault:
 *   `retriable` is true, and a runner should retry rather than dead-letter it;
 * - `invalid`: the value does not match the topic's contract;
 * - `key-mismatch`: the key differs from `value[keyField]`.
 */
export type DecodeFailureReason =
  | 'no-key'
  | 'tombstone-not-allowed'
  | 'not-json'
  | 'bad-avro'
  | 'unknown-schema'
  | 'registry-unavailable'
  | 'invalid'
  | 'key-mismatch';

export interface DecodedValue {
  readonly ok: true;
  readonly key: string;
  /** The validated contract value (`TopicValue<topic>`), or null for a tombstone where the topic allows it. */
  readonly value: unknown;
  /** The value's event time (`value[timestampField]`); undefined for a tombstone. */
  readonly timestamp: number | undefined;
}

export interface DecodeFailure {
  readonly ok: false;
  readonly reason: DecodeFailureReason;
  readonly errors: readonly FieldError[];
  /** True only for `registry-unavailable`: the same bytes may decode later. */
  readonly retriable: boolean;
}

export type DecodeResult = DecodedValue | DecodeFailure;

export interface TopicSerde {
  /** Decodes and validates one record. Never throws (the promise never rejects). */
  decode(topic: TopicName, key: Buffer | null, value: Buffer | null): Promise<DecodeResult>;
  /**
   * The same as `decode`, synchronously, for a format that needs no I/O to decode (JSON; not Avro, whose writer
   * schemas come from the registry). Runners use it when present: one record less a promise.
   */
  decodeSync?(topic: TopicName, key: Buffer | null, value: Buffer | null): DecodeResult;
  /** Validates and encodes a value; rejects with KAIROS_ERR_SERDE naming the bad fields. */
  encode(topic: TopicName, value: unknown): Promise<Buffer>;
}

/** The Schema Registry subject of a topic's values (TopicNameStrategy). */
export const valueSubject = (topic: string): string => `${topic}-value`;

let schemaFiles: Map<string, string> | undefined;

/** The generated Avro schema of a topic, as the text of schemas/avro/<topic>.avsc. */
export function avroSchemaText(topic: TopicName): string {
  schemaFiles ??= generatedSchemaFiles();
  const text = schemaFiles.get(`avro/${topic}.avsc`);
  if (text === undefined) throw new KairosError('KAIROS_ERR_CONFIG', `no generated Avro schema for topic ${topic}`);
  return text;
}

// ---------------------------------------------------------------------------------------------------------
// Rules shared by both formats

const utf8 = new TextDecoder('utf-8', { fatal: true });
/** Keys compare byte for byte with the value's field, so a leading BOM is kept rather than dropped. */
const utf8Key = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function failure(reason: DecodeFailureReason, errors: FieldError[], retriable = false): DecodeFailure {
  return { ok: false, reason, errors, retriable };
}

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** The key as a string, or why it is unusable. */
function decodeKey(topic: TopicName, key: Buffer | null): string | DecodeFailure {
  const keyField = TOPICS[topic].keyField;
  if (key === null || key.length === 0) return failure('no-key', [{ path: '/key', message: `required: records of ${topic} are keyed by ${keyField}` }]);
  try {
    return utf8Key.decode(key);
  } catch {
    return failure('no-key', [{ path: '/key', message: 'not valid UTF-8 text' }]);
  }
}

function tombstone(topic: TopicName, key: string): DecodeResult {
  if (!TOPICS[topic].tombstones) return failure('tombstone-not-allowed', [{ path: '/value', message: `null (tombstone) is not allowed on ${topic}` }]);
  return { ok: true, key, value: null, timestamp: undefined };
}

/** Validates a decoded value and checks it against the key. */
function checkValue(topic: TopicName, key: string, value: unknown): DecodeResult {
  const spec = TOPICS[topic];
  const v = validateValue(topic, value);
  if (!v.ok) return failure('invalid', v.errors.map((e) => ({ path: `/value${e.path}`, message: e.message })));
  const fields = v.value as Record<string, unknown>;
  if (fields[spec.keyField] !== key) {
    return failure('key-mismatch', [{ path: '/key', message: `must equal value.${spec.keyField} ("${String(fields[spec.keyField])}"), got "${key}"` }]);
  }
  return { ok: true, key, value: v.value, timestamp: fields[spec.timestampField] as number };
}

/** The last resort that keeps `decode` from throwing on a bug or an unexpected input. */
function internalFailure(err: unknown): DecodeFailure {
  return failure('invalid', [{ path: '', message: `could not be decoded: ${errorMessage(err)}` }]);
}

function invalidValueError(topic: TopicName, errors: readonly FieldError[]): KairosError {
  const list = errors.map((e) => `${e.path || '(value)'}: ${e.message}`).join('; ');
  return new KairosError('KAIROS_ERR_SERDE', `cannot encode a value for ${topic}: ${list}`, { details: { topic, errors } });
}

/** Validates a value before encoding it; a tombstone is sent as a null value and never encoded. */
function assertEncodable(topic: TopicName, value: unknown): void {
  if (value === null || value === undefined) {
    throw new KairosError('KAIROS_ERR_SERDE', `cannot encode ${String(value)} for ${topic}: send a tombstone as a null Kafka value`, { details: { topic } });
  }
  const v = validateValue(topic, value);
  if (!v.ok) throw invalidValueError(topic, v.errors);
}

// ---------------------------------------------------------------------------------------------------------
// JSON

/** UTF-8 JSON values, validated against the contract. */
export class JsonSerde implements TopicSerde {
  readonly format = 'json';

  decode(topic: TopicName, key: Buffer | null, value: Buffer | null): Promise<DecodeResult> {
    return Promise.resolve(this.decodeSync(topic, key, value));
  }

  /** The same as `decode`, synchronously. */
  decodeSync(topic: TopicName, key: Buffer | null, value: Buffer | null): DecodeResult {
    try {
      const k = decodeKey(topic, key);
      if (typeof k !== 'string') return k;
      if (value === null) return tombstone(topic, k);
      let json: unknown;
      try {
        json = JSON.parse(utf8.decode(value));
      } catch (err) {
        const message = err instanceof SyntaxError ? `not valid JSON: ${err.message}` : 'not valid UTF-8 text';
        return failure('not-json', [{ path: '/value', message }]);
      }
      return checkValue(topic, k, json);
    } catch (err) {
      return internalFailure(err);
    }
  }

  encode(topic: TopicName, value: unknown): Promise<Buffer> {
    try {
      assertEncodable(topic, value);
      return Promise.resolve(Buffer.from(JSON.stringify(value), 'utf8'));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Avro through the Schema Registry

export type SchemaRegistryArgs = ConstructorParameters<typeof SchemaRegistry>[0];

export interface AvroSerdeOptions {
  /** A registry client, or the arguments to create one (`{ host: 'http://registry:8081', auth?, retry? }`). */
  readonly registry: SchemaRegistry | SchemaRegistryArgs;
  /**
   * On `init()`, register each topic's generated schema under `<topic>-value` (development, CI, demo).
   * Otherwise (the default) the schemas must already be registered, and `init()` only looks their ids up.
   */
  readonly register?: boolean;
  /**
   * The compatibility level the client sets on a subject it registers first (default BACKWARD). The client
   * refuses to register under a subject whose subject-level compatibility differs from it.
   */
  readonly compatibility?: COMPATIBILITY;
  /** The topics to prepare on `init()` (default: every topic of the contract). */
  readonly topics?: readonly TopicName[];
}

interface ReaderInfo {
  /** Full name of the topic's record, e.g. io.kairos.v1.BasketEvent. */
  readonly name: string;
}

/** An HTTP error from the registry client (its ResponseError carries the status). */
function httpStatus(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'status' in err && typeof err.status === 'number' ? err.status : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// A bounded pre-scan of Avro binary. avsc trusts an array or map block count and allocates and loops that many
// times even past the end of the buffer: 13 corrupt bytes claiming 200 million push tokens take seconds and
// gigabytes before failing. This walk checks the bytes against the writer schema first, in time and memory
// proportional to their length, so such a record is dead-lettered instead of stalling or crashing the task.

/** An array or map block of items that take no bytes (nulls, empty records) may not claim more than this. */
const MAX_ZERO_BYTE_ITEMS = 1_000_000;

class MalformedAvro extends Error {}

interface Cursor {
  readonly buf: Buffer;
  pos: number;
}

function readVarLong(c: Cursor): number {
  let n = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    const b = c.buf[c.pos++];
    if (b === undefined) throw new MalformedAvro('truncated buffer');
    n += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) {
      if (n > Number.MAX_SAFE_INTEGER) throw new MalformedAvro('a long is out of the safe integer range');
      return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
    }
    scale *= 128;
  }
  throw new MalformedAvro('a varint is longer than 10 bytes');
}

function skipBytes(c: Cursor, n: number): void {
  if (n < 0 || c.pos + n > c.buf.length) throw new MalformedAvro(n < 0 ? 'negative length' : 'truncated buffer');
  c.pos += n;
}

const minSizes = new WeakMap<avro.Type, number>();

/** A lower bound of the encoded size of a value of `type`. */
function minSize(type: avro.Type, visiting = new Set<avro.Type>()): number {
  const known = minSizes.get(type);
  if (known !== undefined) return known;
  if (visiting.has(type)) return 0; // a recursive record: 0 is a safe lower bound
  visiting.add(type);
  const t = type as unknown as Record<string, unknown>;
  let size: number;
  switch (type.typeName) {
    case 'null':
      size = 0;
      break;
    case 'float':
      size = 4;
      break;
    case 'double':
      size = 8;
      break;
    case 'fixed':
      size = t.size as number;
      break;
    case 'record':
    case 'error':
      size = (t.fields as { type: avro.Type }[]).reduce((sum, f) => sum + minSize(f.type, visiting), 0);
      break;
    case 'union:unwrapped':
    case 'union:wrapped':
      size = 1 + Math.min(...(t.types as avro.Type[]).map((b) => minSize(b, visiting)));
      break;
    default:
      size = type.typeName.startsWith('logical:') ? minSize(t.underlyingType as avro.Type, visiting) : 1;
  }
  visiting.delete(type);
  minSizes.set(type, size);
  return size;
}

function scanBlocks(c: Cursor, itemSize: number, scanItem: () => void): void {
  let zeroByteItems = 0;
  for (;;) {
    let n = readVarLong(c);
    if (n === 0) return;
    if (n < 0) {
      n = -n;
      const bytes = readVarLong(c);
      if (bytes < 0 || c.pos + bytes > c.buf.length) throw new MalformedAvro('a block size exceeds the buffer');
    }
    if (itemSize > 0 ? n * itemSize > c.buf.length - c.pos : (zeroByteItems += n) > MAX_ZERO_BYTE_ITEMS) {
      throw new MalformedAvro(`a block claims ${n} items, more than the ${c.buf.length - c.pos} bytes left can hold`);
    }
    for (let i = 0; i < n; i++) scanItem();
  }
}

function scanValue(type: avro.Type, c: Cursor): void {
  const t = type as unknown as Record<string, unknown>;
  switch (type.typeName) {
    case 'null':
      return;
    case 'boolean':
      return skipBytes(c, 1);
    case 'int':
    case 'long':
      readVarLong(c);
      return;
    case 'float':
      return skipBytes(c, 4);
    case 'double':
      return skipBytes(c, 8);
    case 'bytes':
    case 'string':
      return skipBytes(c, readVarLong(c));
    case 'fixed':
      return skipBytes(c, t.size as number);
    case 'enum': {
      const i = readVarLong(c);
      if (i < 0 || i >= (t.symbols as string[]).length) throw new MalformedAvro(`enum index ${i} out of range`);
      return;
    }
    case 'record':
    case 'error':
      for (const f of t.fields as { type: avro.Type }[]) scanValue(f.type, c);
      return;
    case 'array': {
      const items = t.itemsType as avro.Type;
      return scanBlocks(c, minSize(items), () => scanValue(items, c));
    }
    case 'map': {
      const values = t.valuesType as avro.Type;
      return scanBlocks(c, 1 + minSize(values), () => {
        skipBytes(c, readVarLong(c));
        scanValue(values, c);
      });
    }
    case 'union:unwrapped':
    case 'union:wrapped': {
      const branches = t.types as avro.Type[];
      const i = readVarLong(c);
      const branch = branches[i];
      if (branch === undefined) throw new MalformedAvro(`union index ${i} out of range`);
      return scanValue(branch, c);
    }
    default:
      if (type.typeName.startsWith('logical:')) return scanValue(t.underlyingType as avro.Type, c);
      throw new MalformedAvro(`unsupported Avro type ${type.typeName}`);
  }
}

/** Checks that `buf[offset..]` is exactly one well-formed value of `type`; throws MalformedAvro otherwise. */
export function scanAvro(type: avro.Type, buf: Buffer, offset = 0): void {
  const c: Cursor = { buf, pos: offset };
  scanValue(type, c);
  if (c.pos !== buf.length) throw new MalformedAvro('trailing data');
}

/**
 * Avro values in Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro binary), with schemas
 * in a Schema Registry (the official @kafkajs/confluent-schema-registry client). Records written with any
 * registered version of the topic's record decode: they are read with their writer schema, projected onto the
 * contract (fields the contract does not know are dropped) and validated.
 */
export class AvroSerde implements TopicSerde {
  readonly format = 'avro';
  readonly registry: SchemaRegistry;
  private readonly options: AvroSerdeOptions;
  private readonly ids = new Map<TopicName, number>();
  private readonly readers = new Map<TopicName, ReaderInfo>();
  private initializing: Promise<ReadonlyMap<TopicName, number>> | undefined;

  constructor(options: AvroSerdeOptions) {
    this.options = options;
    this.registry = options.registry instanceof SchemaRegistry ? options.registry : new SchemaRegistry(options.registry);
  }

  /**
   * Registers (with `register: true`) or looks up each topic's schema under `<topic>-value` and remembers
   * its id. Idempotent; `encode` runs it when needed. Rejects with KAIROS_ERR_CONFIG when a schema is not
   * registered or is incompatible, KAIROS_ERR_KAFKA (retriable) when the registry cannot be reached.
   */
  init(): Promise<ReadonlyMap<TopicName, number>> {
    this.initializing ??= this.prepare().catch((err: unknown) => {
      this.initializing = undefined;
      throw err;
    });
    return this.initializing;
  }

  /** The registry id of a topic's schema once `init()` has run. */
  schemaId(topic: TopicName): number | undefined {
    return this.ids.get(topic);
  }

  private async prepare(): Promise<ReadonlyMap<TopicName, number>> {
    const topics = this.options.topics ?? (Object.keys(TOPICS) as TopicName[]);
    for (const topic of topics) {
      const subject = valueSubject(topic);
      const schema = { type: SchemaType.AVRO, schema: avroSchemaText(topic) } as const;
      let id: number;
      try {
        if (this.options.register === true) {
          ({ id } = await this.registry.register(schema, { subject, compatibility: this.options.compatibility ?? COMPATIBILITY.BACKWARD }));
        } else {
          id = await this.registry.getRegistryIdBySchema(subject, schema);
          await this.registry.getSchema(id); // cached by the client, so encode never waits for the registry
        }
      } catch (err) {
        throw this.initError(topic, subject, err);
      }
      this.ids.set(topic, id);
    }
    return new Map(this.ids);
  }

  private initError(topic: TopicName, subject: string, err: unknown): KairosError {
    const status = httpStatus(err);
    const name = err instanceof Error ? err.name : '';
    const why = errorMessage(err);
    if (status === undefined && name === 'ConfluentSchemaRegistryError') {
      // getRegistryIdBySchema turns a 404 into this error.
      return new KairosError('KAIROS_ERR_CONFIG', `the Avro schema of ${topic} is not registered under subject ${subject}; register it (AvroSerde register: true) — ${why}`, {
        cause: err,
        details: { topic, subject },
      });
    }
    if (status === 409 || status === 422 || name === 'ConfluentSchemaRegistryCompatibilityError' || name === 'ConfluentSchemaRegistryArgumentError') {
      return new KairosError('KAIROS_ERR_CONFIG', `the schema registry refused the Avro schema of ${topic} under subject ${subject}: ${why}`, {
        cause: err,
        details: { topic, subject, status },
      });
    }
    return new KairosError('KAIROS_ERR_KAFKA', `the schema registry could not be asked about subject ${subject}: ${why}`, { cause: err, details: { topic, subject, status } });
  }

  private reader(topic: TopicName): ReaderInfo {
    let r = this.readers.get(topic);
    if (!r) {
      const type = avro.Type.forSchema(JSON.parse(avroSchemaText(topic)) as avro.Schema);
      r = { name: type.name ?? '' };
      this.readers.set(topic, r);
    }
    return r;
  }

  async encode(topic: TopicName, value: unknown): Promise<Buffer> {
    assertEncodable(topic, value);
    await this.init();
    const id = this.ids.get(topic);
    if (id === undefined) throw new KairosError('KAIROS_ERR_CONFIG', `AvroSerde was not prepared for topic ${topic} (options.topics)`, { details: { topic } });
    try {
      return await this.registry.encode(id, toAvro(TOPICS[topic].schema, value));
    } catch (err) {
      const paths = (err as { paths?: unknown }).paths;
      const fields = Array.isArray(paths) ? paths.map((p) => (Array.isArray(p) ? `/${p.join('/')}` : String(p))) : [];
      throw new KairosError('KAIROS_ERR_SERDE', `cannot encode a value for ${topic} with schema id ${id}${fields.length > 0 ? ` (fields ${fields.join(', ')})` : ''}: ${errorMessage(err)}`, {
        cause: err,
        details: { topic, id, fields },
      });
    }
  }

  async decode(topic: TopicName, key: Buffer | null, value: Buffer | null): Promise<DecodeResult> {
    try {
      const k = decodeKey(topic, key);
      if (typeof k !== 'string') return k;
      if (value === null) return tombstone(topic, k);
      if (value.length < 5 || value[0] !== 0) {
        return failure('bad-avro', [{ path: '/value', message: 'not in Confluent wire format (magic byte 0, 4-byte schema id, Avro binary)' }]);
      }
      const id = value.readInt32BE(1);
      const writer = await this.writerType(topic, id);
      if ('ok' in writer) return writer;
      let raw: unknown;
      try {
        scanAvro(writer.type, value, 5);
        raw = await this.registry.decode(value);
      } catch (err) {
        return failure('bad-avro', [{ path: '/value', message: `does not read with its writer schema (id ${id}): ${errorMessage(err)}` }]);
      }
      let decoded: unknown;
      try {
        decoded = fromAvro(TOPICS[topic].schema, raw);
      } catch (err) {
        return failure('invalid', [{ path: '/value', message: `a JSON-text field is not valid JSON: ${errorMessage(err)}` }]);
      }
      return checkValue(topic, k, decoded);
    } catch (err) {
      return internalFailure(err);
    }
  }

  /** Fetches (or finds in the client's cache) the writer schema and checks that it is a version of the topic's record. */
  private async writerType(topic: TopicName, id: number): Promise<{ readonly type: avro.Type } | DecodeFailure> {
    let writer: unknown;
    try {
      writer = await this.registry.getSchema(id);
    } catch (err) {
      const status = httpStatus(err);
      if (status === 404) return failure('unknown-schema', [{ path: '/value', message: `schema id ${id} is not in the registry` }]);
      if (status === undefined && err instanceof Error && err.name === 'ConfluentSchemaRegistryArgumentError') {
        // The registry answered, but with a schema the client cannot parse.
        return failure('unknown-schema', [{ path: '/value', message: `schema id ${id} could not be used: ${err.message}` }]);
      }
      // Network errors reach us as status 400 from the HTTP layer; 5xx, 401/403 and the rest are no fault of the record.
      return failure('registry-unavailable', [{ path: '/value', message: `the schema registry could not be asked for schema id ${id}: ${errorMessage(err)}` }], true);
    }
    if (!avro.Type.isType(writer)) return failure('unknown-schema', [{ path: '/value', message: `schema id ${id} is not an Avro schema` }]);
    const expected = this.reader(topic).name;
    const actual = (writer as avro.Type).name;
    if (actual !== expected) {
      return failure('unknown-schema', [{ path: '/value', message: `schema id ${id} is ${actual ?? 'an unnamed type'}, not a version of ${expected} (${topic})` }]);
    }
    return { type: writer as avro.Type };
  }
}
