/**
 * The dispatcher against real parts: redis-server on a free port, the real firebase-admin client against a local
 * FCM v1 endpoint (HTTPS), a local SMTP server (smtp-server), a local webhook receiver.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { after, before, beforeEach, describe, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { FcmPushSender } from '../../src/dispatch/push-fcm.js';
import { SmtpEmailSender } from '../../src/dispatch/email-smtp.js';
import { OnsiteRedisSender, placementsKey, readPlacements } from '../../src/dispatch/onsite-redis.js';
import { WebhookSender, verifyWebhookSignature } from '../../src/dispatch/webhook.js';
import { putCatalog, putProfile, getProfile } from '../../src/dispatch/state-view.js';
import { deliveryIdOf } from '../../src/dispatch/dispatcher.js';
import { tempDir } from '../helpers.js';
import { startRedis, type RedisServer } from '../support/redis.js';
import { startLocalFcm, localFcmCredential, type LocalFcm } from '../support/fcm-server.js';
import { startLocalSmtp, type LocalSmtp } from '../support/smtp-server.js';
import { makeProfile, makeTrigger, metricValue, testDispatcher } from '../support/dispatch.js';

const eur = (amount: number) => ({ amount, currency: 'EUR' });
const SECRET = 'webhook-secret-0123456789';

describe('dispatch channels (real redis-server, local FCM v1 endpoint, local SMTP server)', () => {
  const tmp = tempDir('kairos-dispatch-');
  let server: RedisServer;
  let redis: Redis;
  let fcm: LocalFcm;
  let smtp: LocalSmtp;
  let push: FcmPushSender;
  let email: SmtpEmailSender;
  let hook: Server;
  let hookUrl: string;
  const hookReceived: { headers: IncomingMessage['headers']; body: string }[] = [];
  let hookPlan: number[] = [];

  before(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    fcm = await startLocalFcm(tmp.dir, { flakyFailures: 2 });
    smtp = await startLocalSmtp({ busyFailures: 2 });
    push = new FcmPushSender({ projectId: 'kairos-test', credential: localFcmCredential, connectTo: fcm.address, ca: readFileSync(fcm.caFile), shopUrl: 'https://shop.test' });
    email = new SmtpEmailSender({ url: smtp.url, from: 'Kairos <crm@shop.test>', shopUrl: 'https://shop.test' });
    hook = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        hookReceived.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        const status = hookPlan.shift() ?? 200;
        res.writeHead(status, status === 503 ? { 'retry-after': '0' } : {});
        res.end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const a = hook.address();
    hookUrl = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/hook`;
  });

  after(async () => {
    await push.close();
    await email.close();
    await fcm.stop();
    await smtp.stop();
    await new Promise<void>((r) => hook.close(() => r()));
    redis.disconnect();
    await server.stop();
    tmp.remove();
  });

  beforeEach(async () => {
    await redis.flushall();
  });

  test('push via the real firebase-admin client against a local FCM v1 endpoint: per-platform payloads, TTL from expiresAt, bad tokens reported and dropped', async () => {
    const t = makeTrigger('p1', { channels: ['push'], customerId: 'cp1' });
    await putProfile(
      redis,
      'cp1',
      makeProfile('cp1', {
        pushTokens: [
          { token: 'good-android', platform: 'android' },
          { token: 'good-ios', platform: 'ios' },
          { token: 'good-web', platform: 'web' },
          { token: 'unregistered-1', platform: 'android' },
          { token: 'invalid-1', platform: 'ios' },
        ],
      }),
    );
    const { dispatcher, registry } = testDispatcher(redis, { push });
    const out = await dispatcher.dispatch(t);
    assert.equal(out.deliveries.length, 1);
    const d = out.deliveries[0];
    assert.equal(d?.status, 'SENT');
    assert.equal(d?.detail, 'sent to 3 of 5 tokens');
    assert.match(d?.providerMessageId ?? '', /^projects\/kairos-test\/messages\/\d+$/);
    assert.deepEqual(out.feedback.map((f) => [f.token, f.reason]).sort(), [['invalid-1', 'invalid'], ['unregistered-1', 'unregistered']]);
    assert.ok(out.feedback.every((f) => f.triggerId === t.triggerId && f.customerId === 'cp1'));
    // Per-platform payloads with the TTL from expiresAt.
    const android = fcm.delivered.get('good-android')?.[0]?.message;
    assert.ok(android?.android?.ttl?.endsWith('s'));
    const ttl = Number(android?.android?.ttl?.slice(0, -1));
    assert.ok(ttl > 3500 && ttl <= 3600, `android ttl ${String(android?.android?.ttl)}`);
    assert.equal(android?.android?.priority, 'high');
    assert.equal(android?.data?.triggerId, t.triggerId);
    const ios = fcm.delivered.get('good-ios')?.[0]?.message;
    assert.equal(ios?.apns?.headers?.['apns-expiration'], String(Math.floor(t.expiresAt / 1000)));
    assert.equal(ios?.notification?.title, 'You left something in your basket');
    const web = fcm.delivered.get('good-web')?.[0]?.message;
    const webTtl = Number(web?.webpush?.headers?.TTL);
    assert.ok(webTtl > 3500 && webTtl <= 3600);
    // Bad tokens left the stored profile at once.
    const stored = await getProfile(redis, 'cp1');
    assert.deepEqual(stored?.pushTokens.map((p) => p.token), ['good-android', 'good-ios', 'good-web']);
    assert.equal(await metricValue(registry, 'kairos_dispatch_token_feedback_total'), 2);
    assert.equal(push.stats.batches, 1, 'the five messages went out in one sendEach batch');
  });

  test('push batches concurrent deliveries into sendEach calls of at most 500 (local FCM v1 endpoint)', async () => {
    const before = { ...push.stats };
    const n = 120;
    for (let i = 0; i < n; i++) {
      await putProfile(redis, `cb${i}`, makeProfile(`cb${i}`, { pushTokens: Array.from({ length: 5 }, (_, k) => ({ token: `b-${i}-${k}`, platform: 'android' as const })) }));
    }
    const { dispatcher } = testDispatcher(redis, { push });
    const outs = await Promise.all(Array.from({ length: n }, (_, i) => dispatcher.dispatch(makeTrigger(`b${i}`, { customerId: `cb${i}`, channels: ['push'] }))));
    assert.ok(outs.every((o) => o.deliveries[0]?.status === 'SENT'));
    const batches = push.stats.batches - before.batches;
    const messages = push.stats.messages - before.messages;
    assert.equal(messages, 600);
    assert.ok(batches >= 2 && batches < 600 / 5, `600 messages in ${batches} sendEach calls`);
  });

  test('push retries a transient FCM error and sends every token exactly once (local FCM v1 endpoint)', async () => {
    await putProfile(redis, 'cf', makeProfile('cf', { pushTokens: [{ token: 'flaky-1', platform: 'android' }, { token: 'steady-1', platform: 'web' }] }));
    const { dispatcher, registry } = testDispatcher(redis, { push });
    const out = await dispatcher.dispatch(makeTrigger('f1', { customerId: 'cf', channels: ['push'] }));
    assert.equal(out.deliveries[0]?.status, 'SENT');
    assert.equal(out.deliveries[0]?.attempts, 3);
    assert.equal(fcm.delivered.get('flaky-1')?.length, 1);
    assert.equal(fcm.delivered.get('steady-1')?.length, 1, 'the token sent in the first attempt is not sent again');
    assert.equal(await metricValue(registry, 'kairos_dispatch_retries_total', { channel: 'push' }), 2);
  });

  test('push with only bad tokens fails for good and is dead-lettered (local FCM v1 endpoint)', async () => {
    await putProfile(redis, 'cx', makeProfile('cx', { pushTokens: [{ token: 'unregistered-9', platform: 'android' }] }));
    const { dispatcher } = testDispatcher(redis, { push });
    const out = await dispatcher.dispatch(makeTrigger('x1', { customerId: 'cx', channels: ['push'] }));
    assert.equal(out.deliveries[0]?.status, 'FAILED');
    assert.equal(out.deliveries[0]?.reason, 'no-valid-token');
    assert.equal(out.deadLetters.length, 1);
    assert.equal(out.feedback[0]?.reason, 'unregistered');
  });

  test('email through a local SMTP server: template per type and locale with the live price; a stale price drop is skipped', async () => {
    await putProfile(redis, 'ce', makeProfile('ce', { locale: 'de-DE', email: 'kunde@example.com' }));
    await putCatalog(redis, { eventId: 'k1', sku: 'sku-1', productId: 'Jacke', occurredAt: 10, type: 'PRICE_CHANGED', price: eur(7999) });
    const drop = (n: string) =>
      makeTrigger(n, { customerId: 'ce', type: 'BASKET_PRICE_DROP', channels: ['email'], payload: { sku: 'sku-1', productId: 'Jacke', oldPrice: eur(9999), newPrice: eur(8499), quantity: 1 } });
    const { dispatcher, registry } = testDispatcher(redis, { email });
    const sent = await dispatcher.dispatch(drop('e1'));
    assert.equal(sent.deliveries[0]?.status, 'SENT');
    const mail = smtp.received.find((m) => m.headers.get('x-kairos-delivery-id') === sent.deliveries[0]?.deliveryId);
    assert.ok(mail, 'the SMTP server got the message');
    assert.deepEqual(mail.to, ['kunde@example.com']);
    assert.equal(mail.headers.get('content-language'), 'de');
    assert.match(mail.headers.get('subject') ?? '', /Preissenkung|=\?UTF-8\?/);
    assert.match(mail.raw, /79,99/, 'the live price (79.99), not the notified 84.99');
    // The price went back up to the reference: the drop no longer holds.
    await putCatalog(redis, { eventId: 'k2', sku: 'sku-1', productId: 'Jacke', occurredAt: 20, type: 'PRICE_CHANGED', price: eur(9999) });
    const count = smtp.received.length;
    const stale = await dispatcher.dispatch(drop('e2'));
    assert.equal(stale.deliveries[0]?.status, 'SKIPPED');
    assert.equal(stale.deliveries[0]?.reason, 'stale');
    assert.match(stale.deliveries[0]?.detail ?? '', /not below the reference/);
    assert.equal(smtp.received.length, count);
    // An older catalog event never overwrites a newer one.
    await putCatalog(redis, { eventId: 'k0', sku: 'sku-1', productId: 'Jacke', occurredAt: 5, type: 'PRICE_CHANGED', price: eur(100) });
    assert.equal((await dispatcher.dispatch(drop('e3'))).deliveries[0]?.reason, 'stale');
    // Restock gone again.
    await putCatalog(redis, { eventId: 'k3', sku: 'sku-2', productId: 'Hose', occurredAt: 20, type: 'STOCK_CHANGED', stock: 0 });
    const restock = await dispatcher.dispatch(makeTrigger('e4', { customerId: 'ce', type: 'WISHLIST_BACK_IN_STOCK', channels: ['email'], payload: { sku: 'sku-2', productId: 'Hose', stock: 3 } }));
    assert.equal(restock.deliveries[0]?.reason, 'stale');
    assert.equal(await metricValue(registry, 'kairos_dispatch_deliveries_total', { channel: 'email', reason: 'stale' }), 3);
  });

  test('email: a 4xx reply is retried with backoff and sent once, a 5xx reply fails for good (local SMTP server)', async () => {
    await putProfile(redis, 'cbusy', makeProfile('cbusy', { email: 'busy@example.com' }));
    await putProfile(redis, 'cbounce', makeProfile('cbounce', { email: 'bounce@example.com' }));
    const { dispatcher } = testDispatcher(redis, { email });
    const busy = await dispatcher.dispatch(makeTrigger('busy', { customerId: 'cbusy' }));
    assert.equal(busy.deliveries[0]?.status, 'SENT');
    assert.equal(busy.deliveries[0]?.attempts, 3);
    assert.equal(smtp.byDelivery().get(busy.deliveries[0]?.deliveryId ?? ''), 1);
    const bounce = await dispatcher.dispatch(makeTrigger('bounce', { customerId: 'cbounce' }));
    assert.equal(bounce.deliveries[0]?.status, 'FAILED');
    assert.equal(bounce.deliveries[0]?.reason, 'permanent-error');
    assert.equal(bounce.deliveries[0]?.attempts, 1);
    assert.equal(bounce.deadLetters[0]?.channel, 'email');
  });

  test('onsite placements are written to Redis with a TTL, read back by readPlacements, erased with the profile', async () => {
    await putProfile(redis, 'co', makeProfile('co'));
    const onsite = new OnsiteRedisSender(redis, 'https://shop.test');
    const { dispatcher } = testDispatcher(redis, { onsite });
    const t1 = makeTrigger('o1', { customerId: 'co', channels: ['onsite'], expiresAt: Date.now() + 60_000 });
    const t2 = makeTrigger('o2', { customerId: 'co', channels: ['onsite'], type: 'BROWSE_ABANDONED', payload: { products: [{ productId: 'p1' }, { productId: 'p2' }] } });
    assert.equal((await dispatcher.dispatch(t1)).deliveries[0]?.status, 'SENT');
    assert.equal((await dispatcher.dispatch(t2)).deliveries[0]?.status, 'SENT');
    const ttl = await redis.pttl(placementsKey('co'));
    assert.ok(ttl > 3500_000 && ttl <= 3600_000, `hash TTL follows the longest placement (${ttl})`);
    const live = await readPlacements(redis, 'co');
    assert.deepEqual(live.map((p) => p.triggerId).sort(), [t1.triggerId, t2.triggerId].sort());
    assert.equal(live.find((p) => p.triggerId === t2.triggerId)?.body, 'Take another look at the 2 products you viewed.');
    // After t1 expires, only t2 is served, and t1's field is removed.
    const later = await readPlacements(redis, 'co', Date.now() + 120_000);
    assert.deepEqual(later.map((p) => p.triggerId), [t2.triggerId]);
    assert.equal(await redis.hexists(placementsKey('co'), t1.triggerId), 0);
    // A tombstone on crm.customers.v1 erases the customer: profile and placements.
    await putProfile(redis, 'co', null);
    assert.equal(await redis.exists(placementsKey('co')), 0);
    assert.equal(await getProfile(redis, 'co'), undefined);
  });

  test('webhook requests are signed, 503 is retried, 400 fails for good', async () => {
    await putProfile(redis, 'cw', makeProfile('cw'));
    const webhook = new WebhookSender({ url: hookUrl, secret: SECRET });
    const { dispatcher } = testDispatcher(redis, { webhook });
    hookReceived.length = 0;
    hookPlan = [503, 200];
    const ok = await dispatcher.dispatch(makeTrigger('w1', { customerId: 'cw', channels: ['webhook'] }));
    assert.equal(ok.deliveries[0]?.status, 'SENT');
    assert.equal(ok.deliveries[0]?.attempts, 2);
    assert.equal(hookReceived.length, 2);
    for (const r of hookReceived) {
      assert.ok(verifyWebhookSignature(SECRET, String(r.headers['kairos-signature']), r.body, Math.floor(Date.now() / 1000)));
      assert.equal(r.headers['kairos-delivery-id'], deliveryIdOf(makeTrigger('w1').triggerId, 'webhook'));
      assert.ok(!verifyWebhookSignature('another-secret-0123456', String(r.headers['kairos-signature']), r.body, Math.floor(Date.now() / 1000)));
    }
    hookPlan = [400];
    const bad = await dispatcher.dispatch(makeTrigger('w2', { customerId: 'cw', channels: ['webhook'] }));
    assert.equal(bad.deliveries[0]?.status, 'FAILED');
    assert.equal(bad.deliveries[0]?.reason, 'permanent-error');
    assert.equal(bad.deadLetters.length, 1);
  });

  test('skips: no profile, no consent, no address, expired, channel not enabled — each with its reason', async () => {
    await putProfile(redis, 'cs', makeProfile('cs', { consents: { push: false, email: true, onsite: true }, email: undefined }));
    const { dispatcher } = testDispatcher(redis, { push, email }, { channels: ['push', 'email'] });
    const out = await dispatcher.dispatch(makeTrigger('s1', { customerId: 'cs', channels: ['push', 'email', 'onsite'] }));
    assert.deepEqual(out.deliveries.map((d) => [d.channel, d.status, d.reason]), [
      ['push', 'SKIPPED', 'no-consent'],
      ['email', 'SKIPPED', 'no-address'],
      ['onsite', 'SKIPPED', 'channel-disabled'],
    ]);
    const none = await dispatcher.dispatch(makeTrigger('s2', { customerId: 'nobody' }));
    assert.equal(none.deliveries[0]?.reason, 'no-profile');
    await putProfile(redis, 'cs2', makeProfile('cs2'));
    const expired = await dispatcher.dispatch(makeTrigger('s3', { customerId: 'cs2', expiresAt: Date.now() - 1 }));
    assert.equal(expired.deliveries[0]?.reason, 'expired');
  });

  test('a redelivered trigger is never sent twice: the stored result comes back (local SMTP server)', async () => {
    await putProfile(redis, 'cr', makeProfile('cr'));
    const a = testDispatcher(redis, { email });
    const b = testDispatcher(redis, { email }); // another instance
    const t = makeTrigger('r1', { customerId: 'cr' });
    const before = smtp.received.length;
    const results = await Promise.all([a.dispatcher.dispatch(t), b.dispatcher.dispatch(t), a.dispatcher.dispatch(t)]);
    const again = await b.dispatcher.dispatch(t);
    assert.equal(smtp.received.length - before, 1);
    for (const r of [...results, again]) assert.deepEqual(r.deliveries, results[0]?.deliveries);
  });

  test('daily contact caps per channel hold across instances, in the customer\'s time zone', async () => {
    await putProfile(redis, 'ccap', makeProfile('ccap', { timezone: 'Asia/Tokyo' }));
    const onsite = new OnsiteRedisSender(redis, 'https://shop.test');
    const a = testDispatcher(redis, { onsite, email }, { caps: { onsite: 2, email: 1 } });
    const b = testDispatcher(redis, { onsite, email }, { caps: { onsite: 2, email: 1 } });
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await (i % 2 === 0 ? a : b).dispatcher.dispatch(makeTrigger(`cap${i}`, { customerId: 'ccap', channels: ['onsite', 'email'] })));
    const onsiteStatus = results.map((r) => r.deliveries[0]?.reason);
    const emailStatus = results.map((r) => r.deliveries[1]?.reason);
    assert.deepEqual(onsiteStatus, ['ok', 'ok', 'cap', 'cap']);
    assert.deepEqual(emailStatus, ['ok', 'cap', 'cap', 'cap']);
    const day = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Tokyo', year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());
    assert.equal(await redis.get(`kairos:cap:onsite:ccap:${day}`), '2');
    assert.ok((await redis.pttl(`kairos:cap:onsite:ccap:${day}`)) > 0);
    assert.equal((await metricValue(a.registry, 'kairos_dispatch_caps_hit_total')) + (await metricValue(b.registry, 'kairos_dispatch_caps_hit_total')), 5);
    // Another sender sharing the cap keys: it counts one onsite contact for a fresh customer; we then send only one more.
    await putProfile(redis, 'ccap2', makeProfile('ccap2'));
    const berlinDay = new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Berlin', year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());
    await redis.incr(`kairos:cap:onsite:ccap2:${berlinDay}`);
    const r1 = await a.dispatcher.dispatch(makeTrigger('o-1', { customerId: 'ccap2', channels: ['onsite'] }));
    const r2 = await a.dispatcher.dispatch(makeTrigger('o-2', { customerId: 'ccap2', channels: ['onsite'] }));
    assert.deepEqual([r1.deliveries[0]?.reason, r2.deliveries[0]?.reason], ['ok', 'cap']);
  });

  test('a failed delivery gives its cap slot back', async () => {
    await putProfile(redis, 'cfail', makeProfile('cfail', { email: 'bounce2@example.com' }));
    const { dispatcher } = testDispatcher(redis, { email }, { caps: { email: 1 } });
    assert.equal((await dispatcher.dispatch(makeTrigger('cf1', { customerId: 'cfail' }))).deliveries[0]?.status, 'FAILED');
    await putProfile(redis, 'cfail', makeProfile('cfail', { email: 'ok@example.com', updatedAt: 2 }));
    assert.equal((await dispatcher.dispatch(makeTrigger('cf2', { customerId: 'cfail' }))).deliveries[0]?.status, 'SENT');
  });

  test('provider send rates: a token bucket in Redis shared by instances makes sends wait, none is dropped', async () => {
    const n = 30;
    for (let i = 0; i < n; i++) await putProfile(redis, `crate${i}`, makeProfile(`crate${i}`));
    const onsite = new OnsiteRedisSender(redis, 'https://shop.test');
    const a = testDispatcher(redis, { onsite }, { rates: { onsite: 20 } });
    const b = testDispatcher(redis, { onsite }, { rates: { onsite: 20 } });
    const outs = await Promise.all(Array.from({ length: n }, (_, i) => (i % 2 ? a : b).dispatcher.dispatch(makeTrigger(`rate${i}`, { customerId: `crate${i}`, channels: ['onsite'] }))));
    assert.ok(outs.every((o) => o.deliveries[0]?.status === 'SENT'));
    const waits = (await metricValue(a.registry, 'kairos_dispatch_rate_waits_total')) + (await metricValue(b.registry, 'kairos_dispatch_rate_waits_total'));
    assert.ok(waits > 0, 'with a burst of 20, ten of the thirty sends had to wait for tokens');
  });
});
