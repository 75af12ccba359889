/**
 * The engine's modules for a benchmark that runs it in its own process: from the TypeScript sources (through tsx,
 * the default) or from the compiled dist/ (`--dist`), as `bin/kairos.js` runs them when deployed. tsx compiles
 * with esbuild's keepNames, which wraps every function expression in a call that names it: each closure made per
 * record or request costs more than in the compiled build (load-tests/README.md, issue 17), so the deployed figure
 * comes from dist/. A dist/ older than the sources is refused.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as TopologyModule from '../../src/app/topology.js';
import type * as CampaignsModule from '../../src/config/campaigns.js';
import type * as EnvelopeModule from '../../src/replay/envelope.js';
import type * as LinesModule from '../../src/replay/lines.js';
import type * as WriterModule from '../../src/replay/ndjson-writer.js';
import type * as ReplayModule from '../../src/replay/replay.js';
import type * as ValidateModule from '../../src/serde/validate.js';
import { REPO_ROOT } from './common.js';

/** The newest modification time of the TypeScript files under `dir` (tests left out). */
function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** Throws unless dist/ is built and newer than every source it is compiled from (src, schemas, topologies). */
export function assertFreshDist(): void {
  const main = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(main)) throw new Error('--dist: dist/ is not built; run npm run build');
  const built = statSync(main).mtimeMs;
  if (['src', 'schemas', 'topologies'].some((d) => newestSource(join(REPO_ROOT, d)) > built)) throw new Error('--dist: dist/ is older than the sources; run npm run build');
}

/** What the replay benchmark runs of the engine. */
export interface ReplayEngine {
  readonly runtime: 'dist' | 'tsx';
  readonly buildTopology: typeof TopologyModule.buildTopology;
  readonly resolveCampaigns: typeof CampaignsModule.resolveCampaigns;
  readonly decodeEnvelopeLine: typeof EnvelopeModule.decodeEnvelopeLine;
  readonly lineBatches: typeof LinesModule.lineBatches;
  readonly NdjsonWriter: typeof WriterModule.NdjsonWriter;
  readonly LazyNdjsonFile: typeof WriterModule.LazyNdjsonFile;
  readonly replay: typeof ReplayModule.replay;
  readonly validateValue: typeof ValidateModule.validateValue;
}

/** Loads the replay engine from dist/ (`dist` true: checked fresh first) or from the sources. */
export async function loadReplayEngine(dist: boolean): Promise<ReplayEngine> {
  if (dist) assertFreshDist();
  const root = dist ? join(REPO_ROOT, 'dist', 'src') : join(REPO_ROOT, 'src');
  // The compiled modules keep the sources' layout; from the sources tsx resolves `.js` to the `.ts` file.
  const load = <M>(path: string): Promise<M> => import(pathToFileURL(join(root, path)).href) as Promise<M>;
  const [topology, campaigns, envelope, lines, writer, replay, validate] = await Promise.all([
    load<typeof TopologyModule>('app/topology.js'),
    load<typeof CampaignsModule>('config/campaigns.js'),
    load<typeof EnvelopeModule>('replay/envelope.js'),
    load<typeof LinesModule>('replay/lines.js'),
    load<typeof WriterModule>('replay/ndjson-writer.js'),
    load<typeof ReplayModule>('replay/replay.js'),
    load<typeof ValidateModule>('serde/validate.js'),
  ]);
  return {
    runtime: dist ? 'dist' : 'tsx',
    buildTopology: topology.buildTopology,
    resolveCampaigns: campaigns.resolveCampaigns,
    decodeEnvelopeLine: envelope.decodeEnvelopeLine,
    lineBatches: lines.lineBatches,
    NdjsonWriter: writer.NdjsonWriter,
    LazyNdjsonFile: writer.LazyNdjsonFile,
    replay: replay.replay,
    validateValue: validate.validateValue,
  };
}
