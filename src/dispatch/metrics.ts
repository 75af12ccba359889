/** Prometheus metrics of the dispatchers (`kairos_dispatch_…`). */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface DispatchMetrics {
  readonly triggers: Counter<'result'>;
  readonly deliveries: Counter<'channel' | 'status' | 'reason'>;
  readonly sends: Counter<'channel'>;
  readonly failures: Counter<'channel' | 'kind'>;
  readonly sendSeconds: Histogram<'channel'>;
  readonly deliverySeconds: Histogram<'channel'>;
  readonly capsHit: Counter<'channel'>;
  readonly rateWaits: Counter<'channel'>;
  readonly retries: Counter<'channel'>;
  readonly deadLetters: Counter<'channel'>;
  readonly tokenFeedback: Counter<'reason'>;
  readonly stateUpdates: Counter<'topic'>;
  readonly redisPaused: Gauge;
}

export function dispatchMetrics(registry: Registry): DispatchMetrics {
  const registers = [registry];
  const buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  return {
    triggers: new Counter({ name: 'kairos_dispatch_triggers_total', help: 'Triggers consumed, by result (dispatched, invalid)', labelNames: ['result'], registers }),
    deliveries: new Counter({ name: 'kairos_dispatch_deliveries_total', help: 'Delivery results, by channel, status (SENT, FAILED, SKIPPED) and reason', labelNames: ['channel', 'status', 'reason'], registers }),
    sends: new Counter({ name: 'kairos_dispatch_sends_total', help: 'Provider calls that delivered, by channel', labelNames: ['channel'], registers }),
    failures: new Counter({ name: 'kairos_dispatch_failures_total', help: 'Provider calls that failed, by channel and kind (transient, permanent)', labelNames: ['channel', 'kind'], registers }),
    sendSeconds: new Histogram({ name: 'kairos_dispatch_send_duration_seconds', help: 'Provider call latency, by channel', labelNames: ['channel'], buckets, registers }),
    deliverySeconds: new Histogram({
      name: 'kairos_dispatch_delivery_duration_seconds',
      help: 'Time from a delivery\'s start to its result (guards, rate waits, retries, provider calls), by channel',
      labelNames: ['channel'],
      buckets,
      registers,
    }),
    capsHit: new Counter({ name: 'kairos_dispatch_caps_hit_total', help: 'Deliveries skipped by the per-customer daily contact cap, by channel', labelNames: ['channel'], registers }),
    rateWaits: new Counter({ name: 'kairos_dispatch_rate_waits_total', help: 'Waits for a provider send-rate token, by channel', labelNames: ['channel'], registers }),
    retries: new Counter({ name: 'kairos_dispatch_retries_total', help: 'Provider calls repeated after a transient error, by channel', labelNames: ['channel'], registers }),
    deadLetters: new Counter({ name: 'kairos_dispatch_dead_letters_total', help: 'Failed deliveries written to crm.triggers.v1.dlq, by channel', labelNames: ['channel'], registers }),
    tokenFeedback: new Counter({ name: 'kairos_dispatch_token_feedback_total', help: 'Push tokens reported on crm.push-token-feedback.v1, by reason', labelNames: ['reason'], registers }),
    stateUpdates: new Counter({ name: 'kairos_dispatch_state_updates_total', help: 'Profile and catalog records applied to the Redis view, by topic', labelNames: ['topic'], registers }),
    redisPaused: new Gauge({ name: 'kairos_dispatch_redis_paused', help: '1 while dispatch waits for Redis to come back', registers }),
  };
}
