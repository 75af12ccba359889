/**
 * The embedded runner (DESIGN §4, "one topology, three runners"): the topology in one task, in process, with no
 * Kafka. Records are validated like the Kafka runner's (bad ones are returned, not processed), timers fire on
 * stream time and on the wall clock when the input is quiet. For the demo where no broker is available.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isTopicName } from '../../schemas/contract.js';
import type { OutputRecord } from '../engine/api/record.js';
import type { Topology } from '../engine/api/topology.js';
import { StreamTask } from '../engine/runtime/task.js';
import { JsonSerde, type DecodeResult } from '../kafka/serde.js';
import { bytesFingerprint } from '../util/crc32c.js';

export interface EmbeddedRunnerOptions {
  readonly topology: Topology;
  readonly logger: Logger;
  readonly onOutput: (topic: string, record: OutputRecord) => void;
  /** @default 200 */
  readonly punctuateIntervalMs?: number;
  /** @default 500 */
  readonly idleAdvanceMs?: number;
}

export class EmbeddedRunner {
  readonly #o: EmbeddedRunnerOptions;
  readonly #serde = new JsonSerde();
  readonly #dir = mkdtempSync(join(tmpdir(), 'kairos-embedded-'));
  #task: StreamTask | undefined;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  #offset = 0n;

  constructor(options: EmbeddedRunnerOptions) {
    this.#o = options;
  }

  async start(): Promise<void> {
    this.#task = await StreamTask.create({
      topology: this.#o.topology,
      taskId: 'embedded-0',
      partition: 0,
      stateDir: this.#dir,
      logger: this.#o.logger,
      clock: Date.now,
      collector: { send: (topic, record) => this.#o.onOutput(topic, record) },
      idleAdvanceMs: this.#o.idleAdvanceMs ?? 500,
      loopbackRepartition: true,
    });
    this.#timer = setInterval(() => {
      this.#chain = this.#chain.then(async () => {
        const task = this.#task;
        if (!task) return;
        await task.punctuateWallClock();
        await task.commit();
      });
    }, this.#o.punctuateIntervalMs ?? 200);
  }

  /** Validates and processes one record; resolves with the decode result (a failure was not processed). */
  send(topic: string, key: string, value: unknown): Promise<DecodeResult> {
    const run = this.#chain.then(async (): Promise<DecodeResult> => {
      const task = this.#task;
      if (!task) throw new Error('embedded runner not started');
      if (!isTopicName(topic)) return { ok: false, reason: 'invalid', errors: [{ path: '/topic', message: `unknown topic ${topic}` }], retriable: false };
      const bytes = Buffer.from(JSON.stringify(value));
      const d = this.#serde.decodeSync(topic, Buffer.from(key), bytes);
      if (!d.ok) return d;
      await task.process({ topic, partition: 0, offset: (this.#offset++).toString(), key: d.key, value: d.value, timestamp: d.timestamp ?? task.streamTime, fingerprint: bytesFingerprint(bytes) });
      return d;
    });
    this.#chain = run.catch(() => undefined);
    return run;
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#chain;
    if (this.#task) {
      await this.#task.commit();
      await this.#task.close();
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
