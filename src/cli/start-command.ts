import pino from 'pino';
import { startInstance } from '../app/instance.js';
import { loadRuntimeConfig } from '../config/runtime.js';
import { parseFlags, type Io } from './main.js';

/** `kairos start`: the engine against KAFKA_BROKERS until SIGTERM/SIGINT, then a graceful stop. */
export async function startCommand(args: readonly string[], io: Io): Promise<number> {
  parseFlags(args, {});
  const config = loadRuntimeConfig(process.env);
  const logger = pino({ level: config.logLevel });
  const instance = await startInstance(config, logger);
  io.stderr.write(`kairos: running against ${(config.brokers ?? []).join(',')}; metrics and health on http://${instance.address}\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'stopping');
      instance.stop().then(resolve, (err: unknown) => {
        logger.error({ err }, 'stop failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
