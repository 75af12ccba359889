/**
 * Where every task runs, for every instance. The group leader computes it in the assignor; kafkajs hands a
 * follower only its own partitions (and brokers such as librdkafka's mock lack DescribeGroups), so the leader
 * also publishes the routing to the compacted topic `<applicationId>-routing` before the assignment is
 * synced, and every instance follows that topic. Versions are the leader's wall clock at assignment, so the
 * newest assignment wins.
 */
import { randomUUID } from 'node:crypto';
import type { Consumer, Kafka, PartitionAssigner, Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { decodeMemberAssignment, type TaskRouting } from './assignor.js';

export const routingTopic = (applicationId: string): string => `${applicationId}-routing`;
const KEY = 'routing';

interface Published {
  readonly at: number;
  /** The assignment userData the leader computed (see assignor.ts), base64. */
  readonly userData: string;
}

/**
 * Wraps an assigner: after it assigned, the leader publishes the routing (acks=all) before kafkajs sends
 * the assignment, so a member that reads its assignment finds the routing of its generation soon after.
 */
export function publishingAssigner(inner: PartitionAssigner, producer: () => Producer | undefined, topic: string, logger: Logger): PartitionAssigner {
  return (config) => {
    const assigner = inner(config);
    return {
      ...assigner,
      async assign(group) {
        const assignments = await assigner.assign(group);
        const first = assignments[0];
        const decoded = first ? decodeMemberAssignment(first.memberAssignment) : null;
        const p = producer();
        if (decoded?.routing && p && first) {
          const userData = (first.memberAssignment as Buffer).toString('base64');
          const value: Published = { at: Date.now(), userData };
          try {
            await p.send({ topic, acks: -1, messages: [{ key: KEY, value: JSON.stringify(value) }] });
          } catch (err) {
            logger.warn({ err: (err as Error).message }, 'publishing the routing failed; members keep the previous one');
          }
        }
        return assignments;
      },
    };
  };
}

/** Follows the routing topic; `current` is the newest routing seen. */
export class RoutingFollower {
  readonly #kafka: Kafka;
  readonly #topic: string;
  readonly #log: Logger;
  readonly #onChange: (routing: TaskRouting) => void;
  #consumer: Consumer | undefined;
  #at = -1;
  current: TaskRouting | undefined;

  constructor(kafka: Kafka, topic: string, logger: Logger, onChange: (routing: TaskRouting) => void) {
    this.#kafka = kafka;
    this.#topic = topic;
    this.#log = logger.child({ component: 'routing' });
    this.#onChange = onChange;
  }

  async start(maxWaitTimeInMs = 500): Promise<void> {
    const consumer = this.#kafka.consumer({ groupId: `kairos-routing-${randomUUID()}`, maxWaitTimeInMs });
    this.#consumer = consumer;
    await consumer.connect();
    await consumer.subscribe({ topics: [this.#topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: ({ message }) => {
        if (message.key?.toString() !== KEY || !message.value) return Promise.resolve();
        try {
          const v = JSON.parse(message.value.toString('utf8')) as Published;
          if (typeof v.at !== 'number' || v.at <= this.#at) return Promise.resolve();
          const routing = decodeMemberAssignment(Buffer.from(v.userData, 'base64'))?.routing;
          if (!routing) return Promise.resolve();
          this.#at = v.at;
          this.current = routing;
          this.#onChange(routing);
        } catch (err) {
          this.#log.warn({ err: (err as Error).message }, 'unreadable routing record skipped');
        }
        return Promise.resolve();
      },
    });
  }

  async stop(): Promise<void> {
    await this.#consumer?.disconnect();
  }
}
