/**
 * Idempotent input (DESIGN §3): an input record redelivered with the same eventId for the same record key
 * (producer retries, at-least-once upstream) is dropped before any topology sees it.
 *
 * One stage per input topic, put between the topic's source and every topology reading it (through
 * `TopologyBuilder.setSourceStage`), so a topic read by several topologies is deduplicated once. Its state is
 * an ordinary store of the task, `<topic>.dedup` (record key → eventIds first seen within the window), with a
 * changelog: replay, the test drivers and the Kafka runner keep it, restore it and expire it alike.
 *
 * Time is stream time throughout: an eventId first processed at stream time `t` drops every record of the same
 * key and eventId processed while stream time is below `t + window`; later, the record is applied again. The
 * first delivery wins: a redelivery with other content is dropped too, logged and counted as a conflict.
 */
import { NOT_LOADED, type Codec, type KeyValueStore, type KeyValueStoreSpec, type Processor, type ProcessorContext, type StreamRecord, type TopologyBuilder } from '../../src/engine/api/index.js';

/** The input topics whose records carry an eventId (schemas/contract.ts); crm.customers.v1 does not. */
export const DEDUP_TOPICS: readonly string[] = ['shop.basket.v1', 'shop.wishlist.v1', 'shop.orders.v1', 'shop.pageviews.v1', 'shop.catalog.v1'];

/** @default window: one day of stream time. */
export const DEFAULT_DEDUP_WINDOW_MS = 24 * 3_600_000;

/**
 * At most this many eventIds are kept per record key (the oldest are forgotten first): bounds one key's
 * value (≈ 40 bytes an id) for a key with an unusual event rate, such as a bot's page views.
 */
export const DEDUP_MAX_IDS_PER_KEY = 10_000;

/**
 * When an eventId was first seen (stream time) and a fingerprint of the record then: the CRC-32C of its bytes as
 * read where the runner gives one (`StreamRecord.fingerprint`), else a hash of its value ({@link fingerprint}).
 */
export interface SeenEvent {
  readonly at: number;
  readonly hash: number;
  /**
   * Read from the first stored form, whose hash was always of the value's JSON: it cannot be compared with a
   * fingerprint of bytes, so a redelivery of it is not called a conflict.
   */
  readonly legacy?: true;
}

/** eventId → first sighting, in order of first sighting (which is stream-time order). */
export type SeenEvents = Map<string, SeenEvent>;

/** First element of the stored form that {@link seenEventsCodec} writes. */
const FLAT = 2;

/**
 * Stored as JSON `[2, eventId, at, hash, eventId, Δat, hash, …]`, oldest first: one flat array (no array per id),
 * each `at` after the first as the difference from the one before (sightings are in stream-time order: a few
 * digits instead of thirteen). The first form, `[[eventId, at, hash], …]`, is still read.
 */
function seenText(seen: SeenEvents): string {
  const flat: (string | number)[] = [FLAT];
  let last = 0;
  for (const [id, e] of seen) {
    flat.push(id, flat.length === 1 ? e.at : e.at - last, e.hash);
    last = e.at;
  }
  return JSON.stringify(flat);
}

function decodeSeen(bytes: Buffer): SeenEvents {
  const stored = JSON.parse(bytes.toString('utf8')) as unknown[];
  const seen: SeenEvents = new Map();
  if (stored[0] === FLAT) {
    let at = 0;
    for (let i = 1; i + 2 < stored.length; i += 3) {
      at = i === 1 ? (stored[i + 1] as number) : at + (stored[i + 1] as number);
      seen.set(stored[i] as string, { at, hash: stored[i + 2] as number });
    }
    return seen;
  }
  for (const [id, at, hash] of stored as [string, number, number][]) seen.set(id, { at, hash, legacy: true });
  return seen;
}

export const seenEventsCodec: Codec<SeenEvents> = {
  name: 'dedup-seen-v2',
  encode: (seen) => Buffer.from(seenText(seen), 'utf8'),
  encodeText: seenText,
  decode: decodeSeen,
};

export function dedupStoreName(topic: string): string {
  return `${topic}.dedup`;
}

/** A record dropped as a redelivery. `conflict`: its fingerprint differs from the first delivery's (which stays). */
export interface InputDuplicate {
  readonly topic: string;
  /** The record key (customerId, or sku for the catalog). */
  readonly key: string;
  readonly conflict: boolean;
}

export interface InputDedupSettings {
  /** How long (stream time) after its first sighting an eventId is remembered; 0 turns deduplication off. */
  readonly windowMs: number;
  /** Topics to deduplicate. @default DEDUP_TOPICS */
  readonly topics?: readonly string[];
  /** Called for every record dropped (metrics, replay's summary). */
  readonly onDuplicate?: (d: InputDuplicate) => void;
}

/** The store of one topic's stage: keyed by the record key, so it lives in the key's task and is prefetched. */
export function dedupStore(topic: string, windowMs: number): KeyValueStoreSpec<SeenEvents> {
  return {
    kind: 'key-value',
    name: dedupStoreName(topic),
    codec: seenEventsCodec,
    // A key not written for a window holds only expired ids: the whole entry goes (stream-time TTL sweep).
    ttlMs: windowMs,
    keyedByRecordKey: true,
    doc: `record key → eventIds of ${topic} first seen within the last ${windowMs} ms of stream time`,
  };
}

/**
 * Registers the dedup stage on a builder: every later `ensureSource` of a topic in `settings.topics` returns
 * the stage's processor (`<topic>.dedup`) instead of the source. Call before adding the topologies.
 */
export function addInputDedup(builder: TopologyBuilder, settings: InputDedupSettings): TopologyBuilder {
  if (!(settings.windowMs >= 0) || !Number.isFinite(settings.windowMs)) throw new RangeError(`input dedup window must be a finite number ≥ 0, got ${settings.windowMs}`);
  if (settings.windowMs === 0) return builder;
  const topics = new Set(settings.topics ?? DEDUP_TOPICS);
  return builder.setSourceStage((topic, source) => {
    if (!topics.has(topic)) return source;
    const name = dedupStoreName(topic);
    const spec = dedupStore(topic, settings.windowMs);
    builder.addProcessor(
      name,
      () => new DedupProcessor(topic, spec, settings.windowMs, settings.onDuplicate),
      [source],
      `drops records of ${topic} whose (key, eventId) was seen in the last ${settings.windowMs} ms of stream time`,
    );
    builder.addStore(spec, [name]);
    return name;
  });
}

class DedupProcessor implements Processor<unknown, unknown> {
  #ctx!: ProcessorContext<unknown>;
  #store!: KeyValueStore<SeenEvents>;

  constructor(
    private readonly topic: string,
    private readonly spec: KeyValueStoreSpec<SeenEvents>,
    private readonly windowMs: number,
    private readonly onDuplicate: ((d: InputDuplicate) => void) | undefined,
  ) {}

  init(ctx: ProcessorContext<unknown>): void {
    this.#ctx = ctx;
    this.#store = ctx.getStore(this.spec);
  }

  process(record: StreamRecord<unknown>): void | Promise<void> {
    const eventId = eventIdOf(record.value);
    if (record.key === null || eventId === undefined) {
      this.#forward(record);
      return;
    }
    const now = this.#ctx.streamTime();
    // Every input record passes here: without a promise when the key's entry is in memory (the runners load a
    // batch's keys ahead), else after reading it.
    const stored = this.#store.peek(record.key);
    if (stored !== NOT_LOADED) {
      this.#decide(record, record.key, eventId, now, stored);
      return;
    }
    const key = record.key;
    return this.#store.get(key).then((s) => this.#decide(record, key, eventId, now, s));
  }

  #decide(record: StreamRecord<unknown>, key: string, eventId: string, now: number, stored: SeenEvents | undefined): void {
    const hash = record.fingerprint ?? fingerprint(record.value);
    const prior = stored?.get(eventId);
    if (prior !== undefined && now - prior.at < this.windowMs) {
      const conflict = prior.legacy !== true && prior.hash !== hash;
      if (conflict) {
        this.#ctx.logger.warn(
          { topic: this.topic, key, eventId, offset: record.offset, firstSeenAt: prior.at },
          'input record with an eventId already seen but other content dropped (the first delivery wins)',
        );
      }
      this.onDuplicate?.({ topic: this.topic, key, conflict });
      return;
    }
    const seen: SeenEvents = stored ?? new Map();
    // Oldest first: drop the ids whose window has passed, and the oldest beyond the cap.
    for (const [id, e] of seen) {
      if (now - e.at < this.windowMs && seen.size < DEDUP_MAX_IDS_PER_KEY) break;
      seen.delete(id);
    }
    seen.delete(eventId);
    seen.set(eventId, { at: now, hash });
    this.#store.put(key, seen);
    this.#forward(record);
  }

  /** The record itself: the task passes an input record forwarded unchanged on as it is, without a copy. */
  #forward(record: StreamRecord<unknown>): void {
    this.#ctx.forward(record);
  }
}

function eventIdOf(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const id = (value as { eventId?: unknown }).eventId;
  return typeof id === 'string' ? id : undefined;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * 32-bit FNV-1a of the value's JSON text (UTF-16 code units of `JSON.stringify(value)`): tells a redelivery
 * (same content) from an eventId reused for other content. Computed by walking the value as JSON.stringify
 * would, without building the text (a string of the whole value per input record); anything but plain data
 * (a toJSON, a bigint, a class instance) takes JSON.stringify itself, so the number is the same either way.
 */
export function fingerprint(value: unknown): number {
  const h = hashValue(FNV_OFFSET, value);
  return (h === undefined ? hashText(FNV_OFFSET, JSON.stringify(value) ?? 'undefined') : h) >>> 0;
}

function hashText(h: number, text: string): number {
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), FNV_PRIME);
  return h;
}

const HEX = '0123456789abcdef';

/** A string as JSON.stringify quotes it (escapes, lone surrogates as \uXXXX). */
function hashString(h: number, s: string): number {
  h = Math.imul(h ^ 0x22, FNV_PRIME);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c !== 0x22 && c !== 0x5c && (c < 0xd800 || c > 0xdfff)) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        h = Math.imul(Math.imul(h ^ c, FNV_PRIME) ^ d, FNV_PRIME);
        i++;
        continue;
      }
    }
    let esc: string;
    switch (c) {
      case 0x22:
        esc = '\\"';
        break;
      case 0x5c:
        esc = '\\\\';
        break;
      case 0x08:
        esc = '\\b';
        break;
      case 0x0c:
        esc = '\\f';
        break;
      case 0x0a:
        esc = '\\n';
        break;
      case 0x0d:
        esc = '\\r';
        break;
      case 0x09:
        esc = '\\t';
        break;
      default:
        esc = `\\u${HEX[(c >> 12) & 15]}${HEX[(c >> 8) & 15]}${HEX[(c >> 4) & 15]}${HEX[c & 15]}`;
    }
    h = hashText(h, esc);
  }
  return Math.imul(h ^ 0x22, FNV_PRIME);
}

/** The hash after the value's JSON, or undefined for a value that is not plain JSON data. */
function hashValue(h: number, v: unknown): number | undefined {
  switch (typeof v) {
    case 'string':
      return hashString(h, v);
    case 'number':
      return hashText(h, Number.isFinite(v) ? String(v) : 'null');
    case 'boolean':
      return hashText(h, v ? 'true' : 'false');
    case 'object': {
      if (v === null) return hashText(h, 'null');
      if (Array.isArray(v)) {
        h = Math.imul(h ^ 0x5b, FNV_PRIME);
        for (let i = 0; i < v.length; i++) {
          if (i > 0) h = Math.imul(h ^ 0x2c, FNV_PRIME);
          const x: unknown = v[i];
          if (x === undefined || typeof x === 'function' || typeof x === 'symbol') h = hashText(h, 'null');
          else {
            const next = hashValue(h, x);
            if (next === undefined) return undefined;
            h = next;
          }
        }
        return Math.imul(h ^ 0x5d, FNV_PRIME);
      }
      const proto: unknown = Object.getPrototypeOf(v);
      if ((proto !== Object.prototype && proto !== null) || typeof (v as { toJSON?: unknown }).toJSON === 'function') return undefined;
      h = Math.imul(h ^ 0x7b, FNV_PRIME);
      let first = true;
      for (const key of Object.keys(v)) {
        const x: unknown = (v as Record<string, unknown>)[key];
        if (x === undefined || typeof x === 'function' || typeof x === 'symbol') continue;
        if (!first) h = Math.imul(h ^ 0x2c, FNV_PRIME);
        first = false;
        h = Math.imul(hashString(h, key) ^ 0x3a, FNV_PRIME);
        const next = hashValue(h, x);
        if (next === undefined) return undefined;
        h = next;
      }
      return Math.imul(h ^ 0x7d, FNV_PRIME);
    }
    default:
      return undefined;
  }
}
