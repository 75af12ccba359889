/**
 * The settings page's checks: an edited campaign config validated exactly as a file or a topic record is
 * (resolveCampaigns: schema and semantic errors together), each error split into its field path and message,
 * and what would change against the config in force, field by field, after defaults are filled in (so
 * "cap.max 3 → 2" shows whether the old value was written or a default).
 */
import { isKairosError } from '../errors.js';
import { resolveCampaigns, type CampaignsConfig } from '../config/campaigns.js';

export interface FieldError {
  /** JSON pointer of the field ("/guards/cap/max"; "/" for the whole document). */
  readonly path: string;
  readonly message: string;
}

export interface Change {
  readonly path: string;
  /** JSON text of the value in force (undefined: absent). */
  readonly from: string | undefined;
  readonly to: string | undefined;
}

export type Checked = { readonly ok: true; readonly input: unknown; readonly config: CampaignsConfig } | { readonly ok: false; readonly errors: FieldError[] };

/** Parses and validates the text of an edited config. */
export function checkConfigText(text: string): Checked {
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch (err) {
    return { ok: false, errors: [{ path: '/', message: `not valid JSON: ${(err as Error).message}` }] };
  }
  try {
    return { ok: true, input, config: resolveCampaigns(input, 'console') };
  } catch (err) {
    if (!isKairosError(err, 'KAIROS_ERR_CONFIG')) throw err;
    const lines = (err.details as { errors?: string[] } | undefined)?.errors ?? [err.message];
    return { ok: false, errors: lines.map(fieldError) };
  }
}

/** `/a/b: message` → its path and message. */
export function fieldError(line: string): FieldError {
  const m = /^(\/[^:]*): (.*)$/s.exec(line);
  return m ? { path: m[1] as string, message: m[2] as string } : { path: '/', message: line };
}

function flatten(v: unknown, path: string, out: Map<string, string>): void {
  if (v instanceof Map) v = Object.fromEntries(v);
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length === 0) out.set(path, '{}');
    for (const [k, x] of entries) flatten(x, `${path}/${k}`, out);
    return;
  }
  if (v !== undefined) out.set(path === '' ? '/' : path, JSON.stringify(v));
}

/** Every resolved field whose value differs, in path order (arrays compared whole). */
export function diffConfigs(current: CampaignsConfig, next: CampaignsConfig): Change[] {
  const a = new Map<string, string>();
  const b = new Map<string, string>();
  flatten(current, '', a);
  flatten(next, '', b);
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  return paths.filter((p) => a.get(p) !== b.get(p)).map((p) => ({ path: p, from: a.get(p), to: b.get(p) }));
}
