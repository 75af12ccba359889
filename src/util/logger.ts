/**
 * The root pino logger of a command. Secrets stay out of log lines: fields named like secrets are censored,
 * and URL credentials and the configured secret values are redacted from messages and error texts (a client
 * library's error may quote the URL it was given).
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import { redactSecrets } from './redact.js';

export interface LoggerOptions {
  /** fatal, error, warn, info, debug, trace or silent. */
  readonly level: string;
  /** Where lines go. @default stdout */
  readonly destination?: DestinationStream;
  /** Values never to write (configured passwords, keys, tokens). */
  readonly secrets?: readonly string[];
}

const SECRET_FIELDS = ['password', 'secret', 'token', 'apiKey', 'apiKeys', 'authorization', 'sasl.password', 'tokenSecret'];

export function createLogger(opts: LoggerOptions): Logger {
  const secrets = opts.secrets ?? [];
  const clean = (text: string): string => redactSecrets(text, secrets);
  const options: pino.LoggerOptions = {
    level: opts.level,
    redact: { paths: SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]), censor: '[redacted]' },
    serializers: {
      err: (err: unknown) => {
        if (!(err instanceof Error)) return typeof err === 'string' ? clean(err) : err;
        const s = pino.stdSerializers.err(err);
        return { ...s, message: clean(s.message), stack: clean(s.stack) };
      },
    },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((a: unknown) => (typeof a === 'string' ? clean(a) : a)) as Parameters<typeof method>);
      },
    },
  };
  return opts.destination === undefined ? pino(options) : pino(options, opts.destination);
}
