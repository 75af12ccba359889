/**
 * The one error path of the `kairos` command: whatever stopped a command (a KAIROS_ERR_* error, a Node system
 * error, an unexpected bug) becomes one line naming the problem and an exit code from `EXIT` (src/errors.ts).
 * No stack trace unless KAIROS_DEBUG=1, and no secret: URL credentials and the values of variables declared
 * secret are redacted from every message printed here.
 */
import { RUNTIME_VARS } from '../config/runtime.js';
import { secretValues } from '../config/env.js';
import { DISPATCH_VARS } from '../dispatch/config.js';
import { EXIT, exitCodeOf, isKairosError } from '../errors.js';
import { redactSecrets } from '../util/redact.js';
import { WAREHOUSE_VARS } from '../warehouse/config.js';

export interface Failure {
  readonly message: string;
  readonly exitCode: number;
}

const codeOf = (err: unknown): string | undefined =>
  typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;

const field = (err: unknown, name: string): string | undefined => {
  if (typeof err !== 'object' || err === null || !(name in err)) return undefined;
  const v = (err as Record<string, unknown>)[name];
  return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
};

/** Node system errors a user can cause (a path, a port), in words. */
const SYSTEM: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  EISDIR: 'is a directory; a file is needed',
  ENOTDIR: 'a part of the path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'already exists',
  ENOSPC: 'no space left on the device',
  EROFS: 'read-only file system',
  EMFILE: 'too many open files',
  EADDRINUSE: 'the address is already in use',
  EADDRNOTAVAIL: 'the address is not an address of this machine',
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host name not found',
  Z_BUF_ERROR: 'the gzip data ends early (truncated file)',
  Z_DATA_ERROR: 'not gzip data',
  ERR_INVALID_URL: 'invalid URL',
};

/** Error names of the clients of outside services, and the service they talk to. */
const SERVICES: readonly (readonly [RegExp, string])[] = [
  [/^KafkaJS/, 'Kafka (KAFKA_BROKERS)'],
  [/^(ReplyError|MaxRetriesPerRequestError)$/, 'Redis'],
  [/^(GaxiosError|ApiError)$/, 'Google Cloud'],
];

function describe(err: unknown): Failure {
  if (isKairosError(err)) return { message: err.message, exitCode: exitCodeOf(err.code) };
  const code = codeOf(err);
  if (code?.startsWith('ERR_PARSE_ARGS') === true && err instanceof Error) return { message: err.message, exitCode: EXIT.usage };
  if (code === 'ERR_INVALID_URL') return { message: 'invalid URL (its text is not shown: it may hold credentials)', exitCode: EXIT.usage };
  const words = code === undefined ? undefined : SYSTEM[code];
  if (words !== undefined) {
    const where = [field(err, 'syscall'), field(err, 'path') ?? field(err, 'address'), field(err, 'port')].filter((x) => x !== undefined).join(' ');
    return { message: `${where === '' ? '' : `${where}: `}${words} (${code ?? ''})`, exitCode: EXIT.failure };
  }
  const message = err instanceof Error ? err.message : String(err);
  // A service that fails (a broker that cannot be reached, Redis refusing) is not a bug: name the service.
  const service = err instanceof Error ? SERVICES.find(([re]) => re.test(err.name))?.[1] : undefined;
  if (service !== undefined) return { message: `${service}: ${message}`, exitCode: EXIT.failure };
  return { message: `unexpected error: ${message} (a bug; KAIROS_DEBUG=1 prints the stack trace)`, exitCode: EXIT.failure };
}

/** Secret values configured in `env`, to redact from any message. */
export function configuredSecrets(env: NodeJS.ProcessEnv = process.env): string[] {
  return [RUNTIME_VARS, DISPATCH_VARS, WAREHOUSE_VARS].flatMap((vars) => secretValues(vars, env));
}

/** The message (prefixed with the command) and exit code for `err`, secrets redacted. */
export function describeFailure(err: unknown, command: string | undefined, env: NodeJS.ProcessEnv = process.env): Failure {
  const { message, exitCode } = describe(err);
  const secrets = configuredSecrets(env);
  let text = `kairos${command === undefined ? '' : ` ${command}`}: ${message}`;
  if (env.KAIROS_DEBUG === '1' && err instanceof Error && err.stack !== undefined && !isKairosError(err)) text += `\n${err.stack}`;
  return { message: redactSecrets(text, secrets), exitCode };
}
