/**
 * Composes `kairos dispatch`: Redis (with the outage gate), the channel senders (one firebase app per process),
 * the dispatcher, the Kafka consumer and the /metrics + health server.
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import type { Credential } from 'firebase-admin/app';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Channel } from '../../schemas/contract.js';
import { startHttpServer } from '../http/server.js';
import { createKafka, type KafkaSecurity } from '../kafka/client.js';
import { DispatchConsumer } from '../kafka/dispatch-consumer.js';
import { AvroSerde, JsonSerde, type TopicSerde } from '../kafka/serde.js';
import type { ChannelSender } from './channel.js';
import type { DispatchConfig } from './config.js';
import { Dispatcher } from './dispatcher.js';
import { SmtpEmailSender } from './email-smtp.js';
import { dispatchMetrics } from './metrics.js';
import { OnsiteRedisSender } from './onsite-redis.js';
import { FcmPushSender } from './push-fcm.js';
import { createRedis, redisGate } from './redis-client.js';
import { putCatalog, putProfile } from './state-view.js';
import { WebhookSender } from './webhook.js';

export interface DispatchOverrides {
  /** FCM credential (tests: a fake access token); default from GOOGLE_APPLICATION_CREDENTIALS or ADC. */
  readonly fcmCredential?: Credential;
  /** Heartbeat and session timeouts of the consumer group (tests shorten them). */
  readonly sessionTimeout?: number;
  readonly heartbeatInterval?: number;
  readonly registry?: Registry;
  /** TLS and SASL to the brokers (`kairos dispatch` takes them from the KAFKA_SSL* / KAFKA_SASL_* variables). */
  readonly kafkaSecurity?: KafkaSecurity;
}

export interface DispatchApp {
  readonly address: string;
  readonly registry: Registry;
  readonly redis: Redis;
  readonly dispatcher: Dispatcher;
  readonly senders: Readonly<Partial<Record<Channel, ChannelSender>>>;
  stop(): Promise<void>;
}

export async function startDispatch(config: DispatchConfig, logger: Logger, overrides: DispatchOverrides = {}): Promise<DispatchApp> {
  const registry = overrides.registry ?? new Registry();
  if (overrides.registry === undefined) collectDefaultMetrics({ register: registry });
  const metrics = dispatchMetrics(registry);
  const log = logger.child({ component: 'dispatch' });
  const redis = createRedis(config.redisUrl);
  const gate = redisGate({ logger: log, onPause: (p) => metrics.redisPaused.set(p ? 1 : 0) });
  await gate.run(() => redis.ping());

  const senders: Partial<Record<Channel, ChannelSender>> = {};
  const on = (c: Channel): boolean => config.channels.includes(c);
  if (on('push')) {
    senders.push = new FcmPushSender({
      projectId: config.fcmProjectId as string,
      ...(overrides.fcmCredential ? { credential: overrides.fcmCredential } : {}),
      ...(config.fcmCredentials ? { credentialsFile: config.fcmCredentials } : {}),
      ...(config.fcmConnectTo ? { connectTo: config.fcmConnectTo } : {}),
      ...(config.fcmCaFile ? { ca: readFileSync(config.fcmCaFile) } : {}),
      shopUrl: config.shopUrl,
    });
  }
  if (on('email')) senders.email = new SmtpEmailSender({ url: config.smtpUrl as string, from: config.emailFrom, shopUrl: config.shopUrl });
  if (on('onsite')) senders.onsite = new OnsiteRedisSender(redis, config.shopUrl);
  if (on('webhook')) senders.webhook = new WebhookSender({ url: config.webhookUrl as string, secret: config.webhookSecret as string, timeoutMs: config.webhookTimeoutMs });

  const dispatcher = new Dispatcher({
    redis,
    gate,
    senders,
    channels: config.channels,
    caps: config.caps,
    rates: config.rates,
    defaultTimezone: config.defaultTimezone,
    maxAttempts: config.maxAttempts,
    backoffMs: config.backoffMs,
    dedupeTtlMs: config.dedupeTtlMs,
    leaseMs: config.leaseMs,
    metrics,
    logger,
    instanceId: randomUUID(),
  });

  let serde: TopicSerde;
  if (config.serde === 'avro') {
    const avro = new AvroSerde({ registry: { host: config.schemaRegistryUrl as string } });
    await avro.init();
    serde = avro;
  } else serde = new JsonSerde();

  const kafka = createKafka({ brokers: config.brokers ?? [], clientId: config.clientId, logger, ...(overrides.kafkaSecurity ? { security: overrides.kafkaSecurity } : {}) });
  const consumer = new DispatchConsumer({
    kafka,
    groupId: config.groupId,
    serde,
    dispatcher,
    state: {
      profile: (id, p) => gate.run(() => putProfile(redis, id, p)),
      catalog: (e) => gate.run(() => putCatalog(redis, e)),
    },
    logger,
    idempotent: config.idempotent === 'true',
    maxWaitTimeInMs: config.maxWaitTimeInMs,
    concurrency: config.concurrency,
    profilesCatchUpMs: config.profilesCatchUpMs,
    ...(overrides.sessionTimeout ? { sessionTimeout: overrides.sessionTimeout } : {}),
    ...(overrides.heartbeatInterval ? { heartbeatInterval: overrides.heartbeatInterval } : {}),
    onTrigger: (result) => metrics.triggers.inc({ result }),
    onState: (topic) => metrics.stateUpdates.inc({ topic }),
  });
  const http = await startHttpServer({ registry, port: config.httpPort, host: config.httpHost, ready: () => consumer.running && !gate.paused });
  await consumer.start();
  log.info({ channels: config.channels, group: config.groupId, http: http.address }, 'dispatch running');

  return {
    address: http.address,
    registry,
    redis,
    dispatcher,
    senders,
    async stop() {
      // Waiting deliveries give up (their offsets stay uncommitted, so they come again) rather than block the stop.
      gate.close();
      await consumer.stop();
      await Promise.all(Object.values(senders).map((s) => s.close()));
      await http.server.close();
      redis.disconnect();
    },
  };
}
