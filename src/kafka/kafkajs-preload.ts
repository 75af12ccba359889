/**
 * Replaces, before kafkajs loads, one of its modules that is quadratic in the messages of a send:
 * `producer/groupMessagesPerPartition` copies the partition's whole array for every message it adds
 * (`[...current, message]`), which for a commit's changelog batch of a few thousand records per partition cost
 * about as much as encoding the request. The replacement groups in one pass and returns the same object (keys,
 * order, fresh arrays). kafkajs' sendMessages takes the module when kafkajs loads, so this module has no import
 * of kafkajs and is imported ahead of it (src/kafka/client.ts, src/kafka/assignor.ts); when kafkajs was loaded
 * first (a program importing kafkajs itself before any of Kairos), or for another kafkajs version, kafkajs' own
 * module stays. {@link kafkajsPreload} tells which.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const GROUPING = 'kafkajs/src/producer/groupMessagesPerPartition.js';

/** The kafkajs version whose internals Kairos replaces (here and in produce-encoding.ts). */
export const KAFKAJS_VERSION = '2.2.4';

/** Why kafkajs' internals are not replaced (another version installed), or undefined when they can be. */
export function kafkajsVersionMismatch(): string | undefined {
  const version = (require('kafkajs/package.json') as { version: string }).version;
  return version === KAFKAJS_VERSION ? undefined : `kafkajs ${version}, not ${KAFKAJS_VERSION}`;
}

interface GroupArgs<M> {
  readonly topic: string;
  readonly partitionMetadata: readonly unknown[];
  readonly messages: readonly M[];
  readonly partitioner: (args: { topic: string; partitionMetadata: readonly unknown[]; message: M }) => number;
}

/** kafkajs' groupMessagesPerPartition in one pass: partition → its messages in order. */
export function groupMessagesPerPartition<M>({ topic, partitionMetadata, messages, partitioner }: GroupArgs<M>): Record<string, M[]> {
  const result: Record<string, M[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    const current = result[partition];
    if (current === undefined) result[partition] = [message];
    else current.push(message);
  }
  return result;
}

function preload(): string {
  const mismatch = kafkajsVersionMismatch();
  if (mismatch !== undefined) return `${mismatch}: its own grouping is used`;
  const path = require.resolve(GROUPING);
  // The module that takes the grouping when kafkajs loads (the index itself may be in the cache already, not
  // run yet: Node's ESM loader enters a CommonJS module there before evaluating it).
  const taker = require.resolve('kafkajs/src/producer/sendMessages.js');
  if (require.cache[taker] !== undefined || require.cache[path] !== undefined) return 'kafkajs loaded before Kairos: its own grouping is used';
  const Module = require('node:module') as new (id: string) => NodeJS.Module;
  const m = new Module(path);
  m.filename = path;
  m.loaded = true;
  m.exports = groupMessagesPerPartition;
  require.cache[path] = m;
  return 'installed';
}

const status = preload();

/** 'installed', or why kafkajs' own module is used. */
export function kafkajsPreload(): string {
  return status;
}
