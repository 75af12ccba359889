/**
 * Backtest preview: the replay runner over an NDJSON file with the config in force and with an edited one, in
 * a child process with a budget (one at a time per instance, lowest CPU priority, a heap limit, killed at the
 * time limit), so a preview never takes the engine's CPU or memory. The comparison is per trigger type and per
 * day: what each config would have sent, the difference, and sample customers who would get it under one
 * config only.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BacktestReply, BacktestRequest, Tally } from './backtest-worker.js';

export interface BacktestBudget {
  /** @default 60000 ms */
  readonly timeMs: number;
  /** Heap of the child. @default 512 MiB */
  readonly heapMb: number;
}

export const DEFAULT_BUDGET: BacktestBudget = { timeMs: 60_000, heapMb: 512 };

export interface TypeComparison {
  readonly type: string;
  readonly current: number;
  readonly edited: number;
  readonly difference: number;
  readonly currentDecisions: Record<string, number>;
  readonly editedDecisions: Record<string, number>;
  /** Customers sent to under the edited config only (up to 5), and under the current one only. */
  readonly onlyEdited: string[];
  readonly onlyCurrent: string[];
}

export interface BacktestResult {
  readonly lines: number;
  /** Of `lines`, those replayed only to warm up the state (before the counted stretch). */
  readonly warmupLines: number;
  readonly badLines: number;
  readonly types: TypeComparison[];
  readonly days: { day: string; type: string; current: number; edited: number }[];
  readonly elapsedMs: number;
}

export type BacktestOutcome = { readonly ok: true; readonly result: BacktestResult } | { readonly ok: false; readonly status: 400 | 503; readonly error: string };

const SAMPLES = 5;
const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const WORKER = fileURLToPath(new URL(`./backtest-worker${ext}`, import.meta.url));

export function compare(current: Tally, edited: Tally, elapsedMs: number): BacktestResult {
  const types = [...new Set([...Object.keys(current.sent), ...Object.keys(edited.sent), ...Object.keys(current.decisions), ...Object.keys(edited.decisions)])].sort();
  const only = (a: string[] = [], b: string[] = []): string[] => {
    const other = new Set(b);
    return a.filter((c) => !other.has(c)).slice(0, SAMPLES);
  };
  const days = [...new Set([...Object.keys(current.byDay), ...Object.keys(edited.byDay)])].sort();
  return {
    lines: current.lines,
    warmupLines: current.warmupLines,
    badLines: current.badLines,
    types: types.map((type) => {
      const c = current.sent[type] ?? 0;
      const e = edited.sent[type] ?? 0;
      return {
        type,
        current: c,
        edited: e,
        difference: e - c,
        currentDecisions: current.decisions[type] ?? {},
        editedDecisions: edited.decisions[type] ?? {},
        onlyEdited: only(edited.customers[type], current.customers[type]),
        onlyCurrent: only(current.customers[type], edited.customers[type]),
      };
    }),
    days: days.flatMap((day) => types.map((type) => ({ day, type, current: current.byDay[day]?.[type] ?? 0, edited: edited.byDay[day]?.[type] ?? 0 }))).filter((d) => d.current > 0 || d.edited > 0),
    elapsedMs,
  };
}

export class Backtester {
  readonly #budget: BacktestBudget;
  #running = false;

  constructor(budget: BacktestBudget = DEFAULT_BUDGET) {
    this.#budget = budget;
  }

  /**
   * Replays `ndjson` (the file's text) with both configs; one run at a time. `countFrom` (event time, epoch ms):
   * the lines before it only warm up the state, what they trigger is not counted.
   */
  async run(ndjson: string, current: unknown, edited: unknown, countFrom?: number): Promise<BacktestOutcome> {
    if (this.#running) return { ok: false, status: 503, error: 'a backtest is already running on this instance; try again when it ends' };
    this.#running = true;
    const dir = mkdtempSync(join(tmpdir(), 'kairos-backtest-'));
    const started = performance.now();
    try {
      const input = join(dir, 'input.ndjson');
      writeFileSync(input, ndjson);
      const reply = await this.#child({ input, current, edited, ...(countFrom === undefined ? {} : { countFrom }) });
      if (!reply.ok) return { ok: false, status: 400, error: reply.error };
      return { ok: true, result: compare(reply.current, reply.edited, Math.round(performance.now() - started)) };
    } catch (err) {
      return { ok: false, status: 503, error: (err as Error).message };
    } finally {
      this.#running = false;
      rmSync(dir, { recursive: true, force: true });
    }
  }

  #child(req: BacktestRequest): Promise<BacktestReply> {
    const { timeMs, heapMb } = this.#budget;
    return new Promise((resolve, reject) => {
      // execArgv carries tsx's loader when the engine itself runs from source (tests).
      const child = fork(WORKER, [], { execArgv: [...process.execArgv, `--max-old-space-size=${heapMb}`], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
      let stderr = '';
      child.stderr?.setEncoding('utf8').on('data', (c: string) => {
        if (stderr.length < 4000) stderr += c;
      });
      try {
        if (child.pid !== undefined) setPriority(child.pid, 19);
      } catch {
        // Not permitted (some containers): the time and heap limits still hold.
      }
      let reply: BacktestReply | undefined;
      const timer = setTimeout(() => child.kill('SIGKILL'), timeMs);
      child.once('message', (m: BacktestReply) => {
        reply = m;
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (reply !== undefined) resolve(reply);
        else if (signal === 'SIGKILL') reject(new Error(`the backtest ran out of its time budget (${timeMs / 1000} s); try a smaller file`));
        else reject(new Error(`the backtest process failed (exit ${String(code ?? signal)}): ${stderr.trim().split('\n').slice(-3).join(' ')}`));
      });
      child.send(req);
    });
  }
}
