/**
 * Running one history through `kairos replay` (the reference) and reading what a Kafka runner wrote, then
 * comparing the two: test/kafka/equivalence-modes.test.ts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Admin, Kafka, Message, Producer } from 'kafkajs';
import type { Registry } from 'prom-client';
import type { Trigger, TriggerAudit } from '../../schemas/contract.js';
import { run } from '../../src/cli/main.js';
import { sleep } from '../helpers.js';
import { timeline, timeOf, type Input, type ShopHistory } from './shop-history.js';

export const TRIGGERS = 'crm.triggers.v1';
export const AUDIT = 'crm.trigger-audit.v1';

export type Output = Trigger | TriggerAudit;
export interface Outputs {
  readonly triggers: Trigger[];
  readonly audits: TriggerAudit[];
}

const hhmm = (ms: number): string => new Date(ms).toISOString().slice(11, 19);

// ---------------------------------------------------------------------------------------------------------
// Replay

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

const readNdjson = <T>(path: string): T[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as T);

/** `kairos replay` over `inputs` (in this order) with `campaigns` as its --config. */
export async function viaReplay(dir: string, inputs: readonly Input[], campaigns: unknown): Promise<Outputs> {
  const input = join(dir, 'events.ndjson');
  writeFileSync(input, inputs.map((e) => JSON.stringify({ topic: e.topic, key: e.key, value: e.value })).join('\n') + '\n');
  const config = join(dir, 'campaigns.json');
  writeFileSync(config, JSON.stringify(campaigns));
  const out = join(dir, 'triggers.ndjson');
  const audit = join(dir, 'audit.ndjson');
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await run(['replay', '--input', input, '--output', out, '--audit', audit, '--config', config, '--errors', join(dir, 'errors.ndjson'), '--quiet'], { stdout, stderr });
  assert.equal(code, 0, `kairos replay failed: ${stderr.text}`);
  return { triggers: readNdjson<Trigger>(out), audits: readNdjson<TriggerAudit>(audit) };
}

// ---------------------------------------------------------------------------------------------------------
// Kafka side

const message = (e: Input): Message => ({ key: e.key, value: JSON.stringify(e.value), partition: e.partition });

/** Every input on its topic, each partition in event-time order (a backlog). */
export async function produceAll(producer: Producer, inputs: readonly Input[]): Promise<void> {
  const byTopic = new Map<string, Message[]>();
  for (const e of inputs) byTopic.set(e.topic, [...(byTopic.get(e.topic) ?? []), message(e)]);
  // In slices, to keep produce requests well below the broker's limits.
  for (const [topic, messages] of byTopic) {
    for (let i = 0; i < messages.length; i += 500) await producer.send({ topic, messages: messages.slice(i, i + 500), acks: -1 });
  }
}

/**
 * Chunks of consecutive inputs (event-time order), each of one input topic and one partition, at most `max`
 * records. Produced one chunk at a time, each after the runner processed the one before, no task sees a record
 * of an input topic or of an internal topic before an older record of its own inputs:
 * - the fetch order of topics does not matter, since a chunk reaches one task through one topic;
 * - internal records (repartitioned by sku, fanned out to customers) carry the event time of what caused them.
 *   Those caused by an earlier chunk are no newer than this chunk's records: they may only arrive late, which
 *   the topologies must not mind. Those caused by this chunk exist only once its older records are processed.
 *   A chunk with records of two partitions would break this: an internal record caused by the newer one may
 *   reach the other partition's task before its older input record is fetched, move its stream time past a
 *   timer that record would have cancelled, and fire it (the live test saw a checkout abandonment whose order,
 *   at 15:37, came in one chunk with basket records of 16:30-17:00 on other partitions; Kafka Streams' event-time
 *   merge has the same race).
 */
export function liveChunks(inputs: readonly Input[], max = 25): Input[][] {
  const chunks: Input[][] = [];
  let cur: Input[] = [];
  for (const e of inputs) {
    const first = cur[0];
    if (first !== undefined && (cur.length >= max || first.topic !== e.topic || first.partition !== e.partition)) {
      chunks.push(cur);
      cur = [];
    }
    cur.push(e);
  }
  if (cur.length > 0) chunks.push(cur);
  return chunks;
}

export async function produceChunk(producer: Producer, chunk: readonly Input[]): Promise<void> {
  const byTopic = new Map<string, Message[]>();
  for (const e of chunk) byTopic.set(e.topic, [...(byTopic.get(e.topic) ?? []), message(e)]);
  await producer.sendBatch({ topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })), acks: -1 });
}

/** Input records of `topics` the runner processed so far (kairos_records_processed_total). */
export async function processedCount(registry: Registry, topics: readonly string[]): Promise<number> {
  const metric = registry.getSingleMetric('kairos_records_processed_total');
  if (!metric) return 0;
  const { values } = await metric.get();
  return values.filter((v) => topics.includes(String(v.labels.topic))).reduce((a, v) => a + v.value, 0);
}

export interface Collector extends Outputs {
  /** Wall clock of the last output record read. */
  lastAt(): number;
  stop(): Promise<void>;
}

/** Reads the trigger and audit topics from the beginning for as long as it runs. */
export async function outputCollector(kafka: Kafka): Promise<Collector> {
  const consumer = kafka.consumer({ groupId: `equivalence-collect-${randomUUID()}`, maxWaitTimeInMs: 100 });
  const triggers: Trigger[] = [];
  const audits: TriggerAudit[] = [];
  let last = Date.now();
  await consumer.connect();
  await consumer.subscribe({ topics: [TRIGGERS, AUDIT], fromBeginning: true });
  await consumer.run({
    eachMessage: ({ topic, message: m }) => {
      const value = JSON.parse((m.value as Buffer).toString('utf8')) as Output;
      if (topic === TRIGGERS) triggers.push(value as Trigger);
      else audits.push(value as TriggerAudit);
      last = Date.now();
      return Promise.resolve();
    },
  });
  return { triggers, audits, lastAt: () => last, stop: () => consumer.disconnect() };
}

/** Records of `topics` not yet covered by the group's committed offsets (a topic that cannot be read counts as lag). */
export async function groupLag(admin: Admin, groupId: string, topics: readonly string[]): Promise<{ total: number; detail: string }> {
  let total = 0;
  const detail: string[] = [];
  for (const topic of topics) {
    try {
      const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
      const ends = await admin.fetchTopicOffsets(topic);
      for (const e of ends) {
        const c = committed.find((x) => x.topic === topic)?.partitions.find((p) => p.partition === e.partition)?.offset ?? '-1';
        const done = BigInt(c) < 0n ? BigInt(e.low) : BigInt(c);
        const lag = Math.max(0, Number(BigInt(e.high) - done));
        total += lag;
        if (lag > 0) detail.push(`${topic}[${e.partition}] committed ${c} / end ${e.high}`);
      }
    } catch (err) {
      total += 1;
      detail.push(`${topic}: ${(err as Error).message}`);
    }
  }
  return { total, detail: detail.join('; ') };
}

/**
 * Waits until the group's committed offsets cover `topics` (inputs and repartition topics: the runner
 * acknowledges outputs before it commits offsets) and no output has come for `quietMs`; returns how it ended.
 */
export async function untilCaughtUp(admin: Admin, groupId: string, topics: readonly string[], out: Collector, o: { quietMs?: number; timeoutMs?: number } = {}): Promise<{ ok: boolean; text: string }> {
  const quietMs = o.quietMs ?? 3000;
  const timeoutMs = o.timeoutMs ?? 120_000;
  const start = Date.now();
  let caughtUpAt: number | undefined;
  for (;;) {
    const lag = await groupLag(admin, groupId, topics);
    const now = Date.now();
    if (lag.total === 0) caughtUpAt ??= now;
    else caughtUpAt = undefined;
    if (caughtUpAt !== undefined && now - caughtUpAt >= quietMs && now - out.lastAt() >= quietMs) {
      return { ok: true, text: `caught up ${((caughtUpAt - start) / 1000).toFixed(1)} s after the wait began` };
    }
    if (now - start > timeoutMs) return { ok: false, text: `NOT caught up within ${timeoutMs / 1000} s: lag ${lag.total} (${lag.detail})` };
    await sleep(250);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Comparison

/** Everything but where the cause sits in the input (partition/offset differ between runners by design). */
function normalise(o: Output): Record<string, unknown> {
  return { ...o, causedBy: { eventId: o.causedBy.eventId, topic: o.causedBy.topic } };
}

const stable = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) : x,
  );

export function summary(o: Output): string {
  const decision = 'decision' in o ? ` ${o.decision}/${o.reason}` : '';
  return `${o.type}${decision} ${o.customerId} at ${hhmm(o.occurredAt)} caused by ${o.causedBy.eventId}`;
}

/** `path: replay … / kafka …` for every leaf (or array) that differs between two JSON values. */
function leafDiff(a: unknown, b: unknown, path = ''): string[] {
  const isObject = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);
  if (isObject(a) && isObject(b)) {
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort().flatMap((k) => leafDiff(a[k], b[k], path === '' ? k : `${path}.${k}`));
  }
  if (stable(a) === stable(b)) return [];
  const show = (x: unknown) => (x === undefined ? '(absent)' : stable(x));
  return [`${path}: replay ${show(a)} / kafka ${show(b)}`];
}

export interface Difference {
  readonly customerId: string;
  readonly occurredAt: number;
  /** missing | extra | differs | conflict (one runner wrote two different records with one id) */
  readonly kind: 'missing' | 'extra' | 'differs' | 'conflict';
  /** e.g. "BASKET_PRICE_DROP" or "BROWSE_ABANDONED SUPPRESSED/cap". */
  readonly what: string;
  readonly text: string;
}

export interface Comparison {
  readonly differences: Difference[];
  /** Ids Kafka wrote more than once, with equal records (allowed: at-least-once). */
  readonly duplicates: number;
  readonly distinct: number;
}

/**
 * Replay's and Kafka's records of one output, by id. Kafka may repeat a record with the same id (at least
 * once): the de-duplicated sets are compared, and the repeats counted; a repeat that differs is a difference.
 */
export function compare<T extends Output>(what: string, idOf: (o: T) => string, fromReplay: readonly T[], fromKafka: readonly T[]): Comparison {
  const found: Difference[] = [];
  const label = (o: T) => ('decision' in o ? `${o.type} ${o.decision}/${o.reason}` : o.type);
  const note = (o: T, kind: Difference['kind'], text: string) => found.push({ customerId: o.customerId, occurredAt: o.occurredAt, kind, what: label(o), text });
  let duplicates = 0;
  const index = (list: readonly T[], runner: string): Map<string, T> => {
    const m = new Map<string, T>();
    for (const o of list) {
      const id = idOf(o);
      const seen = m.get(id);
      if (seen) {
        duplicates += runner === 'kafka' ? 1 : 0;
        if (stable(normalise(seen)) !== stable(normalise(o))) {
          note(o, 'conflict', `${what} ${id}: ${runner} wrote two different records with this id:\n      ${stable(normalise(seen))}\n      ${stable(normalise(o))}`);
        }
      }
      m.set(id, o);
    }
    return m;
  };
  const r = index(fromReplay, 'replay');
  const replayDuplicates = duplicates;
  duplicates = 0;
  const k = index(fromKafka, 'kafka');
  assert.equal(replayDuplicates, 0, `replay wrote ${what} ids twice`);
  for (const [id, o] of r) if (!k.has(id)) note(o, 'missing', `${what.padEnd(7)} missing from kafka: ${summary(o)} [${id}]`);
  for (const [id, o] of k) if (!r.has(id)) note(o, 'extra', `${what.padEnd(7)} only in kafka:     ${summary(o)} [${id}]`);
  for (const [id, a] of r) {
    const b = k.get(id);
    if (!b) continue;
    const diffs = leafDiff(normalise(a), normalise(b));
    if (diffs.length > 0) note(a, 'differs', `${what.padEnd(7)} differs:           ${summary(a)} [${id}]\n${diffs.map((d) => `      ${d}`).join('\n')}`);
  }
  return { differences: found, duplicates, distinct: k.size };
}

/** Counts by key, as `a 3, b 1`. */
export function tally(keys: readonly string[]): string {
  const m = new Map<string, number>();
  for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
  return [...m]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
}

/** Triggers by type and audit records by type and decision/reason. */
export function outputSummary(o: Outputs): string {
  return `triggers: ${tally(o.triggers.map((t) => t.type))}; audits: ${tally(o.audits.map((a) => `${a.type} ${a.decision}/${a.reason}`))}`;
}

/**
 * Compares Kafka's outputs with replay's and fails with a readable report (per customer: its inputs, the
 * catalog of its skus, and what differs) unless they agree. Returns the counts for the test's diagnostics.
 */
export function assertEquivalent(
  mode: string,
  h: ShopHistory,
  expected: Outputs,
  actual: Outputs,
  waited: { ok: boolean; text: string },
  diagnostic: (s: string) => void,
  cap?: { readonly max: number; readonly windowMs: number },
): void {
  const tr = compare('trigger', (x: Trigger) => x.triggerId, expected.triggers, actual.triggers);
  const au = compare('audit', (x: TriggerAudit) => x.auditId, expected.audits, actual.audits);
  diagnostic(
    `${mode}: kafka ${tr.distinct} distinct triggers (${tr.duplicates} repeated), ${au.distinct} distinct audit records (${au.duplicates} repeated); ` +
      `replay ${expected.triggers.length} / ${expected.audits.length}; ${waited.text}`,
  );
  const contested = cap ? capContested(expected, actual, cap, diagnostic) : new Set<string>();
  const all = [...tr.differences, ...au.differences].filter((d) => !contested.has(d.customerId));
  if (all.length === 0 && waited.ok) return;
  const byCustomer = new Map<string, Difference[]>();
  for (const d of all) byCustomer.set(d.customerId, [...(byCustomer.get(d.customerId) ?? []), d]);
  const customers = [...byCustomer.keys()].sort();
  const head = `${mode}: replay and kafka disagree (${waited.text}): ${tr.differences.length} trigger and ${au.differences.length} audit difference(s) for ${customers.length} customer(s)`;
  const kinds = tally(all.map((d) => `${d.kind} ${d.what}`));
  diagnostic(head);
  diagnostic(`differences by kind: ${kinds}`);
  const SHOWN = 10;
  assert.fail(
    [
      head,
      `differences by kind: ${kinds}`,
      `replay  ${outputSummary(expected)}`,
      `kafka   ${outputSummary({ triggers: dedupe(actual.triggers, (t) => t.triggerId), audits: dedupe(actual.audits, (a) => a.auditId) })}`,
      ...customers.slice(0, SHOWN).flatMap((c) => [
        timeline(h, c),
        ...(byCustomer.get(c) ?? []).sort((x, y) => x.occurredAt - y.occurredAt).map((d) => `    ! ${d.text}`),
      ]),
      ...(customers.length > SHOWN ? [`  … and ${customers.length - SHOWN} more customer(s): ${customers.slice(SHOWN).join(', ')}`] : []),
    ].join('\n'),
  );
}

const FAN_OUT = new Set(['BASKET_PRICE_DROP', 'WISHLIST_BACK_IN_STOCK']);
const isCapOrSent = (a: TriggerAudit): boolean => a.decision === 'SENT' || (a.decision === 'SUPPRESSED' && a.reason === 'cap');

/**
 * The one documented difference (topologies/common/README.md, guards): a fan-out trigger (price drop, restock)
 * reaches the customer's task through a repartition topic, after triggers of later event time may have been
 * decided there; when the cap was reached, which of them is sent can then differ from replay, though the cap
 * always holds. Customers where the runners' cap decisions differ and a fan-out trigger took part are checked
 * for what the design guarantees instead of equality, and their set is returned (the other customers are
 * compared exactly):
 * - every trigger was decided by both runners (the same ids, with an audit record each);
 * - every decision but SENT and SUPPRESSED/cap is the same (consent, quiet hours, cooldown, holdout, audience);
 * - Kafka never sent more than the cap within any window.
 * Only a sent trigger counts as notified (DESIGN §3, issue 14): the topologies' notified state follows the
 * guards' decisions, so for these customers it follows the cap's order too — a restock trigger may be
 * SUPPRESSED/cooldown in one runner and sent or capped in the other (the earlier restock it is measured from was
 * capped in one of them), and a price drop may be a candidate in one runner only (the drop before it was capped
 * there, so it is no reference). Those two are allowed; everything else above still holds.
 */
function capContested(expected: Outputs, actual: Outputs, cap: { readonly max: number; readonly windowMs: number }, diagnostic: (s: string) => void): Set<string> {
  const audits = (o: Outputs, c: string) => dedupe(o.audits, (a) => a.auditId).filter((a) => a.customerId === c);
  const decisions = (list: readonly TriggerAudit[]) => new Map<string, string[]>(list.map((a) => [a.triggerId, list.filter((x) => x.triggerId === a.triggerId).map((x) => `${x.decision}/${x.reason}`).sort()]));
  const customers = new Set([...expected.audits, ...actual.audits].map((a) => a.customerId));
  const contested = new Set<string>();
  for (const c of customers) {
    const r = audits(expected, c);
    const k = audits(actual, c);
    const capped = (list: readonly TriggerAudit[]) => list.filter(isCapOrSent).map((a) => `${a.triggerId} ${a.decision}`).sort().join();
    if (capped(r) === capped(k)) continue;
    if (![...r, ...k].some((a) => a.decision === 'SUPPRESSED' && a.reason === 'cap')) continue;
    if (![...r, ...k].some((a) => FAN_OUT.has(a.type))) continue;
    const rd = decisions(r);
    const kd = decisions(k);
    const show = (list: readonly TriggerAudit[]) => list.map((a) => `${new Date(a.occurredAt).toISOString().slice(11, 19)} ${a.type} ${a.decision}/${a.reason} ${a.triggerId.slice(0, 8)}`).join('; ');
    const typeOf = new Map([...r, ...k].map((a) => [a.triggerId, a.type] as const));
    const both = (ids: Iterable<string>) => [...ids].filter((id) => typeOf.get(id) !== 'BASKET_PRICE_DROP' || (rd.has(id) && kd.has(id))).sort();
    assert.deepEqual(both(kd.keys()), both(rd.keys()), `${c}: the same triggers decided by both runners\n  replay: ${show(r)}\n  kafka:  ${show(k)}`);
    for (const [id, list] of rd) {
      if (!kd.has(id)) continue;
      const follows = (d: string) => d === 'SENT/ok' || d === 'SUPPRESSED/cap' || (typeOf.get(id) === 'WISHLIST_BACK_IN_STOCK' && d === 'SUPPRESSED/cooldown');
      const other = (kd.get(id) ?? []).filter((d) => !follows(d));
      assert.deepEqual(other, list.filter((d) => !follows(d)), `${c}: decisions of ${id} other than sent/cap`);
    }
    const sent = k.filter((a) => a.decision === 'SENT').map((a) => a.occurredAt).sort((a, b) => a - b);
    for (const t of sent) assert.ok(sent.filter((x) => x > t - cap.windowMs && x <= t).length <= cap.max, `${c}: kafka sent more than ${cap.max} within ${cap.windowMs} ms\n  replay: ${show(r)}\n  kafka:  ${show(k)}`);
    contested.add(c);
  }
  if (contested.size > 0) diagnostic(`cap decided in another order (fan-out triggers arriving late; cap held, other decisions equal) for ${contested.size} customer(s): ${[...contested].sort().join(', ')}`);
  return contested;
}

export function dedupe<T>(list: readonly T[], id: (x: T) => string): T[] {
  return [...new Map(list.map((x) => [id(x), x])).values()];
}

/** The inputs of a history with the clock, in the order replay reads them. */
export function replayInputs(h: ShopHistory): Input[] {
  const all = [...h.events, ...h.clock];
  for (let i = 1; i < all.length; i++) assert.ok(timeOf(all[i - 1] as Input) <= timeOf(all[i] as Input), 'inputs in event-time order');
  return all;
}
