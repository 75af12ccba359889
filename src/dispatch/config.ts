/**
 * Configuration of `kairos dispatch`, read from environment variables. As in src/config/runtime.ts the schema is
 * the single source: validation (every bad variable named at once, KAIROS_ERR_CONFIG), defaults, and the
 * README's table (`dispatchConfigurationTable()`, checked by a test).
 */
import { readFileSync } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import { Bool, envVar, envVarsTable, HostPort, readEnvVars, secretVar, urlVar } from '../config/env.js';
import type { Channel } from '../../schemas/contract.js';
import { KairosError } from '../errors.js';
import { isTimeZone } from '../util/local-time.js';

const v = envVar;
const CHANNEL = '(push|email|onsite|webhook)';
const ChannelList = Type.String({ pattern: `^${CHANNEL}(,${CHANNEL})*$` });
const ChannelNumbers = Type.String({ pattern: `^(${CHANNEL}=[0-9]+(,${CHANNEL}=[0-9]+)*)?$` });

export const DISPATCH_VARS = {
  brokers: v('KAFKA_BROKERS', Type.Array(HostPort, { minItems: 1 }), 'Kafka bootstrap servers, comma-separated host:port'),
  clientId: v('KAFKA_CLIENT_ID', Type.String({ minLength: 1 }), 'Kafka client id', 'kairos-dispatch'),
  idempotent: v('KAFKA_IDEMPOTENT', Bool, 'idempotent producer (turn off only for brokers without it, like the mock cluster)', 'true'),
  maxWaitTimeInMs: v('KAFKA_MAX_WAIT_MS', Type.Integer({ minimum: 1, maximum: 60_000 }), 'longest fetch wait', 500),
  groupId: v('KAIROS_DISPATCH_GROUP', Type.String({ pattern: '^[a-zA-Z0-9._-]{1,200}$' }), 'consumer group of the dispatchers (crm.triggers.v1, crm.customers.v1, shop.catalog.v1)', 'kairos-dispatch'),
  serde: v('KAIROS_SERDE', Type.Union([Type.Literal('json'), Type.Literal('avro')]), 'wire format of input and output topics', 'json'),
  schemaRegistryUrl: urlVar('SCHEMA_REGISTRY_URL', ['http', 'https'], 'Confluent-compatible Schema Registry (required for avro)'),
  redisUrl: urlVar('REDIS_URL', ['redis', 'rediss'], 'Redis for idempotency, caps, send rates, profiles, catalog view and onsite placements', 'redis://127.0.0.1:6379'),
  channels: v('KAIROS_DISPATCH_CHANNELS', ChannelList, 'channels this instance delivers; a trigger\'s other channels are skipped with reason channel-disabled', 'push,email,onsite,webhook'),
  caps: v('KAIROS_DISPATCH_CAPS', ChannelNumbers, 'contacts per customer, channel and day in the customer\'s time zone (absent channel: no cap)', 'push=3,email=2,onsite=20'),
  rates: v('KAIROS_DISPATCH_RATES', ChannelNumbers, 'provider send rate per channel, per second over all instances (token bucket, burst = one second; absent: unlimited)', 'push=500,email=50,webhook=100'),
  defaultTimezone: v('KAIROS_DEFAULT_TIMEZONE', Type.String({ minLength: 1 }), 'time zone of customers without one (for the daily caps)', 'Europe/Berlin'),
  maxAttempts: v('KAIROS_DISPATCH_MAX_ATTEMPTS', Type.Integer({ minimum: 1, maximum: 100 }), 'provider calls per delivery before it fails with retries-exhausted', 5),
  backoffMs: v('KAIROS_DISPATCH_BACKOFF_MS', Type.Integer({ minimum: 1, maximum: 60_000 }), 'first retry delay, doubled per attempt with jitter, at most 30 s', 200),
  concurrency: v('KAIROS_DISPATCH_CONCURRENCY', Type.Integer({ minimum: 1, maximum: 5000 }), 'triggers dispatched at once per partition batch (more in flight: more commands per Redis write, larger sendEach batches)', 256),
  dedupeTtlMs: v('KAIROS_DISPATCH_DEDUPE_TTL_MS', Type.Integer({ minimum: 60_000 }), 'how long a delivery result is kept by triggerId and channel (redeliveries within it are not sent again)', 7 * 24 * 3600_000),
  profilesCatchUpMs: v('KAIROS_DISPATCH_PROFILES_CATCHUP_MS', Type.Integer({ minimum: 0 }), 'at start, triggers wait at most this long for the group to read crm.customers.v1 up to its end', 60_000),
  leaseMs: v('KAIROS_DISPATCH_LEASE_MS', Type.Integer({ minimum: 1000 }), 'how long one instance owns a delivery in progress before another may take it over', 300_000),
  fcmProjectId: v('FCM_PROJECT_ID', Type.String({ minLength: 1 }), 'Firebase project id (required for push)'),
  fcmCredentials: v('GOOGLE_APPLICATION_CREDENTIALS', Type.String({ minLength: 1 }), 'service-account JSON file for FCM; application default credentials when unset'),
  fcmConnectTo: v('KAIROS_FCM_CONNECT_TO', HostPort, 'connect to this host:port instead of fcm.googleapis.com (TLS name stays fcm.googleapis.com; HTTP/1.1); for proxies and tests'),
  fcmCaFile: v('KAIROS_FCM_CA_FILE', Type.String({ minLength: 1 }), 'extra CA certificate (PEM) trusted for FCM, with KAIROS_FCM_CONNECT_TO'),
  smtpUrl: urlVar('SMTP_URL', ['smtp', 'smtps'], 'SMTP server, e.g. smtp://user:pass@mail:587 (required for email)'),
  emailFrom: v('KAIROS_EMAIL_FROM', Type.String({ minLength: 3 }), 'sender address of emails', 'Kairos <no-reply@example.com>'),
  shopUrl: urlVar('KAIROS_SHOP_URL', ['http', 'https'], 'base URL for product and basket links in messages', 'https://shop.example.com'),
  webhookUrl: urlVar('KAIROS_WEBHOOK_URL', ['http', 'https'], 'partner endpoint for the webhook channel (required for webhook)'),
  webhookSecret: secretVar('KAIROS_WEBHOOK_SECRET', Type.String({ minLength: 16 }), 'HMAC-SHA256 key signing webhook requests (required with KAIROS_WEBHOOK_URL)'),
  webhookTimeoutMs: v('KAIROS_WEBHOOK_TIMEOUT_MS', Type.Integer({ minimum: 100, maximum: 120_000 }), 'webhook request timeout', 5000),
  httpPort: v('KAIROS_HTTP_PORT', Type.Integer({ minimum: 0, maximum: 65535 }), 'port of /metrics and health endpoints (0 = any free port)', 9465),
  httpHost: v(
    'KAIROS_HTTP_HOST',
    Type.String({ pattern: '^[A-Za-z0-9.:-]{1,253}$' }),
    'address the HTTP server (/metrics, health) listens on: 0.0.0.0 = every interface (containers), 127.0.0.1 = this machine only',
    '0.0.0.0',
  ),
  logLevel: v('KAIROS_LOG_LEVEL', Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace'].map((l) => Type.Literal(l))), 'log level', 'info'),
} as const;

type Vars = typeof DISPATCH_VARS;
type RawConfig = {
  readonly [K in keyof Vars]: Vars[K]['default'] extends undefined ? Static<Vars[K]['schema']> | undefined : Static<Vars[K]['schema']>;
};

export interface DispatchConfig extends Omit<RawConfig, 'channels' | 'caps' | 'rates'> {
  readonly channels: readonly Channel[];
  /** Contacts per customer and local day, by channel; a channel without an entry has no cap. */
  readonly caps: Readonly<Partial<Record<Channel, number>>>;
  /** Sends per second over all instances, by channel; a channel without an entry is not limited. */
  readonly rates: Readonly<Partial<Record<Channel, number>>>;
}

function channelNumbers(raw: string): Partial<Record<Channel, number>> {
  const out: Partial<Record<Channel, number>> = {};
  for (const part of raw.split(',').filter((p) => p !== '')) {
    const [name, n] = part.split('=') as [Channel, string];
    out[name] = Number(n);
  }
  return out;
}

/** Reads and validates the environment; throws KAIROS_ERR_CONFIG naming every bad or missing variable. */
export function loadDispatchConfig(env: NodeJS.ProcessEnv = process.env): DispatchConfig {
  const { values: out, errors } = readEnvVars(DISPATCH_VARS, env, { required: ['brokers'], lists: ['brokers'], trim: true });
  const channels = typeof out.channels === 'string' ? [...new Set(out.channels.split(','))] as Channel[] : [];
  if (typeof out.defaultTimezone === 'string' && !isTimeZone(out.defaultTimezone)) errors.push(`KAIROS_DEFAULT_TIMEZONE=${JSON.stringify(out.defaultTimezone)}: not an IANA time zone`);
  if (channels.includes('push') && out.fcmProjectId === undefined) errors.push('FCM_PROJECT_ID: required when push is in KAIROS_DISPATCH_CHANNELS');
  if (channels.includes('email') && out.smtpUrl === undefined) errors.push('SMTP_URL: required when email is in KAIROS_DISPATCH_CHANNELS');
  if (channels.includes('webhook') && out.webhookUrl === undefined) errors.push('KAIROS_WEBHOOK_URL: required when webhook is in KAIROS_DISPATCH_CHANNELS');
  if (out.webhookUrl !== undefined && out.webhookSecret === undefined) errors.push('KAIROS_WEBHOOK_SECRET: required with KAIROS_WEBHOOK_URL');
  if (out.fcmCaFile !== undefined && out.fcmConnectTo === undefined) errors.push('KAIROS_FCM_CA_FILE: only used with KAIROS_FCM_CONNECT_TO');
  if (typeof out.fcmCaFile === 'string') {
    try {
      readFileSync(out.fcmCaFile);
    } catch (err) {
      errors.push(`KAIROS_FCM_CA_FILE=${JSON.stringify(out.fcmCaFile)}: cannot be read (${(err as Error).message})`);
    }
  }
  if (out.serde === 'avro' && out.schemaRegistryUrl === undefined) errors.push('SCHEMA_REGISTRY_URL: required when KAIROS_SERDE=avro');
  if (errors.length > 0) throw new KairosError('KAIROS_ERR_CONFIG', `invalid configuration:\n  ${errors.join('\n  ')}`, { details: { errors } });
  return Object.freeze({
    ...(out as RawConfig),
    channels,
    caps: Object.freeze(channelNumbers(String(out.caps))),
    rates: Object.freeze(channelNumbers(String(out.rates))),
  });
}

/** The configuration table for the README, generated from DISPATCH_VARS. */
export function dispatchConfigurationTable(): string {
  return envVarsTable(DISPATCH_VARS);
}
