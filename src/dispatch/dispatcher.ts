/**
 * One trigger in, one delivery result per channel out. For each channel, in this order:
 *
 * 1. a result already stored for the delivery (`kairos:delivery:<deliveryId>`, deliveryId = hash of triggerId and
 *    channel) is returned as it was: a redelivered trigger is never sent twice;
 * 2. skips that need no provider: channel not enabled here, expired, unknown profile, no consent (webhook needs
 *    none: partners are not a customer contact), no address, stale (the trigger's reason no longer holds with
 *    the live catalog — checked once per trigger for all its channels);
 * 3. `admit` in Redis: daily cap in the customer's time zone (skipped with reason `cap`), provider token bucket
 *    (waits), lease against other instances (waits);
 * 4. provider calls with retries and exponential backoff with jitter for transient errors; permanent errors
 *    and exhausted retries fail the delivery and are dead-lettered;
 * 5. `finish` in Redis stores the result (first result wins) before it is returned for crm.deliveries.v1.
 *
 * Every Redis call goes through the gate: during an outage the delivery waits where it is and carries on when
 * Redis is back, so a message is neither lost nor sent twice (a provider call that completed during the outage
 * has its result held in memory until `finish` can store it).
 */
import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Channel, CustomerProfile, Delivery, PushTokenFeedback, Trigger } from '../../schemas/contract.js';
import type { ChannelSender, SendContext, SendOutcome } from './channel.js';
import { errorText } from './channel.js';
import type { DispatchMetrics } from './metrics.js';
import { mgetInTurn, type RedisGate } from './redis-client.js';
import { admit, admitAndWrite, deliveryKey, finish, type AdmitResult } from './redis-guards.js';
import { checkStaleness, dropPushToken, parseProfile, profileKey, type Staleness } from './state-view.js';
import { isTimeZone } from '../util/local-time.js';

export const deliveryIdOf = (triggerId: string, channel: Channel): string => createHash('sha256').update(`${triggerId}:${channel}`).digest('hex').slice(0, 32);

export interface DispatcherOptions {
  readonly redis: Redis;
  readonly gate: RedisGate;
  readonly senders: Readonly<Partial<Record<Channel, ChannelSender>>>;
  /** Channels this instance delivers. */
  readonly channels: readonly Channel[];
  readonly caps: Readonly<Partial<Record<Channel, number>>>;
  readonly rates: Readonly<Partial<Record<Channel, number>>>;
  readonly defaultTimezone: string;
  readonly maxAttempts: number;
  readonly backoffMs: number;
  readonly dedupeTtlMs: number;
  readonly leaseMs: number;
  readonly metrics: DispatchMetrics;
  readonly logger: Logger;
  /** @default a random UUID */
  readonly instanceId?: string;
  /** @default Date.now */
  readonly now?: () => number;
}

export interface DeadLetter {
  readonly channel: Channel;
  readonly reason: string;
  readonly detail: string;
}

export interface DispatchOutput {
  /** One per channel of the trigger, in the trigger's channel order. */
  readonly deliveries: readonly Delivery[];
  readonly feedback: readonly PushTokenFeedback[];
  readonly deadLetters: readonly DeadLetter[];
}

const DEAD_REASONS = new Set(['permanent-error', 'retries-exhausted', 'no-valid-token']);
const MAX_BACKOFF_MS = 30_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function validTimezone(tz: string | undefined): tz is string {
  return tz !== undefined && isTimeZone(tz);
}

interface ChannelResult {
  readonly delivery: Delivery;
  readonly feedback: readonly { token: string; reason: 'unregistered' | 'invalid' }[];
}

export class Dispatcher {
  readonly #o: DispatcherOptions;
  readonly #instanceId: string;
  readonly #now: () => number;
  readonly #log: Logger;

  constructor(opts: DispatcherOptions) {
    this.#o = opts;
    this.#instanceId = opts.instanceId ?? randomUUID();
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger.child({ component: 'dispatcher' });
  }

  async dispatch(trigger: Trigger): Promise<DispatchOutput> {
    const { gate, redis } = this.#o;
    // One round trip for what the trigger needs to read: the profile and the stored result of every channel's
    // delivery (one MGET for all the triggers that start in the same turn), and the live catalog state.
    const ids = trigger.channels.map((channel) => deliveryIdOf(trigger.triggerId, channel));
    const keys = [profileKey(trigger.customerId), ...ids.map(deliveryKey)];
    const [values, staleness] = await Promise.all([gate.run(() => mgetInTurn(redis, keys)), gate.run(() => checkStaleness(redis, trigger))]);
    const profile = parseProfile(values[0]);
    if (staleness.stale) this.#log.info({ triggerId: trigger.triggerId, type: trigger.type, detail: staleness.detail }, 'trigger no longer holds: not sent');
    const results = await Promise.all(trigger.channels.map((channel, i) => this.#deliver(trigger, channel, ids[i] as string, profile, staleness, values[i + 1] ?? null)));
    const now = this.#now();
    const seen = new Set<string>();
    const feedback: PushTokenFeedback[] = [];
    for (const r of results) {
      for (const f of r.feedback) {
        if (seen.has(f.token)) continue;
        seen.add(f.token);
        feedback.push({ customerId: trigger.customerId, token: f.token, reason: f.reason, observedAt: now, triggerId: trigger.triggerId });
        this.#o.metrics.tokenFeedback.inc({ reason: f.reason });
        await gate.run(() => dropPushToken(redis, trigger.customerId, f.token));
      }
    }
    const deadLetters = results
      .filter((r) => r.delivery.status === 'FAILED' && DEAD_REASONS.has(r.delivery.reason))
      .map((r) => ({ channel: r.delivery.channel, reason: r.delivery.reason, detail: r.delivery.detail ?? r.delivery.reason }));
    for (const d of deadLetters) this.#o.metrics.deadLetters.inc({ channel: d.channel });
    return { deliveries: results.map((r) => r.delivery), feedback, deadLetters };
  }

  /** `existing`: the delivery's stored result (`kairos:delivery:<deliveryId>`) as read with the profile, or null. */
  async #deliver(trigger: Trigger, channel: Channel, deliveryId: string, profile: CustomerProfile | undefined, staleness: Staleness, existing: string | null): Promise<ChannelResult> {
    const { gate, redis, metrics } = this.#o;
    const started = performance.now();
    // One owner per delivery run: a second run of the same delivery, even in this process, waits for the first.
    const owner = `${this.#instanceId}:${randomUUID()}`;
    const base = {
      deliveryId,
      triggerId: trigger.triggerId,
      type: trigger.type,
      customerId: trigger.customerId,
      campaignId: trigger.campaignId,
      variant: trigger.variant,
      channel,
      triggeredAt: trigger.occurredAt,
    };
    const feedback: { token: string; reason: 'unregistered' | 'invalid' }[] = [];
    const conclude = async (d: Omit<Delivery, keyof typeof base | 'decidedAt'>, capKey: string | undefined): Promise<ChannelResult> => {
      const clipped = d.detail === undefined ? d : { ...d, detail: d.detail.slice(0, 1024) };
      const delivery: Delivery = { ...base, ...clipped, decidedAt: this.#now() };
      const stored = await gate.run(() => finish(redis, { delivery, owner, capKey, dedupeTtlMs: this.#o.dedupeTtlMs }));
      metrics.deliveries.inc({ channel, status: stored.status, reason: stored.reason });
      metrics.deliverySeconds.observe({ channel }, (performance.now() - started) / 1000);
      return { delivery: stored, feedback };
    };
    const skip = (reason: string, detail?: string): Promise<ChannelResult> =>
      conclude({ status: 'SKIPPED', reason, attempts: 0, ...(detail === undefined ? {} : { detail }) }, undefined);

    if (existing !== null) return { delivery: JSON.parse(existing) as Delivery, feedback };

    const sender = this.#o.senders[channel];
    if (!this.#o.channels.includes(channel) || sender === undefined) return skip('channel-disabled', `${channel} is not delivered by this dispatcher`);
    if (trigger.expiresAt <= this.#now()) return skip('expired', `expired at ${new Date(trigger.expiresAt).toISOString()}`);
    if (profile === undefined) return skip('no-profile', 'no crm.customers.v1 profile known for the customer');
    if (channel !== 'webhook' && !profile.consents[channel]) return skip('no-consent', `no ${channel} consent`);
    const unreachable = sender.unreachable(profile);
    if (unreachable !== undefined) return skip('no-address', unreachable);
    if (staleness.stale) return skip('stale', staleness.detail);

    const timezone = validTimezone(profile.timezone) ? profile.timezone : this.#o.defaultTimezone;
    const capLimit = this.#o.caps[channel];
    const admitOnce = () =>
      gate.run(() =>
        admit(redis, {
          deliveryId,
          owner,
          channel,
          customerId: trigger.customerId,
          timezone,
          now: this.#now(),
          capLimit,
          ratePerSecond: this.#o.rates[channel],
          cost: sender.cost(profile),
          leaseMs: this.#o.leaseMs,
        }),
      );
    /** An admission refused: the result to give (already sent, cap, expired), or undefined after waiting to try again. */
    const refused = async (a: Exclude<AdmitResult, { readonly kind: 'ok' }>): Promise<ChannelResult | undefined> => {
      if (a.kind === 'done') return { delivery: a.delivery, feedback };
      if (a.kind === 'cap') {
        metrics.capsHit.inc({ channel });
        return skip('cap', `${a.used} of ${String(capLimit)} ${channel} contacts today (${timezone})`);
      }
      if (a.kind === 'rate') metrics.rateWaits.inc({ channel });
      if (trigger.expiresAt <= this.#now()) return skip('expired', 'expired while waiting for a send slot');
      await sleep(a.retryInMs);
      return undefined;
    };
    if (sender.redisWrite !== undefined) {
      // The send is a Redis write (onsite): admission, the write and the stored result in one script.
      for (;;) {
        const now = this.#now();
        const w = sender.redisWrite({ trigger, profile, live: staleness.live, deliveryId, attempt: 1, now, done: new Set() });
        const sent: Delivery = { ...base, status: 'SENT', reason: 'ok', attempts: 1, providerMessageId: w.providerMessageId.slice(0, 512), decidedAt: now };
        const t0 = performance.now();
        const a = await gate.run(() =>
          admitAndWrite(
            redis,
            { deliveryId, owner, channel, customerId: trigger.customerId, timezone, now, capLimit, ratePerSecond: this.#o.rates[channel], cost: sender.cost(profile), leaseMs: this.#o.leaseMs },
            w,
            sent,
            this.#o.dedupeTtlMs,
          ),
        );
        if (a.kind === 'sent') {
          metrics.sendSeconds.observe({ channel }, (performance.now() - t0) / 1000);
          metrics.sends.inc({ channel });
          metrics.deliveries.inc({ channel, status: 'SENT', reason: 'ok' });
          metrics.deliverySeconds.observe({ channel }, (performance.now() - started) / 1000);
          return { delivery: sent, feedback };
        }
        const r = await refused(a);
        if (r !== undefined) return r;
      }
    }

    let capKey: string;
    for (;;) {
      const a = await admitOnce();
      if (a.kind === 'ok') {
        capKey = a.capKey;
        break;
      }
      const r = await refused(a);
      if (r !== undefined) return r;
    }

    const done = new Set<string>();
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1) {
        // Renews our lease (the owner re-running admit counts nothing again); someone may have taken over.
        const a = await admitOnce();
        if (a.kind === 'done') return { delivery: a.delivery, feedback };
      }
      const ctx: SendContext = { trigger, profile, live: staleness.live, deliveryId, attempt, now: this.#now(), done };
      const t0 = performance.now();
      let outcome: SendOutcome;
      try {
        outcome = channel === 'onsite' ? await gate.run(() => sender.send(ctx)) : await sender.send(ctx);
      } catch (err) {
        outcome = { status: 'failed', permanent: false, reason: 'transient-error', detail: errorText(err) };
      }
      metrics.sendSeconds.observe({ channel }, (performance.now() - t0) / 1000);
      if (outcome.feedback) feedback.push(...outcome.feedback);
      const detail = (d: string | undefined): { detail?: string } => (d === undefined ? {} : { detail: d });
      if (outcome.status === 'sent') {
        metrics.sends.inc({ channel });
        return conclude({ status: 'SENT', reason: 'ok', attempts: attempt, ...detail(outcome.detail), ...(outcome.providerMessageId ? { providerMessageId: outcome.providerMessageId.slice(0, 512) } : {}) }, capKey);
      }
      if (outcome.status === 'skipped') return conclude({ status: 'SKIPPED', reason: outcome.reason, attempts: attempt, ...detail(outcome.detail) }, capKey);
      metrics.failures.inc({ channel, kind: outcome.permanent ? 'permanent' : 'transient' });
      if (outcome.permanent) return conclude({ status: 'FAILED', reason: outcome.reason, attempts: attempt, detail: outcome.detail }, capKey);
      if (attempt >= this.#o.maxAttempts) return conclude({ status: 'FAILED', reason: 'retries-exhausted', attempts: attempt, detail: outcome.detail }, capKey);
      if (trigger.expiresAt <= this.#now()) return conclude({ status: 'FAILED', reason: 'expired', attempts: attempt, detail: `expired while retrying: ${outcome.detail}` }, capKey);
      metrics.retries.inc({ channel });
      const backoff = Math.min(MAX_BACKOFF_MS, this.#o.backoffMs * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      this.#log.debug({ triggerId: trigger.triggerId, channel, attempt, detail: outcome.detail }, 'transient failure, retrying');
      await sleep(Math.max(backoff, outcome.retryInMs ?? 0));
    }
  }
}
