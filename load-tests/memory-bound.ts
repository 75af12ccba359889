/**
 * Memory with more state than memory (issue 16: "a benchmark with 10M customers of state on disk shows bounded
 * RSS"). Two phases:
 *
 *  1. --customers baskets (the basket-abandonment store's value shape, ~330 bytes of JSON each) are written
 *     straight into a task's RocksDB in TaskState's layout (key `<store>\0<customerId>`, value = 8-byte stream
 *     time + JSON), in large write batches: the fastest way to put 10M customers on disk.
 *  2. A TaskState is opened on that database with the cache budget under test (`--budget-mib`, the engine's
 *     default 128) and driven like a busy task: customers drawn uniformly at random (nearly every read a miss, the
 *     worst case for a cache), read, half of them written back changed, a commit every --commit-every
 *     operations, for --ops operations. RSS and heap are sampled every 200 ms.
 *
 * The figure is the peak RSS of phase 2 against the RSS before it: with the budget, the cache stops at it and
 * RSS stays flat however many customers the database holds. Nothing asserts on time; exit code 1 if a value read
 * back is not the one written.
 *
 *   npx tsx load-tests/memory-bound.ts [--customers 10000000] [--ops 1000000] [--budget-mib 128]
 *                                      [--commit-every 5000] [--keep-dir DIR]
 *
 * Progress on stderr; a summary and one JSON line ({"bench":"memory-bound",…}) on stdout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { StoreSpec } from '../src/engine/api/stores.js';
import { RocksDb, type BatchOp } from '../src/engine/state/rocksdb.js';
import { TaskState } from '../src/engine/state/task-state.js';
import { basketsStore } from '../topologies/basket-abandonment/index.js';
import { mulberry32 } from '../src/util/prng.js';
import { diskUsage, fmtBytes, fmtInt, isUsageError, MemorySampler, parseCount } from './lib/common.js';

const MiB = 1024 * 1024;
const T0 = Date.parse('2024-11-04T00:00:00Z');
const log = (msg: string): void => void process.stderr.write(`bench:memory ${new Date().toISOString().slice(11, 23)} ${msg}\n`);

interface Options {
  customers: number;
  ops: number;
  budgetMiB: number;
  commitEvery: number;
  keepDir: string | undefined;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      customers: { type: 'string' },
      ops: { type: 'string' },
      'budget-mib': { type: 'string' },
      'commit-every': { type: 'string' },
      'keep-dir': { type: 'string' },
    },
    strict: true,
  });
  return {
    customers: parseCount('customers', values.customers, 10_000_000),
    ops: parseCount('ops', values.ops, 1_000_000),
    budgetMiB: parseCount('budget-mib', values['budget-mib'], 128),
    commitEvery: parseCount('commit-every', values['commit-every'], 5_000),
    keepDir: values['keep-dir'],
  };
}

const customerId = (i: number): string => `cust-${String(i).padStart(8, '0')}`;

/** A basket as basket-abandonment keeps it (two lines, last activity, last event, last trigger). */
function basket(i: number, at: number): object {
  const sku1 = `sku-${(i * 7919) % 20000}`;
  const sku2 = `sku-${(i * 104729) % 20000}`;
  return {
    items: [
      { sku: sku1, productId: `p-${sku1}`, quantity: 1, unitPrice: { amount: 3499, currency: 'EUR' }, addedAt: at - 120_000 },
      { sku: sku2, productId: `p-${sku2}`, quantity: 2, unitPrice: { amount: 1299, currency: 'EUR' }, addedAt: at },
    ],
    lastActivityAt: at,
    lastActivityType: 'ITEM_ADDED',
    lastEvent: { eventId: `evt-${i}-2`, topic: 'shop.basket.v1', partition: i % 4, offset: String(i * 3 + 2) },
  };
}

async function fill(dir: string, o: Options): Promise<number> {
  const db = await RocksDb.open(dir, { writeBufferSize: 64 * MiB });
  const prefix = `${basketsStore.name}\u0000`;
  const t0 = performance.now();
  let bytes = 0;
  try {
    const batch = 20_000;
    for (let start = 0; start < o.customers; start += batch) {
      const ops: BatchOp[] = [];
      for (let i = start; i < Math.min(o.customers, start + batch); i++) {
        const at = T0 - (i % 3600) * 1000;
        const body = JSON.stringify(basket(i, at));
        const value = Buffer.allocUnsafe(8 + Buffer.byteLength(body));
        value.writeDoubleBE(at, 0);
        value.write(body, 8);
        bytes += value.length;
        ops.push({ type: 'put', key: Buffer.from(prefix + customerId(i)), value });
      }
      await db.batch(ops);
      if ((start / batch) % 50 === 0) log(`  ${fmtInt(start + ops.length)} customers written (${fmtBytes(bytes)})`);
    }
  } finally {
    await db.close();
  }
  log(`phase 1: ${fmtInt(o.customers)} customers, ${fmtBytes(bytes)} of values, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return bytes;
}

interface Drive {
  readonly ms: number;
  readonly rssBefore: number;
  readonly peakRss: number;
  readonly peakHeapUsed: number;
  readonly maxCacheBytes: number;
  readonly evicted: number;
  readonly misses: number;
  readonly hits: number;
  readonly commits: number;
  readonly wrong: number;
}

async function drive(dir: string, o: Options): Promise<Drive> {
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const state = await TaskState.open({ dir, taskId: 'mem_0', stores: [basketsStore] as StoreSpec<unknown>[], cacheMaxBytes: o.budgetMiB * MiB });
  const sampler = new MemorySampler(200);
  const rnd = mulberry32(42);
  const written = new Map<number, number>();
  let maxCacheBytes = 0;
  let wrong = 0;
  const t0 = performance.now();
  try {
    state.streamTime = T0;
    for (let n = 1; n <= o.ops; n++) {
      const i = Math.floor(rnd() * o.customers);
      const id = customerId(i);
      const value = (await state.get(basketsStore.name, id)) as { lastActivityAt: number } | undefined;
      // Every customer exists; one in a hundred is checked exactly (a bounded record of what was written, so the
      // check itself does not grow with the workload).
      const tracked = i % 100 === 0;
      if (value === undefined || (tracked && value.lastActivityAt !== (written.get(i) ?? T0 - (i % 3600) * 1000))) wrong++;
      if (n % 2 === 0) {
        const at = T0 + n;
        state.put(basketsStore.name, id, basket(i, at));
        if (tracked) written.set(i, at);
      }
      if (n % o.commitEvery === 0) {
        await state.commit();
        maxCacheBytes = Math.max(maxCacheBytes, state.cacheBytes);
      }
      if (n % 100_000 === 0) {
        log(`  ${fmtInt(n)} operations, cache ~${fmtBytes(state.cacheBytes)}, RSS ${fmtBytes(process.memoryUsage().rss)}, evicted ${fmtInt(state.stats.evicted)}`);
      }
    }
    await state.commit();
  } finally {
    sampler.stop();
    await state.close();
  }
  return {
    ms: performance.now() - t0,
    rssBefore,
    peakRss: sampler.peakRss,
    peakHeapUsed: sampler.peakHeapUsed,
    maxCacheBytes,
    evicted: state.stats.evicted,
    misses: state.stats.cacheMisses,
    hits: state.stats.cacheHits,
    commits: state.stats.commits,
    wrong,
  };
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  const root = o.keepDir ?? mkdtempSync(join(tmpdir(), 'kairos-bench-memory-'));
  const dir = join(root, 'mem_0');
  try {
    log(`phase 1: writing ${fmtInt(o.customers)} customers into ${dir}`);
    const valueBytes = await fill(dir, o);
    const disk = diskUsage(dir);
    log(`phase 2: ${fmtInt(o.ops)} random reads (half written back) through TaskState, cache budget ${o.budgetMiB} MiB`);
    const d = await drive(dir, o);
    const p = (s: string): void => void process.stdout.write(`${s}\n`);
    p('');
    p('== Kairos memory with more state than memory ==');
    p(`state        ${fmtInt(o.customers)} customers (basket-abandonment baskets), ${fmtBytes(valueBytes)} of values, ${fmtBytes(disk.allocatedBytes)} on disk`);
    p(
      `workload     ${fmtInt(o.ops)} uniformly random customers read, half written back, commit every ${fmtInt(o.commitEvery)}: ${(d.ms / 1000).toFixed(1)} s, ` +
        `${fmtInt(o.ops / (d.ms / 1000))} operations/s; cache hits ${fmtInt(d.hits)}, misses ${fmtInt(d.misses)}, evicted ${fmtInt(d.evicted)}, ${fmtInt(d.commits)} commits`,
    );
    p(`cache        budget ${o.budgetMiB} MiB (estimated heap); largest after a commit ~${fmtBytes(d.maxCacheBytes)}`);
    p(`memory       RSS before the task ${fmtBytes(d.rssBefore)}, peak during the workload ${fmtBytes(d.peakRss)} (+${fmtBytes(d.peakRss - d.rssBefore)}); peak heap used ${fmtBytes(d.peakHeapUsed)}`);
    p(`check        ${d.wrong === 0 ? 'every customer read back; the sampled ones (1 in 100) with the value last written' : `${fmtInt(d.wrong)} WRONG values read back`}`);
    p('');
    p(
      JSON.stringify({
        bench: 'memory-bound',
        customers: o.customers,
        ops: o.ops,
        budgetMiB: o.budgetMiB,
        valueBytes,
        diskBytes: disk.allocatedBytes,
        workloadMs: Math.round(d.ms),
        rssBeforeBytes: d.rssBefore,
        peakRssBytes: d.peakRss,
        peakHeapUsedBytes: d.peakHeapUsed,
        maxCacheBytes: d.maxCacheBytes,
        evicted: d.evicted,
        hits: d.hits,
        misses: d.misses,
        wrong: d.wrong,
      }),
    );
    if (d.wrong > 0) process.exitCode = 1;
  } finally {
    if (o.keepDir === undefined) rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:memory: ${isUsageError(err) ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`);
  process.exitCode = isUsageError(err) ? 2 : 1;
});
