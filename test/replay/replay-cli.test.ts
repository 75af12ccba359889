import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import type { Trigger } from '../../schemas/contract.js';
import { buildTopology } from '../../src/app/topology.js';
import { run } from '../../src/cli/main.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { StreamTask } from '../../src/engine/runtime/task.js';
import { TaskState } from '../../src/engine/state/task-state.js';
import { tempDir } from '../helpers.js';

const scenario = join(import.meta.dirname, '..', '..', 'load-tests', 'scenarios', 'basket-abandonment.ndjson');
const T0 = Date.UTC(2026, 0, 5, 10, 0, 0);
const MIN = 60_000;

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

async function kairos(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await run(argv, { stdout, stderr });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

/** A campaign config with the guards off: these tests are about the replay mechanics (no profiles in the input). */
function noGuards(dir: string): string {
  const path = join(dir, 'no-guards.json');
  writeFileSync(path, JSON.stringify({ guards: { enabled: false } }));
  return path;
}

const readLines = (path: string): unknown[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);

const add = (customerId: string, atMin: number, eventId = `a-${customerId}-${atMin}`) => ({
  topic: 'shop.basket.v1',
  key: customerId,
  value: { eventId, customerId, occurredAt: T0 + atMin * MIN, type: 'ITEM_ADDED', sku: 'sku-1', quantity: 1 },
});

test('kairos replay is deterministic: the same input gives byte-identical triggers and audit (also with the smallest --cache-mb)', async () => {
  const { dir, remove } = tempDir();
  try {
    const outputs: string[] = [];
    for (const n of [1, 2]) {
      const out = join(dir, `t${n}.ndjson`);
      const audit = join(dir, `a${n}.ndjson`);
      const r = await kairos('replay', '--input', scenario, '--output', out, '--audit', audit, '--quiet', ...(n === 2 ? ['--cache-mb', '1'] : []));
      assert.equal(r.code, 0, r.stderr);
      outputs.push(readFileSync(out, 'utf8') + readFileSync(audit, 'utf8'));
    }
    assert.equal(outputs[0], outputs[1]);
    const triggers = readLines(join(dir, 't1.ndjson')) as Trigger[];
    assert.deepEqual(
      triggers.map((t) => `${t.customerId}:${t.type}`),
      ['anna:BASKET_ABANDONED', 'ben:CHECKOUT_ABANDONED', 'emil:BASKET_ABANDONED'],
    );
    // causedBy.offset is the input line − 1.
    const lines = readFileSync(scenario, 'utf8').split('\n');
    for (const t of triggers) {
      const line = JSON.parse(lines[Number(t.causedBy.offset)] as string) as { value: { eventId: string } };
      assert.equal(line.value.eventId, t.causedBy.eventId);
    }
  } finally {
    remove();
  }
});

test('bad lines are reported with their line number, written to the error file and skipped; good lines still count', async () => {
  const { dir, remove } = tempDir();
  try {
    const input = join(dir, 'events.ndjson');
    const errors = join(dir, 'errors.ndjson');
    const good = add('anna', 0);
    writeFileSync(
      input,
      [
        JSON.stringify(good),
        '{"topic": "shop.basket.v1", "key": ',
        '',
        JSON.stringify({ topic: 'shop.nope.v1', key: 'x', value: {} }),
        JSON.stringify({ ...add('ben', 1), key: 'not-ben' }),
        JSON.stringify({ topic: 'shop.basket.v1', key: 'cleo', value: { eventId: 'e', customerId: 'cleo', occurredAt: 'yesterday', type: 'ITEM_ADDED', sku: 's' } }),
        JSON.stringify({ topic: 'shop.basket.v1', key: 'dan', value: null }),
        JSON.stringify({ topic: 'crm.customers.v1', key: 'dan', value: null, timestamp: T0 }),
        JSON.stringify(add('erin', 90)),
      ].join('\n') + '\n',
    );
    const r = await kairos('replay', '--input', input, '--output', join(dir, 'out.ndjson'), '--errors', errors, '--config', noGuards(dir));
    assert.equal(r.code, 3, 'exit code 3 when lines were bad');
    const bad = readLines(errors) as { line: number; errors: { path: string; message: string }[]; text: string }[];
    assert.deepEqual(
      bad.map((b) => [b.line, b.errors.map((e) => e.path)]),
      [
        [2, ['']],
        [4, ['/topic']],
        [5, ['/key']],
        [6, ['/value/occurredAt']],
        [7, ['/value']],
      ],
    );
    assert.match(bad[0]?.errors[0]?.message ?? '', /not valid JSON/);
    assert.equal(bad[2]?.text, JSON.stringify({ ...add('ben', 1), key: 'not-ben' }), 'the bad line itself is kept');
    assert.match(r.stderr, /line 2: \/: not valid JSON/);
    assert.match(r.stderr, /line 5: \/key: must equal value.customerId \("ben"\), got "not-ben"/);
    assert.match(r.stderr, /5 bad \(written to /);
    // anna's add (line 1) fires once erin's add moves stream time 90 minutes on.
    assert.deepEqual((readLines(join(dir, 'out.ndjson')) as Trigger[]).map((t) => t.customerId), ['anna']);
  } finally {
    remove();
  }
});

test('--until fires the timers still pending when the input ends; .gz input is read', async () => {
  const { dir, remove } = tempDir();
  try {
    const input = join(dir, 'events.ndjson.gz');
    writeFileSync(input, gzipSync([add('anna', 0), add('ben', 30)].map((l) => JSON.stringify(l)).join('\n') + '\n'));
    const config = noGuards(dir);
    const without = await kairos('replay', '--input', input, '--quiet', '--config', config);
    assert.equal(without.code, 0, without.stderr);
    assert.equal(without.stdout, '', 'stream time never passes the gap without --until');
    const partial = await kairos('replay', '--input', input, '--quiet', '--config', config, '--until', String(T0 + 60 * MIN));
    assert.deepEqual(partial.stdout.trim().split('\n').map((l) => (JSON.parse(l) as Trigger).customerId), ['anna']);
    const iso = await kairos('replay', '--input', input, '--quiet', '--config', config, '--until', new Date(T0 + 2 * 60 * MIN).toISOString());
    assert.deepEqual(iso.stdout.trim().split('\n').map((l) => (JSON.parse(l) as Trigger).customerId), ['anna', 'ben']);
  } finally {
    remove();
  }
});

test('usage and config errors exit 2 and name the problem; a missing input exits 1', async () => {
  const { dir, remove } = tempDir();
  try {
    const noInput = await kairos('replay');
    assert.equal(noInput.code, 2);
    assert.match(noInput.stderr, /--input is required/);
    const badUntil = await kairos('replay', '--input', scenario, '--until', 'soon');
    assert.equal(badUntil.code, 2);
    assert.match(badUntil.stderr, /--until must be epoch milliseconds or an ISO date-time, got "soon"/);
    for (const bad of ['0', '1.5', 'big', '2000000']) {
      const badCache = await kairos('replay', '--input', scenario, '--cache-mb', bad);
      assert.equal(badCache.code, 2, bad);
      assert.match(badCache.stderr, new RegExp(`--cache-mb must be a whole number of MiB from 1 to 1048576, got "${bad.replace('.', '\\.')}"`));
    }
    const unknownFlag = await kairos('replay', '--input', scenario, '--speed', 'fast');
    assert.equal(unknownFlag.code, 2);
    assert.match(unknownFlag.stderr, /speed/);
    const config = join(dir, 'campaigns.json');
    writeFileSync(config, JSON.stringify({ campaigns: { 'basket-abandonment': { params: { inactivityGap: '60 minutes', cooldown: '1d' }, channels: ['sms'] } } }));
    const badConfig = await kairos('replay', '--input', scenario, '--config', config);
    assert.equal(badConfig.code, 2);
    assert.match(badConfig.stderr, /\/campaigns\/basket-abandonment\/params\/inactivityGap/);
    assert.match(badConfig.stderr, /\/campaigns\/basket-abandonment\/params\/cooldown/);
    assert.match(badConfig.stderr, /\/campaigns\/basket-abandonment\/channels\/0/);
    const used = join(dir, 'used-state');
    mkdirSync(used);
    writeFileSync(join(used, 'CURRENT'), 'x');
    const dirty = await kairos('replay', '--input', scenario, '--state-dir', used);
    assert.equal(dirty.code, 2);
    assert.match(dirty.stderr, /--state-dir .*used-state is not empty/);
    const unwritable = await kairos('replay', '--input', scenario, '--output', join(dir, 'no', 'such', 'dir', 'out.ndjson'));
    assert.equal(unwritable.code, 1);
    assert.match(unwritable.stderr, /cannot write .*out\.ndjson: ENOENT/);
    const missing = await kairos('replay', '--input', join(dir, 'nope.ndjson'));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read input .*nope\.ndjson/);
    assert.equal(existsSync(join(dir, 'nope.ndjson.errors.ndjson')), false);
  } finally {
    remove();
  }
});

test('kairos describe prints the topology as text and as Mermaid', async () => {
  const text = await kairos('describe');
  assert.equal(text.code, 0);
  assert.match(text.stdout, /Processor: basket-abandonment \(stores: \[basket-abandonment\.baskets\]\)/);
  assert.match(text.stdout, /Processor: guards \(stores: \[guards\.profiles, guards\.profile-history, guards\.state\]\)/);
  assert.match(text.stdout, /Sink: history\.triggers \(topic: crm\.triggers\.v1\)/);
  // The guards pass everything to history, and their decisions back to the topologies that subscribe (issue 14).
  assert.match(text.stdout, /Processor: guards \(stores: \[guards\.profiles, guards\.profile-history, guards\.state\]\) --> history, basket-price-drop\.decisions, wishlist-restock\.decisions\n/);
  const mermaid = await kairos('describe', '--format', 'mermaid');
  assert.match(mermaid.stdout, /^flowchart LR/);
  const bad = await kairos('describe', '--format', 'svg');
  assert.equal(bad.code, 2);
});

test('kairos replay --state-dir leaves the final state committed (stream time, positions, stores); without it the summary says the state was temporary', async () => {
  const { dir, remove } = tempDir();
  try {
    const stateDir = join(dir, 'state');
    const kept = await kairos('replay', '--input', scenario, '--output', join(dir, 'kept.ndjson'), '--config', noGuards(dir), '--state-dir', stateDir);
    assert.equal(kept.code, 0, kept.stderr);
    assert.match(kept.stderr, /state \d+\.\d MiB/);
    const state = await TaskState.open({ dir: stateDir, taskId: 'replay_0', stores: StreamTask.storeSpecs(buildTopology(resolveCampaigns({ guards: { enabled: false } }))) });
    try {
      const lines = readFileSync(scenario, 'utf8').split('\n').filter((l) => l.trim() !== '');
      const last = JSON.parse(lines.at(-1) as string) as { value: { occurredAt: number } };
      assert.ok(state.streamTime >= last.value.occurredAt, `stream time ${state.streamTime} committed`);
      assert.ok(state.positions().size > 0, 'input positions committed');
      const triggers = readLines(join(dir, 'kept.ndjson')) as Trigger[];
      assert.ok(triggers.length > 0);
      for (const t of triggers) {
        const h = (await state.get('history.recent', t.customerId)) as { triggers: { triggerId: string }[] } | undefined;
        assert.ok(h?.triggers.some((x) => x.triggerId === t.triggerId), `trigger ${t.triggerId} in the committed history of ${t.customerId}`);
      }
    } finally {
      await state.close();
    }
    const temp = await kairos('replay', '--input', scenario, '--output', join(dir, 'temp.ndjson'), '--config', noGuards(dir));
    assert.equal(temp.code, 0, temp.stderr);
    assert.match(temp.stderr, /state temporary \(not kept: --state-dir keeps it\)/);
    assert.equal(readFileSync(join(dir, 'temp.ndjson'), 'utf8'), readFileSync(join(dir, 'kept.ndjson'), 'utf8'), 'same triggers either way');
  } finally {
    remove();
  }
});
