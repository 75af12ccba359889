import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { LiveCampaigns, type ApplyResult } from '../../src/config/live.js';
import { CampaignTopicFollower } from '../../src/kafka/config-topic.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { produce, silent, testKafka } from '../support/kafka.js';

let cluster: MockCluster;
before(async () => {
  cluster = await startMockCluster();
});
after(async () => {
  await cluster.stop();
});

test('campaign config from a compacted topic through the mock cluster: the newest valid record applies, a bad one is rejected and the old stays', async () => {
  const kafka = testKafka(cluster.brokers);
  const live = new LiveCampaigns(resolveCampaigns({}));
  const results: ApplyResult[] = [];
  const follower = new CampaignTopicFollower(kafka, 'crm.campaigns.v1', live, silent, (r) => results.push(r));
  try {
    await produce(kafka, 'crm.campaigns.v1', [{ key: 'campaigns', value: JSON.stringify({ campaigns: { 'basket-abandonment': { params: { inactivityGap: '20m' } } } }) }]);
    await follower.start(100);
    const wait = async (n: number) => {
      for (let i = 0; i < 300 && results.length < n; i++) await new Promise((r) => setTimeout(r, 50));
    };
    await wait(1);
    assert.equal(results[0]?.ok, true);
    assert.equal(live.current.basketAbandonment?.params.inactivityGap, 20 * 60_000);
    await produce(kafka, 'crm.campaigns.v1', [{ key: 'campaigns', value: JSON.stringify({ guards: { cap: { max: 0, window: '1d' } } }) }]);
    await wait(2);
    assert.equal(results[1]?.ok, false);
    assert.ok(results[1]?.errors.some((e) => e.includes('/guards/cap')), JSON.stringify(results[1]?.errors));
    assert.equal(live.current.basketAbandonment?.params.inactivityGap, 20 * 60_000, 'the old config stays');
    assert.equal(live.version, 2);
  } finally {
    await follower.stop();
  }
});
