/**
 * The campaign console in a real browser (Debian's chromium driven by playwright-core) against a running
 * instance (startInstance: the Kafka runner on librdkafka's mock cluster, the HTTP server with the query API and
 * the console), fed with the all-triggers scenario: sign in, find why a customer got no message, watch the live
 * stream with a filter, lower the cap and preview its effect (on an uploaded file, then on the input topics),
 * see a validation error at its field, publish and see the engine apply it. Screenshots go to docs/console/ when KAIROS_CONSOLE_SCREENSHOTS=1.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startInstance, type Instance } from '../../src/app/instance.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { loadRuntimeConfig } from '../../src/config/runtime.js';
import { mockClusterAvailable, startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { tempDir, until, fastGroupEnv } from '../helpers.js';
import { silent, testKafka } from '../support/kafka.js';
import { abWarehouse } from '../support/console-warehouse.js';

const CHROMIUM = '/usr/bin/chromium';
const root = join(import.meta.dirname, '..', '..');
const SCENARIO = join(root, 'load-tests', 'scenarios', 'all-triggers.ndjson');
const SHOTS = process.env.KAIROS_CONSOLE_SCREENSHOTS === '1' ? join(root, 'docs', 'console') : undefined;
const KEY = 'console-manager-key-0123456789';
const INPUT = { guards: { quietHours: null, cap: { max: 3, window: '24h' } }, campaigns: { 'basket-abandonment': { params: { inactivityGap: '30m' } } } };
const skip = !mockClusterAvailable() ? 'kcat (mock cluster) not installed' : !existsSync(CHROMIUM) ? `${CHROMIUM} not installed (apt-get install chromium)` : false;

let cluster: MockCluster | undefined;
let instance: Instance | undefined;
let browser: Browser | undefined;
let page: Page;
let base = '';
const dir = tempDir('kairos-console-');
const warehouseDir = tempDir('kairos-console-wh-');

before(async () => {
  if (skip !== false) return;
  cluster = await startMockCluster();
  const kafka = testKafka(cluster.brokers);
  // The scenario's events in file order, each stamped with its event time (the mock creates the topics; the
  // campaign topic too, when the engine's follower subscribes).
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  for (const line of readFileSync(SCENARIO, 'utf8').split('\n').filter((l) => l !== '')) {
    const e = JSON.parse(line) as { topic: string; key: string; value: { occurredAt?: number; updatedAt?: number } };
    await producer.send({ topic: e.topic, acks: -1, messages: [{ key: e.key, value: JSON.stringify(e.value), timestamp: String(e.value.occurredAt ?? e.value.updatedAt) }] });
  }
  await producer.disconnect();
  const config = loadRuntimeConfig({
    ...fastGroupEnv(cluster.brokers.join(',')),
    KAIROS_APPLICATION_ID: 'console-browser',
    KAIROS_STATE_DIR: dir.dir,
    KAIROS_HTTP_PORT: '0',
    KAIROS_HTTP_HOST: '127.0.0.1',
    KAIROS_API_KEYS: `manager:${KEY}:read+console+console-publish`,
    KAIROS_CAMPAIGNS_TOPIC: 'crm.campaigns.v1',
    KAIROS_PUNCTUATE_MS: '250',
    KAIROS_COMMIT_INTERVAL_MS: '100',
    KAIROS_IDLE_ADVANCE_MS: '1000',
    KAIROS_LOG_LEVEL: 'warn',
  });
  const warehouse = await abWarehouse(warehouseDir.dir, Date.UTC(2026, 10, 20));
  instance = await startInstance(config, silent, resolveCampaigns(INPUT), INPUT, { warehouse });
  base = `http://${instance.address}`;
  // frank has no consent: his abandoned basket is suppressed once stream time passes its inactivity gap.
  await until('frank\'s decision in the query API', async () => {
    const r = await fetch(`${base}/v1/customers/frank`, { headers: { 'x-api-key': KEY } });
    return r.ok && ((await r.json()) as { decisions: { reason: string }[] }).decisions.some((d) => d.reason === 'no-consent');
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
  if (SHOTS !== undefined) mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await instance?.stop();
  await cluster?.stop();
  dir.remove();
  warehouseDir.remove();
});

const shot = async (name: string, fullPage = false): Promise<void> => {
  if (SHOTS !== undefined) await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
};

test('sign in, open a customer and read why no message was sent (keyboard and labels only)', { skip, timeout: 60_000 }, async () => {
  await page.goto(`${base}/console/customer?id=frank`);
  await page.getByLabel('API key').fill(KEY);
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/console\/customer\?id=frank$/);
  const why = await page.locator('#why-not tr[data-type="BASKET_ABANDONED"]').innerText();
  assert.match(why, /suppressed\s+no consent: no consent for push, email/);
  assert.match(await page.locator('#decisions').innerText(), /SUPPRESSED\s+no-consent/);
  // Another customer, from the form (its answers depend on how far that customer's task has come: not checked).
  await page.getByLabel('Customer id').fill('carl');
  await page.keyboard.press('Enter');
  await page.waitForURL(/id=carl$/);
  assert.equal(await page.locator('#customer-name').innerText(), 'carl');
  assert.equal(await page.locator('#why-not tbody tr').count(), 5);
  await shot('customer', true);
});

test('live: decisions stream in, counted per type and decision, filtered by customer', { skip, timeout: 60_000 }, async () => {
  await page.goto(`${base}/console/live`);
  await page.locator('#event-rows tr').first().waitFor();
  assert.match(await page.locator('#counts').innerText(), /BASKET_ABANDONED\s+\d+\s+\d+\s+[1-9]/);
  await page.getByLabel('Customer id').fill('frank');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  // Applying the filters clears the list and reconnects: what arrives next is filtered.
  await page.locator('#event-rows tr').first().waitFor();
  const rows = await page.locator('#event-rows tr').allInnerTexts();
  assert.ok(rows.length > 0 && rows.every((r) => r.includes('frank')), rows.join('\n'));
  await page.getByLabel('Customer id').fill('');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await page.locator('#event-rows tr').nth(3).waitFor();
  await shot('live');
});

test('settings: a bad value is shown at its field; lowering the cap shows its diff and the preview\'s difference; publish, and the engine applies it', { skip, timeout: 90_000 }, async () => {
  await page.goto(`${base}/console/settings`);
  const editor = page.getByLabel('Campaign config (JSON)');
  const inForce = JSON.parse(await editor.inputValue()) as typeof INPUT;
  assert.deepEqual(inForce, INPUT);

  // The form generated from the config schema: every field labelled, filled from the JSON, writing into it.
  await page.locator('details[data-group="/guards"] > summary').focus();
  await page.keyboard.press('Enter');
  const capMax = page.getByLabel('guards › cap › max');
  assert.equal(await capMax.inputValue(), '3');
  assert.equal(await page.getByLabel('guards › quietHours › none').isChecked(), true);
  await capMax.fill('0');
  await capMax.press('Tab');
  // A bad value: its error at the field (and in the list), the JSON carries it.
  await page.locator('#f-guards-cap-max-error').getByText(/Expected integer to be greater or equal to 1/).waitFor();
  assert.equal(await capMax.getAttribute('aria-invalid'), 'true');
  await capMax.fill('2');
  // Enter applies the field (never submits the page, which would lose the edit).
  await capMax.press('Enter');
  await page.locator('#diff').waitFor();
  assert.match(await page.locator('#diff').innerText(), /\/guards\/cap\/max\s+3\s+2/);
  assert.equal(await capMax.getAttribute('aria-invalid'), null);
  assert.equal((JSON.parse(await editor.inputValue()) as typeof INPUT).guards.cap.max, 2);
  // Emptying a field removes it from the JSON (its default applies), and empty objects go with it.
  const gap = page.getByLabel('campaigns › basket-abandonment › params › inactivityGap');
  await page.locator('details[data-group="/campaigns"] > summary').click();
  await page.locator('details[data-group="/campaigns/basket-abandonment"] > summary').click();
  assert.equal(await gap.inputValue(), '30m');
  await gap.fill('');
  await gap.press('Tab');
  await page.locator('#diff').getByText('/basketAbandonment/params/inactivityGap').waitFor();
  assert.equal((JSON.parse(await editor.inputValue()) as { campaigns?: unknown }).campaigns, undefined);
  if (SHOTS !== undefined) {
    await page.locator('#config-form').scrollIntoViewIfNeeded();
    await page.locator('details[data-group="/guards"]').evaluate((e) => e.scrollIntoView());
    await shot('settings-form');
  }

  await editor.fill(JSON.stringify({ ...INPUT, guards: { ...INPUT.guards, cap: { max: 0, window: '24h' } } }, null, 2));
  await page.getByRole('button', { name: 'Check and diff' }).click();
  const error = page.locator('#field-errors li');
  await error.first().waitFor();
  assert.match(await error.first().innerText(), /^\/guards\/cap\/max: Expected integer to be greater or equal to 1/);
  await page.getByRole('button', { name: 'go to /guards/cap/max' }).click();
  assert.equal(await page.locator('#config:focus').count(), 1, 'the error takes the keyboard focus to the editor');

  await editor.fill(JSON.stringify({ ...INPUT, guards: { ...INPUT.guards, cap: { max: 1, window: '24h' } } }, null, 2));
  await page.getByRole('button', { name: 'Check and diff' }).click();
  await page.locator('#diff').waitFor();
  assert.match(await page.locator('#diff').innerText(), /\/guards\/cap\/max\s+3\s+1/);

  await page.getByLabel('Events for the preview (NDJSON)').setInputFiles(SCENARIO);
  await page.getByRole('button', { name: 'Preview', exact: true }).click();
  await page.locator('#preview-types').waitFor({ timeout: 60_000 });
  const row = await page.locator('#preview-types tr', { hasText: 'BASKET_PRICE_DROP' }).innerText();
  assert.match(row, /^BASKET_PRICE_DROP\s+1\s+0\s+-1\s+–\s+SUPPRESSED\/cap 1\s+–\s+carl$/);
  if (SHOTS !== undefined) {
    // The check and the preview at the top of the window (the wheel over the right margin scrolls the page).
    const box = await page.locator('#check-h').boundingBox();
    await page.mouse.move(1096, 400);
    await page.mouse.wheel(0, (box?.y ?? 0) - 250);
    await page.locator('#preview-types').scrollIntoViewIfNeeded();
    await shot('settings');
  }

  // The same events read back from the input topics (their records carry the scenario's event times).
  await page.getByLabel('Events to replay').selectOption('30d');
  await page.getByRole('button', { name: 'Preview', exact: true }).click();
  await page.getByText('44 records of the last 30d replayed twice').waitFor({ timeout: 60_000 });
  // The 7 days before the window were replayed first to warm up the state (none here: the scenario is younger).
  await page.getByText('Warm-up: first the 0 records of the 7d before the window were replayed').waitFor();
  assert.match(await page.locator('#preview-types tr', { hasText: 'BASKET_PRICE_DROP' }).innerText(), /^BASKET_PRICE_DROP\s+1\s+0\s+-1\s+–\s+SUPPRESSED\/cap 1\s+–\s+carl$/);

  await page.getByRole('button', { name: 'Publish to crm.campaigns.v1' }).click();
  await page.getByText(/Applied: version 2 is in force \(from crm\.campaigns\.v1\[0\]@\d+, published by key:manager at \d{4}-\d\d-\d\dT/).waitFor({ timeout: 60_000 });
  assert.match(await page.locator('#publish-result').innerText(), /by key:manager at \d{4}-/);
  // Who and when come from the record's headers, as the engine applied it (so also for another instance's publish).
  assert.match(await page.locator('#cfg-publisher').innerText(), /^, published by key:manager at \d{4}-/);
  await page.reload();
  assert.match(await page.locator('#cfg-publisher').innerText(), /^, published by key:manager at \d{4}-/);
  assert.equal(instance?.live.current.guards?.cap?.max, 1);
});

test('results: the A/B report of a campaign as a chart', { skip, timeout: 60_000 }, async () => {
  await page.goto(`${base}/console/results`);
  await page.getByLabel('Campaign').fill('c-1');
  await page.getByLabel('Attribution window').fill('7d');
  await page.keyboard.press('Enter');
  await page.waitForURL(/campaign=c-1/);
  assert.equal(await page.getByRole('img', { name: /Conversion rate per arm and uplift over the holdout/ }).count(), 1);
  assert.match(await page.locator('#results tbody tr', { hasText: 'A' }).first().innerText(), /^A\s+2\s+1\s+50.00 %\s+\+50.00 pp\s+\[-19.30 pp, \+119.30 pp\]/);
  assert.equal(await page.getByRole('img', { name: /Per day and arm: sends \(light bars\) and conversions \(dark bars\)/ }).count(), 1);
  assert.match(await page.locator('#results-daily').innerText(), /2026-11-21\s+A\s+1\s+0\s+0/);
  await shot('results', true);
});
