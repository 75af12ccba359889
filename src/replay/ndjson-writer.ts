import { createWriteStream, type WriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { KairosError } from '../errors.js';

/** Where NDJSON lines go. */
export interface LineSink {
  write(value: unknown): void;
  flush(): Promise<void>;
}

/** Buffered NDJSON output with back-pressure: `write` is sync, `flush` awaits the stream. */
export class NdjsonWriter implements LineSink {
  readonly #out: Writable;
  readonly #owned: boolean;
  #chunks: string[] = [];
  #size = 0;
  count = 0;

  #error: Error | undefined;
  readonly #name: string;

  constructor(out: Writable, owned = false, name = 'output') {
    this.#out = out;
    this.#owned = owned;
    this.#name = name;
    out.on('error', (err: Error) => {
      this.#error ??= err;
    });
  }

  static toFile(path: string): NdjsonWriter {
    return new NdjsonWriter(createWriteStream(path), true, path);
  }

  /** Opens the file first, so a bad path fails before any work is done. */
  static async openFile(path: string): Promise<NdjsonWriter> {
    const stream = createWriteStream(path);
    await new Promise<void>((resolve, reject) => {
      stream.once('ready', () => resolve());
      stream.once('error', (err) => reject(new KairosError('KAIROS_ERR_OUTPUT', `cannot write ${path}: ${err.message}`, { cause: err })));
    });
    return new NdjsonWriter(stream, true, path);
  }

  #failed(): KairosError | undefined {
    return this.#error && new KairosError('KAIROS_ERR_OUTPUT', `cannot write ${this.#name}: ${this.#error.message}`, { cause: this.#error });
  }

  write(value: unknown): void {
    const failed = this.#failed();
    if (failed) throw failed;
    const line = JSON.stringify(value) + '\n';
    this.#chunks.push(line);
    this.#size += line.length;
    this.count++;
  }

  get buffered(): number {
    return this.#size;
  }

  async flush(): Promise<void> {
    let failed = this.#failed();
    if (failed) throw failed;
    if (this.#chunks.length === 0) return;
    const data = this.#chunks.join('');
    this.#chunks = [];
    this.#size = 0;
    if (!this.#out.write(data)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.#out.off('drain', done);
          this.#out.off('error', done);
          resolve();
        };
        this.#out.once('drain', done);
        this.#out.once('error', done);
      });
    }
    failed = this.#failed();
    if (failed) throw failed;
  }

  async close(): Promise<void> {
    await this.flush();
    if (this.#owned) {
      await new Promise<void>((resolve, reject) =>
        (this.#out as WriteStream).end((err?: Error | null) => {
          const e = err ?? this.#error;
          if (e) reject(new KairosError('KAIROS_ERR_OUTPUT', `cannot write ${this.#name}: ${e.message}`, { cause: e }));
          else resolve();
        }),
      );
    }
  }
}

/** An NDJSON file created on the first write only (error files that stay absent when all went well). */
export class LazyNdjsonFile implements LineSink {
  readonly path: string;
  #writer: NdjsonWriter | undefined;

  constructor(path: string) {
    this.path = path;
  }

  get count(): number {
    return this.#writer?.count ?? 0;
  }

  write(value: unknown): void {
    this.#writer ??= NdjsonWriter.toFile(this.path);
    this.#writer.write(value);
  }

  flush(): Promise<void> {
    return this.#writer?.flush() ?? Promise.resolve();
  }

  close(): Promise<void> {
    return this.#writer?.close() ?? Promise.resolve();
  }
}
