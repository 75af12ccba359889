/**
 * The bounded buffer between Kafka and the warehouse (Kafka-agnostic; src/kafka/export-consumer.ts drives it).
 *
 * Rows are added with their source position; `flush()` inserts everything buffered, per table in requests of
 * at most `batchRows` rows, retrying warehouse errors with backoff (the same insertIds, so BigQuery drops rows it
 * already stored), and only then returns the positions that may be committed and the rows the warehouse
 * refused for their content. The caller commits those positions after dead-lettering the refused rows: an offset
 * is never committed before its row was accepted. `full()` is the back-pressure signal: the caller flushes
 * before reading more. Flushes never overlap.
 */
import type { Logger } from 'pino';
import { isKairosError } from '../errors.js';
import type { ExportMetrics } from './metrics.js';
import type { TableDef } from './tables.js';
import type { Warehouse, WarehouseRow } from './warehouse.js';

export interface Position {
  readonly topic: string;
  readonly partition: number;
  /** The Kafka offset of the record (decimal string). */
  readonly offset: string;
}

export interface Refused<S> {
  readonly source: S;
  readonly table: string;
  readonly reason: string;
  readonly message: string;
}

export interface FlushResult<S> {
  /** Per topic-partition, the highest offset handled: commit offset + 1. */
  readonly positions: readonly Position[];
  readonly refused: readonly Refused<S>[];
  readonly rows: number;
}

export interface ExportBufferOptions {
  readonly warehouse: Warehouse;
  readonly batchRows: number;
  readonly bufferRows: number;
  readonly logger: Logger;
  readonly metrics?: ExportMetrics | undefined;
  /** First retry delay after a warehouse error, doubled up to `maxRetryMs`. @default 500 */
  readonly retryMs?: number;
  /** @default 30000 */
  readonly maxRetryMs?: number;
}

interface Entry<S> {
  readonly def: TableDef;
  readonly row: WarehouseRow;
  readonly source: S;
}

/** Called while a flush waits to retry (e.g. a consumer heartbeat); `shouldStop` ends the retries. */
export interface FlushHooks {
  readonly onWait?: () => Promise<void>;
  readonly shouldStop?: () => boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ExportBuffer<S> {
  private entries: Entry<S>[] = [];
  /** Rows of the flush in progress: still in memory, so they count against the bound. */
  private inFlight = 0;
  private positions = new Map<string, Position>();
  private flushing: Promise<unknown> = Promise.resolve();
  private readonly opts: ExportBufferOptions;

  constructor(opts: ExportBufferOptions) {
    this.opts = opts;
  }

  /** Rows in memory: buffered plus being inserted. */
  get size(): number {
    return this.entries.length + this.inFlight;
  }

  /** Whether positions or rows wait for a flush. */
  get pending(): boolean {
    return this.entries.length > 0 || this.positions.size > 0;
  }

  /** At or over the bound: flush before reading more. */
  full(): boolean {
    return this.size >= this.opts.bufferRows;
  }

  /** A request's worth of rows is waiting. */
  due(): boolean {
    return this.entries.length >= this.opts.batchRows;
  }

  add(def: TableDef, row: WarehouseRow, position: Position, source: S): void {
    this.entries.push({ def, row, source });
    this.advance(position);
    this.opts.metrics?.buffered.set(this.size);
  }

  /** A record handled without a row (dead-lettered): its offset may be committed with the next flush. */
  advance(position: Position): void {
    const key = `${position.topic}\0${position.partition}`;
    const prev = this.positions.get(key);
    if (prev === undefined || BigInt(position.offset) > BigInt(prev.offset)) this.positions.set(key, position);
  }

  /** Inserts everything buffered so far (waiting for a flush already running). */
  flush(hooks: FlushHooks = {}): Promise<FlushResult<S>> {
    const run = this.flushing.then(() => this.flushNow(hooks));
    this.flushing = run.catch(() => undefined);
    return run;
  }

  private async flushNow(hooks: FlushHooks): Promise<FlushResult<S>> {
    const entries = this.entries;
    const positions = [...this.positions.values()];
    this.entries = [];
    this.positions = new Map();
    this.inFlight = entries.length;
    try {
      const refused = await this.insertAll(entries, hooks);
      this.inFlight = 0;
      this.opts.metrics?.buffered.set(this.size);
      if (entries.length > 0) this.opts.metrics?.lastFlush.set(Date.now() / 1000);
      return { positions, refused, rows: entries.length - refused.length };
    } catch (err) {
      this.inFlight = 0;
      // Nothing is committed: put the rows back in front, so a later flush (or a restart) repeats them.
      this.entries = [...entries, ...this.entries];
      for (const p of positions) {
        const key = `${p.topic}\0${p.partition}`;
        if (!this.positions.has(key)) this.positions.set(key, p);
      }
      throw err;
    }
  }

  private async insertAll(entries: readonly Entry<S>[], hooks: FlushHooks): Promise<Refused<S>[]> {
    const byTable = new Map<TableDef, Entry<S>[]>();
    for (const e of entries) {
      const list = byTable.get(e.def);
      if (list) list.push(e);
      else byTable.set(e.def, [e]);
    }
    const refused: Refused<S>[] = [];
    for (const [def, list] of byTable) {
      for (let i = 0; i < list.length; i += this.opts.batchRows) {
        const chunk = list.slice(i, i + this.opts.batchRows);
        const rejected = await this.insertWithRetry(def, chunk, hooks);
        const bad = new Map(rejected.map((r) => [r.insertId, r]));
        for (const e of chunk) {
          const r = bad.get(e.row.insertId);
          if (r) refused.push({ source: e.source, table: def.tableId, reason: r.reason, message: r.message });
        }
        this.opts.metrics?.rows.inc({ table: def.tableId }, chunk.length - rejected.length);
        if (rejected.length > 0) this.opts.metrics?.rejected.inc({ table: def.tableId }, rejected.length);
      }
    }
    return refused;
  }

  private async insertWithRetry(def: TableDef, chunk: readonly Entry<S>[], hooks: FlushHooks): Promise<{ insertId: string; reason: string; message: string }[]> {
    let delay = this.opts.retryMs ?? 500;
    for (let attempt = 1; ; attempt++) {
      const end = this.opts.metrics?.insertSeconds.startTimer({ table: def.tableId });
      try {
        const rejected = await this.opts.warehouse.insert(
          def,
          chunk.map((e) => e.row),
        );
        end?.();
        this.opts.metrics?.inserts.inc({ table: def.tableId, result: 'ok' });
        return rejected;
      } catch (err) {
        end?.();
        this.opts.metrics?.inserts.inc({ table: def.tableId, result: 'error' });
        // Schema problems and programmer errors do not heal by waiting.
        if (!isKairosError(err) || !err.retriable || hooks.shouldStop?.() === true) throw err;
        this.opts.metrics?.retries.inc();
        this.opts.logger.warn({ err, table: def.tableId, rows: chunk.length, attempt, retryInMs: delay }, 'warehouse insert failed; retrying with the same insertIds');
        const until = Date.now() + delay;
        while (Date.now() < until) {
          await sleep(Math.min(1000, until - Date.now()));
          await hooks.onWait?.();
          if (hooks.shouldStop?.() === true) throw err;
        }
        delay = Math.min(delay * 2, this.opts.maxRetryMs ?? 30_000);
      }
    }
  }
}
