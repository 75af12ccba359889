/**
 * The backtest's child process (forked by backtest.ts, never imported by the engine): replays one NDJSON file
 * with the config in force and with the edited one, each on its own temporary RocksDB state, and sends back
 * what each would have sent, tallied per trigger type, decision and reason, and per day. The replay runner is
 * deterministic (event time only), so the difference is the config's alone. With `countFrom`, what the events
 * before it trigger is not tallied: they only warm up the state (baskets, sessions, profiles, cooldowns, caps).
 */
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Trigger, TriggerAudit } from '../../schemas/contract.js';
import { buildTopology } from '../app/topology.js';
import { resolveCampaigns } from '../config/campaigns.js';
import { NdjsonWriter, type LineSink } from '../replay/ndjson-writer.js';
import { replay } from '../replay/replay.js';

/** Customers kept per trigger type and config (to pick samples that differ). */
const MAX_CUSTOMERS = 20_000;

export interface Tally {
  readonly lines: number;
  /** Lines before `countFrom` (event time): replayed to build up state, their triggers and decisions not counted. */
  readonly warmupLines: number;
  readonly badLines: number;
  readonly sent: Record<string, number>;
  /** type → decision/reason → count (`SUPPRESSED/cap`, `HELD/quiet-hours`, `SENT/ok`). */
  readonly decisions: Record<string, Record<string, number>>;
  /** UTC day (YYYY-MM-DD) → type → sent. */
  readonly byDay: Record<string, Record<string, number>>;
  /** type → customers sent to (at most MAX_CUSTOMERS each). */
  readonly customers: Record<string, string[]>;
}

export interface BacktestRequest {
  readonly input: string;
  /** Epoch ms of event time: triggers and decisions before it are not counted (the warm-up). */
  readonly countFrom?: number;
  readonly current: unknown;
  readonly edited: unknown;
}

export type BacktestReply = { readonly ok: true; readonly current: Tally; readonly edited: Tally } | { readonly ok: false; readonly error: string };

class Tallying extends NdjsonWriter {
  readonly #each: (v: unknown) => void;
  constructor(each: (v: unknown) => void) {
    super(new Writable({ write: (_c, _e, cb) => cb() }));
    this.#each = each;
  }
  override write(value: unknown): void {
    this.count++;
    this.#each(value);
  }
  override flush(): Promise<void> {
    return Promise.resolve();
  }
}

const countingSink = (): LineSink & { n: number } => ({
  n: 0,
  write() {
    this.n++;
  },
  flush: () => Promise.resolve(),
});

/** Lines of an NDJSON replay file whose event time (occurredAt, a profile's updatedAt) is before `t`. */
export function linesBefore(ndjson: string, t: number): number {
  let n = 0;
  for (const line of ndjson.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const v = (JSON.parse(line) as { value?: { occurredAt?: unknown; updatedAt?: unknown } | null }).value;
      const at = v?.occurredAt ?? v?.updatedAt;
      if (typeof at === 'number' && at < t) n++;
    } catch {
      // A bad line is counted by the replay's error sink.
    }
  }
  return n;
}

export async function runOne(input: string, config: unknown, countFrom = -Infinity): Promise<Tally> {
  const sent: Record<string, number> = {};
  const decisions: Record<string, Record<string, number>> = {};
  const byDay: Record<string, Record<string, number>> = {};
  const customers = new Map<string, Set<string>>();
  const triggers = new Tallying((v) => {
    const t = v as Trigger;
    if (t.occurredAt < countFrom) return;
    sent[t.type] = (sent[t.type] ?? 0) + 1;
    const day = new Date(t.occurredAt).toISOString().slice(0, 10);
    const d = (byDay[day] ??= {});
    d[t.type] = (d[t.type] ?? 0) + 1;
    let set = customers.get(t.type);
    if (set === undefined) customers.set(t.type, (set = new Set()));
    if (set.size < MAX_CUSTOMERS) set.add(t.customerId);
  });
  const audit = new Tallying((v) => {
    const a = v as TriggerAudit;
    if (a.occurredAt < countFrom) return;
    const d = (decisions[a.type] ??= {});
    const k = `${a.decision}/${a.reason}`;
    d[k] = (d[k] ?? 0) + 1;
  });
  const errors = countingSink();
  const result = await replay({
    topology: buildTopology(resolveCampaigns(config, 'backtest')),
    input,
    triggers,
    audit,
    errors,
    logger: pino({ level: 'silent' }),
  });
  return {
    lines: result.lines,
    warmupLines: Number.isFinite(countFrom) ? linesBefore(readFileSync(input, 'utf8'), countFrom) : 0,
    badLines: errors.n,
    sent,
    decisions,
    byDay,
    customers: Object.fromEntries([...customers].map(([k, s]) => [k, [...s]])),
  };
}

// Run as a forked child: one request, one reply, then exit.
if (process.send !== undefined && process.argv[1] !== undefined && /backtest-worker\.[jt]s$/.test(process.argv[1])) {
  process.once('message', (msg: BacktestRequest) => {
    void (async () => {
      let reply: BacktestReply;
      try {
        const current = await runOne(msg.input, msg.current, msg.countFrom);
        const edited = await runOne(msg.input, msg.edited, msg.countFrom);
        reply = { ok: true, current, edited };
      } catch (err) {
        reply = { ok: false, error: (err as Error).message };
      }
      process.send?.(reply, undefined, undefined, () => process.exit(0));
    })();
  });
}
