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

/**
 * A topic's compiled check, built from its schema without `uniqueItems` on arrays of primitive values: TypeBox's
 * compiled check hashes every element of such an array with a 64-bit FNV-1a in BigInt arithmetic (a trigger's
 * two channels took 7 of its 11 µs). Those arrays are checked for duplicates apart (`unique`, paths of object
 * properties); a value that fails either is described by the check of the full schema (`strict`), so the errors
 * are the same as before.
 */
interface Checker {
  readonly check: TypeCheck<TSchema>;
  readonly unique: readonly (readonly string[])[];
  strict: TypeCheck<TSchema> | undefined;
}

const compiled = new Map<TopicName, Checker>();

function checkerFor(topic: TopicName): Checker {
  let c = compiled.get(topic);
  if (!c) {
    const unique: string[][] = [];
    const schema = TOPICS[topic].schema;
    const lean = withoutUniqueItems(schema, [], unique);
    const check = TypeCompiler.Compile(lean);
    c = { check, unique, strict: lean === schema ? check : undefined };
    compiled.set(topic, c);
  }
  return c;
}

/** The check of the full schema, for error reports. */
function strictCheck(topic: TopicName, c: Checker): TypeCheck<TSchema> {
  return (c.strict ??= TypeCompiler.Compile(TOPICS[topic].schema));
}

/**
 * A schema of strings or booleans only (a type, a literal, or a union of them): two values are equal when ===.
 * Not numbers: TypeBox hashes 0 and -0 apart, === does not.
 */
function isPrimitive(schema: TSchema | undefined): boolean {
  if (schema === undefined) return false;
  if (schema.type === 'string' || schema.type === 'boolean' || typeof schema.const === 'string' || typeof schema.const === 'boolean') return true;
  const anyOf = schema.anyOf as TSchema[] | undefined;
  return Array.isArray(anyOf) && anyOf.length > 0 && anyOf.every(isPrimitive);
}

/**
 * `schema` with `uniqueItems` dropped from the arrays of primitive values reached through object properties,
 * whose paths go to `found`; the same object where there is none. Spread copies TypeBox's symbol keys too.
 */
function withoutUniqueItems(schema: TSchema, path: readonly string[], found: string[][]): TSchema {
  if (schema.type === 'array' && schema.uniqueItems === true && isPrimitive(schema.items as TSchema | undefined)) {
    const { uniqueItems: _dropped, ...rest } = schema;
    found.push([...path]);
    return rest as TSchema;
  }
  const properties = schema.type === 'object' ? (schema.properties as Record<string, TSchema> | undefined) : undefined;
  if (properties === undefined) return schema;
  let changed = false;
  const next: Record<string, TSchema> = {};
  for (const [k, v] of Object.entries(properties)) {
    const w = withoutUniqueItems(v, [...path, k], found);
    next[k] = w;
    if (w !== v) changed = true;
  }
  return changed ? ({ ...schema, properties: next } as TSchema) : schema;
}

/** No array at the `unique` paths of `value` (a value the lean check accepted) holds a value twice. */
function distinctAt(value: unknown, unique: readonly (readonly string[])[]): boolean {
  for (const path of unique) {
    let v: unknown = value;
    for (const k of path) v = v === null || typeof v !== 'object' ? undefined : (v as Record<string, unknown>)[k];
    if (!Array.isArray(v)) continue;
    if (v.length > 16) {
      if (new Set(v).size !== v.length) return false;
      continue;
    }
    for (let i = 1; i < v.length; i++) for (let j = 0; j < i; j++) if (v[i] === v[j]) return false;
  }
  return true;
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
  const c = checkerFor(topic);
  if (!c.check.Check(value) || (c.unique.length > 0 && !distinctAt(value, c.unique))) return { ok: false, errors: schemaErrors(strictCheck(topic, c), value) };
  const cross = crossFieldErrors(topic, value);
  if (cross.length > 0) return { ok: false, errors: cross };
  return { ok: true, value: value as Static<(typeof TOPICS)[T]['schema']> };
}
