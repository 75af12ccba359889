import { createWriteStream, type WriteStream } from 'node:fs';
import type { Writable } from 'node:stream';

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

  constructor(out: Writable, owned = false) {
    this.#out = out;
    this.#owned = owned;
  }

  static toFile(path: string): NdjsonWriter {
    return new NdjsonWriter(createWriteStream(path), true);
  }

  write(value: unknown): void {
    const line = JSON.stringify(value) + '\n';
    this.#chunks.push(line);
    this.#size += line.length;
    this.count++;
  }

  get buffered(): number {
    return this.#size;
  }

  async flush(): Promise<void> {
    if (this.#chunks.length === 0) return;
    const data = this.#chunks.join('');
    this.#chunks = [];
    this.#size = 0;
    if (!this.#out.write(data)) await new Promise<void>((resolve) => this.#out.once('drain', resolve));
  }

  async close(): Promise<void> {
    await this.flush();
    if (this.#owned) await new Promise<void>((resolve, reject) => (this.#out as WriteStream).end((err?: Error | null) => (err ? reject(err) : resolve())));
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
