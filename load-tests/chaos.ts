/**
 * Chaos benchmark (issue 8, point 4): three `kairos start` instances (child processes, one consumer group) on
 * librdkafka's mock cluster run basket abandonment (the other topologies off, guards off, inactivityGap --gap,
 * default 5s) while a producer sends --rate (default 50) fresh customers a second, each adding one item — so every
 * customer must get exactly one BASKET_ABANDONED. Every --kill-every seconds (default 20) one instance (round
 * robin) is killed with SIGKILL and started again at once: on the same state directory, or every --wipe-every-th
 * kill (default 3) on a wiped one, which forces a restore of its tasks from the changelog. After --minutes
 * (default 3) the producer stops, the bench waits until every customer has a trigger or nothing new arrived for
 * --quiet-sec (default 30), and reports:
 *   expected (customers sent), delivered (distinct customers with a trigger), lost (must be 0: exit code 1
 *   otherwise), duplicates (trigger records beyond one per customer; allowed under at-least-once; "different
 *   triggerId" counts the ones that are not redeliveries of the same trigger), kills, restarts with wiped
 *   state, group joins seen (the runner's "assignment" log line, one per member and rebalance), restores from
 *   the changelog, and what the broker trimmed (the mock keeps 5 MiB per partition).
 * crm.triggers.v1 is read from its beginning WHILE it is written (the mock broker trims partitions beyond 5 MiB).
 *
 *   npx tsx load-tests/chaos.ts [--minutes 3] [--kill-every 20] [--wipe-every 3] [--rate 50] [--gap 5s]
 *                               [--session-timeout-ms 6000] [--quiet-sec 30] [--drain-timeout-sec 180]
 *
 * KAIROS_BENCH_CHILD_LOGS=<dir>: every child's whole output is written there. Progress on stderr; a table and one
 * JSON line ({"bench":"chaos",…}) on stdout.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Partitioners, type Kafka } from 'kafkajs';
import pino from 'pino';
import type { BasketEvent, Trigger } from '../schemas/contract.js';
import { toMs } from '../src/config/duration.js';
import { createKafka } from '../src/kafka/client.js';
import { startMockCluster, type MockCluster } from '../src/kafka/mock-cluster.js';
import { fmtInt, isUsageError, median, parseCount, table, UsageError } from './lib/common.js';
import { startKairos } from './lib/child.js';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const APP = 'chaos';
const TRIGGERS = 'crm.triggers.v1';
const BASKET = 'shop.basket.v1';
const log = (msg: string): void => void process.stderr.write(`bench:chaos ${new Date().toISOString().slice(11, 23)} ${msg}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Options {
  minutes: number;
  killEvery: number;
  wipeEvery: number;
  rate: number;
  gap: string;
  sessionTimeoutMs: number;
  quietSec: number;
  drainTimeoutSec: number;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      minutes: { type: 'string' },
      'kill-every': { type: 'string' },
      'wipe-every': { type: 'string' },
      rate: { type: 'string' },
      gap: { type: 'string' },
      'session-timeout-ms': { type: 'string' },
      'quiet-sec': { type: 'string' },
      'drain-timeout-sec': { type: 'string' },
    },
    strict: true,
  });
  const minutes = Number(values.minutes ?? '3');
  if (!(minutes > 0)) throw new UsageError('--minutes must be > 0');
  const gap = values.gap ?? '5s';
  try {
    toMs(gap);
  } catch {
    throw new UsageError(`--gap must be a duration such as 5s, got "${gap}"`);
  }
  return {
    minutes,
    killEvery: parseCount('kill-every', values['kill-every'], 20),
    wipeEvery: parseCount('wipe-every', values['wipe-every'], 3),
    rate: parseCount('rate', values.rate, 50),
    gap,
    sessionTimeoutMs: parseCount('session-timeout-ms', values['session-timeout-ms'], 6000),
    quietSec: parseCount('quiet-sec', values['quiet-sec'], 30),
    drainTimeoutSec: parseCount('drain-timeout-sec', values['drain-timeout-sec'], 180),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Instances

interface Counts {
  joins: number;
  restores: number;
  restoredRecords: number;
  errors: number;
  kafkajsRebalanceErrors: number;
}

interface Slot {
  readonly index: number;
  readonly stateDir: string;
  child: ChildProcess | undefined;
  exited: Promise<number | null> | undefined;
  readonly counts: Counts;
  tail: string;
  starts: number;
}

async function spawnInstance(slot: Slot, env: Record<string, string>, logDir: string | undefined, readyTimeoutMs = 90_000): Promise<void> {
  slot.starts++;
  await startKairos({
    label: `instance-${slot.index}#${slot.starts}`,
    env: { ...env, KAIROS_STATE_DIR: slot.stateDir },
    readyTimeoutMs,
    logDir,
    onSpawn: (child) => {
      slot.child = child;
      slot.exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    },
    onOutput: (s) => {
      slot.tail = (slot.tail + s).slice(-20_000);
    },
    onLine: (line) => {
      if (line.includes('"msg":"assignment"')) slot.counts.joins++;
      else if (line.includes('"msg":"restoring task state from changelog"')) {
        slot.counts.restores++;
        const m = /"records":"(\d+)"/.exec(line);
        if (m) slot.counts.restoredRecords += Number(m[1]);
      }
      if (line.startsWith('{"level":50') || line.startsWith('{"level":60')) {
        // kafkajs logs the broker's answers during a rebalance (heartbeat / offset commit refused) as errors.
        if (line.includes('"component":"kafkajs"') && /rebalancing|generation id is not valid/.test(line)) slot.counts.kafkajsRebalanceErrors++;
        else slot.counts.errors++;
      }
    },
  });
}

async function kill(slot: Slot, signal: NodeJS.Signals): Promise<void> {
  const c = slot.child;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  c.kill(signal);
  const r = await Promise.race([slot.exited, sleep(25_000).then(() => 'timeout' as const)]);
  if (r === 'timeout') {
    log(`instance-${slot.index} did not stop on ${signal}; SIGKILL`);
    c.kill('SIGKILL');
    await slot.exited;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The trigger reader (from the beginning, while the instances write), as startReader in kafka-throughput.ts.

interface Reader {
  readonly triggers: Trigger[];
  lastAt: number;
  stop(): Promise<void>;
}

async function startReader(kafka: Kafka): Promise<Reader> {
  const consumer = kafka.consumer({ groupId: `chaos-read-${randomUUID()}`, maxWaitTimeInMs: 100, maxBytesPerPartition: 64 << 20, maxBytes: 128 << 20 });
  await consumer.connect();
  await consumer.subscribe({ topics: [TRIGGERS], fromBeginning: true });
  const next = new Map<number, number>();
  const r: Reader = { triggers: [], lastAt: Date.now(), stop: () => consumer.disconnect() };
  await consumer.run({
    eachBatch: ({ batch }) => {
      for (const m of batch.messages) {
        if (Number(m.offset) < (next.get(batch.partition) ?? 0)) continue; // re-delivered to this reader after a rebalance
        next.set(batch.partition, Number(m.offset) + 1);
        if (m.value) {
          r.triggers.push(JSON.parse(m.value.toString('utf8')) as Trigger);
          r.lastAt = Date.now();
        }
      }
      return Promise.resolve();
    },
  });
  return r;
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const o = options(process.argv.slice(2));
  const root = mkdtempSync(join(tmpdir(), 'kairos-bench-chaos-'));
  const logDir = process.env.KAIROS_BENCH_CHILD_LOGS;
  if (logDir !== undefined) mkdirSync(logDir, { recursive: true });
  const slots: Slot[] = [0, 1, 2].map((index) => ({
    index,
    stateDir: join(root, `instance-${index}`),
    child: undefined,
    exited: undefined,
    counts: { joins: 0, restores: 0, restoredRecords: 0, errors: 0, kafkajsRebalanceErrors: 0 },
    tail: '',
    starts: 0,
  }));
  let cluster: MockCluster | undefined;
  const killAll = (): void => {
    for (const s of slots) if (s.child && s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  };
  process.once('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      killAll();
      if (cluster) process.kill(cluster.pid, 'SIGKILL');
      rmSync(root, { recursive: true, force: true });
      process.exit(130);
    });
  }
  try {
    log('starting the mock cluster (kcat)');
    cluster = await startMockCluster();
    const brokers = cluster.brokers;
    const campaignsFile = join(root, 'campaigns.json');
    writeFileSync(
      campaignsFile,
      JSON.stringify({
        guards: { enabled: false },
        campaigns: {
          'basket-abandonment': { params: { inactivityGap: o.gap } },
          'browse-abandonment': { enabled: false },
          'basket-price-drop': { enabled: false },
          'wishlist-restock': { enabled: false },
        },
      }),
    );
    const env: Record<string, string> = {
      KAFKA_BROKERS: brokers.join(','),
      KAFKA_IDEMPOTENT: 'false',
      KAFKA_MAX_WAIT_MS: '100',
      KAFKA_SESSION_TIMEOUT_MS: String(o.sessionTimeoutMs),
      KAFKA_HEARTBEAT_MS: '500',
      KAIROS_APPLICATION_ID: APP,
      KAIROS_CAMPAIGNS: campaignsFile,
      KAIROS_HTTP_PORT: '0',
      KAIROS_PUNCTUATE_MS: '200',
      KAIROS_IDLE_ADVANCE_MS: '500',
      KAIROS_LOG_LEVEL: 'info',
    };
    const logger = pino({ level: process.env.KAIROS_BENCH_LOG ?? 'error' }, pino.destination(2));
    const kafka = createKafka({ brokers, clientId: 'chaos-bench', logger });
    const producer = kafka.producer({ allowAutoTopicCreation: true, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    // Create the input topic before the instances subscribe (the mock auto-creates on produce/metadata).
    await producer.send({ topic: BASKET, messages: [] }).catch(() => undefined);
    const reader = await startReader(kafka);
    log('starting 3 instances');
    await Promise.all(slots.map((s) => spawnInstance(s, env, logDir)));
    log('3 instances ready; load and kills start');

    const sent: string[] = [];
    const sendErrors: string[] = [];
    let producing = true;
    const t0 = Date.now();
    const runMs = o.minutes * 60_000;
    const producerLoop = (async () => {
      const tick = 100;
      let seq = 0;
      for (let k = 0; producing; k++) {
        const due = t0 + k * tick;
        const wait = due - Date.now();
        if (wait > 0) await sleep(wait);
        if (Date.now() - t0 >= runMs) break;
        const n = Math.floor(((k + 1) * o.rate * tick) / 1000) - Math.floor((k * o.rate * tick) / 1000);
        if (n === 0) continue;
        const now = Date.now();
        const batch: BasketEvent[] = [];
        for (let i = 0; i < n; i++) {
          const c = `chaos-${String(seq++).padStart(7, '0')}`;
          batch.push({ eventId: `e-${c}`, customerId: c, occurredAt: now, type: 'ITEM_ADDED', sku: `sku-${seq % 97}`, quantity: 1 });
        }
        for (let attempt = 0; ; attempt++) {
          try {
            await producer.send({ topic: BASKET, acks: -1, messages: batch.map((e) => ({ key: e.customerId, value: JSON.stringify(e) })) });
            for (const e of batch) sent.push(e.customerId);
            break;
          } catch (err) {
            if (attempt >= 5) {
              sendErrors.push((err as Error).message);
              break;
            }
            await sleep(200);
          }
        }
      }
    })();

    let kills = 0;
    let wipes = 0;
    const restartMs: number[] = [];
    const events: string[][] = [];
    while (Date.now() - t0 + o.killEvery * 1000 <= runMs) {
      await sleep(t0 + (kills + 1) * o.killEvery * 1000 - Date.now());
      const slot = slots[kills % 3] as Slot;
      const wipe = (kills + 1) % o.wipeEvery === 0;
      kills++;
      await kill(slot, 'SIGKILL');
      if (wipe) {
        rmSync(slot.stateDir, { recursive: true, force: true });
        wipes++;
      }
      const tr = Date.now();
      log(`kill ${kills}: SIGKILL instance-${slot.index}${wipe ? ', state dir wiped' : ''}; restarting (${fmtInt(sent.length)} customers sent, ${fmtInt(reader.triggers.length)} triggers read)`);
      try {
        await spawnInstance(slot, env, logDir);
      } catch (err) {
        log(`restart of instance-${slot.index} failed: ${(err as Error).message.slice(0, 500)}; retrying once`);
        await spawnInstance(slot, env, logDir);
      }
      restartMs.push(Date.now() - tr);
      events.push([String(kills), `${((tr - t0) / 1000).toFixed(0)} s`, `instance-${slot.index}`, wipe ? 'wiped' : 'kept', `${((Date.now() - tr) / 1000).toFixed(1)} s`]);
    }
    await producerLoop;
    producing = false;
    const producedMs = Date.now() - t0;
    log(`load done: ${fmtInt(sent.length)} customers in ${(producedMs / 1000).toFixed(0)} s, ${kills} kills (${wipes} wiped); waiting for the triggers`);

    // Wait for quiet: every customer has a trigger, or nothing new for --quiet-sec (after at least the gap).
    const expected = new Set(sent);
    const delivered = new Set<string>();
    const deadline = Date.now() + o.drainTimeoutSec * 1000;
    let seenUpTo = 0;
    for (;;) {
      for (; seenUpTo < reader.triggers.length; seenUpTo++) {
        const t = reader.triggers[seenUpTo] as Trigger;
        if (t.type === 'BASKET_ABANDONED' && expected.has(t.customerId)) delivered.add(t.customerId);
      }
      if (delivered.size >= expected.size) break;
      if (Date.now() - reader.lastAt > o.quietSec * 1000 && Date.now() - t0 - producedMs > toMs(o.gap) + 5000) break;
      if (Date.now() > deadline) break;
      await sleep(500);
    }
    const drainMs = Date.now() - t0 - producedMs;
    // Let late duplicates (redeliveries) arrive too, briefly.
    await sleep(2000);

    const byCustomer = new Map<string, Set<string>>();
    let records = 0;
    for (const t of reader.triggers) {
      if (t.type !== 'BASKET_ABANDONED' || !expected.has(t.customerId)) continue;
      records++;
      let ids = byCustomer.get(t.customerId);
      if (!ids) byCustomer.set(t.customerId, (ids = new Set()));
      ids.add(t.triggerId);
    }
    const lost = sent.filter((c) => !byCustomer.has(c));
    const duplicates = records - byCustomer.size;
    const differentIds = [...byCustomer.values()].reduce((a, ids) => a + ids.size - 1, 0);
    const admin = kafka.admin();
    await admin.connect();
    const trimmed: Record<string, number> = {};
    for (const t of (await admin.listTopics()).filter((x) => !x.startsWith('__'))) {
      const n = (await admin.fetchTopicOffsets(t)).reduce((a, p) => a + Number(p.low), 0);
      if (n > 0) trimmed[t] = n;
    }
    await admin.disconnect();
    await reader.stop();
    await producer.disconnect();
    for (const s of slots) await kill(s, 'SIGTERM');
    const counts = slots.reduce<Counts>(
      (a, s) => ({
        joins: a.joins + s.counts.joins,
        restores: a.restores + s.counts.restores,
        restoredRecords: a.restoredRecords + s.counts.restoredRecords,
        errors: a.errors + s.counts.errors,
        kafkajsRebalanceErrors: a.kafkajsRebalanceErrors + s.counts.kafkajsRebalanceErrors,
      }),
      { joins: 0, restores: 0, restoredRecords: 0, errors: 0, kafkajsRebalanceErrors: 0 },
    );

    const p = (s: string): void => void process.stdout.write(`${s}\n`);
    p('');
    p(`== Kairos chaos: 3 instances, SIGKILL + restart one every ${o.killEvery} s for ${o.minutes} min at ${o.rate} customers/s (basket abandonment, gap ${o.gap}, session timeout ${o.sessionTimeoutMs} ms) ==`);
    p(table(['kill', 'at', 'instance', 'state', 'restart → ready'], events));
    p('');
    p(
      table(
        ['figure', 'value'],
        [
          ['expected (customers sent)', fmtInt(sent.length)],
          ['delivered (customers with a trigger)', fmtInt(byCustomer.size)],
          ['lost', fmtInt(lost.length)],
          ['duplicates (trigger records beyond one per customer)', `${fmtInt(duplicates)} (${differentIds} with a different triggerId)`],
          ['kills / restarts with wiped state', `${kills} / ${wipes}`],
          ['group joins seen (assignment logs, all members)', fmtInt(counts.joins)],
          ['task restores from the changelog (records)', `${fmtInt(counts.restores)} (${fmtInt(counts.restoredRecords)})`],
          ['error log lines (+ kafkajs rebalance answers logged as errors)', `${fmtInt(counts.errors)} (+ ${fmtInt(counts.kafkajsRebalanceErrors)})`],
          ['restart → ready, median / max', restartMs.length ? `${(median(restartMs) / 1000).toFixed(1)} s / ${(Math.max(...restartMs) / 1000).toFixed(1)} s` : '-'],
          ['drain after the load (until all delivered or quiet)', `${(drainMs / 1000).toFixed(1)} s`],
          ['broker trimmed (records)', Object.keys(trimmed).length ? JSON.stringify(trimmed) : 'none'],
          ['producer send failures', fmtInt(sendErrors.length)],
        ],
      ),
    );
    if (lost.length > 0) p(`lost customers (first 20): ${lost.slice(0, 20).join(' ')}`);
    p('');
    p(
      JSON.stringify({
        bench: 'chaos',
        minutes: o.minutes,
        killEverySec: o.killEvery,
        rate: o.rate,
        gap: o.gap,
        sessionTimeoutMs: o.sessionTimeoutMs,
        expected: sent.length,
        delivered: byCustomer.size,
        lost: lost.length,
        duplicates,
        duplicatesWithDifferentTriggerId: differentIds,
        kills,
        wipedRestarts: wipes,
        groupJoins: counts.joins,
        restores: counts.restores,
        restoredRecords: counts.restoredRecords,
        errorLogLines: counts.errors,
        kafkajsRebalanceErrorLines: counts.kafkajsRebalanceErrors,
        restartMsMedian: restartMs.length ? median(restartMs) : null,
        restartMsMax: restartMs.length ? Math.max(...restartMs) : null,
        drainMs,
        trimmed,
        sendFailures: sendErrors.length,
      }),
    );
    return lost.length > 0 || sendErrors.length > 0 ? 1 : 0;
  } finally {
    killAll();
    if (cluster) await cluster.stop().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
    setTimeout(() => process.exit(code), 1000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`bench:chaos: ${isUsageError(err) ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`);
    process.exitCode = isUsageError(err) ? 2 : 1;
    setTimeout(() => process.exit(process.exitCode as number), 1000).unref();
  },
);
