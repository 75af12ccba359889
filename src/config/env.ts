/**
 * Environment variables declared once (name, TypeBox schema, doc, default), for every command's config
 * (src/config/runtime.ts, src/dispatch/config.ts, src/warehouse/config.ts): reading them reports every bad
 * variable at once, and the README's tables are generated from the same declarations.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

export interface EnvVar<S extends TSchema = TSchema, D extends Static<S> | undefined = Static<S> | undefined> {
  readonly env: string;
  readonly schema: S;
  readonly doc: string;
  readonly default: D;
}

export function envVar<S extends TSchema>(env: string, schema: S, doc: string): EnvVar<S, undefined>;
export function envVar<S extends TSchema>(env: string, schema: S, doc: string, dflt: Static<S>): EnvVar<S, Static<S>>;
export function envVar<S extends TSchema>(env: string, schema: S, doc: string, dflt?: Static<S>): EnvVar<S> {
  return { env, schema, doc, default: dflt };
}

export const HostPort = Type.String({ pattern: '^[^\\s:,]+:[0-9]{1,5}$' });
export const Bool = Type.Union([Type.Literal('true'), Type.Literal('false')]);

export interface ReadOptions<K extends string> {
  /** Variables that must be set (reported as "required"). */
  readonly required?: readonly K[];
  /** Variables given as comma-separated lists (split, trimmed, empty items dropped). */
  readonly lists?: readonly K[];
  /** Trim surrounding whitespace from plain string values. @default false */
  readonly trim?: boolean;
}

/** Reads `vars` from `env`: values (defaults where unset) and one message per bad or missing variable. */
export function readEnvVars<K extends string>(vars: Readonly<Record<K, EnvVar>>, env: NodeJS.ProcessEnv, opts: ReadOptions<NoInfer<K>> = {}): { values: Record<K, unknown>; errors: string[] } {
  const values = {} as Record<K, unknown>;
  const errors: string[] = [];
  for (const [name, spec] of Object.entries(vars) as [K, EnvVar][]) {
    const raw = env[spec.env];
    if (raw === undefined || raw === '') {
      if (opts.required?.includes(name)) errors.push(`${spec.env}: required (${spec.doc})`);
      values[name] = spec.default;
      continue;
    }
    let value: unknown = opts.trim === true ? raw.trim() : raw;
    if (opts.lists?.includes(name)) value = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
    else if (spec.schema.type === 'integer' && /^-?[0-9]+$/.test(raw.trim())) value = Number(raw.trim());
    if (!Value.Check(spec.schema, value)) {
      const first = [...Value.Errors(spec.schema, value)][0];
      errors.push(`${spec.env}=${JSON.stringify(raw)}: ${first?.message ?? 'invalid'} (${spec.doc})`);
      continue;
    }
    values[name] = value;
  }
  return { values, errors };
}

/** The README table of `vars`: variable, default, meaning. */
export function envVarsTable(vars: Readonly<Record<string, EnvVar>>): string {
  const rows = Object.values(vars).map((s) => {
    const d = s.default;
    const dflt = d === undefined ? '' : `\`${Array.isArray(d) ? d.join(',') : String(d)}\``;
    return `| \`${s.env}\` | ${dflt} | ${s.doc} |`;
  });
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}
