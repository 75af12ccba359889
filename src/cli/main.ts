/**
 * The `kairos` command. Each subcommand parses its own flags; whatever stops a command is printed as one line
 * by `describeFailure` (src/cli/failure.ts) and exits 2 (usage, config) or 1 (everything else), see `EXIT`.
 */
import type { Writable } from 'node:stream';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { KairosError } from '../errors.js';
import { describeFailure } from './failure.js';

const USAGE = `kairos — real-time CRM trigger engine

Usage:
  kairos replay --input events.ndjson [--output triggers.ndjson] [--audit audit.ndjson]
                [--config campaigns.json] [--until <ms|ISO>] [--errors errors.ndjson]
                [--state-dir dir] [--cache-mb N] [--quiet]
  kairos demo [--duration 60s] [--gap 15s] [--rate 2] [--port 9464] [--embedded] [--warehouse dir]
  kairos start        (configured by environment variables, see README: KAFKA_BROKERS, …)
  kairos dispatch     (channel dispatchers; environment variables, see README: KAFKA_BROKERS, REDIS_URL, …)
  kairos describe [--config campaigns.json] [--format text|mermaid]
  kairos export       (warehouse export of triggers, audit, deliveries, orders; env: KAIROS_WAREHOUSE, BIGQUERY_*)
  kairos segments sync [--once] [--config segments.json]
  kairos report --campaign <campaignId> [--window 7d] [--format table|json]
  kairos help

Input lines are {"topic": "...", "key": "...", "value": {...}} in event-time order (a .gz file is
decompressed). Triggers go to --output (default stdout), one JSON object per line.
`;

export interface Io {
  readonly stdout: Writable;
  readonly stderr: Writable;
}

export async function run(argv: readonly string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      // Each command's modules are loaded when it runs: the demo and replay do not wait for the BigQuery,
      // Firebase and SMTP clients to load (a second of start-up).
      case 'replay':
        return await (await import('./replay-command.js')).replayCommand(rest, io);
      case 'demo':
        return await (await import('./demo-command.js')).demoCommand(rest, io);
      case 'start':
        return await (await import('./start-command.js')).startCommand(rest, io);
      case 'dispatch':
        return await (await import('./dispatch-command.js')).dispatchCommand(rest, io);
      case 'export':
        return await (await import('./export-command.js')).exportCommand(rest, io);
      case 'segments':
        return await (await import('./segments-command.js')).segmentsCommand(rest, io);
      case 'report':
        return await (await import('./report-command.js')).reportCommand(rest, io);
      case 'describe':
        return (await import('./describe-command.js')).describeCommand(rest, io);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout.write(USAGE);
        return 0;
      default:
        throw new KairosError('KAIROS_ERR_USAGE', `unknown command "${command}"\n\n${USAGE}`);
    }
  } catch (err) {
    const failure = describeFailure(err, command);
    io.stderr.write(`${failure.message}\n`);
    return failure.exitCode;
  }
}

/** How long a failed command may take to exit once it returned (a client library may hold a socket open). */
const EXIT_GRACE_MS = 5000;

/**
 * The process entry (bin/kairos.js, src/cli/bin.ts): runs the command and sets the exit code. An error thrown
 * outside the command's own path (an event emitter's, a timer's) goes through the same error path.
 */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  // Kairos uses kafkajs' default (murmur2, the Java clients') partitioner on purpose; the warning that the
  // default changed in kafkajs 2.0 is for users migrating from 1.x and would only confuse a first screen.
  process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';
  process.on('uncaughtException', (err) => {
    const failure = describeFailure(err, argv[0]);
    process.stderr.write(`${failure.message}\n`);
    process.exit(failure.exitCode);
  });
  const code = await run(argv);
  process.exitCode = code;
  if (code !== 0) setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
}

/** parseArgs with usage errors turned into KAIROS_ERR_USAGE. */
export function parseFlags<const O extends NonNullable<ParseArgsConfig['options']>>(
  args: readonly string[],
  options: O,
): ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>> {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals: false });
  } catch (err) {
    throw new KairosError('KAIROS_ERR_USAGE', (err as Error).message, { cause: err });
  }
}
