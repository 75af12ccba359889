/**
 * The dispatcher's Redis connection and its outage rule: a command that fails because Redis is down, closing or
 * loading is retried with backoff until Redis answers again — dispatch pauses there and resumes, it never skips.
 * Commands fail fast while disconnected (no offline queue, no resend by ioredis), and every script we run is
 * idempotent, so a command whose reply was lost can simply be run again.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { KairosError } from '../errors.js';

export interface CreateRedisOptions {
  /**
   * ioredis auto-pipelining: commands issued in the same tick (the concurrent deliveries of a batch at the same
   * step) go out as one pipeline, one round trip per step for the batch. Off by default: against a Redis on the
   * same host it cost throughput (onsite, 20,000 triggers: about 5,800 vs 7,200 triggers/s), since a loopback
   * round trip is cheaper than the pipeline bookkeeping; worth turning on where round trips are long. @default false
   */
  readonly autoPipelining?: boolean;
}

/** Connects at once and keeps reconnecting for ever; commands fail fast while it is down. */
export function createRedis(url: string, opts: CreateRedisOptions = {}): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 1000),
    enableAutoPipelining: opts.autoPipelining ?? false,
    // Scripts stay out of the auto-pipelines (with ioredis 6 and defineCommand scripts in them the
    // auto-pipeline callback broke: `results[i] is not iterable`); they go one by one, by SHA.
    autoPipeliningIgnoredCommands: ['eval', 'evalsha'],
  });
  // Errors surface through the commands; the client reconnects by itself.
  redis.on('error', () => undefined);
  return redis;
}

/**
 * A Lua script run by SHA: EVALSHA, and when Redis does not know the script (NOSCRIPT: its first use, or after
 * a restart) one SCRIPT LOAD and EVALSHA again. (ioredis `defineCommand` does the same but measured
 * slower here: onsite, 20,000 triggers, 4,216–5,454 vs 5,180–6,022 triggers/s, as it wraps every call.)
 */
interface Queued {
  readonly args: (string | number)[];
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: unknown) => void;
}

/**
 * Commands issued in the same turn of the event loop, sent as one pipeline: the concurrent deliveries that reach
 * the same step together (their previous replies arrived in one read) cost Redis one read and one reply write
 * for all of them, instead of a round trip each. Flushed with setImmediate, i.e. once the replies of the current
 * read have been handled: no timer, no linger. Each command keeps its own promise and error; a pipeline that
 * fails as a whole (connection lost) rejects each, so the gate retries each operation as before (the scripts are
 * idempotent for their owner, and a command whose reply was lost is simply run again).
 */
class TickBatcher {
  #queue: Queued[] = [];
  #scheduled = false;
  constructor(readonly redis: Redis) {}

  call(args: (string | number)[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ args, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length === 1) {
      const [q] = batch as [Queued];
      const [command, ...rest] = q.args as [string, ...(string | number)[]];
      this.redis.call(command, ...rest).then(q.resolve, q.reject);
      return;
    }
    const p = this.redis.pipeline();
    for (const q of batch) {
      const [command, ...rest] = q.args as [string, ...(string | number)[]];
      p.call(command, ...rest);
    }
    p.exec().then(
      (results) => {
        batch.forEach((q, i) => {
          const r = results?.[i];
          if (r === undefined) q.reject(new Error('Redis pipeline returned fewer replies than commands'));
          else if (r[0]) q.reject(r[0]);
          else q.resolve(r[1]);
        });
      },
      (err: unknown) => batch.forEach((q) => q.reject(err)),
    );
  }
}

const batchers = new WeakMap<Redis, TickBatcher>();

/** Sends a command in this turn's pipeline of `redis` (see TickBatcher); resolves with its own reply. */
export function batched(redis: Redis, command: string, ...args: (string | number)[]): Promise<unknown> {
  let b = batchers.get(redis);
  if (b === undefined) {
    b = new TickBatcher(redis);
    batchers.set(redis, b);
  }
  return b.call([command, ...args]);
}

export function redisScript(_name: string, numberOfKeys: number, lua: string): (redis: Redis, ...keysAndArgs: string[]) => Promise<unknown> {
  const sha = createHash('sha1').update(lua).digest('hex');
  const noScript = (err: unknown): boolean => err instanceof Error && err.message.startsWith('NOSCRIPT');
  // One SCRIPT LOAD per client at a time: a batch of concurrent first calls does not send the script each.
  const loads = new WeakMap<Redis, Promise<unknown>>();
  // Calls go in the turn's pipeline (batched): many triggers' admit (or finish) in one round trip.
  return async (redis, ...keysAndArgs) => {
    try {
      return await batched(redis, 'evalsha', sha, numberOfKeys, ...keysAndArgs);
    } catch (err) {
      // Other errors unchanged, so the gate still tells an outage from a bug.
      if (!noScript(err)) throw err;
    }
    let load = loads.get(redis);
    if (load === undefined) {
      load = redis.script('LOAD', lua).finally(() => loads.delete(redis));
      loads.set(redis, load);
    }
    await load;
    try {
      return await batched(redis, 'evalsha', sha, numberOfKeys, ...keysAndArgs);
    } catch (err) {
      // Forgotten again in between (another restart): this once with the script itself.
      if (noScript(err)) return batched(redis, 'eval', lua, numberOfKeys, ...keysAndArgs);
      throw err;
    }
  };
}

const TRANSIENT_REPLIES = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|READONLY)/;

/** Whether an error means "Redis is not available right now" rather than a bug in our command. */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'ReplyError') return TRANSIENT_REPLIES.test(err.message);
  return true;
}

export interface RedisGate {
  /** Runs `op` until it succeeds; waits through Redis outages. Rethrows errors that are not about availability. */
  run<T>(op: () => Promise<T>): Promise<T>;
  /** True while some operation waits for Redis. */
  readonly paused: boolean;
  /** Stops waiting: pending `run`s reject with KAIROS_ERR_REDIS. */
  close(): void;
}

export interface RedisGateOptions {
  readonly logger: Logger;
  /** Called on every wait while Redis is down (e.g. to heartbeat the consumer group). */
  readonly onWait?: () => Promise<void>;
  readonly onPause?: (paused: boolean) => void;
  /** @default 2000 */
  readonly maxDelayMs?: number;
}

export function redisGate(opts: RedisGateOptions): RedisGate {
  let waiting = 0;
  let closed = false;
  const maxDelay = opts.maxDelayMs ?? 2000;
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  const gate: RedisGate = {
    get paused() {
      return waiting > 0;
    },
    close() {
      closed = true;
    },
    async run<T>(op: () => Promise<T>): Promise<T> {
      let delay = 25;
      let counted = false;
      try {
        for (;;) {
          try {
            return await op();
          } catch (err) {
            if (!isRedisUnavailable(err)) throw err;
            if (closed) throw new KairosError('KAIROS_ERR_REDIS', 'Redis unavailable and the dispatcher is closing', { cause: err });
            if (!counted) {
              counted = true;
              if (waiting++ === 0) {
                opts.logger.warn({ err: (err as Error).message }, 'Redis unavailable: dispatch paused until it answers');
                opts.onPause?.(true);
              }
            }
            await opts.onWait?.().catch(() => undefined);
            await sleep(delay);
            delay = Math.min(delay * 2, maxDelay);
          }
        }
      } finally {
        if (counted && --waiting === 0) {
          opts.logger.warn('Redis answers again: dispatch resumed');
          opts.onPause?.(false);
        }
      }
    },
  };
  return gate;
}
