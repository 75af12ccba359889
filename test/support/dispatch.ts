/** Builders for dispatcher tests: triggers, profiles, and a dispatcher wired to local endpoints. */
import { createHash } from 'node:crypto';
import { Registry } from 'prom-client';
import type { Redis } from 'ioredis';
import type { Channel, CustomerProfile, Trigger } from '../../schemas/contract.js';
import type { ChannelSender } from '../../src/dispatch/channel.js';
import { Dispatcher, type DispatcherOptions } from '../../src/dispatch/dispatcher.js';
import { dispatchMetrics, type DispatchMetrics } from '../../src/dispatch/metrics.js';
import { redisGate, type RedisGate } from '../../src/dispatch/redis-client.js';
import { silent } from './kafka.js';

export const hex32 = (s: string): string => createHash('md5').update(s).digest('hex');

export function makeTrigger(n: number | string, over: Partial<Trigger> = {}): Trigger {
  const now = Date.now();
  return {
    triggerId: hex32(`trigger-${n}`),
    type: 'BASKET_ABANDONED',
    customerId: `c${n}`,
    occurredAt: now - 1000,
    campaignId: 'ba-2026',
    variant: 'A',
    channels: ['email'],
    causedBy: { eventId: `e${n}`, topic: 'shop.basket.v1', partition: 0, offset: String(parseInt(hex32(String(n)).slice(0, 8), 16)) },
    explanation: { rule: 'test', params: {}, observed: {} },
    payload: { items: [{ sku: 's1', quantity: 1 }] },
    expiresAt: now + 3600_000,
    ...over,
  };
}

export function makeProfile(customerId: string, over: Partial<CustomerProfile> = {}): CustomerProfile {
  return {
    customerId,
    updatedAt: 1,
    timezone: 'Europe/Berlin',
    locale: 'en-GB',
    consents: { push: true, email: true, onsite: true },
    pushTokens: [{ token: `tok-${customerId}`, platform: 'android' }],
    email: `${customerId}@example.com`,
    segments: [],
    attributes: {},
    ...over,
  };
}

export interface TestDispatcher {
  readonly dispatcher: Dispatcher;
  readonly metrics: DispatchMetrics;
  readonly registry: Registry;
  readonly gate: RedisGate;
}

export function testDispatcher(redis: Redis, senders: Partial<Record<Channel, ChannelSender>>, over: Partial<DispatcherOptions> = {}): TestDispatcher {
  const registry = new Registry();
  const metrics = dispatchMetrics(registry);
  const gate = redisGate({ logger: silent, maxDelayMs: 200 });
  const dispatcher = new Dispatcher({
    redis,
    gate,
    senders,
    channels: ['push', 'email', 'onsite', 'webhook'],
    caps: {},
    rates: {},
    defaultTimezone: 'Europe/Berlin',
    maxAttempts: 4,
    backoffMs: 5,
    dedupeTtlMs: 3600_000,
    leaseMs: 30_000,
    metrics,
    logger: silent,
    ...over,
  });
  return { dispatcher, metrics, registry, gate };
}

/** The value of one labelled series of a counter in the registry (0 when absent). */
export async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  const data = await m.get();
  return data.values
    .filter((v) => Object.entries(labels).every(([k, val]) => String((v.labels as Record<string, unknown>)[k]) === val))
    .reduce((sum, v) => sum + v.value, 0);
}
