/**
 * Main-thread time per operation of a commit's RocksDB write batch: the binding's array form (`batch_do`, which reads
 * `type`, `key` and `value` of every operation as named properties in C++; the baseline) against `RocksDb.batch`
 * (src/engine/state/rocksdb.ts: leveldown's chained batch, one binding call per operation), each on its own
 * database in a temporary directory, alternating, median of --runs. "In the call" is the time until the call
 * returns (the batch is built on the main thread; RocksDB writes it on the thread pool); "until written" includes
 * the write. Keys look like a task's state keys (`store \0 customerId`, strings), values are --value-bytes bytes.
 *
 *   npx tsx load-tests/rocksdb-batch.ts [--ops 1000] [--batches 100] [--value-bytes 300] [--runs 3]
 *
 * Prints one JSON line at the end: {"bench":"rocksdb-batch", …, "ratio": RocksDb.batch ÷ array form, in the call}.
 */
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RocksDb, type BatchOp } from '../src/engine/state/rocksdb.js';
import { median, parseCount } from './lib/common.js';

const { values } = parseArgs({ options: { ops: { type: 'string' }, batches: { type: 'string' }, 'value-bytes': { type: 'string' }, runs: { type: 'string' } } });
const opsPerBatch = parseCount('--ops', values.ops, 1000);
const batches = parseCount('--batches', values.batches, 100);
const valueBytes = parseCount('--value-bytes', values['value-bytes'], 300);
const runs = parseCount('--runs', values.runs, 3);

type Callback = (err: Error | undefined | null) => void;
interface ArrayFormDb {
  open(options: Record<string, unknown>, cb: Callback): void;
  close(cb: Callback): void;
  _batch(ops: readonly BatchOp[], options: { sync?: boolean }, cb: Callback): void;
}
const leveldown = createRequire(import.meta.url)('rocksdb') as (location: string) => ArrayFormDb;

const dir = mkdtempSync(join(tmpdir(), 'kairos-rocksdb-batch-'));
const value = Buffer.alloc(valueBytes, 0x78);
let serial = 0;
/** Fresh keys per batch (a commit writes mostly new versions of other keys), puts with a delete every tenth. */
function nextBatch(): BatchOp[] {
  const ops: BatchOp[] = [];
  for (let i = 0; i < opsPerBatch; i++, serial++) {
    const key = `basket-abandonment.baskets\u0000C${String(serial).padStart(8, '0')}`;
    ops.push(i % 10 === 9 ? { type: 'del', key } : { type: 'put', key, value });
  }
  return ops;
}

interface Timing {
  readonly inCallUs: number;
  readonly writtenUs: number;
}

async function measure(write: (ops: readonly BatchOp[]) => { returned: number; done: Promise<void> }): Promise<Timing> {
  const work = Array.from({ length: batches }, nextBatch);
  let inCall = 0;
  const t0 = performance.now();
  for (const ops of work) {
    const start = performance.now();
    const { returned, done } = write(ops);
    inCall += returned - start;
    await done;
  }
  const n = batches * opsPerBatch;
  return { inCallUs: (inCall * 1000) / n, writtenUs: ((performance.now() - t0) * 1000) / n };
}

async function main(): Promise<void> {
  const raw = leveldown(join(dir, 'array-form'));
  await new Promise<void>((resolve, reject) => raw.open({ createIfMissing: true }, (err) => (err ? reject(err) : resolve())));
  const ours = await RocksDb.open(join(dir, 'kairos'));
  const arrayForm: Timing[] = [];
  const chained: Timing[] = [];
  try {
    for (let r = 0; r < runs; r++) {
      arrayForm.push(
        await measure((ops) => {
          const done = new Promise<void>((resolve, reject) => raw._batch(ops, {}, (err) => (err ? reject(err) : resolve())));
          return { returned: performance.now(), done };
        }),
      );
      chained.push(
        await measure((ops) => {
          const done = ours.batch(ops);
          return { returned: performance.now(), done };
        }),
      );
      const a = arrayForm.at(-1) as Timing;
      const c = chained.at(-1) as Timing;
      process.stderr.write(`run ${r + 1}/${runs}: array form ${a.inCallUs.toFixed(2)} µs in the call (${a.writtenUs.toFixed(2)} until written), RocksDb.batch ${c.inCallUs.toFixed(2)} µs (${c.writtenUs.toFixed(2)}) per operation\n`);
    }
  } finally {
    await ours.close();
    await new Promise<void>((resolve) => raw.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  }
  const a = { inCallUs: median(arrayForm.map((x) => x.inCallUs)), writtenUs: median(arrayForm.map((x) => x.writtenUs)) };
  const c = { inCallUs: median(chained.map((x) => x.inCallUs)), writtenUs: median(chained.map((x) => x.writtenUs)) };
  const ratio = c.inCallUs / a.inCallUs;
  console.log(`write batches of ${opsPerBatch} operations (a tenth deletes), ${valueBytes}-byte values, ${batches} batches per run`);
  console.log(`main-thread time per operation in the call, median of ${runs}: array form ${a.inCallUs.toFixed(2)} µs, RocksDb.batch ${c.inCallUs.toFixed(2)} µs → ${ratio.toFixed(2)} of the array form`);
  console.log(`until written: ${a.writtenUs.toFixed(2)} µs and ${c.writtenUs.toFixed(2)} µs`);
  console.log(JSON.stringify({ bench: 'rocksdb-batch', ops: opsPerBatch, batches, valueBytes, runs, arrayFormUs: +a.inCallUs.toFixed(3), chainedUs: +c.inCallUs.toFixed(3), arrayFormWrittenUs: +a.writtenUs.toFixed(3), chainedWrittenUs: +c.writtenUs.toFixed(3), ratio: +ratio.toFixed(3) }));
}

await main();
