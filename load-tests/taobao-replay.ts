/**
 * Real customer behaviour through the real replay path (npm run bench:taobao): the Taobao UserBehavior sample
 * (../shared/data/taobao/, read in place, never copied into the repo) converted on the fly to contract envelopes
 * and fed to replay() with the real topology, through a Readable (no temporary input file).
 *
 * CSV: `ts_ms,user_id,session_id,event,item_id,category,brand,price` with a header; empty fields are unknown.
 * Conversion (eventId = `tb-<csv line>`, customerId = user_id, sku = productId = item_id):
 *   view         → shop.pageviews.v1 {productId}
 *   cart_add     → shop.basket.v1 ITEM_ADDED, quantity 1, unitPrice only when the row has a price
 *   cart_remove  → shop.basket.v1 ITEM_REMOVED (the whole line)
 *   purchase     → shop.orders.v1, one item, quantity 1; the contract requires a unit price: the row's price,
 *                  else the last price seen for the item, else amount 0 (counted and reported)
 *   wishlist_add → shop.wishlist.v1 ITEM_ADDED {productId} (no sku: any size)
 * Prices are decimal currency units and assumed to be EUR (the data carries no currency). category, brand
 * and session_id are not used by the contract. The sample has no price or stock changes.
 *
 * After the input, pending timers fire up to the last event time + 24 h (--until overrides), so baskets left at
 * the end of the sample are judged too. The triggers are cross-checked against an independent reference model.
 *
 *   npm run bench:taobao -- [--input ../shared/data/taobao/sample_window.csv.gz] [--until <ms|ISO>]
 *                           [--output triggers.ndjson] [--audit audit.ndjson] [--show 10]
 */
import { createReadStream, existsSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { createGunzip } from 'node:zlib';
import pino from 'pino';
import type { BasketEvent, Money, OrderEvent, PageviewEvent, Trigger, TriggerAudit, WishlistEvent } from '../schemas/contract.js';
import { buildTopology } from '../src/app/topology.js';
import { resolveCampaigns } from '../src/config/campaigns.js';
import type { FieldError } from '../src/serde/validate.js';
import { NdjsonWriter, type LineSink } from '../src/replay/ndjson-writer.js';
import { replay } from '../src/replay/replay.js';
import { AbandonmentOracle, compareTriggers, formatComparison, triggerKey } from './lib/abandonment-oracle.js';
import { bump, fmtInt, fmtSecs, isoOf, maxRssBytes, fmtBytes, parseCount, parseTime, REPO_ROOT, sortedCounts, table, UsageError, isUsageError } from './lib/common.js';

const DEFAULT_INPUT = join(REPO_ROOT, '..', 'shared', 'data', 'taobao', 'sample_user_histories.csv.gz');
const COLUMNS = ['ts_ms', 'user_id', 'session_id', 'event', 'item_id', 'category', 'brand', 'price'] as const;
type Column = (typeof COLUMNS)[number];
const CURRENCY = 'EUR';
const UNTIL_AFTER_LAST_EVENT = 24 * 3_600_000;

const log = (msg: string): void => {
  process.stderr.write(`taobao: ${msg}\n`);
};

/** Splits one CSV line; handles quoted fields ("a,b", "" escapes) although the samples have none. */
export function splitCsv(line: string): string[] {
  if (!line.includes('"')) return line.split(',');
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function csvLines(path: string): AsyncIterable<string> {
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  // crlfDelay: Infinity makes \r\n one line break (the samples use CRLF).
  return createInterface({ input: path.endsWith('.gz') ? file.pipe(createGunzip()) : file, crlfDelay: Infinity });
}

interface BadRow {
  readonly line: number;
  readonly reason: string;
  readonly text: string;
}

type Envelope =
  | { topic: 'shop.pageviews.v1'; key: string; value: PageviewEvent }
  | { topic: 'shop.basket.v1'; key: string; value: BasketEvent }
  | { topic: 'shop.orders.v1'; key: string; value: OrderEvent }
  | { topic: 'shop.wishlist.v1'; key: string; value: WishlistEvent };

/** Row → envelope, with the counts the report needs. One instance per input file. */
class Converter {
  rows = 0;
  readonly converted = new Map<string, number>();
  readonly bad: BadRow[] = [];
  readonly customers = new Set<string>();
  readonly items = new Set<string>();
  ordersWithRowPrice = 0;
  ordersWithLastPrice = 0;
  ordersWithoutPrice = 0;
  outOfOrder = 0;
  firstTs = Number.NaN;
  lastTs = Number.NaN;
  /** Basket events by eventId, to describe a trigger's cause. */
  readonly basketRows = new Map<string, { line: number; event: string; ts: number; item: string }>();
  readonly #lastPrice = new Map<string, number>();
  readonly #index: Record<Column, number>;

  constructor(header: string) {
    const names = splitCsv(header).map((h) => h.trim());
    const missing = COLUMNS.filter((c) => !names.includes(c));
    if (missing.length > 0) throw new UsageError(`CSV header lacks ${missing.join(', ')} (got: ${header})`);
    this.#index = Object.fromEntries(COLUMNS.map((c) => [c, names.indexOf(c)])) as Record<Column, number>;
  }

  convert(text: string, line: number): Envelope | undefined {
    this.rows++;
    const f = splitCsv(text);
    const get = (c: Column): string => (f[this.#index[c]] ?? '').trim();
    const fail = (reason: string): undefined => {
      this.bad.push({ line, reason, text: text.length > 200 ? `${text.slice(0, 200)}…` : text });
      return undefined;
    };
    if (f.length < COLUMNS.length) return fail(`${f.length} fields, expected ${COLUMNS.length}`);
    const tsText = get('ts_ms');
    const ts = Number(tsText);
    if (!/^[0-9]+$/.test(tsText) || !Number.isSafeInteger(ts)) return fail(`ts_ms "${tsText}" is not epoch milliseconds`);
    const user = get('user_id');
    if (user === '' || user.length > 128) return fail('user_id empty or longer than 128');
    const event = get('event');
    const item = get('item_id');
    if (item === '' || item.length > 128) return fail('item_id empty or longer than 128');
    const priceText = get('price');
    let price: Money | undefined;
    if (priceText !== '') {
      const amount = Math.round(Number(priceText) * 100);
      if (!Number.isSafeInteger(amount) || amount < 0) return fail(`price "${priceText}" is not a non-negative number`);
      price = { amount, currency: CURRENCY };
      this.#lastPrice.set(item, amount);
    }
    const base = { eventId: `tb-${line}`, customerId: user, occurredAt: ts };
    let env: Envelope;
    switch (event) {
      case 'view':
        env = { topic: 'shop.pageviews.v1', key: user, value: { ...base, productId: item } };
        break;
      case 'cart_add':
      case 'cart_remove': {
        const value: BasketEvent =
          event === 'cart_add'
            ? { ...base, type: 'ITEM_ADDED', sku: item, productId: item, quantity: 1, ...(price ? { unitPrice: price } : {}) }
            : { ...base, type: 'ITEM_REMOVED', sku: item, productId: item };
        env = { topic: 'shop.basket.v1', key: user, value };
        this.basketRows.set(base.eventId, { line, event, ts, item });
        break;
      }
      case 'purchase': {
        let unitPrice = price;
        if (unitPrice) this.ordersWithRowPrice++;
        else {
          const last = this.#lastPrice.get(item);
          if (last !== undefined) this.ordersWithLastPrice++;
          else this.ordersWithoutPrice++;
          unitPrice = { amount: last ?? 0, currency: CURRENCY };
        }
        env = { topic: 'shop.orders.v1', key: user, value: { ...base, orderId: `tb-order-${line}`, items: [{ sku: item, productId: item, quantity: 1, unitPrice }] } };
        break;
      }
      case 'wishlist_add':
        env = { topic: 'shop.wishlist.v1', key: user, value: { ...base, type: 'ITEM_ADDED', productId: item } };
        break;
      default:
        return fail(`unknown event "${event}"`);
    }
    if (ts < this.lastTs) this.outOfOrder++;
    if (Number.isNaN(this.firstTs)) this.firstTs = ts;
    this.lastTs = Number.isNaN(this.lastTs) ? ts : Math.max(this.lastTs, ts);
    this.customers.add(user);
    this.items.add(item);
    bump(this.converted, `${event} → ${env.topic}${'type' in env.value ? ` ${env.value.type}` : ''}`);
    return env;
  }
}

/** Last event time in the file: a quick pre-pass, because `until` must be known before replay() starts. */
async function lastEventTime(path: string): Promise<number> {
  let last = Number.NaN;
  let header = true;
  for await (const text of csvLines(path)) {
    if (header) {
      header = false;
      continue;
    }
    const ts = Number(text.slice(0, text.indexOf(',')));
    if (Number.isSafeInteger(ts) && !(ts <= last)) last = ts;
  }
  return last;
}

/** Collects NDJSON text in memory (the outputs of a sample are small). */
class MemoryNdjson extends Writable {
  readonly chunks: string[] = [];
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
    cb();
  }
  lines(): string[] {
    return this.chunks
      .join('')
      .split('\n')
      .filter((l) => l !== '');
  }
}

/** Bad lines as replay() reports them (after conversion: should stay empty). */
class MemorySink implements LineSink {
  readonly items: Array<{ line: number; errors: readonly FieldError[] }> = [];
  write(value: unknown): void {
    this.items.push(value as { line: number; errors: readonly FieldError[] });
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      input: { type: 'string' },
      until: { type: 'string' },
      output: { type: 'string' },
      audit: { type: 'string' },
      show: { type: 'string' },
    },
    strict: true,
  });
  const input = values.input ?? DEFAULT_INPUT;
  if (!existsSync(input)) throw new UsageError(`input ${input} not found (the samples live in ../shared/data/taobao/ next to the repo)`);
  const show = parseCount('show', values.show, 10);
  const config = resolveCampaigns({ guards: { enabled: false } }); // the data has no customer profiles (consent)
  const params = config.basketAbandonment?.params;
  if (!params) throw new Error('basket-abandonment is not configured');

  const scanStarted = performance.now();
  const last = await lastEventTime(input);
  if (Number.isNaN(last)) throw new UsageError(`${input} has no data rows`);
  const until = parseTime('until', values.until, last + UNTIL_AFTER_LAST_EVENT);
  const scanMs = performance.now() - scanStarted;
  log(`input ${input}; last event ${isoOf(last)} (pre-pass ${fmtSecs(scanMs)}); timers fire up to ${isoOf(until)}`);

  let converter: Converter | undefined;
  const oracle = new AbandonmentOracle(params);
  // The converter runs inside replay()'s read loop: CSV rows become NDJSON envelope lines, 512 per chunk.
  async function* envelopes(): AsyncGenerator<string> {
    let line = 0;
    let batch: string[] = [];
    for await (const text of csvLines(input)) {
      line++;
      if (line === 1) {
        converter = new Converter(text);
        continue;
      }
      if (text.trim() === '' || !converter) continue;
      const env = converter.convert(text, line);
      if (!env) continue;
      if (env.topic === 'shop.basket.v1') oracle.basket(env.value);
      else if (env.topic === 'shop.orders.v1') oracle.order(env.value);
      batch.push(JSON.stringify(env));
      if (batch.length === 512) {
        yield batch.join('\n') + '\n';
        batch = [];
      }
    }
    if (batch.length > 0) yield batch.join('\n') + '\n';
  }

  const triggersOut = new MemoryNdjson();
  const auditOut = new MemoryNdjson();
  const errors = new MemorySink();
  const started = performance.now();
  const result = await replay({
    topology: buildTopology(config),
    input: Readable.from(envelopes()),
    triggers: new NdjsonWriter(triggersOut),
    audit: new NdjsonWriter(auditOut),
    errors,
    until,
    logger: pino({ level: 'warn' }, pino.destination(2)),
    onProgress: (p) => log(`${fmtInt(p.lines)} events, ${fmtInt(p.triggers)} triggers, stream time ${isoOf(p.streamTime)}`),
  });
  const elapsedMs = performance.now() - started;
  oracle.finish(until);
  const conv = converter;
  if (!conv) throw new UsageError(`${input} is empty`);

  const triggers = triggersOut.lines().map((l) => JSON.parse(l) as Trigger);
  const audits = auditOut.lines().map((l) => JSON.parse(l) as TriggerAudit);
  if (values.output !== undefined) writeFileSync(values.output, triggersOut.chunks.join(''));
  if (values.audit !== undefined) writeFileSync(values.audit, auditOut.chunks.join(''));
  const keyOf = (t: Trigger | TriggerAudit): string => triggerKey({ customerId: t.customerId, type: t.type, at: t.occurredAt, causedByEventId: t.causedBy.eventId });
  // The reference model covers the abandonment rules; other types (browse) are reported, not compared.
  const modelled = (t: Trigger | TriggerAudit): boolean => t.type === 'BASKET_ABANDONED' || t.type === 'CHECKOUT_ABANDONED';
  const sentCheck = compareTriggers(oracle.sent, triggers.filter(modelled).map(keyOf));
  const suppressedCheck = compareTriggers(oracle.suppressed, audits.filter((a) => a.decision === 'SUPPRESSED' && modelled(a)).map(keyOf));

  const byType = new Map<string, number>();
  for (const t of triggers) bump(byType, t.type);
  const byDecision = new Map<string, number>();
  for (const a of audits) bump(byDecision, `${a.decision}/${a.reason}`);

  const p = (s: string): void => {
    process.stdout.write(`${s}\n`);
  };
  const shown = relative(process.cwd(), input) || input;
  p('');
  p(`== Taobao replay: ${shown} ==`);
  p(`rows         ${fmtInt(conv.rows)} data rows read, ${fmtInt(conv.rows - conv.bad.length)} converted, ${conv.bad.length} bad; ${fmtInt(conv.customers.size)} customers, ${fmtInt(conv.items.size)} items; ${isoOf(conv.firstTs)} .. ${isoOf(conv.lastTs)}`);
  for (const [k, n] of Object.entries(sortedCounts(conv.converted))) p(`             ${k.padEnd(44)} ${fmtInt(n).padStart(8)}`);
  const orders = conv.ordersWithRowPrice + conv.ordersWithLastPrice + conv.ordersWithoutPrice;
  if (orders > 0) p(`             order prices: ${conv.ordersWithRowPrice} from the row, ${conv.ordersWithLastPrice} last seen for the item, ${conv.ordersWithoutPrice} unknown (amount 0 EUR)`);
  if (conv.outOfOrder > 0) p(`             ${conv.outOfOrder} rows earlier than a previous row (replayed as late events)`);
  for (const b of conv.bad.slice(0, 20)) p(`  bad line ${b.line}: ${b.reason}: ${b.text}`);
  if (conv.bad.length > 20) p(`  … ${conv.bad.length - 20} more bad rows`);
  p(
    `replay       ${fmtInt(result.lines)} events in ${fmtSecs(elapsedMs)} (CSV decoding and conversion included) → ${fmtInt(result.lines / (elapsedMs / 1000))} events/s; ` +
      `${fmtInt(result.processed)} read by the topology, ${fmtInt(result.skipped)} of other topics, ${result.errors} rejected by the contract`,
  );
  for (const e of errors.items.slice(0, 10)) p(`  rejected envelope ${e.line}: ${e.errors.map((x) => `${x.path}: ${x.message}`).join('; ')}`);
  p(`             timers fired ${fmtInt(result.timersFired)}, up to ${isoOf(until)}; process max RSS ${fmtBytes(maxRssBytes())}`);
  p(`triggers     ${fmtInt(triggers.length)}${triggers.length ? `: ${Object.entries(sortedCounts(byType)).map(([k, n]) => `${k} ${fmtInt(n)}`).join(', ')}` : ''}; ${fmtInt(new Set(triggers.map((t) => t.customerId)).size)} customers`);
  p(`audit        ${fmtInt(audits.length)}${audits.length ? `: ${Object.entries(sortedCounts(byDecision)).map(([k, n]) => `${k} ${fmtInt(n)}`).join(', ')}` : ''}`);
  p(formatComparison('model (sent)      ', sentCheck));
  p(formatComparison('model (suppressed)', suppressedCheck));
  if (triggers.length > 0 && show > 0) {
    p('');
    p(`first ${Math.min(show, triggers.length)} triggers:`);
    const rows = triggers.slice(0, show).map((t) => {
      const items = (t.payload['items'] as Array<{ sku: string; quantity: number }> | undefined) ?? [];
      const itemText = items.map((i) => (i.quantity > 1 ? `${i.sku}×${i.quantity}` : i.sku));
      const cause = conv.basketRows.get(t.causedBy.eventId);
      return [
        t.customerId,
        t.type,
        isoOf(t.occurredAt),
        `${items.length}: ${itemText.slice(0, 3).join(' ')}${itemText.length > 3 ? ' …' : ''}`,
        cause ? `${t.causedBy.eventId} (${cause.event} ${cause.item} at ${isoOf(cause.ts)})` : t.causedBy.eventId,
      ];
    });
    p(table(['customer', 'type', 'when', 'items', 'caused by (CSV line = eventId)'], rows));
  }
  p('');
  p(
    JSON.stringify({
      bench: 'taobao-replay',
      input: shown,
      rows: conv.rows,
      converted: conv.rows - conv.bad.length,
      convertedByType: sortedCounts(conv.converted),
      badRows: conv.bad.length,
      customers: conv.customers.size,
      events: result.lines,
      rejected: result.errors,
      elapsedMs: Math.round(elapsedMs),
      eventsPerSec: Math.round(result.lines / (elapsedMs / 1000)),
      triggers: triggers.length,
      triggersByType: sortedCounts(byType),
      auditsByDecision: sortedCounts(byDecision),
      timersFired: result.timersFired,
      until,
      modelAgrees: sentCheck.matching === sentCheck.expected && sentCheck.expected === sentCheck.actual && suppressedCheck.matching === suppressedCheck.expected && suppressedCheck.expected === suppressedCheck.actual,
    }),
  );
  return result.errors > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`taobao: ${isUsageError(err) ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = isUsageError(err) ? 2 : 1;
  },
);
