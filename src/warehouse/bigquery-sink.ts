/**
 * The BigQuery warehouse through @google-cloud/bigquery: tables created or migrated from schemas/bigquery
 * (tables.get / tables.insert / tables.patch), rows streamed with tabledata.insertAll and an insertId per row
 * (BigQuery drops a row whose insertId it saw within about a minute, so a retried request adds nothing), and
 * parameterised standard-SQL queries (jobs.query, then jobs.getQueryResults for the rest).
 *
 * Authentication: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS with a service-account key,
 * `gcloud auth application-default login`, or the metadata server on GCP), a key file, or a fixed access token
 * (tests and emulators behind `apiEndpoint`, which need no Google account).
 */
import { BigQuery, type BigQueryOptions, type Dataset, type TableMetadata } from '@google-cloud/bigquery';
import { KairosError, isKairosError } from '../errors.js';
import { partitioningProblem, planMigration, type ExistingField } from './migration.js';
import type { TableDef } from './tables.js';
import type { QueryRow, RejectedRow, TableMigration, Warehouse, WarehouseQuery, WarehouseRow } from './warehouse.js';

export interface BigQueryWarehouseOptions {
  readonly projectId: string;
  readonly dataset: string;
  /** Dataset location for a dataset created on start and for queries, e.g. EU. */
  readonly location?: string | undefined;
  /** Another endpoint than https://bigquery.googleapis.com (an emulator, the tests' local server). */
  readonly apiEndpoint?: string | undefined;
  /** A service-account key file; otherwise Application Default Credentials. */
  readonly keyFilename?: string | undefined;
  /** A fixed OAuth access token instead of Google credentials (emulators, tests). */
  readonly accessToken?: string | undefined;
  /** Retries of the client for 429/5xx answers before an error reaches the caller. @default 3 */
  readonly maxRetries?: number | undefined;
}

/** An auth client that always presents the same bearer token (for `accessToken`). */
function fixedTokenAuth(token: string): NonNullable<BigQueryOptions['authClient']> {
  const client = {
    getRequestHeaders: () => Promise.resolve(new Headers({ authorization: `Bearer ${token}` })),
    getAccessToken: () => Promise.resolve({ token }),
    getProjectId: () => Promise.resolve(undefined),
    getCredentials: () => Promise.resolve({}),
  };
  // Duck-typed: GoogleAuth only calls getRequestHeaders on the client it is given.
  return client as unknown as NonNullable<BigQueryOptions['authClient']>;
}

function httpCode(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'number' ? err.code : undefined;
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

interface PartialFailure {
  readonly row?: { insertId?: string };
  readonly errors?: readonly { reason?: string; message?: string }[];
}

function partialFailures(err: unknown): PartialFailure[] | undefined {
  if (err instanceof Error && err.name === 'PartialFailureError' && 'errors' in err && Array.isArray(err.errors)) return err.errors as PartialFailure[];
  return undefined;
}

/** Whether `path` (`a` or `a.b`) is a column of the table's schema. */
function knownColumn(def: TableDef, path: string | undefined): boolean {
  if (path === undefined) return false;
  let fields: readonly { name: string; fields?: readonly unknown[] | undefined }[] = def.fields;
  for (const part of path.split('.')) {
    const f = fields.find((x) => x.name === part);
    if (f === undefined) return false;
    fields = (f.fields ?? []) as typeof fields;
  }
  return true;
}

/** Job labels: lowercase letters, digits, `_` and `-`, at most 63 characters. */
export const jobLabel = (label: string): string =>
  label
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, '_')
    .slice(0, 63);

export class BigQueryWarehouse implements Warehouse {
  readonly kind = 'bigquery';
  readonly location: string;
  readonly client: BigQuery;
  private readonly dataset: Dataset;
  private readonly options: BigQueryWarehouseOptions;

  constructor(options: BigQueryWarehouseOptions) {
    this.options = options;
    this.location = `${options.projectId}.${options.dataset}`;
    this.client = new BigQuery({
      projectId: options.projectId,
      ...(options.location === undefined ? {} : { location: options.location }),
      ...(options.apiEndpoint === undefined ? {} : { apiEndpoint: options.apiEndpoint }),
      ...(options.keyFilename === undefined ? {} : { keyFilename: options.keyFilename }),
      ...(options.accessToken === undefined ? {} : { authClient: fixedTokenAuth(options.accessToken) }),
      maxRetries: options.maxRetries ?? 3,
    });
    this.dataset = this.client.dataset(options.dataset, options.location === undefined ? {} : { location: options.location });
  }

  tableRef(tableId: string): string {
    return `\`${this.options.projectId}.${this.options.dataset}.${tableId}\``;
  }

  async ensureTables(defs: readonly TableDef[]): Promise<TableMigration[]> {
    try {
      const [exists] = await this.dataset.exists();
      if (!exists) await this.dataset.create(this.options.location === undefined ? {} : { location: this.options.location });
    } catch (err) {
      throw this.error(`cannot read or create dataset ${this.location}`, err);
    }
    const out: TableMigration[] = [];
    for (const def of defs) out.push(await this.ensureTable(def));
    return out;
  }

  private async ensureTable(def: TableDef, attempt = 1): Promise<TableMigration> {
    const table = this.dataset.table(def.tableId);
    let meta: TableMetadata | undefined;
    try {
      [meta] = await table.getMetadata();
    } catch (err) {
      if (httpCode(err) !== 404) throw this.error(`cannot read table ${this.location}.${def.tableId}`, err);
    }
    if (meta === undefined) {
      try {
        await this.dataset.createTable(def.tableId, {
          description: def.description,
          schema: { fields: def.fields.map((f) => ({ ...f })) as NonNullable<TableMetadata['schema']>['fields'] },
          timePartitioning: { type: 'DAY', field: def.partitionField },
          clustering: { fields: [...def.clustering] },
        });
      } catch (err) {
        // Another exporter created it meanwhile: check it like an existing table.
        if (httpCode(err) === 409 && attempt === 1) return this.ensureTable(def, 2);
        throw this.error(`cannot create table ${this.location}.${def.tableId}`, err);
      }
      return { tableId: def.tableId, action: 'created', added: [], relaxed: [] };
    }
    const problem = partitioningProblem(def.tableId, meta.timePartitioning ?? undefined, def.partitionField);
    if (problem !== undefined) throw new KairosError('KAIROS_ERR_WAREHOUSE_SCHEMA', problem, { details: { tableId: def.tableId } });
    const plan = planMigration(def.tableId, (meta.schema?.fields ?? []) as ExistingField[], def.fields);
    if (plan.added.length === 0 && plan.relaxed.length === 0) return { tableId: def.tableId, action: 'unchanged', added: [], relaxed: [] };
    try {
      await table.setMetadata({ schema: { fields: plan.fields }, ...(meta.etag === undefined ? {} : { etag: meta.etag }) } as TableMetadata);
    } catch (err) {
      throw this.error(`cannot migrate table ${this.location}.${def.tableId}`, err);
    }
    return { tableId: def.tableId, action: 'migrated', added: plan.added, relaxed: plan.relaxed };
  }

  async insert(def: TableDef, rows: readonly WarehouseRow[]): Promise<RejectedRow[]> {
    const table = this.dataset.table(def.tableId);
    const rejected: RejectedRow[] = [];
    let pending = rows;
    // Each round either stores the rows or drops at least one bad row from them, so this ends.
    while (pending.length > 0) {
      try {
        await table.insert(
          pending.map((r) => ({ insertId: r.insertId, json: r.json })),
          { raw: true, partialRetries: 0, skipInvalidRows: false, ignoreUnknownValues: false },
        );
        return rejected;
      } catch (err) {
        const failures = partialFailures(err);
        if (failures === undefined) throw this.error(`insertAll into ${this.location}.${def.tableId} failed (${pending.length} rows)`, err);
        const retry = new Set<string>();
        for (const f of failures) {
          const id = f.row?.insertId;
          if (id === undefined) continue;
          const errors = f.errors ?? [];
          // "stopped": a valid row that was not inserted because another row of the request was invalid.
          if (errors.length > 0 && errors.every((e) => e.reason === 'stopped')) retry.add(id);
          else rejected.push({ insertId: id, reason: errors[0]?.reason ?? 'invalid', message: errors.map((e) => e.message ?? e.reason ?? '').join('; ') });
        }
        // Right after tables.patch added columns, streaming inserts may not see them for a while ("no such
        // field"): the rows are fine, so the whole request is retried later instead of dead-lettering them.
        const unknownField = failures.find((f) => (f.errors ?? []).some((e) => e.reason === 'invalid' && knownColumn(def, /no such field:?\s*([\w.]+?)\.?$/i.exec(e.message ?? '')?.[1])));
        if (unknownField !== undefined) {
          throw new KairosError('KAIROS_ERR_WAREHOUSE', `BigQuery: ${this.location}.${def.tableId} does not know a column yet (${unknownField.errors?.[0]?.message ?? ''}); retrying`, { cause: err });
        }
        const rejectedIds = new Set(rejected.map((r) => r.insertId));
        const next = pending.filter((r) => retry.has(r.insertId) && !rejectedIds.has(r.insertId));
        if (next.length === pending.length) throw this.error(`insertAll into ${this.location}.${def.tableId} reported errors without naming a bad row`, err);
        pending = next;
      }
    }
    return rejected;
  }

  async query(q: WarehouseQuery): Promise<QueryRow[]> {
    try {
      const [rows] = await this.client.query({
        query: q.sql,
        params: { ...q.params },
        useLegacySql: false,
        labels: { kairos_query: jobLabel(q.label) },
        ...(this.options.location === undefined ? {} : { location: this.options.location }),
      });
      return rows as QueryRow[];
    } catch (err) {
      throw this.error(`query ${q.label} failed`, err);
    }
  }

  private error(what: string, err: unknown): KairosError {
    if (isKairosError(err)) return err;
    const code = httpCode(err);
    return new KairosError('KAIROS_ERR_WAREHOUSE', `BigQuery: ${what}${code === undefined ? '' : ` (HTTP ${code})`}: ${message(err)}`, { cause: err, details: { status: code } });
  }
}
