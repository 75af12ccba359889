/**
 * Campaign config from a compacted topic (`crm.campaigns.v1` by default): every instance follows it from the
 * beginning and applies the newest record; a record that does not validate is logged with every error and the
 * config in force stays.
 */
import { randomUUID } from 'node:crypto';
import type { Consumer, IHeaders, Kafka, Producer } from 'kafkajs';
import type { Logger } from 'pino';
import type { ApplyResult, LiveCampaigns, Publication } from '../config/live.js';

const header = (h: IHeaders | undefined, name: string): string | undefined => {
  const v = h?.[name];
  const one = Array.isArray(v) ? v[0] : v;
  return one === undefined ? undefined : one.toString();
};

/** Who and when from a record's headers (as CampaignTopicPublisher writes them); undefined without both. */
export function publicationOf(headers: IHeaders | undefined): Publication | undefined {
  const by = header(headers, 'kairos-published-by');
  const at = header(headers, 'kairos-published-at');
  return by === undefined || at === undefined ? undefined : { by, at };
}

export class CampaignTopicFollower {
  readonly #kafka: Kafka;
  readonly #topic: string;
  readonly #live: LiveCampaigns;
  readonly #log: Logger;
  readonly #onResult: ((r: ApplyResult) => void) | undefined;
  #consumer: Consumer | undefined;

  constructor(kafka: Kafka, topic: string, live: LiveCampaigns, logger: Logger, onResult?: (r: ApplyResult) => void) {
    this.#kafka = kafka;
    this.#topic = topic;
    this.#live = live;
    this.#log = logger.child({ component: 'campaign-topic' });
    this.#onResult = onResult;
  }

  async start(maxWaitTimeInMs = 500): Promise<void> {
    const consumer = this.#kafka.consumer({ groupId: `kairos-campaigns-${randomUUID()}`, maxWaitTimeInMs });
    this.#consumer = consumer;
    await consumer.connect();
    await consumer.subscribe({ topics: [this.#topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: ({ message, partition }) => {
        if (!message.value) return Promise.resolve();
        const source = `${this.#topic}[${partition}]@${message.offset}`;
        let result: ApplyResult;
        try {
          result = this.#live.apply(JSON.parse(message.value.toString('utf8')), source, publicationOf(message.headers));
        } catch (err) {
          result = { ok: false, errors: [`${source}: not valid JSON: ${(err as Error).message}`] };
        }
        if (result.ok) this.#log.info({ source, version: this.#live.version }, 'campaign config applied');
        else this.#log.error({ source, errors: result.errors }, 'campaign config rejected; the previous one stays in force');
        this.#onResult?.(result);
        return Promise.resolve();
      },
    });
  }

  async stop(): Promise<void> {
    await this.#consumer?.disconnect();
  }
}

/**
 * Publishes a campaign config to the compacted topic (the console's publish): one record under the key
 * `campaigns`, with who and when in its headers. Every instance's follower applies it like any other record.
 */
export class CampaignTopicPublisher {
  readonly #kafka: Kafka;
  readonly #topic: string;
  #producer: Producer | undefined;

  constructor(kafka: Kafka, topic: string) {
    this.#kafka = kafka;
    this.#topic = topic;
  }

  get topic(): string {
    return this.#topic;
  }

  async publish(config: unknown, by: string, at: number): Promise<{ partition: number; offset: string }> {
    if (this.#producer === undefined) {
      const p = this.#kafka.producer({ allowAutoTopicCreation: false });
      await p.connect();
      this.#producer = p;
    }
    const [meta] = await this.#producer.send({
      topic: this.#topic,
      messages: [{ key: 'campaigns', value: JSON.stringify(config), headers: { 'kairos-published-by': by, 'kairos-published-at': new Date(at).toISOString() } }],
    });
    return { partition: meta?.partition ?? 0, offset: meta?.baseOffset ?? meta?.offset ?? '?' };
  }

  async stop(): Promise<void> {
    await this.#producer?.disconnect();
  }
}
