import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import avro from 'avsc';
import { TOPICS, type TopicName } from '../../schemas/contract.js';
import { generatedSchemaFiles } from '../../src/serde/schema-files.js';
import { fromAvro, toAvro } from '../../src/serde/avro-value.js';
import { validateValue } from '../../src/serde/validate.js';
import { eur, validSamples } from '../support/samples.js';

const root = join(import.meta.dirname, '..', '..', 'schemas');
test('schemas/avro and schemas/json on disk are exactly what schemas/contract.ts generates (run npm run schemas:generate)', () => {
  const files = generatedSchemaFiles();
  assert.equal(files.size, Object.keys(TOPICS).length * 2, 'one Avro and one JSON schema per topic');
  for (const [rel, content] of files) {
    assert.equal(readFileSync(join(root, rel), 'utf8'), content, `schemas/${rel} drifted from schemas/contract.ts`);
  }
});

test('every sample validates and round-trips through its generated Avro schema unchanged', () => {
  for (const topic of Object.keys(TOPICS) as TopicName[]) {
    const type = avro.Type.forSchema(JSON.parse(readFileSync(join(root, 'avro', `${topic}.avsc`), 'utf8')) as avro.Schema);
    const schema = TOPICS[topic].schema;
    for (const value of validSamples[topic]) {
      const v = validateValue(topic, value);
      assert.ok(v.ok, `${topic}: ${JSON.stringify(v.ok ? [] : v.errors)}`);
      const buf = type.toBuffer(toAvro(schema, value));
      assert.deepEqual(fromAvro(schema, type.fromBuffer(buf)), value, topic);
    }
  }
});

test('uniqueItems is checked apart from the compiled check (which hashes every element in BigInt): a repeated channel is refused with the full schema\'s error, as before; distinct ones pass', () => {
  const full = TypeCompiler.Compile(TOPICS['crm.triggers.v1'].schema);
  const trigger = validSamples['crm.triggers.v1'][0] as Record<string, unknown>;
  for (const channels of [['push', 'email', 'push'], ['email', 'email'], Array.from({ length: 20 }, (_, i) => ['push', 'email', 'onsite', 'webhook'][i % 4])]) {
    const value = { ...trigger, channels };
    assert.equal(full.Check(value), false);
    const v = validateValue('crm.triggers.v1', value);
    assert.equal(v.ok, false, JSON.stringify(channels));
    assert.deepEqual(v.ok ? [] : v.errors.map((e) => e.path), ['/channels']);
    assert.match(v.ok ? '' : (v.errors[0]?.message ?? ''), /unique/i);
  }
  assert.equal(validateValue('crm.triggers.v1', { ...trigger, channels: ['push', 'email', 'onsite', 'webhook'] }).ok, true);
  // Every sample of every topic: the lean check and the full one agree.
  for (const topic of Object.keys(TOPICS) as TopicName[]) {
    const check = TypeCompiler.Compile(TOPICS[topic].schema);
    for (const value of validSamples[topic]) assert.equal(validateValue(topic, value).ok, check.Check(value), topic);
  }
});

test('validation reports every bad field with its path', () => {
  const v = validateValue('shop.basket.v1', {
    eventId: '',
    customerId: 'c1',
    occurredAt: -5,
    type: 'ITEM_DELETED',
    quantity: 1.5,
    unitPrice: { amount: 100, currency: 'euro' },
    colour: 'red',
  });
  assert.equal(v.ok, false);
  const paths = v.ok ? [] : v.errors.map((e) => e.path).sort();
  assert.deepEqual(paths, ['/colour', '/eventId', '/occurredAt', '/quantity', '/type', '/unitPrice/currency']);
  const missing = validateValue('shop.orders.v1', { eventId: 'o', customerId: 'c', occurredAt: 1, items: [] });
  assert.deepEqual(missing.ok ? [] : missing.errors.map((e) => e.path).sort(), ['/items', '/orderId']);
});

test('cross-field rules: sku for item events, quantity for QUANTITY_CHANGED, price and stock per catalog type, no duplicate order skus', () => {
  const errs = (topic: TopicName, value: unknown) => {
    const v = validateValue(topic, value);
    return v.ok ? [] : v.errors.map((e) => `${e.path} ${e.message}`);
  };
  assert.deepEqual(errs('shop.basket.v1', { eventId: 'e', customerId: 'c', occurredAt: 1, type: 'ITEM_ADDED' }), ['/sku required for ITEM_ADDED']);
  assert.deepEqual(errs('shop.basket.v1', { eventId: 'e', customerId: 'c', occurredAt: 1, type: 'QUANTITY_CHANGED', sku: 's' }), [
    '/quantity required for QUANTITY_CHANGED',
  ]);
  assert.deepEqual(errs('shop.basket.v1', { eventId: 'e', customerId: 'c', occurredAt: 1, type: 'ITEM_ADDED', sku: 's', quantity: 0 }), [
    '/quantity must be at least 1 for ITEM_ADDED',
  ]);
  assert.deepEqual(errs('shop.catalog.v1', { eventId: 'e', sku: 's', productId: 'p', occurredAt: 1, type: 'STOCK_CHANGED', price: eur(1) }), [
    '/stock required for STOCK_CHANGED',
  ]);
  assert.deepEqual(errs('shop.catalog.v1', { eventId: 'e', sku: 's', productId: 'p', occurredAt: 1, type: 'PRICE_CHANGED' }), ['/price required for PRICE_CHANGED']);
  const item = { sku: 's', productId: 'p', quantity: 1, unitPrice: eur(1) };
  assert.deepEqual(errs('shop.orders.v1', { eventId: 'e', orderId: 'o', customerId: 'c', occurredAt: 1, items: [item, item] }), [
    '/items/1/sku sku s appears twice in the order',
  ]);
});
