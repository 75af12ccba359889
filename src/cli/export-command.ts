/**
 * `kairos export`: crm.triggers.v1, crm.trigger-audit.v1, crm.deliveries.v1 (and shop.orders.v1, for the report)
 * into warehouse tables until SIGTERM/SIGINT; tables are created or migrated first. Progress on stderr every
 * 10 s, /metrics and /health/* on KAIROS_HTTP_PORT.
 */
import pino, { type Logger } from 'pino';
import { configuredSecrets } from './failure.js';
import { createLogger } from '../util/logger.js';
import { Registry } from 'prom-client';
import { kafkaSecurity, loadRuntimeConfig, type RuntimeConfig } from '../config/runtime.js';
import { startHttpServer } from '../http/server.js';
import { createKafka } from '../kafka/client.js';
import { startExportConsumer, type ExportStats } from '../kafka/export-consumer.js';
import { AvroSerde, JsonSerde, type TopicSerde } from '../kafka/serde.js';
import { loadWarehouseConfig } from '../warehouse/config.js';
import { exportMetrics } from '../warehouse/metrics.js';
import { openWarehouse } from '../warehouse/open.js';
import { tableForTopic, type TableDef } from '../warehouse/tables.js';
import { parseFlags, type Io } from './main.js';

/** The topics' serde as KAIROS_SERDE says (JSON, or Avro through the Schema Registry). */
export async function serdeFor(config: RuntimeConfig): Promise<TopicSerde> {
  if (config.serde !== 'avro') return new JsonSerde();
  const avro = new AvroSerde({ registry: { host: config.schemaRegistryUrl as string }, register: config.registerSchemas === 'true' });
  await avro.init();
  return avro;
}

/** Resolves on the first SIGTERM/SIGINT (or when `signal` aborts). */
export function untilStopped(logger: Logger, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve) => {
    const done = (why: string): void => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      logger.info({ why }, 'stopping');
      resolve(why);
    };
    const onTerm = (): void => done('SIGTERM');
    const onInt = (): void => done('SIGINT');
    process.once('SIGTERM', onTerm);
    process.once('SIGINT', onInt);
    signal?.addEventListener('abort', () => done('abort'), { once: true });
  });
}

const fmt = (n: number): string => n.toLocaleString('en');

export function progressLine(s: ExportStats): string {
  const tables = Object.entries(s.byTable)
    .map(([t, n]) => `${t} ${fmt(n)}`)
    .join(', ');
  return `export: ${fmt(s.rows)} rows stored${tables === '' ? '' : ` (read: ${tables})`}, ${fmt(s.buffered)} buffered, ${fmt(s.deadLettered)} dead-lettered, ${fmt(s.commits)} offset commits\n`;
}

export async function exportCommand(args: readonly string[], io: Io, signal?: AbortSignal): Promise<number> {
  parseFlags(args, {});
  const runtime = loadRuntimeConfig(process.env);
  const config = loadWarehouseConfig(process.env);
  const logger = createLogger({ level: runtime.logLevel, destination: pino.destination(2), secrets: configuredSecrets() });
  const warehouse = openWarehouse(config);
  if (warehouse.kind === 'ndjson') io.stderr.write(`export: EMBEDDED DEMO WAREHOUSE — NDJSON files per table in ${warehouse.location} (set KAIROS_WAREHOUSE=bigquery for BigQuery)\n`);
  const tables = config.exportTopics.map((t) => tableForTopic(t)).filter((t): t is TableDef => t !== undefined);
  for (const m of await warehouse.ensureTables(tables)) {
    const what = m.action === 'migrated' ? `migrated (added ${m.added.join(', ') || '-'}; relaxed ${m.relaxed.join(', ') || '-'})` : m.action;
    io.stderr.write(`export: table ${warehouse.location}.${m.tableId}: ${what}\n`);
  }
  const registry = new Registry();
  const metrics = exportMetrics(registry);
  let running = false;
  const http = await startHttpServer({ registry, ready: () => running, port: runtime.httpPort, host: runtime.httpHost });
  const kafka = createKafka({ brokers: runtime.brokers ?? [], clientId: runtime.clientId, logger, security: kafkaSecurity(runtime) });
  let consumer;
  try {
    consumer = await startExportConsumer({
      kafka,
      serde: await serdeFor(runtime),
      warehouse,
      tables,
      groupId: config.exportGroup,
      batchRows: config.batchRows,
      bufferRows: config.bufferRows,
      flushMs: config.flushMs,
      logger,
      metrics,
      maxWaitTimeInMs: runtime.maxWaitTimeInMs,
    });
  } catch (err) {
    await http.server.close();
    throw err;
  }
  running = true;
  io.stderr.write(`export: ${tables.map((t) => `${t.topic} → ${t.tableId}`).join(', ')}; group ${config.exportGroup}; metrics on http://${http.address}/metrics\n`);
  const progress = setInterval(() => io.stderr.write(progressLine(consumer.stats())), 10_000);
  progress.unref();
  let code = 0;
  try {
    await Promise.race([untilStopped(logger, signal), consumer.failed]);
  } catch (err) {
    io.stderr.write(`export: stopped on an error: ${err instanceof Error ? err.message : String(err)}\n`);
    code = 1;
  } finally {
    clearInterval(progress);
    running = false;
    await consumer.stop().catch((err: unknown) => {
      logger.error({ err }, 'final flush failed; the rows are read again on the next start');
      code = 1;
    });
    await http.server.close();
  }
  io.stderr.write(progressLine(consumer.stats()));
  return code;
}
