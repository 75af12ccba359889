/**
 * Schema errors a person can act on: one per field, each naming the field's path and what it accepts. TypeBox
 * reports a bad union value as "Expected union value"; here a union says its accepted forms ("one of push,
 * email, …", a duration's description), and an object given for a union with an object branch (quiet hours,
 * cap) is checked against that branch, so the message names the bad inner field.
 */
import { Kind, type TSchema } from '@sinclair/typebox';
import { Value, ValueErrorType, type ValueError } from '@sinclair/typebox/value';

const got = (v: unknown): string => {
  if (v === undefined) return ' (missing)';
  const s = JSON.stringify(v);
  return ` (got ${s.length > 60 ? `${s.slice(0, 57)}...` : s})`;
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What a schema accepts, in words. */
export function acceptedForms(schema: TSchema): string {
  if (typeof schema.description === 'string' && schema[Kind] !== 'Object') return schema.description;
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  const branches = Array.isArray(schema.anyOf) ? (schema.anyOf as TSchema[]) : undefined;
  if (branches) {
    if (branches.every((b) => b.const !== undefined)) return `one of ${branches.map((b) => String(b.const)).join(', ')}`;
    return branches.map(acceptedForms).join(', or ');
  }
  switch (schema.type) {
    case 'null':
      return 'null';
    case 'integer':
      return 'an integer';
    case 'number':
      return 'a number';
    case 'boolean':
      return 'true or false';
    case 'string':
      return 'a string';
    case 'array':
      return 'an array';
    case 'object':
      return isObject(schema.properties) ? `an object {${Object.keys(schema.properties).join(', ')}}` : 'an object';
    default:
      return 'a valid value';
  }
}

function message(e: ValueError): string {
  if (e.type === ValueErrorType.Union) return `expected ${acceptedForms(e.schema)}${got(e.value)}`;
  // A pattern means nothing to a reader; the field's description says what it wants.
  if (e.type === ValueErrorType.StringFormat || e.type === ValueErrorType.StringPattern) {
    if (typeof e.schema.description === 'string') return `expected ${e.schema.description}${got(e.value)}`;
  }
  return `${e.message}${got(e.value)}`;
}

function collect(errors: Iterable<ValueError>, prefix: string, out: Map<string, string>): void {
  for (const e of errors) {
    const path = prefix + e.path;
    if ([...out.keys()].some((p) => p === path || path.startsWith(`${p}/`))) continue;
    if (e.type === ValueErrorType.Union && isObject(e.value) && Array.isArray(e.schema.anyOf)) {
      const objectBranch = (e.schema.anyOf as TSchema[]).find((b) => b.type === 'object');
      if (objectBranch !== undefined) {
        collect(Value.Errors(objectBranch, e.value), path, out);
        continue;
      }
    }
    out.set(path, message(e));
  }
}

/** Every schema error of `value`, one line per field: `<path>: <what is wrong and what is accepted>`. */
export function schemaErrors(schema: TSchema, value: unknown): string[] {
  const out = new Map<string, string>();
  collect(Value.Errors(schema, value), '', out);
  return [...out].map(([path, msg]) => `${path || '/'}: ${msg}`);
}
