/**
 * The generated benchmark stream, cached as an NDJSON file in os.tmpdir()/kairos-bench/ with its stats beside it.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { writeEvents, type GenerateOptions, type GeneratorStats } from '../generate-events.js';
import { fmtInt, isoOf } from './common.js';

export interface EventsFile {
  readonly path: string;
  readonly bytes: number;
  readonly stats: GeneratorStats;
  /** Undefined when the cached file was reused. */
  readonly generatedMs: number | undefined;
}

/**
 * The generated stream, cached in tmpdir keyed by the options and the generator's source (a changed generator
 * never serves a stale file). Written under a temporary name and renamed, so an interrupted run leaves no
 * truncated cache entry.
 */
export async function ensureEvents(opts: GenerateOptions, regenerate: boolean, log: (msg: string) => void): Promise<EventsFile> {
  const generatorSource = readFileSync(fileURLToPath(new URL('../generate-events.ts', import.meta.url)));
  const hash = createHash('sha256').update(JSON.stringify(opts)).update(generatorSource).digest('hex').slice(0, 12);
  const dir = join(tmpdir(), 'kairos-bench');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `events-${opts.events}-${opts.customers}-seed${opts.seed}-${hash}.ndjson`);
  const statsPath = `${path}.stats.json`;
  if (!regenerate && existsSync(path) && existsSync(statsPath)) {
    log(`reusing cached events ${path}`);
    return { path, bytes: statSync(path).size, stats: JSON.parse(readFileSync(statsPath, 'utf8')) as GeneratorStats, generatedMs: undefined };
  }
  // Entries for the same parameters made by an older generator are dead weight: drop them.
  const prefix = `events-${opts.events}-${opts.customers}-seed${opts.seed}-`;
  for (const name of readdirSync(dir)) if (name.startsWith(prefix) && !name.startsWith(`${prefix}${hash}`)) rmSync(join(dir, name), { force: true });
  log(`generating ${fmtInt(opts.events)} events over ${fmtInt(opts.customers)} customers (seed ${opts.seed}) into ${path}`);
  const started = performance.now();
  const tmp = `${path}.${process.pid}.tmp`;
  const out = createWriteStream(tmp, { highWaterMark: 1 << 20 });
  const stats = await writeEvents(opts, out, (p) =>
    log(`generate: ${fmtInt(p.events)} / ${fmtInt(p.total)} events, event time ${isoOf(p.simTime)}, ${fmtInt(p.events / (p.elapsedMs / 1000))} events/s`),
  );
  out.end();
  await finished(out);
  renameSync(tmp, path);
  writeFileSync(statsPath, JSON.stringify(stats));
  return { path, bytes: statSync(path).size, stats, generatedMs: performance.now() - started };
}
