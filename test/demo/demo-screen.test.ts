/**
 * Issue 15, item 5: the demo's first screen has no warnings or JSON log lines (details go to a log file), says
 * where it listens (127.0.0.1 only), and every line it prints for a decision says what and why. The demo runs
 * until its first sent trigger, then gets SIGINT; nothing here depends on how long that takes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { mockClusterAvailable } from '../../src/kafka/mock-cluster.js';
import { until } from '../helpers.js';
import { STACK_TRACE } from '../support/cli.js';

const root = join(import.meta.dirname, '..', '..');
const LINE = /^\d\d:\d\d:\d\d {2}(SENT|HELD|SUPPRESSED) +[A-Z_]+ +demo-\d+ {2}\S.*(→ [a-z+]+|✗ [a-z-]+.*)$/;

async function demoScreen(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'src', 'cli', 'bin.ts'), 'demo', ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await until('a sent trigger on the demo screen', () => /^\S+ {2}SENT /m.test(stdout) || child.exitCode !== null, 180_000, 250);
  } finally {
    child.kill('SIGINT');
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    await exited;
    clearTimeout(killer);
  }
  return { stdout, stderr };
}

function checkScreen({ stdout, stderr }: { stdout: string; stderr: string }): void {
  const screen = stdout + stderr;
  assert.doesNotMatch(screen, /Warning|FSTDEP|partitioner|^\{"level"/m, `no warnings or JSON log lines:\n${stderr}`);
  assert.doesNotMatch(screen, STACK_TRACE);
  assert.match(stderr, /kairos demo: log details in \S+kairos-demo\.log/);
  const lines = stdout.split('\n').filter((l) => l !== '');
  assert.ok(lines.some((l) => / SENT /.test(l)), stdout);
  for (const l of lines) {
    assert.match(l, LINE);
    assert.doesNotMatch(l, /\b0 item|\(s\)|undefined|NaN/);
  }
}

test('kairos demo (Kafka path): quiet first screen, binds 127.0.0.1, self-explaining lines', { skip: !mockClusterAvailable() && 'kcat (mock cluster) not installed' }, async () => {
  const screen = await demoScreen(['--port', '0']);
  checkScreen(screen);
  assert.match(screen.stderr, /kairos demo: HTTP on 127\.0\.0\.1:\d+ \(127\.0\.0\.1: this machine only\)/);
  assert.match(screen.stderr, /curl -H 'authorization: Bearer [0-9a-f]{32}' http:\/\/127\.0\.0\.1:\d+\/v1\/customers\/demo-0001/);
});

test('kairos demo --embedded: self-explaining lines', async () => {
  checkScreen(await demoScreen(['--embedded', '--gap', '3s']));
});
