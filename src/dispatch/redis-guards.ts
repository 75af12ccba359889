/**
 * What must hold across dispatcher instances and other senders lives in Redis, in two Lua scripts that run
 * atomically and are idempotent (safe to run again when a reply was lost in a Redis outage):
 *
 * - `admit` — before a provider call: a delivery already decided (`kairos:delivery:<deliveryId>`) is not sent
 *   again; one in progress elsewhere (`kairos:claim:<deliveryId>`, a lease) waits; the customer's daily cap for
 *   the channel (`kairos:cap:<channel>:<customerId>:<YYYY-MM-DD in the customer's time zone>`) and the channel's
 *   provider token bucket (`kairos:rate:<channel>`, timed by Redis' own clock so instances agree) are checked,
 *   then the cap counted, a token taken and the lease taken — all or nothing. The owner re-running it gets `ok`
 *   again without counting twice.
 * - `finish` — after it: the result is stored under the delivery key (kept `dedupeTtlMs`), the lease released
 *   and, for a delivery that was not sent, the cap count given back. A second `finish` returns the first result
 *   (an empty reply says the caller's own result was stored).
 *
 * Other senders share the caps by incrementing the same `kairos:cap:…` keys.
 */
import type { Redis } from 'ioredis';
import type { Channel, Delivery } from '../../schemas/contract.js';
import { wallClock } from '../util/local-time.js';
import { redisScript } from './redis-client.js';

const ADMIT = `
local done = redis.call('GET', KEYS[1])
if done then return {'done', done} end
local claim = redis.call('GET', KEYS[2])
if claim then
  if claim == ARGV[1] then
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
    return {'ok', ''}
  end
  return {'busy', tostring(redis.call('PTTL', KEYS[2]))}
end
local limit = tonumber(ARGV[3])
if limit >= 0 then
  local used = tonumber(redis.call('GET', KEYS[3]) or '0')
  if used >= limit then return {'cap', tostring(used)} end
end
local rate = tonumber(ARGV[5])
if rate > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local burst = tonumber(ARGV[6])
  local cost = math.min(tonumber(ARGV[7]), burst)
  local b = redis.call('HMGET', KEYS[4], 'tokens', 'at')
  local tokens = tonumber(b[1]) or burst
  local at = tonumber(b[2]) or now
  if now > at then tokens = math.min(burst, tokens + (now - at) * rate / 1000) end
  if tokens < cost then
    return {'rate', tostring(math.ceil((cost - tokens) * 1000 / rate))}
  end
  redis.call('HSET', KEYS[4], 'tokens', tostring(tokens - cost), 'at', tostring(math.max(now, at)))
  redis.call('PEXPIRE', KEYS[4], math.ceil(burst * 1000 / rate) + 1000)
end
if limit >= 0 then
  redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {'ok', ''}
`;

const FINISH = `
local claim = redis.call('GET', KEYS[2])
if claim == ARGV[1] then
  if ARGV[4] == '1' then
    local c = redis.call('DECR', KEYS[3])
    if c <= 0 then redis.call('DEL', KEYS[3]) end
  end
  redis.call('DEL', KEYS[2])
end
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return ''
`;

const admitScript = redisScript('kairosAdmit', 4, ADMIT);
const finishScript = redisScript('kairosFinish', 3, FINISH);

export const deliveryKey = (deliveryId: string): string => `kairos:delivery:${deliveryId}`;
export const claimKey = (deliveryId: string): string => `kairos:claim:${deliveryId}`;
export const capKey = (channel: Channel, customerId: string, day: string): string => `kairos:cap:${channel}:${customerId}:${day}`;
export const rateKey = (channel: Channel): string => `kairos:rate:${channel}`;

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/**
 * The calendar day (YYYY-MM-DD) of `at` in `timezone`, and ms until that day ends there (at least 1 h kept).
 * `timezone` must be a known zone (the dispatcher checks it): a RangeError otherwise.
 */
export function localDay(at: number, timezone: string): { day: string; msToEnd: number } {
  const w = wallClock(at, timezone);
  if (w === undefined) throw new RangeError(`not a time zone: ${timezone}`);
  const day = `${pad(w.year, 4)}-${pad(w.month)}-${pad(w.day)}`;
  const elapsed = (w.hour * 3600 + w.minute * 60 + w.second) * 1000 + (at % 1000);
  // A DST change makes the day 23 or 25 h long; the extra hour of margin keeps the count until the day is over.
  return { day, msToEnd: 24 * 3600_000 - elapsed + 3600_000 };
}

export interface AdmitRequest {
  readonly deliveryId: string;
  /** Unique per delivery run (instance id + a random id); re-running with the same owner is idempotent. */
  readonly owner: string;
  readonly channel: Channel;
  readonly customerId: string;
  readonly timezone: string;
  readonly now: number;
  /** Contacts allowed per local day; undefined = no cap. */
  readonly capLimit: number | undefined;
  /** Provider sends per second; undefined = unlimited. */
  readonly ratePerSecond: number | undefined;
  /** Provider sends this delivery costs (push: one per token). @default 1 */
  readonly cost?: number;
  readonly leaseMs: number;
}

export type AdmitResult =
  | { readonly kind: 'ok'; readonly capKey: string }
  | { readonly kind: 'done'; readonly delivery: Delivery }
  | { readonly kind: 'busy'; readonly retryInMs: number }
  | { readonly kind: 'cap'; readonly used: number; readonly capKey: string }
  | { readonly kind: 'rate'; readonly retryInMs: number };

export async function admit(redis: Redis, req: AdmitRequest): Promise<AdmitResult> {
  const { day, msToEnd } = localDay(req.now, req.timezone);
  const cap = capKey(req.channel, req.customerId, day);
  const rate = req.ratePerSecond ?? 0;
  const reply = (await admitScript(
    redis,
    deliveryKey(req.deliveryId),
    claimKey(req.deliveryId),
    cap,
    rateKey(req.channel),
    req.owner,
    String(req.leaseMs),
    String(req.capLimit ?? -1),
    String(msToEnd),
    String(rate),
    String(Math.max(1, rate)),
    String(req.cost ?? 1),
  )) as [string, string];
  const [kind, arg] = reply;
  switch (kind) {
    case 'ok':
      return { kind: 'ok', capKey: cap };
    case 'done':
      return { kind: 'done', delivery: JSON.parse(arg) as Delivery };
    case 'busy':
      return { kind: 'busy', retryInMs: Math.max(20, Math.min(Number(arg), 250)) };
    case 'cap':
      return { kind: 'cap', used: Number(arg), capKey: cap };
    default:
      return { kind: 'rate', retryInMs: Math.max(1, Number(arg)) };
  }
}

/** Stores the result (first one wins), releases the lease, gives the cap back when nothing was sent. */
export async function finish(redis: Redis, opts: { delivery: Delivery; owner: string; capKey: string | undefined; dedupeTtlMs: number }): Promise<Delivery> {
  const release = opts.delivery.status !== 'SENT' && opts.capKey !== undefined ? '1' : '0';
  const stored = (await finishScript(
    redis,
    deliveryKey(opts.delivery.deliveryId),
    claimKey(opts.delivery.deliveryId),
    opts.capKey ?? 'kairos:cap:none',
    opts.owner,
    JSON.stringify(opts.delivery),
    String(opts.dedupeTtlMs),
    release,
  )) as string;
  // '' = this result was stored now (the common case: no need to read back what was just sent); otherwise the
  // result stored first, which wins.
  return stored === '' ? opts.delivery : (JSON.parse(stored) as Delivery);
}
