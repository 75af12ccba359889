/**
 * Issue 15, item 7: `npm ci` on the Node the README names (20.19+) prints no EBADENGINE warning — every locked
 * package's `engines.node` admits Node 20.19 (cookie 2 needs 22, hence the override in package.json).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const NODE = [20, 19, 0] as const;

/** Whether `range` (npm's engines syntax: alternatives with ||, each a set of comparators) admits NODE. */
function admits(range: string): boolean {
  return range.split('||').some((alt) =>
    alt
      .trim()
      .replace(/([<>=^~]+)\s+/g, '$1')
      .split(/\s+/)
      .filter((c) => c !== '' && c !== '*' && c !== 'x')
      .every((c) => {
        const m = /^(>=|>|<=|<|\^|~|=)?\s*v?(\d+)(?:\.(\d+|x))?(?:\.(\d+|x))?/.exec(c.trim());
        if (!m) return true;
        const v = [Number(m[2]), Number(m[3] ?? 0) || 0, Number(m[4] ?? 0) || 0];
        const cmp = NODE[0] - (v[0] ?? 0) || NODE[1] - (v[1] ?? 0) || NODE[2] - (v[2] ?? 0);
        switch (m[1]) {
          case '>=':
            return cmp >= 0;
          case '>':
            return cmp > 0;
          case '<=':
            return cmp <= 0;
          case '<':
            return cmp < 0;
          case '^':
            return NODE[0] === v[0] && cmp >= 0;
          default:
            return m[3] === undefined ? NODE[0] === v[0] : cmp === 0 || (m[1] === '~' && NODE[0] === v[0] && NODE[1] === v[1] && cmp >= 0);
        }
      }),
  );
}

test('every package in package-lock.json supports the Node version package.json names', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
  assert.equal(pkg.engines.node, '>=20.19.0');
  assert.ok(admits('>=18') && admits('>= 12.0.0') && admits('^18.0.0 || >=20') && !admits('>=22') && !admits('^22.12.0'));
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string; engines?: unknown; dev?: boolean }> };
  const bad = Object.entries(lock.packages)
    .filter(([path]) => path !== '')
    .flatMap(([path, p]) => {
      const node = typeof p.engines === 'object' && p.engines !== null && 'node' in p.engines ? (p.engines as { node: unknown }).node : undefined;
      return typeof node === 'string' && !admits(node) ? [`${path}@${p.version ?? '?'} needs node ${node}`] : [];
    });
  assert.deepEqual(bad, [], 'packages that would print EBADENGINE on Node 20.19');
});
