/**
 * Segment sync (`kairos segments sync`): each configured segment is a SQL query run in the warehouse that
 * returns its members (`customerId`) and, optionally, attribute columns. The result is compared with the current
 * profiles (crm.customers.v1, read from the beginning at the start of every run) and only profiles whose managed
 * segments or attributes changed are published, as whole profiles (the topic is compacted).
 *
 * Managed = the configured segment names and attribute names. Other segments and attributes on a profile are
 * kept as they are. A customer leaving a segment loses that segment's attributes. A customer without a
 * profile gets a new one with every consent off (a segment never grants consent); a tombstoned customer is
 * never recreated.
 */
import { readFileSync } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import type { CustomerProfile } from '../../schemas/contract.js';
import { Duration, toMs } from '../config/duration.js';
import { KairosError } from '../errors.js';
import type { SegmentMetrics } from './metrics.js';
import { SEGMENT_LABEL_PREFIX } from './ndjson-sink.js';
import type { QueryParam, Warehouse } from './warehouse.js';
import { schemaErrors } from '../config/schema-errors.js';

export const SegmentDef = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,47}$', description: 'the segment name written to profiles (lowercase, digits, _ and -)' }),
    sql: Type.String({ minLength: 1, description: 'standard SQL returning a customerId column (one row per member) and the attribute columns' }),
    params: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.Union([Type.String(), Type.Number(), Type.Boolean()]), { description: 'query parameters (@name in the SQL)' })),
    attributes: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { uniqueItems: true, description: 'result columns copied to profile attributes' })),
  },
  { additionalProperties: false },
);
export type SegmentDef = Static<typeof SegmentDef>;

export const SegmentsConfig = Type.Object(
  {
    interval: Type.Optional(Duration),
    segments: Type.Array(SegmentDef, { minItems: 1 }),
  },
  { additionalProperties: false },
);

export interface SegmentsConfigResolved {
  readonly intervalMs: number;
  readonly segments: readonly SegmentDef[];
}

/** Validates a segments config (every bad field named); KAIROS_ERR_CONFIG. */
export function parseSegmentsConfig(raw: unknown, source = 'segments config'): SegmentsConfigResolved {
  const errors = schemaErrors(SegmentsConfig, raw);
  if (errors.length === 0) {
    const cfg = raw as Static<typeof SegmentsConfig>;
    const names = new Set<string>();
    const attrs = new Map<string, string>();
    cfg.segments.forEach((s, i) => {
      if (names.has(s.name)) errors.push(`/segments/${i}/name: segment ${s.name} appears twice`);
      names.add(s.name);
      for (const a of s.attributes ?? []) {
        const owner = attrs.get(a);
        if (owner !== undefined) errors.push(`/segments/${i}/attributes: attribute ${a} is already managed by segment ${owner}`);
        attrs.set(a, s.name);
      }
    });
    if (errors.length === 0) return { intervalMs: toMs(cfg.interval ?? '15m'), segments: cfg.segments };
  }
  throw new KairosError('KAIROS_ERR_CONFIG', `invalid ${source}:\n  ${errors.join('\n  ')}`, { details: { errors } });
}

export function loadSegmentsConfig(path: string): SegmentsConfigResolved {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new KairosError('KAIROS_ERR_CONFIG', `KAIROS_SEGMENTS_CONFIG: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseSegmentsConfig(raw, path);
}

export type AttributeValue = string | number | boolean;

/** A segment's query result: member → its attribute values. */
export type SegmentResult = Map<string, Record<string, AttributeValue>>;

export interface SegmentChange {
  readonly segment: string;
  readonly joined: number;
  readonly left: number;
  readonly attributes: number;
  readonly members: number;
}

export interface SegmentDiff {
  /** Profiles to publish, by customerId order. */
  readonly updates: CustomerProfile[];
  readonly changes: SegmentChange[];
  /** Members skipped because their profile was erased (tombstone). */
  readonly erased: number;
}

const sameSet = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x) => b.includes(x));

function sameAttributes(a: Readonly<Record<string, AttributeValue>>, b: Readonly<Record<string, AttributeValue>>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

/** The profiles whose managed segments or attributes differ from the query results. Pure. */
export function diffSegments(profiles: ReadonlyMap<string, CustomerProfile | null>, defs: readonly SegmentDef[], results: ReadonlyMap<string, SegmentResult>, now: number): SegmentDiff {
  const managed = new Set(defs.map((d) => d.name));
  const managedAttrs = new Set(defs.flatMap((d) => d.attributes ?? []));
  const candidates = new Set<string>();
  for (const r of results.values()) for (const id of r.keys()) candidates.add(id);
  for (const [id, p] of profiles) {
    if (p && (p.segments.some((s) => managed.has(s)) || Object.keys(p.attributes).some((a) => managedAttrs.has(a)))) candidates.add(id);
  }
  const changes = new Map(defs.map((d) => [d.name, { segment: d.name, joined: 0, left: 0, attributes: 0, members: results.get(d.name)?.size ?? 0 }]));
  const updates: CustomerProfile[] = [];
  let erased = 0;
  for (const id of [...candidates].sort()) {
    const current = profiles.get(id);
    if (current === null) {
      erased++;
      continue;
    }
    const base: CustomerProfile = current ?? { customerId: id, updatedAt: now, consents: { push: false, email: false, onsite: false }, pushTokens: [], segments: [], attributes: {} };
    const segments = base.segments.filter((s) => !managed.has(s));
    const attributes: Record<string, AttributeValue> = {};
    for (const [k, v] of Object.entries(base.attributes)) if (!managedAttrs.has(k)) attributes[k] = v;
    for (const d of defs) {
      const row = results.get(d.name)?.get(id);
      const was = base.segments.includes(d.name);
      const c = changes.get(d.name);
      if (row === undefined) {
        if (was && c) c.left++;
        continue;
      }
      segments.push(d.name);
      if (!was && c) c.joined++;
      let attrChanged = false;
      for (const a of d.attributes ?? []) {
        const v = row[a];
        if (v !== undefined) attributes[a] = v;
        if (base.attributes[a] !== v) attrChanged = true;
      }
      if (was && attrChanged && c) c.attributes++;
    }
    // Keep the profile's order for segments it already had, new ones after.
    const ordered = [...base.segments.filter((s) => segments.includes(s)), ...segments.filter((s) => !base.segments.includes(s))];
    if (current !== undefined && sameSet(ordered, base.segments) && sameAttributes(attributes, base.attributes)) continue;
    updates.push({ ...base, segments: ordered, attributes, updatedAt: Math.max(now, base.updatedAt) });
  }
  return { updates, changes: [...changes.values()], erased };
}

/** One query result row to a member and its attributes; undefined when the row has no usable customerId. */
function member(def: SegmentDef, row: Readonly<Record<string, unknown>>): [string, Record<string, AttributeValue>] | undefined {
  const id = row.customerId ?? row.customer_id;
  if (typeof id !== 'string' || id === '' || id.length > 128) return undefined;
  const attrs: Record<string, AttributeValue> = {};
  for (const a of def.attributes ?? []) {
    const v = row[a];
    if (typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) attrs[a] = v;
  }
  return [id, attrs];
}

export interface ProfileStore {
  read(onProgress?: (records: number, total: number) => void): Promise<{ profiles: Map<string, CustomerProfile | null>; records: number; invalid: number }>;
  publish(profiles: readonly CustomerProfile[]): Promise<void>;
}

export interface SegmentSyncOptions {
  readonly warehouse: Warehouse;
  readonly profiles: ProfileStore;
  readonly config: SegmentsConfigResolved;
  readonly metrics?: SegmentMetrics | undefined;
  /** Progress lines for the operator (stderr). */
  readonly progress?: ((line: string) => void) | undefined;
  readonly now?: (() => number) | undefined;
}

export interface SyncRun {
  readonly profilesRead: number;
  readonly published: number;
  readonly changes: readonly SegmentChange[];
  readonly skippedRows: number;
  readonly erased: number;
}

/** One sync: read profiles, run every segment query, publish the changed profiles. */
export async function syncSegmentsOnce(opts: SegmentSyncOptions): Promise<SyncRun> {
  const say = opts.progress ?? (() => undefined);
  const now = opts.now ?? Date.now;
  const end = opts.metrics?.runSeconds.startTimer();
  try {
    let lastShown = 0;
    const snapshot = await opts.profiles.read((records, total) => {
      if (records - lastShown >= 50_000) {
        lastShown = records;
        say(`segments: reading profiles ${records.toLocaleString('en')} / ${total.toLocaleString('en')}`);
      }
    });
    say(`segments: ${snapshot.profiles.size.toLocaleString('en')} profiles read from crm.customers.v1 (${snapshot.records.toLocaleString('en')} records)`);
    opts.metrics?.profilesRead.set(snapshot.profiles.size);
    const results = new Map<string, SegmentResult>();
    let skippedRows = 0;
    for (const [i, def] of opts.config.segments.entries()) {
      const rows = await opts.warehouse.query({ label: `${SEGMENT_LABEL_PREFIX}${def.name}`, sql: def.sql, params: (def.params ?? {}) as Record<string, QueryParam> });
      const result: SegmentResult = new Map();
      for (const row of rows) {
        const m = member(def, row);
        if (m) result.set(m[0], m[1]);
        else skippedRows++;
      }
      results.set(def.name, result);
      say(`segments: [${i + 1}/${opts.config.segments.length}] ${def.name}: ${result.size.toLocaleString('en')} members`);
    }
    const diff = diffSegments(snapshot.profiles, opts.config.segments, results, now());
    await opts.profiles.publish(diff.updates);
    for (const c of diff.changes) {
      opts.metrics?.members.set({ segment: c.segment }, c.members);
      opts.metrics?.changes.inc({ segment: c.segment, change: 'joined' }, c.joined);
      opts.metrics?.changes.inc({ segment: c.segment, change: 'left' }, c.left);
      opts.metrics?.changes.inc({ segment: c.segment, change: 'attributes' }, c.attributes);
      say(`segments: ${c.segment}: +${c.joined} joined, −${c.left} left, ${c.attributes} attribute changes`);
    }
    opts.metrics?.published.inc(diff.updates.length);
    opts.metrics?.runs.inc({ result: 'ok' });
    opts.metrics?.lastSuccess.set(now() / 1000);
    if (skippedRows > 0) say(`segments: ${skippedRows} result rows without a customerId column were skipped`);
    if (diff.erased > 0) say(`segments: ${diff.erased} members have an erased profile (tombstone) and were not recreated`);
    say(`segments: published ${diff.updates.length} changed profiles`);
    return { profilesRead: snapshot.profiles.size, published: diff.updates.length, changes: diff.changes, skippedRows, erased: diff.erased };
  } catch (err) {
    opts.metrics?.runs.inc({ result: 'error' });
    throw err;
  } finally {
    end?.();
  }
}
