/**
 * Guards decide a trigger with the customer's profile as of the decision time (DESIGN §4, Kafka == replay): a
 * candidate that reaches the customer's task late (a fan-out trigger through a repartition topic) after later
 * profile updates is decided as replay decides it, with the profile valid at its time.
 *
 * Most tests pipe the same records twice into the single-task driver: in event-time order (what replay does)
 * and with the candidate last (what the Kafka runner sees when the trigger comes back late), and compare.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BasketEvent, CatalogEvent, CustomerProfile, Trigger, TriggerAudit } from '../../schemas/contract.js';
import { TopologyBuilder } from '../../src/engine/api/index.js';
import { MultiTaskDriver } from '../../src/engine/testing/multi-task-driver.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { partitionOf } from '../../src/kafka/partitioner.js';
import {
  addGuards,
  DEFAULT_PROFILE_HISTORY,
  GUARDS,
  profileHistoryStore,
  profilesStore,
  versionAt,
  withVersion,
  type CampaignGuards,
  type ProfileHistoryBounds,
  type ProfileVersion,
} from '../../topologies/common/guards.js';
import { AUDIT_TOPIC, TRIGGERS_TOPIC } from '../../topologies/common/campaign.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
// 2026-11-20 is a Friday; 12:00 UTC = 13:00 Berlin, 07:00 New York.
const NOON = Date.UTC(2026, 10, 20, 12, 0, 0);

function profile(customerId: string, updatedAt: number, over: Partial<CustomerProfile> = {}): CustomerProfile {
  return { customerId, updatedAt, timezone: 'Europe/Berlin', consents: { push: true, email: true, onsite: true }, pushTokens: [], segments: [], attributes: {}, ...over };
}
const NO_CONSENT = { push: false, email: false, onsite: false };

let seq = 0;
function candidate(customerId: string, at: number, campaignId = 'c1'): Trigger {
  const id = (++seq).toString(16).padStart(32, '0');
  return {
    triggerId: id,
    type: 'BASKET_PRICE_DROP',
    customerId,
    occurredAt: at,
    campaignId,
    variant: 'default',
    channels: ['push', 'email'],
    causedBy: { eventId: `e${seq}`, topic: 'shop.catalog.v1', partition: 0, offset: String(seq) },
    explanation: { rule: 'test', params: {}, observed: {} },
    payload: {},
    expiresAt: at + 48 * HOUR,
  };
}

type Step = { profile: CustomerProfile } | { candidate: Trigger } | { erase: string; at: number };

async function driver(guardsConfig: unknown, campaigns: Record<string, CampaignGuards> = {}, profileHistory?: ProfileHistoryBounds): Promise<TopologyTestDriver> {
  const cfg = resolveCampaigns({ guards: guardsConfig });
  const b = new TopologyBuilder('g');
  addGuards(b, { ...(cfg.guards as NonNullable<typeof cfg.guards>), campaigns: new Map(Object.entries(campaigns)), ...(profileHistory ? { profileHistory } : {}) });
  b.addSource('candidates', ['test.candidates']).connect('candidates', GUARDS);
  return TopologyTestDriver.create(b.build());
}

async function pipe(d: TopologyTestDriver, s: Step): Promise<void> {
  if ('profile' in s) await d.pipe('crm.customers.v1', s.profile.customerId, s.profile, { timestamp: s.profile.updatedAt });
  else if ('candidate' in s) await d.pipe('test.candidates', s.candidate.customerId, s.candidate, { timestamp: s.candidate.occurredAt });
  else await d.pipe('crm.customers.v1', s.erase, null, { timestamp: s.at });
}

type Decision = [customerId: string, decision: TriggerAudit['decision'], reason: string, at: string];
const decisions = (d: TopologyTestDriver): Decision[] =>
  d.readOutput<TriggerAudit>(AUDIT_TOPIC).map(({ value: a }) => [a.customerId, a.decision, a.reason, new Date(a.occurredAt).toISOString()]);

interface Outcome {
  readonly decisions: Decision[];
  readonly sent: Trigger[];
  readonly details: string[];
}

/** Runs the steps in the given order, then moves stream time to `end`. */
async function run(steps: readonly Step[], end: number, guardsConfig: unknown, campaigns: Record<string, CampaignGuards> = {}): Promise<Outcome> {
  const d = await driver(guardsConfig, campaigns);
  try {
    for (const s of steps) await pipe(d, s);
    await d.advanceStreamTime(end);
    const out = d.readOutput<TriggerAudit>(AUDIT_TOPIC).map((o) => o.value);
    return {
      decisions: out.map((a) => [a.customerId, a.decision, a.reason, new Date(a.occurredAt).toISOString()]),
      sent: d.readOutput<Trigger>(TRIGGERS_TOPIC).map((o) => o.value),
      details: out.map((a) => a.detail ?? ''),
    };
  } finally {
    await d.close();
  }
}

const timeOf = (s: Step): number => ('profile' in s ? s.profile.updatedAt : 'candidate' in s ? s.candidate.occurredAt : s.at);

/**
 * The replay outcome (steps sorted by event time, stable: a profile listed before a candidate at the same time
 * comes first) and the late outcome (every candidate piped after every other step), asserted equal.
 */
async function replayAndLate(steps: readonly Step[], end: number, guardsConfig: unknown, campaigns: Record<string, CampaignGuards> = {}): Promise<Outcome> {
  const inOrder = [...steps].sort((a, b) => timeOf(a) - timeOf(b));
  const late = [...steps.filter((s) => !('candidate' in s)), ...steps.filter((s) => 'candidate' in s)];
  const replay = await run(inOrder, end, guardsConfig, campaigns);
  const kafka = await run(late, end, guardsConfig, campaigns);
  // Across customers the output order follows the input order; per customer it is the same.
  const audited = (o: Outcome) => o.decisions.map((x, i) => JSON.stringify([...x, o.details[i]])).sort();
  assert.deepEqual(audited(kafka), audited(replay), 'late candidates are decided as in replay, with the same audit details');
  const byId = (o: Outcome) => [...o.sent].sort((a, b) => a.triggerId.localeCompare(b.triggerId));
  assert.deepEqual(byId(kafka), byId(replay), 'and the same triggers sent');
  return replay;
}

test('consent: a candidate reaching the task after a later profile update is decided with the profile of its time', async () => {
  const t = candidate;
  const out = await replayAndLate(
    [
      // Consent held at the trigger's time, withdrawn 13 minutes later: sent.
      { profile: profile('withdraws', NOON - DAY) },
      { candidate: t('withdraws', NOON) },
      { profile: profile('withdraws', NOON + 13 * MIN, { consents: NO_CONSENT }) },
      // No consent at the trigger's time, given later: suppressed.
      { profile: profile('grants', NOON - DAY, { consents: NO_CONSENT }) },
      { candidate: t('grants', NOON + MIN) },
      { profile: profile('grants', NOON + 2 * MIN) },
      // Push only at the trigger's time, e-mail only later: sent on push.
      { profile: profile('switches', NOON - HOUR, { consents: { push: true, email: false, onsite: false } }) },
      { candidate: t('switches', NOON + 3 * MIN) },
      { profile: profile('switches', NOON + 4 * MIN, { consents: { push: false, email: true, onsite: false } }) },
      // The first profile is newer than the trigger: no profile known then.
      { candidate: t('newcomer', NOON + 5 * MIN) },
      { profile: profile('newcomer', NOON + 6 * MIN) },
    ],
    NOON + HOUR,
    { quietHours: null },
  );
  assert.deepEqual(out.decisions, [
    ['withdraws', 'SENT', 'ok', '2026-11-20T12:00:00.000Z'],
    ['grants', 'SUPPRESSED', 'no-consent', '2026-11-20T12:01:00.000Z'],
    ['switches', 'SENT', 'ok', '2026-11-20T12:03:00.000Z'],
    ['newcomer', 'SUPPRESSED', 'no-consent', '2026-11-20T12:05:00.000Z'],
  ]);
  assert.deepEqual(out.sent.map((s) => [s.customerId, s.channels]), [['withdraws', ['push', 'email']], ['switches', ['push']]]);
  assert.equal(out.details[3], 'no profile known for the customer');
});

test('a profile and a candidate at the same time: the profile counts (replay processes it first)', async () => {
  const out = await replayAndLate(
    [{ profile: profile('tie', NOON - DAY, { consents: NO_CONSENT }) }, { profile: profile('tie', NOON) }, { candidate: candidate('tie', NOON) }],
    NOON + HOUR,
    { quietHours: null },
  );
  assert.deepEqual(out.decisions, [['tie', 'SENT', 'ok', '2026-11-20T12:00:00.000Z']]);
});

test('quiet hours: a late candidate is held in the time zone of its time, and re-decided at release with the profile of the release time', async () => {
  const out = await replayAndLate(
    [
      // 12:00 UTC is 07:00 in New York (quiet until 08:00 = 13:00 UTC) but 13:00 in Berlin (not quiet).
      { profile: profile('mover', NOON - DAY, { timezone: 'America/New_York' }) },
      { candidate: candidate('mover', NOON) },
      { profile: profile('mover', NOON + 10 * MIN, { timezone: 'Europe/Berlin' }) },
      // Held until 13:00 UTC; consent withdrawn at 13:30: the release at 13:00 still has consent.
      { profile: profile('late', NOON - DAY, { timezone: 'America/New_York' }) },
      { candidate: candidate('late', NOON + MIN) },
      { profile: profile('late', NOON + 90 * MIN, { consents: NO_CONSENT, timezone: 'America/New_York' }) },
      // Held until 13:00 UTC; consent withdrawn at 12:30, before the release: suppressed at 13:00.
      { profile: profile('quits', NOON - DAY, { timezone: 'America/New_York' }) },
      { candidate: candidate('quits', NOON + 2 * MIN) },
      { profile: profile('quits', NOON + 30 * MIN, { consents: NO_CONSENT, timezone: 'America/New_York' }) },
      // Berlin at its time (not quiet), New York later: sent at once.
      { profile: profile('flier', NOON - DAY) },
      { candidate: candidate('flier', NOON + 3 * MIN) },
      { profile: profile('flier', NOON + 4 * MIN, { timezone: 'America/New_York' }) },
    ],
    NOON + 2 * HOUR,
    { cap: null },
  );
  const byCustomer = (c: string) => out.decisions.filter((x) => x[0] === c).map((x) => x.slice(1));
  assert.deepEqual(byCustomer('mover'), [['HELD', 'quiet-hours', '2026-11-20T12:00:00.000Z'], ['SENT', 'ok', '2026-11-20T13:00:00.000Z']]);
  assert.deepEqual(byCustomer('late'), [['HELD', 'quiet-hours', '2026-11-20T12:01:00.000Z'], ['SENT', 'ok', '2026-11-20T13:00:00.000Z']]);
  assert.deepEqual(byCustomer('quits'), [['HELD', 'quiet-hours', '2026-11-20T12:02:00.000Z'], ['SUPPRESSED', 'no-consent', '2026-11-20T13:00:00.000Z']]);
  assert.deepEqual(byCustomer('flier'), [['SENT', 'ok', '2026-11-20T12:03:00.000Z']]);
  assert.match(out.details[0] ?? '', /quiet hours in America\/New_York until 2026-11-20T13:00:00.000Z/);
});

test('audience: segments and attributes of the profile at the trigger\'s time', async () => {
  const campaigns = { c1: { filter: { segmentsNone: ['staff'], attributes: [{ name: 'clv', op: '>' as const, value: 500 }] } } };
  const out = await replayAndLate(
    [
      { profile: profile('cooling', NOON - DAY, { attributes: { clv: 812 } }) },
      { candidate: candidate('cooling', NOON) },
      { profile: profile('cooling', NOON + MIN, { attributes: { clv: 120 } }) },
      { profile: profile('hired', NOON - DAY, { attributes: { clv: 900 } }) },
      { candidate: candidate('hired', NOON + 2 * MIN) },
      { profile: profile('hired', NOON + 3 * MIN, { segments: ['staff'], attributes: { clv: 900 } }) },
      { profile: profile('left', NOON - DAY, { segments: ['staff'], attributes: { clv: 900 } }) },
      { candidate: candidate('left', NOON + 4 * MIN) },
      { profile: profile('left', NOON + 5 * MIN, { attributes: { clv: 900 } }) },
    ],
    NOON + HOUR,
    { quietHours: null },
    campaigns,
  );
  assert.deepEqual(out.decisions.map((x) => x.slice(0, 3)), [
    ['cooling', 'SENT', 'ok'],
    ['hired', 'SENT', 'ok'],
    ['left', 'SUPPRESSED', 'segment'],
  ]);
  assert.match(out.details[2] ?? '', /excluded segment staff/);
});

test('profile versions arriving out of order are kept in updatedAt order; the current-profile store is written as before', async () => {
  const d = await driver({ quietHours: null });
  try {
    const v2 = profile('ooo', NOON + 10 * MIN, { consents: NO_CONSENT });
    const v1 = profile('ooo', NOON - HOUR);
    const v3 = profile('ooo', NOON + 20 * MIN);
    await pipe(d, { profile: v2 });
    await pipe(d, { profile: v3 });
    await pipe(d, { profile: v1 }); // arrives last, valid from 11:00
    const history = await d.store(profileHistoryStore).get('ooo');
    assert.deepEqual(history?.versions.map((v) => v.updatedAt), [v1.updatedAt, v2.updatedAt, v3.updatedAt]);
    assert.equal(history?.trimmed, undefined);
    assert.deepEqual(await d.store(profilesStore).get('ooo'), v1, 'the current-profile store keeps the last one received, as before');
    for (const at of [NOON - 2 * HOUR, NOON, NOON + 15 * MIN, NOON + 25 * MIN]) await pipe(d, { candidate: candidate('ooo', at) });
    assert.deepEqual(decisions(d).map((x) => x.slice(1, 3)), [
      ['SUPPRESSED', 'no-consent'],
      ['SENT', 'ok'],
      ['SUPPRESSED', 'no-consent'],
      ['SENT', 'ok'],
    ]);
    // A redelivered version changes nothing.
    await pipe(d, { profile: v2 });
    assert.deepEqual((await d.store(profileHistoryStore).get('ooo'))?.versions.map((v) => v.updatedAt), [v1.updatedAt, v2.updatedAt, v3.updatedAt]);
  } finally {
    await d.close();
  }
});

test('erasure removes the profile history with the rest; a late candidate of an erased customer is not sent', async () => {
  const d = await driver({ quietHours: null });
  try {
    await pipe(d, { profile: profile('gone', NOON - DAY) });
    await pipe(d, { profile: profile('gone', NOON + MIN, { segments: ['vip'] }) });
    assert.equal((await d.store(profileHistoryStore).get('gone'))?.versions.length, 2);
    await pipe(d, { erase: 'gone', at: NOON + 2 * MIN });
    assert.equal(await d.store(profileHistoryStore).get('gone'), undefined);
    assert.equal(await d.store(profilesStore).get('gone'), undefined);
    await pipe(d, { candidate: candidate('gone', NOON) });
    assert.deepEqual(decisions(d).map((x) => x.slice(1, 3)), [['SUPPRESSED', 'no-consent']]);
    await d.restart();
    assert.equal(await d.store(profileHistoryStore).get('gone'), undefined, 'the erasure is committed');
    // A profile after the erasure starts a new history.
    await pipe(d, { profile: profile('gone', NOON + 3 * MIN) });
    assert.deepEqual((await d.store(profileHistoryStore).get('gone'))?.versions.map((v) => v.updatedAt), [NOON + 3 * MIN]);
  } finally {
    await d.close();
  }
});

test('a customer whose profile was stored before the history existed is decided with that profile', async () => {
  const d = await driver({ quietHours: null });
  try {
    d.store(profilesStore).put('old', profile('old', NOON - DAY));
    await d.task.commit();
    await pipe(d, { candidate: candidate('old', NOON) });
    // The next update starts the history from the stored profile.
    await pipe(d, { profile: profile('old', NOON + MIN, { consents: NO_CONSENT }) });
    assert.deepEqual((await d.store(profileHistoryStore).get('old'))?.versions.map((v) => v.updatedAt), [NOON - DAY, NOON + MIN]);
    await pipe(d, { candidate: candidate('old', NOON + 30_000) });
    assert.deepEqual(decisions(d).map((x) => x.slice(1, 3)), [['SENT', 'ok'], ['SENT', 'ok']]);
  } finally {
    await d.close();
  }
});

const version = (updatedAt: number, push = true): ProfileVersion => ({ updatedAt, consents: { push, email: false, onsite: false }, segments: [], attributes: {} });

test('bounded history: at most maxVersions, nothing older than the horizon but the version valid at it', () => {
  const bounds: ProfileHistoryBounds = { maxVersions: 4, horizonMs: 10 * DAY };
  // Count: 6 versions an hour apart keep the newest 4.
  let h = undefined as ReturnType<typeof withVersion> | undefined;
  for (let i = 0; i < 6; i++) h = withVersion(h, version(NOON + i * HOUR), bounds);
  assert.deepEqual(h?.versions.map((v) => (v.updatedAt - NOON) / HOUR), [2, 3, 4, 5]);
  assert.equal(h?.trimmed, true);
  // A time before the oldest kept version (older ones dropped) gets the oldest kept one, not "no profile".
  assert.equal(versionAt(h, NOON)?.updatedAt, NOON + 2 * HOUR);
  assert.equal(versionAt(h, NOON + 3.5 * HOUR)?.updatedAt, NOON + 3 * HOUR);
  // Age: versions at day 0, 1, 2, then day 15: the version valid at day 5 (day 2) is kept, older ones go.
  let a = undefined as ReturnType<typeof withVersion> | undefined;
  for (const day of [0, 1, 2]) a = withVersion(a, version(NOON + day * DAY), bounds);
  assert.equal(a?.trimmed, undefined);
  assert.equal(versionAt(a, NOON - 1), undefined, 'before the first version: no profile');
  a = withVersion(a, version(NOON + 15 * DAY, false), bounds);
  assert.deepEqual(a.versions.map((v) => (v.updatedAt - NOON) / DAY), [2, 15]);
  assert.equal(versionAt(a, NOON + 5 * DAY)?.consents.push, true, 'still known at the horizon');
  assert.equal(versionAt(a, NOON + 15 * DAY)?.consents.push, false);
  // Inserting out of order keeps the order, and equal times keep arrival order (the later one wins).
  let o = withVersion(undefined, version(NOON + 2 * HOUR), bounds);
  o = withVersion(o, version(NOON), bounds);
  o = withVersion(o, version(NOON + HOUR, true), bounds);
  o = withVersion(o, version(NOON + HOUR, false), bounds);
  assert.deepEqual(o.versions.map((v) => [(v.updatedAt - NOON) / HOUR, v.consents.push]), [[0, true], [1, true], [1, false], [2, true]]);
  assert.equal(versionAt(o, NOON + HOUR)?.consents.push, false);
  assert.deepEqual(DEFAULT_PROFILE_HISTORY, { maxVersions: 8, horizonMs: 30 * DAY });
});

test('bounded history through the guards: a customer updated often keeps the newest versions only', async () => {
  const d = await driver({ quietHours: null }, {}, { maxVersions: 3, horizonMs: 30 * DAY });
  try {
    for (let i = 0; i < 10; i++) await pipe(d, { profile: profile('busy', NOON + i * MIN, { attributes: { n: i } }) });
    const h = await d.store(profileHistoryStore).get('busy');
    assert.deepEqual(h?.versions.map((v) => v.attributes['n']), [7, 8, 9]);
    assert.equal(h?.trimmed, true);
    assert.equal('pushTokens' in (h?.versions[0] ?? {}), false, 'versions keep what the guards read only');
  } finally {
    await d.close();
  }
});

test('end to end, N tasks: a price drop coming back through the repartition topic after a consent withdrawal is decided as in replay', async () => {
  const { buildTopology } = await import('../../src/app/topology.js');
  const cfg = resolveCampaigns({});
  // The case seen in the Kafka runner: a price drop at 06:55:37 UTC (07:55 Berlin, held until 08:00 = 07:00 UTC),
  // consent withdrawn at 07:08:58. Replay sends it at 07:00.
  const t = (h: number, m: number, s = 0) => Date.UTC(2026, 10, 20, h, m, s);
  const eur = (amount: number) => ({ amount, currency: 'EUR' });
  const inputs: { topic: string; key: string; value: CustomerProfile | BasketEvent | CatalogEvent }[] = [];
  const customers = ['ana', 'ben', 'cleo', 'dev', 'eli', 'fay'];
  for (const c of customers) {
    inputs.push({ topic: 'crm.customers.v1', key: c, value: profile(c, t(5, 0)) });
    inputs.push({ topic: 'shop.basket.v1', key: c, value: { eventId: `add-${c}`, customerId: c, occurredAt: t(6, 0), type: 'ITEM_ADDED', sku: 'coat-m', productId: 'coat', quantity: 1, unitPrice: eur(10_000) } });
  }
  inputs.push({ topic: 'shop.catalog.v1', key: 'coat-m', value: { eventId: 'drop', sku: 'coat-m', productId: 'coat', occurredAt: t(6, 55, 37), type: 'PRICE_CHANGED', price: eur(7_000) } });
  // Half of them withdraw consent at 07:08:58 (after the release), the other half at 06:58 (before it).
  customers.forEach((c, i) => inputs.push({ topic: 'crm.customers.v1', key: c, value: profile(c, i % 2 === 0 ? t(7, 8, 58) : t(6, 58), { consents: NO_CONSENT }) }));
  const end = t(9, 0);
  const summary = (a: TriggerAudit) => `${a.customerId} ${a.type} ${a.decision} ${a.reason} ${new Date(a.occurredAt).toISOString()}`;

  // Produced in time order (each partition's log in event-time order).
  inputs.sort((a, b) => timeOfValue(a.value) - timeOfValue(b.value));
  const replay = await TopologyTestDriver.create(buildTopology(cfg));
  let expected: string[];
  try {
    for (const i of inputs) await replay.pipe(i.topic, i.key, i.value);
    await replay.advanceStreamTime(end);
    expected = replay.readOutput<TriggerAudit>(AUDIT_TOPIC).map((o) => summary(o.value)).sort();
  } finally {
    await replay.close();
  }
  // (Everyone's basket is also abandoned at 07:00.)
  assert.deepEqual(expected.filter((s) => s.includes('PRICE_DROP SENT')).map((s) => s.split(' ')[0]), ['ana', 'cleo', 'eli']);
  assert.equal(expected.filter((s) => s.includes('PRICE_DROP SUPPRESSED no-consent 2026-11-20T07:00:00.000Z')).length, 3);

  for (const schedule of ['inputs-first', 'random'] as const) {
    const d = await MultiTaskDriver.create(buildTopology(cfg), { partitions: 3, partitioner: partitionOf, schedule, publishProbability: 0.05, seed: 7 });
    try {
      for (const i of inputs) d.send(i.topic, i.key, i.value);
      await d.finish(end);
      const got = d.readOutput<TriggerAudit>(AUDIT_TOPIC).map((o) => summary(o.value)).sort();
      assert.deepEqual(got, expected, schedule);
    } finally {
      await d.close();
    }
  }
});

function timeOfValue(v: CustomerProfile | BasketEvent | CatalogEvent): number {
  return 'updatedAt' in v ? v.updatedAt : v.occurredAt;
}
