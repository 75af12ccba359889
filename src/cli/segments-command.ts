/**
 * `kairos segments sync [--once] [--config segments.json]`: run every segment query and publish changed
 * profiles to crm.customers.v1, then again every `interval` until SIGTERM/SIGINT (metrics on KAIROS_HTTP_PORT).
 */
import pino from 'pino';
import { configuredSecrets } from './failure.js';
import { createLogger } from '../util/logger.js';
import { Registry } from 'prom-client';
import { kafkaSecurity, loadRuntimeConfig } from '../config/runtime.js';
import { KairosError } from '../errors.js';
import { startHttpServer } from '../http/server.js';
import { createKafka } from '../kafka/client.js';
import { profileTopic } from '../kafka/profile-topic.js';
import { loadWarehouseConfig } from '../warehouse/config.js';
import { segmentMetrics } from '../warehouse/metrics.js';
import { openWarehouse } from '../warehouse/open.js';
import { loadSegmentsConfig, syncSegmentsOnce } from '../warehouse/segments.js';
import { serdeFor, untilStopped } from './export-command.js';
import { parseFlags, type Io } from './main.js';

export async function segmentsCommand(args: readonly string[], io: Io, signal?: AbortSignal): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'sync') throw new KairosError('KAIROS_ERR_USAGE', 'usage: kairos segments sync [--once] [--config segments.json]');
  const { values } = parseFlags(rest, { once: { type: 'boolean', default: false }, config: { type: 'string' } });
  const runtime = loadRuntimeConfig(process.env);
  const config = loadWarehouseConfig(process.env);
  const file = values.config ?? config.segmentsConfig;
  if (file === undefined) throw new KairosError('KAIROS_ERR_CONFIG', 'KAIROS_SEGMENTS_CONFIG (or --config): required — the segment definitions');
  const segments = loadSegmentsConfig(file);
  const logger = createLogger({ level: runtime.logLevel, destination: pino.destination(2), secrets: configuredSecrets() });
  const warehouse = openWarehouse(config);
  if (warehouse.kind === 'ndjson') io.stderr.write(`segments: EMBEDDED DEMO WAREHOUSE — segment results read from ${warehouse.location}/segments/<name>.ndjson instead of running the SQL\n`);
  const kafka = createKafka({ brokers: runtime.brokers ?? [], clientId: runtime.clientId, logger, security: kafkaSecurity(runtime) });
  const registry = new Registry();
  const opts = {
    warehouse,
    profiles: profileTopic(kafka, await serdeFor(runtime), logger, { maxWaitTimeInMs: runtime.maxWaitTimeInMs }),
    config: segments,
    metrics: segmentMetrics(registry),
    progress: (line: string) => io.stderr.write(`${line}\n`),
  };
  if (values.once === true) {
    await syncSegmentsOnce(opts);
    return 0;
  }
  const http = await startHttpServer({ registry, ready: () => true, port: runtime.httpPort, host: runtime.httpHost });
  io.stderr.write(`segments: ${segments.segments.length} segments every ${segments.intervalMs / 1000} s; metrics on http://${http.address}/metrics\n`);
  const stopped = untilStopped(logger, signal);
  let stop = false;
  void stopped.then(() => {
    stop = true;
  });
  try {
    while (!stop) {
      try {
        await syncSegmentsOnce(opts);
      } catch (err) {
        // A failed run changes nothing; the next one starts from the topic again.
        io.stderr.write(`segments: run failed, next in ${segments.intervalMs / 1000} s: ${err instanceof Error ? err.message : String(err)}\n`);
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([stopped, new Promise<void>((r) => (timer = setTimeout(r, segments.intervalMs)))]);
      clearTimeout(timer);
    }
  } finally {
    await http.server.close();
  }
  return 0;
}
