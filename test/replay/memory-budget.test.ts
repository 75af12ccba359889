import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pino } from 'pino';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { replay, type ReplayResult } from '../../src/replay/replay.js';
import { NdjsonWriter, type LineSink } from '../../src/replay/ndjson-writer.js';
import { generateEvents } from '../../load-tests/generate-events.js';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

const nullSink: LineSink = { write: () => undefined, flush: () => Promise.resolve() };

async function run(input: string, cacheMaxBytes: number | undefined): Promise<{ triggers: string; audit: string; result: ReplayResult }> {
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
  });
  await triggers.flush();
  await audit.flush();
  return { triggers: triggersOut.text, audit: auditOut.text, result };
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
});
