/**
 * Configuration of `kairos export`, `kairos segments sync` and `kairos report`, from environment variables
 * (Kafka settings come from src/config/runtime.ts). One declaration per variable: validation (every bad
 * variable named at once, KAIROS_ERR_CONFIG), defaults and the README table (`warehouseConfigurationTable()`).
 */
import { Type } from '@sinclair/typebox';
import { envVar, envVarsTable, readEnvVars, secretVar, urlVar } from '../config/env.js';
import { isTopicName } from '../../schemas/contract.js';
import { toMs } from '../config/duration.js';
import { KairosError } from '../errors.js';
import { tableForTopic } from './tables.js';

const v = envVar;
const DurationText = Type.String({ pattern: '^[0-9]+(ms|s|m|h|d)$' });

export const WAREHOUSE_VARS = {
  warehouse: v(
    'KAIROS_WAREHOUSE',
    Type.String({ pattern: '^(bigquery|ndjson:.+)$' }),
    '`bigquery`, or `ndjson:<dir>`: the embedded demo default, NDJSON files per table, no Google account (not for production)',
    'ndjson:./warehouse',
  ),
  project: v('BIGQUERY_PROJECT', Type.String({ pattern: '^[a-z][a-z0-9:.-]{4,62}[a-z0-9]$' }), 'Google Cloud project of the dataset (required for bigquery)'),
  dataset: v('BIGQUERY_DATASET', Type.String({ pattern: '^[A-Za-z0-9_]{1,1024}$' }), 'dataset of the Kairos tables (created on start if missing)', 'kairos'),
  location: v('BIGQUERY_LOCATION', Type.String({ pattern: '^[A-Za-z0-9-]{2,40}$' }), 'dataset and query location, e.g. EU or europe-west3'),
  keyFile: v('BIGQUERY_KEY_FILE', Type.String({ minLength: 1 }), 'service-account key file; unset = Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, metadata server)'),
  apiEndpoint: urlVar('BIGQUERY_API_ENDPOINT', ['http', 'https'], 'another BigQuery REST endpoint (an emulator); unset = Google'),
  accessToken: secretVar('BIGQUERY_ACCESS_TOKEN', Type.String({ minLength: 1 }), 'a fixed bearer token instead of Google credentials (emulators only)'),
  exportTopics: v(
    'KAIROS_EXPORT_TOPICS',
    Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    'topics `kairos export` copies, comma-separated (orders feed the report)',
    ['crm.triggers.v1', 'crm.trigger-audit.v1', 'crm.deliveries.v1', 'shop.orders.v1'],
  ),
  exportGroup: v('KAIROS_EXPORT_GROUP', Type.String({ pattern: '^[a-zA-Z0-9._-]{1,200}$' }), 'consumer group of `kairos export`', 'kairos-export'),
  batchRows: v('KAIROS_EXPORT_BATCH_ROWS', Type.Integer({ minimum: 1, maximum: 10_000 }), 'rows per insertAll request (BigQuery recommends about 500)', 500),
  bufferRows: v('KAIROS_EXPORT_BUFFER_ROWS', Type.Integer({ minimum: 1, maximum: 1_000_000 }), 'most rows held between Kafka and the warehouse; consumption waits when full', 5000),
  flushMs: v('KAIROS_EXPORT_FLUSH_MS', Type.Integer({ minimum: 10, maximum: 600_000 }), 'longest time a row waits in the buffer', 1000),
  segmentsConfig: v('KAIROS_SEGMENTS_CONFIG', Type.String({ minLength: 1 }), 'segment definitions (JSON file, see README) for `kairos segments sync`'),
  reportWindow: v('KAIROS_REPORT_WINDOW', DurationText, 'default attribution window of `kairos report`', '7d'),
} as const;

export interface WarehouseConfig {
  readonly warehouse: { readonly kind: 'bigquery' } | { readonly kind: 'ndjson'; readonly dir: string };
  readonly project: string | undefined;
  readonly dataset: string;
  readonly location: string | undefined;
  readonly keyFile: string | undefined;
  readonly apiEndpoint: string | undefined;
  readonly accessToken: string | undefined;
  readonly exportTopics: readonly string[];
  readonly exportGroup: string;
  readonly batchRows: number;
  readonly bufferRows: number;
  readonly flushMs: number;
  readonly segmentsConfig: string | undefined;
  readonly reportWindowMs: number;
}

/** Reads and validates the environment; throws KAIROS_ERR_CONFIG naming every bad or missing variable. */
export function loadWarehouseConfig(env: NodeJS.ProcessEnv = process.env): WarehouseConfig {
  const { values: out, errors } = readEnvVars(WAREHOUSE_VARS, env, { lists: ['exportTopics'] });
  const wh = String(out.warehouse ?? '');
  if (wh === 'bigquery' && out.project === undefined && errors.every((e) => !e.startsWith('BIGQUERY_PROJECT'))) errors.push('BIGQUERY_PROJECT: required when KAIROS_WAREHOUSE=bigquery');
  for (const t of (out.exportTopics ?? []) as string[]) {
    if (!isTopicName(t) || tableForTopic(t) === undefined) errors.push(`KAIROS_EXPORT_TOPICS: ${t} has no warehouse table (exportable: crm.triggers.v1, crm.trigger-audit.v1, crm.deliveries.v1, shop.orders.v1)`);
  }
  if (typeof out.batchRows === 'number' && typeof out.bufferRows === 'number' && out.bufferRows < out.batchRows) {
    errors.push(`KAIROS_EXPORT_BUFFER_ROWS: must be at least KAIROS_EXPORT_BATCH_ROWS (${out.batchRows})`);
  }
  if (errors.length > 0) throw new KairosError('KAIROS_ERR_CONFIG', `invalid configuration:\n  ${errors.join('\n  ')}`, { details: { errors } });
  return Object.freeze({
    warehouse: wh === 'bigquery' ? ({ kind: 'bigquery' } as const) : ({ kind: 'ndjson', dir: wh.slice('ndjson:'.length) } as const),
    project: out.project as string | undefined,
    dataset: out.dataset as string,
    location: out.location as string | undefined,
    keyFile: out.keyFile as string | undefined,
    apiEndpoint: out.apiEndpoint as string | undefined,
    accessToken: out.accessToken as string | undefined,
    exportTopics: Object.freeze([...(out.exportTopics as string[])]),
    exportGroup: out.exportGroup as string,
    batchRows: out.batchRows as number,
    bufferRows: out.bufferRows as number,
    flushMs: out.flushMs as number,
    segmentsConfig: out.segmentsConfig as string | undefined,
    reportWindowMs: toMs(out.reportWindow as string),
  });
}

/** The README's warehouse configuration table, generated from WAREHOUSE_VARS. */
export function warehouseConfigurationTable(): string {
  return envVarsTable(WAREHOUSE_VARS);
}
