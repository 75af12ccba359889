/**
 * A TEST broker emptied for a run (kafka-throughput's `--brokers`, test/kafka/real-broker.test.ts): the contract's
 * topics, their dead-letter topics and those `also` names are deleted, then `create` is created anew.
 */
import type { Admin, ITopicConfig } from 'kafkajs';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTopicName } from '../../schemas/contract.js';

export async function freshTestTopics(
  admin: Admin,
  o: { readonly create: readonly ITopicConfig[]; readonly also?: (topic: string) => boolean; readonly log?: (line: string) => void },
): Promise<void> {
  const log = o.log ?? ((): void => undefined);
  const doomed = (await admin.listTopics()).filter((t) => isTopicName(t) || t.endsWith('.dlq') || o.also?.(t) === true);
  if (doomed.length > 0) {
    await admin.deleteTopics({ topics: doomed, timeout: 30_000 }).catch((err: unknown) => log(`deleteTopics: ${err instanceof Error ? err.message : String(err)}`));
    for (let i = 0; i < 100 && (await admin.listTopics()).some((t) => doomed.includes(t)); i++) await sleep(200);
    log(`deleted ${doomed.length} topics of earlier runs`);
  }
  // Right after a delete the broker may still be removing the old partitions: retried for a while.
  for (let attempt = 1; ; attempt++) {
    try {
      await admin.createTopics({ waitForLeaders: true, topics: [...o.create] });
      return;
    } catch (err) {
      if (attempt >= 30) throw err;
      await sleep(1000);
    }
  }
}
