/**
 * Issue 15, item 6: `kairos start` listens where KAIROS_HTTP_HOST says and prints what it bound; the open
 * endpoints answer there. A real `kairos start` child against the mock cluster.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mockClusterAvailable, startMockCluster } from '../../src/kafka/mock-cluster.js';
import { tempDir } from '../helpers.js';
import { startChild } from '../support/instance.js';

test('kairos start binds KAIROS_HTTP_HOST and says so; /health and /metrics answer there without credentials', { skip: !mockClusterAvailable() && 'kcat (mock cluster) not installed' }, async () => {
  const cluster = await startMockCluster();
  const { dir, remove } = tempDir();
  try {
    const child = await startChild({
      KAFKA_BROKERS: cluster.brokers.join(','),
      KAFKA_IDEMPOTENT: 'false',
      KAIROS_STATE_DIR: join(dir, 'state'),
      KAIROS_HTTP_HOST: '127.0.0.1',
      KAIROS_HTTP_PORT: '0',
      KAIROS_LOG_LEVEL: 'warn',
    });
    try {
      const m = /HTTP listening on 127\.0\.0\.1:(\d+)\n/.exec(child.stderr());
      assert.ok(m, child.stderr());
      assert.doesNotMatch(child.stderr(), /every interface/);
      const live = await fetch(`http://127.0.0.1:${m[1]}/health/live`);
      assert.equal(live.status, 200);
      const metrics = await fetch(`http://127.0.0.1:${m[1]}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(await metrics.text(), /^# HELP kairos_/m);
      const v1 = await fetch(`http://127.0.0.1:${m[1]}/v1/customers/anna`);
      assert.equal(v1.status, 401);
    } finally {
      child.child.kill('SIGTERM');
      const killer = setTimeout(() => child.child.kill('SIGKILL'), 60_000);
      await child.exited;
      clearTimeout(killer);
    }
  } finally {
    await cluster.stop();
    remove();
  }
});
