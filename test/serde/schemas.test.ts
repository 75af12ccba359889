import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import avro from 'avsc';
import { TOPICS, type TopicName, type TopicValue } from '../../schemas/contract.js';
import { generatedSchemaFiles } from '../../src/serde/schema-files.js';
import { fromAvro, toAvro } from '../../src/serde/avro-value.js';
import { validateValue } from '../../src/serde/validate.js';

const root = join(import.meta.dirname, '..', '..', 'schemas');
const eur = (amount: number) => ({ amount, currency: 'EUR' });
const cause = { eventId: 'e1', topic: 'shop.basket.v1', partition: 3, offset: '9007199254740993' };
const explanation = { rule: 'r', params: { inactivityGap: 3600000 }, observed: { basketValue: eur(100), nested: [1, 'a', null, true] } };

/** One valid value per topic, using every optional field somewhere. */
const samples: { [T in TopicName]: TopicValue<T>[] } = {
  'shop.basket.v1': [
    { eventId: 'e1', customerId: 'c1', occurredAt: 1, type: 'ITEM_ADDED', sku: 's1', productId: 'p1', quantity: 2, unitPrice: eur(1999) },
    { eventId: 'e2', customerId: 'c1', occurredAt: 2, type: 'CHECKOUT_STARTED' },
  ],
  'shop.wishlist.v1': [
    { eventId: 'w1', customerId: 'c1', occurredAt: 1, type: 'ITEM_ADDED', productId: 'p1' },
    { eventId: 'w2', customerId: 'c1', occurredAt: 1, type: 'ITEM_REMOVED', productId: 'p1', sku: 's1' },
  ],
  'shop.orders.v1': [{ eventId: 'o1', orderId: 'ord1', customerId: 'c1', occurredAt: 5, items: [{ sku: 's1', productId: 'p1', quantity: 1, unitPrice: eur(1999) }] }],
  'shop.pageviews.v1': [{ eventId: 'v1', customerId: 'c1', occurredAt: 5, productId: 'p1', sku: 's1' }],
  'shop.catalog.v1': [
    { eventId: 'k1', sku: 's1', productId: 'p1', occurredAt: 5, type: 'PRICE_CHANGED', price: eur(1499) },
    { eventId: 'k2', sku: 's1', productId: 'p1', occurredAt: 6, type: 'STOCK_CHANGED', stock: 0 },
  ],
  'crm.customers.v1': [
    {
      customerId: 'c1',
      updatedAt: 7,
      timezone: 'Europe/Berlin',
      locale: 'de-DE',
      consents: { push: true, email: false, onsite: true },
      pushTokens: [{ token: 'tok', platform: 'ios' }],
      email: 'a@example.com',
      segments: ['vip'],
      attributes: { clv: 812.5, churnRisk: 0.8, tier: 'gold', newsletter: true },
    },
  ],
  'crm.triggers.v1': [
    {
      triggerId: '0123456789abcdef0123456789abcdef',
      type: 'BASKET_ABANDONED',
      customerId: 'c1',
      occurredAt: 10,
      campaignId: 'ba',
      variant: 'default',
      channels: ['push', 'email'],
      causedBy: cause,
      explanation,
      payload: { items: [{ sku: 's1', quantity: 1 }], basketValue: null },
      expiresAt: 20,
    },
  ],
  'crm.trigger-audit.v1': [
    {
      auditId: 'abcdefabcdefabcdefabcdefabcdefab',
      triggerId: '0123456789abcdef0123456789abcdef',
      type: 'CHECKOUT_ABANDONED',
      customerId: 'c1',
      occurredAt: 10,
      campaignId: 'ba',
      variant: 'default',
      decision: 'SUPPRESSED',
      reason: 'cooldown',
      detail: 'last at …',
      causedBy: cause,
      explanation,
    },
  ],
};

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
    for (const value of samples[topic]) {
      const v = validateValue(topic, value);
      assert.ok(v.ok, `${topic}: ${JSON.stringify(v.ok ? [] : v.errors)}`);
      const buf = type.toBuffer(toAvro(schema, value));
      assert.deepEqual(fromAvro(schema, type.fromBuffer(buf)), value, topic);
    }
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
