/**
 * Derives Avro schemas from the TypeBox contract (schemas/contract.ts), so the Avro files in schemas/avro/ are
 * generated, never hand-written. Mapping:
 *   Object → record (named by its $id, else by its parent record and field), Optional → ["null", T] default null,
 *   union of string literals → enum, other unions → Avro union, Integer → long, Number → double,
 *   Record → map, Record marked `avro: 'json'` → string with logicalType "json" (free-form JSON as text).
 * A named type is defined once per schema and referred to by name afterwards, as Avro requires.
 */
import { Kind, OptionalKind, type TSchema } from '@sinclair/typebox';

export type AvroType =
  | string
  | readonly AvroType[]
  | { readonly type: string; readonly [k: string]: unknown };

export interface AvroField {
  readonly name: string;
  readonly type: AvroType;
  readonly doc?: string;
  readonly default?: null;
}

interface Ctx {
  readonly named: Set<string>;
}

const pascal = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

function kindOf(schema: TSchema): string {
  return (schema as { [Kind]: string })[Kind];
}

function isOptional(schema: TSchema): boolean {
  return (schema as { [OptionalKind]?: string })[OptionalKind] === 'Optional';
}

function convert(schema: TSchema, hint: string, ctx: Ctx): AvroType {
  const kind = kindOf(schema);
  const id = typeof schema.$id === 'string' ? schema.$id : undefined;
  switch (kind) {
    case 'String':
      return 'string';
    case 'Integer':
      return 'long';
    case 'Number':
      return 'double';
    case 'Boolean':
      return 'boolean';
    case 'Array':
      return { type: 'array', items: convert(schema.items as TSchema, hint, ctx) };
    case 'Record': {
      if (schema.avro === 'json') return { type: 'string', logicalType: 'json' };
      const values = Object.values(schema.patternProperties as Record<string, TSchema>)[0];
      if (!values) throw new Error(`record schema ${hint} has no value schema`);
      return { type: 'map', values: convert(values, `${hint}Value`, ctx) };
    }
    case 'Union': {
      const branches = schema.anyOf as TSchema[];
      if (branches.every((b) => kindOf(b) === 'Literal' && typeof b.const === 'string')) {
        const name = id ?? hint;
        if (ctx.named.has(name)) return name;
        ctx.named.add(name);
        return { type: 'enum', name, symbols: branches.map((b) => b.const as string) };
      }
      return branches.map((b, i) => convert(b, `${hint}${i}`, ctx));
    }
    case 'Object': {
      const name = id ?? hint;
      if (ctx.named.has(name)) return name;
      ctx.named.add(name);
      return record(schema, name, ctx);
    }
    default:
      throw new Error(`no Avro mapping for TypeBox kind ${kind} at ${hint}`);
  }
}

function record(schema: TSchema, name: string, ctx: Ctx, extra: Record<string, unknown> = {}): { type: 'record'; name: string; fields: AvroField[] } {
  const properties = schema.properties as Record<string, TSchema>;
  const fields: AvroField[] = Object.entries(properties).map(([field, s]) => {
    const type = convert(s, `${name}${pascal(field)}`, ctx);
    const doc = typeof s.description === 'string' ? { doc: s.description } : {};
    return isOptional(s) ? { name: field, type: ['null', type], ...doc, default: null } : { name: field, type, ...doc };
  });
  return { type: 'record', name, ...extra, fields };
}

/** The Avro schema of a top-level TypeBox object (which must carry a $id). */
export function avroSchemaOf(schema: TSchema, namespace: string): { type: 'record'; name: string; fields: AvroField[] } {
  if (kindOf(schema) !== 'Object' || typeof schema.$id !== 'string') throw new Error('a topic schema must be an object with a $id');
  const ctx: Ctx = { named: new Set([schema.$id]) };
  const doc = typeof schema.description === 'string' ? { doc: schema.description } : {};
  return record(schema, schema.$id, ctx, { namespace, ...doc });
}
