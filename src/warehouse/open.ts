/** The warehouse the configuration names: BigQuery, or the NDJSON demo default. */
import { BigQueryWarehouse } from './bigquery-sink.js';
import type { WarehouseConfig } from './config.js';
import { NdjsonWarehouse } from './ndjson-sink.js';
import type { Warehouse } from './warehouse.js';

export function openWarehouse(config: WarehouseConfig): Warehouse {
  if (config.warehouse.kind === 'ndjson') return new NdjsonWarehouse(config.warehouse.dir);
  return new BigQueryWarehouse({
    projectId: config.project as string,
    dataset: config.dataset,
    location: config.location,
    apiEndpoint: config.apiEndpoint,
    keyFilename: config.keyFile,
    accessToken: config.accessToken,
  });
}
