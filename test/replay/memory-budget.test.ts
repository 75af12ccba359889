import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pino } from 'pino';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { replay, REPLAY_CACHE_MAX_BYTES, type ReplayProgress, type ReplayResult } from '../../src/replay/replay.js';
import { NdjsonWriter, type LineSink } from '../../src/replay/ndjson-writer.js';
import { generateEvents } from '../../load-tests/generate-events.js';
import { StreamTask } from '../../src/engine/runtime/task.js';
import { TaskState } from '../../src/engine/state/task-state.js';
import { tempDir } from '../helpers.js';

/**
 * Every live entry (expired ones are hidden, as from every read) of every store of a replay's state directory,
 * with the stream time and positions committed there.
 */
async function stateOf(dir: string): Promise<string[]> {
  const stores = StreamTask.storeSpecs(buildTopology(resolveCampaigns({ guards: { enabled: false } })));
  const state = await TaskState.open({ dir, taskId: 'replay_0', stores });
  try {
    const out = [`streamTime=${state.streamTime}`, ...[...state.positions()].map(([k, v]) => `position ${k}=${v}`)];
    for (const spec of stores) for (const e of await state.scan(spec.name)) out.push(`${spec.name}/${e.key}@${e.ts}=${JSON.stringify(e.value)}`);
    return out;
  } finally {
    await state.close();
  }
}

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

const nullSink: LineSink = { write: () => undefined, flush: () => Promise.resolve() };

async function run(input: string, cacheMaxBytes: number | undefined, stateDir?: string): Promise<{ triggers: string; audit: string; result: ReplayResult; progress: ReplayProgress[] }> {
  const progress: ReplayProgress[] = [];
  const triggersOut = new Capture();
  const auditOut = new Capture();
  const triggers = new NdjsonWriter(triggersOut, false, 'triggers');
  const audit = new NdjsonWriter(auditOut, false, 'audit');
  const result = await replay({
    topology: buildTopology(resolveCampaigns({ guards: { enabled: false } })),
    input: Readable.from([input]),
    triggers,
    audit,
    errors: nullSink,
    logger: pino({ level: 'silent' }),
    ...(cacheMaxBytes === undefined ? {} : { cacheMaxBytes }),
    progressEveryMs: 0,
    ...(stateDir === undefined ? {} : { stateDir }),
    onProgress: (p) => progress.push(p),
  });
  await triggers.flush();
  await audit.flush();
  return { triggers: triggersOut.text, audit: auditOut.text, result, progress };
}

test('replay (real RocksDB) with a state cache far smaller than its state spills the coldest entries and reads them back: the same triggers and audit, byte for byte, as with all of it in memory', async () => {
  const input = [...generateEvents({ events: 12_000, customers: 1_500, skus: 300, seed: 7 })].join('\n') + '\n';
  const roomy = await run(input, undefined);
  // ~250 KiB against some MiB of state: spills and evictions all the way through, every topology's stores.
  const tight = await run(input, 256 * 1024);
  assert.equal(roomy.result.cacheEvictions, 0, 'the default budget holds this state');
  assert.ok(tight.result.cacheEvictions > 5_000, `evictions with the small budget: ${tight.result.cacheEvictions}`);
  assert.ok(roomy.result.triggers > 300, `triggers: ${roomy.result.triggers}`);
  assert.equal(tight.result.triggers, roomy.result.triggers);
  assert.equal(tight.triggers, roomy.triggers);
  assert.equal(tight.audit, roomy.audit);
  // Progress shows the cache against its budget: the default 1 GiB, and the small one held (a spill brings the
  // cache to 70 % of it; between spills it may pass it by what one chunk of records wrote).
  assert.ok(roomy.progress.length >= 10 && tight.progress.length >= 10);
  for (const p of roomy.progress) assert.equal(p.cacheMaxBytes, REPLAY_CACHE_MAX_BYTES);
  assert.ok(roomy.progress.every((p) => p.cacheEvictions === 0 && p.cacheBytes > 0));
  const last = tight.progress[tight.progress.length - 1] as ReplayProgress;
  assert.equal(last.cacheMaxBytes, 256 * 1024);
  assert.ok(last.cacheEvictions > 0);
  assert.ok(tight.progress.every((p) => p.cacheBytes < 2 * 256 * 1024), `cache ${Math.max(...tight.progress.map((p) => p.cacheBytes))} B`);
});

test('replay with --state-dir and a small cache commits its final state in pieces: the same live state on disk, entry for entry, as one final commit of a cache that held it all', async () => {
  const input = [...generateEvents({ events: 4_000, customers: 500, skus: 100, seed: 11 })].join('\n') + '\n';
  const t = tempDir();
  try {
    const roomy = await run(input, undefined, join(t.dir, 'roomy'));
    const tight = await run(input, 256 * 1024, join(t.dir, 'tight'));
    assert.equal(roomy.result.cacheEvictions, 0);
    assert.ok(tight.result.cacheEvictions > 1_000, `evictions: ${tight.result.cacheEvictions}`);
    assert.equal(tight.triggers, roomy.triggers);
    // The final commit shows progress: once as it starts, then after each piece, with fewer entries left each time.
    const writing = tight.progress.filter((p) => p.phase === 'final-commit');
    assert.ok(writing.length >= 3, `final-commit progress: ${writing.length}`);
    assert.ok((writing[0] as ReplayProgress).uncommitted > 100, `entries to write: ${(writing[0] as ReplayProgress).uncommitted}`);
    for (let i = 1; i < writing.length; i++) assert.ok((writing[i] as ReplayProgress).uncommitted < (writing[i - 1] as ReplayProgress).uncommitted);
    assert.ok(tight.progress.indexOf(writing[0] as ReplayProgress) > 0 && tight.progress.slice(0, tight.progress.indexOf(writing[0] as ReplayProgress)).every((p) => p.phase === 'input'));
    const [a, b] = [await stateOf(join(t.dir, 'roomy')), await stateOf(join(t.dir, 'tight'))];
    assert.ok(a.length > 1_000, `entries on disk: ${a.length}`);
    assert.deepEqual(b, a);
  } finally {
    t.remove();
  }
});
