import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { dispatchConfigurationTable, loadDispatchConfig } from '../../src/dispatch/config.js';
import { isKairosError } from '../../src/errors.js';
import { localDay } from '../../src/dispatch/redis-guards.js';
import { render } from '../../src/dispatch/templates.js';
import { classifyFcmError } from '../../src/dispatch/push-fcm.js';
import { classifySmtpError } from '../../src/dispatch/email-smtp.js';
import { makeTrigger } from '../support/dispatch.js';

const base = { KAFKA_BROKERS: 'b:9092', FCM_PROJECT_ID: 'p', SMTP_URL: 'smtp://mail:25', KAIROS_WEBHOOK_URL: 'https://partner.test/hook', KAIROS_WEBHOOK_SECRET: '0123456789abcdef0' };

test('dispatch config: defaults, channel maps parsed, frozen', () => {
  const c = loadDispatchConfig(base);
  assert.deepEqual(c.channels, ['push', 'email', 'onsite', 'webhook']);
  assert.deepEqual(c.caps, { push: 3, email: 2, onsite: 20 });
  assert.deepEqual(c.rates, { push: 500, email: 50, webhook: 100 });
  assert.equal(c.maxAttempts, 5);
  assert.ok(Object.isFrozen(c));
  const only = loadDispatchConfig({ KAFKA_BROKERS: 'b:9092', KAIROS_DISPATCH_CHANNELS: 'onsite', KAIROS_DISPATCH_CAPS: 'onsite=1' });
  assert.deepEqual(only.channels, ['onsite']);
  assert.deepEqual(only.caps, { onsite: 1 });
});

test('dispatch config: every bad or missing variable is named at once (KAIROS_ERR_CONFIG)', () => {
  try {
    loadDispatchConfig({
      KAIROS_DISPATCH_CHANNELS: 'push,sms',
      KAIROS_DISPATCH_CAPS: 'push=x',
      KAIROS_DISPATCH_MAX_ATTEMPTS: '0',
      REDIS_URL: 'localhost:6379',
      KAIROS_DEFAULT_TIMEZONE: 'Mars/Olympus',
      KAIROS_WEBHOOK_URL: 'https://partner.test',
    });
    assert.fail('should throw');
  } catch (err) {
    assert.ok(isKairosError(err, 'KAIROS_ERR_CONFIG'));
    for (const name of ['KAFKA_BROKERS', 'KAIROS_DISPATCH_CHANNELS', 'KAIROS_DISPATCH_CAPS', 'KAIROS_DISPATCH_MAX_ATTEMPTS', 'REDIS_URL', 'KAIROS_DEFAULT_TIMEZONE', 'KAIROS_WEBHOOK_SECRET']) {
      assert.match(err.message, new RegExp(name), name);
    }
  }
  assert.throws(() => loadDispatchConfig({ KAFKA_BROKERS: 'b:9092' }), /FCM_PROJECT_ID: required[\s\S]*SMTP_URL: required[\s\S]*KAIROS_WEBHOOK_URL: required/);
});

test('README carries the dispatch configuration table verbatim', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes(dispatchConfigurationTable()), 'README.md must contain dispatchConfigurationTable() verbatim (see src/dispatch/config.ts)');
});

test('caps count per calendar day in the customer\'s time zone', () => {
  const at = Date.UTC(2026, 0, 1, 20, 30); // 20:30 UTC = 05:30 next day in Tokyo, 21:30 in Berlin
  assert.equal(localDay(at, 'Asia/Tokyo').day, '2026-01-02');
  assert.equal(localDay(at, 'Europe/Berlin').day, '2026-01-01');
  assert.equal(localDay(at, 'Europe/Berlin').msToEnd, (2 * 60 + 30) * 60_000 + 3600_000);
});

test('templates per type and language, English fallback, HTML escaped', () => {
  const t = makeTrigger('tpl', { type: 'WISHLIST_BACK_IN_STOCK', payload: { sku: 's', productId: '<b>Shoe</b>', stock: 4 } });
  const de = render({ trigger: t, live: { stock: 2 }, locale: 'de-AT', shopUrl: 'https://shop.test/' });
  assert.equal(de.language, 'de');
  assert.equal(de.subject, 'Wieder da: <b>Shoe</b>');
  assert.match(de.text, /2 verfügbar/, 'live stock');
  assert.ok(!de.html.includes('<b>Shoe'));
  const fr = render({ trigger: t, live: undefined, locale: 'fr-FR', shopUrl: 'https://shop.test' });
  assert.equal(fr.language, 'en');
  assert.match(fr.link, /^https:\/\/shop\.test\/p\/%3Cb%3EShoe%3C%2Fb%3E\?/);
});

test('provider errors are classified: bad tokens, transient, permanent', () => {
  assert.deepEqual(classifyFcmError('messaging/registration-token-not-registered', ''), { token: 'unregistered', transient: false });
  assert.deepEqual(classifyFcmError('messaging/invalid-argument', 'The registration token is not a valid FCM registration token'), { token: 'invalid', transient: false });
  assert.deepEqual(classifyFcmError('messaging/invalid-argument', 'bad ttl'), { transient: false });
  assert.deepEqual(classifyFcmError('messaging/server-unavailable', ''), { transient: true });
  assert.deepEqual(classifyFcmError('messaging/third-party-auth-error', ''), { transient: false });
  assert.equal(classifySmtpError({ responseCode: 451 }).permanent, false);
  assert.equal(classifySmtpError({ responseCode: 550, code: 'EENVELOPE' }).permanent, true);
  assert.equal(classifySmtpError({ code: 'ECONNECTION' }).permanent, false);
});

test('kairos dispatch with a bad environment exits 2 and names the variables', async () => {
  const { run } = await import('../../src/cli/main.js');
  const saved = { ...process.env };
  let err = '';
  const io = { stdout: { write: () => true }, stderr: { write: (s: string) => ((err += s), true) } } as unknown as Parameters<typeof run>[1];
  try {
    delete process.env.KAFKA_BROKERS;
    process.env.KAIROS_DISPATCH_CHANNELS = 'onsite';
    process.env.REDIS_URL = 'nope';
    assert.equal(await run(['dispatch'], io), 2);
  } finally {
    process.env = saved;
  }
  assert.match(err, /KAFKA_BROKERS: required/);
  assert.match(err, /REDIS_URL="nope"/);
});
