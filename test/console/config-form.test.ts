/**
 * The settings form is generated from the campaign config's schema: every property the schema declares has a
 * labelled control (or a group holding them), so the form cannot lag behind the config.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Type } from '@sinclair/typebox';
import { CampaignsConfigSchema } from '../../src/config/campaigns.js';
import { configForm, fieldId, formFields, formTree, type FormGroup, type FormNode } from '../../src/console/config-form.js';
import { LiveCampaigns } from '../../src/config/live.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { publicationOf } from '../../src/kafka/config-topic.js';

interface JsonSchema {
  type?: string;
  anyOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
}

/** Every property path of the schema, walked independently of the form's generator (objects inside unions too). */
function schemaPaths(s: JsonSchema, path = ''): { path: string; object: boolean }[] {
  const objects = [s, ...(s.anyOf ?? [])].filter((x) => x.type === 'object' && x.properties !== undefined);
  return objects.flatMap((o) => Object.entries(o.properties ?? {}).flatMap(([k, v]) => {
    const p = `${path}/${k}`;
    const nested = schemaPaths(v, p);
    return [{ path: p, object: [v, ...(v.anyOf ?? [])].some((x) => x.type === 'object') }, ...nested];
  }));
}

const groups = (g: FormGroup): string[] => [g.path, ...g.children.flatMap((c: FormNode) => (c.kind === 'group' ? groups(c) : []))];

test('every property of the campaign config schema has a control, scalars and arrays their own field', () => {
  const fields = new Map(formFields().map((f) => [f.path, f]));
  const groupPaths = new Set(groups(formTree()));
  const paths = schemaPaths(CampaignsConfigSchema as unknown as JsonSchema);
  assert.ok(paths.length > 40, `${paths.length} paths`);
  for (const p of paths) {
    if (p.object) assert.ok(groupPaths.has(p.path), `a group for ${p.path}`);
    else assert.ok(fields.has(p.path), `a field for ${p.path}`);
  }
  // Spot checks of the kinds.
  assert.equal(fields.get('/guards/cap/max')?.kind, 'number');
  assert.equal(fields.get('/guards/cap/max')?.integer, true);
  assert.equal(fields.get('/guards/cap/max')?.min, 1);
  assert.equal(fields.get('/guards/cap')?.kind, 'null');
  assert.equal(fields.get('/guards/enabled')?.kind, 'boolean');
  assert.equal(fields.get('/guards/priority')?.kind, 'list');
  assert.deepEqual(fields.get('/defaults/channels')?.options, ['push', 'email', 'onsite', 'webhook']);
  assert.equal(fields.get('/campaigns/basket-price-drop/params/minDropPercent')?.kind, 'number');
  assert.equal(fields.get('/campaigns/basket-abandonment/params/inactivityGap')?.kind, 'scalar');
  assert.deepEqual(fields.get('/campaigns/wishlist-restock/params/maxPerUnit')?.accepts, ['number', 'string', 'null']);
  assert.equal(fields.get('/campaigns/browse-abandonment/experiment/variants')?.kind, 'json');
  assert.equal(fields.get('/campaigns/browse-abandonment/audience/attributes')?.kind, 'json');
});

test('a property added to the schema appears in the form; each control is labelled and described', () => {
  const extended = Type.Object({ ...CampaignsConfigSchema.properties, extra: Type.Optional(Type.Object({ knob: Type.Integer({ minimum: 2, description: 'a new knob' }) })) });
  const knob = formFields(formTree(extended)).find((f) => f.path === '/extra/knob');
  assert.deepEqual(knob, { kind: 'number', path: '/extra/knob', label: 'extra › knob', description: 'a new knob', integer: true, min: 2 });
  const page = configForm().html;
  for (const f of formFields()) {
    const id = fieldId(f.path);
    assert.ok(page.includes(`<label for="${id}">`), `label of ${f.path}`);
    assert.ok(page.includes(`id="${id}" data-path="${f.path}" data-kind="${f.kind}" aria-describedby="${id}-hint ${id}-error"`), `control of ${f.path}`);
  }
  assert.equal(new Set(formFields().map((f) => fieldId(f.path))).size, formFields().length, 'ids are unique');
});

test('the config in force carries who published it and when, from the topic record\'s headers', () => {
  assert.deepEqual(publicationOf({ 'kairos-published-by': Buffer.from('key:manager'), 'kairos-published-at': '2026-12-04T10:00:00.000Z' }), { by: 'key:manager', at: '2026-12-04T10:00:00.000Z' });
  assert.equal(publicationOf({ 'kairos-published-by': 'x' }), undefined);
  assert.equal(publicationOf(undefined), undefined);
  const live = new LiveCampaigns(resolveCampaigns({}), {});
  assert.equal(live.publication, undefined);
  assert.equal(live.apply({}, 't[0]@1', { by: 'key:a', at: '2026-12-04T10:00:00.000Z' }).ok, true);
  assert.deepEqual(live.publication, { by: 'key:a', at: '2026-12-04T10:00:00.000Z' });
  // A later config without headers (a file, kafka-console-producer) has no publisher.
  assert.equal(live.apply({}, 'file').ok, true);
  assert.equal(live.publication, undefined);
});
