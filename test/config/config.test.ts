import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { configurationTable, loadRuntimeConfig } from '../../src/config/runtime.js';
import { isKairosError } from '../../src/errors.js';
import { checkCopartitioned } from '../../src/kafka/topics.js';

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(isKairosError(err, 'KAIROS_ERR_CONFIG') || isKairosError(err, 'KAIROS_ERR_COPARTITION'), String(err));
    return (err as Error).message;
  }
  assert.fail('expected an error');
}

test('runtime config: defaults, parsing, and every bad variable named in one error', () => {
  const ok = loadRuntimeConfig({ KAFKA_BROKERS: 'a:9092, b:9093', KAIROS_HTTP_PORT: '0' });
  assert.deepEqual(ok.brokers, ['a:9092', 'b:9093']);
  assert.equal(ok.httpPort, 0);
  assert.equal(ok.sessionTimeout, 30_000);
  assert.equal(ok.serde, 'json');
  assert.equal(ok.campaigns, undefined);
  const msg = configError(() =>
    loadRuntimeConfig({ KAFKA_BROKERS: 'localhost', KAIROS_HTTP_PORT: 'eighty', KAIROS_SERDE: 'avro', KAFKA_HEARTBEAT_MS: '40000' }),
  );
  assert.match(msg, /KAFKA_BROKERS="localhost"/);
  assert.match(msg, /KAIROS_HTTP_PORT="eighty"/);
  assert.match(msg, /KAFKA_HEARTBEAT_MS: must be below KAFKA_SESSION_TIMEOUT_MS/);
  assert.match(msg, /SCHEMA_REGISTRY_URL: required when KAIROS_SERDE=avro/);
  assert.match(configError(() => loadRuntimeConfig({})), /KAFKA_BROKERS: required/);
});

test('runtime config: Kafka TLS/SASL and API keys are checked as a whole, naming each missing or bad variable', () => {
  const base = { KAFKA_BROKERS: 'b:9092' };
  const sasl = configError(() => loadRuntimeConfig({ ...base, KAFKA_SASL_MECHANISM: 'scram-sha-512' }));
  assert.match(sasl, /KAFKA_SASL_USERNAME: required when KAFKA_SASL_MECHANISM is set/);
  assert.match(sasl, /KAFKA_SASL_PASSWORD: required when KAFKA_SASL_MECHANISM is set/);
  assert.match(configError(() => loadRuntimeConfig({ ...base, KAFKA_SASL_MECHANISM: 'gssapi' })), /KAFKA_SASL_MECHANISM="gssapi"/);
  assert.match(configError(() => loadRuntimeConfig({ ...base, KAFKA_SSL_CA_FILE: '/nonexistent/ca.pem' })), /KAFKA_SSL_CA_FILE="\/nonexistent\/ca.pem": no such file/);
  assert.match(configError(() => loadRuntimeConfig({ ...base, KAIROS_API_KEYS: 'shop:short' })), /KAIROS_API_KEYS: key "shop": at least 16 characters/);
  assert.match(configError(() => loadRuntimeConfig({ ...base, KAIROS_API_KEYS: 'shop:0123456789abcdef:admin' })), /unknown scope "admin"/);
  assert.match(configError(() => loadRuntimeConfig({ ...base, KAIROS_API_TOKEN_SECRET: 'too-short' })), /KAIROS_API_TOKEN_SECRET/);
  const ok = loadRuntimeConfig({ ...base, KAFKA_SSL: 'true', KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' });
  assert.equal(ok.kafkaSsl, 'true');
  assert.equal(ok.kafkaSaslMechanism, 'plain');
});

test('the README configuration table is generated from the config schema (no drift)', () => {
  const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
  assert.ok(readme.includes(configurationTable()), 'README.md must contain configurationTable() verbatim (see src/config/runtime.ts)');
});

test('campaign config: defaults, durations, and field paths in errors', () => {
  const d = resolveCampaigns({});
  assert.deepEqual(d.basketAbandonment?.params, { inactivityGap: 3_600_000, reentryCooldown: 86_400_000, stateTtl: 2_592_000_000 });
  assert.deepEqual(d.basketAbandonment?.channels, ['push', 'email']);
  const c = resolveCampaigns({ campaigns: { 'basket-abandonment': { enabled: false, params: { inactivityGap: 90_000, reentryCooldown: '7d' } } } });
  assert.equal(c.basketAbandonment?.enabled, false);
  assert.equal(c.basketAbandonment?.params.inactivityGap, 90_000);
  assert.equal(c.basketAbandonment?.params.reentryCooldown, 7 * 86_400_000);
  const msg = configError(() => resolveCampaigns({ defaults: { expiresAfter: 'soon' }, campaigns: { 'no-such-topology': {} } }));
  assert.match(msg, /\/defaults\/expiresAfter/);
  assert.match(msg, /\/campaigns\/no-such-topology/);
  assert.match(configError(() => resolveCampaigns({ campaigns: { 'basket-abandonment': { params: { inactivityGap: 0 } } } })), /inactivityGap: must be greater than 0/);
});

test('co-partitioning check names every input topic and its partition count', () => {
  assert.equal(checkCopartitioned(new Map([['a', 4], ['b', 4]]), ['a', 'b']), 4);
  const msg = configError(() => checkCopartitioned(new Map([['shop.basket.v1', 4], ['shop.orders.v1', 8]]), ['shop.basket.v1', 'shop.orders.v1']));
  assert.match(msg, /shop\.basket\.v1=4, shop\.orders\.v1=8/);
});
