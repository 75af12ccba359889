/**
 * The Kafka side of `kairos export`: one consumer group reads the exported topics, decodes each record with the
 * topic's serde, turns it into a warehouse row and hands it to the bounded ExportBuffer
 * (src/warehouse/export-buffer.ts). Offsets are committed by hand, and only after the warehouse accepted every
 * row up to them: a crash or a kill before that repeats the rows, which the warehouse drops by insertId.
 *
 * Back-pressure: a batch handler that fills the buffer waits for the flush before it reads on, so kafkajs fetches
 * nothing more meanwhile; a slow or failing warehouse stops consumption (heartbeats go on) instead of growing
 * memory. Bad input never stops a partition: an undecodable record, and a row the warehouse refuses for its
 * content, go to `<topic>.dlq` with the reason, before the offset past them is committed.
 */
import type { Consumer, KafkaMessage, Kafka, Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { isTopicName, type TopicName } from '../../schemas/contract.js';
import { KairosError } from '../errors.js';
import { ExportBuffer, type FlushResult, type Position } from '../warehouse/export-buffer.js';
import type { ExportMetrics } from '../warehouse/metrics.js';
import { toRow, type TableDef } from '../warehouse/tables.js';
import type { Warehouse } from '../warehouse/warehouse.js';
import { dlqMessage, dlqTopic } from './dlq.js';
import type { TopicSerde } from './serde.js';

export interface ExportConsumerOptions {
  readonly kafka: Kafka;
  readonly serde: TopicSerde;
  readonly warehouse: Warehouse;
  /** The tables to fill; each one's topic is consumed. */
  readonly tables: readonly TableDef[];
  readonly groupId: string;
  readonly batchRows: number;
  readonly bufferRows: number;
  /** Longest time a row waits in the buffer (ms). */
  readonly flushMs: number;
  readonly logger: Logger;
  readonly metrics?: ExportMetrics | undefined;
  /** @default 500 */
  readonly maxWaitTimeInMs?: number | undefined;
  /** First retry delay after a warehouse error (ms). @default 500 */
  readonly retryMs?: number | undefined;
  /** @default Date.now */
  readonly now?: (() => number) | undefined;
  /** How long `stop()` keeps retrying the final flush (ms). @default 30000 */
  readonly stopTimeoutMs?: number | undefined;
}

export interface ExportStats {
  readonly rows: number;
  readonly refused: number;
  readonly deadLettered: number;
  readonly buffered: number;
  readonly commits: number;
  readonly byTable: Readonly<Record<string, number>>;
}

export interface ExportConsumer {
  /** Flushes and commits what was read, then leaves the group. */
  stop(): Promise<void>;
  /** Leaves without flushing or committing anything more (what a crash does; for tests and fatal errors). */
  abort(): Promise<void>;
  stats(): ExportStats;
  /** Rejects when the exporter stopped on an error it cannot retry (e.g. an incompatible table). */
  readonly failed: Promise<never>;
}

interface Source {
  readonly topic: string;
  readonly partition: number;
  readonly message: KafkaMessage;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startExportConsumer(opts: ExportConsumerOptions): Promise<ExportConsumer> {
  const log = opts.logger.child({ component: 'export' });
  const now = opts.now ?? Date.now;
  const byTopic = new Map<string, TableDef>(opts.tables.map((t) => [t.topic, t]));
  const buffer = new ExportBuffer<Source>({
    warehouse: opts.warehouse,
    batchRows: opts.batchRows,
    bufferRows: opts.bufferRows,
    logger: log,
    metrics: opts.metrics,
    ...(opts.retryMs === undefined ? {} : { retryMs: opts.retryMs }),
  });
  const counts = { rows: 0, refused: 0, deadLettered: 0, commits: 0 };
  const byTable: Record<string, number> = {};
  let stopping = false;
  let aborted = false;
  /** On stop, retries of the final flush end here: what is not stored by then is read again on the next start. */
  let giveUpAt = Number.POSITIVE_INFINITY;
  let fail: (err: unknown) => void = () => undefined;
  const failed = new Promise<never>((_resolve, reject) => (fail = reject));
  failed.catch(() => undefined);

  const producer: Producer = opts.kafka.producer({ allowAutoTopicCreation: true, idempotent: false });
  const consumer: Consumer = opts.kafka.consumer({ groupId: opts.groupId, maxWaitTimeInMs: opts.maxWaitTimeInMs ?? 500, allowAutoTopicCreation: true });
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topics: [...byTopic.keys()], fromBeginning: true });

  const deadLetter = async (src: Source, reason: string, errors: readonly { path: string; message: string }[]): Promise<void> => {
    const m = src.message;
    await producer.send({
      topic: dlqTopic(src.topic),
      acks: -1,
      messages: [dlqMessage({ topic: src.topic, partition: src.partition, offset: m.offset, key: m.key, value: m.value, headers: m.headers, timestamp: m.timestamp }, { reason, errors }, now())],
    });
    counts.deadLettered++;
    opts.metrics?.dlq.inc({ topic: src.topic, reason });
  };

  /** Flushes, dead-letters refused rows, then commits: the only place offsets are committed. */
  const flushAndCommit = async (heartbeat?: () => Promise<void>): Promise<void> => {
    const result: FlushResult<Source> = await buffer.flush({ ...(heartbeat ? { onWait: heartbeat } : {}), shouldStop: () => aborted || Date.now() > giveUpAt });
    if (aborted) return;
    for (const r of result.refused) {
      log.warn({ topic: r.source.topic, partition: r.source.partition, offset: r.source.message.offset, table: r.table, reason: r.reason }, 'the warehouse refused a row; dead-lettered');
      await deadLetter(r.source, `warehouse-${r.reason}`, [{ path: '/value', message: `${r.table}: ${r.message}` }]);
    }
    counts.rows += result.rows;
    counts.refused += result.refused.length;
    if (result.positions.length === 0) return;
    try {
      await consumer.commitOffsets(result.positions.map((p) => ({ topic: p.topic, partition: p.partition, offset: (BigInt(p.offset) + 1n).toString() })));
      counts.commits++;
      opts.metrics?.commits.inc();
    } catch (err) {
      // A partition moved away in a rebalance: its new owner repeats the rows, which the insertIds dedupe.
      log.warn({ err }, 'offset commit failed after the rows were stored; the next owner repeats them');
    }
  };

  const fatal = (err: unknown): void => {
    if (aborted) return;
    log.error({ err }, 'export stopped');
    fail(err);
    void abort();
  };

  const timer = setInterval(() => {
    if (stopping || aborted || !buffer.pending) return;
    flushAndCommit().catch(fatal);
  }, opts.flushMs);
  timer.unref();

  const decode = async (topic: TopicName, m: KafkaMessage, heartbeat: () => Promise<void>) => {
    for (let delay = 500; ; delay = Math.min(delay * 2, 30_000)) {
      const d = await opts.serde.decode(topic, m.key, m.value);
      if (d.ok || !d.retriable || stopping || aborted) return d;
      log.warn({ topic, offset: m.offset, reason: d.reason, retryInMs: delay }, 'cannot decode yet (schema registry); retrying');
      await sleep(delay);
      await heartbeat();
    }
  };

  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
      const topic = batch.topic;
      const def = byTopic.get(topic);
      if (def === undefined || !isTopicName(topic)) throw new KairosError('KAIROS_ERR_CONFIG', `no warehouse table for topic ${topic}`);
      for (const m of batch.messages) {
        if (stopping || aborted || !isRunning() || isStale()) return;
        const position: Position = { topic, partition: batch.partition, offset: m.offset };
        const src: Source = { topic, partition: batch.partition, message: m };
        const d = await decode(topic, m, heartbeat);
        if (aborted) return;
        if (!d.ok) {
          await deadLetter(src, d.reason, d.errors);
          buffer.advance(position);
        } else {
          const value = d.value as Record<string, unknown>;
          buffer.add(def, { insertId: String(value[def.insertIdField]), json: toRow(def, value, { partition: batch.partition, offset: m.offset }, now()) }, position, src);
          byTable[def.tableId] = (byTable[def.tableId] ?? 0) + 1;
        }
        resolveOffset(m.offset);
        if (buffer.full()) {
          opts.metrics?.backpressureWaits.inc();
          await flushAndCommit(heartbeat);
        }
      }
      if (buffer.due()) await flushAndCommit(heartbeat);
      await heartbeat();
    },
  });

  const abort = async (): Promise<void> => {
    if (aborted) return;
    aborted = true;
    stopping = true;
    clearInterval(timer);
    await consumer.disconnect().catch((err: unknown) => log.warn({ err }, 'consumer disconnect failed'));
    await producer.disconnect().catch((err: unknown) => log.warn({ err }, 'producer disconnect failed'));
  };

  return {
    failed,
    stats: () => ({ ...counts, buffered: buffer.size, byTable: { ...byTable } }),
    abort,
    stop: async () => {
      if (stopping) return;
      stopping = true;
      giveUpAt = Date.now() + (opts.stopTimeoutMs ?? 30_000);
      clearInterval(timer);
      try {
        // Commit while the consumer is still in the group; a batch in flight sees `stopping` and returns.
        await flushAndCommit();
      } finally {
        aborted = true;
        await consumer.disconnect().catch((err: unknown) => log.warn({ err }, 'consumer disconnect failed'));
        await producer.disconnect().catch((err: unknown) => log.warn({ err }, 'producer disconnect failed'));
      }
    },
  };
}
