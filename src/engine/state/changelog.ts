/**
 * The changelog side of a task's state. Every store change of a commit is sent here before the local RocksDB
 * write, so another instance can rebuild the task. The Kafka implementation lives in src/kafka/; the memory
 * one serves the test driver and restore tests.
 */
export interface ChangelogEntry {
  /** Store name; the Kafka changelog topic is `<applicationId>-<store>-changelog`. */
  readonly store: string;
  /** The key within the store. */
  readonly key: Buffer;
  /** Stored bytes (timestamp header + codec bytes), or null for a delete. */
  readonly value: Buffer | null;
  /** Stream time of the commit. */
  readonly timestamp: number;
}

/**
 * Reserved store name for consumed input positions in the changelog: key `topic\u0000partition`, value the next
 * offset (UTF-8). Logged with every commit, so state restored from the changelog knows exactly which input
 * records it already contains, and a new owner skips them instead of applying them twice.
 */
export const POSITIONS_STORE = '_positions';

/** Where the changelog got to: `topic\u0000partition` → next offset of each changelog partition written. */
export type ChangelogCheckpoint = ReadonlyMap<string, string>;

export interface ChangelogSendOptions {
  /**
   * Awaited once the entries are written and before the write is made complete (the Kafka writer's commit
   * marker): what else must be durable before the commit counts (the runner's repartition records, sent
   * alongside the entries). A rejection leaves the commit incomplete and rejects the send.
   */
  readonly beforeComplete?: () => Promise<void>;
}

export interface ChangelogWriter {
  /**
   * Resolves once the entries are durable (acknowledged), with the changelog positions reached (recorded by
   * the task as its restore checkpoint) when the log has offsets. Called once per commit, never concurrently.
   */
  send(taskId: string, entries: readonly ChangelogEntry[], options?: ChangelogSendOptions): Promise<ChangelogCheckpoint | void>;
}

export interface ChangelogReader {
  /** Every entry logged for the task, in log order (a compacted log may have dropped superseded ones). */
  read(taskId: string): AsyncIterable<readonly ChangelogEntry[]>;
}

export function changelogTopic(applicationId: string, store: string): string {
  return `${applicationId}-${store}-changelog`;
}

/** Keeps the log in memory, compacting per key like a compacted topic. */
export class MemoryChangelog implements ChangelogWriter, ChangelogReader {
  readonly #logs = new Map<string, Map<string, ChangelogEntry>>();
  sent = 0;

  send(taskId: string, entries: readonly ChangelogEntry[], options: ChangelogSendOptions = {}): Promise<void> {
    if (options.beforeComplete) return options.beforeComplete().then(() => this.#append(taskId, entries));
    this.#append(taskId, entries);
    return Promise.resolve();
  }

  #append(taskId: string, entries: readonly ChangelogEntry[]): void {
    let log = this.#logs.get(taskId);
    if (!log) this.#logs.set(taskId, (log = new Map()));
    for (const e of entries) {
      const id = `${e.store}\u0000${e.key.toString('base64')}`;
      log.delete(id);
      log.set(id, e);
    }
    this.sent += entries.length;
  }

  async *read(taskId: string): AsyncIterable<readonly ChangelogEntry[]> {
    const log = this.#logs.get(taskId);
    if (log) yield [...log.values()];
    await Promise.resolve();
  }

  size(taskId: string): number {
    return this.#logs.get(taskId)?.size ?? 0;
  }
}
