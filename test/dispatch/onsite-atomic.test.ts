/**
 * Onsite deliveries in one Redis script (`admitAndWrite`: admit, the placement write and the stored SENT result
 * together), the requests of one event-loop turn sent as one command (turnBatcher, mgetInTurn), and the
 * per-minute reading of the customer's local day the caps use.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { Delivery } from '../../schemas/contract.js';
import { mgetInTurn, turnBatcher } from '../../src/dispatch/redis-client.js';
import { admitAndWrite, claimKey, deliveryKey, localDay, type AdmitRequest } from '../../src/dispatch/redis-guards.js';
import { wallClock } from '../../src/util/local-time.js';
import { startRedis, type RedisServer } from '../support/redis.js';

let server: RedisServer;
let redis: Redis;
before(async () => {
  server = await startRedis();
  redis = new Redis(server.url);
});
after(async () => {
  redis.disconnect();
  await server.stop();
});

const NOW = Date.UTC(2026, 5, 1, 10, 0, 0);
const req = (deliveryId: string, over: Partial<AdmitRequest> = {}): AdmitRequest => ({
  deliveryId,
  owner: `me:${deliveryId}`,
  channel: 'onsite',
  customerId: `c-${deliveryId}`,
  timezone: 'Europe/Berlin',
  now: NOW,
  capLimit: 2,
  ratePerSecond: undefined,
  cost: 1,
  leaseMs: 60_000,
  ...over,
});
const sent = (deliveryId: string): Delivery => ({
  deliveryId,
  triggerId: `t-${deliveryId}`,
  type: 'BASKET_ABANDONED',
  customerId: `c-${deliveryId}`,
  campaignId: 'camp',
  variant: 'A',
  channel: 'onsite',
  triggeredAt: NOW,
  status: 'SENT',
  reason: 'ok',
  attempts: 1,
  decidedAt: NOW,
});
const write = (id: string, value = '{"p":1}') => ({ key: `kairos:placements:c-${id}`, field: `t-${id}`, value, ttlMs: 60_000 });

test('written once: the cap counted once, the result stored, a second run (a lost reply, another instance) answers done with the first result', async () => {
  assert.deepEqual(await admitAndWrite(redis, req('d1'), write('d1'), sent('d1'), 3_600_000), { kind: 'sent' });
  const again = await admitAndWrite(redis, req('d1', { owner: 'other:1' }), write('d1', '{"p":2}'), { ...sent('d1'), decidedAt: NOW + 5 }, 3_600_000);
  assert.deepEqual(again, { kind: 'done', delivery: sent('d1') });
  assert.equal(await redis.hget('kairos:placements:c-d1', 't-d1'), '{"p":1}', 'the placement written the first time only');
  assert.equal(await redis.get('kairos:cap:onsite:c-d1:2026-06-01'), '1');
  assert.ok((await redis.pttl('kairos:placements:c-d1')) > 50_000);
  assert.ok((await redis.pttl(deliveryKey('d1'))) > 3_000_000);
  assert.equal(await redis.exists(claimKey('d1')), 0, 'no lease left behind');
});

test('refused without a write: cap reached, another run holding the lease, rate bucket empty', async () => {
  await redis.set('kairos:cap:onsite:c-d2:2026-06-01', '2');
  const cap = await admitAndWrite(redis, req('d2'), write('d2'), sent('d2'), 3_600_000);
  assert.deepEqual(cap, { kind: 'cap', used: 2, capKey: 'kairos:cap:onsite:c-d2:2026-06-01' });
  await redis.set(claimKey('d3'), 'someone-else', 'PX', 5000);
  const busy = await admitAndWrite(redis, req('d3'), write('d3'), sent('d3'), 3_600_000);
  assert.equal(busy.kind, 'busy');
  // One token per second, burst 1: the first goes, the second waits.
  assert.equal((await admitAndWrite(redis, req('d4', { ratePerSecond: 1 }), write('d4'), sent('d4'), 3_600_000)).kind, 'sent');
  const rate = await admitAndWrite(redis, req('d5', { ratePerSecond: 1 }), write('d5'), sent('d5'), 3_600_000);
  assert.equal(rate.kind, 'rate');
  for (const id of ['d2', 'd3', 'd5']) {
    assert.equal(await redis.exists(`kairos:placements:c-${id}`), 0, `${id}: nothing written`);
    assert.equal(await redis.exists(deliveryKey(id)), 0, `${id}: no result stored`);
  }
  assert.equal(await redis.get('kairos:cap:onsite:c-d5:2026-06-01'), null, 'a refused delivery counts no contact');
});

test('the lease of our own earlier run (an admit before) is taken over: written, lease released, cap not counted again', async () => {
  await redis.set(claimKey('d6'), 'me:d6', 'PX', 60_000);
  await redis.set('kairos:cap:onsite:c-d6:2026-06-01', '1');
  assert.deepEqual(await admitAndWrite(redis, req('d6'), write('d6'), sent('d6'), 3_600_000), { kind: 'sent' });
  assert.equal(await redis.get('kairos:cap:onsite:c-d6:2026-06-01'), '1');
  assert.equal(await redis.exists(claimKey('d6')), 0);
});

test('the local day read once per zone and minute answers as a reading per call, also across DST changes and odd offsets', () => {
  const direct = (at: number, tz: string): { day: string; msToEnd: number } => {
    const w = wallClock(at, tz);
    assert.ok(w);
    const elapsed = (w.hour * 3600 + w.minute * 60 + w.second) * 1000 + (at % 1000);
    return { day: `${String(w.year).padStart(4, '0')}-${String(w.month).padStart(2, '0')}-${String(w.day).padStart(2, '0')}`, msToEnd: 24 * 3600_000 - elapsed + 3600_000 };
  };
  const zones = ['Europe/Berlin', 'America/New_York', 'Asia/Kathmandu', 'Australia/Lord_Howe', 'Pacific/Chatham', 'UTC'];
  // Around Berlin's and New York's spring-forward, Lord Howe's half-hour change, and midnights.
  const centres = [Date.UTC(2026, 2, 29, 1, 0), Date.UTC(2026, 2, 8, 7, 0), Date.UTC(2026, 3, 4, 15, 0), Date.UTC(2026, 9, 3, 15, 30), Date.UTC(2026, 5, 1, 22, 0)];
  for (const tz of zones) {
    for (const c of centres) {
      for (let at = c - 3 * 60_000 - 1; at <= c + 3 * 60_000 + 1; at += 7_777) assert.deepEqual(localDay(at, tz), direct(at, tz), `${tz} ${new Date(at).toISOString()}`);
    }
  }
});

test('requests of one turn go as one command, each caller gets its own replies; a failed command fails each caller of its batch', async () => {
  await redis.mset('m:a', '1', 'm:b', '2', 'm:c', '3');
  assert.deepEqual(await Promise.all([mgetInTurn(redis, ['m:a', 'm:x']), mgetInTurn(redis, []), mgetInTurn(redis, ['m:c', 'm:b', 'm:a'])]), [['1', null], [], ['3', '2', '1']]);
  const sends: number[][] = [];
  let fail = false;
  const doubled = turnBatcher<number, number>((_redis, xs) => {
    sends.push([...xs]);
    return fail ? Promise.reject(new Error('down')) : Promise.resolve(xs.map((x) => 2 * x));
  });
  assert.deepEqual(await Promise.all([doubled(redis, 1), doubled(redis, 2), doubled(redis, 3)]), [2, 4, 6]);
  assert.equal(await doubled(redis, 5), 10, 'a later turn: a batch of its own');
  assert.deepEqual(sends, [[1, 2, 3], [5]]);
  // At most maxBatch per command: a larger turn goes as several commands.
  const pairs = turnBatcher<number, number>((_redis, xs) => {
    sends.push([...xs]);
    return Promise.resolve(xs.map((x) => x + 1));
  }, 2);
  assert.deepEqual(await Promise.all([1, 2, 3, 4, 5].map((x) => pairs(redis, x))), [2, 3, 4, 5, 6]);
  assert.deepEqual(sends.slice(2), [[1, 2], [3, 4], [5]]);
  fail = true;
  const failed = await Promise.allSettled([doubled(redis, 7), doubled(redis, 8)]);
  assert.deepEqual(failed.map((r) => r.status), ['rejected', 'rejected']);
});

test('the deliveries of one turn in one admitAndWrite script call, each with its own answer', async () => {
  await redis.set('kairos:cap:onsite:c-b2:2026-06-01', '2');
  const ids = ['b1', 'b2', 'b3'];
  const replies = await Promise.all(ids.map((id) => admitAndWrite(redis, req(id), write(id), sent(id), 3_600_000)));
  assert.deepEqual(
    replies.map((r) => r.kind),
    ['sent', 'cap', 'sent'],
  );
  assert.equal(await redis.hget('kairos:placements:c-b3', 't-b3'), '{"p":1}');
  assert.equal(await redis.exists('kairos:placements:c-b2'), 0);
});
