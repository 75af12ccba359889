/**
 * Diagnostic behind the "state" rows of the README: what replay() cannot report. Drives a StreamTask over the
 * benchmark stream the way src/replay/replay.ts does (same decode, a commit every 20,000 records, timers fired
 * up to the last event + 24 h) and prints the task state's counters (cache hits and misses = RocksDB reads,
 * puts, deletes) and the time spent in commits. Then times RocksDB point reads on a scratch database: one
 * awaited get per key (what TaskState.get does on a cache miss) against getMany in batches.
 *
 *   npx tsx load-tests/state-probe.ts [--events 1000000] [--customers 100000] [--seed 42] [--cache 50000]
 *
 * Not a replacement for replay-throughput.ts: its loop is a copy of replay()'s, kept only to read counters.
 */
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { buildTopology } from '../src/app/topology.js';
import { resolveCampaigns } from '../src/config/campaigns.js';
import { StreamTask } from '../src/engine/runtime/task.js';
import { RocksDb } from '../src/engine/state/rocksdb.js';
import { decodeEnvelopeLine } from '../src/replay/envelope.js';
import { resolveOptions } from './generate-events.js';
import { fmtInt, fmtSecs, isUsageError, parseCount } from './lib/common.js';
import { ensureEvents } from './lib/events-cache.js';

const log = (msg: string): void => {
  process.stderr.write(`probe: ${msg}\n`);
};

async function probeTask(path: string, until: number, cacheMaxEntries: number | undefined): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kairos-probe-'));
  let streamTime = -Infinity;
  let triggers = 0;
  const task = await StreamTask.create({
    topology: buildTopology(resolveCampaigns({ guards: { enabled: false } })),
    taskId: 'probe_0',
    partition: 0,
    stateDir: dir,
    logger: pino({ level: 'warn' }, pino.destination(2)),
    clock: () => (Number.isFinite(streamTime) ? streamTime : 0),
    collector: { send: (topic) => void (topic === 'crm.triggers.v1' && triggers++) },
    idleAdvanceMs: Infinity,
    ...(cacheMaxEntries === undefined ? {} : { cacheMaxEntries }),
  });
  const started = performance.now();
  let commitMs = 0;
  let line = 0;
  const commit = async (): Promise<void> => {
    const t = performance.now();
    await task.commit();
    commitMs += performance.now() - t;
  };
  try {
    for await (const text of createInterface({ input: createReadStream(path, { highWaterMark: 1 << 20 }), crlfDelay: Infinity })) {
      line++;
      const d = decodeEnvelopeLine(text, line);
      if (!d.ok) throw new Error(`line ${line} is invalid`);
      const ts = d.record.timestamp ?? 0;
      streamTime = Math.max(streamTime, ts);
      await task.process({ topic: d.record.topic, partition: 0, offset: String(line - 1), key: d.record.key, value: d.record.value, timestamp: ts });
      if (line % 20_000 === 0) await commit();
    }
    streamTime = until;
    await task.advanceStreamTime(until);
    await commit();
    const s = task.state.stats;
    const total = performance.now() - started;
    process.stdout.write(
      [
        `task over ${fmtInt(line)} events: ${fmtSecs(total)}, of which ${fmtSecs(commitMs)} in ${s.commits} commits (${((100 * commitMs) / total).toFixed(0)}%); ${fmtInt(triggers)} triggers`,
        `  state: ${fmtInt(s.cacheHits)} cache hits, ${fmtInt(s.cacheMisses)} misses (each one awaited RocksDB get), ${fmtInt(s.puts)} puts, ${fmtInt(s.deletes)} deletes, ${s.expired} expired` +
          `; cache limit ${fmtInt(cacheMaxEntries ?? 50_000)} entries per store`,
      ].join('\n') + '\n',
    );
  } finally {
    await task.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function probeRocks(n: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kairos-probe-rocks-'));
  const db = await RocksDb.open(dir);
  const key = (i: number): Buffer => Buffer.from(`basket-abandonment.baskets\u0000C${String(i).padStart(6, '0')}`);
  const time = async (fn: () => Promise<void>): Promise<number> => {
    const t = performance.now();
    await fn();
    return performance.now() - t;
  };
  try {
    const missEmpty = await time(async () => {
      for (let i = 0; i < n; i++) await db.get(key(i));
    });
    // ~300-byte values, like a one- or two-item basket with its JSON codec.
    for (let i = 0; i < n; i += 10_000) {
      await db.batch(Array.from({ length: Math.min(10_000, n - i) }, (_, k) => ({ type: 'put' as const, key: key(i + k), value: Buffer.alloc(300, 0x61) })));
    }
    const hit = await time(async () => {
      for (let i = 0; i < n; i++) await db.get(key(i));
    });
    const missFull = await time(async () => {
      for (let i = n; i < 2 * n; i++) await db.get(key(i));
    });
    const many = await time(async () => {
      for (let i = 0; i < n; i += 500) await db.getMany(Array.from({ length: Math.min(500, n - i) }, (_, k) => key(i + k)));
    });
    const us = (ms: number): string => `${((1000 * ms) / n).toFixed(1)} µs/key`;
    process.stdout.write(
      `RocksDB point reads, ${fmtInt(n)} keys, one awaited call each: miss on an empty db ${us(missEmpty)}, hit ${us(hit)}, miss on a filled db ${us(missFull)}; ` +
        `getMany in batches of 500: ${us(many)}\n`,
    );
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: { events: { type: 'string' }, customers: { type: 'string' }, seed: { type: 'string' }, cache: { type: 'string' } },
    strict: true,
  });
  const opts = resolveOptions({
    events: parseCount('events', values.events, 1_000_000),
    customers: parseCount('customers', values.customers, 100_000),
    seed: parseCount('seed', values.seed, 42),
  });
  const input = await ensureEvents(opts, false, log);
  const cache = values.cache === undefined ? undefined : parseCount('cache', values.cache, 50_000);
  await probeTask(input.path, input.stats.lastEventAt + 24 * 3_600_000, cache);
  await probeRocks(50_000);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`probe: ${isUsageError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = isUsageError(err) ? 2 : 1;
});
