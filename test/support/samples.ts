/** Valid values of every topic (using every optional field somewhere), shared by the schema and serde tests. */
import type { TopicName, TopicValue } from '../../schemas/contract.js';

export const eur = (amount: number) => ({ amount, currency: 'EUR' });
const cause = { eventId: 'e1', topic: 'shop.basket.v1', partition: 3, offset: '9007199254740993' };
const explanation = { rule: 'r', params: { inactivityGap: 3600000 }, observed: { basketValue: eur(100), nested: [1, 'a', null, true] } };

/** One valid value per topic, using every optional field somewhere. */
export const validSamples: { [T in TopicName]: TopicValue<T>[] } = {
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
  'crm.deliveries.v1': [
    {
      deliveryId: 'fedcba9876543210fedcba9876543210',
      triggerId: '0123456789abcdef0123456789abcdef',
      type: 'BASKET_PRICE_DROP',
      customerId: 'c1',
      campaignId: 'pd',
      variant: 'B',
      channel: 'push',
      status: 'SENT',
      reason: 'ok',
      detail: 'sent to 2 of 3 tokens',
      attempts: 2,
      triggeredAt: 10,
      decidedAt: 12,
      providerMessageId: 'projects/p/messages/1',
    },
    {
      deliveryId: 'fedcba9876543210fedcba9876543211',
      triggerId: '0123456789abcdef0123456789abcdef',
      type: 'BASKET_PRICE_DROP',
      customerId: 'c1',
      campaignId: 'pd',
      variant: 'B',
      channel: 'email',
      status: 'SKIPPED',
      reason: 'stale',
      attempts: 0,
      triggeredAt: 10,
      decidedAt: 12,
    },
  ],
  'crm.push-token-feedback.v1': [{ customerId: 'c1', token: 'tok', reason: 'unregistered', observedAt: 12, triggerId: '0123456789abcdef0123456789abcdef' }],
};

/** The first sample of each topic. */
export const sampleOf = <T extends TopicName>(topic: T): TopicValue<T> => validSamples[topic][0] as TopicValue<T>;
