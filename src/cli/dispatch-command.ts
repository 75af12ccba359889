import { kafkaSecurity, loadRuntimeConfig } from '../config/runtime.js';
import { loadDispatchConfig } from '../dispatch/config.js';
import { startDispatch } from '../dispatch/app.js';
import { parseFlags, type Io } from './main.js';
import { configuredSecrets } from './failure.js';
import { createLogger } from '../util/logger.js';

/** `kairos dispatch`: the channel dispatchers against KAFKA_BROKERS and REDIS_URL until SIGTERM/SIGINT. */
export async function dispatchCommand(args: readonly string[], io: Io): Promise<number> {
  parseFlags(args, {});
  const config = loadDispatchConfig(process.env);
  const logger = createLogger({ level: config.logLevel, secrets: configuredSecrets() });
  // TLS and SASL to the brokers: the same KAFKA_SSL* / KAFKA_SASL_* variables (and checks) as `kairos start`.
  const security = kafkaSecurity(loadRuntimeConfig(process.env));
  const app = await startDispatch(config, logger, { kafkaSecurity: security });
  io.stderr.write(`kairos: dispatching ${config.channels.join(', ')} from ${(config.brokers ?? []).join(',')}; metrics and health on http://${app.address}\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'stopping');
      app.stop().then(resolve, (err: unknown) => {
        logger.error({ err }, 'stop failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
