/**
 * A local server speaking the BigQuery v2 REST endpoints Kairos uses, for the real @google-cloud/bigquery client
 * pointed at it through `apiEndpoint`: datasets.get/insert, tables.get/insert/patch, tabledata.insertAll
 * (insertId dedupe, insertErrors for bad rows with "stopped" for the others, like skipInvalidRows=false) and
 * jobs.query / jobs.getQueryResults.
 *
 * It cannot run SQL. A query is answered by a handler registered for its job label (`kairos_query`), which
 * computes the expected result in TypeScript over the stored rows: the request shape, parameters and result
 * parsing are real, the SQL text is verified only against real BigQuery.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Field {
  name: string;
  type?: string;
  mode?: string;
  fields?: Field[];
  description?: string;
}

export interface StoredTable {
  resource: { tableReference: { projectId: string; datasetId: string; tableId: string }; schema: { fields: Field[] }; timePartitioning?: { type: string; field?: string }; etag: string } & Record<string, unknown>;
  rows: Record<string, unknown>[];
  insertIds: Set<string>;
}

export interface QueryContext {
  readonly sql: string;
  readonly params: Readonly<Record<string, string | number | boolean>>;
  readonly rows: (tableId: string) => readonly Record<string, unknown>[];
}

export interface QueryResult {
  readonly fields: readonly { name: string; type: 'STRING' | 'INTEGER' | 'FLOAT' | 'BOOLEAN' }[];
  readonly rows: readonly Readonly<Record<string, unknown>>[];
}

export interface RequestLog {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | undefined;
  readonly body: unknown;
}

interface Fault {
  readonly method: string;
  readonly pathSuffix: string;
  readonly status: number;
  /** Store the rows first, then fail: the "accepted, but the answer was lost" case. */
  readonly afterStore: boolean;
}

export interface BigQueryServer {
  readonly endpoint: string;
  readonly requests: RequestLog[];
  readonly tables: Map<string, StoredTable>;
  rows(dataset: string, tableId: string): Record<string, unknown>[];
  /** Fail the next request whose method matches and path ends with `pathSuffix`. */
  failNext(method: string, pathSuffix: string, status: number, options?: { afterStore?: boolean }): void;
  /** Answer queries labelled `kairos_query=<label>` (or whose label starts with it). */
  onQuery(label: string, handler: (ctx: QueryContext) => QueryResult): void;
  /** Refuse rows for which `why` returns a message (as insertAll does for a row that does not fit the table). */
  refuseRows(why: (json: Record<string, unknown>) => string | undefined): void;
  /** Hold insertAll requests until `release()`; resolves `held` when one arrives. */
  holdInserts(): { held: Promise<void>; release: () => void };
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text === '' ? undefined : JSON.parse(text));
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const apiError = (res: ServerResponse, status: number, reason: string, message: string): void =>
  send(res, status, { error: { code: status, message, errors: [{ reason, message, domain: 'global' }], status: reason.toUpperCase() } });

/** Checks a row against the table schema as insertAll does (loosely: presence, unknown fields, scalar kinds). */
function rowErrors(fields: readonly Field[], row: Record<string, unknown>, prefix = ''): string[] {
  const errors: string[] = [];
  const known = new Map(fields.map((f) => [f.name, f]));
  for (const name of Object.keys(row)) if (!known.has(name)) errors.push(`no such field: ${prefix}${name}`);
  for (const f of fields) {
    const v = row[f.name];
    const mode = f.mode ?? 'NULLABLE';
    if (v === undefined || v === null) {
      if (mode === 'REQUIRED') errors.push(`missing required field: ${prefix}${f.name}`);
      continue;
    }
    const values = mode === 'REPEATED' ? (Array.isArray(v) ? v : [Symbol('not-an-array')]) : [v];
    for (const x of values) {
      const ok = (() => {
        switch (f.type) {
          case 'STRING':
          case 'JSON':
            return typeof x === 'string';
          case 'INTEGER':
            return (typeof x === 'number' && Number.isInteger(x)) || (typeof x === 'string' && /^-?[0-9]+$/.test(x));
          case 'FLOAT':
            return typeof x === 'number';
          case 'BOOLEAN':
            return typeof x === 'boolean';
          case 'TIMESTAMP':
            return typeof x === 'string' && !Number.isNaN(Date.parse(x));
          case 'RECORD':
            if (typeof x !== 'object' || x === null) return false;
            errors.push(...rowErrors(f.fields ?? [], x as Record<string, unknown>, `${prefix}${f.name}.`));
            return true;
          default:
            return true;
        }
      })();
      if (!ok) errors.push(`cannot convert value to ${String(f.type)}: ${prefix}${f.name}`);
    }
  }
  return errors;
}

/** The additive-only rule BigQuery applies to tables.patch. */
function patchErrors(before: readonly Field[], after: readonly Field[], prefix = ''): string[] {
  const errors: string[] = [];
  const next = new Map(after.map((f) => [f.name, f]));
  for (const b of before) {
    const a = next.get(b.name);
    if (a === undefined) {
      errors.push(`Provided Schema does not match Table. Field ${prefix}${b.name} is missing in new schema`);
      continue;
    }
    if ((a.type ?? 'STRING') !== (b.type ?? 'STRING')) errors.push(`Provided Schema does not match Table. Field ${prefix}${b.name} has changed type`);
    const bm = b.mode ?? 'NULLABLE';
    const am = a.mode ?? 'NULLABLE';
    if (bm !== am && !(bm === 'REQUIRED' && am === 'NULLABLE')) errors.push(`Provided Schema does not match Table. Field ${prefix}${b.name} has changed mode`);
    if (b.fields) errors.push(...patchErrors(b.fields, a.fields ?? [], `${prefix}${b.name}.`));
  }
  const old = new Set(before.map((f) => f.name));
  for (const a of after) if (!old.has(a.name) && (a.mode ?? 'NULLABLE') === 'REQUIRED') errors.push(`Cannot add required field ${prefix}${a.name} to an existing schema`);
  return errors;
}

function paramValues(body: Record<string, unknown>): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const p of (body.queryParameters ?? []) as { name: string; parameterType: { type: string }; parameterValue: { value: string } }[]) {
    const t = p.parameterType.type;
    const v = p.parameterValue.value;
    out[p.name] = t === 'INT64' || t === 'FLOAT64' || t === 'NUMERIC' ? Number(v) : t === 'BOOL' ? v === 'true' : v;
  }
  return out;
}

export async function startBigQueryServer(): Promise<BigQueryServer> {
  const datasets = new Map<string, Record<string, unknown>>();
  const tables = new Map<string, StoredTable>();
  const requests: RequestLog[] = [];
  const faults: Fault[] = [];
  const handlers = new Map<string, (ctx: QueryContext) => QueryResult>();
  const results = new Map<string, { fields: QueryResult['fields']; rows: { f: { v: string | null }[] }[] }>();
  let refuse: (json: Record<string, unknown>) => string | undefined = () => undefined;
  let hold: { arrived: () => void; gate: Promise<void> } | undefined;
  let jobs = 0;

  const takeFault = (method: string, path: string): Fault | undefined => {
    const i = faults.findIndex((f) => f.method === method && path.endsWith(f.pathSuffix));
    return i < 0 ? undefined : faults.splice(i, 1)[0];
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    const body = await readBody(req);
    const path = url.pathname.replace(/^\/bigquery\/v2/, '');
    requests.push({ method, path, authorization: req.headers.authorization, body });
    const fault = takeFault(method, path);
    if (fault && !fault.afterStore) return apiError(res, fault.status, 'backendError', 'injected failure');
    const b = (body ?? {}) as Record<string, unknown>;
    let m: RegExpExecArray | null;

    if ((m = /^\/projects\/([^/]+)\/datasets\/([^/]+)$/.exec(path)) && method === 'GET') {
      const ds = datasets.get(`${m[1]}.${m[2]}`);
      return ds ? send(res, 200, ds) : apiError(res, 404, 'notFound', `Not found: Dataset ${m[1]}:${m[2]}`);
    }
    if ((m = /^\/projects\/([^/]+)\/datasets$/.exec(path)) && method === 'POST') {
      const ref = b.datasetReference as { datasetId: string };
      const key = `${m[1]}.${ref.datasetId}`;
      if (datasets.has(key)) return apiError(res, 409, 'duplicate', `Already Exists: Dataset ${key}`);
      const ds = { ...b, id: key, datasetReference: { projectId: m[1], datasetId: ref.datasetId } };
      datasets.set(key, ds);
      return send(res, 200, ds);
    }
    if ((m = /^\/projects\/([^/]+)\/datasets\/([^/]+)\/tables$/.exec(path)) && method === 'POST') {
      const ref = b.tableReference as { tableId: string };
      const key = `${m[2]}.${ref.tableId}`;
      if (tables.has(key)) return apiError(res, 409, 'duplicate', `Already Exists: Table ${key}`);
      const resource = { ...b, tableReference: { projectId: m[1] as string, datasetId: m[2] as string, tableId: ref.tableId }, etag: 'e1' } as StoredTable['resource'];
      tables.set(key, { resource, rows: [], insertIds: new Set() });
      return send(res, 200, resource);
    }
    if ((m = /^\/projects\/([^/]+)\/datasets\/([^/]+)\/tables\/([^/]+)$/.exec(path))) {
      const t = tables.get(`${m[2]}.${m[3]}`);
      if (!t) return apiError(res, 404, 'notFound', `Not found: Table ${m[1]}:${m[2]}.${m[3]}`);
      if (method === 'GET') return send(res, 200, t.resource);
      if (method === 'PATCH' || method === 'PUT') {
        const schema = b.schema as { fields: Field[] } | undefined;
        if (schema) {
          const errors = patchErrors(t.resource.schema.fields, schema.fields);
          if (errors.length > 0) return apiError(res, 400, 'invalid', errors.join('; '));
          t.resource.schema = schema;
        }
        t.resource.etag = `e${Number(t.resource.etag.slice(1)) + 1}`;
        return send(res, 200, t.resource);
      }
    }
    if ((m = /^\/projects\/([^/]+)\/datasets\/([^/]+)\/tables\/([^/]+)\/insertAll$/.exec(path)) && method === 'POST') {
      const t = tables.get(`${m[2]}.${m[3]}`);
      if (!t) return apiError(res, 404, 'notFound', `Not found: Table ${m[1]}:${m[2]}.${m[3]}`);
      if (hold) {
        const h = hold;
        h.arrived();
        await h.gate;
      }
      const rows = (b.rows ?? []) as { insertId?: string; json: Record<string, unknown> }[];
      const bad = rows.map((r) => {
        const injected = refuse(r.json);
        return [...rowErrors(t.resource.schema.fields, r.json), ...(injected === undefined ? [] : [injected])];
      });
      const insertErrors = bad.flatMap((errors, index) => (errors.length === 0 ? [] : [{ index, errors: errors.map((message) => ({ reason: 'invalid', location: '', message })) }]));
      if (insertErrors.length > 0 && b.skipInvalidRows !== true) {
        const stopped = rows.flatMap((_r, index) => (bad[index]?.length === 0 ? [{ index, errors: [{ reason: 'stopped', location: '', message: '' }] }] : []));
        return send(res, 200, { kind: 'bigquery#tableDataInsertAllResponse', insertErrors: [...insertErrors, ...stopped].sort((x, y) => x.index - y.index) });
      }
      rows.forEach((r, i) => {
        if (bad[i]?.length !== 0) return;
        if (r.insertId !== undefined && t.insertIds.has(r.insertId)) return;
        if (r.insertId !== undefined) t.insertIds.add(r.insertId);
        t.rows.push(r.json);
      });
      if (fault) return apiError(res, fault.status, 'backendError', 'injected failure after the rows were stored');
      return send(res, 200, { kind: 'bigquery#tableDataInsertAllResponse', ...(insertErrors.length > 0 ? { insertErrors } : {}) });
    }
    if ((m = /^\/projects\/([^/]+)\/queries$/.exec(path)) && method === 'POST') {
      const labels = (b.labels ?? {}) as Record<string, string>;
      const label = labels.kairos_query ?? '';
      const handler = [...handlers.entries()].find(([l]) => label === l || label.startsWith(l))?.[1];
      if (!handler) return apiError(res, 400, 'invalidQuery', `the local BigQuery server has no handler for query label "${label}"`);
      const ctx: QueryContext = {
        sql: String(b.query),
        params: paramValues(b),
        rows: (tableId) => [...tables.entries()].find(([k]) => k.endsWith(`.${tableId}`))?.[1].rows ?? [],
      };
      const result = handler(ctx);
      const jobId = `job_${++jobs}`;
      const wireRows = result.rows.map((r) => ({ f: result.fields.map((f) => ({ v: r[f.name] === null || r[f.name] === undefined ? null : String(r[f.name]) })) }));
      results.set(jobId, { fields: result.fields, rows: wireRows });
      return send(res, 200, {
        kind: 'bigquery#queryResponse',
        jobReference: { projectId: m[1], jobId, location: (b.location as string | undefined) ?? 'US' },
        jobComplete: true,
        schema: { fields: result.fields },
        rows: wireRows,
        totalRows: String(wireRows.length),
      });
    }
    if ((m = /^\/projects\/([^/]+)\/queries\/([^/]+)$/.exec(path)) && method === 'GET') {
      const r = results.get(m[2] as string);
      if (!r) return apiError(res, 404, 'notFound', `Not found: Job ${m[2]}`);
      return send(res, 200, { kind: 'bigquery#getQueryResultsResponse', jobComplete: true, schema: { fields: r.fields }, rows: r.rows, totalRows: String(r.rows.length) });
    }
    return apiError(res, 404, 'notFound', `the local BigQuery server does not implement ${method} ${path}`);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => apiError(res, 500, 'internalError', err instanceof Error ? err.message : String(err)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    tables,
    rows: (dataset, tableId) => tables.get(`${dataset}.${tableId}`)?.rows ?? [],
    failNext: (method, pathSuffix, status, options = {}) => faults.push({ method, pathSuffix, status, afterStore: options.afterStore ?? false }),
    onQuery: (label, handler) => handlers.set(label, handler),
    refuseRows: (why) => {
      refuse = why;
    },
    holdInserts: () => {
      let arrived!: () => void;
      let release!: () => void;
      const held = new Promise<void>((r) => (arrived = r));
      const gate = new Promise<void>((r) => (release = r));
      hold = { arrived, gate };
      return {
        held,
        release: () => {
          hold = undefined;
          release();
        },
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
