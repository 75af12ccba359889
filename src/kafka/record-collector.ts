/**
 * Produce side of the runner (Kafka Streams' RecordCollector): everything a commit writes (outputs, dead
 * letters, changelog entries) goes out here, in produce requests bounded by the broker's message size limit,
 * in order, and a failed producer is replaced, never left wedged.
 *
 * - Bounded: a commit after a long catch-up can hold tens of thousands of records; a partition's record batch
 *   above `message.max.bytes` (1 MiB by default) is refused, and with it the whole request. Requests are cut,
 *   in order, so that each partition's batch stays within `maxRequestBytes` (the smallest limit of the broker
 *   and the topics written, read at start) and the request within 16 MiB: one round trip carries up to 1 MiB
 *   for every partition written. A broker that still answers MESSAGE_TOO_LARGE halves the bound for the rest
 *   of the run.
 * - Replaced: an idempotent producer whose request failed keeps sequence numbers the broker no longer agrees
 *   with (every later request fails with OUT_OF_ORDER_SEQUENCE_NUMBER). Any failure therefore disconnects the
 *   producer, connects a new one (a new producer id) and repeats the failed request: at-least-once, repeats
 *   carry equal trigger ids. Exactly-once commits go through the task's transaction instead (`sendBounded`),
 *   where a failure aborts the transaction.
 * - Grouped: sends are serialised (one request at a time keeps every partition's records in order across
 *   tasks), and the sends that arrive while one is in flight (or in the same turn of the event loop) go out
 *   together, in arrival order, in as few requests as their size allows — a group commit: the tasks of an
 *   instance committing together share their round trips (one request for every task's changelog records,
 *   one for every task's commit markers, one for every task's outputs). Each caller is answered when its
 *   records are acknowledged; if a grouped send fails, each caller's records are sent again on their own, so
 *   an error reaches only the caller whose records cause it.
 */
import type { Kafka, Message, Producer, RecordMetadata } from 'kafkajs';
import type { Logger } from 'pino';
import { KairosError } from '../errors.js';
import { GroupedCalls, type Settled } from '../util/grouped-calls.js';
import { murmur2Partitioner } from './partitioner.js';

export interface TopicMessages {
  readonly topic: string;
  readonly messages: readonly Message[];
}

/** What a produce call can go through: a producer, or an open transaction. */
export type BatchSender = Pick<Producer, 'sendBatch'>;

/** Next offset reached per `topic \0 partition`, for messages sent with an explicit partition (changelogs). */
export type ProducedOffsets = Map<string, string>;

/** Kafka's default `message.max.bytes` (1 MiB + 12 bytes of overhead the broker allows). */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;
/** Room left for the record batch header and the request around it. */
const REQUEST_MARGIN = 4096;

const pk = (topic: string, partition: number) => `${topic}\u0000${partition}`;

function bytesOf(v: Message['value'] | Message['key'] | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'string' ? Buffer.byteLength(v) : v.length;
}

/** Upper bound of one record's size in a record batch (varint framing, attributes, deltas, headers). */
export function messageBytes(m: Message): number {
  let n = 24 + bytesOf(m.key) + bytesOf(m.value);
  if (m.headers) {
    for (const [k, v] of Object.entries(m.headers)) {
      if (v === undefined) continue;
      n += 10 + Buffer.byteLength(k);
      n += Array.isArray(v) ? v.reduce<number>((a, x) => a + bytesOf(x as Buffer | string), 0) : bytesOf(v as Buffer | string);
    }
  }
  return n;
}

/**
 * What one produce request carries at most in all. The broker's size limits (`message.max.bytes`, a topic's
 * `max.message.bytes`) bound each partition's record batch, not the request: a request holds one batch per
 * partition, up to `socket.request.max.bytes` (100 MiB by default). 16 MiB keeps a request well below that and
 * a commit of many partitions in one or a few round trips.
 */
export const DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024;

/**
 * Cuts `topicMessages` into requests in which every partition's records take at most `maxBatchBytes` (the
 * broker's limit of one record batch) and all records at most `maxRequestBytes`, keeping every topic's
 * messages in order (requests go out one after the other). Records without an explicit partition count as one
 * batch per topic (the partitioner may put them all in one). A single record larger than the batch bound is
 * an error naming it.
 */
export function chunkTopicMessages(topicMessages: readonly TopicMessages[], maxBatchBytes: number, maxRequestBytes = Math.max(maxBatchBytes, DEFAULT_MAX_REQUEST_BYTES)): TopicMessages[][] {
  // Most commits are far below both bounds: then it is one request, without a batch count per record.
  let total = 0;
  let count = 0;
  for (const { messages } of topicMessages) {
    for (const m of messages) total += messageBytes(m);
    count += messages.length;
    if (total > maxBatchBytes) break;
  }
  if (total <= maxBatchBytes && total <= maxRequestBytes) return count === 0 ? [] : [byTopic(topicMessages)];
  const chunks: TopicMessages[][] = [];
  let current = new Map<string, Message[]>();
  let batches = new Map<string, number>();
  let size = 0;
  const flush = (): void => {
    if (current.size === 0) return;
    chunks.push([...current].map(([topic, messages]) => ({ topic, messages })));
    current = new Map();
    batches = new Map();
    size = 0;
  };
  for (const { topic, messages } of topicMessages) {
    for (const m of messages) {
      const n = messageBytes(m);
      if (n > maxBatchBytes) {
        throw new KairosError(
          'KAIROS_ERR_RECORD_TOO_LARGE',
          `a record for ${topic} is ${n} bytes, above the produce limit of ${maxBatchBytes} bytes (the smallest of the broker's message.max.bytes and the topics' max.message.bytes, minus ${REQUEST_MARGIN}); raise max.message.bytes of ${topic}`,
          { details: { topic, bytes: n, limit: maxBatchBytes } },
        );
      }
      const batch = m.partition === undefined ? `${topic}\u0000*` : pk(topic, m.partition);
      const inBatch = batches.get(batch) ?? 0;
      if (inBatch + n > maxBatchBytes || size + n > maxRequestBytes) flush();
      let list = current.get(topic);
      if (!list) current.set(topic, (list = []));
      list.push(m);
      batches.set(batch, (batches.get(batch) ?? 0) + n);
      size += n;
    }
  }
  flush();
  return chunks;
}

/** The messages of each topic in one list, topics in order of first appearance, messages in order. */
function byTopic(topicMessages: readonly TopicMessages[]): TopicMessages[] {
  const lists = new Map<string, Message[]>();
  for (const { topic, messages } of topicMessages) {
    if (messages.length === 0) continue;
    const list = lists.get(topic);
    if (list === undefined) lists.set(topic, [...messages]);
    else for (const m of messages) list.push(m);
  }
  return [...lists].map(([topic, messages]) => ({ topic, messages }));
}

/** Records per explicit partition, per topic (no string key per record). */
function countsByPartition(topicMessages: readonly TopicMessages[]): Map<string, Map<number, number>> {
  const counts = new Map<string, Map<number, number>>();
  for (const { topic, messages } of topicMessages) {
    let perPartition = counts.get(topic);
    for (const m of messages) {
      if (m.partition === undefined) continue;
      if (perPartition === undefined) counts.set(topic, (perPartition = new Map()));
      perPartition.set(m.partition, (perPartition.get(m.partition) ?? 0) + 1);
    }
  }
  return counts;
}

function recordOffsets(chunk: readonly TopicMessages[], results: readonly RecordMetadata[], into: ProducedOffsets): void {
  // Counts per explicit partition: the offset after a partition's last record is its base offset + its count.
  const counts = countsByPartition(chunk);
  for (const r of results) {
    if (r.baseOffset === undefined || r.baseOffset === '-1') continue;
    const n = counts.get(r.topicName)?.get(r.partition);
    if (n !== undefined) into.set(pk(r.topicName, r.partition), (BigInt(r.baseOffset) + BigInt(n)).toString());
  }
}

/**
 * The offsets reached by a grouped send, for one caller: those of the partitions its records were sent to
 * explicitly (a changelog partition is written by its task alone, so the offset after the group is its own).
 */
function offsetsOf(topicMessages: readonly TopicMessages[], all: ProducedOffsets): ProducedOffsets {
  const out: ProducedOffsets = new Map();
  for (const [topic, partitions] of countsByPartition(topicMessages)) {
    for (const partition of partitions.keys()) {
      const k = pk(topic, partition);
      const v = all.get(k);
      if (v !== undefined) out.set(k, v);
    }
  }
  return out;
}

/** Sends through `sender` (a transaction, typically) in bounded requests, in order; no retry. */
export async function sendBounded(sender: BatchSender, topicMessages: readonly TopicMessages[], maxBytes: number): Promise<ProducedOffsets> {
  const offsets: ProducedOffsets = new Map();
  for (const chunk of chunkTopicMessages(topicMessages, maxBytes)) {
    const results = await sender.sendBatch({ acks: -1, topicMessages: chunk.map((c) => ({ topic: c.topic, messages: [...c.messages] })) });
    recordOffsets(chunk, results, offsets);
  }
  return offsets;
}

const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

/** The broker refused a request for its size (kafkajs: KafkaJSProtocolError type, possibly wrapped). */
export function isTooLarge(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 5; depth++) {
    const type = (e as { type?: unknown }).type;
    if (typeof type === 'string' && TOO_LARGE.has(type)) return true;
    if (/larger than the max message size|RECORD_LIST_TOO_LARGE|MESSAGE_TOO_LARGE/i.test(String((e as { message?: unknown }).message ?? ''))) return true;
    e = (e as { cause?: unknown; originalError?: unknown }).originalError ?? (e as { cause?: unknown }).cause;
  }
  return false;
}

export interface RecordCollectorOptions {
  readonly kafka: Kafka;
  readonly idempotent: boolean;
  readonly logger: Logger;
  /** Upper bound of one partition's record batch in a produce request, in bytes. @default 1 MiB minus a margin, until `setLimit` */
  readonly maxRequestBytes?: number;
  /** Failed attempts of one request before the send gives up (the commit fails and is retried later). @default 8 */
  readonly attempts?: number;
  /** Called whenever a producer is replaced (for a metric). */
  readonly onReplaced?: (reason: string) => void;
  /** True once the runner stops: give up sooner. */
  readonly stopping?: () => boolean;
  /**
   * While true, no request goes out: each send fails at once (the runner: the group membership may be lost
   * unnoticed, after a stall). Records queued behind a request in flight when the process stalled then never land
   * after the next owner's.
   */
  readonly held?: () => boolean;
}

export class RecordCollector {
  readonly #o: RecordCollectorOptions;
  readonly #log: Logger;
  #producer: Producer | undefined;
  #maxBytes: number;
  #fixedLimit: boolean;
  /** Sends waiting for the one in flight (see Grouped above). */
  readonly #grouped = new GroupedCalls<readonly TopicMessages[], ProducedOffsets>((group) => this.#sendGroup(group));
  /** Produce calls (grouped sends count once), for tests and metrics. */
  requests = 0;

  constructor(o: RecordCollectorOptions) {
    this.#o = o;
    this.#log = o.logger.child({ component: 'record-collector' });
    this.#fixedLimit = o.maxRequestBytes !== undefined;
    this.#maxBytes = o.maxRequestBytes ?? DEFAULT_MAX_MESSAGE_BYTES - REQUEST_MARGIN;
  }

  /** The bound of one request in bytes. */
  get maxRequestBytes(): number {
    return this.#maxBytes;
  }

  /** Sets the bound from the smallest message size limit of the broker and the topics (unless fixed by an option). */
  setMessageLimit(maxMessageBytes: number): void {
    if (this.#fixedLimit) return;
    this.#maxBytes = Math.max(1024, maxMessageBytes - REQUEST_MARGIN);
  }

  /** The current producer (for callers that send outside commits, e.g. the routing publication). */
  get current(): Producer | undefined {
    return this.#producer;
  }

  get #connected(): Producer {
    if (!this.#producer) throw new KairosError('KAIROS_ERR_KAFKA', 'record collector not connected');
    return this.#producer;
  }

  async connect(): Promise<void> {
    this.#producer = this.#create();
    await this.#producer.connect();
  }

  async disconnect(): Promise<void> {
    const p = this.#producer;
    this.#producer = undefined;
    await p?.disconnect();
  }

  /**
   * Sends everything, in order, in bounded requests; a failed request replaces the producer and is repeated
   * (so a request whose acknowledgement was lost is written twice: at-least-once).
   */
  send(topicMessages: readonly TopicMessages[]): Promise<ProducedOffsets> {
    return this.#grouped.call(topicMessages);
  }

  /** One request for a group of sends; when it fails, each send on its own, so an error reaches only its caller. */
  async #sendGroup(group: readonly (readonly TopicMessages[])[]): Promise<Settled<ProducedOffsets>[]> {
    if (group.length > 1) {
      try {
        const all = await this.#send(group.flat());
        return group.map((topicMessages) => ({ ok: true, value: offsetsOf(topicMessages, all) }));
      } catch (err) {
        this.#log.warn({ err: (err as Error).message, sends: group.length }, 'grouped send failed; sending each on its own');
      }
    }
    const out: Settled<ProducedOffsets>[] = [];
    for (const topicMessages of group) {
      try {
        out.push({ ok: true, value: await this.#send(topicMessages) });
      } catch (error) {
        out.push({ ok: false, error });
      }
    }
    return out;
  }

  async #send(topicMessages: readonly TopicMessages[]): Promise<ProducedOffsets> {
    const offsets: ProducedOffsets = new Map();
    let pending = chunkTopicMessages(topicMessages, this.#maxBytes);
    const attempts = this.#o.attempts ?? 8;
    let failures = 0;
    while (pending.length > 0) {
      const chunk = pending[0] as TopicMessages[];
      if (this.#o.held?.() === true) throw new KairosError('KAIROS_ERR_KAFKA', 'produce held back: the group membership is not confirmed');
      try {
        this.requests++;
        const results = await this.#connected.sendBatch({ acks: -1, topicMessages: chunk.map((c) => ({ topic: c.topic, messages: [...c.messages] })) });
        recordOffsets(chunk, results, offsets);
        pending = pending.slice(1);
        failures = 0;
      } catch (err) {
        failures++;
        const tooLarge = isTooLarge(err);
        const count = chunk.reduce((a, c) => a + c.messages.length, 0);
        this.#log.warn({ err: (err as Error).message, records: count, maxRequestBytes: this.#maxBytes, attempt: failures }, 'produce failed; replacing the producer and repeating the request');
        await this.#replace(tooLarge ? 'too-large' : 'error');
        if (tooLarge && count > 1) {
          // The broker's limit is below what was read at start (or a topic's own is): halve the bound for good.
          this.#maxBytes = Math.max(1024, Math.floor(this.#maxBytes / 2));
          this.#fixedLimit = true;
          pending = [...chunkTopicMessages(chunk, this.#maxBytes), ...pending.slice(1)];
          failures = 0;
          continue;
        }
        if (tooLarge || failures >= attempts || this.#o.stopping?.() === true) {
          throw new KairosError(tooLarge ? 'KAIROS_ERR_RECORD_TOO_LARGE' : 'KAIROS_ERR_KAFKA', `produce failed after ${failures} attempt(s): ${(err as Error).message}`, { cause: err });
        }
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** failures, 5000)));
      }
    }
    return offsets;
  }

  #create(): Producer {
    return this.#o.kafka.producer({
      createPartitioner: murmur2Partitioner,
      idempotent: this.#o.idempotent,
      ...(this.#o.idempotent ? { maxInFlightRequests: 1 } : {}),
      allowAutoTopicCreation: true,
    });
  }

  async #replace(reason: string): Promise<void> {
    const old = this.#producer;
    this.#producer = undefined;
    await old?.disconnect().catch(() => undefined);
    const next = this.#create();
    try {
      await next.connect();
    } catch (err) {
      // Keep the new, unconnected producer: kafkajs connects it on the next send.
      this.#log.warn({ err: (err as Error).message }, 'replacement producer could not connect yet');
    }
    this.#producer = next;
    this.#o.onReplaced?.(reason);
  }
}
