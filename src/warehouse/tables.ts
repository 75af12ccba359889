/**
 * The warehouse tables, derived from the TypeBox contract (schemas/contract.ts) so they cannot drift:
 * `npm run schemas:generate` writes schemas/bigquery/<table>.json, and test/warehouse/tables.test.ts fails when
 * the files on disk differ from what this module generates.
 *
 * Type mapping: string and string literal unions → STRING, integer → INTEGER, number → FLOAT, boolean → BOOLEAN,
 * object → RECORD, array → REPEATED, free-form records (payload, explanation params, …) → JSON, and epoch
 * milliseconds (the contract's EpochMs: an integer whose maximum is the largest JS Date) → TIMESTAMP, so tables
 * can be partitioned by day on event time. Required fields are REQUIRED, optional ones NULLABLE. Every table
 * also carries the record's Kafka origin and the export time.
 */
import { Kind, type TSchema } from '@sinclair/typebox';
import { Delivery, OrderEvent, Trigger, TriggerAudit, type TopicName } from '../../schemas/contract.js';

export type BigQueryType = 'STRING' | 'INTEGER' | 'FLOAT' | 'BOOLEAN' | 'TIMESTAMP' | 'JSON' | 'RECORD';
export type BigQueryMode = 'REQUIRED' | 'NULLABLE' | 'REPEATED';

export interface BigQueryField {
  readonly name: string;
  readonly type: BigQueryType;
  readonly mode: BigQueryMode;
  readonly description?: string;
  readonly fields?: readonly BigQueryField[];
}

export interface TableDef {
  /** BigQuery table id. */
  readonly tableId: string;
  /** The Kafka topic exported into it. */
  readonly topic: TopicName;
  /** The value field whose value is the insertId (BigQuery's best-effort dedupe of retried rows). */
  readonly insertIdField: string;
  /** The TIMESTAMP column the table is partitioned on, by day. */
  readonly partitionField: string;
  readonly clustering: readonly string[];
  readonly description: string;
  readonly fields: readonly BigQueryField[];
}

/** The largest epoch ms of a JS Date: the contract's EpochMs fields carry it as their maximum. */
const EPOCH_MS_MAX = 8_640_000_000_000_000;

/** Columns added to every exported table (not in the contract). */
export const ORIGIN_FIELDS: readonly BigQueryField[] = [
  { name: 'kafka_partition', type: 'INTEGER', mode: 'NULLABLE', description: 'Kafka partition the record was read from' },
  { name: 'kafka_offset', type: 'INTEGER', mode: 'NULLABLE', description: 'Kafka offset the record was read from' },
  { name: 'exported_at', type: 'TIMESTAMP', mode: 'NULLABLE', description: 'when kairos export inserted the row' },
];

interface SchemaNode {
  readonly [Kind]?: string;
  readonly type?: string;
  readonly maximum?: number;
  readonly description?: string;
  readonly properties?: Record<string, TSchema>;
  readonly required?: readonly string[];
  readonly items?: TSchema;
  readonly anyOf?: readonly TSchema[];
  readonly const?: unknown;
}

const node = (s: TSchema): SchemaNode => s as unknown as SchemaNode;

export function isEpochMs(schema: TSchema): boolean {
  const n = node(schema);
  return n[Kind] === 'Integer' && n.maximum === EPOCH_MS_MAX;
}

function scalarType(schema: TSchema, path: string): BigQueryType {
  const n = node(schema);
  switch (n[Kind]) {
    case 'String':
      return 'STRING';
    case 'Integer':
      return isEpochMs(schema) ? 'TIMESTAMP' : 'INTEGER';
    case 'Number':
      return 'FLOAT';
    case 'Boolean':
      return 'BOOLEAN';
    case 'Record':
      return 'JSON';
    case 'Literal':
      if (typeof n.const === 'string') return 'STRING';
      break;
    case 'Union':
      if ((n.anyOf ?? []).every((b) => node(b)[Kind] === 'Literal' && typeof node(b).const === 'string')) return 'STRING';
      return 'JSON';
  }
  throw new TypeError(`no BigQuery type for ${path} (${String(n[Kind])})`);
}

/** The BigQuery fields of a TypeBox object schema. */
export function bigQueryFields(schema: TSchema, path = ''): BigQueryField[] {
  const n = node(schema);
  if (n[Kind] !== 'Object' || n.properties === undefined) throw new TypeError(`${path || 'the schema'} is not an object schema`);
  const required = new Set(n.required ?? []);
  return Object.entries(n.properties).map(([name, prop]) => field(name, prop, required.has(name) ? 'REQUIRED' : 'NULLABLE', `${path}/${name}`));
}

function field(name: string, schema: TSchema, mode: BigQueryMode, path: string): BigQueryField {
  const n = node(schema);
  const description = n.description === undefined ? {} : { description: n.description };
  if (n[Kind] === 'Array' && n.items !== undefined) {
    const inner = field(name, n.items, 'REPEATED', `${path}/items`);
    return { ...inner, ...description, mode: 'REPEATED' };
  }
  if (n[Kind] === 'Object') return { name, type: 'RECORD', mode, ...description, fields: bigQueryFields(schema, path) };
  return { name, type: scalarType(schema, path), mode, ...description };
}

function table(tableId: string, topic: TopicName, schema: TSchema, insertIdField: string, partitionField: string, description: string): TableDef {
  const fields = [...bigQueryFields(schema), ...ORIGIN_FIELDS];
  const partition = fields.find((f) => f.name === partitionField);
  if (partition?.type !== 'TIMESTAMP') throw new TypeError(`${tableId}: partition field ${partitionField} is not a TIMESTAMP`);
  return { tableId, topic, insertIdField, partitionField, clustering: ['campaignId', 'customerId'].filter((c) => fields.some((f) => f.name === c)), description, fields };
}

/** Every warehouse table, by id. */
export const TABLES = {
  triggers: table('triggers', 'crm.triggers.v1', Trigger, 'triggerId', 'occurredAt', 'crm.triggers.v1: deliverable triggers (kairos export)'),
  trigger_audit: table('trigger_audit', 'crm.trigger-audit.v1', TriggerAudit, 'auditId', 'occurredAt', 'crm.trigger-audit.v1: every guard decision with its reason (kairos export)'),
  deliveries: table('deliveries', 'crm.deliveries.v1', Delivery, 'deliveryId', 'decidedAt', 'crm.deliveries.v1: one result per trigger and channel (kairos export)'),
  orders: table('orders', 'shop.orders.v1', OrderEvent, 'eventId', 'occurredAt', 'shop.orders.v1: orders, for conversions in kairos report (kairos export)'),
} as const satisfies Record<string, TableDef>;

export type TableId = keyof typeof TABLES;

export const isTableId = (s: string): s is TableId => Object.hasOwn(TABLES, s);

/** The table a topic is exported to. */
export function tableForTopic(topic: string): TableDef | undefined {
  return Object.values(TABLES).find((t) => t.topic === topic);
}

// ---------------------------------------------------------------------------------------------------------
// Rows

/** A contract value as a BigQuery JSON row: epoch ms → ISO timestamps, free-form records → JSON text. */
export function toRow(def: TableDef, value: Record<string, unknown>, origin: { partition: number; offset: string }, exportedAt: number): Record<string, unknown> {
  const row = convertRecord(def.fields, value);
  row.kafka_partition = origin.partition;
  row.kafka_offset = origin.offset;
  row.exported_at = new Date(exportedAt).toISOString();
  return row;
}

function convertRecord(fields: readonly BigQueryField[], value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    const v = value[f.name];
    if (v === undefined || v === null) continue;
    out[f.name] = f.mode === 'REPEATED' && Array.isArray(v) ? v.map((x) => convertValue(f, x)) : convertValue(f, v);
  }
  return out;
}

function convertValue(f: BigQueryField, v: unknown): unknown {
  switch (f.type) {
    case 'TIMESTAMP':
      return new Date(v as number).toISOString();
    case 'JSON':
      return JSON.stringify(v);
    case 'RECORD':
      return convertRecord(f.fields ?? [], v as Record<string, unknown>);
    default:
      return v;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Generated files

/** The JSON kept in schemas/bigquery/<table>.json: what `ensureTables` creates, in BigQuery's REST shape. */
export function tableResource(def: TableDef): Record<string, unknown> {
  return {
    tableId: def.tableId,
    'x-kafka-topic': def.topic,
    'x-insert-id': def.insertIdField,
    description: def.description,
    timePartitioning: { type: 'DAY', field: def.partitionField },
    clustering: { fields: [...def.clustering] },
    schema: { fields: def.fields },
  };
}

/** schemas/bigquery/*.json, relative to schemas/. */
export function generatedBigQueryFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const def of Object.values(TABLES)) files.set(`bigquery/${def.tableId}.json`, JSON.stringify(tableResource(def), null, 2) + '\n');
  return files;
}
