/**
 * A small in-process server speaking the subset of the Confluent Schema Registry REST API
 * (https://docs.confluent.io/platform/current/schema-registry/develop/api.html) that the official
 * @kafkajs/confluent-schema-registry client calls:
 *
 *   POST /subjects/{subject}/versions           register → {id}; the same schema gets the same global id
 *   GET  /schemas/ids/{id}                      → {schema} (+ schemaType when not AVRO, references when any)
 *   POST /subjects/{subject}                    look a schema up under a subject → {subject, id, version, schema}
 *   GET  /subjects/{subject}/versions/{v|latest} → {subject, id, version, schema}
 *   GET  /subjects/{subject}/versions           → [1, 2, …]
 *   GET  /subjects                              → [subject, …]
 *   GET  /config/{subject}, PUT /config/{subject}, GET /config, PUT /config   compatibility levels
 *
 * Responses use `application/vnd.schemaregistry.v1+json`; errors carry `{error_code, message}` with the
 * registry's codes (40401 subject not found, 40402 version not found, 40403 schema not found, 40408 no
 * subject-level config, 409 incompatible, 42201 invalid schema, 42203 invalid compatibility level).
 * Avro compatibility (BACKWARD, FORWARD, FULL and their _TRANSITIVE forms, NONE) is checked with avsc
 * resolvers, like the real registry refuses an incompatible new version.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import avro from 'avsc';

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';
const LEVELS = new Set(['NONE', 'BACKWARD', 'BACKWARD_TRANSITIVE', 'FORWARD', 'FORWARD_TRANSITIVE', 'FULL', 'FULL_TRANSITIVE']);

export interface RegisteredVersion {
  readonly version: number;
  readonly id: number;
  /** The schema as stored (compact JSON for Avro). */
  readonly schema: string;
  readonly schemaType: string;
}

export interface RequestLogEntry {
  readonly method: string;
  readonly path: string;
  readonly status: number;
}

export interface SchemaRegistryServer {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  readonly url: string;
  close(): Promise<void>;
  /** Every subject with its versions, oldest first. */
  subjects(): Map<string, RegisteredVersion[]>;
  /** The requests served so far (method, path, status). */
  requests(): RequestLogEntry[];
  /** While set, every request is answered with this HTTP status (e.g. 503) to simulate an outage; null ends it. */
  failWith(status: number | null): void;
}

interface StoredSchema {
  readonly id: number;
  readonly schema: string;
  readonly schemaType: string;
  readonly references: unknown[] | undefined;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: number,
    message: string,
  ) {
    super(message);
  }
}

const notFound = (code: 40401 | 40402 | 40403 | 40408, message: string) => new HttpError(404, code, message);

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.length === 0) return resolve(undefined);
      try {
        resolve(JSON.parse(text) as unknown);
      } catch {
        reject(new HttpError(400, 400, 'Unrecognized request body: not JSON'));
      }
    });
  });
}

function bodyObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(422, 422, 'Unprocessable entity: a JSON object is required');
  return body as Record<string, unknown>;
}

/** Normalises a schema so that formatting does not make two equal schemas different. */
function canonical(schemaType: string, schema: string): string {
  if (schemaType !== 'AVRO' && schemaType !== 'JSON') return schema;
  let parsed: unknown;
  try {
    parsed = JSON.parse(schema);
  } catch (err) {
    throw new HttpError(422, 42201, `Invalid schema: ${(err as Error).message}`);
  }
  if (schemaType === 'AVRO') {
    try {
      avro.Type.forSchema(parsed as avro.Schema);
    } catch (err) {
      throw new HttpError(422, 42201, `Invalid schema: ${(err as Error).message}`);
    }
  }
  return JSON.stringify(parsed);
}

/** Whether a reader of `reader` can read data written with `writer`. */
function canRead(reader: string, writer: string): boolean {
  try {
    avro.Type.forSchema(JSON.parse(reader) as avro.Schema).createResolver(avro.Type.forSchema(JSON.parse(writer) as avro.Schema));
    return true;
  } catch {
    return false;
  }
}

function compatible(level: string, candidate: string, existing: readonly StoredSchema[]): boolean {
  if (level === 'NONE' || existing.length === 0) return true;
  const against = level.endsWith('_TRANSITIVE') ? existing : existing.slice(-1);
  const backward = level.startsWith('BACKWARD') || level.startsWith('FULL');
  const forward = level.startsWith('FORWARD') || level.startsWith('FULL');
  return against.every((old) => (!backward || canRead(candidate, old.schema)) && (!forward || canRead(old.schema, candidate)));
}

export async function startSchemaRegistry(options: { defaultCompatibility?: string } = {}): Promise<SchemaRegistryServer> {
  const byId = new Map<number, StoredSchema>();
  const idByKey = new Map<string, number>();
  const versions = new Map<string, StoredSchema[]>();
  const configs = new Map<string, string>();
  let globalLevel = options.defaultCompatibility ?? 'BACKWARD';
  const log: RequestLogEntry[] = [];
  let outage: number | null = null;

  const subjectVersions = (subject: string): StoredSchema[] => {
    const vs = versions.get(subject);
    if (!vs || vs.length === 0) throw notFound(40401, `Subject '${subject}' not found.`);
    return vs;
  };
  const versionOf = (subject: string, version: string): { schema: StoredSchema; version: number } => {
    const vs = subjectVersions(subject);
    if (version === 'latest' || version === '-1') return { schema: vs[vs.length - 1]!, version: vs.length };
    const n = Number(version);
    if (!Number.isInteger(n) || n < 1) throw new HttpError(422, 42202, `The specified version '${version}' is not a valid version id.`);
    const s = vs[n - 1];
    if (!s) throw notFound(40402, `Version ${n} not found.`);
    return { schema: s, version: n };
  };
  const describe = (subject: string, s: StoredSchema, version: number) => ({
    subject,
    version,
    id: s.id,
    ...(s.schemaType === 'AVRO' ? {} : { schemaType: s.schemaType }),
    ...(s.references && s.references.length > 0 ? { references: s.references } : {}),
    schema: s.schema,
  });
  const schemaFromBody = (body: unknown): { schemaType: string; schema: string; references: unknown[] | undefined } => {
    const b = bodyObject(body);
    if (typeof b.schema !== 'string') throw new HttpError(422, 42201, 'Invalid schema: "schema" must be a string');
    const schemaType = typeof b.schemaType === 'string' ? b.schemaType : 'AVRO';
    const references = Array.isArray(b.references) ? (b.references as unknown[]) : undefined;
    return { schemaType, schema: canonical(schemaType, b.schema), references };
  };
  const keyOf = (s: { schemaType: string; schema: string; references: unknown[] | undefined }) =>
    JSON.stringify([s.schemaType, s.schema, s.references ?? []]);

  async function route(method: string, parts: string[], req: IncomingMessage): Promise<unknown> {
    const [head, a, b, c] = parts;
    if (head === 'subjects') {
      if (parts.length === 1 && method === 'GET') return [...versions.keys()].filter((s) => (versions.get(s)?.length ?? 0) > 0);
      if (a === undefined) throw notFound(40401, 'Subject not found.');
      if (parts.length === 2 && method === 'POST') {
        const wanted = schemaFromBody(await readBody(req));
        const vs = subjectVersions(a);
        const i = vs.findIndex((s) => keyOf(s) === keyOf(wanted));
        if (i < 0) throw notFound(40403, 'Schema not found');
        return describe(a, vs[i]!, i + 1);
      }
      if (b === 'versions' && parts.length === 3 && method === 'POST') {
        const wanted = schemaFromBody(await readBody(req));
        const vs = versions.get(a) ?? [];
        const existing = vs.find((s) => keyOf(s) === keyOf(wanted));
        if (existing) return { id: existing.id };
        const level = configs.get(a) ?? globalLevel;
        if (wanted.schemaType === 'AVRO' && !compatible(level, wanted.schema, vs)) {
          throw new HttpError(409, 409, `Schema being registered is incompatible with an earlier schema for subject "${a}" (${level})`);
        }
        let id = idByKey.get(keyOf(wanted));
        if (id === undefined) {
          id = byId.size + 1;
          idByKey.set(keyOf(wanted), id);
          byId.set(id, { id, ...wanted });
        }
        vs.push(byId.get(id)!);
        versions.set(a, vs);
        return { id };
      }
      if (b === 'versions' && parts.length === 3 && method === 'GET') return subjectVersions(a).map((_, i) => i + 1);
      if (b === 'versions' && c !== undefined && parts.length === 4 && method === 'GET') {
        const { schema, version } = versionOf(a, c);
        return describe(a, schema, version);
      }
    }
    if (head === 'schemas' && a === 'ids' && b !== undefined && parts.length === 3 && method === 'GET') {
      const s = byId.get(Number(b));
      if (!s) throw notFound(40403, `Schema ${b} not found`);
      return {
        ...(s.schemaType === 'AVRO' ? {} : { schemaType: s.schemaType }),
        ...(s.references && s.references.length > 0 ? { references: s.references } : {}),
        schema: s.schema,
      };
    }
    if (head === 'config') {
      const setLevel = async (): Promise<string> => {
        const level = bodyObject(await readBody(req)).compatibility;
        if (typeof level !== 'string' || !LEVELS.has(level.toUpperCase())) throw new HttpError(422, 42203, 'Invalid compatibility level');
        return level.toUpperCase();
      };
      if (parts.length === 1 && method === 'GET') return { compatibilityLevel: globalLevel };
      if (parts.length === 1 && method === 'PUT') {
        globalLevel = await setLevel();
        return { compatibility: globalLevel };
      }
      if (a !== undefined && parts.length === 2 && method === 'GET') {
        const level = configs.get(a);
        if (level === undefined) throw notFound(40408, `Subject '${a}' does not have subject-level compatibility configured`);
        return { compatibilityLevel: level };
      }
      if (a !== undefined && parts.length === 2 && method === 'PUT') {
        const level = await setLevel();
        configs.set(a, level);
        return { compatibility: level };
      }
    }
    throw new HttpError(404, 404, 'HTTP 404 Not Found');
  }

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const done = (status: number, body: unknown): void => {
      log.push({ method, path, status });
      send(res, status, body);
    };
    if (outage !== null) {
      req.resume();
      return done(outage, { error_code: outage * 100 + 1, message: 'simulated outage' });
    }
    let parts: string[];
    try {
      parts = path.split('/').filter((p) => p.length > 0).map((p) => decodeURIComponent(p));
    } catch {
      return done(404, { error_code: 404, message: 'HTTP 404 Not Found' });
    }
    route(method, parts, req).then(
      (body) => done(200, body),
      (err: unknown) => {
        if (err instanceof HttpError) done(err.status, { error_code: err.errorCode, message: err.message });
        else done(500, { error_code: 50001, message: `Error in the backend data store: ${String(err)}` });
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
    subjects: () =>
      new Map(
        [...versions].map(([subject, vs]) => [subject, vs.map((s, i) => ({ version: i + 1, id: s.id, schema: s.schema, schemaType: s.schemaType }))]),
      ),
    requests: () => [...log],
    failWith: (status) => {
      outage = status;
    },
  };
}
