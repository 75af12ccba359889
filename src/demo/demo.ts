/**
 * `kairos demo`: everything on embedded defaults with a simulated shop, printing triggers as they fire.
 * With Debian's kcat installed it runs the real Kafka runner against librdkafka's mock cluster (a
 * Kafka-protocol broker in a child process), with /metrics and health up; without it, it says so and runs the
 * embedded runner (no Kafka). Never a silent downgrade.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import pino from 'pino';
import type { Trigger, TriggerAudit } from '../../schemas/contract.js';
import { startInstance } from '../app/instance.js';
import { buildTopology } from '../app/topology.js';
import { resolveCampaigns } from '../config/campaigns.js';
import { loadRuntimeConfig } from '../config/runtime.js';
import { EmbeddedRunner } from '../embedded/runner.js';
import { createKafka } from '../kafka/client.js';
import { mockClusterAvailable, startMockCluster } from '../kafka/mock-cluster.js';
import type { Io } from '../cli/main.js';
import { ShopSimulator, type ShopRecord } from './shop-simulator.js';
import { startExportConsumer } from '../kafka/export-consumer.js';
import { JsonSerde } from '../kafka/serde.js';
import { NdjsonWarehouse } from '../warehouse/ndjson-sink.js';
import { TABLES } from '../warehouse/tables.js';

export interface DemoOptions {
  readonly io: Io;
  /** Stop after this long; until SIGINT/SIGTERM when undefined. */
  readonly durationMs?: number;
  /** Inactivity gap of the demo's abandonment campaign. */
  readonly gap: string;
  readonly httpPort: number;
  readonly forceEmbedded: boolean;
  /** New shoppers per second. */
  readonly rate: number;
  /** Export triggers, audit and orders to NDJSON files per table in this directory (the demo warehouse). */
  readonly warehouseDir?: string | undefined;
}

function describeTrigger(t: Trigger): string {
  const items = Array.isArray(t.payload.items) ? t.payload.items.length : 0;
  const value = t.payload.basketValue as { amount: number; currency: string } | null | undefined;
  const money = value ? ` worth ${(value.amount / 100).toFixed(2)} ${value.currency}` : '';
  return `${new Date(t.occurredAt).toISOString()}  ${t.type.padEnd(18)} ${t.customerId}  ${items} item(s)${money}  → ${t.channels.join('+')}  (caused by ${t.causedBy.eventId}, id ${t.triggerId.slice(0, 8)})\n`;
}

function until(durationMs: number | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    if (durationMs !== undefined) setTimeout(done, durationMs).unref();
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const { io } = opts;
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const campaigns = resolveCampaigns({
    campaigns: {
      'basket-abandonment': { params: { inactivityGap: opts.gap, reentryCooldown: '1h' } },
      'browse-abandonment': { params: { sessionGap: opts.gap, reentryCooldown: '1h' } },
    },
  });
  const sim = new ShopSimulator();
  let sent = 0;
  let triggers = 0;
  const print = (t: Trigger): void => {
    triggers++;
    io.stdout.write(describeTrigger(t));
  };
  // Decisions not to send (or not yet), as the guards audited them.
  const printAudit = (a: TriggerAudit): void => {
    if (a.decision === 'SENT') return;
    io.stdout.write(`${new Date(a.occurredAt).toISOString()}  ${a.decision.padEnd(10)} ${a.type.padEnd(18)} ${a.customerId}  ${a.reason}${a.detail ? `: ${a.detail}` : ''}\n`);
  };
  const perTick = opts.rate / 4;
  let carry = 0;
  const nextTick = (): ShopRecord[] => {
    carry += perTick;
    const n = Math.floor(carry);
    carry -= n;
    return sim.tick(Date.now(), n);
  };

  if (opts.forceEmbedded || !mockClusterAvailable()) {
    io.stderr.write(
      opts.forceEmbedded
        ? 'kairos demo: --embedded given: running the embedded runner without Kafka\n'
        : "kairos demo: kcat (librdkafka's mock Kafka cluster) is not installed: running the embedded runner WITHOUT Kafka. Install Debian's kcat for the Kafka path.\n",
    );
    if (opts.warehouseDir !== undefined) io.stderr.write('kairos demo: --warehouse needs the Kafka path (kcat); nothing is exported\n');
    const runner = new EmbeddedRunner({
      topology: buildTopology(campaigns),
      logger,
      onOutput: (topic, r) => {
        if (topic === 'crm.triggers.v1') print(r.value as Trigger);
        else if (topic === 'crm.trigger-audit.v1') printAudit(r.value as TriggerAudit);
      },
    });
    await runner.start();
    io.stderr.write(`kairos demo: simulated shop running, basket abandonment after ${opts.gap} of quiet; Ctrl-C stops\n`);
    const timer = setInterval(() => {
      for (const r of nextTick()) {
        sent++;
        void runner.send(r.topic, r.key, r.value);
      }
    }, 250);
    await until(opts.durationMs);
    clearInterval(timer);
    await runner.stop();
    io.stderr.write(`kairos demo: ${sent} events sent, ${triggers} triggers\n`);
    return 0;
  }

  const cluster = await startMockCluster();
  const stateDir = mkdtempSync(join(tmpdir(), 'kairos-demo-'));
  // A fresh API key per demo run: the query API is authenticated as in production.
  const apiKey = randomBytes(16).toString('hex');
  try {
    const config = loadRuntimeConfig({
      KAIROS_API_KEYS: `demo:${apiKey}:read+pii`,
      KAFKA_BROKERS: cluster.brokers.join(','),
      KAFKA_IDEMPOTENT: 'false',
      KAFKA_MAX_WAIT_MS: '100',
      KAIROS_STATE_DIR: stateDir,
      KAIROS_HTTP_PORT: String(opts.httpPort),
      // The demo's API key is printed: only this machine may use it.
      KAIROS_HTTP_HOST: '127.0.0.1',
      KAIROS_PUNCTUATE_MS: '250',
      KAIROS_IDLE_ADVANCE_MS: '1000',
      KAIROS_LOG_LEVEL: 'warn',
    });
    io.stderr.write(`kairos demo: librdkafka mock Kafka cluster at ${cluster.brokers.join(',')} (pid ${cluster.pid}); starting the engine…\n`);
    const instance = await startInstance(config, logger, campaigns);
    const kafka = createKafka({ brokers: cluster.brokers, clientId: 'kairos-demo', logger });
    let exporter: Awaited<ReturnType<typeof startExportConsumer>> | undefined;
    if (opts.warehouseDir !== undefined) {
      // The embedded demo warehouse: NDJSON files per table, no Google account (kairos export with KAIROS_WAREHOUSE=ndjson:<dir>).
      const warehouse = new NdjsonWarehouse(opts.warehouseDir);
      const tables = [TABLES.triggers, TABLES.trigger_audit, TABLES.deliveries, TABLES.orders];
      await warehouse.ensureTables(tables);
      exporter = await startExportConsumer({ kafka, serde: new JsonSerde(), warehouse, tables, groupId: `kairos-demo-export-${randomUUID()}`, batchRows: 500, bufferRows: 5000, flushMs: 1000, logger, maxWaitTimeInMs: 100 });
      io.stderr.write(`kairos demo: exporting triggers, audit and orders to the EMBEDDED DEMO WAREHOUSE (NDJSON files) in ${opts.warehouseDir}\n`);
    }
    const producer = kafka.producer({ allowAutoTopicCreation: true });
    const consumer = kafka.consumer({ groupId: `kairos-demo-printer-${randomUUID()}`, maxWaitTimeInMs: 100 });
    await producer.connect();
    await consumer.connect();
    await consumer.subscribe({ topics: ['crm.triggers.v1', 'crm.trigger-audit.v1'], fromBeginning: true });
    await consumer.run({
      eachMessage: ({ topic, message }) => {
        if (!message.value) return Promise.resolve();
        const value: unknown = JSON.parse(message.value.toString('utf8'));
        if (topic === 'crm.triggers.v1') print(value as Trigger);
        else printAudit(value as TriggerAudit);
        return Promise.resolve();
      },
    });
    io.stderr.write(
      `kairos demo: simulated shop producing to Kafka; basket abandonment after ${opts.gap} of quiet. ` +
        `Metrics: http://${instance.address}/metrics, health: http://${instance.address}/health/ready. ` +
        `Query API: curl -H 'authorization: Bearer ${apiKey}' http://${instance.address}/v1/customers/<customerId> ` +
        `(OpenAPI: http://${instance.address}/docs/json). Ctrl-C stops\n`,
    );
    let sending = Promise.resolve();
    const timer = setInterval(() => {
      const records = nextTick();
      if (records.length === 0) return;
      sent += records.length;
      sending = sending
        .then(async () => {
          await producer.sendBatch({ topicMessages: records.map((r) => ({ topic: r.topic, messages: [{ key: r.key, value: JSON.stringify(r.value) }] })) });
        })
        .catch((err: unknown) => logger.error({ err }, 'demo producer failed'));
    }, 250);
    await until(opts.durationMs);
    clearInterval(timer);
    await sending;
    await consumer.disconnect();
    await producer.disconnect();
    await exporter?.stop();
    await instance.stop();
    io.stderr.write(`kairos demo: ${sent} events sent, ${triggers} triggers\n`);
    if (opts.warehouseDir !== undefined) {
      io.stderr.write(`kairos demo: ${exporter?.stats().rows ?? 0} rows in ${opts.warehouseDir}; A/B report: KAIROS_WAREHOUSE=ndjson:${opts.warehouseDir} npx kairos report --campaign basket-abandonment --window 1h\n`);
    }
    return 0;
  } finally {
    await cluster.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
