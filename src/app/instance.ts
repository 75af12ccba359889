/**
 * One running Kairos instance: the Kafka runner over the composed topology, plus the HTTP server with
 * /metrics and health probes. Used by `kairos start` and `kairos demo`.
 */
import pino, { type Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import { loadCampaignsFile, resolveCampaigns, type CampaignsConfig } from '../config/campaigns.js';
import type { RuntimeConfig } from '../config/runtime.js';
import { startHttpServer } from '../http/server.js';
import { createKafka } from '../kafka/client.js';
import { KafkaRunner } from '../kafka/runner.js';
import { AvroSerde, JsonSerde, type TopicSerde } from '../kafka/serde.js';
import { buildTopology } from './topology.js';

export interface Instance {
  readonly runner: KafkaRunner;
  readonly http: FastifyInstance;
  /** host:port of the HTTP server. */
  readonly address: string;
  readonly registry: Registry;
  stop(): Promise<void>;
}

export async function startInstance(config: RuntimeConfig, logger: Logger = pino({ level: config.logLevel }), campaignsOverride?: CampaignsConfig): Promise<Instance> {
  const campaigns = campaignsOverride ?? (config.campaigns === undefined ? resolveCampaigns({}) : loadCampaignsFile(config.campaigns));
  const topology = buildTopology(campaigns, config.applicationId);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'kairos_' });
  const brokers = config.brokers ?? [];
  const kafka = createKafka({ brokers, clientId: config.clientId, logger });
  let serde: TopicSerde;
  if (config.serde === 'avro') {
    const avro = new AvroSerde({ registry: { host: config.schemaRegistryUrl as string }, register: config.registerSchemas === 'true' });
    await avro.init();
    serde = avro;
  } else serde = new JsonSerde();
  const holder: { runner?: KafkaRunner } = {};
  const http = await startHttpServer({ registry, port: config.httpPort, ready: () => holder.runner?.ready ?? false });
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
    punctuateIntervalMs: config.punctuateMs,
    sessionTimeout: config.sessionTimeout,
    heartbeatInterval: config.heartbeatInterval,
    apiAddress: http.address,
  });
  holder.runner = runner;
  try {
    await runner.start();
  } catch (err) {
    await runner.stop().catch(() => undefined);
    await http.server.close();
    throw err;
  }
  const r = runner;
  return {
    runner,
    http: http.server,
    address: http.address,
    registry,
    stop: async () => {
      await r.stop();
      await http.server.close();
    },
  };
}
