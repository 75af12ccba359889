import pino from 'pino';
import { loadDispatchConfig } from '../dispatch/config.js';
import { startDispatch } from '../dispatch/app.js';
import { parseFlags, type Io } from './main.js';

/** `kairos dispatch`: the channel dispatchers against KAFKA_BROKERS and REDIS_URL until SIGTERM/SIGINT. */
export async function dispatchCommand(args: readonly string[], io: Io): Promise<number> {
  parseFlags(args, {});
  const config = loadDispatchConfig(process.env);
  const logger = pino({ level: config.logLevel });
  const app = await startDispatch(config, logger);
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
