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
import { redisScript, redisScriptWithKeys, turnBatcher } from './redis-client.js';

// The pieces of `admit` (below) that `admitAndWrite` shares, over K (its keys) and A (its arguments): a decided
// delivery answers 'done'; then the cap and the token bucket are checked and, when both allow, the contact
// counted and the tokens taken.
const IF_DECIDED = `
local done = redis.call('GET', K[1])
if done then return {'done', done} end
`;
const CAP_AND_RATE = `
local limit = tonumber(A[3])
if limit >= 0 then
  local used = tonumber(redis.call('GET', K[3]) or '0')
  if used >= limit then return {'cap', tostring(used)} end
end
local rate = tonumber(A[5])
if rate > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local burst = tonumber(A[6])
  local cost = math.min(tonumber(A[7]), burst)
  local b = redis.call('HMGET', K[4], 'tokens', 'at')
  local tokens = tonumber(b[1]) or burst
  local at = tonumber(b[2]) or now
  if now > at then tokens = math.min(burst, tokens + (now - at) * rate / 1000) end
  if tokens < cost then
    return {'rate', tostring(math.ceil((cost - tokens) * 1000 / rate))}
  end
  redis.call('HSET', K[4], 'tokens', tostring(tokens - cost), 'at', tostring(math.max(now, at)))
  redis.call('PEXPIRE', K[4], math.ceil(burst * 1000 / rate) + 1000)
end
if limit >= 0 then
  redis.call('INCR', K[3])
  redis.call('PEXPIRE', K[3], A[4])
end
`;

const ADMIT = `local K, A = KEYS, ARGV
${IF_DECIDED}
local claim = redis.call('GET', K[2])
if claim then
  if claim == A[1] then
    redis.call('PEXPIRE', K[2], A[2])
    return {'ok', ''}
  end
  return {'busy', tostring(redis.call('PTTL', K[2]))}
end
${CAP_AND_RATE}
redis.call('SET', K[2], A[1], 'PX', A[2])
return {'ok', ''}
`;

// admit, the send when the send is itself a Redis write (a hash field K[5] kept at least A[10] ms: onsite), and
// finish's store of the SENT result, as one atomic step per delivery: nothing to lease, nothing to release, no
// step between that an outage could split. Run again after a lost reply, it answers 'done' with the result
// stored the first time. Several deliveries per call (the ones of one event-loop turn): 5 keys and 12 arguments
// each, one reply each.
const ADMIT_AND_WRITE = `
local function one(K, A)
${IF_DECIDED}
  local claim = redis.call('GET', K[2])
  if claim and claim ~= A[1] then return {'busy', tostring(redis.call('PTTL', K[2]))} end
  if not claim then
${CAP_AND_RATE}
  end
  redis.call('HSET', K[5], A[8], A[9])
  local want = tonumber(A[10])
  if redis.call('PTTL', K[5]) < want then redis.call('PEXPIRE', K[5], want) end
  redis.call('SET', K[1], A[11], 'PX', A[12])
  if claim then redis.call('DEL', K[2]) end
  return {'sent', ''}
end
local out = {}
for i = 0, #KEYS / 5 - 1 do
  local k, a = i * 5, i * 12
  out[i + 1] = one({KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]},
    {ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], ARGV[a + 9], ARGV[a + 10], ARGV[a + 11], ARGV[a + 12]})
end
return out
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
const admitAndWriteScript = redisScriptWithKeys(ADMIT_AND_WRITE);
/** The admitAndWrite calls of one turn in one script call (keys then arguments of each, one reply each). */
const admitAndWriteInTurn = turnBatcher<{ readonly keys: readonly string[]; readonly args: readonly string[] }, [string, string]>(async (redis, requests) => {
  const keys: string[] = [];
  const args: string[] = [];
  for (const r of requests) {
    keys.push(...r.keys);
    args.push(...r.args);
  }
  return (await admitAndWriteScript(redis, keys.length, ...keys, ...args)) as [string, string][];
});
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
  // Offsets and their changes are whole minutes, so one reading per zone and UTC minute serves every delivery
  // in that minute (formatting the wall clock costs several µs, per delivery before).
  const minute = Math.floor(at / 60_000);
  let m = lastMinute.get(timezone);
  if (m === undefined || m.minute !== minute) {
    m = minuteOf(minute, timezone);
    lastMinute.set(timezone, m);
  }
  if (m.msToEndAtStart === undefined) return readDay(at, timezone);
  return { day: m.day, msToEnd: m.msToEndAtStart - (at - minute * 60_000) };
}

/** Per zone: its day at the start of the current UTC minute and ms from there to the day's end (+1 h). */
const lastMinute = new Map<string, { readonly minute: number; readonly day: string; readonly msToEndAtStart: number | undefined }>();

function minuteOf(minute: number, timezone: string): { minute: number; day: string; msToEndAtStart: number | undefined } {
  const start = minute * 60_000;
  const w = wallClock(start, timezone);
  if (w === undefined) throw new RangeError(`not a time zone: ${timezone}`);
  const { day, msToEnd } = readDay(start, timezone);
  // A zone whose offset has seconds (none today) is read per call.
  return { minute, day, msToEndAtStart: w.second === 0 ? msToEnd : undefined };
}

function readDay(at: number, timezone: string): { day: string; msToEnd: number } {
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

/** The admit scripts' common arguments: KEYS[1..4], ARGV[1..7]. */
function admitArgs(req: AdmitRequest): { cap: string; keys: string[]; args: string[] } {
  const { day, msToEnd } = localDay(req.now, req.timezone);
  const cap = capKey(req.channel, req.customerId, day);
  const rate = req.ratePerSecond ?? 0;
  return {
    cap,
    keys: [deliveryKey(req.deliveryId), claimKey(req.deliveryId), cap, rateKey(req.channel)],
    args: [req.owner, String(req.leaseMs), String(req.capLimit ?? -1), String(msToEnd), String(rate), String(Math.max(1, rate)), String(req.cost ?? 1)],
  };
}

function admitResult(reply: [string, string], cap: string): AdmitResult {
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

export async function admit(redis: Redis, req: AdmitRequest): Promise<AdmitResult> {
  const { cap, keys, args } = admitArgs(req);
  return admitResult((await admitScript(redis, ...keys, ...args)) as [string, string], cap);
}

/** A send that is one Redis write: a field of a hash, the hash kept at least `ttlMs` (onsite placements). */
export interface RedisWrite {
  readonly key: string;
  readonly field: string;
  readonly value: string;
  readonly ttlMs: number;
}

/**
 * `admit`, the write and `finish` of `sent` (the delivery's SENT result), atomically in one script: `sent` when
 * the write was made now, otherwise what `admit` answers (`done` with the stored result, also when a reply of an
 * earlier run of this was lost; `cap`, `rate`, `busy`). Nothing is leased, so nothing needs releasing.
 */
export async function admitAndWrite(
  redis: Redis,
  req: AdmitRequest,
  write: RedisWrite,
  sent: Delivery,
  dedupeTtlMs: number,
): Promise<Exclude<AdmitResult, { readonly kind: 'ok' }> | { readonly kind: 'sent' }> {
  const { cap, keys, args } = admitArgs(req);
  keys.push(write.key);
  args.push(write.field, write.value, String(Math.max(1, write.ttlMs)), JSON.stringify(sent), String(dedupeTtlMs));
  const reply = await admitAndWriteInTurn(redis, { keys, args });
  if (reply[0] === 'sent') return { kind: 'sent' };
  const r = admitResult(reply, cap);
  if (r.kind === 'ok') throw new TypeError('admitAndWrite: the script answered ok');
  return r;
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
