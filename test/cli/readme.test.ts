/**
 * Issue 15, item 6: the README stands alone. Every relative link resolves inside the repository (the design is
 * docs/DESIGN.md, not a file next to the clone), and every command it shows (and the demo's closing hint) runs as
 * written from a clone: `npx kairos …` or `node bin/kairos.js …`, never a bare `kairos …` that is not on the PATH.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const DOCS = ['README.md', 'docs/DESIGN.md'];

test('relative links of README.md and docs/DESIGN.md point at files in the repository', () => {
  for (const doc of DOCS) {
    const text = readFileSync(join(root, doc), 'utf8');
    for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
      const target = m[1] ?? '';
      if (/^[a-z]+:/.test(target)) continue;
      const path = resolve(root, dirname(doc), target);
      assert.ok(!relative(root, path).startsWith('..'), `${doc} links outside the repository: ${target}`);
      assert.ok(existsSync(path), `${doc} links to a missing file: ${target}`);
    }
    assert.doesNotMatch(text, /`\.\.\/shared\/DESIGN\.md`|\(\.\.\/shared\//, `${doc} refers to ../shared`);
  }
});

/** Shell lines of the README's sh blocks and inline commands (`VAR=… kairos …`). */
function commands(text: string): string[] {
  const out: string[] = [];
  for (const block of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of (block[1] ?? '').split('\n')) {
      const cmd = line.replace(/#.*$/, '').trim();
      if (cmd !== '') out.push(cmd);
    }
  }
  // Inline code that sets variables and runs the command is meant to be pasted.
  for (const m of text.matchAll(/`((?:[A-Z_]+=\S+\s+)+[^`]*kairos[^`]*)`/g)) out.push(m[1] ?? '');
  return out;
}

test('every kairos command in the README and the demo hint is runnable from a clone (npx kairos or node bin/kairos.js)', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const bare = commands(readme).filter((c) => /(^|[\s;&|(])kairos\s/.test(c.replace(/npx kairos|bin\/kairos\.js/g, '')));
  assert.deepEqual(bare, [], 'commands with a bare `kairos`');
  const demo = readFileSync(join(root, 'src', 'demo', 'demo.ts'), 'utf8');
  assert.match(demo, /npx kairos report --campaign/, 'the demo ends with a runnable report hint');
  assert.doesNotMatch(demo.replace(/npx kairos|bin\/kairos\.js/g, ''), /kairos (report|replay|describe|export) --/, 'a bare kairos command in a demo hint');
});

test('npx kairos runs the checkout\'s command (npm ci links it into node_modules/.bin)', { skip: !existsSync(join(root, 'dist', 'src', 'cli', 'main.js')) && 'dist/ not built' }, () => {
  const r = spawnSync('npx', ['--no-install', 'kairos', 'help'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^kairos — real-time CRM trigger engine/);
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string> };
  assert.equal(pkg.bin.kairos, 'bin/kairos.js');
  assert.match(pkg.scripts.prepare ?? '', /npm run build && node scripts\/link-bin\.mjs/);
  assert.equal(pkg.scripts.start, 'node bin/kairos.js demo');
});
