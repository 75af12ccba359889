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
/**
 * Commands issued in the same turn of the event loop leave in one write: the first command of a turn corks the
 * client's socket and the end of the turn (setImmediate, i.e. once the replies of the current read have been
 * handled) uncorks it. The concurrent deliveries that reach the same step together (their previous replies
 * arrived in one read) thus cost Redis one read and one reply write for all of them instead of a round trip each,
 * with no timer and no linger. Each command is sent as an ordinary command (its own promise, reply and error;
 * failing fast while Redis is down), so the gate and the idempotent scripts behave exactly as without it.
 * Measured against ioredis pipelines built per turn (the same batching through Pipeline objects): onsite, 20,000
 * triggers, 6,054-12,142 vs 4,930-6,679 triggers/s in alternating runs, less CPU per trigger.
 */
const corked = new WeakSet<Redis>();

/** Sends a command in this turn's single write to `redis` (see above); resolves with its own reply. */
export function batched(redis: Redis, command: string, ...args: (string | number)[]): Promise<unknown> {
  if (!corked.has(redis) && redis.status === 'ready') {
    const stream = redis.stream;
    stream.cork();
    corked.add(redis);
    setImmediate(() => {
      corked.delete(redis);
      stream.uncork();
    });
  }
  return redis.call(command, ...args);
}

export function redisScript(_name: string, numberOfKeys: number, lua: string): (redis: Redis, ...keysAndArgs: string[]) => Promise<unknown> {
  const run = redisScriptWithKeys(lua);
  return (redis, ...keysAndArgs) => run(redis, numberOfKeys, ...keysAndArgs);
}

/** {@link redisScript} for a script whose number of keys varies per call (one batch of several items). */
export function redisScriptWithKeys(lua: string): (redis: Redis, numberOfKeys: number, ...keysAndArgs: string[]) => Promise<unknown> {
  const sha = createHash('sha1').update(lua).digest('hex');
  const noScript = (err: unknown): boolean => err instanceof Error && err.message.startsWith('NOSCRIPT');
  // One SCRIPT LOAD per client at a time: a batch of concurrent first calls does not send the script each.
  const loads = new WeakMap<Redis, Promise<unknown>>();
  // Calls go in the turn's single write (batched): many triggers' admit (or finish) in one round trip.
  return async (redis, numberOfKeys, ...keysAndArgs) => {
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

/**
 * Requests to one Redis client made in the same turn of the event loop, sent as one command when the turn ends
 * (setImmediate, as {@link batched}): `send` gets them all and answers one reply per request, in order. The
 * concurrent deliveries that reach the same step together then cost one command (one ioredis Command, one
 * reply to decode) instead of one each. Each caller gets its own reply; if the command fails, every caller of
 * that batch gets the error (and its gate retries it, in a later batch). A turn's requests go in commands of at
 * most `maxBatch` (all in the turn's one write): Redis answers the first while it runs the next, so the
 * dispatcher works on replies while Redis works on commands instead of the two taking turns.
 */
/** Requests per command of a {@link turnBatcher} (measured: see README, Dispatch). */
export const TURN_BATCH_MAX = 32;

export function turnBatcher<Req, Res>(send: (redis: Redis, requests: readonly Req[]) => Promise<readonly Res[]>, maxBatch = TURN_BATCH_MAX): (redis: Redis, request: Req) => Promise<Res> {
  interface Waiting {
    readonly request: Req;
    readonly resolve: (r: Res) => void;
    readonly reject: (err: unknown) => void;
  }
  const pending = new Map<Redis, Waiting[]>();
  const flush = (redis: Redis): void => {
    const all = pending.get(redis) ?? [];
    pending.delete(redis);
    for (let i = 0; i < all.length; i += maxBatch) sendBatch(redis, i === 0 && all.length <= maxBatch ? all : all.slice(i, i + maxBatch));
  };
  const sendBatch = (redis: Redis, batch: readonly Waiting[]): void => {
    send(
      redis,
      batch.map((w) => w.request),
    ).then(
      (replies) => {
        for (let i = 0; i < batch.length; i++) {
          const w = batch[i] as Waiting;
          if (i < replies.length) w.resolve(replies[i] as Res);
          else w.reject(new Error(`a batch of ${batch.length} requests got ${replies.length} replies`));
        }
      },
      (err: unknown) => {
        for (const w of batch) w.reject(err);
      },
    );
  };
  return (redis, request) =>
    new Promise<Res>((resolve, reject) => {
      let batch = pending.get(redis);
      if (batch === undefined) {
        batch = [];
        pending.set(redis, batch);
        setImmediate(flush, redis);
      }
      batch.push({ request, resolve, reject });
    });
}

/** MGET of the keys of all callers in this turn, as one command; each caller gets the values of its own keys. */
export const mgetInTurn: (redis: Redis, keys: readonly string[]) => Promise<(string | null)[]> = (() => {
  const batch = turnBatcher<readonly string[], (string | null)[]>(async (redis, requests) => {
    const all: string[] = [];
    for (const keys of requests) all.push(...keys);
    const values = (await batched(redis, 'mget', ...all)) as (string | null)[];
    let at = 0;
    return requests.map((keys) => values.slice(at, (at += keys.length)));
  });
  return batch;
})();

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
