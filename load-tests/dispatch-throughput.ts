/**
 * Dispatch throughput: triggers through the Dispatcher (Redis guards, live-state check, templates, providers)
 * against local endpoints — a redis-server on a free port, the real firebase-admin client against a local FCM v1
 * endpoint, a local SMTP server — without Kafka. Prints triggers/s and provider latency, and (with --baseline,
 * the default) the providers' own clients on the same endpoints, run just before: firebase-admin `sendEach` in
 * batches of 500 (one call at a time) with as many messages, and pooled nodemailer (same 10 connections, 64
 * mails in flight) with the same mails (rendered beforehand) — and the dispatcher's ratio to each. The local FCM and SMTP endpoints run
 * in a child process of their own, so they do not share the dispatcher's event loop.
 *
 *   npx tsx load-tests/dispatch-throughput.ts [--triggers 3000] [--concurrency 256 = KAIROS_DISPATCH_CONCURRENCY's default] [--channels push,email,onsite] [--no-baseline]
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import https from 'node:https';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { deleteApp, initializeApp } from 'firebase-admin/app';
import { getMessaging, type Message } from 'firebase-admin/messaging';
import nodemailer from 'nodemailer';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import type { Channel } from '../schemas/contract.js';
import type { ChannelSender } from '../src/dispatch/channel.js';
import { DISPATCH_VARS } from '../src/dispatch/config.js';
import { SmtpEmailSender, smtpOptions } from '../src/dispatch/email-smtp.js';
import { render } from '../src/dispatch/templates.js';
import { OnsiteRedisSender } from '../src/dispatch/onsite-redis.js';
import { FCM_HOST, FcmPushSender } from '../src/dispatch/push-fcm.js';
import { createRedis } from '../src/dispatch/redis-client.js';
import { putProfile } from '../src/dispatch/state-view.js';
import { tempDir } from '../test/helpers.js';
import { makeProfile, makeTrigger, testDispatcher } from '../test/support/dispatch.js';
import { localFcmCredential, startLocalFcm } from '../test/support/fcm-server.js';
import { startRedis } from '../test/support/redis.js';
import { startLocalSmtp } from '../test/support/smtp-server.js';

// Child mode: the local FCM and SMTP endpoints; prints their addresses, answers "counts" on stdin, stops at its end.
const endpointsDir = process.env.KAIROS_BENCH_ENDPOINTS_DIR;
if (endpointsDir !== undefined) {
  const fcmChild = await startLocalFcm(endpointsDir);
  const smtpChild = await startLocalSmtp();
  process.stdout.write(`${JSON.stringify({ fcm: fcmChild.address, caFile: fcmChild.caFile, smtp: smtpChild.url })}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'counts') process.stdout.write(`${JSON.stringify({ fcm: fcmChild.requests.length, smtp: smtpChild.received.length })}\n`);
  }
  await fcmChild.stop();
  await smtpChild.stop();
  process.exit(0);
}

const { values } = parseArgs({
  options: {
    triggers: { type: 'string', default: '3000' },
    // The production default (KAIROS_DISPATCH_CONCURRENCY).
    concurrency: { type: 'string', default: String(DISPATCH_VARS.concurrency.default) },
    channels: { type: 'string', default: 'push,email,onsite' },
    baseline: { type: 'boolean', default: true },
  },
  allowNegative: true,
});
const n = Number(values.triggers);
const concurrency = Number(values.concurrency);
const channels = values.channels.split(',') as Channel[];

const tmp = tempDir('kairos-dispatch-bench-');
const redisServer = await startRedis();
// The dispatcher's own client settings (kairos dispatch: createRedis).
const redis = createRedis(redisServer.url);
await redis.ping().catch(async () => {
  await new Promise((r) => setTimeout(r, 200));
  await redis.ping();
});
const endpoints = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
  env: { ...process.env, KAIROS_BENCH_ENDPOINTS_DIR: tmp.dir },
  stdio: ['pipe', 'pipe', 'inherit'],
});
const replies = createInterface({ input: endpoints.stdout })[Symbol.asyncIterator]();
const reply = async (): Promise<string> => {
  const r = await replies.next();
  if (r.done === true) throw new Error('the endpoints process ended');
  return r.value;
};
const { fcm: fcmAddress, caFile, smtp: smtpUrl } = JSON.parse(await reply()) as { fcm: string; caFile: string; smtp: string };
const fcm = { address: fcmAddress, caFile };
const smtp = { url: smtpUrl };
const push = new FcmPushSender({ projectId: 'bench', credential: localFcmCredential, connectTo: fcm.address, ca: readFileSync(fcm.caFile), shopUrl: 'https://shop.test' });
const email = new SmtpEmailSender({ url: smtp.url, from: 'bench@shop.test', shopUrl: 'https://shop.test', maxConnections: 10 });
const senders: Partial<Record<Channel, ChannelSender>> = { push, email, onsite: new OnsiteRedisSender(redis, 'https://shop.test') };
const { dispatcher, registry } = testDispatcher(redis, senders, { caps: { push: 100, email: 100, onsite: 100 }, rates: {} });

for (let i = 0; i < n; i += 500) {
  await Promise.all(
    Array.from({ length: Math.min(500, n - i) }, (_, j) => putProfile(redis, `bench${i + j}`, makeProfile(`bench${i + j}`, { pushTokens: [{ token: `bench-${i + j}-a`, platform: 'android' }, { token: `bench-${i + j}-i`, platform: 'ios' }] }))),
  );
}
const triggers = Array.from({ length: n }, (_, i) => makeTrigger(`bench-${i}`, { customerId: `bench${i}`, channels }));

/** The providers' own clients on the same endpoints: messages (or mails) per second. */
const baseline: { push?: number; email?: number } = {};
if (values.baseline && channels.includes('push')) {
  const [host, port] = [fcm.address.slice(0, fcm.address.lastIndexOf(':')), Number(fcm.address.slice(fcm.address.lastIndexOf(':') + 1))];
  const ca = readFileSync(fcm.caFile);
  const agent = new (class extends https.Agent {
    override createConnection(options: https.RequestOptions): Duplex {
      const { host: _h, port: _p, hostname: _n, ...rest } = options;
      return tls.connect({ ...(rest as tls.ConnectionOptions), ca, host, port, servername: FCM_HOST });
    }
  })({ keepAlive: true, maxSockets: 64, ca });
  const app = initializeApp({ credential: localFcmCredential, projectId: 'bench', httpAgent: agent }, 'bench-baseline');
  const messaging = getMessaging(app);
  messaging.enableLegacyHttpTransport();
  const messages: Message[] = Array.from({ length: n * 2 }, (_, i) => ({ token: `base-${i}`, data: { i: String(i) }, android: { ttl: 3600_000, priority: 'high' as const, notification: { title: 'Your basket', body: 'Still there' } } }));
  const b0 = performance.now();
  for (let i = 0; i < messages.length; i += 500) await messaging.sendEach(messages.slice(i, i + 500));
  baseline.push = messages.length / ((performance.now() - b0) / 1000);
  await deleteApp(app);
  agent.destroy();
}
if (values.baseline && channels.includes('email')) {
  const transport = nodemailer.createTransport(smtpOptions(smtp.url, 10));
  // The same mails the dispatcher sends (its templates, rendered before the clock starts; the same headers), so
  // the ratio is the dispatcher's own work per mail (guards, Redis, rendering), not a difference of mail size.
  const mails = triggers.map((t, k) => {
    const profile = makeProfile(`bench${k}`);
    const r = render({ trigger: t, live: undefined, locale: profile.locale, shopUrl: 'https://shop.test' });
    const deliveryId = `base-${k}`;
    return {
      from: 'bench@shop.test',
      to: profile.email as string,
      subject: r.subject,
      text: r.text,
      html: r.html,
      messageId: `<${deliveryId}@kairos.dispatch>`,
      headers: { 'X-Kairos-Trigger-Id': t.triggerId, 'X-Kairos-Delivery-Id': deliveryId, 'Content-Language': r.language },
    };
  });
  const b0 = performance.now();
  let i = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (i < n) await transport.sendMail(mails[i++] as (typeof mails)[number]);
    }),
  );
  baseline.email = n / ((performance.now() - b0) / 1000);
  transport.close();
}

/** CPU ms of a process so far (utime + stime from /proc). */
const cpuMs = (pid: number): number => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
};
// KAIROS_BENCH_PROFILE=<dir>: a V8 CPU profile of the timed run alone (not the set-up) is written there.
const profileDir = process.env.KAIROS_BENCH_PROFILE;
const session = profileDir === undefined ? undefined : new Session();
if (session) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
}
const redisCpu0 = cpuMs(redisServer.pid);
const selfCpu0 = process.cpuUsage();
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
const redisCpu = (cpuMs(redisServer.pid) - redisCpu0) / 1000;
const selfCpuUsage = process.cpuUsage(selfCpu0);
const selfCpu = (selfCpuUsage.user + selfCpuUsage.system) / 1e6;
if (session && profileDir !== undefined) {
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(join(profileDir, `dispatch-${channels.join('-')}-${process.pid}.cpuprofile`), JSON.stringify(profile));
  session.disconnect();
}
const hist = await registry.getSingleMetric('kairos_dispatch_send_duration_seconds')?.get();
const p = (channel: string): string => {
  const sum = hist?.values.find((v) => (v as { metricName?: string }).metricName === 'kairos_dispatch_send_duration_seconds_sum' && v.labels.channel === channel)?.value ?? 0;
  const count = hist?.values.find((v) => (v as { metricName?: string }).metricName === 'kairos_dispatch_send_duration_seconds_count' && v.labels.channel === channel)?.value ?? 0;
  return count ? `${((sum / count) * 1000).toFixed(1)} ms` : '-';
};
console.log(`dispatch: ${n} triggers × [${channels.join(', ')}], concurrency ${concurrency}`);
console.log(`  ${(n / seconds).toFixed(0)} triggers/s, ${((sent + other) / seconds).toFixed(0)} deliveries/s (${sent} sent, ${other} other) in ${seconds.toFixed(2)} s`);
console.log(`  CPU during the run: dispatcher process ${((100 * selfCpu) / seconds).toFixed(0)} % of a core, redis-server ${((100 * redisCpu) / seconds).toFixed(0)} %`);
console.log(`  mean provider call: push ${p('push')}, email ${p('email')}, onsite ${p('onsite')}; sendEach calls ${push.stats.batches} for ${push.stats.messages} push messages`);
endpoints.stdin.write('counts\n');
const received = JSON.parse(await reply()) as { fcm: number; smtp: number };
console.log(`  received (baseline included): SMTP ${received.smtp}, FCM ${received.fcm}`);
if (channels.length === 1 && channels[0] === 'push' && baseline.push !== undefined) {
  const rate = push.stats.messages / seconds;
  console.log(`  push: ${rate.toFixed(0)} FCM messages/s vs firebase-admin sendEach (batches of 500) ${baseline.push.toFixed(0)}/s: ratio ${(rate / baseline.push).toFixed(2)}`);
}
if (channels.length === 1 && channels[0] === 'email' && baseline.email !== undefined) {
  const rate = sent / seconds;
  console.log(`  email: ${rate.toFixed(0)} mails/s vs pooled nodemailer ${baseline.email.toFixed(0)}/s: ratio ${(rate / baseline.email).toFixed(2)}`);
}

await push.close();
await email.close();
endpoints.stdin.end();
await new Promise((r) => endpoints.once('exit', r));
redis.disconnect();
await redisServer.stop();
tmp.remove();
