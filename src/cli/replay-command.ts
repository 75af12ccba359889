import { basename } from 'node:path';
import pino from 'pino';
import { buildTopology } from '../app/topology.js';
import { loadCampaignsFile, resolveCampaigns } from '../config/campaigns.js';
import { KairosError } from '../errors.js';
import { LazyNdjsonFile, NdjsonWriter } from '../replay/ndjson-writer.js';
import { replay, REPLAY_CACHE_MAX_BYTES } from '../replay/replay.js';
import { parseFlags, type Io } from './main.js';

/** Parses --until: epoch milliseconds or an ISO-8601 date-time. */
export function parseUntil(text: string): number {
  if (/^[0-9]+$/.test(text)) return Number(text);
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new KairosError('KAIROS_ERR_USAGE', `--until must be epoch milliseconds or an ISO date-time, got "${text}"`);
  return t;
}

/** Parses --cache-mb: the state cache's memory budget in MiB, a whole number from 1 to 1,048,576. */
export function parseCacheMb(text: string): number {
  const mb = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(mb) || mb < 1 || mb > 1_048_576) {
    throw new KairosError('KAIROS_ERR_USAGE', `--cache-mb must be a whole number of MiB from 1 to 1048576, got "${text}"`);
  }
  return mb * 1024 * 1024;
}

const MAX_PRINTED_ERRORS = 10;
const mib = (bytes: number): string => Math.round(bytes / 1048576).toLocaleString('en');

export async function replayCommand(args: readonly string[], io: Io): Promise<number> {
  const { values } = parseFlags(args, {
    input: { type: 'string' },
    output: { type: 'string' },
    audit: { type: 'string' },
    config: { type: 'string' },
    until: { type: 'string' },
    errors: { type: 'string' },
    'state-dir': { type: 'string' },
    'cache-mb': { type: 'string' },
    quiet: { type: 'boolean', default: false },
  });
  if (values.input === undefined) throw new KairosError('KAIROS_ERR_USAGE', '--input is required (a file of NDJSON envelopes, or - for stdin)');
  const until = values.until === undefined ? undefined : parseUntil(values.until);
  const cacheMaxBytes = values['cache-mb'] === undefined ? undefined : parseCacheMb(values['cache-mb']);
  const config = values.config === undefined ? resolveCampaigns({}) : loadCampaignsFile(values.config);
  // Input records dropped as redeliveries (same key and eventId within the dedup window), for the summary.
  const duplicates = { redelivery: 0, conflict: 0 };
  const topology = buildTopology(config, undefined, {
    onInputDuplicate: (d) => {
      duplicates[d.conflict ? 'conflict' : 'redelivery'] += 1;
    },
  });
  const errorsPath = values.errors ?? (values.input === '-' ? 'replay-errors.ndjson' : `${basename(values.input)}.errors.ndjson`);
  const triggers = values.output === undefined ? new NdjsonWriter(io.stdout, false, 'stdout') : await NdjsonWriter.openFile(values.output);
  const audit = values.audit === undefined ? undefined : await NdjsonWriter.openFile(values.audit);
  const errorFile = new LazyNdjsonFile(errorsPath);
  const logger = pino({ level: 'warn' }, pino.destination(2));
  let printed = 0;
  const result = await replay({
    topology,
    input: values.input === '-' ? process.stdin : values.input,
    triggers,
    ...(audit ? { audit } : {}),
    errors: errorFile,
    ...(until === undefined ? {} : { until }),
    ...(values['state-dir'] === undefined ? {} : { stateDir: values['state-dir'] }),
    ...(cacheMaxBytes === undefined ? {} : { cacheMaxBytes }),
    logger,
    onError: (e) => {
      if (values.quiet) return;
      if (printed < MAX_PRINTED_ERRORS) io.stderr.write(`line ${e.line}: ${e.errors.map((x) => `${x.path || '/'}: ${x.message}`).join('; ')}\n`);
      else if (printed === MAX_PRINTED_ERRORS) io.stderr.write(`… more bad lines, see ${errorsPath}\n`);
      printed++;
    },
    ...(values.quiet
      ? {}
      : {
          onProgress: (p) =>
            io.stderr.write(
              p.phase === 'final-commit'
                ? `replay: writing the final state to ${values['state-dir'] ?? 'the state dir'}: ${p.uncommitted.toLocaleString('en')} entries (~${mib(p.cacheBytes)} MiB of cache) left\n`
                : `replay: ${p.lines.toLocaleString('en')} lines${p.fraction === undefined ? '' : ` (${(p.fraction * 100).toFixed(1)}%)`}, ` +
                `${Math.round(p.lines / (p.elapsedMs / 1000)).toLocaleString('en')} lines/s, ${p.triggers} triggers, ${p.errors} bad lines, ` +
                `stream time ${Number.isFinite(p.streamTime) ? new Date(p.streamTime).toISOString() : '-'}, ` +
                `state cache ${mib(p.cacheBytes)} of ${mib(p.cacheMaxBytes)} MiB${p.cacheEvictions > 0 ? ` (${p.cacheEvictions.toLocaleString('en')} entries spilled: --cache-mb raises it)` : ''}\n`,
            ),
        }),
  });
  await triggers.close();
  await audit?.close();
  await errorFile.close();
  if (!values.quiet) {
    const secs = result.elapsedMs / 1000;
    io.stderr.write(
      `replay: ${result.lines} lines, ${result.processed} processed, ${result.skipped} of unread topics, ${result.errors} bad` +
        `${result.errors ? ` (written to ${errorsPath})` : ''}, ${duplicates.redelivery + duplicates.conflict} duplicates dropped` +
        `${duplicates.conflict ? ` (${duplicates.conflict} with other content)` : ''}; ${result.triggers} triggers, ${result.audits} audit records; ` +
        `stream time ${Number.isFinite(result.streamTime) ? new Date(result.streamTime).toISOString() : '-'}; ` +
        `${secs.toFixed(2)} s, ${Math.round(result.lines / Math.max(secs, 1e-9))} lines/s; state ${result.stateBytes === undefined ? 'temporary (not kept: --state-dir keeps it)' : `${(result.stateBytes / 1048576).toFixed(1)} MiB`}` +
        `${result.cacheEvictions > 0 ? `; ${result.cacheEvictions.toLocaleString('en')} state entries spilled past the ${values['cache-mb'] ?? mib(REPLAY_CACHE_MAX_BYTES)} MiB cache (--cache-mb)` : ''}\n`,
    );
  }
  return result.errors > 0 ? 3 : 0;
}
