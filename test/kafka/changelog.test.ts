import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Admin, Kafka, Producer } from 'kafkajs';
import assert from 'node:assert/strict';
import { stringCodec } from '../../src/engine/api/codecs.js';
import { keyValueStore } from '../../src/engine/api/stores.js';
import { TaskState } from '../../src/engine/state/task-state.js';
import { COMMIT_MARKER_KEY, KafkaChangelogWriter, producerSend, restoreFromChangelog, type ChangelogSend } from '../../src/kafka/changelog.js';
import type { FetchedBatch } from '../../src/kafka/kafkajs-preload.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { tempDir } from '../helpers.js';
import pino from 'pino';
import { appendTransactionMarker, collect, json, silent, testKafka } from '../support/kafka.js';

let cluster: MockCluster;
before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  await cluster.stop();
});

const kv = keyValueStore('kv', stringCodec);
const other = keyValueStore('other', stringCodec);

interface Clients {
  readonly kafka: Kafka;
  readonly producer: Producer;
  readonly admin: Admin;
  /** Directory of the state that writes the changelog. */
  readonly source: string;
  /** Directory of the state restored from it. */
  readonly target: string;
}

/** Clients on the shared mock cluster and two temporary state directories, closed and removed after `body`. */
async function withClients(body: (c: Clients) => Promise<void>): Promise<void> {
  const kafka = testKafka(cluster.brokers);
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  const admin = kafka.admin();
  await Promise.all([producer.connect(), admin.connect()]);
  const source = tempDir();
  const target = tempDir();
  try {
    await body({ kafka, producer, admin, source: source.dir, target: target.dir });
  } finally {
    await Promise.all([producer.disconnect(), admin.disconnect()]);
    source.remove();
    target.remove();
  }
}

test('restore from a changelog whose start the broker deleted (mock cluster: 5 MiB per partition) reports the lost records and restores the rest', () =>
  withClients(async ({ kafka, producer, admin, source, target }) => {
    // 8 commits of 10 entries of 100 kB: 8 MB in partition 1 of the changelog, beyond the mock's 5 MiB cap.
    const state = await TaskState.open({ dir: source, taskId: 'task-1', stores: [kv], changelog: new KafkaChangelogWriter(producerSend(producer), 'ktrim', 1) });
    const big = 'x'.repeat(100_000);
    for (let c = 0; c < 8; c++) {
      for (let i = 0; i < 10; i++) state.put('kv', `k${String(c * 10 + i).padStart(2, '0')}`, big, 1);
      await state.commit();
    }
    await state.close();
    const trimmed: [string, bigint][] = [];
    const fresh = await TaskState.open({ dir: target, taskId: 'task-1', stores: [kv] });
    try {
      const n = await restoreFromChangelog({
        kafka,
        admin,
        state: fresh,
        applicationId: 'ktrim',
        stores: ['kv'],
        partition: 1,
        groupId: 'ktrim',
        logger: silent,
        onTrimmed: (topic, records) => trimmed.push([topic, records]),
      });
      assert.equal(trimmed.length, 1, 'the deleted start of the changelog is reported');
      const [topic, lost] = trimmed[0] as [string, bigint];
      assert.equal(topic, 'ktrim-kv-changelog');
      assert.ok(lost >= 10n && lost % 10n === 0n, `whole commits were deleted (${lost})`);
      assert.equal(BigInt(n) + lost, 80n, 'every entry is either restored or reported lost');
      const keys = (await fresh.scan('kv')).map((e) => e.key);
      assert.equal(keys.length, n);
      assert.equal(keys[0], `k${String(Number(lost)).padStart(2, '0')}`, 'the oldest entries are the lost ones');
    } finally {
      await fresh.close();
    }
  }));

test('a commit cut short (store records written, positions and marker not) is not restored: stores and positions stay at the last complete commit, and the skipped keys are named for rewriting', () =>
  withClients(async ({ kafka, producer, admin, source, target }) => {
    const state = await TaskState.open({ dir: source, taskId: 'task-2', stores: [kv], changelog: new KafkaChangelogWriter(producerSend(producer), 'kcut', 2) });
    state.put('kv', 'basket', 'one unit', 1);
    state.setPosition('shop.basket.v1', 2, '10');
    await state.commit();
    await state.close();
    // The next commit's store request reached the broker; the process was killed before positions and marker.
    await producer.send({ topic: 'kcut-kv-changelog', messages: [{ key: 'basket', value: 'two units (input offset 10 applied)', partition: 2 }, { key: 'other', value: 'x', partition: 2 }] });
    const fresh = await TaskState.open({ dir: target, taskId: 'task-2', stores: [kv] });
    try {
      const repair = new Map<string, Set<string>>();
      await restoreFromChangelog({ kafka, admin, state: fresh, applicationId: 'kcut', stores: ['kv', '_positions'], partition: 2, groupId: 'kcut', logger: silent, repair });
      // Restored value is the one the positions belong to: input offset 10 is processed again, once.
      assert.equal((await fresh.get('kv', 'basket')) as string, 'one unit');
      assert.equal(await fresh.get('kv', 'other'), undefined);
      assert.equal(fresh.position('shop.basket.v1', 2), '10');
      assert.deepEqual([...(repair.get('kv') ?? [])].sort(), ['basket', 'other']);
      // The rewrite supersedes the cut-short records with the next commit.
      assert.equal(await fresh.rewrite(repair, false), 2);
    } finally {
      await fresh.close();
    }
  }));

test('a changelog written in transactions (exactly-once) ends in markers kafkajs does not hand on: the restore reads through them with the batches that carry them, not by waiting out idle fetch rounds', { timeout: 120_000 }, () =>
  withClients(async ({ kafka, producer, admin, source, target }) => {
    const state = await TaskState.open({ dir: source, taskId: 'task-1', stores: [kv], changelog: new KafkaChangelogWriter(producerSend(producer), 'ktxn', 1) });
    state.put('kv', 'basket', 'one unit', 1);
    state.setPosition('shop.basket.v1', 1, '5');
    await state.commit();
    await state.close();
    // What a transaction's end leaves on every partition it wrote (appended raw: the mock runs no transactions).
    await appendTransactionMarker(kafka, 'ktxn-kv-changelog', 1);
    await appendTransactionMarker(kafka, 'ktxn-_positions-changelog', 1);
    const logged: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(line) });
    const fresh = await TaskState.open({ dir: target, taskId: 'task-1', stores: [kv] });
    try {
      // Fetches that find nothing wait 2 s; without reading the markers the restore ends only by the fallback (5
      // idle fetch rounds after data, logged), which this test refuses.
      await restoreFromChangelog({ kafka, admin, state: fresh, applicationId: 'ktxn', stores: ['kv', '_positions'], partition: 1, groupId: 'ktxn', logger, transactional: true, maxWaitTimeInMs: 2000 });
      assert.equal(await fresh.get('kv', 'basket'), 'one unit');
      assert.equal(fresh.position('shop.basket.v1', 1), '5');
      const idle = logged.filter((l) => l.includes('restore of it complete'));
      assert.deepEqual(idle, [], 'the end was found by waiting out idle fetch rounds');
    } finally {
      await fresh.close();
    }
  }));

test('the first commit cut short (an empty state, no marker in the log): nothing is restored, every key is named for rewriting', () =>
  withClients(async ({ kafka, producer, admin, target }) => {
    // A killed first commit: its store request and part of its positions reached the broker, the marker not.
    await producer.send({ topic: 'kfirst-kv-changelog', messages: [{ key: 'basket', value: 'one unit', partition: 0 }] });
    await producer.send({ topic: 'kfirst-_positions-changelog', messages: [{ key: 'shop.basket.v1\u00000', value: '7', partition: 0 }] });
    const fresh = await TaskState.open({ dir: target, taskId: 'task-0', stores: [kv] });
    try {
      const repair = new Map<string, Set<string>>();
      await restoreFromChangelog({ kafka, admin, state: fresh, applicationId: 'kfirst', stores: ['kv', '_positions'], partition: 0, groupId: 'kfirst', logger: silent, repair });
      assert.equal(await fresh.get('kv', 'basket'), undefined, 'the store is as before the first commit: empty');
      assert.equal(fresh.position('shop.basket.v1', 0), undefined, 'the inputs are processed again from the group offset');
      assert.deepEqual([...(repair.get('kv') ?? [])], ['basket']);
      assert.ok(repair.has('_positions'), 'the positions are rewritten too');
    } finally {
      await fresh.close();
    }
  }));

test('every commit marker names every store, also those its commit did not write (a compacted log keeps only the last marker)', () =>
  withClients(async ({ kafka, producer, admin, source, target }) => {
    const stores = [kv, other];
    const state = await TaskState.open({ dir: source, taskId: 'task-3', stores, changelog: new KafkaChangelogWriter(producerSend(producer), 'kmark', 3) });
    state.put('kv', 'a', 'a1', 1);
    state.put('other', 'b', 'b1', 1);
    await state.commit();
    state.put('kv', 'a', 'a2', 2);
    state.setPosition('shop.basket.v1', 3, '2');
    await state.commit();
    await state.close();
    const markers = await collect(kafka, ['kmark-_positions-changelog'], (all) => all.filter((m) => m.message.key?.toString() === COMMIT_MARKER_KEY).length >= 2);
    const last = markers.filter((m) => m.message.key?.toString() === COMMIT_MARKER_KEY).at(-1);
    assert.ok(last);
    assert.deepEqual(Object.keys(json<Record<string, string>>(last.message)).sort(), ['kmark-kv-changelog', 'kmark-other-changelog']);
    assert.equal(json<Record<string, string>>(last.message)['kmark-other-changelog'], '1', 'the end of the store the second commit did not write');
    // A third commit writing `other` is cut short: its record must not be restored.
    await producer.send({ topic: 'kmark-other-changelog', messages: [{ key: 'b', value: 'b2 (cut short)', partition: 3 }] });
    const fresh = await TaskState.open({ dir: target, taskId: 'task-3', stores });
    try {
      const repair = new Map<string, Set<string>>();
      await restoreFromChangelog({ kafka, admin, state: fresh, applicationId: 'kmark', stores: ['kv', 'other'], partition: 3, groupId: 'kmark', logger: silent, repair });
      assert.equal(await fresh.get('kv', 'a'), 'a2');
      assert.equal(await fresh.get('other', 'b'), 'b1');
      assert.equal(fresh.position('shop.basket.v1', 3), '2');
      assert.deepEqual([...(repair.get('other') ?? [])], ['b']);
    } finally {
      await fresh.close();
    }
  }));

/** A changelog partition as the broker serves it: records and markers by offset, and its end offset. */
interface ScriptedLog {
  readonly entries: { offset: bigint; key: Buffer | null; value: Buffer | null; control: boolean }[];
  end: bigint;
}

/** kafkajs 2.2.4's Batch: what a consumer makes of one partition's part of a fetch response. */
type KafkajsBatch = FetchedBatch & { readonly messages: readonly unknown[]; isEmptyDueToFiltering(): boolean; firstOffset(): string | null };
const KafkajsBatch = createRequire(import.meta.url)('kafkajs/src/consumer/batch.js') as new (
  topic: string,
  fetchedOffset: string,
  data: { partition: number; highWatermark: string; messages: readonly object[]; abortedTransactions: readonly object[] },
) => KafkajsBatch;

/**
 * A Kafka whose consumers fetch partition `p` of `logs` in a loop as kafkajs 2.2.4's runner does (its own Batch per
 * response; the FETCH event with the batches; a batch of markers alone resolved with END_BATCH_PROCESS; an empty
 * one fetched again at the same offset; records to eachBatch): what a real broker serves after its log cleaner
 * emptied an aborted transaction's batch, which librdkafka's mock cluster refuses to store.
 */
function scriptedKafka(logs: Map<string, ScriptedLog>, p: number, fetchedAt: string[]): { kafka: Kafka; admin: Admin } {
  const events = { FETCH: 'consumer.fetch', END_BATCH_PROCESS: 'consumer.end_batch_process', GROUP_JOIN: 'consumer.group_join', CRASH: 'consumer.crash' };
  const consumer = () => {
    const on = new EventEmitter();
    const position = new Map<string, bigint>();
    let running = false;
    return {
      events,
      on: (event: string, listener: (e: { payload: unknown }) => void) => on.on(event, listener),
      connect: async () => undefined,
      subscribe: async ({ topics }: { topics: string[] }) => void topics.forEach((t) => position.set(t, 0n)),
      seek: ({ topic, offset }: { topic: string; offset: string }) => void position.set(topic, BigInt(offset)),
      pause: () => undefined,
      disconnect: async () => void (running = false),
      run: async ({ eachBatch }: { eachBatch: (a: { batch: KafkajsBatch }) => Promise<void> }) => {
        running = true;
        void (async () => {
          await delay(1);
          on.emit(events.GROUP_JOIN, { payload: {} });
          while (running) {
            const batches = [...position].map(([topic, at]) => {
              const log = logs.get(topic) as ScriptedLog;
              const messages = log.entries
                .filter((e) => e.offset >= at)
                .map((e) => ({ offset: e.offset.toString(), key: e.key, value: e.value, timestamp: '0', headers: {}, isControlRecord: e.control, batchContext: { producerId: '7', inTransaction: true } }));
              fetchedAt.push(`${topic}@${at}`);
              return new KafkajsBatch(topic, at.toString(), { partition: p, highWatermark: log.end.toString(), messages, abortedTransactions: [] });
            });
            on.emit(events.FETCH, { payload: { nodeId: 0, duration: 0, batches } });
            for (const b of batches) {
              if (b.isEmptyDueToFiltering()) {
                position.set(b.topic, BigInt(b.lastOffset()) + 1n);
                on.emit(events.END_BATCH_PROCESS, { payload: { topic: b.topic, partition: p, batchSize: 0, firstOffset: b.firstOffset(), lastOffset: b.lastOffset() } });
              } else if (!b.isEmpty()) {
                await eachBatch({ batch: b });
                position.set(b.topic, BigInt(b.lastOffset()) + 1n);
              }
            }
            await delay(2);
          }
        })();
      },
    };
  };
  const admin = {
    fetchTopicOffsets: async (topic: string) => {
      const end = logs.get(topic)?.end.toString() ?? '0';
      return [{ partition: p, offset: end, high: end, low: '0' }];
    },
  };
  return { kafka: { consumer } as unknown as Kafka, admin: admin as unknown as Admin };
}

test('a restore reads past batches the log cleaner emptied (an aborted transaction kept for its producer, no record), with a marker after them or none (kafkajs Batch on a scripted fetch loop: the mock cluster refuses empty batches)', async () => {
  const p = 2;
  const logs = new Map<string, ScriptedLog>();
  const log = (topic: string): ScriptedLog => logs.get(topic) ?? (logs.set(topic, { entries: [], end: 0n }).get(topic) as ScriptedLog);
  const marker = (topic: string): void => {
    const l = log(topic);
    l.entries.push({ offset: l.end, key: Buffer.from([0, 0, 0, 1]), value: Buffer.alloc(6), control: true });
    l.end += 1n;
  };
  // A committed transaction per commit: its records, then a commit marker on every partition it wrote.
  const send: ChangelogSend = async (topicMessages) => {
    const next = new Map<string, string>();
    for (const { topic, messages } of topicMessages) {
      const l = log(topic);
      for (const m of messages) {
        l.entries.push({ offset: l.end, key: Buffer.from(m.key as Buffer | string), value: m.value === null || m.value === undefined ? null : Buffer.from(m.value as Buffer | string), control: false });
        l.end += 1n;
      }
      next.set(`${topic}\u0000${p}`, l.end.toString());
      marker(topic);
    }
    return next;
  };
  const source = tempDir();
  const target = tempDir();
  try {
    const state = await TaskState.open({ dir: source.dir, taskId: 'task-2', stores: [kv, other], changelog: new KafkaChangelogWriter(send, 'kclean', p) });
    state.put('kv', 'basket', 'two units', 1);
    state.put('other', 'wish', 'a jacket', 1);
    state.setPosition('shop.basket.v1', p, '9');
    await state.commit();
    await state.close();
    // Then a later owner's transaction, aborted, emptied by the cleaner: on `kv` with its abort marker after it,
    // on `other` without (the cleaner removed the marker too), on the positions after a marker only.
    const kvLog = log('kclean-kv-changelog');
    kvLog.end += 43n;
    kvLog.entries.push({ offset: kvLog.end, key: Buffer.from([0, 0, 0, 0]), value: Buffer.alloc(6), control: true });
    kvLog.end += 1n;
    log('kclean-other-changelog').end += 43n;
    log('kclean-_positions-changelog').end += 12n;
    const fetchedAt: string[] = [];
    const { kafka, admin } = scriptedKafka(logs, p, fetchedAt);
    const logged: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(line) });
    const fresh = await TaskState.open({ dir: target.dir, taskId: 'task-2', stores: [kv, other] });
    try {
      const restored = await Promise.race([
        restoreFromChangelog({ kafka, admin, state: fresh, applicationId: 'kclean', stores: ['kv', 'other', '_positions'], partition: p, groupId: 'kclean', logger, transactional: true }),
        delay(20_000).then(() => assert.fail(`the restore did not end; fetched at ${[...new Set(fetchedAt)].join(', ')}`)),
      ]);
      assert.ok(restored >= 2, `restored ${restored}`);
      assert.equal(await fresh.get('kv', 'basket'), 'two units');
      assert.equal(await fresh.get('other', 'wish'), 'a jacket');
      assert.equal(fresh.position('shop.basket.v1', p), '9');
      const emptied = logged.filter((l) => l.includes('batches emptied by the log cleaner'));
      assert.equal(emptied.length, 2, `the logs without a marker after their emptied batch, each once: ${emptied.join('')}`);
      assert.ok(emptied.some((l) => l.includes('kclean-other-changelog')) && emptied.some((l) => l.includes('kclean-_positions-changelog')), emptied.join(''));
    } finally {
      await fresh.close();
    }
  } finally {
    source.remove();
    target.remove();
  }
});
