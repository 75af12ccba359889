/**
 * Runtime configuration of `kairos start` and `kairos demo`, read from environment variables. The schema is the
 * single source: validation (every bad variable named), defaults, and the README's configuration table
 * (`configurationTable()`, checked by a test) all come from it.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Bool, envVar, envVarsTable, HostPort, readEnvVars, secretVar, urlVar } from './env.js';
import { KairosError } from '../errors.js';
import { statSync } from 'node:fs';
import { parseApiKeys } from '../api/auth.js';
import type { KafkaSecurity } from '../kafka/client.js';

const v = envVar;

export const RUNTIME_VARS = {
  brokers: v('KAFKA_BROKERS', Type.Array(HostPort, { minItems: 1 }), 'Kafka bootstrap servers, comma-separated host:port'),
  clientId: v('KAFKA_CLIENT_ID', Type.String({ minLength: 1 }), 'Kafka client id', 'kairos'),
  idempotent: v('KAFKA_IDEMPOTENT', Bool, 'idempotent producer (turn off only for brokers without it, like the mock cluster)', 'true'),
  processingGuarantee: v(
    'KAIROS_PROCESSING_GUARANTEE',
    Type.Union([Type.Literal('at_least_once'), Type.Literal('exactly_once')]),
    'at_least_once (repeats carry equal trigger ids) or exactly_once (Kafka transactions per task; needs a broker with transactions)',
    'at_least_once',
  ),
  kafkaSsl: v('KAFKA_SSL', Bool, 'TLS to the brokers', 'false'),
  kafkaSslCaFile: v('KAFKA_SSL_CA_FILE', Type.String({ minLength: 1 }), 'PEM file of the CA that signed the brokers\' certificates (system CAs when unset)'),
  kafkaSaslMechanism: v(
    'KAFKA_SASL_MECHANISM',
    Type.Union([Type.Literal('plain'), Type.Literal('scram-sha-256'), Type.Literal('scram-sha-512')]),
    'SASL authentication to the brokers (needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD; use with KAFKA_SSL=true)',
  ),
  kafkaSaslUsername: v('KAFKA_SASL_USERNAME', Type.String({ minLength: 1 }), 'SASL user name'),
  kafkaSaslPassword: secretVar('KAFKA_SASL_PASSWORD', Type.String({ minLength: 1 }), 'SASL password (from a secret; never logged)'),
  maxWaitTimeInMs: v('KAFKA_MAX_WAIT_MS', Type.Integer({ minimum: 1, maximum: 60_000 }), 'longest fetch wait; also the longest a record waits, after records stop coming, for a fetch to confirm that an empty input of its task has nothing older (see *Record order*)', 500),
  sessionTimeout: v('KAFKA_SESSION_TIMEOUT_MS', Type.Integer({ minimum: 1000, maximum: 300_000 }), 'consumer group session timeout: how soon a dead instance\'s tasks move', 30_000),
  heartbeatInterval: v('KAFKA_HEARTBEAT_MS', Type.Integer({ minimum: 100, maximum: 60_000 }), 'consumer group heartbeat interval (well below the session timeout)', 3000),
  applicationId: v('KAIROS_APPLICATION_ID', Type.String({ pattern: '^[a-zA-Z0-9._-]{1,100}$' }), 'application id: consumer group `kairos-<id>`, changelog topics `<id>-<store>-changelog`', 'kairos'),
  stateDir: v('KAIROS_STATE_DIR', Type.String({ minLength: 1 }), 'directory of the RocksDB task databases', './.kairos-state'),
  campaigns: v('KAIROS_CAMPAIGNS', Type.String({ minLength: 1 }), 'campaign config file (JSON); built-in defaults when unset'),
  campaignsTopic: v('KAIROS_CAMPAIGNS_TOPIC', Type.String({ pattern: '^[a-zA-Z0-9._-]{1,249}$' }), 'compacted topic with the campaign config (JSON, newest record wins); followed when set'),
  serde: v('KAIROS_SERDE', Type.Union([Type.Literal('json'), Type.Literal('avro')]), 'wire format of input and output topics', 'json'),
  schemaRegistryUrl: urlVar('SCHEMA_REGISTRY_URL', ['http', 'https'], 'Confluent-compatible Schema Registry (required for avro)'),
  registerSchemas: v('KAIROS_REGISTER_SCHEMAS', Bool, 'register the schemas/ Avro schemas on start', 'true'),
  httpPort: v('KAIROS_HTTP_PORT', Type.Integer({ minimum: 0, maximum: 65535 }), 'port of /metrics and health endpoints (0 = any free port)', 9464),
  httpHost: v(
    'KAIROS_HTTP_HOST',
    Type.String({ pattern: '^[A-Za-z0-9.:-]{1,253}$' }),
    'address the HTTP server (query API, /metrics, health) listens on: 0.0.0.0 = every interface (containers), 127.0.0.1 = this machine only',
    '0.0.0.0',
  ),
  advertisedHost: v(
    'KAIROS_ADVERTISED_HOST',
    Type.String({ pattern: '^[A-Za-z0-9.-]{1,253}$' }),
    'host name other instances reach this one at (query forwarding, standby placement), e.g. the pod\'s DNS name; 127.0.0.1 when unset',
  ),
  standbyReplicas: v('KAIROS_STANDBY_REPLICAS', Type.Integer({ minimum: 0, maximum: 3 }), 'warm standby copies of each task on other instances (fast failover)', 0),
  commitIntervalMs: v(
    'KAIROS_COMMIT_INTERVAL_MS',
    Type.Integer({ minimum: 10, maximum: 60_000 }),
    'how often a task commits (outputs, changelog, RocksDB, offsets), as Kafka Streams\' commit.interval.ms: lower = triggers out sooner, more broker round trips',
    500,
  ),
  outputLingerMs: v(
    'KAIROS_OUTPUT_LINGER_MS',
    Type.Integer({ minimum: 0, maximum: 60_000 }),
    'a caught-up task commits once its oldest waiting output (trigger, audit record, dead letter) is this old, without waiting for the commit interval: triggers out within about this plus one commit',
    20,
  ),
  punctuateMs: v('KAIROS_PUNCTUATE_MS', Type.Integer({ minimum: 10, maximum: 60_000 }), 'how often wall-clock timers and idle tasks are checked', 1000),
  idleAdvanceMs: v('KAIROS_IDLE_ADVANCE_MS', Type.Integer({ minimum: 100 }), 'a task quiet this long moves stream time with the wall clock, so timers fire', 5000),
  maxTaskIdleMs: v(
    'KAIROS_MAX_TASK_IDLE_MS',
    Type.Integer({ minimum: 0 }),
    'last resort of the event-time merge: how long a task waits for an input known to have unfetched records before processing without it (logged, counted)',
    60_000,
  ),
  inputSettleMs: v(
    'KAIROS_INPUT_SETTLE_MS',
    Type.Integer({ minimum: 0, maximum: 60_000 }),
    'live input: a record passes an input of its task that has nothing buffered only once a fetch begun at least this long after the record came has answered for it (Kafka Streams\' max.task.idle.ms); bounds the broker\'s append window of one producer request over several partitions, at about this much latency per record (see *Record order*); 0: a fetch begun after the record came',
    0,
  ),
  inputEndProbeMs: v(
    'KAIROS_INPUT_END_PROBE_MS',
    Type.Integer({ minimum: 0, maximum: 60_000 }),
    'live input: a record held back this long (at least KAIROS_INPUT_SETTLE_MS) only until the empty inputs of its task are confirmed at their end gets that confirmation from a ListOffsets request instead of the next fetch, which comes with the next record or after KAFKA_MAX_WAIT_MS: lower latency on sparse input, with only this time as the bound of the broker\'s append window (see *Record order*); 0: the fetch only',
    0,
  ),
  topicPartitions: v('KAIROS_TOPIC_PARTITIONS', Type.Integer({ minimum: 1, maximum: 10_000 }), 'partitions of missing output topics Kairos creates (and of missing inputs when none exists); the inputs\' count when unset'),
  replicationFactor: v('KAIROS_REPLICATION_FACTOR', Type.Integer({ minimum: -1, maximum: 32 }), 'replication factor of the topics Kairos creates (-1: the broker\'s default.replication.factor)', -1),
  dlqRetentionMs: v('KAIROS_DLQ_RETENTION_MS', Type.Integer({ minimum: 60_000 }), 'retention.ms of the dead-letter topics Kairos creates (records are stamped with their failure time)', 30 * 86_400_000),
  apiAuth: v(
    'KAIROS_API_AUTH',
    Type.Union([Type.Literal('required'), Type.Literal('none')]),
    'query API authentication: required (API keys or customer tokens) or none (development only: every caller may read everything)',
    'required',
  ),
  apiKeys: secretVar(
    'KAIROS_API_KEYS',
    Type.String({ pattern: '^[^\\s]+$' }),
    'API keys of internal callers: `name:key[:read+pii]`, comma-separated (key ≥ 16 characters; scope read by default, pii adds e-mail and push tokens; console opens the campaign console, console-publish lets it publish)',
  ),
  apiTokenSecret: secretVar('KAIROS_API_TOKEN_SECRET', Type.String({ minLength: 32 }), 'HMAC secret of customer tokens (HS256 JWT, `sub` = customer id, `exp` required) that shop sessions send; ≥ 32 characters'),
  apiRateLimit: v('KAIROS_API_RATE_LIMIT', Type.Integer({ minimum: 1 }), 'query API requests per minute per API key', 600_000),
  apiRateLimitCustomer: v('KAIROS_API_RATE_LIMIT_CUSTOMER', Type.Integer({ minimum: 1 }), 'query API requests per minute per customer token (and per IP without credentials)', 120),
  redisUrl: urlVar('KAIROS_REDIS_URL', ['redis', 'rediss'], 'Redis with the onsite placements `kairos dispatch` writes; enables GET /v1/customers/:id/placements'),
  apiForwardTimeoutMs: v('KAIROS_API_FORWARD_TIMEOUT_MS', Type.Integer({ minimum: 10, maximum: 60_000 }), 'how long a forwarded query waits for the owning instance', 2000),
  logLevel: v('KAIROS_LOG_LEVEL', Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace'].map((l) => Type.Literal(l))), 'log level', 'info'),
} as const;

type Vars = typeof RUNTIME_VARS;
export type RuntimeConfig = {
  readonly [K in keyof Vars]: Vars[K]['default'] extends undefined ? Static<Vars[K]['schema']> | undefined : Static<Vars[K]['schema']>;
};

/** Reads and validates the environment; throws KAIROS_ERR_CONFIG naming every bad or missing variable. */
export function loadRuntimeConfig(env: NodeJS.ProcessEnv = process.env, required: readonly (keyof Vars)[] = ['brokers']): RuntimeConfig {
  const { values: out, errors } = readEnvVars(RUNTIME_VARS, env, { required, lists: ['brokers'] });
  if (typeof out.heartbeatInterval === 'number' && typeof out.sessionTimeout === 'number' && out.heartbeatInterval >= out.sessionTimeout) {
    errors.push(`KAFKA_HEARTBEAT_MS: must be below KAFKA_SESSION_TIMEOUT_MS (${out.sessionTimeout})`);
  }
  if (out.kafkaSaslMechanism !== undefined) {
    for (const [k, env] of [['kafkaSaslUsername', 'KAFKA_SASL_USERNAME'], ['kafkaSaslPassword', 'KAFKA_SASL_PASSWORD']] as const) {
      if (out[k] === undefined) errors.push(`${env}: required when KAFKA_SASL_MECHANISM is set`);
    }
  }
  if (typeof out.kafkaSslCaFile === 'string' && statSync(out.kafkaSslCaFile, { throwIfNoEntry: false })?.isFile() !== true) {
    errors.push(`KAFKA_SSL_CA_FILE=${JSON.stringify(out.kafkaSslCaFile)}: no such file (a PEM file is needed)`);
  }
  if (typeof out.apiKeys === 'string') {
    try {
      parseApiKeys(out.apiKeys);
    } catch (err) {
      errors.push(`KAIROS_API_KEYS: ${(err as Error).message}`);
    }
  }
  if (out.serde === 'avro' && out.schemaRegistryUrl === undefined) errors.push('SCHEMA_REGISTRY_URL: required when KAIROS_SERDE=avro');
  if (errors.length > 0) throw new KairosError('KAIROS_ERR_CONFIG', `invalid configuration:\n  ${errors.join('\n  ')}`, { details: { errors } });
  return out as RuntimeConfig;
}

/** The brokers' TLS and SASL settings of a runtime config. */
export function kafkaSecurity(c: RuntimeConfig): KafkaSecurity {
  return {
    ssl: c.kafkaSsl === 'true',
    ...(c.kafkaSslCaFile === undefined ? {} : { caFile: c.kafkaSslCaFile }),
    ...(c.kafkaSaslMechanism === undefined ? {} : { sasl: { mechanism: c.kafkaSaslMechanism, username: c.kafkaSaslUsername ?? '', password: c.kafkaSaslPassword ?? '' } }),
  };
}

/** The configuration table for the README, generated from RUNTIME_VARS. */
export function configurationTable(): string {
  return envVarsTable(RUNTIME_VARS);
}
