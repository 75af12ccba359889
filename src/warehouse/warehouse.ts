/**
 * What the exporter, segment sync and report need from a warehouse. Two implementations: BigQuery
 * (bigquery-sink.ts, production) and NDJSON files per table (ndjson-sink.ts, the embedded demo default).
 */
import type { TableDef } from './tables.js';

/** One row to insert: its dedupe id and its JSON columns. */
export interface WarehouseRow {
  readonly insertId: string;
  readonly json: Record<string, unknown>;
}

/** A row the warehouse refused for its content (retrying cannot help): dead-letter it. */
export interface RejectedRow {
  readonly insertId: string;
  readonly reason: string;
  readonly message: string;
}

export interface TableMigration {
  readonly tableId: string;
  readonly action: 'created' | 'migrated' | 'unchanged';
  /** Column paths added (as NULLABLE) or relaxed from REQUIRED to NULLABLE. */
  readonly added: readonly string[];
  readonly relaxed: readonly string[];
}

/** A scalar query parameter (BigQuery named parameters: `@name`). */
export type QueryParam = string | number | boolean;

export interface WarehouseQuery {
  /** A stable label naming the query (`kairos-report`, `kairos-segment-<name>`); travels as a job label. */
  readonly label: string;
  readonly sql: string;
  readonly params: Readonly<Record<string, QueryParam>>;
}

export type QueryRow = Readonly<Record<string, unknown>>;

export interface Warehouse {
  readonly kind: 'bigquery' | 'ndjson';
  /** A short description for logs (project.dataset or the directory). */
  readonly location: string;
  /** Creates missing tables and adds missing columns; KAIROS_ERR_WAREHOUSE_SCHEMA on incompatible changes. */
  ensureTables(defs: readonly TableDef[]): Promise<TableMigration[]>;
  /**
   * Inserts rows, deduplicated by insertId. Resolves with the rows refused for their content (all others are
   * stored); rejects with a retriable KAIROS_ERR_WAREHOUSE when nothing can be said about the rows.
   */
  insert(def: TableDef, rows: readonly WarehouseRow[]): Promise<RejectedRow[]>;
  /** Runs a parameterised query. */
  query(q: WarehouseQuery): Promise<QueryRow[]>;
  /** The fully qualified, quoted table name for SQL (`\`project.dataset.table\``). */
  tableRef(tableId: string): string;
}
