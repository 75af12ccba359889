/**
 * Deletion of consumed repartition records (DeleteRecords), as Kafka Streams purges them: the tasks of an instance
 * hand in how far each of their repartition partitions may go, and the purger deletes them one topic at a time,
 * all the partitions asked for so far in one request, through an admin client of its own.
 *
 * Why its own client, one topic at a time: kafkajs' `deleteTopicRecords` looks each partition's leader up in the
 * admin client's cached metadata before it asks the broker anything, and that cache holds only the topics last
 * asked for (every metadata request replaces it). On a real broker the runner's shared admin client never held the
 * repartition topics, so every purge failed ("Could not find the leader for the partition") and, before 6 Dec 2026,
 * was given up for good; purges of several tasks at once replaced each other's metadata in the middle of a call.
 * Here nothing else uses the client, and each topic's metadata is asked for right before its deletion.
 */
import type { Admin, Kafka } from 'kafkajs';

interface Pending {
  offset: string;
  readonly waiting: { resolve: () => void; reject: (err: unknown) => void }[];
}

export class RepartitionPurger {
  readonly #admin: Admin;
  /** topic → partition → the offset to delete below, and who waits for it. */
  readonly #pending = new Map<string, Map<number, Pending>>();
  #running: Promise<void> | undefined;

  constructor(kafka: Kafka) {
    this.#admin = kafka.admin();
  }

  connect(): Promise<void> {
    return this.#admin.connect();
  }

  disconnect(): Promise<void> {
    return this.#admin.disconnect();
  }

  /**
   * Deletes the records of `topic`'s `partition` below `offset`; resolves once the broker did, rejects with its
   * error (kafkajs' own: a partition's errors in `partitions`, an API the cluster lacks as a
   * KafkaJSNonRetriableError). A later offset for the same partition, asked for before the deletion went out,
   * replaces the earlier one.
   */
  purge(topic: string, partition: number, offset: string): Promise<void> {
    return new Promise((resolve, reject) => {
      let partitions = this.#pending.get(topic);
      if (partitions === undefined) this.#pending.set(topic, (partitions = new Map()));
      const p = partitions.get(partition);
      if (p === undefined) partitions.set(partition, { offset, waiting: [{ resolve, reject }] });
      else {
        if (BigInt(offset) > BigInt(p.offset)) p.offset = offset;
        p.waiting.push({ resolve, reject });
      }
      this.#kick();
    });
  }

  #kick(): void {
    if (this.#running !== undefined) return;
    this.#running = this.#drain().finally(() => {
      this.#running = undefined;
      // Asked for after the last round's final check: another round.
      if (this.#pending.size > 0) this.#kick();
    });
  }

  async #drain(): Promise<void> {
    for (;;) {
      const next = this.#pending.entries().next();
      if (next.done === true) return;
      const [topic, partitions] = next.value;
      this.#pending.delete(topic);
      const waiting = [...partitions.values()].flatMap((p) => p.waiting);
      try {
        await this.#admin.fetchTopicMetadata({ topics: [topic] });
        await this.#admin.deleteTopicRecords({ topic, partitions: [...partitions].map(([partition, p]) => ({ partition, offset: p.offset })) });
        for (const w of waiting) w.resolve();
      } catch (err) {
        for (const w of waiting) w.reject(err);
      }
    }
  }
}
