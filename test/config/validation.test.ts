/**
 * Issue 15, validation: a bad campaign config names every bad field at once (schema and semantic checks
 * together) with what the field accepts; input records get ISO 4217 currencies and bounded profiles; a bad
 * enum value in an input record names the accepted values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BasketEvent, CatalogEvent, CustomerProfile, OrderEvent } from '../../schemas/contract.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { isKairosError } from '../../src/errors.js';
import { validateValue } from '../../src/serde/validate.js';

function configErrors(input: unknown): string[] {
  try {
    resolveCampaigns(input, 'test');
  } catch (err) {
    assert.ok(isKairosError(err, 'KAIROS_ERR_CONFIG'));
    return (err.details?.errors as string[] | undefined) ?? [];
  }
  return [];
}

test('every bad campaign field is reported at once, with the field and its accepted forms', () => {
  const errors = configErrors({
    guards: { cap: { max: '3', window: '24h' }, quietHours: { start: '25:00', end: '08:00' }, defaultTimezone: 'Mars/Olympus', priority: ['BASKET_ABANDONED'] },
    campaigns: {
      'basket-abandonment': { channels: ['sms'], params: { inactivityGap: '60 minutes' } },
      'browse-abandonment': { params: { sessionGap: 0 } },
      'basket-price-drop': { params: { minDropPercent: 150 } },
    },
  });
  const expected = [
    /^\/guards\/cap\/max: Expected integer \(got "3"\)$/,
    /^\/guards\/quietHours\/start: expected HH:MM, 24 h \(got "25:00"\)$/,
    /^\/campaigns\/basket-abandonment\/channels\/0: expected one of push, email, onsite, webhook \(got "sms"\)$/,
    /^\/campaigns\/basket-abandonment\/params\/inactivityGap: expected milliseconds, or a number with unit ms\|s\|m\|h\|d \(e\.g\. "60m"\) \(got "60 minutes"\)$/,
    /^\/campaigns\/basket-price-drop\/params\/minDropPercent: .*100 \(got 150\)$/,
    // Semantic checks, in the same report as the schema errors.
    /^\/guards\/defaultTimezone: unknown time zone "Mars\/Olympus" \(expected an IANA zone, e\.g\. Europe\/Berlin\)$/,
    /^\/guards\/priority: must rank every trigger type; missing /,
    /^\/campaigns\/browse-abandonment\/params\/sessionGap: must be greater than 0$/,
  ];
  for (const re of expected) assert.ok(errors.some((e) => re.test(e)), `${String(re)} not in:\n${errors.join('\n')}`);
  assert.equal(errors.length, expected.length, errors.join('\n'));
  assert.ok(!errors.some((e) => /Expected union value/.test(e)), errors.join('\n'));
  // A valid config still resolves.
  assert.equal(resolveCampaigns({ guards: { cap: { max: 3, window: '24h' } } }).guards?.cap?.max, 3);
});

const T = Date.UTC(2026, 0, 5);

test('money must carry an ISO 4217 currency code (basket, order and catalog prices)', () => {
  const basket: BasketEvent = { eventId: 'e1', customerId: 'c1', occurredAt: T, type: 'ITEM_ADDED', sku: 's', quantity: 1, unitPrice: { amount: 100, currency: 'ZZZ' } };
  const b = validateValue('shop.basket.v1', basket);
  assert.ok(!b.ok);
  assert.deepEqual(b.errors, [{ path: '/unitPrice/currency', message: 'not an ISO 4217 currency code (got "ZZZ"), e.g. EUR, USD, GBP' }]);
  assert.ok(validateValue('shop.basket.v1', { ...basket, unitPrice: { amount: 100, currency: 'EUR' } }).ok);
  const catalog: CatalogEvent = { eventId: 'e2', sku: 's', productId: 'p', occurredAt: T, type: 'PRICE_CHANGED', price: { amount: 1, currency: 'QQQ' } };
  const c = validateValue('shop.catalog.v1', catalog);
  assert.ok(!c.ok && c.errors[0]?.path === '/price/currency');
  const order: OrderEvent = { eventId: 'e3', orderId: 'o', customerId: 'c1', occurredAt: T, items: [{ sku: 's', productId: 'p', quantity: 1, unitPrice: { amount: 1, currency: 'JPY' } }, { sku: 't', productId: 'p', quantity: 1, unitPrice: { amount: 1, currency: 'ABC' } }] };
  const o = validateValue('shop.orders.v1', order);
  assert.ok(!o.ok && o.errors.length === 1 && o.errors[0]?.path === '/items/1/unitPrice/currency', JSON.stringify(o));
});

test('a profile is bounded: at most 200 attributes, attribute strings of at most 1024 characters (a 5 MB profile is refused)', () => {
  const profile: CustomerProfile = { customerId: 'c1', updatedAt: T, consents: { push: true, email: false, onsite: false }, pushTokens: [], segments: [], attributes: { clv: 1 } };
  assert.ok(validateValue('crm.customers.v1', profile).ok);
  const many = Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`a${i}`, 'x'.repeat(100)]));
  const huge = validateValue('crm.customers.v1', { ...profile, attributes: many });
  assert.ok(!huge.ok && huge.errors.some((e) => e.path === '/attributes'), JSON.stringify(huge).slice(0, 300));
  const long = validateValue('crm.customers.v1', { ...profile, attributes: { note: 'x'.repeat(5_000_000) } });
  assert.ok(!long.ok && long.errors.some((e) => e.path === '/attributes/note'), JSON.stringify(long).slice(0, 300));
});

test('an unknown enum value in an input record names the accepted values', () => {
  const v = validateValue('shop.basket.v1', { eventId: 'e1', customerId: 'c1', occurredAt: T, type: 'ITEM_STOLEN', sku: 's' });
  assert.ok(!v.ok);
  assert.match(v.errors[0]?.message ?? '', /^expected one of ITEM_ADDED, ITEM_REMOVED, QUANTITY_CHANGED, CHECKOUT_STARTED, BASKET_VIEWED \(got "ITEM_STOLEN"\)$/);
});
