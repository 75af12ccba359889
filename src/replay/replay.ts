/**
 * The replay runner (DESIGN §5): NDJSON envelopes in event-time order → the topology → triggers and audit
 * records out. Event time only: the wall clock is never read, so the same input gives byte-identical output.
 * Bad lines are reported with their line number and written to an error file; nothing is dropped silently.
 */
import { createReadStream, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { OutputRecord } from '../engine/api/record.js';
import type { Topology } from '../engine/api/topology.js';
import { StreamTask } from '../engine/runtime/task.js';
import { KairosError } from '../errors.js';
import { bytesFingerprint } from '../util/crc32c.js';
import { decodeEnvelopeLine, type DecodedRecord, type LineError } from './envelope.js';
import { lineBatches } from './lines.js';
import type { LineSink, NdjsonWriter } from './ndjson-writer.js';

export interface ReplayProgress {
  /** `input` while records are read and processed; `final-commit` while a state dir's final state is written. */
  readonly phase: 'input' | 'final-commit';
  readonly lines: number;
  readonly processed: number;
  readonly errors: number;
  readonly triggers: number;
  readonly streamTime: number;
  readonly elapsedMs: number;
  /** Fraction of the input read, when its size is known. */
  readonly fraction: number | undefined;
  /** The state cache's estimated heap bytes, against its budget (ReplayOptions.cacheMaxBytes). */
  readonly cacheBytes: number;
  readonly cacheMaxBytes: number;
  /** Entries spilled or evicted so far (read back from RocksDB when needed again). */
  readonly cacheEvictions: number;
  /** Entries written since the last commit and not written yet (in `final-commit`: what is left to write). */
  readonly uncommitted: number;
}

export interface ReplayOptions {
  readonly topology: Topology;
  /** A file path (.gz is decompressed) or a readable stream of NDJSON. */
  readonly input: string | Readable;
  readonly triggers: NdjsonWriter;
  readonly audit?: NdjsonWriter;
  /** Receives each bad line as `{line, errors, text}`. */
  readonly errors: LineSink;
  /** Fire pending timers up to this event time after the input ends. */
  readonly until?: number;
  /** RocksDB directory; a temporary one, removed afterwards, by default. */
  readonly stateDir?: string;
  readonly logger: Logger;
  readonly onProgress?: (p: ReplayProgress) => void;
  /** @default 2000 */
  readonly progressEveryMs?: number;
  /**
   * Commit every uncommitted entry every this many records. A replay's commits only bound memory (its local
   * copy is not a durable one, and a replay never resumes): without this, a cache over its memory budget
   * spills its coldest entries (CommitOptions.coldest) and the rest is committed once, at the end (not at all
   * for a temporary state). @default Infinity
   */
  readonly commitEvery?: number;
  /**
   * The state cache's memory budget in bytes (TaskStateOptions.cacheMaxBytes). A replay is one task holding the
   * state of every partition, where `kairos start` splits it over one task per partition of 128 MiB each: a
   * replay's default is that of 8 of them, or an eighth of the machine's (or container's) memory if that is
   * less. Over it the replay spills its coldest entries to RocksDB and reads them back when needed, which for
   * state read at random (customers) costs a read and a decode per miss.
   * @default REPLAY_CACHE_MAX_BYTES
   */
  readonly cacheMaxBytes?: number;
  /** Called for each bad line (the CLI prints the first few). */
  readonly onError?: (e: LineError) => void;
}

export interface ReplayResult {
  readonly lines: number;
  readonly processed: number;
  /** Valid records of topics no topology reads. */
  readonly skipped: number;
  readonly errors: number;
  readonly triggers: number;
  readonly audits: number;
  readonly otherOutputs: number;
  readonly timersFired: number;
  readonly streamTime: number;
  readonly elapsedMs: number;
  /**
   * Bytes on disk of the task's RocksDB after the final commit (`stateDir` given); undefined when the state was
   * a temporary one, which is removed at the end without a final commit.
   */
  readonly stateBytes: number | undefined;
  /**
   * Entries the state's cache evicted to keep its memory budget while the input was processed (read back from
   * RocksDB when needed again).
   */
  readonly cacheEvictions: number;
}

const CHUNK = 512;
/**
 * The final commit of a replay with a state dir writes its entries in pieces of this many bytes of the cache's
 * estimate, or of a quarter of the budget if less.
 */
const FINAL_COMMIT_PIECE = 64 * 1024 * 1024;
/**
 * ReplayOptions.cacheMaxBytes by default: 1 GiB, or an eighth of the memory this process may use if less (the
 * process needs about twice its budget: README, replay).
 */
export const REPLAY_CACHE_MAX_BYTES = Math.min(1024 * 1024 * 1024, Math.floor(memoryLimit() / 8));

/** The machine's memory, or the container's limit when one is set and lower. */
function memoryLimit(): number {
  const constrained = process.constrainedMemory?.() ?? 0;
  return constrained > 0 ? Math.min(constrained, totalmem()) : totalmem();
}

const TRIGGERS = 'crm.triggers.v1';
const AUDIT = 'crm.trigger-audit.v1';

export async function replay(opts: ReplayOptions): Promise<ReplayResult> {
  const started = performance.now();
  const ownsDir = opts.stateDir === undefined;
  if (opts.stateDir !== undefined && existsSync(opts.stateDir) && !statSync(opts.stateDir).isDirectory()) {
    throw new KairosError('KAIROS_ERR_USAGE', `--state-dir ${opts.stateDir} is a file; give a directory (new or empty)`);
  }
  if (opts.stateDir !== undefined && existsSync(opts.stateDir) && readdirSync(opts.stateDir).length > 0) {
    // A replay starts from nothing: state left by an earlier run would make its events look late.
    throw new KairosError('KAIROS_ERR_USAGE', `--state-dir ${opts.stateDir} is not empty; a replay needs an empty (or new) directory`);
  }
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'kairos-replay-'));
  let streamTime = -Infinity;
  let otherOutputs = 0;
  let auditCount = 0;
  const collect = (topic: string, record: OutputRecord): void => {
    if (topic === TRIGGERS) opts.triggers.write(record.value);
    else if (topic === AUDIT) {
      auditCount++;
      opts.audit?.write(record.value);
    } else otherOutputs++;
  };
  const task = await StreamTask.create({
    topology: opts.topology,
    taskId: 'replay_0',
    partition: 0,
    stateDir,
    logger: opts.logger,
    clock: () => (Number.isFinite(streamTime) ? streamTime : 0),
    collector: { send: collect },
    idleAdvanceMs: Infinity,
    loopbackRepartition: true,
    cacheMaxBytes: opts.cacheMaxBytes ?? REPLAY_CACHE_MAX_BYTES,
  });
  let lines = 0;
  let processed = 0;
  let skipped = 0;
  let errors = 0;
  let lastProgress = started;
  const every = opts.progressEveryMs ?? 2000;
  const commitEvery = opts.commitEvery ?? Infinity;
  const budget = task.state.cacheMaxBytes;
  const { stream, size, bytesRead, readErrors } = openInput(opts.input);
  const progress = (phase: ReplayProgress['phase'], now: number): ReplayProgress => ({
    phase,
    lines,
    processed,
    errors,
    triggers: opts.triggers.count,
    streamTime: task.streamTime,
    elapsedMs: now - started,
    fraction: size ? bytesRead() / size : undefined,
    cacheBytes: task.state.cacheBytes,
    cacheMaxBytes: budget,
    cacheEvictions: task.state.stats.evicted,
    uncommitted: task.state.dirtyCount,
  });
  try {
    // Lines are decoded in chunks; the chunk's store keys are loaded with one multi-get, then its records
    // are processed one by one in line order.
    let chunk: { line: number; record: DecodedRecord; fingerprint: number }[] = [];
    const processChunk = async (): Promise<void> => {
      await task.prefetch(chunk.map((c) => c.record));
      for (const { line, record: r, fingerprint } of chunk) {
        const timestamp = r.timestamp ?? (Number.isFinite(task.streamTime) ? task.streamTime : 0);
        streamTime = Math.max(streamTime, timestamp);
        // Offsets are line numbers − 1, so a trigger's causedBy.offset points back at its input line. A record
        // processed without a promise is not awaited (an await is a turn of the microtask queue per record).
        const done = task.process({ topic: r.topic, partition: 0, offset: String(line - 1), key: r.key, value: r.value, timestamp, fingerprint });
        const routed = typeof done === 'boolean' ? done : await done;
        if (routed) processed++;
        else skipped++;
        // The local copy is not the durable one (a failed replay starts over): RocksDB writes while the next
        // records are processed. A cache over its memory budget spills: the coldest uncommitted entries, down to
        // 70 % of the budget, are written and leave the cache, while the entries in use stay in memory,
        // uncommitted, and are encoded at the end or never. (Before, a commit of every uncommitted entry whenever
        // they reached half the budget, and of everything every 250,000 records: a 300k-event replay spent a
        // third of its time encoding and writing entries that stayed in the cache.)
        if (Number.isFinite(commitEvery) && (processed + skipped) % commitEvery === 0) await task.commit({ background: true });
        else if (task.state.cacheBytes > budget) {
          // A spill still writing is waited for (its entries leave the cache when it lands): a chunk whose
          // records need no read runs without a turn of the event loop, so the cache would grow past the budget.
          await task.state.landed();
          if (task.state.cacheBytes > budget) await task.commit({ background: true, coldest: task.state.cacheBytes - budget * 0.7 });
        }
      }
      chunk = [];
      if (opts.triggers.buffered > 1 << 16) await opts.triggers.flush();
      if (opts.audit && opts.audit.buffered > 1 << 16) await opts.audit.flush();
    };
    // Lines as node:readline splits them, a chunk's lines at a time (src/replay/lines.ts).
    for await (const batch of lineBatches(stream)) {
      for (const text of batch) {
        lines++;
        if (text.trim() === '') continue;
        const decoded = decodeEnvelopeLine(text, lines);
        if (!decoded.ok) {
          errors++;
          opts.errors.write({ line: lines, errors: decoded.error.errors, text: text.length > 10_000 ? text.slice(0, 10_000) + '…' : text });
          opts.onError?.(decoded.error);
          continue;
        }
        // The line's fingerprint tells a redelivered (identical) line from another event reusing its eventId.
        chunk.push({ line: lines, record: decoded.record, fingerprint: bytesFingerprint(text) });
        if (chunk.length >= CHUNK) await processChunk();
        if (opts.onProgress && (lines & 1023) === 0) {
          const now = performance.now();
          if (now - lastProgress >= every) {
            lastProgress = now;
            opts.onProgress(progress('input', now));
          }
        }
      }
    }
    await processChunk();
    if (opts.until !== undefined && opts.until > task.streamTime) {
      streamTime = opts.until;
      await task.advanceStreamTime(opts.until);
    }
    // The final commit makes the state dir whole for whoever reads it afterwards. A temporary state is removed
    // unread, so it gets none: for an input whose state fits the cache (no commit before the end) that write —
    // encoding every value, one RocksDB batch of every key, waiting for it — was a third of the replay.
    // Entries evicted while processing (the final commit's pieces evict what they wrote, which is no spill).
    const cacheEvictions = task.state.stats.evicted;
    if (!ownsDir) {
      // In pieces (spills, each written before the next is encoded), then the rest with the positions and stream
      // time: one batch of a cache of a GiB held every value encoded at once, with RocksDB's copy of the batch,
      // and took the 1M-event replay's RSS from 1.3 to 2.5 GB.
      await task.state.landed();
      const piece = Math.min(FINAL_COMMIT_PIECE, budget / 4);
      // A long write (the 1M-event replay's takes ~30 s) shows progress: once at its start, then as pieces land.
      opts.onProgress?.(progress('final-commit', (lastProgress = performance.now())));
      while (task.state.cacheBytes > piece && task.state.dirtyCount > 0) {
        await task.commit({ coldest: piece });
        const now = performance.now();
        if (opts.onProgress && now - lastProgress >= every) opts.onProgress(progress('final-commit', (lastProgress = now)));
      }
      await task.commit();
    }
    await task.close();
    // Bytes on disk (SST files, WAL, manifest) of the task's RocksDB after the final commit.
    const stateBytes = ownsDir ? undefined : dirSize(stateDir);
    const result: ReplayResult = {
      lines,
      processed,
      skipped,
      errors,
      triggers: opts.triggers.count,
      audits: auditCount,
      otherOutputs,
      timersFired: task.stats.timersFired,
      streamTime: task.streamTime,
      elapsedMs: performance.now() - started,
      stateBytes,
      cacheEvictions,
    };
    return result;
  } catch (err) {
    // A read error of the input (truncated or non-gzip .gz, a directory, a vanished file) ends the replay with
    // one message naming the file, not a stack trace.
    throw typeof opts.input === 'string' && typeof err === 'object' && err !== null && readErrors.has(err) ? inputError(opts.input, err) : err;
  } finally {
    await task.close(); // no-op when already closed
    await opts.triggers.flush();
    await opts.audit?.flush();
    await opts.errors.flush();
    if (ownsDir) rmSync(stateDir, { recursive: true, force: true });
  }
}

/** Why an input file cannot be read, in words (Node's error codes mean nothing to a user). */
export function inputError(input: string, err: unknown): KairosError {
  const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
  const reason =
    code === 'Z_BUF_ERROR'
      ? 'the gzip data ends early (truncated file)'
      : code === 'Z_DATA_ERROR'
        ? 'not gzip data (the name ends in .gz, so it is decompressed; rename it if it is plain NDJSON)'
        : code === 'EISDIR'
          ? 'it is a directory; give a file'
          : code === 'ENOENT'
            ? 'no such file'
            : code === 'EACCES' || code === 'EPERM'
              ? 'permission denied'
              : err instanceof Error
                ? err.message
                : String(err);
  return new KairosError('KAIROS_ERR_INPUT', `cannot read input ${input}: ${reason}`, { cause: err });
}

function openInput(input: string | Readable): { stream: Readable; size: number | undefined; bytesRead: () => number; readErrors: WeakSet<object> } {
  const readErrors = new WeakSet<object>();
  const track = (s: Readable): void => {
    s.on('error', (err: unknown) => {
      if (typeof err === 'object' && err !== null) readErrors.add(err);
    });
  };
  if (typeof input !== 'string') {
    track(input);
    return { stream: input, size: undefined, bytesRead: () => 0, readErrors };
  }
  let size: number;
  try {
    const stat = statSync(input);
    if (stat.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    size = stat.size;
  } catch (err) {
    throw inputError(input, err);
  }
  const file = createReadStream(input, { highWaterMark: 1 << 20 });
  track(file);
  if (!input.endsWith('.gz')) return { stream: file, size, bytesRead: () => file.bytesRead, readErrors };
  const gunzip = createGunzip();
  track(gunzip);
  // pipe() does not forward the file's errors; the reader sees the gunzip stream only.
  file.on('error', (err) => gunzip.destroy(err));
  file.pipe(gunzip);
  return { stream: gunzip, size, bytesRead: () => file.bytesRead, readErrors };
}

function dirSize(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? dirSize(p) : statSync(p).size;
  }
  return total;
}
