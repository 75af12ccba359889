import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import type { CustomerProfile } from '../../schemas/contract.js';
import { isKairosError } from '../../src/errors.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { PROFILES_TOPIC, profileTopic } from '../../src/kafka/profile-topic.js';
import { JsonSerde } from '../../src/kafka/serde.js';
import { BigQueryWarehouse } from '../../src/warehouse/bigquery-sink.js';
import { segmentMetrics } from '../../src/warehouse/metrics.js';
import { diffSegments, parseSegmentsConfig, syncSegmentsOnce, type SegmentResult } from '../../src/warehouse/segments.js';
import { startBigQueryServer } from '../support/bigquery-server.js';
import { collect, json, produce, silent, testKafka } from '../support/kafka.js';

let cluster: MockCluster;
before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  await cluster.stop();
});

const profile = (customerId: string, segments: string[], attributes: CustomerProfile['attributes'] = {}): CustomerProfile => ({
  customerId,
  updatedAt: 1000,
  consents: { push: true, email: true, onsite: false },
  pushTokens: [],
  segments,
  attributes,
});

const config = parseSegmentsConfig({
  interval: '10m',
  segments: [
    { name: 'vip', sql: 'SELECT customerId, clv FROM `p.crm.value` WHERE clv > @min_clv', params: { min_clv: 500 }, attributes: ['clv'] },
    { name: 'churn-risk', sql: 'SELECT customerId, churnRisk FROM `p.crm.churn`', attributes: ['churnRisk'] },
  ],
});

test('segments config: every bad field named, duplicate segments and attributes refused', () => {
  assert.throws(
    () => parseSegmentsConfig({ interval: 'soon', segments: [{ name: 'VIP', sql: '' }, { name: 'a', sql: 'x', extra: 1 }] }),
    (err: unknown) => isKairosError(err, 'KAIROS_ERR_CONFIG') && /\/interval/.test(err.message) && /\/segments\/0\/name/.test(err.message) && /\/segments\/0\/sql/.test(err.message) && /\/segments\/1\/extra/.test(err.message),
  );
  assert.throws(
    () => parseSegmentsConfig({ segments: [{ name: 'a', sql: 'x', attributes: ['clv'] }, { name: 'a', sql: 'y', attributes: ['clv'] }] }),
    (err: unknown) => isKairosError(err, 'KAIROS_ERR_CONFIG') && /appears twice/.test(err.message) && /already managed by segment a/.test(err.message),
  );
  assert.equal(config.intervalMs, 600_000);
});

test('diffSegments: only changed profiles, other segments and attributes kept, leavers lose the segment attributes, new customers get no consent, erased ones are not recreated', () => {
  const profiles = new Map<string, CustomerProfile | null>([
    ['c1', profile('c1', ['vip'], { clv: 900 })],
    ['c2', profile('c2', [], { tier: 'gold' })],
    ['c3', profile('c3', ['staff', 'vip'], { clv: 600, tier: 'silver' })],
    ['c4', null],
    ['c6', profile('c6', ['vip'], { clv: 800 })],
  ]);
  const results = new Map<string, SegmentResult>([
    ['vip', new Map([['c1', { clv: 900 }], ['c2', { clv: 700 }], ['c4', { clv: 1000 }], ['c5', { clv: 550 }], ['c6', { clv: 850 }]])],
    ['churn-risk', new Map([['c3', { churnRisk: 0.9 }]])],
  ]);
  const diff = diffSegments(profiles, config.segments, results, 5000);
  assert.deepEqual(
    diff.updates.map((p) => [p.customerId, p.segments, p.attributes]),
    [
      ['c2', ['vip'], { tier: 'gold', clv: 700 }],
      ['c3', ['staff', 'churn-risk'], { tier: 'silver', churnRisk: 0.9 }],
      ['c5', ['vip'], { clv: 550 }],
      ['c6', ['vip'], { clv: 850 }],
    ],
  );
  assert.deepEqual(diff.updates.find((p) => p.customerId === 'c5')?.consents, { push: false, email: false, onsite: false });
  assert.deepEqual(diff.updates.find((p) => p.customerId === 'c2')?.consents, { push: true, email: true, onsite: false }, 'the rest of the profile is kept');
  assert.equal(diff.updates[0]?.updatedAt, 5000);
  assert.equal(diff.erased, 1);
  assert.deepEqual(diff.changes, [
    { segment: 'vip', joined: 2, left: 1, attributes: 1, members: 5 },
    { segment: 'churn-risk', joined: 1, left: 0, attributes: 0, members: 1 },
  ]);
  assert.deepEqual(diffSegments(new Map([['c1', profile('c1', ['vip'], { clv: 900 })]]), config.segments, new Map([['vip', new Map([['c1', { clv: 900 }]])]]), 1).updates, []);
});

test('segments sync end to end: profiles from crm.customers.v1 (mock Kafka), segment queries through the real BigQuery client and the local REST server (jobs.query; canned results per segment label, the SQL runs only on real BigQuery), only changes published, a second run publishes nothing', async () => {
  const server = await startBigQueryServer();
  const kafka = testKafka(cluster.brokers);
  try {
    await produce(kafka, PROFILES_TOPIC, [
      { key: 'c1', value: JSON.stringify(profile('c1', ['vip'], { clv: 900 })) },
      { key: 'c2', value: JSON.stringify(profile('c2', [], { tier: 'gold' })) },
      { key: 'c3', value: JSON.stringify(profile('c3', ['staff', 'vip'], { clv: 600 })) },
      { key: 'c4', value: JSON.stringify(profile('c4', [])) },
      { key: 'c4', value: null },
      { key: 'c9', value: '{broken' },
    ]);
    const vip = [
      { customerId: 'c1', clv: 900 },
      { customerId: 'c2', clv: 700 },
      { customerId: 'c4', clv: 1000 },
      { customerId: 'c5', clv: 550 },
      { clv: 1 },
    ];
    let vipParams: unknown;
    server.onQuery('kairos-segment-vip', (ctx) => {
      vipParams = ctx.params;
      return { fields: [{ name: 'customerId', type: 'STRING' }, { name: 'clv', type: 'FLOAT' }], rows: vip };
    });
    server.onQuery('kairos-segment-churn-risk', () => ({ fields: [{ name: 'customerId', type: 'STRING' }, { name: 'churnRisk', type: 'FLOAT' }], rows: [{ customerId: 'c3', churnRisk: 0.9 }] }));
    const warehouse = new BigQueryWarehouse({ projectId: 'p1', dataset: 'kairos', apiEndpoint: server.endpoint, accessToken: 't' });
    const registry = new Registry();
    const lines: string[] = [];
    const opts = {
      warehouse,
      profiles: profileTopic(kafka, new JsonSerde(), silent, { maxWaitTimeInMs: 100, timeoutMs: 30_000 }),
      config,
      metrics: segmentMetrics(registry),
      progress: (l: string) => lines.push(l),
      now: () => 2000,
    };
    // Where each partition ends before the sync: what it publishes comes after (the collector reads the
    // partitions in no fixed order, so the first six records read need not be the six produced above).
    const admin = kafka.admin();
    await admin.connect();
    const ends = new Map((await admin.fetchTopicOffsets(PROFILES_TOPIC)).map((o) => [o.partition, BigInt(o.high)]));
    await admin.disconnect();
    const first = await syncSegmentsOnce(opts);
    assert.deepEqual(vipParams, { min_clv: 500 });
    assert.equal(first.profilesRead, 4, 'c1, c2, c3 and the erased c4 (the broken record skipped)');
    assert.equal(first.published, 3);
    assert.equal(first.skippedRows, 1);
    assert.equal(first.erased, 1);
    const published = await collect(kafka, [PROFILES_TOPIC], (all) => all.length >= 9);
    const latest = published.filter((m) => BigInt(m.message.offset) >= (ends.get(m.partition) ?? 0n)).map((m) => json<CustomerProfile>(m.message));
    assert.equal(latest.length, 3);
    assert.deepEqual(
      latest.map((p) => [p.customerId, p.segments, p.attributes]).sort(),
      [
        ['c2', ['vip'], { tier: 'gold', clv: 700 }],
        ['c3', ['staff', 'churn-risk'], { churnRisk: 0.9 }],
        ['c5', ['vip'], { clv: 550 }],
      ],
    );
    assert.ok(lines.some((l) => /vip: \+2 joined, −1 left/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /\[1\/2\] vip: 4 members/.test(l)), lines.join('\n'));
    const metrics = await registry.metrics();
    assert.match(metrics, /kairos_segments_profiles_published_total 3/);
    assert.match(metrics, /kairos_segments_members\{segment="vip"\} 4/);

    const second = await syncSegmentsOnce(opts);
    assert.equal(second.published, 0, 'nothing changed since the first run');
    assert.equal(second.profilesRead, 5);
  } finally {
    await server.close();
  }
});
