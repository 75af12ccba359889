/**
 * The settings page's form, generated from the campaign config's schema (CampaignsConfigSchema, the one that
 * validates files and topic records), so a field added to the config appears here without a console change.
 * Every property of every object becomes a labelled control that writes its value at its JSON pointer into
 * the JSON editor (the JSON stays what is checked and published); a control left empty removes the field, so
 * the default applies. Arrays of objects (experiment variants, audience attributes) are edited as JSON text in
 * their own labelled field. The browser side is settingsClient's generic handler of `data-path`/`data-kind`.
 */
import type { TSchema } from '@sinclair/typebox';
import { CampaignsConfigSchema } from '../config/campaigns.js';
import { html, type Html } from './html.js';

/**
 * How a control reads and writes its value:
 *   boolean  select (default / true / false)
 *   number   number input (integer: step 1)
 *   string   text input
 *   enum     select of the literals
 *   scalar   text input for a union of scalars (a duration: 60m or milliseconds; a number, "unlimited" or null)
 *   list     comma-separated text for an array of strings or literals
 *   json     JSON text for an array of objects
 *   null     checkbox: the object is set to null (e.g. no quiet hours, no cap)
 */
export type FieldKind = 'boolean' | 'number' | 'string' | 'enum' | 'scalar' | 'list' | 'json' | 'null';

export interface FormField {
  readonly kind: FieldKind;
  /** JSON pointer of the value ("/guards/cap/max"). */
  readonly path: string;
  /** Readable path, e.g. "guards › cap › max". */
  readonly label: string;
  readonly description?: string;
  /** enum / list of literals: the values accepted. */
  readonly options?: readonly string[];
  /** number: bounds and step (integer). */
  readonly min?: number;
  readonly max?: number;
  readonly integer?: boolean;
  /** scalar: which JSON types the text may become. */
  readonly accepts?: readonly ('number' | 'string' | 'null' | 'boolean')[];
}

export interface FormGroup {
  readonly kind: 'group';
  readonly path: string;
  readonly label: string;
  readonly children: readonly FormNode[];
}

export type FormNode = FormField | FormGroup;

interface Schema {
  readonly type?: string;
  readonly anyOf?: readonly Schema[];
  readonly const?: unknown;
  readonly properties?: Readonly<Record<string, Schema>>;
  readonly items?: Schema;
  readonly description?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
}

const labelOf = (path: string): string =>
  path
    .split('/')
    .filter((s) => s !== '')
    .join(' › ');

const literals = (s: Schema): string[] | undefined => {
  const members = s.anyOf ?? [];
  return members.length > 0 && members.every((m) => typeof m.const === 'string') ? members.map((m) => String(m.const)) : undefined;
};

function node(s: Schema, path: string, description: string | undefined): FormNode[] {
  const desc = s.description ?? description;
  const base = { path, label: labelOf(path), ...(desc === undefined ? {} : { description: desc }) };
  if (s.type === 'object' && s.properties !== undefined) {
    return [{ kind: 'group', path, label: labelOf(path), children: Object.entries(s.properties).flatMap(([k, v]) => node(v, `${path}/${k}`, undefined)) }];
  }
  if (s.anyOf !== undefined) {
    const nonNull = s.anyOf.filter((m) => m.type !== 'null');
    const nullable = nonNull.length < s.anyOf.length;
    const only = nonNull[0];
    if (nonNull.length === 1 && only?.type === 'object') {
      const inner = node(only, path, desc);
      const g = inner[0];
      // The "none" checkbox goes first in the object's own group.
      return nullable && g?.kind === 'group' ? [{ ...g, children: [{ kind: 'null', ...base, label: `${base.label} › none` }, ...g.children] }] : inner;
    }
    const options = literals(s);
    if (options !== undefined) return [{ kind: 'enum', ...base, options }];
    const accepts = new Set<'number' | 'string' | 'null' | 'boolean'>();
    const consts: string[] = [];
    for (const m of s.anyOf) {
      if (m.type === 'integer' || m.type === 'number') accepts.add('number');
      else if (m.type === 'null') accepts.add('null');
      else if (m.type === 'boolean') accepts.add('boolean');
      else if (m.type === 'string') accepts.add('string');
      if (typeof m.const === 'string') {
        accepts.add('string');
        consts.push(m.const);
      }
    }
    return [{ kind: 'scalar', ...base, accepts: [...accepts], ...(consts.length > 0 ? { options: consts } : {}) }];
  }
  if (s.type === 'array') {
    const item = s.items ?? {};
    if (item.type === 'string') return [{ kind: 'list', ...base }];
    const options = literals(item);
    if (options !== undefined) return [{ kind: 'list', ...base, options }];
    return [{ kind: 'json', ...base }];
  }
  if (s.type === 'boolean') return [{ kind: 'boolean', ...base }];
  if (s.type === 'integer' || s.type === 'number') {
    const min = s.minimum ?? s.exclusiveMinimum;
    return [{ kind: 'number', ...base, integer: s.type === 'integer', ...(min === undefined ? {} : { min }), ...(s.maximum === undefined ? {} : { max: s.maximum }) }];
  }
  return [{ kind: 'string', ...base }];
}

/** The form's tree for a schema (by default the campaign config's): one group per object, one field per value. */
export function formTree(schema: TSchema = CampaignsConfigSchema): FormGroup {
  const [root] = node(schema as Schema, '', undefined);
  if (root?.kind !== 'group') throw new TypeError('the config schema must be an object');
  return root;
}

/** Every field of the tree, in document order. */
export function formFields(tree: FormGroup = formTree()): FormField[] {
  return tree.children.flatMap((n) => (n.kind === 'group' ? formFields(n) : [n]));
}

/** A stable element id for a path. */
export const fieldId = (path: string): string => `f${path.replace(/[^a-zA-Z0-9]+/g, '-')}`;

function hint(f: FormField): string {
  const parts: string[] = [];
  if (f.description !== undefined) parts.push(f.description);
  if (f.kind === 'list') parts.push(f.options === undefined ? 'comma-separated' : `comma-separated: ${f.options.join(', ')}`);
  if (f.kind === 'json') parts.push('a JSON array');
  if (f.kind === 'scalar' && f.options !== undefined) parts.push(`or ${f.options.join(', ')}`);
  if (f.kind === 'scalar' && f.accepts?.includes('null')) parts.push('null for none');
  if (f.kind !== 'null') parts.push('empty: the default');
  return parts.join('; ');
}

function control(f: FormField): Html {
  const id = fieldId(f.path);
  const attrs = html`id="${id}" data-path="${f.path}" data-kind="${f.kind}" aria-describedby="${id}-hint ${id}-error"`;
  const last = f.path.split('/').pop() ?? '';
  // The visible label is the field's name; the accessible name carries the whole path (several "enabled").
  const parent = f.kind === 'null' ? f.path : f.path.slice(0, f.path.length - last.length - 1);
  const label = html`<label for="${id}"><span class="vh">${parent === '' ? '' : `${labelOf(parent)} › `}</span>${f.kind === 'null' ? 'none (null)' : last}</label>`;
  const after = html`<span class="hint note" id="${id}-hint">${hint(f)}</span><span class="field-error error" id="${id}-error" role="alert"></span>`;
  switch (f.kind) {
    case 'null':
      return html`<div class="field check"><input type="checkbox" ${attrs}>${label}${after}</div>`;
    case 'boolean':
      return html`<div class="field">${label}<select ${attrs}><option value="">default</option><option>true</option><option>false</option></select>${after}</div>`;
    case 'enum':
      return html`<div class="field">${label}<select ${attrs}><option value="">default</option>${(f.options ?? []).map((o) => html`<option>${o}</option>`)}</select>${after}</div>`;
    case 'number':
      return html`<div class="field">${label}<input type="number" ${attrs}${f.min === undefined ? '' : html` min="${f.min}"`}${f.max === undefined ? '' : html` max="${f.max}"`} step="${f.integer === true ? '1' : 'any'}" size="8">${after}</div>`;
    case 'json':
      return html`<div class="field wide">${label}<textarea rows="2" spellcheck="false" ${attrs}></textarea>${after}</div>`;
    default:
      return html`<div class="field">${label}<input ${attrs} data-accepts="${(f.accepts ?? []).join(' ')}" size="${f.kind === 'list' ? 24 : 14}">${after}</div>`;
  }
}

function group(g: FormGroup, depth: number): Html {
  const fields = g.children.filter((c): c is FormField => c.kind !== 'group');
  const groups = g.children.filter((c): c is FormGroup => c.kind === 'group');
  const body = html`${fields.length === 0 ? '' : html`<div class="fields">${fields.map(control)}</div>`}${groups.map((c) => group(c, depth + 1))}`;
  // Top-level sections and each campaign fold (details/summary: keyboard operable), deeper objects are fieldsets.
  if (depth <= 1 || /^\/campaigns\/[^/]+$/.test(g.path)) return html`<details data-group="${g.path}"><summary>${g.label}</summary>${body}</details>`;
  return html`<fieldset><legend>${g.label}</legend>${body}</fieldset>`;
}

/** The form's HTML (the fields are filled from the JSON editor by the settings script). */
export function configForm(tree: FormGroup = formTree()): Html {
  return html`<form id="config-form" aria-labelledby="config-form-h" novalidate><h2 id="config-form-h">Edit as a form</h2>
<p class="note">Every field of the campaign config, from its schema. A change is written into the JSON below and checked at once; an empty field is removed from the JSON, so its default applies. Errors appear at their field.</p>
${tree.children.map((c) => (c.kind === 'group' ? group(c, 1) : control(c)))}</form>`;
}
