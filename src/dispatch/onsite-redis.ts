/**
 * Onsite placements: what the shop shows the customer on its next page view. Each delivery writes one field of
 * the hash `kairos:placements:<customerId>` (field = triggerId, value = the placement JSON with its expiresAt);
 * the hash lives as long as its longest-lived placement. `readPlacements` is what the query API calls for
 * `GET /v1/customers/:id/placements`: one HGETALL, expired entries filtered out (and removed), newest first.
 */
import type { Redis } from 'ioredis';
import type { CustomerProfile, TriggerType } from '../../schemas/contract.js';
import type { ChannelSender, SendContext, SendOutcome } from './channel.js';
import { redisScript } from './redis-client.js';
import type { RedisWrite } from './redis-guards.js';
import { placementsKey } from './state-view.js';
import { render } from './templates.js';

export { placementsKey };

export interface Placement {
  readonly placementId: string;
  readonly triggerId: string;
  readonly type: TriggerType;
  readonly campaignId: string;
  readonly variant: string;
  readonly title: string;
  readonly body: string;
  readonly link: string;
  readonly language: string;
  readonly payload: Readonly<Record<string, unknown>>;
  readonly createdAt: number;
  readonly expiresAt: number;
}

// Sets the field and extends (never shortens) the hash's time to live.
const PUT = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
local want = tonumber(ARGV[3])
if ttl < want then redis.call('PEXPIRE', KEYS[1], want) end
return 1
`;
const putScript = redisScript('kairosPutPlacement', 1, PUT);

export async function writePlacement(redis: Redis, customerId: string, p: Placement, now: number): Promise<void> {
  await putScript(redis, placementsKey(customerId), p.triggerId, JSON.stringify(p), String(Math.max(1, p.expiresAt - now)));
}

/** The customer's live placements, newest first. */
export async function readPlacements(redis: Redis, customerId: string, now: number = Date.now()): Promise<Placement[]> {
  const all = await redis.hgetall(placementsKey(customerId));
  const live: Placement[] = [];
  const expired: string[] = [];
  for (const [field, raw] of Object.entries(all)) {
    let p: Placement;
    try {
      p = JSON.parse(raw) as Placement;
    } catch {
      expired.push(field);
      continue;
    }
    if (p.expiresAt <= now) expired.push(field);
    else live.push(p);
  }
  if (expired.length > 0) await redis.hdel(placementsKey(customerId), ...expired);
  return live.sort((a, b) => b.createdAt - a.createdAt || a.triggerId.localeCompare(b.triggerId));
}

export class OnsiteRedisSender implements ChannelSender {
  readonly channel = 'onsite' as const;
  readonly #redis: Redis;
  readonly #shopUrl: string;

  constructor(redis: Redis, shopUrl: string) {
    this.#redis = redis;
    this.#shopUrl = shopUrl;
  }

  unreachable(_profile: CustomerProfile): string | undefined {
    return undefined;
  }

  cost(): number {
    return 1;
  }

  /** The placement as one hash-field write (the dispatcher makes it in its admission script). */
  redisWrite(ctx: SendContext): RedisWrite & { readonly providerMessageId: string } {
    const t = ctx.trigger;
    const r = render({ trigger: t, live: ctx.live, locale: ctx.profile.locale, shopUrl: this.#shopUrl });
    const placement: Placement = {
      placementId: ctx.deliveryId,
      triggerId: t.triggerId,
      type: t.type,
      campaignId: t.campaignId,
      variant: t.variant,
      title: r.subject,
      body: r.short,
      link: r.link,
      language: r.language,
      payload: t.payload,
      createdAt: ctx.now,
      expiresAt: t.expiresAt,
    };
    const key = placementsKey(t.customerId);
    return { key, field: t.triggerId, value: JSON.stringify(placement), ttlMs: Math.max(1, t.expiresAt - ctx.now), providerMessageId: `${key}#${t.triggerId}` };
  }

  /** The same write on its own (a dispatcher that does not use `redisWrite`). */
  async send(ctx: SendContext): Promise<SendOutcome> {
    const w = this.redisWrite(ctx);
    // A Redis error here propagates: the dispatcher treats it as an outage (pause) like any other Redis call.
    await putScript(this.#redis, w.key, w.field, w.value, String(w.ttlMs));
    return { status: 'sent', providerMessageId: w.providerMessageId };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
