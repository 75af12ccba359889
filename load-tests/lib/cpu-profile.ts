/**
 * A coarse "where does the time go" for one async phase: V8's sampling CPU profiler (through node:inspector,
 * in-process), with each sample's time attributed to a category by the source file of the sampled function.
 * Functions without a source file (builtins such as JSON.parse, native bindings, code generated with
 * `new Function`, e.g. TypeBox's compiled checks) and generic Node internals count for their nearest caller
 * that has a category, so JSON.parse called by the envelope decoder counts as decoding and a RocksDB binding
 * call counts as state.
 */
import type { Profiler } from 'node:inspector';
import { Session } from 'node:inspector/promises';

export interface CategoryTime {
  readonly category: string;
  readonly ms: number;
  readonly share: number;
}

export interface ProfiledRun<T> {
  readonly result: T;
  readonly categories: readonly CategoryTime[];
  readonly totalMs: number;
  /** The heaviest functions by self time (for the README's slow-spot notes). */
  readonly topFunctions: readonly { readonly fn: string; readonly ms: number }[];
}

/** Categories, first match wins; `null` means "count for the caller". */
const RULES: ReadonlyArray<readonly [RegExp, string | null]> = [
  [/\/src\/replay\/envelope\.[jt]s|\/src\/serde\/|@sinclair\/typebox/, 'decode: JSON.parse + contract validation'],
  [/\/src\/replay\/ndjson-writer\.[jt]s/, 'output: trigger/audit JSON + writes'],
  [/\/src\/replay\/replay\.[jt]s/, 'replay loop'],
  [/\/src\/replay\/lines\.[jt]s/, 'input: read + split lines'],
  [/\/src\/engine\/(runtime|api)\//, 'engine: task, routing, timers'],
  [/\/src\/engine\/state\/|node_modules\/rocksdb\//, 'state: cache, codecs, RocksDB calls'],
  [/\/topologies\//, 'topologies: dedup, detection, guards, history'],
  [/\/load-tests\//, 'benchmark harness'],
  [/^node:(readline|internal\/readline|string_decoder|internal\/streams\/readable)/, 'input: read + split lines'],
  [/^node:|^internal\//, null],
];

const SPECIAL: Readonly<Record<string, string>> = {
  '(garbage collector)': 'V8: garbage collection',
  '(idle)': 'idle: waiting for the thread pool (RocksDB, file I/O)',
  '(program)': 'V8/native: other (compiler, runtime, callbacks)',
};

const NO_CATEGORY = 'node internals: event loop, streams, promises';

export async function profileRun<T>(fn: () => Promise<T>, samplingIntervalUs = 500): Promise<ProfiledRun<T>> {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: samplingIntervalUs });
    await session.post('Profiler.start');
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      // Stop anyway, so a failed run does not leave the profiler sampling.
      await session.post('Profiler.stop').catch(() => undefined);
      throw err;
    }
    const { profile } = await session.post('Profiler.stop');
    return { result, ...summarize(profile) };
  } finally {
    session.disconnect();
  }
}

export function summarize(profile: Profiler.Profile): Omit<ProfiledRun<never>, 'result'> {
  const byId = new Map<number, Profiler.ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const categoryCache = new Map<number, string>();
  const categoryOf = (id: number): string => {
    const cached = categoryCache.get(id);
    if (cached !== undefined) return cached;
    const node = byId.get(id);
    let cat: string | null = null;
    if (node) {
      // hasOwn: function names such as "constructor" must not hit Object.prototype.
      const fname = node.callFrame.functionName;
      if (Object.hasOwn(SPECIAL, fname)) cat = SPECIAL[fname] as string;
      else if (node.callFrame.url !== '') {
        for (const [re, c] of RULES) {
          if (re.test(node.callFrame.url)) {
            cat = c;
            break;
          }
        }
        if (cat === null && !RULES.some(([re, c]) => c === null && re.test(node.callFrame.url))) cat = 'other';
      }
    }
    if (cat === null) {
      const p = parent.get(id);
      cat = p === undefined ? NO_CATEGORY : categoryOf(p);
    }
    categoryCache.set(id, cat);
    return cat;
  };
  // The root node itself: no category.
  categoryCache.set(profile.nodes[0]?.id ?? -1, NO_CATEGORY);

  const shortFile = (url: string): string => url.replace(/^file:\/\/.*?\/(src|topologies|load-tests|node_modules)\//, '$1/');
  // Line numbers are left out: under tsx they point into transformed code. A frame without a file (builtin,
  // native, generated) is named with its caller, e.g. "parse ← decodeEnvelopeLine src/replay/envelope.ts".
  const functionLabel = (id: number): string => {
    const f = byId.get(id)?.callFrame;
    if (!f) return '?';
    const name = f.functionName || '(anonymous)';
    if (f.url !== '' || Object.hasOwn(SPECIAL, name) || name === '(root)') return f.url === '' ? name : `${name} ${shortFile(f.url)}`;
    const p = parent.get(id);
    const pf = p === undefined ? undefined : byId.get(p)?.callFrame;
    return pf ? `${name} ← ${pf.functionName || '(anonymous)'} ${shortFile(pf.url)}`.trimEnd() : name;
  };

  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const perCategory = new Map<string, number>();
  const perFunction = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < samples.length; i++) {
    // Sample i lasts until the next one (as Chrome DevTools counts it).
    const us = deltas[i + 1] ?? 0;
    const id = samples[i] as number;
    total += us;
    const cat = categoryOf(id);
    perCategory.set(cat, (perCategory.get(cat) ?? 0) + us);
    const name = functionLabel(id);
    perFunction.set(name, (perFunction.get(name) ?? 0) + us);
  }
  const categories = [...perCategory.entries()]
    .map(([category, us]) => ({ category, ms: us / 1000, share: total > 0 ? us / total : 0 }))
    .sort((a, b) => b.ms - a.ms);
  const topFunctions = [...perFunction.entries()]
    .sort(([, a], [, b]) => b - a)
    .slice(0, 15)
    .map(([fn, us]) => ({ fn, ms: us / 1000 }));
  return { categories, totalMs: total / 1000, topFunctions };
}
