/**
 * Issue 15, item 5: every demo line says what and why — the sku, old → new price and drop for a price drop; the
 * sku and stock for a restock; the products viewed for browse; the basket and the rule for abandonment. The
 * triggers come from replaying the sample scenario with every trigger type (real topologies, real guards).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Trigger, TriggerAudit } from '../../schemas/contract.js';
import { describeAudit, describeTrigger, formatMoney } from '../../src/demo/describe.js';
import { tempDir } from '../helpers.js';
import { runCli } from '../support/cli.js';

const scenario = join(import.meta.dirname, '..', '..', 'load-tests', 'scenarios', 'all-triggers.ndjson');

const lines = <T>(path: string): T[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as T);

test('demo lines of every trigger type name what happened and why', async () => {
  const { dir, remove } = tempDir();
  try {
    const out = join(dir, 'triggers.ndjson');
    const auditPath = join(dir, 'audit.ndjson');
    const r = await runCli(['replay', '--input', scenario, '--output', out, '--audit', auditPath, '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const triggers = lines<Trigger>(out);
    const byType = new Map(triggers.map((t) => [t.type, describeTrigger(t)]));
    assert.deepEqual([...byType.keys()].sort(), ['BASKET_ABANDONED', 'BASKET_PRICE_DROP', 'BROWSE_ABANDONED', 'CHECKOUT_ABANDONED', 'WISHLIST_BACK_IN_STOCK']);
    for (const t of triggers) {
      const line = describeTrigger(t);
      assert.doesNotMatch(line, /\b0 item|\?|undefined|NaN|\[object/, line);
      assert.match(line, new RegExp(`^\\d\\d:\\d\\d:\\d\\d  SENT {7}${t.type} +${t.customerId}  .+  → ${t.channels.join('\\+')}\\n$`));
      const p = t.payload as Record<string, unknown>;
      if (t.type === 'BASKET_PRICE_DROP') {
        const oldPrice = p.oldPrice as { amount: number; currency: string };
        const newPrice = p.newPrice as { amount: number; currency: string };
        assert.ok(line.includes(`${String(p.sku)} in the basket: ${formatMoney(oldPrice)} → ${formatMoney(newPrice)} (−`), line);
        assert.match(line, /\(−\d+\.\d %\), ≥ \d+ % below its price when added/);
      }
      if (t.type === 'WISHLIST_BACK_IN_STOCK') assert.ok(line.includes(`${String(p.sku)} on the wishlist is back in stock: ${String(p.stock)} in stock`), line);
      if (t.type === 'BROWSE_ABANDONED') {
        for (const x of p.products as { productId: string }[]) assert.ok(line.includes(x.productId), line);
        assert.match(line, /added none to the basket; session over after \d+[smhd] without a view/);
      }
      if (t.type === 'BASKET_ABANDONED' || t.type === 'CHECKOUT_ABANDONED') {
        for (const i of p.items as { sku: string }[]) assert.ok(line.includes(i.sku), line);
        assert.match(line, /(basket|checkout started) with \d+ items? worth \d+\.\d\d [A-Z]{3} \(.+\), then no basket activity and no order for \d+[smhd]/);
      }
    }
    // Decisions not to send carry the same description and the guard's reason.
    const audits = lines<TriggerAudit>(auditPath).filter((a) => a.decision !== 'SENT');
    assert.ok(audits.length > 0);
    for (const a of audits) {
      const line = describeAudit(a, () => 'sku-from-cause');
      assert.match(line, new RegExp(`^\\d\\d:\\d\\d:\\d\\d  ${a.decision} +${a.type} +${a.customerId}  .+  ✗ ${a.reason}`));
      assert.doesNotMatch(line, /undefined|NaN|\[object/, line);
    }
  } finally {
    remove();
  }
});

test('money is printed in the currency\'s own decimals', () => {
  assert.equal(formatMoney({ amount: 12999, currency: 'EUR' }), '129.99 EUR');
  assert.equal(formatMoney({ amount: 1500, currency: 'JPY' }), '1500 JPY');
  assert.equal(formatMoney({ amount: 12345, currency: 'KWD' }), '12.345 KWD');
});
