/**
 * The dispatcher on its production Redis client (createRedis, here with auto-pipelining; scripts by SHA) against a real
 * redis-server: a batch of concurrent triggers is delivered once each, reads go as one MGET per turn, the
 * scripts run by EVALSHA (loaded once when Redis does not know them, also after a restart forgot them), and
 * a redelivered batch is answered from Redis.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { ChannelSender, SendContext, SendOutcome } from '../../src/dispatch/channel.js';
import { OnsiteRedisSender } from '../../src/dispatch/onsite-redis.js';
import { createRedis, TURN_BATCH_MAX } from '../../src/dispatch/redis-client.js';
import { putProfile } from '../../src/dispatch/state-view.js';
import { tempDir } from '../helpers.js';
import { makeProfile, makeTrigger, testDispatcher } from '../support/dispatch.js';
import { startRedis, type RedisServer } from '../support/redis.js';

/** An e-mail stand-in that counts what it was asked to send (the real SMTP path is tested in channels.test.ts). */
class CountingSender implements ChannelSender {
  readonly channel = 'email' as const;
  readonly sent = new Map<string, number>();
  unreachable(): string | undefined {
    return undefined;
  }
  cost(): number {
    return 1;
  }
  send(ctx: SendContext): Promise<SendOutcome> {
    this.sent.set(ctx.deliveryId, (this.sent.get(ctx.deliveryId) ?? 0) + 1);
    return Promise.resolve({ status: 'sent', providerMessageId: ctx.deliveryId });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function commandStats(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) out.set(m[1] ?? '', Number(m[2]));
  return out;
}

const tmp = tempDir('kairos-dispatch-batch-');
let server: RedisServer;
let redis: Redis;

before(async () => {
  server = await startRedis({ aofDir: tmp.dir });
  redis = createRedis(server.url, { autoPipelining: true });
  await redis.ping().catch(async () => {
    await new Promise((r) => setTimeout(r, 300));
    await redis.ping();
  });
});

after(async () => {
  redis.disconnect();
  await server.stop();
  tmp.remove();
});

test('a batch of concurrent triggers on the auto-pipelined client: each delivered once, scripts by SHA, caps and redelivery as before', async () => {
  const n = 200;
  for (let i = 0; i < n; i++) await putProfile(redis, `cq${i}`, makeProfile(`cq${i}`, i % 10 === 0 ? { consents: { push: true, email: false, onsite: true } } : {}));
  // Customer cq1 gets a second trigger: its cap of 1 e-mail a day lets only one through.
  const triggers = [...Array.from({ length: n }, (_, i) => makeTrigger(`q${i}`, { customerId: `cq${i}`, channels: ['email', 'onsite'] })), makeTrigger('q1-again', { customerId: 'cq1', channels: ['email'] })];
  const email = new CountingSender();
  const { dispatcher } = testDispatcher(redis, { email, onsite: new OnsiteRedisSender(redis, 'https://shop.test') }, { caps: { email: 1 } });
  await redis.config('RESETSTAT');

  const first = await Promise.all(triggers.map((t) => dispatcher.dispatch(t)));
  const emails = first.map((o) => o.deliveries[0]);
  assert.equal(emails.filter((d) => d?.status === 'SENT').length, n - n / 10, 'every consenting customer got one e-mail');
  assert.equal(emails.filter((d) => d?.reason === 'no-consent').length, n / 10);
  assert.equal(first[n]?.deliveries[0]?.reason, 'cap', 'the second e-mail of the day is capped');
  assert.ok([...email.sent.values()].every((c) => c === 1));
  assert.equal(first.slice(0, n).filter((o) => o.deliveries[1]?.status === 'SENT').length, n, 'every placement written');

  const stats = await commandStats(redis);
  // (commandstats also counts the GETs inside the scripts, so the MGETs are what shows the reads.)
  // The triggers that start in the same turn share MGETs of up to TURN_BATCH_MAX triggers (each gets its own keys' values back).
  const mgets = stats.get('mget') ?? 0;
  const perTurn = Math.ceil(triggers.length / TURN_BATCH_MAX);
  assert.ok(mgets >= perTurn && mgets <= perTurn + 2, `profile and delivery keys are read with one MGET per ${TURN_BATCH_MAX} triggers of a turn (${mgets} for ${triggers.length} triggers)`);
  // E-mail: admit and finish per delivery; onsite: one admitAndWrite script for the deliveries of a turn.
  const evalsha = stats.get('evalsha') ?? 0;
  assert.ok(evalsha >= 2 * (n - n / 10), `scripts run by SHA (evalsha ${evalsha})`);
  const loads = (stats.get('eval') ?? 0) + (stats.get('script|load') ?? 0) + (stats.get('script') ?? 0);
  assert.ok(loads <= 3, `each script sent once (EVAL or SCRIPT LOAD: ${loads}), not per call`);

  // Redelivery of the whole batch after a restart (the script cache is gone, the data is not): answered from Redis.
  await server.kill();
  server = await startRedis({ aofDir: tmp.dir, port: server.port });
  const again = await Promise.all(triggers.map((t) => dispatcher.dispatch(t)));
  assert.deepEqual(
    again.map((o) => o.deliveries.map((d) => [d.deliveryId, d.status, d.reason])),
    first.map((o) => o.deliveries.map((d) => [d.deliveryId, d.status, d.reason])),
  );
  assert.ok([...email.sent.values()].every((c) => c === 1), 'nothing sent twice');
});
