/**
 * The dispatchers' Kafka side: one consumer group over crm.triggers.v1 (dispatched), crm.customers.v1 and
 * shop.catalog.v1 (applied to the dispatchers' Redis view). Per partition batch, triggers are dispatched
 * `concurrency` at a time; their delivery results (crm.deliveries.v1), push-token feedback
 * (crm.push-token-feedback.v1) and dead letters (crm.triggers.v1.dlq) are produced with acks=all, and only then
 * the offsets committed — at-least-once, with repeats made harmless by the dispatcher's idempotency in Redis.
 * A record that does not decode goes to `<topic>.dlq`. While a batch waits (Redis outage, rate limits, retries)
 * the consumer keeps heartbeating, so the group does not move its partitions. At start, triggers wait until the
 * profiles that existed then have been read.
 */
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage, Message, Producer } from 'kafkajs';
import type { Logger } from 'pino';
import type { CatalogEvent, CustomerProfile, Delivery, PushTokenFeedback, Trigger } from '../../schemas/contract.js';
import type { TopicName } from '../../schemas/contract.js';
import { dlqMessage, dlqTopic } from './dlq.js';
import type { TopicSerde } from './serde.js';

export const TRIGGERS_TOPIC = 'crm.triggers.v1';
export const DELIVERIES_TOPIC = 'crm.deliveries.v1';
export const FEEDBACK_TOPIC = 'crm.push-token-feedback.v1';
const PROFILES_TOPIC = 'crm.customers.v1';
const CATALOG_TOPIC = 'shop.catalog.v1';

/** What the consumer needs from the dispatcher (kept structural so src/kafka does not depend on src/dispatch). */
export interface TriggerDispatcher {
  dispatch(trigger: Trigger): Promise<{
    readonly deliveries: readonly Delivery[];
    readonly feedback: readonly PushTokenFeedback[];
    readonly deadLetters: readonly { readonly channel: string; readonly reason: string; readonly detail: string }[];
  }>;
}

export interface StateSink {
  profile(customerId: string, profile: CustomerProfile | null): Promise<void>;
  catalog(event: CatalogEvent): Promise<void>;
}

export interface DispatchConsumerOptions {
  readonly kafka: Kafka;
  readonly groupId: string;
  readonly serde: TopicSerde;
  readonly dispatcher: TriggerDispatcher;
  readonly state: StateSink;
  readonly logger: Logger;
  /** Idempotent producer (off for the mock cluster). */
  readonly idempotent: boolean;
  /** @default 500 */
  readonly maxWaitTimeInMs?: number;
  /** Triggers dispatched at once per batch. @default 64 */
  readonly concurrency?: number;
  /** Partitions processed at once. @default 4 */
  readonly partitionsConcurrently?: number;
  /** @default 30000 */
  readonly sessionTimeout?: number;
  /** @default 3000 */
  readonly heartbeatInterval?: number;
  /**
   * At start, triggers wait (paused) until the group has consumed crm.customers.v1 up to its end as of the start,
   * so a fresh deployment does not skip triggers for profiles it has not read yet; at most this long, ms.
   * @default 60000
   */
  readonly profilesCatchUpMs?: number;
  readonly onTrigger?: (result: 'dispatched' | 'invalid') => void;
  readonly onState?: (topic: string) => void;
}

export class DispatchConsumer {
  readonly #o: DispatchConsumerOptions;
  readonly #log: Logger;
  #consumer: Consumer | undefined;
  #producer: Producer | undefined;
  #running = false;
  #catchUp: Promise<void> | undefined;

  constructor(opts: DispatchConsumerOptions) {
    this.#o = opts;
    this.#log = opts.logger.child({ component: 'dispatch-consumer' });
  }

  get running(): boolean {
    return this.#running;
  }

  async start(): Promise<void> {
    const o = this.#o;
    const producer = o.kafka.producer({ allowAutoTopicCreation: true, idempotent: o.idempotent, ...(o.idempotent ? { maxInFlightRequests: 1 } : {}) });
    await producer.connect();
    this.#producer = producer;
    const consumer = o.kafka.consumer({
      groupId: o.groupId,
      maxWaitTimeInMs: o.maxWaitTimeInMs ?? 500,
      sessionTimeout: o.sessionTimeout ?? 30_000,
      heartbeatInterval: o.heartbeatInterval ?? 3000,
    });
    this.#consumer = consumer;
    await consumer.connect();
    await consumer.subscribe({ topics: [TRIGGERS_TOPIC, PROFILES_TOPIC, CATALOG_TOPIC], fromBeginning: true });
    this.#running = true;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: o.partitionsConcurrently ?? 4,
      eachBatch: (payload) => this.#batch(payload),
    });
    consumer.pause([{ topic: TRIGGERS_TOPIC }]);
    this.#catchUp = this.#resumeWhenProfilesRead(consumer).catch((err: unknown) => {
      this.#log.warn({ err: (err as Error).message }, 'could not follow the profile catch-up; dispatching now');
      consumer.resume([{ topic: TRIGGERS_TOPIC }]);
    });
  }

  /** Resumes triggers once the group's committed offsets on crm.customers.v1 reach the ends seen at start. */
  async #resumeWhenProfilesRead(consumer: Consumer): Promise<void> {
    const admin = this.#o.kafka.admin();
    await admin.connect();
    try {
      const ends = await admin.fetchTopicOffsets(PROFILES_TOPIC).catch(() => []);
      const deadline = Date.now() + (this.#o.profilesCatchUpMs ?? 60_000);
      const wanted = ends.filter((e) => BigInt(e.high) > BigInt(e.low));
      while (this.#running && wanted.length > 0 && Date.now() < deadline) {
        const [committed] = await admin.fetchOffsets({ groupId: this.#o.groupId, topics: [PROFILES_TOPIC] });
        const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
        if (wanted.every((e) => (at.get(e.partition) ?? -1n) >= BigInt(e.high))) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      if (Date.now() >= deadline) this.#log.warn('profiles not fully read within the catch-up time; dispatching anyway');
    } finally {
      await admin.disconnect();
    }
    if (this.#running) {
      consumer.resume([{ topic: TRIGGERS_TOPIC }]);
      this.#log.info('profiles read: dispatching triggers');
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#catchUp;
    await this.#consumer?.disconnect();
    await this.#producer?.disconnect();
  }

  async #batch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const beat = setInterval(() => void heartbeat().catch(() => undefined), 1000);
    try {
      const messages = batch.messages;
      const size = batch.topic === TRIGGERS_TOPIC ? (this.#o.concurrency ?? 64) : 500;
      for (let i = 0; i < messages.length; i += size) {
        if (!isRunning() || isStale()) return;
        const chunk = messages.slice(i, i + size);
        if (batch.topic === TRIGGERS_TOPIC) await this.#triggers(batch.partition, chunk);
        else await this.#state(batch.topic, batch.partition, chunk);
        const last = chunk[chunk.length - 1] as KafkaMessage;
        resolveOffset(last.offset);
        await (this.#consumer as Consumer).commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: String(BigInt(last.offset) + 1n) }]);
      }
    } finally {
      clearInterval(beat);
    }
  }

  async #state(topic: string, partition: number, chunk: KafkaMessage[]): Promise<void> {
    const dead: Message[] = [];
    for (const m of chunk) {
      const r = await this.#o.serde.decode(topic as TopicName, m.key, m.value);
      if (!r.ok) {
        if (r.retriable) throw new Error(`${topic}[${partition}]@${m.offset}: ${r.reason}`);
        this.#log.warn({ topic, partition, offset: m.offset, reason: r.reason, errors: r.errors.slice(0, 3) }, 'undecodable record dead-lettered');
        dead.push(dlqMessage({ topic, partition, offset: m.offset, key: m.key, value: m.value, headers: m.headers, timestamp: m.timestamp }, r, Date.now()));
        continue;
      }
      if (topic === PROFILES_TOPIC) await this.#o.state.profile(r.key, r.value as CustomerProfile | null);
      else await this.#o.state.catalog(r.value as CatalogEvent);
      this.#o.onState?.(topic);
    }
    if (dead.length > 0) await this.#send([{ topic: dlqTopic(topic), messages: dead }]);
  }

  async #triggers(partition: number, chunk: KafkaMessage[]): Promise<void> {
    const o = this.#o;
    const dead: Message[] = [];
    const deliveries: Message[] = [];
    const feedback: Message[] = [];
    const origin = (m: KafkaMessage) => ({ topic: TRIGGERS_TOPIC, partition, offset: m.offset, key: m.key, value: m.value, headers: m.headers, timestamp: m.timestamp });
    await Promise.all(
      chunk.map(async (m) => {
        const r = await o.serde.decode(TRIGGERS_TOPIC, m.key, m.value);
        if (!r.ok) {
          if (r.retriable) throw new Error(`${TRIGGERS_TOPIC}[${partition}]@${m.offset}: ${r.reason}`);
          o.onTrigger?.('invalid');
          this.#log.warn({ partition, offset: m.offset, reason: r.reason, errors: r.errors.slice(0, 3) }, 'undecodable trigger dead-lettered');
          dead.push(dlqMessage(origin(m), r, Date.now()));
          return;
        }
        const trigger = r.value as Trigger;
        const out = await o.dispatcher.dispatch(trigger);
        o.onTrigger?.('dispatched');
        for (const d of out.deliveries) deliveries.push({ key: d.customerId, value: await o.serde.encode(DELIVERIES_TOPIC, d), timestamp: String(d.decidedAt) });
        for (const f of out.feedback) feedback.push({ key: f.customerId, value: await o.serde.encode(FEEDBACK_TOPIC, f), timestamp: String(f.observedAt) });
        for (const d of out.deadLetters) {
          dead.push(dlqMessage(origin(m), { reason: `delivery-${d.reason}`, errors: [{ path: `/channels/${d.channel}`, message: d.detail }] }, Date.now()));
        }
      }),
    );
    await this.#send([
      { topic: DELIVERIES_TOPIC, messages: deliveries },
      { topic: FEEDBACK_TOPIC, messages: feedback },
      { topic: dlqTopic(TRIGGERS_TOPIC), messages: dead },
    ]);
  }

  /** Produces with acks=all, retrying until it succeeds or the consumer stops (the offsets wait for it). */
  async #send(topicMessages: { topic: string; messages: Message[] }[]): Promise<void> {
    const nonEmpty = topicMessages.filter((t) => t.messages.length > 0);
    if (nonEmpty.length === 0) return;
    for (let delay = 100; ; delay = Math.min(delay * 2, 5000)) {
      try {
        await (this.#producer as Producer).sendBatch({ topicMessages: nonEmpty, acks: -1 });
        return;
      } catch (err) {
        if (!this.#running) throw err;
        this.#log.warn({ err: (err as Error).message }, 'producing delivery results failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}
