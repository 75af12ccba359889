/**
 * Environment variables declared once (name, TypeBox schema, doc, default), for every command's config
 * (src/config/runtime.ts, src/dispatch/config.ts, src/warehouse/config.ts): reading them reports every bad
 * variable at once, and the README's tables are generated from the same declarations.
 */
import { Type, type Static, type TSchema, type TString } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { redactSecrets, urlCredentials } from '../util/redact.js';

export interface EnvVar<S extends TSchema = TSchema, D extends Static<S> | undefined = Static<S> | undefined> {
  readonly env: string;
  readonly schema: S;
  readonly doc: string;
  readonly default: D;
  /** A secret (password, key, token): its value is never printed, and is redacted from messages and logs. */
  readonly secret?: boolean;
  /** A check beyond the schema; returns what is wrong (without echoing the value), or undefined. */
  readonly check?: (value: string) => string | undefined;
}

export function envVar<S extends TSchema>(env: string, schema: S, doc: string): EnvVar<S, undefined>;
export function envVar<S extends TSchema>(env: string, schema: S, doc: string, dflt: Static<S>): EnvVar<S, Static<S>>;
export function envVar<S extends TSchema>(env: string, schema: S, doc: string, dflt?: Static<S>): EnvVar<S> {
  return { env, schema, doc, default: dflt };
}

/** A variable holding a secret: validated like any other, but its value never appears in a message. */
export function secretVar<S extends TSchema>(env: string, schema: S, doc: string): EnvVar<S, undefined> {
  return { ...envVar(env, schema, doc), secret: true };
}

/**
 * A URL variable of the given schemes (`redis`, `rediss`): checked to parse as a URL with a host, so a malformed
 * one stops start-up as a config error; user and password in it are redacted wherever the URL is printed.
 */
export function urlVar(env: string, schemes: readonly string[], doc: string): EnvVar<TString, undefined>;
export function urlVar(env: string, schemes: readonly string[], doc: string, dflt: string): EnvVar<TString, string>;
export function urlVar(env: string, schemes: readonly string[], doc: string, dflt?: string): EnvVar<TString> {
  const schema = Type.String({ pattern: `^(${schemes.join('|')})://` });
  const forms = `${schemes.map((s) => `${s}://host[:port][/path]`).join(' or ')}, with user:password@ before the host if needed`;
  const check = (value: string): string | undefined => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return `not a valid URL (expected ${forms})`;
    }
    return url.hostname === '' ? `no host in the URL (expected ${forms})` : undefined;
  };
  return { env, schema, doc, default: dflt, check };
}

/** Values to redact from any message: declared secrets' values (and their parts) and credentials in URLs. */
export function secretValues(vars: Readonly<Record<string, EnvVar>>, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const spec of Object.values(vars)) {
    const raw = env[spec.env];
    if (raw === undefined || raw === '') continue;
    if (spec.secret === true) {
      out.push(raw, raw.trim());
      // Lists of named secrets (`name:key[:scopes],…`): each key on its own; the names stay readable.
      for (const entry of raw.split(',').map((e) => e.trim())) {
        const [first = '', key] = entry.split(':');
        out.push(...(key === undefined ? [first] : [key]).filter((p) => p.length > 0));
      }
    }
    out.push(...urlCredentials(raw.trim()));
  }
  return out;
}

/** How a bad value is shown in a message: never for a secret, with URL credentials redacted otherwise. */
function shown(spec: EnvVar, raw: string): string {
  return spec.secret === true ? `${spec.env} (value not shown)` : `${spec.env}=${JSON.stringify(redactSecrets(raw, urlCredentials(raw)))}`;
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
      errors.push(`${shown(spec, raw)}: ${first?.message ?? 'invalid'} (${spec.doc})`);
      continue;
    }
    const problem = typeof value === 'string' ? spec.check?.(value) : undefined;
    if (problem !== undefined) {
      errors.push(`${shown(spec, raw)}: ${problem} (${spec.doc})`);
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
