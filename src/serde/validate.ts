/**
 * Validation of incoming JSON against the contract: every bad field is reported with its JSON pointer path,
 * then the rules a JSON Schema cannot state (a basket ITEM_ADDED needs a sku, STOCK_CHANGED needs stock, …).
 */
import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { ValueErrorType } from '@sinclair/typebox/value';
import { TOPICS, type BasketEvent, type CatalogEvent, type Money, type TopicName, type TopicValue } from '../../schemas/contract.js';
import { acceptedForms } from '../config/schema-errors.js';

let iso4217: ReadonlySet<string> | undefined;
/** ISO 4217 currency codes (the ones ICU knows; built on first use). */
export function isIso4217(code: string): boolean {
  iso4217 ??= new Set(Intl.supportedValuesOf('currency'));
  return iso4217.has(code);
}

function currencyError(path: string, money: Money | undefined): FieldError[] {
  return money === undefined || isIso4217(money.currency) ? [] : [{ path: `${path}/currency`, message: `not an ISO 4217 currency code (got "${money.currency}"), e.g. EUR, USD, GBP` }];
}

export interface FieldError {
  /** JSON pointer of the bad field ('' = the whole value). */
  readonly path: string;
  readonly message: string;
}

export type Validation<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly errors: readonly FieldError[] };

const compiled = new Map<TopicName, TypeCheck<TSchema>>();

function checkerFor(topic: TopicName): TypeCheck<TSchema> {
  let c = compiled.get(topic);
  if (!c) {
    c = TypeCompiler.Compile(TOPICS[topic].schema);
    compiled.set(topic, c);
  }
  return c;
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const s = JSON.stringify(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Schema errors, one per path (a union reports the same path once per branch; the first message wins). */
export function schemaErrors<S extends TSchema>(check: TypeCheck<S>, value: unknown): FieldError[] {
  const seen = new Set<string>();
  const out: FieldError[] = [];
  for (const e of check.Errors(value)) {
    if (seen.has(e.path)) continue;
    // A parent union error is followed by its branch errors; they say more.
    seen.add(e.path);
    // A union says what it accepts ("one of ITEM_ADDED, …"), not just "Expected union value".
    const message = e.type === ValueErrorType.Union ? `expected ${acceptedForms(e.schema)}` : e.message;
    out.push({ path: e.path, message: `${message} (got ${describe(e.value)})` });
  }
  return out;
}

const SKU_REQUIRED: ReadonlySet<BasketEvent['type']> = new Set(['ITEM_ADDED', 'ITEM_REMOVED', 'QUANTITY_CHANGED']);

/** Rules across fields, checked after the schema. */
function crossFieldErrors(topic: TopicName, value: unknown): FieldError[] {
  const errors: FieldError[] = [];
  if (topic === 'shop.basket.v1') {
    const e = value as BasketEvent;
    if (SKU_REQUIRED.has(e.type) && e.sku === undefined) errors.push({ path: '/sku', message: `required for ${e.type}` });
    if (e.type === 'QUANTITY_CHANGED' && e.quantity === undefined) errors.push({ path: '/quantity', message: 'required for QUANTITY_CHANGED' });
    if (e.type === 'ITEM_ADDED' && e.quantity === 0) errors.push({ path: '/quantity', message: 'must be at least 1 for ITEM_ADDED' });
    errors.push(...currencyError('/unitPrice', e.unitPrice));
  } else if (topic === 'shop.catalog.v1') {
    const e = value as CatalogEvent;
    if (e.type === 'PRICE_CHANGED' && e.price === undefined) errors.push({ path: '/price', message: 'required for PRICE_CHANGED' });
    if (e.type === 'STOCK_CHANGED' && e.stock === undefined) errors.push({ path: '/stock', message: 'required for STOCK_CHANGED' });
    errors.push(...currencyError('/price', e.price));
  } else if (topic === 'shop.orders.v1') {
    const items = (value as TopicValue<'shop.orders.v1'>).items;
    const seen = new Set<string>();
    items.forEach((it, i) => {
      if (seen.has(it.sku)) errors.push({ path: `/items/${i}/sku`, message: `sku ${it.sku} appears twice in the order` });
      seen.add(it.sku);
      errors.push(...currencyError(`/items/${i}/unitPrice`, it.unitPrice));
    });
  }
  return errors;
}

/** Validates a decoded value of `topic`. Never throws. */
export function validateValue<T extends TopicName>(topic: T, value: unknown): Validation<TopicValue<T>> {
  const check = checkerFor(topic);
  if (!check.Check(value)) return { ok: false, errors: schemaErrors(check, value) };
  const cross = crossFieldErrors(topic, value);
  if (cross.length > 0) return { ok: false, errors: cross };
  return { ok: true, value: value as Static<(typeof TOPICS)[T]['schema']> };
}
