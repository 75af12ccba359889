import { startInstance } from '../app/instance.js';
import { loadRuntimeConfig } from '../config/runtime.js';
import { parseFlags, type Io } from './main.js';
import { configuredSecrets } from './failure.js';
import { createLogger } from '../util/logger.js';
import { untilDeadline } from '../util/deadline.js';
import { loadWarehouseConfig } from '../warehouse/config.js';
import { openWarehouse } from '../warehouse/open.js';

/**
 * `kairos start`: the engine against KAFKA_BROKERS until SIGTERM/SIGINT, then a graceful stop bounded by
 * STOP_TIMEOUT_MS (exit 1 when it ran out); a second signal exits at once (128 + signal number).
 */
export async function startCommand(args: readonly string[], io: Io): Promise<number> {
  parseFlags(args, {});
  const config = loadRuntimeConfig(process.env);
  const logger = createLogger({ level: config.logLevel, secrets: configuredSecrets() });
  // The console's results page reads the same warehouse as `kairos report`, when one is configured.
  const warehouse = process.env.KAIROS_WAREHOUSE === undefined ? undefined : openWarehouse(loadWarehouseConfig(process.env));
  const instance = await startInstance(config, logger, undefined, undefined, warehouse === undefined ? {} : { warehouse });
  // Say what is bound, not only the address others are told: 0.0.0.0 means every interface.
  const port = instance.address.slice(instance.address.lastIndexOf(':') + 1);
  const scope = config.httpHost === '0.0.0.0' || config.httpHost === '::' ? ' (every interface; KAIROS_HTTP_HOST=127.0.0.1 for this machine only)' : '';
  io.stderr.write(
    `kairos: running against ${(config.brokers ?? []).join(',')}; metrics and health on http://${instance.address}; campaign console on http://${instance.address}/console; ` +
      `HTTP listening on ${config.httpHost}:${port}${scope}\n`,
  );
  const code = await new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        // A second signal: out at once. The state is safe: what was not committed is processed again.
        io.stderr.write(`kairos: ${signal} again: exiting without waiting for the stop\n`);
        resolve(128 + (signal === 'SIGINT' ? 2 : 15));
        return;
      }
      stopping = true;
      logger.info({ signal }, 'stopping');
      io.stderr.write(`kairos: stopping (committing and leaving the group, at most ${STOP_TIMEOUT_MS / 1000} s; ${signal === 'SIGINT' ? 'Ctrl-C' : signal} again exits at once)\n`);
      const deadline = Date.now() + STOP_TIMEOUT_MS;
      void untilDeadline(instance.stop(), deadline, 'stopping the instance', logger).then((r) => {
        if (!r.done) io.stderr.write('kairos: the stop did not finish in time (broker or Redis unreachable?); exiting — the next start restores the last complete commit\n');
        resolve(r.done ? 0 : 1);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  // Clients still retrying a lost broker keep timers alive: the process ends here whatever is left.
  setTimeout(() => process.exit(code), 200).unref();
  return code;
}

/** The whole graceful stop, below Kubernetes' default 30 s grace period; the runner's own part ends sooner. */
const STOP_TIMEOUT_MS = 28_000;
