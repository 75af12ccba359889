/**
 * Converts contract values to the shape the generated Avro schemas expect and back, walking the same TypeBox
 * schema the Avro was generated from: an absent optional field is Avro null, a free-form JSON object (`avro:
 * 'json'`) is JSON text. `fromAvro(schema, toAvro(schema, v))` deep-equals `v` for every valid `v`.
 */
import { Kind, OptionalKind, type TSchema } from '@sinclair/typebox';

const kindOf = (s: TSchema): string => (s as { [Kind]: string })[Kind];
const isOptional = (s: TSchema): boolean => (s as { [OptionalKind]?: string })[OptionalKind] === 'Optional';
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function recordValues(schema: TSchema): TSchema | undefined {
  return Object.values(schema.patternProperties as Record<string, TSchema>)[0];
}

export function toAvro(schema: TSchema, value: unknown): unknown {
  switch (kindOf(schema)) {
    case 'Object': {
      if (!isObject(value)) return value;
      const out: Record<string, unknown> = {};
      for (const [name, s] of Object.entries(schema.properties as Record<string, TSchema>)) {
        const v = value[name];
        out[name] = v === undefined && isOptional(s) ? null : toAvro(s, v);
      }
      return out;
    }
    case 'Record': {
      if (schema.avro === 'json') return JSON.stringify(value);
      const vs = recordValues(schema);
      if (!isObject(value) || !vs) return value;
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toAvro(vs, v)]));
    }
    case 'Array':
      return Array.isArray(value) ? value.map((v) => toAvro(schema.items as TSchema, v)) : value;
    default:
      return value;
  }
}

export function fromAvro(schema: TSchema, value: unknown): unknown {
  switch (kindOf(schema)) {
    case 'Object': {
      if (!isObject(value)) return value;
      const out: Record<string, unknown> = {};
      for (const [name, s] of Object.entries(schema.properties as Record<string, TSchema>)) {
        const v = value[name];
        if ((v === null || v === undefined) && isOptional(s)) continue;
        out[name] = fromAvro(s, v);
      }
      return out;
    }
    case 'Record': {
      if (schema.avro === 'json') return typeof value === 'string' ? (JSON.parse(value) as unknown) : value;
      const vs = recordValues(schema);
      if (!isObject(value) || !vs) return value;
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromAvro(vs, v)]));
    }
    case 'Array':
      return Array.isArray(value) ? value.map((v) => fromAvro(schema.items as TSchema, v)) : value;
    default:
      return value;
  }
}
