/**
 * The partition of a key, as every Kafka producer with the default partitioner computes it (Java's
 * `Utils.murmur2`, kafkajs' DefaultPartitioner): the query API uses it to find the task that owns a key.
 */
import { randomBytes } from 'node:crypto';
import type { PartitionerArgs } from 'kafkajs';

const SEED = 0x9747b28c;
const M = 0x5bd1e995;

export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = SEED ^ length;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = (data[i] as number) | ((data[i + 1] as number) << 8) | ((data[i + 2] as number) << 16) | ((data[i + 3] as number) << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & 3;
  if (tail > 0) {
    if (tail === 3) h ^= (data[whole + 2] as number) << 16;
    if (tail >= 2) h ^= (data[whole + 1] as number) << 8;
    h ^= data[whole] as number;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h;
}

/** Room for the UTF-8 of a string key without a Buffer per key (longer keys get their own). */
const scratch = Buffer.allocUnsafe(1024);

/** murmur2 of a key as kafkajs hashes it: a Buffer as is, anything else as the UTF-8 of `String(key)`. */
function murmur2Key(key: Buffer | string): number {
  if (typeof key !== 'string') return murmur2(key);
  // Three bytes per UTF-16 unit at most: a key this short always fits the scratch buffer.
  if (key.length <= scratch.length / 3) return murmur2(scratch.subarray(0, scratch.write(key, 0, 'utf8')));
  return murmur2(Buffer.from(key, 'utf8'));
}

/** The partition the default partitioner picks for a (non-null) key among `partitions`. */
export function partitionOf(key: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) throw new RangeError(`partitions must be a positive integer, not ${partitions}`);
  return (murmur2Key(key) & 0x7fffffff) % partitions;
}

/**
 * kafkajs' DefaultPartitioner (Java's default: murmur2 of the key; a message's own partition wins; keyless
 * messages round-robin over the partitions with a leader, from a random start per topic), computed in 32-bit
 * integers: kafkajs' own murmur2 builds a dozen `Long` objects per key, and its partitioner filters the
 * partition list for every message, keyed or not. For the producers of the runner's hot path (changelog,
 * repartition and output records). Test: the same partitions as kafkajs' for keys of every kind.
 */
export function murmur2Partitioner(): (args: PartitionerArgs) => number {
  const counters = new Map<string, number>();
  return ({ topic, partitionMetadata, message }) => {
    if (message.partition !== null && message.partition !== undefined) return message.partition;
    const n = partitionMetadata.length;
    if (message.key !== null && message.key !== undefined) return (murmur2Key(message.key) & 0x7fffffff) % n;
    let counter = counters.get(topic) ?? randomBytes(4).readUInt32BE(0);
    counter = (counter + 1) | 0;
    counters.set(topic, counter);
    const available = partitionMetadata.filter((p) => p.leader >= 0);
    if (available.length > 0) return (available[(counter & 0x7fffffff) % available.length] as { partitionId: number }).partitionId;
    return (counter & 0x7fffffff) % n;
  };
}
