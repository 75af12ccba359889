/**
 * The query API's latency histogram (src/api/latency-histogram.ts) exports what prom-client's Histogram exports for
 * the same observations: the text a scrape gets and the registry's JSON, series in the order of their first
 * observation, values on, between and past the bounds, a child made but never observed, after a reset.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { LatencyHistogram } from '../../src/api/latency-histogram.js';

const config = (registry: Registry) => ({
  name: 'kairos_api_request_duration_seconds',
  help: 'Query API latency by method, route (pattern) and status code',
  labelNames: ['method', 'route', 'status_code'],
  buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5],
  registers: [registry],
});

test('the same scrape text and JSON as prom-client\'s Histogram', async () => {
  const theirs = new Registry();
  const ours = new Registry();
  const reference = new Histogram(config(theirs));
  const fast = new LatencyHistogram(config(ours));
  const label = (method: string, route: string, status: number) => ({ method, route, status_code: String(status) });
  const pairs = [
    [label('GET', '/v1/customers/:id', 200), 0],
    [label('GET', '/v1/customers/:id', 404), 0.0005],
    [label('HEAD', '/v1/customers/:id', 200), 0.0031],
    [label('GET', '/metrics', 200), 7],
    [label('GET', '/v1/topology', 200), 0.25],
  ] as const;
  const children = pairs.map(([l]) => ({ ref: reference.labels(l), fast: fast.labels(l) }));
  // A child made and never observed: no series.
  reference.labels(label('GET', '/v1/customers/:id/triggers', 200));
  fast.labels(label('GET', '/v1/customers/:id/triggers', 200));
  const compare = async (what: string) => {
    assert.equal(await ours.metrics(), await theirs.metrics(), what);
    assert.deepEqual(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON(), `${what} (JSON)`);
  };
  await compare('nothing observed');
  for (let i = 0; i < 200; i++) {
    // Interleaved first observations (series order), values on, between and past the bounds.
    const k = (i * 7) % children.length;
    const v = (pairs[k] as (typeof pairs)[number])[1] + (i % 5) * 0.0003 + (i % 13 === 0 ? 3 : 0);
    children[k]?.ref.observe(v);
    children[k]?.fast.observe(v);
  }
  await compare('after 200 observations');
  assert.throws(() => fast.labels(label('GET', '/x', 200)).observe(Number.NaN), { name: 'TypeError', message: 'Value is not a valid number: NaN' });
  theirs.resetMetrics();
  ours.resetMetrics();
  await compare('after a reset');
  children[3]?.ref.observe(0.002);
  children[3]?.fast.observe(0.002);
  children[0]?.ref.observe(0.0001);
  children[0]?.fast.observe(0.0001);
  await compare('children made before the reset observe again');
});
