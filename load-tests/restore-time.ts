/**
 * Restore time of task state (issue 8: "restore time for 1M customers"), in two parts, because librdkafka's mock
 * cluster keeps at most 5 MiB per partition and silently deletes older records (load-tests/README.md), so a
 * 1M-customer changelog cannot live there:
 *
 *  (a) Kafka: the state of as many customers as fit (largest changelog partition under --kafka-mib, default 4 MiB)
 *      is written through `TaskState` with the real `KafkaChangelogWriter` (partition 0 of the three changelog
 *      topics), then restored into an empty RocksDB with `restoreFromChangelog` (src/kafka/changelog.ts), timed.
 *      The run fails if the broker trimmed anything (`onTrimmed`, or a log start > 0). The time for 1M customers
 *      is an EXTRAPOLATION (linear in records) and is labelled so.
 *  (b) Local, at full scale: --customers (1,000,000) customers written through `TaskState` (commit every
 *      --commit-every customers) with a changelog writer that appends the exact entries to a file; then a fresh,
 *      empty RocksDB is restored with `TaskState.restore(entries)` in chunks of --chunk entries read from that
 *      file, timed, with RSS; a sample of customers is read back and compared.
 *
 * Per customer: a basket-abandonment basket (2 lines with prices; store `basket-abandonment.baskets`), a recent
 * history (one BASKET_ABANDONED trigger and its decision; store `history.recent`) and a pending timer (store
 * `_timers`, the engine's own): three changelog entries per customer, as the abandonment topology writes them.
 *
 *   npx tsx load-tests/restore-time.ts [--customers 1000000] [--commit-every 10000] [--chunk 10000] [--kafka-mib 4]
 *                                      [--brokers host:port (a real broker: (a) at full scale, measured)]
 *                                      [--skip-kafka] [--skip-local]
 *
 * Progress on stderr; figures and one JSON line ({"bench":"restore-time",…}) on stdout.
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Partitioners } from 'kafkajs';
import pino from 'pino';
import { jsonCodec } from '../src/engine/api/index.js';
import type { StoreSpec } from '../src/engine/api/stores.js';
import { changelogTopic, type ChangelogEntry, type ChangelogWriter } from '../src/engine/state/changelog.js';
import { TaskState, TIMER_STORE } from '../src/engine/state/task-state.js';
import { KafkaChangelogWriter, producerSend, restoreFromChangelog } from '../src/kafka/changelog.js';
import { createKafka } from '../src/kafka/client.js';
import { startMockCluster, type MockCluster } from '../src/kafka/mock-cluster.js';
import { ensureTopics, INTERNAL_TOPIC_CONFIGS } from '../src/kafka/topics.js';
import { basketsStore } from '../topologies/basket-abandonment/index.js';
import { historyStore } from '../topologies/common/history.js';
import { diskUsage, fmtBytes, fmtInt, isUsageError, MemorySampler, parseCount, UsageError } from './lib/common.js';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const log = (msg: string): void => void process.stderr.write(`bench:restore ${new Date().toISOString().slice(11, 23)} ${msg}\n`);
const MiB = 1024 * 1024;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const APP = 'kbench';

// The engine's timer store ('_' names are reserved, so not through keyValueStore), as src/engine/runtime/task.ts has it.
const STORES: readonly StoreSpec<unknown>[] = [{ ...basketsStore, ttlMs: 30 * DAY }, historyStore, { kind: 'key-value', name: TIMER_STORE, codec: jsonCodec() }] as StoreSpec<unknown>[];

interface Options {
  customers: number;
  commitEvery: number;
  chunk: number;
  kafkaMiB: number;
  kafka: boolean;
  local: boolean;
  /** A real broker: the whole --customers are written and restored, measured (no 5 MiB limit, no extrapolation). */
  brokers: string[] | undefined;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      customers: { type: 'string' },
      'commit-every': { type: 'string' },
      chunk: { type: 'string' },
      'kafka-mib': { type: 'string' },
      'skip-kafka': { type: 'boolean', default: false },
      'skip-local': { type: 'boolean', default: false },
      brokers: { type: 'string' },
    },
    strict: true,
  });
  const kafkaMiB = Number(values['kafka-mib'] ?? '4');
  if (!(kafkaMiB > 0 && kafkaMiB < 5)) throw new UsageError('--kafka-mib must be above 0 and below 5 (the mock cluster keeps 5 MiB per partition)');
  return {
    customers: parseCount('customers', values.customers, 1_000_000),
    commitEvery: parseCount('commit-every', values['commit-every'], 10_000),
    chunk: parseCount('chunk', values.chunk, 10_000),
    kafkaMiB,
    kafka: !values['skip-kafka'],
    local: !values['skip-local'],
    brokers: values.brokers === undefined ? undefined : values.brokers.split(',').map((b) => b.trim()).filter((b) => b !== ''),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The state of one customer, as the abandonment topology and the history stage write it.

const eur = (amount: number) => ({ amount, currency: 'EUR' });

function writeCustomer(state: TaskState, i: number): void {
  const id = `cust-${String(i).padStart(7, '0')}`;
  const at = T0 - (i % 3600) * 1000;
  const sku1 = `sku-${(i * 7919) % 20000}`;
  const sku2 = `sku-${(i * 104729) % 20000}`;
  state.put(basketsStore.name, id, {
    items: [
      { sku: sku1, productId: `p-${sku1}`, quantity: 1, unitPrice: eur(3499), addedAt: at - 120_000 },
      { sku: sku2, productId: `p-${sku2}`, quantity: 2, unitPrice: eur(1299), addedAt: at },
    ],
    lastActivityAt: at,
    lastActivityType: 'ITEM_ADDED',
    lastEvent: { eventId: `evt-${i}-2`, topic: 'shop.basket.v1', partition: i % 4, offset: String(i * 3 + 2) },
    lastTriggerAt: at - 3 * DAY,
  });
  const triggerId = `trg-${i.toString(16).padStart(12, '0')}`;
  state.put(historyStore.name, id, {
    triggers: [
      {
        triggerId,
        type: 'BASKET_ABANDONED',
        occurredAt: at - 3 * DAY,
        campaignId: 'basket-abandonment',
        variant: 'default',
        channels: ['push', 'email'],
        causedBy: { eventId: `evt-${i}-0`, topic: 'shop.basket.v1', partition: i % 4, offset: String(i * 3) },
        payload: { items: [{ sku: sku1, quantity: 1, unitPrice: eur(3499) }], basketValue: eur(3499) },
        expiresAt: at - 2 * DAY,
        rule: 'basket-abandonment',
      },
    ],
    decisions: [{ auditId: `aud-${i}`, triggerId, type: 'BASKET_ABANDONED', occurredAt: at - 3 * DAY, campaignId: 'basket-abandonment', variant: 'default', decision: 'SENT', reason: 'ok' }],
  });
  state.put(TIMER_STORE, `basket-abandonment\u0000inactivity\u0000${id}`, {
    node: 'basket-abandonment',
    name: 'inactivity',
    key: id,
    time: at + 3_600_000,
    domain: 'stream-time',
  });
}

// ---------------------------------------------------------------------------------------------------------------
// (b) local, full scale: a changelog writer that appends the exact entries to a file, read back in chunks.

const STORE_INDEX = new Map<string, number>();

class FileChangelog implements ChangelogWriter {
  readonly #fd: number;
  entries = 0;
  bytes = 0;
  constructor(readonly path: string) {
    this.#fd = openSync(path, 'w');
  }
  send(_taskId: string, entries: readonly ChangelogEntry[]): Promise<void> {
    const parts: Buffer[] = [];
    for (const e of entries) {
      let s = STORE_INDEX.get(e.store);
      if (s === undefined) STORE_INDEX.set(e.store, (s = STORE_INDEX.size));
      const head = Buffer.allocUnsafe(1 + 4 + 4 + 8);
      head.writeUInt8(s, 0);
      head.writeUInt32BE(e.key.length, 1);
      head.writeInt32BE(e.value === null ? -1 : e.value.length, 5);
      head.writeDoubleBE(e.timestamp, 9);
      parts.push(head, e.key);
      if (e.value) parts.push(e.value);
      this.bytes += e.key.length + (e.value?.length ?? 0);
    }
    this.entries += entries.length;
    writeSync(this.#fd, Buffer.concat(parts));
    return Promise.resolve();
  }
  close(): void {
    closeSync(this.#fd);
  }
}

/** Reads the file back as chunks of `chunk` entries (buffered 8 MiB reads). */
function* readChangelog(path: string, chunk: number): Generator<ChangelogEntry[]> {
  const names = [...STORE_INDEX.keys()];
  const fd = openSync(path, 'r');
  try {
    let buf = Buffer.alloc(0);
    let eof = false;
    let out: ChangelogEntry[] = [];
    const need = (n: number): boolean => {
      while (buf.length < n && !eof) {
        const b = Buffer.allocUnsafe(8 * MiB);
        const got = readSync(fd, b, 0, b.length, null);
        if (got === 0) eof = true;
        else buf = buf.length === 0 ? b.subarray(0, got) : Buffer.concat([buf, b.subarray(0, got)]);
      }
      return buf.length >= n;
    };
    while (need(17)) {
      const store = names[buf.readUInt8(0)] as string;
      const klen = buf.readUInt32BE(1);
      const vlen = buf.readInt32BE(5);
      const timestamp = buf.readDoubleBE(9);
      const total = 17 + klen + Math.max(0, vlen);
      if (!need(total)) throw new Error('truncated changelog file');
      const key = Buffer.from(buf.subarray(17, 17 + klen));
      const value = vlen < 0 ? null : Buffer.from(buf.subarray(17 + klen, total));
      buf = buf.subarray(total);
      out.push({ store, key, value, timestamp });
      if (out.length >= chunk) {
        yield out;
        out = [];
      }
    }
    if (out.length > 0) yield out;
  } finally {
    closeSync(fd);
  }
}

interface LocalResult {
  customers: number;
  entries: number;
  changelogMiB: number;
  writeMs: number;
  writeCustomersPerSec: number;
  restoreMs: number;
  /** Of restoreMs: reading and decoding the file (stands in for the fetch; not part of TaskState.restore). */
  readMs: number;
  /** restoreMs − readMs: TaskState.restore (RocksDB write batches) and the final commit. */
  applyMs: number;
  restoreEntriesPerSec: number;
  restoreCustomersPerSec: number;
  restoredStateDiskMiB: number;
  peakRssWriteMiB: number;
  peakRssRestoreMiB: number;
  verified: number;
}

async function local(o: Options, root: string): Promise<LocalResult> {
  const srcDir = join(root, 'source');
  const dstDir = join(root, 'restored');
  const file = join(root, 'changelog.bin');
  const changelog = new FileChangelog(file);
  log(`(b) writing ${fmtInt(o.customers)} customers through TaskState (commit every ${fmtInt(o.commitEvery)})`);
  const memW = new MemorySampler();
  const src = await TaskState.open({ dir: srcDir, taskId: '0_0', stores: STORES, changelog });
  src.streamTime = T0;
  const tw = performance.now();
  for (let i = 0; i < o.customers; i++) {
    writeCustomer(src, i);
    if ((i + 1) % o.commitEvery === 0 || i === o.customers - 1) {
      src.setPosition('shop.basket.v1', 0, String(i + 1));
      await src.commit();
      if ((i + 1) % (o.commitEvery * 20) === 0) log(`  ${fmtInt(i + 1)} customers written, RSS ${fmtBytes(process.memoryUsage().rss)}`);
    }
  }
  const writeMs = performance.now() - tw;
  await src.close();
  changelog.close();
  memW.stop();
  rmSync(srcDir, { recursive: true, force: true });
  log(`(b) ${fmtInt(changelog.entries)} changelog entries (${fmtBytes(changelog.bytes)} keys + values) in ${(writeMs / 1000).toFixed(1)} s; restoring into an empty RocksDB`);

  // Restore: chunks read from the file, applied with TaskState.restore, as restoreFromChangelog does per batch.
  global.gc?.();
  const memR = new MemorySampler();
  const tr = performance.now();
  const dst = await TaskState.open({ dir: dstDir, taskId: '0_0', stores: STORES });
  let restored = 0;
  let readMs = 0;
  const it = readChangelog(file, o.chunk);
  for (;;) {
    const t = performance.now();
    const next = it.next();
    readMs += performance.now() - t;
    if (next.done) break;
    restored += await dst.restore(next.value);
    if (restored % (o.chunk * 100) < o.chunk) log(`  ${fmtInt(restored)} entries restored, RSS ${fmtBytes(process.memoryUsage().rss)}`);
  }
  await dst.commit();
  const restoreMs = performance.now() - tr;
  memR.stop();
  // Verify a sample.
  let verified = 0;
  for (let i = 0; i < o.customers; i += Math.max(1, Math.floor(o.customers / 1000))) {
    const id = `cust-${String(i).padStart(7, '0')}`;
    const b = (await dst.get(basketsStore.name, id)) as { items?: unknown[] } | undefined;
    const h = (await dst.get(historyStore.name, id)) as { triggers?: unknown[] } | undefined;
    if (b?.items?.length !== 2 || h?.triggers?.length !== 1) throw new Error(`customer ${id} not restored`);
    verified++;
  }
  await dst.close();
  const du = diskUsage(dstDir);
  log(`(b) restored ${fmtInt(restored)} entries in ${(restoreMs / 1000).toFixed(1)} s (reading the file: ${(readMs / 1000).toFixed(1)} s); ${verified} sampled customers verified`);
  rmSync(file, { force: true });
  return {
    customers: o.customers,
    entries: restored,
    changelogMiB: changelog.bytes / MiB,
    writeMs: Math.round(writeMs),
    writeCustomersPerSec: Math.round(o.customers / (writeMs / 1000)),
    restoreMs: Math.round(restoreMs),
    readMs: Math.round(readMs),
    applyMs: Math.round(restoreMs - readMs),
    restoreEntriesPerSec: Math.round(restored / (restoreMs / 1000)),
    restoreCustomersPerSec: Math.round(o.customers / (restoreMs / 1000)),
    restoredStateDiskMiB: du.allocatedBytes / MiB,
    peakRssWriteMiB: memW.peakRss / MiB,
    peakRssRestoreMiB: memR.peakRss / MiB,
    verified,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// (a) through the mock cluster, at the largest size that fits.

interface KafkaResult {
  customers: number;
  records: number;
  recordMiB: number;
  largestPartitionMiB: number;
  restoreMs: number;
  firstBatchMs: number;
  restoreRecordsPerSec: number;
  restoreRecordsPerSecAfterFirst: number;
  extrapolated1MCustomersSec: number;
  trimmed: number;
}

async function viaKafka(o: Options, root: string, brokers: string[], targetCustomers: number): Promise<KafkaResult> {
  const logger = pino({ level: process.env.KAIROS_BENCH_LOG ?? 'warn' }, pino.destination(2));
  const kafka = createKafka({ brokers, clientId: 'bench-restore', logger });
  // On a real broker, a new application id per run: its changelog topics are new (deleting topics is
  // asynchronous, so reusing names right after a delete fails now and then); they stay behind on that broker.
  const app = o.brokers === undefined ? APP : `${APP}-${Date.now().toString(36)}`;
  const producer = kafka.producer({ allowAutoTopicCreation: true, createPartitioner: Partitioners.DefaultPartitioner });
  const admin = kafka.admin();
  await Promise.all([producer.connect(), admin.connect()]);
  try {
    const limit = o.brokers === undefined ? o.kafkaMiB * MiB : Infinity;
    const perTopic = new Map<string, number>();
    let records = 0;
    let bytes = 0;
    // The changelog topics as the runner creates them (compacted: a delete policy would drop records older than
    // the broker's retention, and these carry event time); the mock cluster has no CreateTopics and auto-creates.
    if (o.brokers !== undefined) {
      await ensureTopics(admin, STORES.map((st) => ({ topic: changelogTopic(app, st.name), numPartitions: 1, configs: INTERNAL_TOPIC_CONFIGS.changelog })), logger);
    }
    const writer = new KafkaChangelogWriter(producerSend(producer), app, 0);
    const counting: ChangelogWriter = {
      send: (taskId, entries) => {
        for (const e of entries) {
          // Per-record cost in the log: key + value + ~70 bytes of record/batch overhead (v2 record format).
          const n = e.key.length + (e.value?.length ?? 0);
          const topic = changelogTopic(app, e.store);
          perTopic.set(topic, (perTopic.get(topic) ?? 0) + n + 70);
          bytes += n;
        }
        records += entries.length;
        return writer.send(taskId, entries);
      },
    };
    const src = await TaskState.open({ dir: join(root, 'k-source'), taskId: '0_0', stores: STORES, changelog: counting });
    src.streamTime = T0;
    const batch = 1000; // customers per commit: ~1 MB per produce request
    let customers = 0;
    log(
      o.brokers === undefined
        ? `(a) writing customers through KafkaChangelogWriter until a changelog partition holds ~${o.kafkaMiB} MiB`
        : `(a) writing ${fmtInt(targetCustomers)} customers through KafkaChangelogWriter to ${brokers.join(',')} (application ${app})`,
    );
    // Stop before the next commit could take the largest partition past the limit.
    const largestNow = (): number => Math.max(0, ...perTopic.values());
    let growth = 0;
    while (customers < targetCustomers && largestNow() + 1.1 * growth < limit) {
      const before = largestNow();
      for (let i = 0; i < batch && customers < targetCustomers; i++) writeCustomer(src, customers++);
      await src.commit();
      if (o.brokers !== undefined && customers % 100_000 === 0) log(`  ${fmtInt(customers)} customers written`);
      growth = Math.max(growth, largestNow() - before);
    }
    await src.close();
    rmSync(join(root, 'k-source'), { recursive: true, force: true });
    const largest = Math.max(...perTopic.values());
    log(`(a) ${fmtInt(customers)} customers = ${fmtInt(records)} changelog records (${fmtBytes(bytes)} keys + values; largest partition ~${fmtBytes(largest)} with overhead)`);

    // Anything the broker dropped?
    let lowSum = 0;
    for (const s of STORES) {
      for (const p of await admin.fetchTopicOffsets(changelogTopic(app, s.name))) lowSum += Number(p.low);
    }
    if (lowSum > 0) {
      throw new Error(
        o.brokers === undefined
          ? `the mock broker trimmed ${lowSum} changelog records (5 MiB per partition): lower --kafka-mib`
          : `the broker deleted ${lowSum} changelog records before the restore (retention or compaction)`,
      );
    }

    const dst = await TaskState.open({ dir: join(root, 'k-restored'), taskId: '0_0', stores: STORES });
    let trimmed = 0n;
    let firstAt = 0;
    const t0 = performance.now();
    const n = await restoreFromChangelog({
      kafka,
      admin,
      state: dst,
      applicationId: app,
      stores: STORES.map((s) => s.name),
      partition: 0,
      groupId: app,
      logger,
      onProgress: () => {
        if (firstAt === 0) firstAt = performance.now();
      },
      onTrimmed: (topic, lost) => {
        trimmed += lost;
        log(`(a) TRIMMED: ${topic} lost ${lost} records before the restore`);
      },
    });
    const restoreMs = performance.now() - t0;
    const firstBatchMs = firstAt === 0 ? restoreMs : firstAt - t0;
    await dst.close();
    rmSync(join(root, 'k-restored'), { recursive: true, force: true });
    if (trimmed > 0n) throw new Error(`restoreFromChangelog reported ${trimmed} trimmed records`);
    // restore() counts the _positions entries too; the data records are `records` minus those.
    log(`(a) restoreFromChangelog applied ${fmtInt(n)} entries in ${(restoreMs / 1000).toFixed(2)} s (first batch after ${(firstBatchMs / 1000).toFixed(2)} s)`);
    const perRecordMs = (restoreMs - firstBatchMs) / Math.max(1, n);
    const recordsPerCustomer = records / customers;
    return {
      customers,
      records,
      recordMiB: bytes / MiB,
      largestPartitionMiB: largest / MiB,
      restoreMs: Math.round(restoreMs),
      firstBatchMs: Math.round(firstBatchMs),
      restoreRecordsPerSec: Math.round(n / (restoreMs / 1000)),
      restoreRecordsPerSecAfterFirst: Math.round(n / Math.max(0.001, (restoreMs - firstBatchMs) / 1000)),
      extrapolated1MCustomersSec: Number(((firstBatchMs + perRecordMs * recordsPerCustomer * 1_000_000) / 1000).toFixed(1)),
      trimmed: Number(trimmed),
    };
  } finally {
    await Promise.all([producer.disconnect(), admin.disconnect()]);
  }
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  const root = mkdtempSync(join(tmpdir(), 'kairos-bench-restore-'));
  let cluster: MockCluster | undefined;
  try {
    let k: KafkaResult | undefined;
    if (o.kafka && o.brokers !== undefined) k = await viaKafka(o, root, o.brokers, o.customers);
    else if (o.kafka) {
      log('starting the mock cluster (kcat)');
      cluster = await startMockCluster();
      k = await viaKafka(o, root, cluster.brokers, o.customers);
      await cluster.stop();
      cluster = undefined;
    }
    const l = o.local ? await local(o, root) : undefined;
    const p = (s: string): void => void process.stdout.write(`${s}\n`);
    p('');
    p('== Kairos restore time (basket + history + timer per customer: 3 changelog entries) ==');
    if (k && o.brokers !== undefined) {
      p(`(a) Kafka changelog on the broker at ${o.brokers.join(',')}, full scale, measured:`);
      p(`    ${fmtInt(k.customers)} customers, ${fmtInt(k.records)} records, ${k.recordMiB.toFixed(2)} MiB keys + values, trimmed 0`);
      p(`    restoreFromChangelog: ${(k.restoreMs / 1000).toFixed(2)} s (${fmtInt(k.restoreRecordsPerSec)} records/s; consumer group join + first batch ${(k.firstBatchMs / 1000).toFixed(2)} s, then ${fmtInt(k.restoreRecordsPerSecAfterFirst)} records/s)`);
    } else if (k) {
      p(`(a) Kafka changelog on the mock cluster (largest that fits under ${o.kafkaMiB} MiB per partition):`);
      p(`    ${fmtInt(k.customers)} customers, ${fmtInt(k.records)} records, ${k.recordMiB.toFixed(2)} MiB keys + values (largest partition ~${k.largestPartitionMiB.toFixed(2)} MiB), trimmed 0`);
      p(`    restoreFromChangelog: ${(k.restoreMs / 1000).toFixed(2)} s (${fmtInt(k.restoreRecordsPerSec)} records/s; consumer group join + first batch ${(k.firstBatchMs / 1000).toFixed(2)} s, then ${fmtInt(k.restoreRecordsPerSecAfterFirst)} records/s)`);
      p(`    EXTRAPOLATION to 1,000,000 customers (linear in records, one partition, this mock broker): ~${k.extrapolated1MCustomersSec} s`);
    }
    if (l) {
      p(`(b) local, full scale: ${fmtInt(l.customers)} customers, ${fmtInt(l.entries)} changelog entries (${l.changelogMiB.toFixed(1)} MiB keys + values)`);
      p(`    written through TaskState in ${(l.writeMs / 1000).toFixed(1)} s (${fmtInt(l.writeCustomersPerSec)} customers/s), peak RSS ${l.peakRssWriteMiB.toFixed(0)} MiB`);
      p(`    TaskState.restore into an empty RocksDB: ${(l.restoreMs / 1000).toFixed(1)} s, of which reading the file ${(l.readMs / 1000).toFixed(1)} s and TaskState.restore ${(l.applyMs / 1000).toFixed(1)} s (${fmtInt(l.restoreEntriesPerSec)} entries/s, ${fmtInt(l.restoreCustomersPerSec)} customers/s), peak RSS ${l.peakRssRestoreMiB.toFixed(0)} MiB, state on disk ${l.restoredStateDiskMiB.toFixed(0)} MiB; ${l.verified} sampled customers verified`);
    }
    p('');
    p(JSON.stringify({ bench: 'restore-time', brokers: o.brokers ?? null, kafka: k ?? null, local: l ?? null, maxRssMiB: Math.round((process.resourceUsage().maxRSS * 1024) / MiB) }));
  } finally {
    if (cluster) await cluster.stop().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  }
}

main().then(
  () => setTimeout(() => process.exit(process.exitCode ?? 0), 500).unref(),
  (err: unknown) => {
    process.stderr.write(`bench:restore: ${isUsageError(err) ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`);
    process.exitCode = isUsageError(err) ? 2 : 1;
    setTimeout(() => process.exit(process.exitCode as number), 500).unref();
  },
);
