/**
 * Table migration by BigQuery's rules: a schema may only grow. Missing columns (also nested ones) are added as
 * NULLABLE (REPEATED stays REPEATED), a REQUIRED column the contract made optional is relaxed to NULLABLE;
 * a changed type, a REPEATED/non-REPEATED switch or a different partitioning cannot be migrated in place and
 * is refused with KAIROS_ERR_WAREHOUSE_SCHEMA naming the column. Columns the contract no longer has are kept.
 */
import { KairosError } from '../errors.js';
import type { BigQueryField } from './tables.js';

export interface ExistingField {
  readonly name: string;
  readonly type?: string | undefined;
  readonly mode?: string | undefined;
  readonly description?: string | undefined;
  readonly fields?: readonly ExistingField[] | undefined;
}

export interface MigrationPlan {
  /** The schema to PATCH: the existing columns in their order, then the additions. */
  readonly fields: ExistingField[];
  readonly added: string[];
  readonly relaxed: string[];
}

/** BigQuery reports some legacy names; compare the standard ones. */
function normType(t: string | undefined): string {
  switch ((t ?? 'STRING').toUpperCase()) {
    case 'INT64':
      return 'INTEGER';
    case 'FLOAT64':
      return 'FLOAT';
    case 'BOOL':
      return 'BOOLEAN';
    case 'STRUCT':
      return 'RECORD';
    default:
      return (t ?? 'STRING').toUpperCase();
  }
}

const normMode = (m: string | undefined): string => (m ?? 'NULLABLE').toUpperCase();

export function planMigration(tableId: string, existing: readonly ExistingField[], wanted: readonly BigQueryField[], prefix = ''): MigrationPlan {
  const added: string[] = [];
  const relaxed: string[] = [];
  const problems: string[] = [];
  const fields = walk(existing, wanted, prefix, added, relaxed, problems);
  if (problems.length > 0) {
    throw new KairosError(
      'KAIROS_ERR_WAREHOUSE_SCHEMA',
      `table ${tableId} cannot be migrated to schemas/bigquery/${tableId}.json (BigQuery allows only added NULLABLE columns and relaxed modes):\n  ${problems.join('\n  ')}\nMigrate it by hand (e.g. copy into a new table) or export to another dataset.`,
      { details: { tableId, problems } },
    );
  }
  return { fields, added, relaxed };
}

function walk(existing: readonly ExistingField[], wanted: readonly BigQueryField[], prefix: string, added: string[], relaxed: string[], problems: string[]): ExistingField[] {
  const byName = new Map(existing.map((f) => [f.name.toLowerCase(), f]));
  const out: ExistingField[] = existing.map((f) => ({ ...f }));
  for (const w of wanted) {
    const path = `${prefix}${w.name}`;
    const e = byName.get(w.name.toLowerCase());
    if (e === undefined) {
      out.push(asNullable(w));
      added.push(path);
      continue;
    }
    const idx = out.findIndex((f) => f.name.toLowerCase() === w.name.toLowerCase());
    const et = normType(e.type);
    if (et !== w.type) {
      problems.push(`${path}: type ${et} in the table, ${w.type} in the contract`);
      continue;
    }
    const em = normMode(e.mode);
    if ((em === 'REPEATED') !== (w.mode === 'REPEATED')) {
      problems.push(`${path}: mode ${em} in the table, ${w.mode} in the contract`);
      continue;
    }
    let next: ExistingField = out[idx] as ExistingField;
    if (em === 'REQUIRED' && w.mode === 'NULLABLE') {
      next = { ...next, mode: 'NULLABLE' };
      relaxed.push(path);
    }
    if (w.type === 'RECORD') next = { ...next, fields: walk(e.fields ?? [], w.fields ?? [], `${path}.`, added, relaxed, problems) };
    out[idx] = next;
  }
  return out;
}

function asNullable(f: BigQueryField): ExistingField {
  return {
    name: f.name,
    type: f.type,
    mode: f.mode === 'REPEATED' ? 'REPEATED' : 'NULLABLE',
    ...(f.description === undefined ? {} : { description: f.description }),
    ...(f.fields === undefined ? {} : { fields: f.fields.map(asNullable) }),
  };
}

/** Whether the existing partitioning is the wanted one; a message naming both when not. */
export function partitioningProblem(tableId: string, existing: { type?: string | null; field?: string | null } | undefined, field: string): string | undefined {
  if (existing?.field === field && (existing.type ?? 'DAY') === 'DAY') return undefined;
  const now = existing === undefined ? 'not partitioned' : `partitioned by ${existing.type ?? 'DAY'} on ${existing.field ?? '_PARTITIONTIME (ingestion time)'}`;
  return `table ${tableId} is ${now}, but schemas/bigquery/${tableId}.json partitions it by DAY on ${field}; BigQuery cannot change the partitioning of a table — recreate it or export to another dataset`;
}
