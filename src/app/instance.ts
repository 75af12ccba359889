/**
 * One running Kairos instance: the Kafka runner over the composed topology, plus the HTTP server with
 * /metrics and health probes. Used by `kairos start` and `kairos demo`.
 */
import pino, { type Logger } from 'pino';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import { readCampaignsJson, resolveCampaigns, type CampaignsConfig } from '../config/campaigns.js';
import { kafkaSecurity, type RuntimeConfig } from '../config/runtime.js';
import { LiveCampaigns, watchCampaignsFile, type ApplyResult } from '../config/live.js';
import { CampaignTopicFollower, CampaignTopicPublisher } from '../kafka/config-topic.js';
import { LiveFeed } from '../console/feed.js';
import { recentEvents } from '../console/recent-events.js';
import { readRecentInput } from '../kafka/recent-input.js';
import { runDailyReport, runReport } from '../warehouse/report.js';
import type { Warehouse } from '../warehouse/warehouse.js';
import { startHttpServer } from '../http/server.js';
import { parseApiKeys, type AuthConfig } from '../api/auth.js';
import type { QueryBackend } from '../api/server.js';
import { Redis } from 'ioredis';
import { readPlacements } from '../dispatch/onsite-redis.js';
import { createKafka } from '../kafka/client.js';
import { KafkaRunner } from '../kafka/runner.js';
import { AvroSerde, JsonSerde, type TopicSerde } from '../kafka/serde.js';
import { buildTopology } from './topology.js';
import { triggerMetrics } from './trigger-metrics.js';
import { inputDedupMetrics } from './input-metrics.js';

/** The console's preview over the input topics replays at most this many records. */
const RECENT_INPUT_MAX = 200_000;

export interface Instance {
  readonly runner: KafkaRunner;
  readonly http: FastifyInstance;
  /** host:port of the HTTP server. */
  readonly address: string;
  readonly registry: Registry;
  /** The campaign config in force (reloaded from the file or topic). */
  readonly live: LiveCampaigns;
  stop(): Promise<void>;
}

export interface InstanceOptions {
  /** Where the console's results page reads the A/B report (`kairos report`'s warehouse); none: the page says so. */
  readonly warehouse?: Warehouse;
}

/** `campaignsInput`: the JSON `campaignsOverride` was resolved from (the console shows and edits it). */
export async function startInstance(
  config: RuntimeConfig,
  logger: Logger = pino({ level: config.logLevel }),
  campaignsOverride?: CampaignsConfig,
  campaignsInput?: unknown,
  options: InstanceOptions = {},
): Promise<Instance> {
  const input = campaignsOverride ? campaignsInput : config.campaigns === undefined ? {} : readCampaignsJson(config.campaigns);
  const campaigns = campaignsOverride ?? resolveCampaigns(input, config.campaigns ?? 'defaults');
  const live = new LiveCampaigns(campaigns, input, config.campaigns ?? 'start');
  const registry = new Registry();
  const topology = buildTopology(live, config.applicationId, { onInputDuplicate: inputDedupMetrics(registry) });
  collectDefaultMetrics({ register: registry, prefix: 'kairos_' });
  const reloads = new Counter({ name: 'kairos_config_reloads_total', help: 'Campaign config reloads, by result (applied or rejected)', labelNames: ['result'], registers: [registry] });
  const version = new Gauge({ name: 'kairos_config_version', help: 'Version of the campaign config in force (1 = as started)', registers: [registry] });
  version.set(live.version);
  const onResult = (r: ApplyResult): void => {
    reloads.inc({ result: r.ok ? 'applied' : 'rejected' });
    version.set(live.version);
  };
  const unwatch = config.campaigns === undefined || campaignsOverride ? undefined : watchCampaignsFile(live, config.campaigns, logger, onResult);
  const brokers = config.brokers ?? [];
  const kafka = createKafka({ brokers, clientId: config.clientId, logger, security: kafkaSecurity(config) });
  let serde: TopicSerde;
  if (config.serde === 'avro') {
    const avro = new AvroSerde({ registry: { host: config.schemaRegistryUrl as string }, register: config.registerSchemas === 'true' });
    await avro.init();
    serde = avro;
  } else serde = new JsonSerde();
  const holder: { runner?: KafkaRunner } = {};
  const warehouse = options.warehouse;
  // The console's live page: decisions as the runner writes them (a bounded ring, fed by the output hook).
  const feed = new LiveFeed();
  const publisher = config.campaignsTopic === undefined ? undefined : new CampaignTopicPublisher(kafka, config.campaignsTopic);
  const auth: AuthConfig = { mode: config.apiAuth, keys: config.apiKeys === undefined ? [] : parseApiKeys(config.apiKeys), tokenSecret: config.apiTokenSecret };
  if (auth.mode === 'required' && auth.keys.length === 0 && auth.tokenSecret === undefined) {
    logger.warn('query API: no KAIROS_API_KEYS and no KAIROS_API_TOKEN_SECRET, so every /v1 request is refused (401); set them, or KAIROS_API_AUTH=none in development');
  }
  const backend: QueryBackend = {
    topology,
    partitionOf: (key) => holder.runner?.partitionOf(key),
    owner: (p) => {
      const routing = holder.runner?.routing;
      return routing === undefined ? undefined : (routing.tasks.get(p) ?? null);
    },
    reader: (p) => holder.runner?.reader(p) ?? Promise.resolve(undefined),
    readerNow: (p) => holder.runner?.readerNow(p),
  };
  // Onsite placements live in Redis (written by `kairos dispatch`): fail fast while Redis is down (503).
  const redis = config.redisUrl === undefined ? undefined : new Redis(config.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
  redis?.on('error', (err: Error) => logger.warn({ err: err.message }, 'placements Redis unavailable'));
  await redis?.connect().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'placements Redis not reachable at start; retrying in the background'));
  const http = await startHttpServer({
    registry,
    port: config.httpPort,
    host: config.httpHost,
    ...(config.advertisedHost === undefined ? {} : { advertisedHost: config.advertisedHost }),
    ready: () => holder.runner?.ready ?? false,
    api: {
      backend,
      auth,
      rateLimitService: config.apiRateLimit,
      rateLimitCustomer: config.apiRateLimitCustomer,
      forwardTimeoutMs: config.apiForwardTimeoutMs,
      logger,
      ...(redis === undefined ? {} : { placements: (customerId: string) => readPlacements(redis, customerId) }),
    },
    console: {
      auth,
      live,
      feed,
      publisher,
      logger,
      recentInput: (since) => readRecentInput({ kafka, serde, since, maxRecords: RECENT_INPUT_MAX, timeoutMs: 30_000 }),
      report: warehouse === undefined ? undefined : (campaignId, windowMs) => runReport(warehouse, campaignId, windowMs),
      recentEvents: async (customerId, windowMs) => {
        const p = holder.runner?.partitionOf(customerId);
        const reader = p === undefined ? undefined : await holder.runner?.reader(p);
        return reader === undefined ? { local: false, partition: p } : recentEvents(reader, customerId, windowMs);
      },
      daily: warehouse === undefined ? undefined : (campaignId, windowMs) => runDailyReport(warehouse, campaignId, windowMs),
    },
  }).catch((err: unknown) => {
    // Nothing else may keep the process alive after a failed start (a port in use).
    unwatch?.();
    redis?.disconnect();
    throw err;
  });
  const runner = new KafkaRunner({
    topology,
    kafka,
    stateDir: config.stateDir,
    serde,
    logger,
    registry,
    idempotent: config.idempotent === 'true',
    processingGuarantee: config.processingGuarantee,
    standbyReplicas: config.standbyReplicas,
    maxWaitTimeInMs: config.maxWaitTimeInMs,
    idleAdvanceMs: config.idleAdvanceMs,
    maxTaskIdleMs: config.maxTaskIdleMs,
    inputSettleMs: config.inputSettleMs,
    inputEndProbeMs: config.inputEndProbeMs,
    replicationFactor: config.replicationFactor,
    dlqRetentionMs: config.dlqRetentionMs,
    ...(config.topicPartitions === undefined ? {} : { topicPartitions: config.topicPartitions }),
    punctuateIntervalMs: config.punctuateMs,
    commitIntervalMs: config.commitIntervalMs,
    outputLingerMs: config.outputLingerMs,
    sessionTimeout: config.sessionTimeout,
    heartbeatInterval: config.heartbeatInterval,
    apiAddress: http.address,
    onOutput: outputs(triggerMetrics(registry), feed),
  });
  holder.runner = runner;
  const follower = config.campaignsTopic === undefined ? undefined : new CampaignTopicFollower(kafka, config.campaignsTopic, live, logger, onResult);
  try {
    // Side by side: each joins its own group, and the config topic's newest record applies the sooner.
    const started = await Promise.allSettled([runner.start(), follower?.start(config.maxWaitTimeInMs)]);
    const failed = started.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  } catch (err) {
    unwatch?.();
    await follower?.stop().catch(() => undefined);
    await publisher?.stop().catch(() => undefined);
    await runner.stop().catch(() => undefined);
    await http.server.close();
    redis?.disconnect();
    throw err;
  }
  const r = runner;
  return {
    runner,
    http: http.server,
    address: http.address,
    registry,
    live,
    stop: async () => {
      unwatch?.();
      await follower?.stop();
      await publisher?.stop();
      await r.stop();
      await http.server.close();
      redis?.disconnect();
    },
  };
}

/** The runner's one output hook: the trigger metrics, then the console's feed. */
function outputs(metrics: ReturnType<typeof triggerMetrics>, feed: LiveFeed): ReturnType<typeof triggerMetrics> {
  return (topic, record) => {
    metrics(topic, record);
    feed.observe(topic, record);
  };
}
