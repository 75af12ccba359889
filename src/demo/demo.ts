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
import { createLogger } from '../util/logger.js';
import { describeAudit, describeTrigger } from './describe.js';
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

/** Where the demo's log lines go (the screen shows triggers and decisions; errors are shown too). */
export const DEMO_LOG = join(tmpdir(), 'kairos-demo.log');

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
  // Log details go to a file, so the first screen shows only what the demo does; errors reach the screen too.
  const logger = createLogger({
    level: 'info',
    destination: pino.multistream([
      { level: 'info', stream: pino.destination({ dest: DEMO_LOG, sync: true, append: false }) },
      { level: 'error', stream: pino.destination(2) },
    ]),
  });
  io.stderr.write(`kairos demo: log details in ${DEMO_LOG}\n`);
  const campaignsInput = {
    campaigns: {
      'basket-abandonment': { params: { inactivityGap: opts.gap, reentryCooldown: '1h' } },
      'browse-abandonment': { params: { sessionGap: opts.gap, reentryCooldown: '1h' } },
    },
  };
  const campaigns = resolveCampaigns(campaignsInput);
  const sim = new ShopSimulator();
  let sent = 0;
  let triggers = 0;
  let firstTriggerS: number | undefined;
  // Triggers per campaign, so the closing hint reports on a campaign this run has data for.
  const sentByCampaign = new Map<string, number>();
  const print = (t: Trigger): void => {
    triggers++;
    // Seconds since the process started (what a user waits), for the summary.
    firstTriggerS ??= process.uptime();
    sentByCampaign.set(t.campaignId, (sentByCampaign.get(t.campaignId) ?? 0) + 1);
    io.stdout.write(describeTrigger(t));
  };
  const summary = (): string =>
    `kairos demo: ${sent} events sent, ${triggers} triggers${firstTriggerS === undefined ? '' : ` (the first ${firstTriggerS.toFixed(1)} s after start)`}\n`;
  // Decisions not to send (or not yet), as the guards audited them.
  const printAudit = (a: TriggerAudit): void => {
    if (a.decision === 'SENT') return;
    io.stdout.write(describeAudit(a, (eventId) => catalogSkus.get(eventId)));
  };
  const perTick = opts.rate / 4;
  let carry = 0;
  // The sku of each catalog event sent (an audit names its cause by event id only); the newest 1000.
  const catalogSkus = new Map<string, string>();
  const nextTick = (): ShopRecord[] => {
    carry += perTick;
    const n = Math.floor(carry);
    carry -= n;
    const records = sim.tick(Date.now(), n);
    for (const r of records) {
      if (r.topic !== 'shop.catalog.v1') continue;
      catalogSkus.set(r.value.eventId, r.value.sku);
      if (catalogSkus.size > 1000) catalogSkus.delete(catalogSkus.keys().next().value ?? '');
    }
    return records;
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
    io.stderr.write(
      `kairos demo: simulated shop running: a sale on a basket item every 10 s, a restock of the watch, abandonment after ${opts.gap} of quiet; Ctrl-C stops\n` +
        `time      decision   type                   customer   what and why\n`,
    );
    const timer = setInterval(() => {
      for (const r of nextTick()) {
        sent++;
        void runner.send(r.topic, r.key, r.value);
      }
    }, 250);
    await until(opts.durationMs);
    clearInterval(timer);
    await runner.stop();
    io.stderr.write(summary());
    return 0;
  }

  const cluster = await startMockCluster();
  const stateDir = mkdtempSync(join(tmpdir(), 'kairos-demo-'));
  // A fresh API key per demo run: the query API is authenticated as in production.
  const apiKey = randomBytes(16).toString('hex');
  try {
    const config = loadRuntimeConfig({
      KAIROS_API_KEYS: `demo:${apiKey}:read+pii+console+console-publish`,
      // The console publishes here; the engine follows it (the mock cluster creates it on first use).
      KAIROS_CAMPAIGNS_TOPIC: 'crm.campaigns.v1',
      KAFKA_BROKERS: cluster.brokers.join(','),
      KAFKA_IDEMPOTENT: 'false',
      KAFKA_MAX_WAIT_MS: '100',
      KAIROS_STATE_DIR: stateDir,
      KAIROS_HTTP_PORT: String(opts.httpPort),
      // The demo's API key is printed: only this machine may use it.
      KAIROS_HTTP_HOST: '127.0.0.1',
      KAIROS_PUNCTUATE_MS: '250',
      // A price drop reaches its customers through two repartition hops, each a commit away.
      KAIROS_COMMIT_INTERVAL_MS: '100',
      KAIROS_IDLE_ADVANCE_MS: '1000',
      KAIROS_LOG_LEVEL: 'warn',
    });
    io.stderr.write(`kairos demo: librdkafka mock Kafka cluster at ${cluster.brokers.join(',')} (pid ${cluster.pid}); starting the engine…\n`);
    const kafka = createKafka({ brokers: cluster.brokers, clientId: 'kairos-demo', logger });
    const producer = kafka.producer({ allowAutoTopicCreation: true });
    const consumer = kafka.consumer({ groupId: `kairos-demo-printer-${randomUUID()}`, maxWaitTimeInMs: 100 });
    let sending = Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const shop = async (): Promise<void> => {
      await producer.connect();
      timer = setInterval(() => {
        const records = nextTick();
        if (records.length === 0) return;
        sent += records.length;
        sending = sending
          .then(async () => {
            await producer.sendBatch({ topicMessages: records.map((r) => ({ topic: r.topic, messages: [{ key: r.key, value: JSON.stringify(r.value) }] })) });
          })
          .catch((err: unknown) => logger.error({ err }, 'demo producer failed'));
      }, 250);
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
    };
    const stopShop = async (): Promise<void> => {
      clearInterval(timer);
      await sending;
      await consumer.disconnect();
      await producer.disconnect();
    };
    // Joining a consumer group takes seconds on the mock cluster: the shop and the printer start while the engine
    // joins (it reads its inputs from the beginning, so nothing sent meanwhile is missed), and the first triggers
    // come seconds after start instead of after two group joins.
    const [started, shopStarted] = await Promise.allSettled([startInstance(config, logger, campaigns, campaignsInput, opts.warehouseDir === undefined ? {} : { warehouse: new NdjsonWarehouse(opts.warehouseDir) }), shop()]);
    if (started.status === 'rejected' || shopStarted.status === 'rejected') {
      await stopShop().catch(() => undefined);
      if (started.status === 'fulfilled') await started.value.stop().catch(() => undefined);
      throw started.status === 'rejected' ? started.reason : (shopStarted as PromiseRejectedResult).reason;
    }
    const instance = started.value;
    let exporter: Awaited<ReturnType<typeof startExportConsumer>> | undefined;
    if (opts.warehouseDir !== undefined) {
      // The embedded demo warehouse: NDJSON files per table, no Google account (kairos export with KAIROS_WAREHOUSE=ndjson:<dir>).
      const warehouse = new NdjsonWarehouse(opts.warehouseDir);
      const tables = [TABLES.triggers, TABLES.trigger_audit, TABLES.deliveries, TABLES.orders];
      await warehouse.ensureTables(tables);
      exporter = await startExportConsumer({ kafka, serde: new JsonSerde(), warehouse, tables, groupId: `kairos-demo-export-${randomUUID()}`, batchRows: 500, bufferRows: 5000, flushMs: 1000, logger, maxWaitTimeInMs: 100 });
      io.stderr.write(`kairos demo: exporting triggers, audit and orders to the EMBEDDED DEMO WAREHOUSE (NDJSON files) in ${opts.warehouseDir}\n`);
    }
    io.stderr.write(
      `kairos demo: HTTP on ${instance.address} (127.0.0.1: this machine only): http://${instance.address}/metrics, ` +
        `http://${instance.address}/health/ready, OpenAPI http://${instance.address}/docs/json\n` +
        `kairos demo: query API: curl -H 'authorization: Bearer ${apiKey}' http://${instance.address}/v1/customers/demo-0001\n` +
        `kairos demo: campaign console: http://${instance.address}/console (sign in with the API key above)\n` +
        `kairos demo: simulated shop producing to Kafka: a sale on a basket item every 10 s, a restock of the watch, ` +
        `abandonment after ${opts.gap} of quiet. Ctrl-C stops\n` +
        `time      decision   type                   customer   what and why\n`,
    );
    await until(opts.durationMs);
    await stopShop();
    await exporter?.stop();
    await instance.stop();
    io.stderr.write(summary());
    if (opts.warehouseDir !== undefined) {
      io.stderr.write(`kairos demo: ${exporter?.stats().rows ?? 0} rows in ${opts.warehouseDir}; A/B report: KAIROS_WAREHOUSE=ndjson:${opts.warehouseDir} npx kairos report --campaign ${[...sentByCampaign].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'basket-abandonment'} --window 1h\n`);
    }
    return 0;
  } finally {
    await cluster.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
