/**
 * Promise wrapper over the `rocksdb` package (leveldown API). The only file that touches the native module.
 */
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { KairosError } from '../../errors.js';

type Callback<T = void> = (err: Error | undefined | null, result?: T) => void;

interface NativeIterator {
  next(cb: (err: Error | undefined | null, key?: Buffer, value?: Buffer) => void): void;
  end(cb: Callback): void;
}

/**
 * A key is bytes, or a string the binding encodes as UTF-8 itself (as `Buffer.from(key, 'utf8')` would, lone
 * surrogates included): a string key costs no Buffer on the JavaScript heap.
 */
export type RocksKey = Buffer | string;

export type BatchOp = { readonly type: 'put'; readonly key: RocksKey; readonly value: Buffer } | { readonly type: 'del'; readonly key: RocksKey };

interface NativeDb {
  open(options: Record<string, unknown>, cb: Callback): void;
  close(cb: Callback): void;
  get(key: RocksKey, options: { asBuffer: true; fillCache?: boolean }, cb: Callback<Buffer>): void;
  getMany(keys: RocksKey[], options: { asBuffer: true }, cb: Callback<(Buffer | undefined)[]>): void;
  /**
   * The binding's own calls (`_chainedBatch`, `_get`, `_getMany`), without abstract-leveldown's checks: that layer
   * copies every batch operation into a new object and re-validates the keys (Buffers or strings) this wrapper
   * already builds (a tenth of a commit's time). A write batch is filled with one binding call per operation
   * (`batch_put(key, value)`): the array form (`_batch`) reads each operation's `type`, `key` and `value` as named
   * properties in C++ (five N-API calls and a std::string per operation) and takes about 2.5× the main-thread time
   * (`load-tests/rocksdb-batch.ts`).
   */
  _chainedBatch(): NativeBatch;
  _get(key: RocksKey, options: { asBuffer: true; fillCache?: boolean }, cb: Callback<Buffer>): void;
  _getMany(keys: RocksKey[], options: { asBuffer: true }, cb: Callback<(Buffer | undefined)[]>): void;
  iterator(options: {
    gte?: Buffer;
    gt?: Buffer;
    lt?: Buffer;
    lte?: Buffer;
    reverse?: boolean;
    limit?: number;
    keyAsBuffer: true;
    valueAsBuffer: true;
    highWaterMark?: number;
  }): NativeIterator;
  approximateSize(start: Buffer, end: Buffer, cb: Callback<number>): void;
  getProperty(property: string): string;
}

/** leveldown's ChainedBatch, through its binding calls (`_put`, `_del`, `_write`) without abstract-leveldown's checks. */
interface NativeBatch {
  _put(key: RocksKey, value: Buffer): void;
  _del(key: RocksKey): void;
  _write(options: { sync?: boolean }, cb: Callback): void;
}

interface NativeFactory {
  (location: string): NativeDb;
  destroy(location: string, cb: Callback): void;
}

const require = createRequire(import.meta.url);
let factory: NativeFactory | undefined;
function native(): NativeFactory {
  factory ??= require('rocksdb') as NativeFactory;
  return factory;
}

function io(message: string, cause: unknown): KairosError {
  return new KairosError('KAIROS_ERR_STATE_IO', message, { cause });
}

export interface RocksOptions {
  /** RocksDB block cache in bytes. @default 8 MiB */
  readonly cacheSize?: number;
  /** Memtable size in bytes. @default 4 MiB */
  readonly writeBufferSize?: number;
}

export interface ScanBounds {
  readonly gte?: Buffer;
  readonly gt?: Buffer;
  readonly lt?: Buffer;
  readonly limit?: number;
}

export class RocksDb {
  readonly location: string;
  readonly #db: NativeDb;
  #open = false;

  private constructor(location: string, db: NativeDb) {
    this.location = location;
    this.#db = db;
  }

  static async open(location: string, options: RocksOptions = {}): Promise<RocksDb> {
    mkdirSync(location, { recursive: true });
    const db = native()(location);
    await new Promise<void>((resolve, reject) =>
      db.open(
        {
          createIfMissing: true,
          errorIfExists: false,
          compression: true,
          cacheSize: options.cacheSize ?? 8 * 1024 * 1024,
          writeBufferSize: options.writeBufferSize ?? 4 * 1024 * 1024,
        },
        (err) => (err ? reject(io(`cannot open RocksDB at ${location}: ${err.message}`, err)) : resolve()),
      ),
    );
    const r = new RocksDb(location, db);
    r.#open = true;
    return r;
  }

  static destroy(location: string): Promise<void> {
    return new Promise((resolve, reject) => native().destroy(location, (err) => (err ? reject(io(`cannot destroy ${location}`, err)) : resolve())));
  }

  get isOpen(): boolean {
    return this.#open;
  }

  get(key: RocksKey): Promise<Buffer | undefined> {
    if (!this.#open) return Promise.reject(this.#closed());
    return new Promise((resolve, reject) =>
      this.#db._get(key, { asBuffer: true }, (err, value) => {
        if (err) {
          if (/NotFound/i.test(err.message)) resolve(undefined);
          else reject(io(`RocksDB get failed: ${err.message}`, err));
        } else resolve(value);
      }),
    );
  }

  getMany(keys: RocksKey[]): Promise<(Buffer | undefined)[]> {
    if (!this.#open) return Promise.reject(this.#closed());
    return new Promise((resolve, reject) =>
      this.#db._getMany(keys, { asBuffer: true }, (err, values) => (err ? reject(io(`RocksDB getMany failed: ${err.message}`, err)) : resolve(values ?? []))),
    );
  }

  /** One atomic write. `sync` forces an fsync of the WAL (off by default: the changelog is the durable copy). */
  batch(ops: readonly BatchOp[], sync = false): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    if (!this.#open) return Promise.reject(this.#closed());
    const batch = this.#db._chainedBatch();
    for (const op of ops) {
      if (op.type === 'put') batch._put(op.key, op.value);
      else batch._del(op.key);
    }
    return new Promise((resolve, reject) =>
      batch._write({ sync }, (err) => (err ? reject(io(`RocksDB batch write failed: ${err.message}`, err)) : resolve())),
    );
  }

  /** Entries in key order within the bounds. */
  async scan(bounds: ScanBounds): Promise<Array<[Buffer, Buffer]>> {
    const { limit, ...range } = bounds;
    const it = this.#db.iterator({ ...range, limit: limit ?? -1, keyAsBuffer: true, valueAsBuffer: true, highWaterMark: 64 * 1024 });
    const out: Array<[Buffer, Buffer]> = [];
    try {
      for (;;) {
        const next = await new Promise<[Buffer, Buffer] | undefined>((resolve, reject) =>
          it.next((err, key, value) => (err ? reject(io(`RocksDB iterator failed: ${err.message}`, err)) : resolve(key && value ? [key, value] : undefined))),
        );
        if (!next) break;
        out.push(next);
      }
    } finally {
      await new Promise<void>((resolve) => it.end(() => resolve()));
    }
    return out;
  }

  /** The binding's calls are made without abstract-leveldown's status check: a closed database is refused here. */
  #closed(): KairosError {
    return io(`RocksDB at ${this.location} is closed`, undefined);
  }

  approximateSize(start: Buffer, end: Buffer): Promise<number> {
    return new Promise((resolve, reject) =>
      this.#db.approximateSize(start, end, (err, size) => (err ? reject(io('RocksDB approximateSize failed', err)) : resolve(size ?? 0))),
    );
  }

  property(name: string): string {
    return this.#db.getProperty(name);
  }

  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    await new Promise<void>((resolve, reject) => this.#db.close((err) => (err ? reject(io('RocksDB close failed', err)) : resolve())));
  }
}
