/**
 * Issue 18's acceptance path in a real browser (Debian's chromium through playwright-core) against a real
 * `kairos start` child process on librdkafka's mock cluster: open a customer and read a decision reason, lower a
 * threshold in the settings form, see the preview's difference over the input topics, publish, see the settings
 * page show the new version from the campaign topic with its publisher, and see a later event behave by it;
 * then a config published by another instance shows that instance's publisher.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { Kafka } from 'kafkajs';
import type { BasketEvent, CatalogEvent, CustomerProfile } from '../../schemas/contract.js';
import { mockClusterAvailable, startMockCluster, type MockCluster } from '../../src/kafka/mock-cluster.js';
import { fastGroupEnv, tempDir, until } from '../helpers.js';
import { testKafka } from '../support/kafka.js';
import { startChild, type ChildInstance } from '../support/instance.js';

const CHROMIUM = '/usr/bin/chromium';
const root = join(import.meta.dirname, '..', '..');
const SCENARIO = join(root, 'load-tests', 'scenarios', 'all-triggers.ndjson');
const KEY = 'console-child-key-0123456789ab';
// Quiet hours off: the new events are stamped with the wall clock, whatever the hour of the run.
const CAMPAIGNS = { guards: { quietHours: null, cap: { max: 3, window: '24h' } } };
const skip = !mockClusterAvailable() ? 'kcat (mock cluster) not installed' : !existsSync(CHROMIUM) ? `${CHROMIUM} not installed (apt-get install chromium)` : false;

let cluster: MockCluster | undefined;
let child: ChildInstance | undefined;
let browser: Browser | undefined;
let kafka: Kafka;
let page: Page;
let base = '';
const dir = tempDir('h18-console-child-');

const send = async (topic: string, key: string, value: object, at: number): Promise<void> => {
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: [{ key, value: JSON.stringify(value), timestamp: String(at) }] });
  } finally {
    await producer.disconnect();
  }
};

before(async () => {
  if (skip !== false) return;
  cluster = await startMockCluster();
  kafka = testKafka(cluster.brokers);
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  for (const line of readFileSync(SCENARIO, 'utf8').split('\n').filter((l) => l !== '')) {
    const e = JSON.parse(line) as { topic: string; key: string; value: { occurredAt?: number; updatedAt?: number } };
    await producer.send({ topic: e.topic, acks: -1, messages: [{ key: e.key, value: JSON.stringify(e.value), timestamp: String(e.value.occurredAt ?? e.value.updatedAt) }] });
  }
  await producer.disconnect();
  const file = join(dir.dir, 'campaigns.json');
  writeFileSync(file, JSON.stringify(CAMPAIGNS));
  child = await startChild({
    ...fastGroupEnv(cluster.brokers.join(',')),
    KAIROS_APPLICATION_ID: 'console-child',
    KAIROS_STATE_DIR: join(dir.dir, 'state'),
    KAIROS_HTTP_PORT: '0',
    KAIROS_HTTP_HOST: '127.0.0.1',
    KAIROS_API_KEYS: `manager:${KEY}:read+console+console-publish`,
    KAIROS_CAMPAIGNS: file,
    KAIROS_CAMPAIGNS_TOPIC: 'crm.campaigns.v1',
    KAIROS_PUNCTUATE_MS: '250',
    KAIROS_COMMIT_INTERVAL_MS: '100',
    KAIROS_IDLE_ADVANCE_MS: '1000',
    KAIROS_LOG_LEVEL: 'warn',
  });
  const m = /campaign console on (http:\/\/127\.0\.0\.1:\d+)\/console/.exec(child.stderr());
  assert.ok(m?.[1], child.stderr());
  base = m[1];
  await until("frank's decision in the query API", async () => {
    const r = await fetch(`${base}/v1/customers/frank`, { headers: { 'x-api-key': KEY } });
    return r.ok && ((await r.json()) as { decisions: { reason: string }[] }).decisions.some((d) => d.reason === 'no-consent');
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
});

after(async () => {
  await browser?.close();
  if (child !== undefined && child.child.exitCode === null) {
    child.child.kill('SIGTERM');
    const killer = setTimeout(() => child?.child.kill('SIGKILL'), 30_000);
    await child.exited;
    clearTimeout(killer);
  }
  await cluster?.stop();
  dir.remove();
});

test('kairos start: read a decision reason, lower a threshold in the form, preview the difference, publish, and the engine applies it', { skip, timeout: 180_000 }, async () => {
  // 1. A customer's decision and its reason.
  await page.goto(`${base}/console/customer?id=frank`);
  await page.getByLabel('API key').fill(KEY);
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/console\/customer\?id=frank$/);
  assert.match(await page.locator('#why-not tr[data-type="BASKET_ABANDONED"]').innerText(), /suppressed\s+no consent/);
  assert.match(await page.locator('#decisions').innerText(), /SUPPRESSED\s+no-consent/);

  // nina's mug drops 6 % below the price she added it at: under the default 10 % threshold, no trigger.
  const now = Date.now();
  const nina: CustomerProfile = { customerId: 'nina', updatedAt: now - 60_000, timezone: 'UTC', consents: { push: true, email: true, onsite: true }, pushTokens: [], segments: [], attributes: {} };
  const add: BasketEvent = { eventId: 'n-1', customerId: 'nina', occurredAt: now - 50_000, type: 'ITEM_ADDED', sku: 'mug-1', productId: 'mug', quantity: 1, unitPrice: { amount: 10_000, currency: 'EUR' } };
  const drop = (eventId: string, amount: number, at: number): CatalogEvent => ({ eventId, sku: 'mug-1', productId: 'mug', occurredAt: at, type: 'PRICE_CHANGED', price: { amount, currency: 'EUR' } });
  await send('crm.customers.v1', 'nina', nina, nina.updatedAt);
  await send('shop.basket.v1', 'nina', add, add.occurredAt);
  await send('shop.catalog.v1', 'mug-1', drop('n-c1', 9_400, now - 40_000), now - 40_000);
  const ninaView = async (): Promise<{ basket: { items: unknown[] } | null; triggers: { type: string }[] }> => {
    const r = await fetch(`${base}/v1/customers/nina`, { headers: { 'x-api-key': KEY } });
    return r.ok ? ((await r.json()) as { basket: { items: unknown[] } | null; triggers: { type: string }[] }) : { basket: null, triggers: [] };
  };
  await until("nina's basket in the engine", async () => ((await ninaView()).basket?.items.length ?? 0) === 1);

  // 2. Lower the price-drop threshold in the form generated from the config schema.
  await page.getByRole('link', { name: 'Campaign settings' }).click();
  await page.waitForURL(/\/console\/settings$/);
  assert.equal(await page.locator('#cfg-version').innerText(), '1');
  await page.locator('details[data-group="/campaigns"] > summary').click();
  await page.locator('details[data-group="/campaigns/basket-price-drop"] > summary').click();
  const threshold = page.getByLabel('campaigns › basket-price-drop › params › minDropPercent');
  assert.equal(await threshold.inputValue(), '');
  await threshold.fill('5');
  await threshold.press('Tab');
  await page.locator('#diff').waitFor();
  assert.match(await page.locator('#diff').innerText(), /\/basketPriceDrop\/params\/minDropPercent\s+10\s+5/);
  assert.deepEqual((JSON.parse(await page.getByLabel('Campaign config (JSON)').inputValue()) as { campaigns?: unknown }).campaigns, { 'basket-price-drop': { params: { minDropPercent: 5 } } });

  // 3. The preview over the input topics: nina would get a price drop with the edit only.
  await page.getByLabel('Events to replay').selectOption('30d');
  await page.getByRole('button', { name: 'Preview', exact: true }).click();
  await page.locator('#preview-types').waitFor({ timeout: 90_000 });
  const row = await page.locator('#preview-types tr', { hasText: 'BASKET_PRICE_DROP' }).innerText();
  assert.match(row, /^BASKET_PRICE_DROP\s+1\s+2\s+\+1\s.*\bnina\s+–$/);

  // 4. Publish; the engine applies the record from the topic, and the page says who published it.
  await page.getByRole('button', { name: 'Publish to crm.campaigns.v1' }).click();
  await page.getByText(/Applied: version 2 is in force \(from crm\.campaigns\.v1\[\d\]@\d+, published by key:manager at /).waitFor({ timeout: 60_000 });
  await page.reload();
  assert.equal(await page.locator('#cfg-version').innerText(), '2');
  assert.match(await page.locator('#cfg-source').innerText(), /^crm\.campaigns\.v1\[\d\]@\d+$/);
  assert.match(await page.locator('#cfg-publisher').innerText(), /published by key:manager at \d{4}-/);

  // 5. The next 6 % drop (below the price she added it at, as before) now notifies her.
  assert.deepEqual((await ninaView()).triggers, []);
  await send('shop.catalog.v1', 'mug-1', drop('n-c2', 9_300, Date.now()), Date.now());
  await until('the price drop sent to nina under the published config', async () => (await ninaView()).triggers.some((t) => t.type === 'BASKET_PRICE_DROP'));
  await page.goto(`${base}/console/customer?id=nina`);
  assert.match(await page.locator('#triggers').innerText(), /BASKET_PRICE_DROP\s+basket-price-drop/);
  assert.match(await page.locator('#why-not tr[data-type="BASKET_PRICE_DROP"]').innerText(), /sent/i);
  // Her recent events, as far as the engine keeps them (the event ids its input deduplication saw).
  assert.match(await page.locator('#recent-events').innerText(), /shop\.basket\.v1\s+n-1/);
  assert.match(await page.locator('#triggers').innerText(), /@\d+ \(n-c2\)/);

  // A config another instance publishes (its record with the same headers): this one shows who and when.
  const edited = JSON.parse(await page.goto(`${base}/console/api/settings/state`).then(async (r) => (await r?.text()) ?? '{}')) as { config: Record<string, unknown> };
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  await producer.send({ topic: 'crm.campaigns.v1', acks: -1, messages: [{ key: 'campaigns', value: JSON.stringify(edited.config), headers: { 'kairos-published-by': 'key:elsewhere', 'kairos-published-at': '2026-12-01T09:00:00.000Z' } }] });
  await producer.disconnect();
  await until('version 3 applied', async () => {
    await page.goto(`${base}/console/settings`);
    return (await page.locator('#cfg-version').innerText()) === '3';
  });
  assert.equal(await page.locator('#cfg-publisher').innerText(), ', published by key:elsewhere at 2026-12-01T09:00:00.000Z');
});
