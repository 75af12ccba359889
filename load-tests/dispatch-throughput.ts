/**
 * Dispatch throughput: triggers through the Dispatcher (Redis guards, live-state check, templates, providers)
 * against local endpoints — a redis-server on a free port, the real firebase-admin client against a local FCM v1
 * endpoint, a local SMTP server — without Kafka. Prints triggers/s and provider latency.
 *
 *   npx tsx load-tests/dispatch-throughput.ts [--triggers 3000] [--concurrency 64] [--channels push,email,onsite]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import type { Channel } from '../schemas/contract.js';
import type { ChannelSender } from '../src/dispatch/channel.js';
import { SmtpEmailSender } from '../src/dispatch/email-smtp.js';
import { OnsiteRedisSender } from '../src/dispatch/onsite-redis.js';
import { FcmPushSender } from '../src/dispatch/push-fcm.js';
import { createRedis } from '../src/dispatch/redis-client.js';
import { putProfile } from '../src/dispatch/state-view.js';
import { tempDir } from '../test/helpers.js';
import { makeProfile, makeTrigger, testDispatcher } from '../test/support/dispatch.js';
import { localFcmCredential, startLocalFcm } from '../test/support/fcm-server.js';
import { startRedis } from '../test/support/redis.js';
import { startLocalSmtp } from '../test/support/smtp-server.js';

const { values } = parseArgs({
  options: { triggers: { type: 'string', default: '3000' }, concurrency: { type: 'string', default: '64' }, channels: { type: 'string', default: 'push,email,onsite' } },
});
const n = Number(values.triggers);
const concurrency = Number(values.concurrency);
const channels = values.channels.split(',') as Channel[];

const tmp = tempDir('kairos-dispatch-bench-');
const redisServer = await startRedis();
// The dispatcher's own client settings (kairos dispatch: createRedis, auto-pipelined).
const redis = createRedis(redisServer.url);
await redis.ping().catch(async () => {
  await new Promise((r) => setTimeout(r, 200));
  await redis.ping();
});
const fcm = await startLocalFcm(tmp.dir);
const smtp = await startLocalSmtp();
const push = new FcmPushSender({ projectId: 'bench', credential: localFcmCredential, connectTo: fcm.address, ca: readFileSync(fcm.caFile), shopUrl: 'https://shop.test' });
const email = new SmtpEmailSender({ url: smtp.url, from: 'bench@shop.test', shopUrl: 'https://shop.test', maxConnections: 10 });
const senders: Partial<Record<Channel, ChannelSender>> = { push, email, onsite: new OnsiteRedisSender(redis, 'https://shop.test') };
const { dispatcher, registry } = testDispatcher(redis, senders, { caps: { push: 100, email: 100, onsite: 100 }, rates: {} });

for (let i = 0; i < n; i++) await putProfile(redis, `bench${i}`, makeProfile(`bench${i}`, { pushTokens: [{ token: `bench-${i}-a`, platform: 'android' }, { token: `bench-${i}-i`, platform: 'ios' }] }));
const triggers = Array.from({ length: n }, (_, i) => makeTrigger(`bench-${i}`, { customerId: `bench${i}`, channels }));

const t0 = performance.now();
let next = 0;
let sent = 0;
let other = 0;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const t = triggers[next++];
      if (!t) break;
      const out = await dispatcher.dispatch(t);
      for (const d of out.deliveries) {
        if (d.status === 'SENT') sent++;
        else other++;
      }
    }
  }),
);
const seconds = (performance.now() - t0) / 1000;
const hist = await registry.getSingleMetric('kairos_dispatch_send_duration_seconds')?.get();
const p = (channel: string): string => {
  const sum = hist?.values.find((v) => (v as { metricName?: string }).metricName === 'kairos_dispatch_send_duration_seconds_sum' && v.labels.channel === channel)?.value ?? 0;
  const count = hist?.values.find((v) => (v as { metricName?: string }).metricName === 'kairos_dispatch_send_duration_seconds_count' && v.labels.channel === channel)?.value ?? 0;
  return count ? `${((sum / count) * 1000).toFixed(1)} ms` : '-';
};
console.log(`dispatch: ${n} triggers × [${channels.join(', ')}], concurrency ${concurrency}`);
console.log(`  ${(n / seconds).toFixed(0)} triggers/s, ${((sent + other) / seconds).toFixed(0)} deliveries/s (${sent} sent, ${other} other) in ${seconds.toFixed(2)} s`);
console.log(`  mean provider call: push ${p('push')}, email ${p('email')}, onsite ${p('onsite')}; sendEach calls ${push.stats.batches} for ${push.stats.messages} push messages`);
console.log(`  received: SMTP ${smtp.received.length}, FCM ${fcm.requests.length}`);

await push.close();
await email.close();
await fcm.stop();
await smtp.stop();
redis.disconnect();
await redisServer.stop();
tmp.remove();
