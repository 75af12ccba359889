/**
 * Quiet hours in local wall-clock time (issue 14, part 1): the release instant is the first instant at which
 * the customer's wall clock reads the end time on the right local day, on both clock-change nights and in
 * zones with 30- and 45-minute offsets. Every expected instant is written out (worked out from the zones'
 * rules by hand), never computed by the code under test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CustomerProfile, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { TopologyBuilder } from '../../src/engine/api/index.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { addGuards, GUARDS, quietUntil } from '../../topologies/common/guards.js';
import { firstInstantAtLocal, isTimeZone, localMs, wallClock } from '../../src/util/local-time.js';
import { AUDIT_TOPIC, TRIGGERS_TOPIC } from '../../topologies/common/campaign.js';

const NIGHT = { startMin: 22 * 60, endMin: 8 * 60 };
const hm = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString().replace('.000Z', 'Z'));
const until = (at: string, tz: string, quiet = NIGHT) => iso(quietUntil(Date.parse(at), tz, quiet));

/** [trigger time (UTC), zone, local time then, expected release (UTC) = 08:00 local]. */
const NIGHTS: readonly (readonly [string, string, string, string])[] = [
  // Los Angeles: 2026-03-08 02:00 PST (−8) → 03:00 PDT (−7); 2026-11-01 02:00 PDT → 01:00 PST.
  ['2026-03-08T06:30:00Z', 'America/Los_Angeles', '03-07 22:30 PST', '2026-03-08T15:00:00Z'],
  ['2026-03-08T09:59:00Z', 'America/Los_Angeles', '03-08 01:59 PST', '2026-03-08T15:00:00Z'],
  ['2026-03-08T10:00:00Z', 'America/Los_Angeles', '03-08 03:00 PDT', '2026-03-08T15:00:00Z'],
  ['2026-03-08T14:59:59Z', 'America/Los_Angeles', '03-08 07:59:59 PDT', '2026-03-08T15:00:00Z'],
  ['2026-11-01T06:00:00Z', 'America/Los_Angeles', '10-31 23:00 PDT', '2026-11-01T16:00:00Z'],
  ['2026-11-01T08:30:00Z', 'America/Los_Angeles', '11-01 01:30 PDT (first)', '2026-11-01T16:00:00Z'],
  ['2026-11-01T09:30:00Z', 'America/Los_Angeles', '11-01 01:30 PST (second)', '2026-11-01T16:00:00Z'],
  ['2026-11-18T07:00:00Z', 'America/Los_Angeles', '11-17 23:00 PST', '2026-11-18T16:00:00Z'],
  // Berlin: 2026-03-29 02:00 CET (+1) → 03:00 CEST (+2); 2026-10-25 03:00 CEST → 02:00 CET.
  ['2026-03-28T22:00:00Z', 'Europe/Berlin', '03-28 23:00 CET', '2026-03-29T06:00:00Z'],
  ['2026-03-29T01:00:00Z', 'Europe/Berlin', '03-29 03:00 CEST', '2026-03-29T06:00:00Z'],
  ['2026-10-24T21:00:00Z', 'Europe/Berlin', '10-24 23:00 CEST', '2026-10-25T07:00:00Z'],
  ['2026-10-25T00:30:00Z', 'Europe/Berlin', '10-25 02:30 CEST (first)', '2026-10-25T07:00:00Z'],
  ['2026-10-25T01:30:00Z', 'Europe/Berlin', '10-25 02:30 CET (second)', '2026-10-25T07:00:00Z'],
  // Sydney (southern hemisphere): 2026-10-04 02:00 AEST (+10) → 03:00 AEDT (+11); 2026-04-05 03:00 AEDT → 02:00 AEST.
  ['2026-10-03T13:00:00Z', 'Australia/Sydney', '10-03 23:00 AEST', '2026-10-03T21:00:00Z'],
  ['2026-10-03T17:00:00Z', 'Australia/Sydney', '10-04 04:00 AEDT', '2026-10-03T21:00:00Z'],
  ['2026-04-04T12:00:00Z', 'Australia/Sydney', '04-04 23:00 AEDT', '2026-04-04T22:00:00Z'],
  ['2026-04-04T16:30:00Z', 'Australia/Sydney', '04-05 02:30 AEST (second)', '2026-04-04T22:00:00Z'],
  // Adelaide (half-hour zone with DST): 2026-10-04 02:00 ACST (+9:30) → 03:00 ACDT (+10:30); 2026-04-05 03:00 ACDT → 02:00 ACST.
  ['2026-10-03T13:30:00Z', 'Australia/Adelaide', '10-03 23:00 ACST', '2026-10-03T21:30:00Z'],
  ['2026-04-04T12:30:00Z', 'Australia/Adelaide', '04-04 23:00 ACDT', '2026-04-04T22:30:00Z'],
  // Lord Howe (30-minute DST shift): 2026-10-04 02:00 (+10:30) → 02:30 (+11); 2026-04-05 02:00 (+11) → 01:30 (+10:30).
  ['2026-10-03T12:30:00Z', 'Australia/Lord_Howe', '10-03 23:00 +10:30', '2026-10-03T21:00:00Z'],
  ['2026-04-04T12:00:00Z', 'Australia/Lord_Howe', '04-04 23:00 +11', '2026-04-04T21:30:00Z'],
  // Kolkata +05:30 and Kathmandu +05:45, no DST: the same on the nights other zones change their clocks.
  ['2026-03-08T17:00:00Z', 'Asia/Kolkata', '03-08 22:30 IST', '2026-03-09T02:30:00Z'],
  ['2026-03-28T16:30:00Z', 'Asia/Kolkata', '03-28 22:00 IST', '2026-03-29T02:30:00Z'],
  ['2026-10-25T02:29:00Z', 'Asia/Kolkata', '10-25 07:59 IST', '2026-10-25T02:30:00Z'],
  ['2026-03-08T16:15:00Z', 'Asia/Kathmandu', '03-08 22:00 NPT', '2026-03-09T02:15:00Z'],
  ['2026-03-28T18:15:00Z', 'Asia/Kathmandu', '03-29 00:00 NPT', '2026-03-29T02:15:00Z'],
  ['2026-10-25T02:14:59Z', 'Asia/Kathmandu', '10-25 07:59:59 NPT', '2026-10-25T02:15:00Z'],
];

test('quietUntil 22:00–08:00: released when the local wall clock reads 08:00, on both clock-change nights, in ±30/45-minute zones', () => {
  for (const [at, tz, local, expected] of NIGHTS) assert.equal(until(at, tz), expected, `${tz} ${local} (${at})`);
});

test('quietUntil: the boundaries are local wall-clock minutes (in at 22:00 and up to 07:59:59, out at 08:00 and before 22:00)', () => {
  const outside: readonly (readonly [string, string, string])[] = [
    ['2026-03-08T15:00:00Z', 'America/Los_Angeles', '03-08 08:00 PDT (an additive end would still hold: 09:00 PDT)'],
    ['2026-03-29T06:00:00Z', 'Europe/Berlin', '03-29 08:00 CEST'],
    ['2026-10-25T07:00:00Z', 'Europe/Berlin', '10-25 08:00 CET'],
    ['2026-10-03T21:00:00Z', 'Australia/Sydney', '10-04 08:00 AEDT'],
    ['2026-04-04T22:00:00Z', 'Australia/Sydney', '04-05 08:00 AEST'],
    ['2026-03-08T16:29:00Z', 'Asia/Kolkata', '03-08 21:59 IST'],
    ['2026-03-08T16:14:59Z', 'Asia/Kathmandu', '03-08 21:59:59 NPT'],
    ['2026-03-09T02:15:00Z', 'Asia/Kathmandu', '03-09 08:00 NPT'],
    ['2026-10-03T21:00:00Z', 'Australia/Lord_Howe', '10-04 08:00 +11'],
  ];
  for (const [at, tz, local] of outside) assert.equal(until(at, tz), undefined, `${tz} ${local} (${at})`);
  assert.equal(until('2026-03-08T16:30:00Z', 'Asia/Kolkata'), '2026-03-09T02:30:00Z', '22:00 IST is inside');
  assert.equal(until('2026-03-08T16:15:00Z', 'Asia/Kathmandu'), '2026-03-09T02:15:00Z', '22:00 NPT is inside');
  assert.equal(until('2026-03-08T06:00:00Z', 'Mars/Olympus'), undefined, 'an unknown zone: not quiet (the guards fall back to defaultTimezone first)');
});

test('quietUntil: an end time the clocks skip ends the quiet hours at the first instant after the gap', () => {
  const toHalfPastTwo = { startMin: hm('22:00'), endMin: hm('02:30') };
  // Los Angeles 2026-03-08: 01:59:59 PST → 03:00 PDT at 10:00Z; 02:30 never happens.
  assert.equal(until('2026-03-08T06:00:00Z', 'America/Los_Angeles', toHalfPastTwo), '2026-03-08T10:00:00Z');
  assert.equal(until('2026-03-08T09:30:00Z', 'America/Los_Angeles', toHalfPastTwo), '2026-03-08T10:00:00Z');
  assert.equal(until('2026-03-08T10:00:00Z', 'America/Los_Angeles', toHalfPastTwo), undefined, '03:00 PDT is after 02:30');
  // Berlin 2026-03-29: 01:59:59 CET → 03:00 CEST at 01:00Z.
  assert.equal(until('2026-03-29T00:30:00Z', 'Europe/Berlin', toHalfPastTwo), '2026-03-29T01:00:00Z');
  // Sydney 2026-10-04: 01:59:59 AEST → 03:00 AEDT at 2026-10-03T16:00Z.
  assert.equal(until('2026-10-03T13:00:00Z', 'Australia/Sydney', toHalfPastTwo), '2026-10-03T16:00:00Z');
  // Lord Howe 2026-10-04: 01:59:59 (+10:30) → 02:30 (+11) at 2026-10-03T15:30Z; 02:15 never happens, 02:30 does.
  assert.equal(until('2026-10-03T12:30:00Z', 'Australia/Lord_Howe', { startMin: hm('22:00'), endMin: hm('02:15') }), '2026-10-03T15:30:00Z');
  assert.equal(until('2026-10-03T12:30:00Z', 'Australia/Lord_Howe', toHalfPastTwo), '2026-10-03T15:30:00Z');
  assert.equal(until('2026-10-03T12:30:00Z', 'Australia/Lord_Howe', { startMin: hm('22:00'), endMin: hm('02:45') }), '2026-10-03T15:45:00Z');
});

test('quietUntil: an end time the clocks read twice ends the quiet hours at its first occurrence (after the hold)', () => {
  // Berlin 2026-10-25: 02:00–02:59 CEST (00:00Z–00:59Z), then 02:00–02:59 CET again (01:00Z–01:59Z).
  const toHalfPastTwo = { startMin: hm('22:00'), endMin: hm('02:30') };
  assert.equal(until('2026-10-24T21:00:00Z', 'Europe/Berlin', toHalfPastTwo), '2026-10-25T00:30:00Z');
  assert.equal(until('2026-10-25T00:29:00Z', 'Europe/Berlin', toHalfPastTwo), '2026-10-25T00:30:00Z');
  assert.equal(until('2026-10-25T00:30:00Z', 'Europe/Berlin', toHalfPastTwo), undefined, 'released at the first 02:30: not quiet from then on');
  // The clock reads 02:10 again after the change: a trigger then is held to the 02:30 that follows it.
  assert.equal(until('2026-10-25T01:10:00Z', 'Europe/Berlin', toHalfPastTwo), '2026-10-25T01:30:00Z');
  // Los Angeles 2026-11-01: 01:00–01:59 PDT (08:00Z–08:59Z), then PST (09:00Z–09:59Z).
  assert.equal(until('2026-11-01T06:00:00Z', 'America/Los_Angeles', { startMin: hm('22:00'), endMin: hm('01:30') }), '2026-11-01T08:30:00Z');
  // Sydney 2026-04-05: 02:00–02:59 AEDT (2026-04-04T15:00Z–15:59Z), then AEST (16:00Z–16:59Z).
  assert.equal(until('2026-04-04T12:00:00Z', 'Australia/Sydney', toHalfPastTwo), '2026-04-04T15:30:00Z');
  // Lord Howe 2026-04-05: 01:30–01:59 (+11) at 14:30Z–14:59Z, then 01:30–01:59 (+10:30) at 15:00Z–15:29Z.
  assert.equal(until('2026-04-04T12:00:00Z', 'Australia/Lord_Howe', { startMin: hm('22:00'), endMin: hm('01:45') }), '2026-04-04T14:45:00Z');
});

test('quietUntil: same-day windows (start < end) and overnight ones (start > end)', () => {
  const afternoon = { startMin: hm('13:00'), endMin: hm('15:00') };
  assert.equal(until('2026-03-09T07:29:00Z', 'Asia/Kolkata', afternoon), undefined, '12:59 IST');
  assert.equal(until('2026-03-09T07:30:00Z', 'Asia/Kolkata', afternoon), '2026-03-09T09:30:00Z', '13:00 IST');
  assert.equal(until('2026-03-09T09:29:59Z', 'Asia/Kolkata', afternoon), '2026-03-09T09:30:00Z', '14:59:59 IST');
  assert.equal(until('2026-03-09T09:30:00Z', 'Asia/Kolkata', afternoon), undefined, '15:00 IST');
  assert.equal(until('2026-03-09T16:30:00Z', 'Asia/Kolkata', afternoon), undefined, '22:00 IST: a same-day window does not wrap');
  assert.equal(until('2026-03-09T07:30:00Z', 'Asia/Kathmandu', afternoon), '2026-03-09T09:15:00Z', '13:15 NPT');
  // A same-day window spanning the spring-forward gap: Los Angeles 2026-03-08, 01:00–05:00 local.
  const early = { startMin: hm('01:00'), endMin: hm('05:00') };
  assert.equal(until('2026-03-08T09:30:00Z', 'America/Los_Angeles', early), '2026-03-08T12:00:00Z', '01:30 PST → 05:00 PDT');
  assert.equal(until('2026-03-08T08:59:00Z', 'America/Los_Angeles', early), undefined, '00:59 PST');
  // The start in the gap (02:15 is skipped): quiet from the jump to 03:00 PDT on.
  const fromGap = { startMin: hm('02:15'), endMin: hm('07:00') };
  assert.equal(until('2026-03-08T09:59:59Z', 'America/Los_Angeles', fromGap), undefined, '01:59:59 PST');
  assert.equal(until('2026-03-08T10:00:00Z', 'America/Los_Angeles', fromGap), '2026-03-08T14:00:00Z', '03:00 PDT → 07:00 PDT');
  // An overnight window ending at midnight, entered in the evening: the end is the next day's 00:00.
  assert.equal(until('2026-03-08T17:00:00Z', 'Asia/Kolkata', { startMin: hm('22:00'), endMin: 0 }), '2026-03-08T18:30:00Z');
  // Across a month end: Berlin 2026-03-31 23:00 CEST → 2026-04-01 08:00 CEST.
  assert.equal(until('2026-03-31T21:00:00Z', 'Europe/Berlin'), '2026-04-01T06:00:00Z');
});

test('local time: wall clock readings, first instants at a local time, unknown zones', () => {
  assert.deepEqual(wallClock(Date.parse('2026-03-08T15:00:00Z'), 'America/Los_Angeles'), { year: 2026, month: 3, day: 8, hour: 8, minute: 0, second: 0 });
  assert.deepEqual(wallClock(Date.parse('2026-12-31T18:44:59Z'), 'Asia/Kathmandu'), { year: 2027, month: 1, day: 1, hour: 0, minute: 29, second: 59 });
  assert.deepEqual(wallClock(Date.parse('2026-03-08T18:30:00Z'), 'Asia/Kolkata'), { year: 2026, month: 3, day: 9, hour: 0, minute: 0, second: 0 });
  assert.equal(iso(firstInstantAtLocal(localMs(2026, 3, 8, hm('02:30')), 'America/Los_Angeles')), '2026-03-08T10:00:00Z', 'in the gap');
  assert.equal(iso(firstInstantAtLocal(localMs(2026, 11, 1, hm('01:30')), 'America/Los_Angeles')), '2026-11-01T08:30:00Z', 'repeated: the first');
  assert.equal(
    iso(firstInstantAtLocal(localMs(2026, 11, 1, hm('01:30')), 'America/Los_Angeles', Date.parse('2026-11-01T08:30:00Z'))),
    '2026-11-01T09:30:00Z',
    'repeated, after the first: the second',
  );
  assert.equal(iso(firstInstantAtLocal(localMs(2026, 10, 4, hm('02:10')), 'Australia/Lord_Howe')), '2026-10-03T15:30:00Z');
  assert.equal(firstInstantAtLocal(localMs(2026, 3, 8), 'Mars/Olympus'), undefined);
  assert.equal(isTimeZone('Asia/Kathmandu'), true);
  assert.equal(isTimeZone('Mars/Olympus'), false);
  assert.equal(isTimeZone('Mars/Olympus'), false, 'cached as unknown');
  assert.equal(wallClock(0, 'Mars/Olympus'), undefined);
});

// ---------------------------------------------------------------------------------------------------------
// The held and re-checked path through the guards processor (TopologyTestDriver, as in guards.test.ts).

const HOUR = 3_600_000;
let seq = 0;

function profile(customerId: string, timezone: string): CustomerProfile {
  return { customerId, updatedAt: 0, timezone, consents: { push: true, email: true, onsite: true }, pushTokens: [], segments: [], attributes: {} };
}

function candidate(customerId: string, at: number): Trigger {
  const n = ++seq;
  return {
    triggerId: `q${n.toString(16).padStart(31, '0')}`,
    type: 'BASKET_ABANDONED',
    customerId,
    occurredAt: at,
    campaignId: 'c1',
    variant: 'default',
    channels: ['push', 'email'],
    causedBy: { eventId: `q${n}`, topic: 'shop.basket.v1', partition: 0, offset: String(n) },
    explanation: { rule: 'test', params: {}, observed: {} },
    payload: {},
    expiresAt: at + 48 * HOUR,
  };
}

/** Guards with the default quiet hours (22:00–08:00) and no cap, fed by a test source of candidate triggers. */
async function driver(): Promise<TopologyTestDriver> {
  const cfg = resolveCampaigns({ guards: { cap: null } });
  const b = new TopologyBuilder('q');
  addGuards(b, { ...(cfg.guards as NonNullable<typeof cfg.guards>), campaigns: new Map() });
  b.addSource('candidates', ['test.candidates']).connect('candidates', GUARDS);
  return TopologyTestDriver.create(b.build());
}

/** What came out since the last call: sends (send time, triggerId) and audits (decision time, decision, detail). */
function outputs(d: TopologyTestDriver): { sent: [string | undefined, string][]; audits: [string | undefined, string, string | undefined][] } {
  return {
    sent: d.readOutput<Trigger>(TRIGGERS_TOPIC).map((o) => [iso(o.timestamp), o.value.triggerId]),
    audits: d.readOutput<TriggerAudit>(AUDIT_TOPIC).map((o) => [iso(o.value.occurredAt), o.value.decision, o.value.detail]),
  };
}

/** Two triggers held on a spring-forward night, one before and one after the change: one release at 08:00 local. */
async function springForward(tz: string, before: string, after: string, release: string, additiveRelease: string, justBefore: string): Promise<void> {
  const d = await driver();
  try {
    await d.pipe('crm.customers.v1', 'cust', profile('cust', tz), { timestamp: 0 });
    const t1 = candidate('cust', Date.parse(before));
    const t2 = candidate('cust', Date.parse(after));
    await d.pipe('test.candidates', 'cust', t1, { timestamp: t1.occurredAt });
    await d.pipe('test.candidates', 'cust', t2, { timestamp: t2.occurredAt });
    assert.deepEqual(outputs(d), {
      sent: [],
      audits: [
        [before, 'HELD', `quiet hours in ${tz} until ${release.replace('Z', '.000Z')}`],
        [after, 'HELD', `quiet hours in ${tz} until ${release.replace('Z', '.000Z')}`],
      ],
    });
    assert.deepEqual(
      d.timers('cust').map((t) => iso(t.time)),
      [release],
      'one release timer at 08:00 local',
    );
    await d.advanceStreamTime(Date.parse(justBefore));
    assert.deepEqual(outputs(d), { sent: [], audits: [] }, `still quiet at ${justBefore}`);
    await d.advanceStreamTime(Date.parse(release));
    assert.deepEqual(outputs(d), {
      sent: [
        [release, t1.triggerId],
        [release, t2.triggerId],
      ],
      audits: [
        [release, 'SENT', undefined],
        [release, 'SENT', undefined],
      ],
    });
    // Past the instant an additive end (local minutes added to the trigger's time) would have released them.
    await d.advanceStreamTime(Date.parse(additiveRelease) + HOUR);
    assert.deepEqual(outputs(d), { sent: [], audits: [] }, 'not released a second time');
    assert.deepEqual(d.timers('cust'), []);
  } finally {
    await d.close();
  }
}

test('guards: held on the spring-forward night in Los Angeles, released once at 08:00 PDT (15:00Z), not at 09:00', async () => {
  await springForward('America/Los_Angeles', '2026-03-08T06:30:00Z', '2026-03-08T10:30:00Z', '2026-03-08T15:00:00Z', '2026-03-08T16:00:00Z', '2026-03-08T14:59:59Z');
});

test('guards: held on the spring-forward night in Berlin, released once at 08:00 CEST (06:00Z), not at 09:00', async () => {
  await springForward('Europe/Berlin', '2026-03-28T22:00:00Z', '2026-03-29T01:30:00Z', '2026-03-29T06:00:00Z', '2026-03-29T07:00:00Z', '2026-03-29T05:59:59Z');
});

test('guards: held on the spring-forward night in Sydney, released once at 08:00 AEDT (21:00Z)', async () => {
  await springForward('Australia/Sydney', '2026-10-03T13:00:00Z', '2026-10-03T17:00:00Z', '2026-10-03T21:00:00Z', '2026-10-03T22:00:00Z', '2026-10-03T20:59:59Z');
});

test('guards: the autumn night is held once, until 08:00 local, not released early and held again', async () => {
  const d = await driver();
  try {
    await d.pipe('crm.customers.v1', 'ber', profile('ber', 'Europe/Berlin'), { timestamp: 0 });
    await d.pipe('crm.customers.v1', 'ktm', profile('ktm', 'Asia/Kathmandu'), { timestamp: 0 });
    const ber = candidate('ber', Date.parse('2026-10-24T21:00:00Z')); // 23:00 CEST; 08:00 CET = 07:00Z
    const ktm = candidate('ktm', Date.parse('2026-10-24T21:00:00Z')); // 02:45 NPT; 08:00 NPT = 02:15Z
    await d.pipe('test.candidates', 'ber', ber, { timestamp: ber.occurredAt });
    await d.pipe('test.candidates', 'ktm', ktm, { timestamp: ktm.occurredAt });
    assert.deepEqual(outputs(d).audits, [
      ['2026-10-24T21:00:00Z', 'HELD', 'quiet hours in Europe/Berlin until 2026-10-25T07:00:00.000Z'],
      ['2026-10-24T21:00:00Z', 'HELD', 'quiet hours in Asia/Kathmandu until 2026-10-25T02:15:00.000Z'],
    ]);
    await d.advanceStreamTime(Date.parse('2026-10-25T02:15:00Z'));
    assert.deepEqual(outputs(d), { sent: [['2026-10-25T02:15:00Z', ktm.triggerId]], audits: [['2026-10-25T02:15:00Z', 'SENT', undefined]] });
    // 06:00Z is 07:00 CET (08:00 in summer time): an additive end released here, then held it again.
    await d.advanceStreamTime(Date.parse('2026-10-25T06:59:59Z'));
    assert.deepEqual(outputs(d), { sent: [], audits: [] });
    await d.advanceStreamTime(Date.parse('2026-10-25T07:00:00Z'));
    assert.deepEqual(outputs(d), { sent: [['2026-10-25T07:00:00Z', ber.triggerId]], audits: [['2026-10-25T07:00:00Z', 'SENT', undefined]] });
  } finally {
    await d.close();
  }
});
