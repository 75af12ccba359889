/**
 * The event contract (DESIGN §2) and the trigger (DESIGN §3): the single source of truth.
 *
 * Every topic's value is a TypeBox schema here. From it come
 *  - the TypeScript types (`Static<…>`, below), so code and schema cannot drift;
 *  - the JSON Schema files in schemas/json/ and the Avro schemas in schemas/avro/ (`npm run schemas:generate`;
 *    a test fails when the files on disk differ from what this module generates);
 *  - runtime validation with one error per bad field (src/serde/validate.ts).
 *
 * Conventions: times are epoch milliseconds of event time; money is integer minor units plus an ISO-4217 code;
 * ids are non-empty strings of at most 128 characters. Free-form JSON objects (trigger payloads, explanations,
 * profile attributes) carry `avro: 'json'` and travel as JSON text in Avro.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

/** Namespace of the generated Avro schemas. */
export const AVRO_NAMESPACE = 'io.kairos.v1';

const Id = (description: string) => Type.String({ minLength: 1, maxLength: 128, description });
const EpochMs = (description: string) => Type.Integer({ minimum: 0, maximum: 8_640_000_000_000_000, description });

export const Money = Type.Object(
  {
    amount: Type.Integer({ minimum: 0, description: 'amount in minor units (cents)' }),
    currency: Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO-4217 currency code, e.g. EUR' }),
  },
  { $id: 'Money', additionalProperties: false },
);
export type Money = Static<typeof Money>;

/** A free-form JSON object; Avro carries it as JSON text. */
const JsonObject = (description: string) => Type.Record(Type.String(), Type.Unknown(), { description, avro: 'json' });

export const BasketEventType = Type.Union(
  [Type.Literal('ITEM_ADDED'), Type.Literal('ITEM_REMOVED'), Type.Literal('QUANTITY_CHANGED'), Type.Literal('CHECKOUT_STARTED'), Type.Literal('BASKET_VIEWED')],
  { $id: 'BasketEventType' },
);

export const BasketEvent = Type.Object(
  {
    eventId: Id('unique id of this event; idempotency and trigger causality'),
    customerId: Id('the customer; equals the Kafka key'),
    occurredAt: EpochMs('event time'),
    type: BasketEventType,
    sku: Type.Optional(Id('required for ITEM_ADDED, ITEM_REMOVED, QUANTITY_CHANGED')),
    productId: Type.Optional(Id('the product (all sizes) the sku belongs to')),
    quantity: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'items added/removed, or the new quantity for QUANTITY_CHANGED' })),
    unitPrice: Type.Optional(Money),
  },
  { $id: 'BasketEvent', additionalProperties: false, description: 'shop.basket.v1' },
);
export type BasketEvent = Static<typeof BasketEvent>;

export const WishlistEvent = Type.Object(
  {
    eventId: Id('unique id of this event'),
    customerId: Id('the customer; equals the Kafka key'),
    occurredAt: EpochMs('event time'),
    type: Type.Union([Type.Literal('ITEM_ADDED'), Type.Literal('ITEM_REMOVED')], { $id: 'WishlistEventType' }),
    productId: Id('the wished product'),
    sku: Type.Optional(Id('a specific size; absent = any size of the product')),
  },
  { $id: 'WishlistEvent', additionalProperties: false, description: 'shop.wishlist.v1' },
);
export type WishlistEvent = Static<typeof WishlistEvent>;

export const OrderItem = Type.Object(
  {
    sku: Id('the bought sku'),
    productId: Id('its product'),
    quantity: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    unitPrice: Money,
  },
  { $id: 'OrderItem', additionalProperties: false },
);

export const OrderEvent = Type.Object(
  {
    eventId: Id('unique id of this event'),
    orderId: Id('the order'),
    customerId: Id('the customer; equals the Kafka key'),
    occurredAt: EpochMs('event time'),
    items: Type.Array(OrderItem, { minItems: 1, maxItems: 10_000 }),
  },
  { $id: 'OrderEvent', additionalProperties: false, description: 'shop.orders.v1' },
);
export type OrderEvent = Static<typeof OrderEvent>;

export const PageviewEvent = Type.Object(
  {
    eventId: Id('unique id of this event'),
    customerId: Id('the customer; equals the Kafka key'),
    occurredAt: EpochMs('event time'),
    productId: Id('the viewed product'),
    sku: Type.Optional(Id('the viewed sku, when the page shows one')),
  },
  { $id: 'PageviewEvent', additionalProperties: false, description: 'shop.pageviews.v1' },
);
export type PageviewEvent = Static<typeof PageviewEvent>;

export const CatalogEvent = Type.Object(
  {
    eventId: Id('unique id of this event'),
    sku: Id('the sku; equals the Kafka key'),
    productId: Id('its product'),
    occurredAt: EpochMs('event time'),
    type: Type.Union([Type.Literal('PRICE_CHANGED'), Type.Literal('STOCK_CHANGED')], { $id: 'CatalogEventType' }),
    price: Type.Optional(Money),
    stock: Type.Optional(Type.Integer({ minimum: 0, description: 'units in stock; required for STOCK_CHANGED' })),
  },
  { $id: 'CatalogEvent', additionalProperties: false, description: 'shop.catalog.v1' },
);
export type CatalogEvent = Static<typeof CatalogEvent>;

export const PushToken = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 4096, description: 'FCM registration token' }),
    platform: Type.Union([Type.Literal('android'), Type.Literal('ios'), Type.Literal('web')], { $id: 'PushPlatform' }),
  },
  { $id: 'PushToken', additionalProperties: false },
);

export const CustomerProfile = Type.Object(
  {
    customerId: Id('the customer; equals the Kafka key'),
    updatedAt: EpochMs('when the profile last changed'),
    timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'IANA time zone, e.g. Europe/Berlin' })),
    locale: Type.Optional(Type.String({ pattern: '^[a-z]{2,3}(-[A-Z]{2})?$', description: 'BCP-47 language[-REGION], e.g. de-DE' })),
    consents: Type.Object(
      { push: Type.Boolean(), email: Type.Boolean(), onsite: Type.Boolean() },
      { $id: 'Consents', additionalProperties: false },
    ),
    pushTokens: Type.Array(PushToken, { maxItems: 100 }),
    email: Type.Optional(Type.String({ minLength: 3, maxLength: 320, pattern: '^[^@\\s]+@[^@\\s]+$' })),
    segments: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 1000 }),
    // Bounded like every other field, so a profile stays small (at most ~250 KB of attributes).
    attributes: Type.Record(Type.String(), Type.Union([Type.Number(), Type.String({ maxLength: 1024 }), Type.Boolean()]), {
      maxProperties: 200,
      description: 'name → number | string (≤ 1024 characters) | boolean, at most 200 names, e.g. clv, churnRisk',
    }),
  },
  { $id: 'CustomerProfile', additionalProperties: false, description: 'crm.customers.v1 (compacted; a null value erases the customer)' },
);
export type CustomerProfile = Static<typeof CustomerProfile>;

export const TriggerType = Type.Union(
  [
    Type.Literal('BASKET_PRICE_DROP'),
    Type.Literal('WISHLIST_BACK_IN_STOCK'),
    Type.Literal('BASKET_ABANDONED'),
    Type.Literal('CHECKOUT_ABANDONED'),
    Type.Literal('BROWSE_ABANDONED'),
  ],
  { $id: 'TriggerType' },
);
export type TriggerType = Static<typeof TriggerType>;

export const Channel = Type.Union([Type.Literal('push'), Type.Literal('email'), Type.Literal('onsite'), Type.Literal('webhook')], { $id: 'Channel' });
export type Channel = Static<typeof Channel>;

export const CausedBy = Type.Object(
  {
    eventId: Id('the event that caused the trigger'),
    topic: Type.String({ minLength: 1, maxLength: 249 }),
    partition: Type.Integer({ minimum: 0 }),
    offset: Type.String({ pattern: '^[0-9]+$', description: 'Kafka offset as a decimal string (64-bit safe); the input line − 1 in replay' }),
  },
  { $id: 'CausedBy', additionalProperties: false },
);

export const Explanation = Type.Object(
  {
    rule: Type.String({ minLength: 1, description: 'the rule that fired, in words' }),
    params: JsonObject('the campaign parameters the rule used'),
    observed: JsonObject('what the rule saw: prices, times, counts'),
  },
  { $id: 'Explanation', additionalProperties: false },
);

export const Trigger = Type.Object(
  {
    triggerId: Type.String({ pattern: '^[0-9a-f]{32}$', description: 'deterministic: hash of topology, customer, type and causing event' }),
    type: TriggerType,
    customerId: Id('the customer; equals the Kafka key'),
    occurredAt: EpochMs('event time at which the trigger fired'),
    campaignId: Id('the campaign whose parameters fired it'),
    variant: Type.String({ minLength: 1, maxLength: 64, description: 'A/B variant' }),
    channels: Type.Array(Channel, { minItems: 1, uniqueItems: true }),
    causedBy: CausedBy,
    explanation: Explanation,
    payload: JsonObject('what the message needs: items, prices, product ids'),
    expiresAt: EpochMs('do not deliver after this time'),
  },
  { $id: 'Trigger', additionalProperties: false, description: 'crm.triggers.v1' },
);
export type Trigger = Static<typeof Trigger>;

export const Decision = Type.Union([Type.Literal('SENT'), Type.Literal('SUPPRESSED'), Type.Literal('HELD')], { $id: 'Decision' });

export const TriggerAudit = Type.Object(
  {
    auditId: Type.String({ pattern: '^[0-9a-f]{32}$' }),
    triggerId: Type.String({ pattern: '^[0-9a-f]{32}$' }),
    type: TriggerType,
    customerId: Id('the customer; equals the Kafka key'),
    occurredAt: EpochMs('event time of the decision'),
    campaignId: Id('the campaign'),
    variant: Type.String({ minLength: 1, maxLength: 64 }),
    decision: Decision,
    reason: Type.String({ minLength: 1, maxLength: 64, description: 'ok | cooldown | cap | quiet-hours | no-consent | holdout | segment | …' }),
    detail: Type.Optional(Type.String({ maxLength: 1024 })),
    causedBy: CausedBy,
    explanation: Explanation,
  },
  { $id: 'TriggerAudit', additionalProperties: false, description: 'crm.trigger-audit.v1: every decision, with its reason' },
);
export type TriggerAudit = Static<typeof TriggerAudit>;

export const DeliveryStatus = Type.Union([Type.Literal('SENT'), Type.Literal('FAILED'), Type.Literal('SKIPPED')], { $id: 'DeliveryStatus' });
export type DeliveryStatus = Static<typeof DeliveryStatus>;

export const Delivery = Type.Object(
  {
    deliveryId: Type.String({ pattern: '^[0-9a-f]{32}$', description: 'deterministic: hash of triggerId and channel' }),
    triggerId: Type.String({ pattern: '^[0-9a-f]{32}$' }),
    type: TriggerType,
    customerId: Id('the customer; equals the Kafka key'),
    campaignId: Id('the campaign'),
    variant: Type.String({ minLength: 1, maxLength: 64 }),
    channel: Channel,
    status: DeliveryStatus,
    reason: Type.String({
      minLength: 1,
      maxLength: 64,
      description: 'ok | expired | no-consent | no-address | cap | stale | duplicate | permanent-error | retries-exhausted | …',
    }),
    detail: Type.Optional(Type.String({ maxLength: 1024 })),
    attempts: Type.Integer({ minimum: 0, description: 'provider calls made for this delivery' }),
    triggeredAt: EpochMs('the trigger\'s occurredAt (event time)'),
    decidedAt: EpochMs('wall-clock time of the delivery result'),
    providerMessageId: Type.Optional(Type.String({ maxLength: 512, description: 'id the provider gave the message, when sent' })),
  },
  { $id: 'Delivery', additionalProperties: false, description: 'crm.deliveries.v1: one result per trigger and channel' },
);
export type Delivery = Static<typeof Delivery>;

export const PushTokenFeedback = Type.Object(
  {
    customerId: Id('the customer; equals the Kafka key'),
    token: Type.String({ minLength: 1, maxLength: 4096, description: 'the FCM registration token the provider rejected' }),
    reason: Type.Union([Type.Literal('unregistered'), Type.Literal('invalid')], { description: 'unregistered: app removed; invalid: malformed token' }),
    observedAt: EpochMs('wall-clock time of the rejection'),
    triggerId: Type.String({ pattern: '^[0-9a-f]{32}$', description: 'the trigger whose send revealed it' }),
  },
  { $id: 'PushTokenFeedback', additionalProperties: false, description: 'crm.push-token-feedback.v1: tokens profiles should drop' },
);
export type PushTokenFeedback = Static<typeof PushTokenFeedback>;

interface TopicSpec<S extends TSchema> {
  readonly schema: S;
  /** The value field that must equal the record key. */
  readonly keyField: string;
  /** The value field holding the record's event time. */
  readonly timestampField: string;
  /** Whether a null value (tombstone) is allowed. */
  readonly tombstones: boolean;
}

const topic = <S extends TSchema>(schema: S, keyField: string, timestampField: string, tombstones = false): TopicSpec<S> => ({
  schema,
  keyField,
  timestampField,
  tombstones,
});

/** One schema per topic. */
export const TOPICS = {
  'shop.basket.v1': topic(BasketEvent, 'customerId', 'occurredAt'),
  'shop.wishlist.v1': topic(WishlistEvent, 'customerId', 'occurredAt'),
  'shop.orders.v1': topic(OrderEvent, 'customerId', 'occurredAt'),
  'shop.pageviews.v1': topic(PageviewEvent, 'customerId', 'occurredAt'),
  'shop.catalog.v1': topic(CatalogEvent, 'sku', 'occurredAt'),
  'crm.customers.v1': topic(CustomerProfile, 'customerId', 'updatedAt', true),
  'crm.triggers.v1': topic(Trigger, 'customerId', 'occurredAt'),
  'crm.trigger-audit.v1': topic(TriggerAudit, 'customerId', 'occurredAt'),
  'crm.deliveries.v1': topic(Delivery, 'customerId', 'decidedAt'),
  'crm.push-token-feedback.v1': topic(PushTokenFeedback, 'customerId', 'observedAt'),
} as const;

export type TopicName = keyof typeof TOPICS;
/** The value type of a topic (tombstones add `null` where allowed). */
export type TopicValue<T extends TopicName> = Static<(typeof TOPICS)[T]['schema']>;

export function isTopicName(name: string): name is TopicName {
  return Object.hasOwn(TOPICS, name);
}
