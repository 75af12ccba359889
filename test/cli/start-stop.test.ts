/**
 * `kairos start` ends on SIGTERM in every state (issue 15): with the broker gone (the final commit and the leave
 * would retry for minutes; the stop is bounded and the process exits), and at once on a second signal. A real
 * child process against librdkafka's mock cluster; the bound itself (28 s) is not asserted as a timing, only
 * that the process exits well within the test's own timeout and with the documented codes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startMockCluster } from '../../src/kafka/mock-cluster.js';
import { sleep, tempDir } from '../helpers.js';
import { startChild } from '../support/instance.js';

const env = (brokers: string[], dir: string): Record<string, string> => ({
  KAFKA_BROKERS: brokers.join(','),
  KAFKA_IDEMPOTENT: 'false',
  KAIROS_STATE_DIR: join(dir, 'state'),
  KAIROS_HTTP_PORT: '0',
  KAIROS_LOG_LEVEL: 'warn',
});

/** Resolves with the exit code, or rejects when the child is still alive after `ms` (then killed). */
async function exitWithin(c: Awaited<ReturnType<typeof startChild>>, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      c.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          c.child.kill('SIGKILL');
          reject(new Error(`still running ${ms} ms after the signal:\n${c.stderr().slice(-3000)}`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

test('kairos start exits on SIGTERM after its broker died (bounded stop, exit 0 or 1), with no stack trace', { timeout: 120_000 }, async () => {
  const cluster = await startMockCluster();
  const dir = tempDir('kairos-stop-');
  try {
    const c = await startChild(env(cluster.brokers, dir.dir));
    await sleep(4000); // joined the group, tasks open
    await cluster.stop();
    await sleep(2000); // the clients notice
    c.child.kill('SIGTERM');
    const code = await exitWithin(c, 60_000);
    assert.ok(code === 0 || code === 1, `exit code ${String(code)}:\n${c.stderr().slice(-2000)}`);
    assert.match(c.stderr(), /kairos: stopping/);
    assert.doesNotMatch(c.stderr(), /^\s+at .+\(.+:\d+:\d+\)$/m, 'no stack trace on stderr');
  } finally {
    await cluster.stop();
    dir.remove();
  }
});

test('kairos start: a second SIGTERM/SIGINT exits at once (128 + signal)', { timeout: 120_000 }, async () => {
  const cluster = await startMockCluster();
  const dir = tempDir('kairos-stop-');
  try {
    const c = await startChild(env(cluster.brokers, dir.dir));
    await cluster.stop(); // the stop has something to wait for
    await sleep(1000);
    c.child.kill('SIGINT');
    await sleep(300);
    c.child.kill('SIGINT');
    const code = await exitWithin(c, 20_000);
    assert.equal(code, 130, c.stderr().slice(-2000));
    assert.match(c.stderr(), /SIGINT again: exiting without waiting/);
  } finally {
    await cluster.stop();
    dir.remove();
  }
});
