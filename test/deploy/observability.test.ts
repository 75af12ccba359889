/**
 * The Grafana dashboard and the Prometheus alert rules against what a real instance exposes: every `kairos_…`
 * metric they query must be on /metrics of `kairos start` (so they cannot drift from the code), names follow the
 * Prometheus conventions, and — where promtool is installed — the scrape passes `promtool check metrics` and the
 * rules pass `promtool check rules` and their unit tests (deploy/prometheus/alerts.test.yml).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { BasketEvent, CustomerProfile } from '../../schemas/contract.js';
import { startInstance, type Instance } from '../../src/app/instance.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { loadRuntimeConfig } from '../../src/config/runtime.js';
import { startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { tempDir, fastGroupEnv } from '../helpers.js';
import { produce, silent, testKafka } from '../support/kafka.js';

const root = join(import.meta.dirname, '..', '..');
const DASHBOARD = join(root, 'deploy', 'grafana', 'kairos-dashboard.json');
const ALERTS = join(root, 'deploy', 'prometheus', 'alerts.yml');
const ALERT_TESTS = join(root, 'deploy', 'prometheus', 'alerts.test.yml');
const RUNBOOK = join(root, 'deploy', 'prometheus', 'README.md');

/** Exposed by the query API (src/api), not by the Kafka runner. */
const FROM_API = ['kairos_api_request_duration_seconds', 'kairos_api_forwarded_total'];

/**
 * promtool lint findings we accept, with why. prom-client's default Node metrics name three gauges `…_total`
 * (the count of active handles, requests and resources); renaming them would mean dropping or re-implementing
 * collectDefaultMetrics, and they are not counters anyone rates.
 */
const ACCEPTED_LINT: Record<string, string> = {
  'kairos_nodejs_active_handles_total non-counter metrics should not have "_total" suffix': 'prom-client default metric',
  'kairos_nodejs_active_requests_total non-counter metrics should not have "_total" suffix': 'prom-client default metric',
  'kairos_nodejs_active_resources_total non-counter metrics should not have "_total" suffix': 'prom-client default metric',
};
const GAUGES_NAMED_TOTAL = new Set(['kairos_nodejs_active_handles_total', 'kairos_nodejs_active_requests_total', 'kairos_nodejs_active_resources_total']);

const REQUIRED_ALERTS = [
  'KairosConsumerLagGrowing',
  'KairosDlqRate',
  'KairosNoTriggers',
  'KairosRestoreStuck',
  'KairosRestoreTrimmed',
  'KairosApiLatencyP99',
  'KairosConsumerRestarts',
  'KairosGroupMembershipLost',
  'KairosRepartitionPurgeFailing',
  'KairosInstanceDown',
];
const REQUIRED_ROWS = ['Throughput', 'Lag', 'Triggers', 'State', 'Restore and rebalance', 'DLQ', 'Query API', 'Process'];

// ---------------------------------------------------------------- the files

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Panel {
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: { expr: string; datasource?: { uid: string } }[];
}
interface Dashboard {
  schemaVersion: number;
  panels: Panel[];
  __inputs?: { name: string; pluginId: string }[];
  templating: { list: { name: string; type: string; query: unknown; definition?: string }[] };
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const rules = (parse(readFileSync(ALERTS, 'utf8')) as { groups: { name: string; rules: Rule[] }[] }).groups.flatMap((g) => g.rules);

interface Query {
  readonly where: string;
  readonly expr: string;
}
const dashboardQueries: Query[] = [
  ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `dashboard panel "${p.title}"`, expr: t.expr }))),
  ...dashboard.templating.list.filter((v) => v.type === 'query').map((v) => ({ where: `dashboard variable $${v.name}`, expr: v.definition ?? '' })),
];
const ruleQueries: Query[] = rules.map((r) => ({ where: `alert ${r.alert ?? r.record ?? '?'}`, expr: r.expr }));

/** Every `kairos_…` name in a PromQL expression (label values are quoted, so `"…kairos_x…"` is skipped). */
function metricNames(expr: string): string[] {
  const unquoted = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return [...new Set(unquoted.match(/\bkairos_[a-zA-Z0-9_:]*/g) ?? [])];
}

// ---------------------------------------------------------------- a real instance

/** Metric families of a scrape: name → type, from the `# TYPE` lines. */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1] as string, m[2] as string);
  return out;
}

/** The family a queried name belongs to: itself, or a histogram's/summary's `_bucket`, `_sum`, `_count` series. */
function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const base = m?.[1];
  const kind = base === undefined ? undefined : types.get(base);
  if (base !== undefined && (kind === 'histogram' || (kind === 'summary' && m?.[2] !== 'bucket'))) return base;
  return undefined;
}

let cluster: MockCluster | undefined;
let instance: Instance | undefined;
let scrape = '';
const state = tempDir('kairos-observability-');

async function fetchMetrics(i: Instance): Promise<string> {
  const res = await fetch(`http://${i.address}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  return res.text();
}

before(async () => {
  cluster = await startMockCluster();
  const brokers = cluster.brokers.join(',');
  const config = loadRuntimeConfig({
    ...fastGroupEnv(brokers),
    KAIROS_APPLICATION_ID: 'observability',
    KAIROS_STATE_DIR: state.dir,
    KAIROS_HTTP_PORT: '0',
    KAIROS_PUNCTUATE_MS: '200',
    KAIROS_IDLE_ADVANCE_MS: '500',
    KAIROS_LOG_LEVEL: 'warn',
  });
  // A short abandonment gap so a trigger (and its audited decision) is written while the test runs.
  const campaigns = resolveCampaigns({ campaigns: { 'basket-abandonment': { params: { inactivityGap: '1s' } } } });
  instance = await startInstance(config, silent, campaigns);

  const kafka = testKafka(cluster.brokers);
  const now = Date.now();
  const profile: CustomerProfile = { customerId: 'obs-1', updatedAt: now, timezone: 'UTC', consents: { push: true, email: true, onsite: true }, pushTokens: [], segments: [], attributes: {} };
  await produce(kafka, 'crm.customers.v1', [{ key: profile.customerId, value: JSON.stringify(profile) }]);
  const added = (customerId: string): BasketEvent => ({
    eventId: `obs-add-${customerId}`,
    customerId,
    occurredAt: now,
    type: 'ITEM_ADDED',
    sku: 'obs-sku',
    quantity: 1,
    unitPrice: { amount: 1000, currency: 'EUR' },
  });
  await produce(kafka, 'shop.basket.v1', [
    { key: 'obs-1', value: JSON.stringify(added('obs-1')) },
    { key: 'obs-2', value: JSON.stringify(added('obs-2')) },
    { key: 'obs-bad', value: '{"not json' },
  ]);
  // Wait (not a timing assertion: the deadline only bounds a broken run) until the labelled series exist.
  const wanted = [/^kairos_records_processed_total\{topic="shop\.basket\.v1"\}/m, /^kairos_dlq_records_total\{/m, /^kairos_triggers_total\{/m, /^kairos_consumer_lag_records\{/m];
  const deadline = Date.now() + 60_000;
  // One API request (whatever its status), so the API's labelled latency series exist once the API is there.
  await fetch(`http://${instance.address}/v1/topology`).then((r) => r.arrayBuffer()).catch(() => undefined);
  for (;;) {
    scrape = await fetchMetrics(instance);
    if (wanted.every((re) => re.test(scrape)) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
});

after(async () => {
  await instance?.stop();
  await cluster?.stop();
  state.remove();
});

// ---------------------------------------------------------------- tests

test('the instance wrote the labelled series the dashboard shows (records, DLQ, lag, trigger decisions)', () => {
  assert.match(scrape, /^kairos_records_processed_total\{topic="shop\.basket\.v1"\} \d+/m);
  assert.match(scrape, /^kairos_dlq_records_total\{topic="shop\.basket\.v1"\} 1$/m);
  assert.match(scrape, /^kairos_records_failed_total\{topic="shop\.basket\.v1",reason="not-json"\} 1$/m);
  assert.match(scrape, /^kairos_consumer_lag_records\{topic="[^"]+",partition="\d+"\} \d+/m);
  assert.match(scrape, /^kairos_triggers_total\{type="BASKET_ABANDONED",decision="(SENT|SUPPRESSED|HELD)",reason="[^"]+"\} \d+/m);
});

test('every kairos_ metric the dashboard and the alert rules query is exposed by a running instance', () => {
  const types = families(scrape);
  const missing = [...dashboardQueries, ...ruleQueries].flatMap((q) =>
    metricNames(q.expr)
      .filter((name) => familyOf(name, types) === undefined && !FROM_API.some((a) => name.startsWith(a)))
      .map((name) => `${name} (${q.where})`),
  );
  assert.deepEqual(missing, [], 'queried but not on /metrics');
  // The extraction itself works: it found the runner's, the triggers', the API's and the default metrics.
  const used = new Set([...dashboardQueries, ...ruleQueries].flatMap((q) => metricNames(q.expr)));
  for (const name of ['kairos_consumer_lag_records', 'kairos_triggers_total', 'kairos_trigger_latency_seconds_bucket', 'kairos_process_cpu_seconds_total', 'kairos_api_request_duration_seconds_bucket', 'kairos_api_forwarded_total']) {
    assert.ok(used.has(name), `${name} is queried`);
  }
});

test('the query API metrics the dashboard and the alert rules query are exposed too', (t) => {
  const types = families(scrape);
  // Until the query API (src/api) is served by the instance, there are no kairos_api_ metrics at all; once one is
  // there, every one the dashboard and the rules use must be.
  if (![...types.keys()].some((n) => n.startsWith('kairos_api_'))) return t.skip('the instance does not serve the query API (src/api) yet: no kairos_api_ metrics');
  const missing = [...dashboardQueries, ...ruleQueries].flatMap((q) =>
    metricNames(q.expr)
      .filter((name) => familyOf(name, types) === undefined && FROM_API.some((a) => name.startsWith(a)))
      .map((name) => `${name} (${q.where})`),
  );
  assert.deepEqual(missing, [], 'expected from the query API but not on /metrics');
  assert.equal(types.get('kairos_api_request_duration_seconds'), 'histogram');
  assert.equal(types.get('kairos_api_forwarded_total'), 'counter');
  // KairosApiLatencyP99 compares the p99 with 5 ms: a bucket boundary there keeps the estimate honest.
  if (/^kairos_api_request_duration_seconds_bucket\{/m.test(scrape)) assert.match(scrape, /^kairos_api_request_duration_seconds_bucket\{[^}]*le="0\.005"/m, 'a 5 ms bucket');
});

test('metric names: kairos_ namespace, snake case, counters end in _total (and only counters)', () => {
  const types = families(scrape);
  assert.ok(types.size > 40, `a real scrape (${types.size} families)`);
  for (const [name, type] of types) {
    assert.match(name, /^kairos_[a-z0-9_]+$/, name);
    if (type === 'counter') assert.ok(name.endsWith('_total'), `counter ${name} ends in _total`);
    else if (!GAUGES_NAMED_TOTAL.has(name)) assert.ok(!name.endsWith('_total'), `${type} ${name} does not end in _total`);
    if (type === 'histogram') assert.match(name, /_(seconds|bytes|records)$/, `histogram ${name} has a base unit`);
  }
  // Every sample belongs to a declared family.
  for (const line of scrape.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[^{\s]+/.exec(line)?.[0] ?? '';
    assert.ok(familyOf(name, types) !== undefined, `sample ${name} has a # TYPE line`);
  }
});

test('dashboard: schema, data source input and variables, rows, one data source everywhere', () => {
  assert.ok(dashboard.schemaVersion >= 38);
  assert.ok(dashboard.__inputs?.some((i) => i.name === 'DS_PROMETHEUS' && i.pluginId === 'prometheus'));
  const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
  assert.equal(vars.get('DS_PROMETHEUS')?.type, 'datasource');
  assert.equal(vars.get('instance')?.type, 'query');
  assert.equal(vars.get('topic')?.type, 'query');
  const rows = dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title);
  assert.deepEqual(rows, REQUIRED_ROWS);
  for (const p of dashboard.panels.filter((x) => x.type !== 'row')) {
    assert.equal(p.datasource?.uid, '${DS_PROMETHEUS}', p.title);
    assert.ok((p.targets ?? []).length > 0, `${p.title} has queries`);
    for (const t of p.targets ?? []) assert.equal(t.datasource?.uid, '${DS_PROMETHEUS}', p.title);
  }
});

test('dashboard PromQL: counters only through rate/increase, histograms through histogram_quantile over sum by (le)', () => {
  const types = families(scrape);
  for (const q of dashboardQueries.filter((x) => x.where.startsWith('dashboard panel'))) {
    for (const name of metricNames(q.expr)) {
      const family = familyOf(name, types);
      const type = family === undefined ? undefined : types.get(family);
      const isCounterLike = type === 'counter' || (type === 'histogram' && name !== family);
      for (const m of q.expr.matchAll(new RegExp(`\\b${name}\\b`, 'g'))) {
        const before = q.expr.slice(0, m.index);
        if (isCounterLike) assert.match(before, /\b(rate|increase)\(\s*$/, `${q.where}: counter ${name} is read through rate() or increase(): ${q.expr}`);
        if (name.endsWith('_bucket')) {
          assert.match(before, /histogram_quantile\(\s*0\.\d+,\s*sum by \(le\b[^)]*\) \(rate\($/, `${q.where}: ${q.expr}`);
        }
      }
      if (type === 'histogram' && name === family) assert.fail(`${q.where}: histogram ${name} is queried without _bucket/_sum/_count`);
    }
  }
});

test('alert rules: required alerts, severity, summary and description with the value, runbook section exists', () => {
  const names = rules.map((r) => r.alert);
  for (const a of REQUIRED_ALERTS) assert.ok(names.includes(a), `alert ${a}`);
  const runbook = readFileSync(RUNBOOK, 'utf8');
  // GitHub's heading anchors: lower case, spaces to dashes, punctuation dropped.
  const anchors = new Set([...runbook.matchAll(/^#{1,6} (.+)$/gm)].map((m) => (m[1] as string).trim().toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-')));
  for (const r of rules) {
    const where = r.alert ?? '?';
    assert.match(r.labels?.severity ?? '', /^(critical|warning|info)$/, where);
    assert.ok(r.annotations?.summary, `${where}: summary`);
    assert.match(r.annotations?.description ?? '', /\{\{ \$value\b/, `${where}: description states the value`);
    const url = r.annotations?.runbook_url ?? '';
    const m = /deploy\/prometheus\/README\.md#([a-z0-9_-]+)$/.exec(url);
    assert.ok(m, `${where}: runbook_url points into deploy/prometheus/README.md (${url})`);
    assert.ok(anchors.has(m[1] as string), `${where}: runbook section #${m[1] as string} exists`);
  }
});

// ---------------------------------------------------------------- promtool

const promtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' });
const havePromtool = promtool.error === undefined && promtool.status === 0;
const NO_PROMTOOL = 'promtool not on PATH (Debian: apt-get install prometheus; .ci/run installs it)';

function runPromtool(args: string[], input?: string): { status: number | null; out: string } {
  const r = spawnSync('promtool', args, { input, encoding: 'utf8', cwd: root });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

test('promtool check metrics: the scrape parses; only the accepted lint findings', (t) => {
  if (!havePromtool) return t.skip(NO_PROMTOOL);
  const r = runPromtool(['check', 'metrics'], scrape);
  // 0 = clean, 3 = lint findings only; anything else (1) is a parse error.
  assert.ok(r.status === 0 || r.status === 3, `promtool check metrics exited ${String(r.status)}: ${r.out}`);
  const findings = r.out.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  assert.deepEqual(findings.filter((f) => !(f in ACCEPTED_LINT)), [], 'lint findings not accepted in ACCEPTED_LINT');
});

test('promtool check rules: deploy/prometheus/alerts.yml', (t) => {
  if (!havePromtool) return t.skip(NO_PROMTOOL);
  const r = runPromtool(['check', 'rules', ALERTS]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /SUCCESS: \d+ rules found/);
});

test('promtool test rules: the alerts fire (and stay quiet) on synthetic series', (t) => {
  if (!havePromtool) return t.skip(NO_PROMTOOL);
  const r = runPromtool(['test', 'rules', ALERT_TESTS]);
  assert.equal(r.status, 0, r.out);
});

test('promtool: every dashboard query is valid PromQL (checked as a rule file)', (t) => {
  if (!havePromtool) return t.skip(NO_PROMTOOL);
  // Grafana's variables replaced by values of the same shape.
  const concrete = (expr: string) =>
    expr.replace(/\$__rate_interval|\$__interval/g, '1m').replace(/\$__range/g, '6h').replace(/\$(instance|topic)\b/g, '.*');
  const panelQueries = dashboardQueries.filter((q) => q.where.startsWith('dashboard panel'));
  const file = { groups: [{ name: 'dashboard', rules: panelQueries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: concrete(q.expr) })) }] };
  const dir = mkdtempSync(join(tmpdir(), 'kairos-promql-'));
  try {
    const path = join(dir, 'dashboard-rules.json');
    writeFileSync(path, JSON.stringify(file));
    const r = runPromtool(['check', 'rules', path]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, new RegExp(`SUCCESS: ${panelQueries.length} rules found`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
