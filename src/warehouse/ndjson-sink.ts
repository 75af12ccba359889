/**
 * EMBEDDED DEMO DEFAULT — not a warehouse for production. `KAIROS_WAREHOUSE=ndjson:<dir>` keeps one NDJSON file
 * per table (`<dir>/<table>.ndjson`, one row per line, deduplicated by insertId like BigQuery) and the table
 * schema next to it (`<dir>/<table>.schema.json`, migrated by the same rules), so `kairos export` and
 * `kairos report` run without a Google account.
 *
 * It cannot run SQL. The report query is evaluated in TypeScript (report-model.ts, mirroring the SQL); a
 * segment query is answered from `<dir>/segments/<segment>.ndjson` (result rows written by hand or by a test),
 * standing in for the segment's SQL.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KairosError } from '../errors.js';
import { partitioningProblem, planMigration, type ExistingField } from './migration.js';
import { REPORT_DAILY_LABEL, REPORT_LABEL } from './report.js';
import { evaluateDailyReport, evaluateReport } from './report-model.js';
import { tableResource, type TableDef } from './tables.js';
import type { QueryRow, RejectedRow, TableMigration, Warehouse, WarehouseQuery, WarehouseRow } from './warehouse.js';

export const SEGMENT_LABEL_PREFIX = 'kairos-segment-';

function readRows(path: string): Record<string, unknown>[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l, i) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch (err) {
        throw new KairosError('KAIROS_ERR_WAREHOUSE', `${path}:${i + 1} is not JSON`, { cause: err });
      }
    });
}

export class NdjsonWarehouse implements Warehouse {
  readonly kind = 'ndjson';
  readonly location: string;
  private readonly dir: string;
  private readonly ids = new Map<string, Set<string>>();

  constructor(dir: string) {
    this.dir = dir;
    this.location = dir;
    mkdirSync(dir, { recursive: true });
  }

  tableRef(tableId: string): string {
    return `\`ndjson.${tableId}\``;
  }

  private file(tableId: string): string {
    return join(this.dir, `${tableId}.ndjson`);
  }

  ensureTables(defs: readonly TableDef[]): Promise<TableMigration[]> {
    const out: TableMigration[] = [];
    for (const def of defs) {
      const path = join(this.dir, `${def.tableId}.schema.json`);
      const wanted = tableResource(def);
      if (!existsSync(path)) {
        writeFileSync(path, JSON.stringify(wanted, null, 2) + '\n');
        out.push({ tableId: def.tableId, action: 'created', added: [], relaxed: [] });
        continue;
      }
      const existing = JSON.parse(readFileSync(path, 'utf8')) as { schema?: { fields?: ExistingField[] }; timePartitioning?: { type?: string; field?: string } };
      const problem = partitioningProblem(def.tableId, existing.timePartitioning, def.partitionField);
      if (problem !== undefined) return Promise.reject(new KairosError('KAIROS_ERR_WAREHOUSE_SCHEMA', problem));
      let plan;
      try {
        plan = planMigration(def.tableId, existing.schema?.fields ?? [], def.fields);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      if (plan.added.length === 0 && plan.relaxed.length === 0) {
        out.push({ tableId: def.tableId, action: 'unchanged', added: [], relaxed: [] });
        continue;
      }
      writeFileSync(path, JSON.stringify({ ...existing, schema: { fields: plan.fields } }, null, 2) + '\n');
      out.push({ tableId: def.tableId, action: 'migrated', added: plan.added, relaxed: plan.relaxed });
    }
    return Promise.resolve(out);
  }

  async insert(def: TableDef, rows: readonly WarehouseRow[]): Promise<RejectedRow[]> {
    let seen = this.ids.get(def.tableId);
    if (seen === undefined) {
      seen = new Set(readRows(this.file(def.tableId)).map((r) => String(r[def.insertIdField])));
      this.ids.set(def.tableId, seen);
    }
    const lines: string[] = [];
    for (const r of rows) {
      if (seen.has(r.insertId)) continue;
      seen.add(r.insertId);
      lines.push(JSON.stringify(r.json));
    }
    if (lines.length === 0) return [];
    try {
      await appendFile(this.file(def.tableId), lines.join('\n') + '\n');
    } catch (err) {
      for (const r of rows) seen.delete(r.insertId);
      throw new KairosError('KAIROS_ERR_WAREHOUSE', `cannot append to ${this.file(def.tableId)}: ${(err as Error).message}`, { cause: err });
    }
    return [];
  }

  query(q: WarehouseQuery): Promise<QueryRow[]> {
    if (q.label === REPORT_LABEL) {
      const p = q.params;
      return Promise.resolve(
        evaluateReport(
          { triggers: readRows(this.file('triggers')), audit: readRows(this.file('trigger_audit')), orders: readRows(this.file('orders')) },
          { campaign_id: String(p.campaign_id), window_ms: Number(p.window_ms), z: Number(p.z) },
        ),
      );
    }
    if (q.label === REPORT_DAILY_LABEL) {
      const p = q.params;
      return Promise.resolve(
        evaluateDailyReport(
          { triggers: readRows(this.file('triggers')), audit: readRows(this.file('trigger_audit')), orders: readRows(this.file('orders')) },
          { campaign_id: String(p.campaign_id), window_ms: Number(p.window_ms) },
        ),
      );
    }
    if (q.label.startsWith(SEGMENT_LABEL_PREFIX)) {
      return Promise.resolve(readRows(join(this.dir, 'segments', `${q.label.slice(SEGMENT_LABEL_PREFIX.length)}.ndjson`)));
    }
    return Promise.reject(new KairosError('KAIROS_ERR_WAREHOUSE', `the NDJSON demo warehouse cannot run SQL (query ${q.label}); use KAIROS_WAREHOUSE=bigquery`));
  }
}
