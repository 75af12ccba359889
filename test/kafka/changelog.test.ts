import { after, before, test } from 'node:test';
import type { Admin, Kafka, Producer } from 'kafkajs';
import assert from 'node:assert/strict';
import { stringCodec } from '../../src/engine/api/codecs.js';
import { keyValueStore } from '../../src/engine/api/stores.js';
import { TaskState } from '../../src/engine/state/task-state.js';
import { COMMIT_MARKER_KEY, KafkaChangelogWriter, producerSend, restoreFromChangelog } from '../../src/kafka/changelog.js';
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
