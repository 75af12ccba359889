/**
 * `kairos dispatch` end to end: librdkafka's mock cluster (kcat), a real redis-server, the real firebase-admin
 * client against a local FCM v1 endpoint, a local SMTP server and a local webhook receiver.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import { Redis } from 'ioredis';
import type { Delivery, PushTokenFeedback } from '../../schemas/contract.js';
import { loadDispatchConfig } from '../../src/dispatch/config.js';
import { startDispatch, type DispatchApp } from '../../src/dispatch/app.js';
import { readPlacements } from '../../src/dispatch/onsite-redis.js';
import { profileKey } from '../../src/dispatch/state-view.js';
import { mockClusterAvailable, startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { sleep, tempDir, until } from '../helpers.js';
import { collect, json, produce, silent, testKafka } from '../support/kafka.js';
import { startRedis } from '../support/redis.js';
import { startLocalFcm, localFcmCredential, type LocalFcm } from '../support/fcm-server.js';
import { startLocalSmtp, type LocalSmtp } from '../support/smtp-server.js';
import { makeProfile, makeTrigger } from '../support/dispatch.js';



describe('kairos dispatch through Kafka (mock cluster, redis-server, local FCM v1 endpoint, local SMTP server)', { skip: !mockClusterAvailable() && 'kcat not installed' }, () => {
  const tmp = tempDir('kairos-dispatch-kafka-');
  let cluster: MockCluster;
  let kafka: Kafka;
  let fcm: LocalFcm;
  let smtp: LocalSmtp;
  let hook: Server;
  let hookUrl: string;
  let hookCount = 0;

  before(async () => {
    cluster = await startMockCluster();
    kafka = testKafka(cluster.brokers);
    fcm = await startLocalFcm(tmp.dir);
    smtp = await startLocalSmtp();
    hook = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        hookCount++;
        res.end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const a = hook.address();
    hookUrl = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/hook`;
  });

  after(async () => {
    await fcm.stop();
    await smtp.stop();
    await new Promise<void>((r) => hook.close(() => r()));
    await cluster.stop();
    tmp.remove();
  });

  const env = (redisUrl: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    KAFKA_BROKERS: cluster.brokers.join(','),
    KAFKA_IDEMPOTENT: 'false',
    KAFKA_MAX_WAIT_MS: '100',
    KAIROS_DISPATCH_GROUP: `dispatch-${randomUUID().slice(0, 8)}`,
    REDIS_URL: redisUrl,
    FCM_PROJECT_ID: 'kairos-test',
    KAIROS_FCM_CONNECT_TO: fcm.address,
    KAIROS_FCM_CA_FILE: fcm.caFile,
    SMTP_URL: smtp.url,
    KAIROS_WEBHOOK_URL: hookUrl,
    KAIROS_WEBHOOK_SECRET: 'webhook-secret-0123456789',
    KAIROS_DISPATCH_CAPS: 'push=1000,email=1000,onsite=1000',
    KAIROS_DISPATCH_BACKOFF_MS: '20',
    KAIROS_HTTP_PORT: '0',
    ...extra,
  });

  test('profiles and catalog from their topics, triggers delivered on every channel, results on crm.deliveries.v1, token feedback, dead letters, /metrics', async () => {
    const redisServer = await startRedis();
    const redis = new Redis(redisServer.url);
    let app: DispatchApp | undefined;
    try {
      app = await startDispatch(loadDispatchConfig(env(redisServer.url)), silent, { fcmCredential: localFcmCredential });
      const profiles = [
        makeProfile('k1', { locale: 'de-DE', pushTokens: [{ token: 'k1-ok', platform: 'ios' }, { token: 'unregistered-k1', platform: 'android' }] }),
        makeProfile('k2', { email: 'bounce@example.com' }),
        makeProfile('k3'),
      ];
      await produce(kafka, 'crm.customers.v1', [
        ...profiles.map((p) => ({ key: p.customerId, value: JSON.stringify(p) })),
        { key: 'gone', value: JSON.stringify(makeProfile('gone')) },
        { key: 'gone', value: null },
        { key: 'bad', value: '{"not": "a profile"}' },
      ]);
      await produce(kafka, 'shop.catalog.v1', [
        { key: 'sku-9', value: JSON.stringify({ eventId: 'k9', sku: 'sku-9', productId: 'p9', occurredAt: 5, type: 'STOCK_CHANGED', stock: 0 }) },
      ]);
      await until('profiles in Redis', async () => (await redis.exists(profileKey('k1'), profileKey('k2'), profileKey('k3'))) === 3 && (await redis.hexists('kairos:catalog:sku-9', 'stock')) === 1, 60_000, 50);
      await until('tombstone applied', async () => (await redis.exists(profileKey('gone'))) === 0, 60_000, 50);

      const t1 = makeTrigger('kk1', { customerId: 'k1', channels: ['push', 'email', 'onsite', 'webhook'] });
      const t2 = makeTrigger('kk2', { customerId: 'k2', channels: ['email'] });
      const t3 = makeTrigger('kk3', { customerId: 'k3', channels: ['email'], type: 'WISHLIST_BACK_IN_STOCK', payload: { sku: 'sku-9', productId: 'p9', stock: 2 } });
      await produce(kafka, 'crm.triggers.v1', [
        ...[t1, t2, t3].map((t) => ({ key: t.customerId, value: JSON.stringify(t) })),
        { key: 'k1', value: 'not json' },
        // A redelivery of t1 (same triggerId): its results come again, nothing is sent again.
        { key: t1.customerId, value: JSON.stringify(t1) },
      ]);
      const got = await collect(kafka, ['crm.deliveries.v1', 'crm.push-token-feedback.v1', 'crm.triggers.v1.dlq', 'crm.customers.v1.dlq'], (all) => all.filter((c) => c.topic === 'crm.deliveries.v1').length >= 10 && all.some((c) => c.topic === 'crm.push-token-feedback.v1') && all.some((c) => c.topic === 'crm.customers.v1.dlq') && all.filter((c) => c.topic === 'crm.triggers.v1.dlq').length >= 2);
      const deliveries = got.filter((c) => c.topic === 'crm.deliveries.v1').map((c) => json<Delivery>(c.message));
      const byKey = new Map(deliveries.map((d) => [`${d.customerId}/${d.channel}`, d]));
      assert.equal(new Set(deliveries.map((d) => d.deliveryId)).size, 6, 'one result per trigger and channel (the redelivery repeats the same ids)');
      for (const ch of ['push', 'email', 'onsite', 'webhook']) assert.equal(byKey.get(`k1/${ch}`)?.status, 'SENT', ch);
      assert.equal(byKey.get('k2/email')?.status, 'FAILED');
      assert.equal(byKey.get('k3/email')?.reason, 'stale');
      assert.equal(fcm.delivered.get('k1-ok')?.length, 1);
      assert.equal(smtp.byDelivery().get(byKey.get('k1/email')?.deliveryId ?? ''), 1);
      assert.equal(hookCount, 1);
      assert.equal((await readPlacements(redis, 'k1')).length, 1);
      const feedback = got.filter((c) => c.topic === 'crm.push-token-feedback.v1').map((c) => json<PushTokenFeedback>(c.message));
      assert.deepEqual([...new Set(feedback.map((f) => `${f.token}:${f.reason}`))], ['unregistered-k1:unregistered']);
      const dlq = got.filter((c) => c.topic === 'crm.triggers.v1.dlq').map((c) => String(c.message.headers?.['kairos-error-reason']));
      assert.ok(dlq.includes('not-json'));
      assert.ok(dlq.includes('delivery-permanent-error'));
      const metrics = await (await fetch(`http://${app.address}/metrics`)).text();
      assert.match(metrics, /kairos_dispatch_sends_total\{channel="push"\} 1/);
      assert.match(metrics, /kairos_dispatch_deliveries_total\{channel="email",status="SKIPPED",reason="stale"\} 1/);
      assert.match(metrics, /kairos_dispatch_send_duration_seconds_bucket/);
      assert.match(metrics, /kairos_dispatch_caps_hit_total/);
    } finally {
      await app?.stop();
      redis.disconnect();
      await redisServer.stop();
    }
  });

  test('Redis killed (SIGKILL) mid-dispatch and restarted from its append-only file: every trigger delivered exactly once (local SMTP server, local FCM v1 endpoint, onsite keys)', async () => {
    const aof = tempDir('kairos-redis-aof-');
    let redisServer = await startRedis({ aofDir: aof.dir });
    const port = redisServer.port;
    const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    let app: DispatchApp | undefined;
    const n = 120;
    const smtpBefore = smtp.received.length;
    const rkMails = (): number => smtp.received.slice(smtpBefore).filter((m) => m.to.every((a) => a.startsWith('rk'))).length;
    try {
      // Email limited to 40/s over all instances, so the dispatch takes a few seconds and Redis dies in the middle.
      app = await startDispatch(loadDispatchConfig(env(redisServer.url, { KAIROS_DISPATCH_RATES: 'email=40', KAIROS_DISPATCH_CONCURRENCY: '16' })), silent, { fcmCredential: localFcmCredential });
      const customers = Array.from({ length: n }, (_, i) => makeProfile(`rk${i}`, { pushTokens: [{ token: `rk-token-${i}`, platform: 'android' }] }));
      await produce(kafka, 'crm.customers.v1', customers.map((p) => ({ key: p.customerId, value: JSON.stringify(p) })));
      await until('profiles in Redis', async () => (await redis.exists(...customers.map((c) => profileKey(c.customerId)))) === n, 60_000, 50);
      const triggers = customers.map((c, i) => makeTrigger(`rk-${i}`, { customerId: c.customerId, channels: ['push', 'email', 'onsite'] }));
      await produce(kafka, 'crm.triggers.v1', triggers.map((t) => ({ key: t.customerId, value: JSON.stringify(t) })));

      await until('a part of the emails sent', () => rkMails() >= 30, 60_000, 50);
      await redisServer.kill();
      const sentWhileDown = rkMails();
      await sleep(1500);
      redisServer = await startRedis({ port, aofDir: aof.dir });
      await until('every email sent', () => rkMails() >= n, 90_000, 50);

      const got = await collect(kafka, ['crm.deliveries.v1'], (all) => new Set(all.map((c) => json<Delivery>(c.message)).filter((d) => d.customerId.startsWith('rk')).map((d) => d.deliveryId)).size >= 3 * n, 60_000);
      const deliveries = got.map((c) => json<Delivery>(c.message)).filter((d) => d.customerId.startsWith('rk'));
      const ids = new Set(deliveries.map((d) => d.deliveryId));
      assert.equal(ids.size, 3 * n, 'a result for every trigger and channel');
      assert.ok(deliveries.every((d) => d.status === 'SENT'), JSON.stringify(deliveries.filter((d) => d.status !== 'SENT').slice(0, 3)));
      assert.ok(sentWhileDown < n, `Redis died mid-way (${sentWhileDown} of ${n} emails out)`);
      // Exactly once at every provider.
      const perDelivery = smtp.byDelivery();
      const emailIds = deliveries.filter((d) => d.channel === 'email').map((d) => d.deliveryId);
      assert.equal(new Set(emailIds).size, n);
      for (const id of new Set(emailIds)) assert.equal(perDelivery.get(id), 1, `email ${id}`);
      // (The new consumer group also re-reads the first test's triggers from the topic; they are not counted here.)
      const ours = smtp.received.slice(smtpBefore).filter((m) => m.to.every((a) => a.startsWith('rk')));
      assert.equal(ours.length, n);
      for (let i = 0; i < n; i++) assert.equal(fcm.delivered.get(`rk-token-${i}`)?.length, 1, `push token ${i}`);
      const check = new Redis(redisServer.url);
      try {
        for (let i = 0; i < n; i++) {
          const placements = await readPlacements(check, `rk${i}`);
          assert.deepEqual(placements.map((p) => p.triggerId), [triggers[i]?.triggerId]);
        }
      } finally {
        check.disconnect();
      }
    } finally {
      await app?.stop();
      redis.disconnect();
      await redisServer.stop();
      aof.remove();
    }
  });

  test('a fresh deployment with profiles and triggers already on their topics: every trigger sent, none skipped for want of a profile', async () => {
    const redisServer = await startRedis();
    let app: DispatchApp | undefined;
    try {
      const n = 40;
      // Many profiles before ours, so reading them takes longer than dispatching the triggers would.
      const filler = Array.from({ length: 1000 }, (_, i) => makeProfile(`filler${i}`));
      const customers = Array.from({ length: n }, (_, i) => makeProfile(`fresh${i}`));
      await produce(kafka, 'crm.customers.v1', [...filler, ...customers].map((p) => ({ key: p.customerId, value: JSON.stringify(p) })));
      const triggers = customers.map((c, i) => makeTrigger(`fresh-${i}`, { customerId: c.customerId, channels: ['onsite'] }));
      await produce(kafka, 'crm.triggers.v1', triggers.map((t) => ({ key: t.customerId, value: JSON.stringify(t) })));
      app = await startDispatch(loadDispatchConfig(env(redisServer.url, { KAIROS_DISPATCH_CHANNELS: 'onsite' })), silent);
      const got = await collect(kafka, ['crm.deliveries.v1'], (all) => all.map((c) => json<Delivery>(c.message)).filter((d) => d.customerId.startsWith('fresh')).length >= n);
      const ours = got.map((c) => json<Delivery>(c.message)).filter((d) => d.customerId.startsWith('fresh'));
      assert.equal(new Set(ours.map((d) => d.deliveryId)).size, n);
      assert.deepEqual([...new Set(ours.map((d) => `${d.status}/${d.reason}`))], ['SENT/ok']);
    } finally {
      await app?.stop();
      await redisServer.stop();
    }
  });
});
