/**
 * Fan-out time (issue 8: "fan-out time for a sku with 100k watchers"): one sku with --watchers (100,000) basket
 * watchers (basket-price-drop: every watcher added the sku at 100.00 EUR, then a PRICE_CHANGED to 80.00) and one
 * with --watchers wishers (wishlist-restock: every wisher wished the sku, stock 0, then a STOCK_CHANGED to 50).
 *
 * The real topology (`buildTopology(resolveCampaigns(…))`: the two fan-out topologies plus the history stage,
 * guards off unless --guards) runs in `TopologyTestDriver` (one task, repartition topics looped back in process,
 * RocksDB state, no broker). The watchers are piped in (commit every --commit-every records), then the clock
 * starts at the catalog event and stops when the wave's last step is done: the wave is paged (`pageSize`, default
 * 500) and each further page is a stream-time timer — basket-price-drop at the price event's time, wishlist-restock
 * one millisecond later per page (topologies/*\/README.md) — so stream time is advanced to each pending timer of
 * the sku until none is left, committing after every step as the driver does.
 *
 * The price-drop wave runs all its pages at one stream time, so the driver fires them in ONE advance and commits
 * once at the end: more than 50,000 changed keys in a store between two commits make TaskState's cache eviction
 * scan the whole cache on every access (src/engine/state/task-state.ts #evict, the cache is full of dirty entries
 * it may not drop), and the wave turns quadratic: 40,000 watchers took 8.7 s, 100,000 had not finished after
 * 4 min. --price-drop-watchers (default --watchers) lets `npm run bench` run that wave below the limit; the
 * restock wave commits after every page (one page per millisecond of stream time) and is not affected.
 *
 * What it leaves out: Kafka (the two repartition round trips, the commits' produce requests) and the partitioning
 * (the sku side and the customers are one task here). It measures the state and topology cost of a wave.
 *
 *   npx tsx load-tests/fanout-time.ts [--watchers 100000] [--price-drop-watchers N] [--page-size 500] [--commit-every 1000] [--only price-drop|restock] [--guards]
 *
 * Progress on stderr; figures and one JSON line ({"bench":"fanout-time",…}) on stdout.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { CatalogEvent } from '../schemas/contract.js';
import { buildTopology } from '../src/app/topology.js';
import { resolveCampaigns, type CampaignsConfigInput } from '../src/config/campaigns.js';
import { TopologyTestDriver, type DriverOutput } from '../src/engine/testing/test-driver.js';
import { fmtInt, isUsageError, MemorySampler, parseCount, UsageError } from './lib/common.js';

const log = (msg: string): void => void process.stderr.write(`bench:fanout ${new Date().toISOString().slice(11, 23)} ${msg}\n`);
const MiB = 1024 * 1024;
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const TRIGGERS = 'crm.triggers.v1';
const eur = (amount: number) => ({ amount, currency: 'EUR' });

type Kind = 'price-drop' | 'restock';

interface Options {
  watchers: number;
  /** Watchers of the price-drop wave (default --watchers); see the header on the 50,000-entry cache. */
  priceDropWatchers: number;
  pageSize: number;
  commitEvery: number;
  kinds: Kind[];
  guards: boolean;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      watchers: { type: 'string' },
      'price-drop-watchers': { type: 'string' },
      'page-size': { type: 'string' },
      'commit-every': { type: 'string' },
      only: { type: 'string' },
      guards: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const kinds: Kind[] = values.only === undefined ? ['price-drop', 'restock'] : (values.only.split(',') as Kind[]);
  for (const k of kinds) if (k !== 'price-drop' && k !== 'restock') throw new UsageError(`--only: price-drop or restock, got "${k}"`);
  const watchers = parseCount('watchers', values.watchers, 100_000);
  return {
    watchers,
    priceDropWatchers: parseCount('price-drop-watchers', values['price-drop-watchers'], watchers),
    pageSize: parseCount('page-size', values['page-size'], 500),
    commitEvery: parseCount('commit-every', values['commit-every'], 1000),
    kinds,
    guards: values.guards,
  };
}

interface Wave {
  kind: Kind;
  watchers: number;
  pageSize: number;
  buildMs: number;
  buildRecordsPerSec: number;
  waveMs: number;
  firstStepMs: number;
  steps: number;
  triggers: number;
  triggersPerSec: number;
  otherOutputs: number;
  peakRssBuildMiB: number;
  peakRssWaveMiB: number;
}

async function run(o: Options, kind: Kind): Promise<Wave> {
  const watchers = kind === 'price-drop' ? o.priceDropWatchers : o.watchers;
  const campaigns: CampaignsConfigInput = {
    guards: { enabled: o.guards },
    campaigns: {
      'basket-abandonment': { enabled: false },
      'browse-abandonment': { enabled: false },
      'basket-price-drop': { enabled: kind === 'price-drop', params: { pageSize: o.pageSize } },
      'wishlist-restock': { enabled: kind === 'restock', params: { pageSize: o.pageSize } },
    },
  } as CampaignsConfigInput;
  const topology = buildTopology(resolveCampaigns(campaigns, 'fanout-time'));
  const d = await TopologyTestDriver.create(topology, { commitEachRecord: false, wallClock: T0 });
  const sku = 'hot-sku';
  const productId = 'hot-product';
  let other = 0;
  // Triggers are counted; audits and history records are counted as other outputs; all are dropped. Not through
  // readOutput: it removes matches one splice at a time (quadratic; minutes for a 100k wave), so the driver's
  // output array (peekOutputs returns it) is counted and truncated in place.
  const drain = (): number => {
    const outs = d.peekOutputs() as DriverOutput[];
    let n = 0;
    for (const x of outs) if (x.topic === TRIGGERS) n++;
    other += outs.length - n;
    outs.length = 0;
    return n;
  };
  try {
    // Build the index: every watcher adds (or wishes) the sku, in event-time order, before the catalog event.
    const memB = new MemorySampler();
    const tb = performance.now();
    for (let i = 0; i < watchers; i++) {
      const customerId = `w-${String(i).padStart(6, '0')}`;
      const at = T0 + i;
      if (kind === 'price-drop') {
        await d.pipe('shop.basket.v1', customerId, { eventId: `add-${i}`, customerId, occurredAt: at, type: 'ITEM_ADDED', sku, productId, quantity: 1, unitPrice: eur(10_000) });
      } else {
        await d.pipe('shop.wishlist.v1', customerId, { eventId: `wish-${i}`, customerId, occurredAt: at, type: 'ITEM_ADDED', productId, sku });
      }
      if ((i + 1) % o.commitEvery === 0) {
        await d.task.commit();
        drain();
      }
      if ((i + 1) % 20_000 === 0) log(`  ${kind}: ${fmtInt(i + 1)} watchers piped, RSS ${(process.memoryUsage().rss / MiB).toFixed(0)} MiB`);
    }
    let at = T0 + watchers + 60_000;
    if (kind === 'restock') {
      // The first stock level of a sku is no transition: sold out first, the restock comes later.
      await d.pipe('shop.catalog.v1', sku, { eventId: 'sold-out', sku, productId, occurredAt: at, type: 'STOCK_CHANGED', stock: 0 } satisfies CatalogEvent);
      at += 60_000;
    }
    await d.task.commit();
    other = 0;
    drain();
    const buildMs = performance.now() - tb;
    memB.stop();
    log(`${kind}: ${fmtInt(watchers)} watchers indexed in ${(buildMs / 1000).toFixed(1)} s`);

    // The wave: from the catalog event to the last step.
    global.gc?.();
    const memW = new MemorySampler(100);
    const event: CatalogEvent =
      kind === 'price-drop'
        ? { eventId: 'price-drop', sku, productId, occurredAt: at, type: 'PRICE_CHANGED', price: eur(8_000) }
        : { eventId: 'restock', sku, productId, occurredAt: at, type: 'STOCK_CHANGED', stock: 50 };
    other = 0;
    const tw = performance.now();
    await d.pipe('shop.catalog.v1', sku, event);
    await d.task.commit();
    let triggers = drain();
    const firstStepMs = performance.now() - tw;
    let steps = 1;
    for (;;) {
      const pending = d.timers(sku);
      if (pending.length === 0) break;
      const next = Math.min(...pending.map((t) => t.time));
      await d.advanceStreamTime(Math.max(next, d.streamTime));
      triggers += drain();
      steps++;
      if (steps % 50 === 0) log(`  ${kind}: step ${steps}, ${fmtInt(triggers)} triggers`);
    }
    const waveMs = performance.now() - tw;
    memW.stop();
    log(`${kind}: wave of ${fmtInt(triggers)} triggers in ${steps} steps, ${(waveMs / 1000).toFixed(2)} s`);
    return {
      kind,
      watchers,
      pageSize: o.pageSize,
      buildMs: Math.round(buildMs),
      buildRecordsPerSec: Math.round(watchers / (buildMs / 1000)),
      waveMs: Math.round(waveMs),
      firstStepMs: Math.round(firstStepMs),
      steps,
      triggers,
      triggersPerSec: Math.round(triggers / (waveMs / 1000)),
      otherOutputs: other,
      peakRssBuildMiB: Math.round(memB.peakRss / MiB),
      peakRssWaveMiB: Math.round(memW.peakRss / MiB),
    };
  } finally {
    await d.close();
  }
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  const waves: Wave[] = [];
  for (const k of o.kinds) waves.push(await run(o, k));
  const p = (s: string): void => void process.stdout.write(`${s}\n`);
  p('');
  p(`== Kairos fan-out time (TopologyTestDriver: one task, repartitions in process, RocksDB; guards ${o.guards ? 'on' : 'off'}) ==`);
  p('| wave | watchers | pageSize | driver steps (pipe + advances) | triggers | wave time | triggers/s | first step | build (records/s) | peak RSS build / wave |');
  p('|---|---|---|---|---|---|---|---|---|---|');
  for (const w of waves) {
    const label = w.kind === 'price-drop' ? 'basket-price-drop (PRICE_CHANGED 100 → 80 EUR)' : 'wishlist-restock (STOCK_CHANGED 0 → 50)';
    p(
      `| ${label} | ${fmtInt(w.watchers)} | ${w.pageSize} | ${w.steps} | ${fmtInt(w.triggers)} | ${(w.waveMs / 1000).toFixed(2)} s | ${fmtInt(w.triggersPerSec)} | ${w.firstStepMs} ms | ${(w.buildMs / 1000).toFixed(1)} s (${fmtInt(w.buildRecordsPerSec)}) | ${w.peakRssBuildMiB} / ${w.peakRssWaveMiB} MiB |`,
    );
  }
  p('');
  p(JSON.stringify({ bench: 'fanout-time', guards: o.guards, waves, maxRssMiB: Math.round((process.resourceUsage().maxRSS * 1024) / MiB) }));
  const short = waves.filter((w) => w.triggers !== w.watchers);
  if (short.length > 0) {
    process.stderr.write(`bench:fanout: expected one trigger per watcher; got ${short.map((w) => `${w.kind} ${w.triggers} of ${w.watchers}`).join(', ')}\n`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:fanout: ${isUsageError(err) ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`);
  process.exitCode = isUsageError(err) ? 2 : 1;
});
