import { buildTopology } from '../app/topology.js';
import { KairosError } from '../errors.js';
import { loadCampaignsFile, resolveCampaigns } from '../config/campaigns.js';
import { parseFlags, type Io } from './main.js';

export function describeCommand(args: readonly string[], io: Io): number {
  const { values } = parseFlags(args, { config: { type: 'string' }, format: { type: 'string', default: 'text' } });
  const config = values.config === undefined ? resolveCampaigns({}) : loadCampaignsFile(values.config);
  const topology = buildTopology(config);
  if (values.format === 'mermaid') io.stdout.write(topology.describeMermaid());
  else if (values.format === 'text') io.stdout.write(topology.describe());
  else throw new KairosError('KAIROS_ERR_USAGE', `--format must be text or mermaid, got "${String(values.format)}"`);
  return 0;
}
