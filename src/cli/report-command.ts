/** `kairos report --campaign X`: A/B and holdout conversions with uplift and 95 % CI, as a table or JSON. */
import { toMs } from '../config/duration.js';
import { KairosError } from '../errors.js';
import { loadWarehouseConfig } from '../warehouse/config.js';
import { openWarehouse } from '../warehouse/open.js';
import { formatReport, runReport } from '../warehouse/report.js';
import { parseFlags, type Io } from './main.js';

export async function reportCommand(args: readonly string[], io: Io): Promise<number> {
  const { values } = parseFlags(args, { campaign: { type: 'string' }, window: { type: 'string' }, format: { type: 'string', default: 'table' } });
  if (values.campaign === undefined || values.campaign === '') throw new KairosError('KAIROS_ERR_USAGE', '--campaign <campaignId> is required');
  if (values.format !== 'table' && values.format !== 'json') throw new KairosError('KAIROS_ERR_USAGE', `--format must be table or json, got ${values.format}`);
  const config = loadWarehouseConfig(process.env);
  let windowMs = config.reportWindowMs;
  if (values.window !== undefined) {
    try {
      windowMs = toMs(/^[0-9]+$/.test(values.window) ? Number(values.window) : values.window);
    } catch {
      throw new KairosError('KAIROS_ERR_USAGE', `--window must be a duration like 7d, 48h or milliseconds, got ${values.window}`);
    }
  }
  const warehouse = openWarehouse(config);
  if (warehouse.kind === 'ndjson') io.stderr.write(`report: EMBEDDED DEMO WAREHOUSE — NDJSON files in ${warehouse.location}, evaluated in TypeScript (set KAIROS_WAREHOUSE=bigquery for BigQuery)\n`);
  const report = await runReport(warehouse, values.campaign, windowMs);
  io.stdout.write(values.format === 'json' ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
  return 0;
}
