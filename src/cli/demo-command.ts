import { Duration, toMs } from '../config/duration.js';
import { Value } from '@sinclair/typebox/value';
import { runDemo } from '../demo/demo.js';
import { KairosError } from '../errors.js';
import { parseFlags, type Io } from './main.js';

/** `kairos demo [--duration 60s] [--gap 15s] [--rate 2] [--port 9464] [--embedded] [--warehouse dir]` */
export async function demoCommand(args: readonly string[], io: Io): Promise<number> {
  const { values } = parseFlags(args, {
    duration: { type: 'string' },
    gap: { type: 'string', default: '15s' },
    rate: { type: 'string', default: '2' },
    port: { type: 'string', default: '9464' },
    embedded: { type: 'boolean', default: false },
    warehouse: { type: 'string' },
  });
  for (const [flag, v] of [['--duration', values.duration], ['--gap', values.gap]] as const) {
    if (v !== undefined && !Value.Check(Duration, v)) throw new KairosError('KAIROS_ERR_USAGE', `${flag} must be a duration like 30s or 2m, got "${v}"`);
  }
  const rate = Number(values.rate);
  if (!(rate > 0 && rate <= 1000)) throw new KairosError('KAIROS_ERR_USAGE', `--rate must be new shoppers per second in (0, 1000], got "${values.rate}"`);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new KairosError('KAIROS_ERR_USAGE', `--port must be a TCP port, got "${values.port}"`);
  return runDemo({
    io,
    gap: values.gap,
    rate,
    httpPort: port,
    forceEmbedded: values.embedded,
    warehouseDir: values.warehouse,
    ...(values.duration === undefined ? {} : { durationMs: toMs(values.duration) }),
  });
}
