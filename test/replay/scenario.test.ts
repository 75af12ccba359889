import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Trigger, TriggerAudit } from '../../schemas/contract.js';
import { run } from '../../src/cli/main.js';
import { tempDir } from '../helpers.js';

const scenario = join(import.meta.dirname, '..', '..', 'load-tests', 'scenarios', 'all-triggers.ndjson');

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

test('the scenario replay (all topologies together, through the guards) prints every trigger type with explanations', async () => {
  const { dir, remove } = tempDir();
  try {
    const out = new Sink();
    const err = new Sink();
    const audit = join(dir, 'audit.ndjson');
    assert.equal(await run(['replay', '--input', scenario, '--audit', audit, '--quiet'], { stdout: out, stderr: err }), 0, err.text);
    const triggers = out.text.trim().split('\n').map((l) => JSON.parse(l) as Trigger);
    assert.deepEqual(
      [...new Set(triggers.map((t) => t.type))].sort(),
      ['BASKET_ABANDONED', 'BASKET_PRICE_DROP', 'BROWSE_ABANDONED', 'CHECKOUT_ABANDONED', 'WISHLIST_BACK_IN_STOCK'],
    );
    for (const t of triggers) assert.ok(t.explanation.rule.length > 10 && Object.keys(t.explanation.params).length > 0, `${t.type} explains itself`);
    const drop = triggers.find((t) => t.type === 'BASKET_PRICE_DROP');
    assert.equal(drop?.customerId, 'carl');
    assert.equal(triggers.find((t) => t.type === 'WISHLIST_BACK_IN_STOCK')?.customerId, 'dora');
    assert.equal(triggers.find((t) => t.type === 'BROWSE_ABANDONED')?.customerId, 'emma');
    assert.ok(!triggers.some((t) => t.customerId === 'frank' || t.customerId === 'gina'), 'no consent / bought: nothing sent');
    const audits = readFileSync(audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TriggerAudit);
    assert.deepEqual(
      audits.filter((a) => a.customerId === 'kenji').map((a) => [a.decision, a.reason, new Date(a.occurredAt).toISOString()]),
      [
        ['HELD', 'quiet-hours', '2026-11-20T14:35:00.000Z'],
        ['SENT', 'ok', '2026-11-20T23:00:00.000Z'],
      ],
    );
    assert.deepEqual(audits.filter((a) => a.customerId === 'frank').map((a) => [a.decision, a.reason]), [['SUPPRESSED', 'no-consent']]);
  } finally {
    remove();
  }
});
