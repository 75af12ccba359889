/**
 * The console's browser scripts, written here in TypeScript and type-checked with the engine. Each is one
 * self-contained function (no imports, no closures over this module) that the server serves as its source
 * text ({@link clientScript}): no bundler at build time and no browser library, and it works offline. The DOM
 * types used are declared below (the engine's tsconfig has no DOM library, on purpose: it must not leak into
 * server code).
 */

interface El {
  textContent: string | null;
  value: string;
  disabled: boolean;
  hidden: boolean;
  className: string;
  readonly files?: { readonly length: number; readonly 0?: { text(): Promise<string>; readonly name: string } } | null;
  selectionStart: number;
  selectionEnd: number;
  setAttribute(name: string, value: string): void;
  append(...nodes: (El | string)[]): void;
  prepend(...nodes: (El | string)[]): void;
  replaceChildren(...nodes: (El | string)[]): void;
  addEventListener(type: string, fn: (e: { preventDefault(): void; readonly data?: string }) => void): void;
  focus(): void;
  remove(): void;
  readonly children: { readonly length: number };
  readonly lastElementChild: El | null;
}
interface Doc {
  getElementById(id: string): El | null;
  createElement(tag: string): El;
}
interface Source {
  addEventListener(type: string, fn: (e: { readonly data: string }) => void): void;
  onerror: (() => void) | null;
  onopen: (() => void) | null;
  close(): void;
}
declare const document: Doc;
declare const EventSource: new (url: string) => Source;

/** The live page: an EventSource on /console/live/events with the form's filters. */
export function liveClient(): void {
  const $ = (id: string): El => {
    const e = document.getElementById(id);
    if (e === null) throw new Error(`#${id} missing`);
    return e;
  };
  const cell = (tag: string, text: string, cls?: string): El => {
    const c = document.createElement(tag);
    c.textContent = text;
    if (cls !== undefined) c.className = cls;
    return c;
  };
  interface Entry { customerId: string; type: string; campaignId: string; decision: string; reason: string; detail?: string; occurredAt: number }
  interface Batch { entries: Entry[]; skipped: number; counts: { type: string; decision: string; count: number }[] }
  let source: Source | undefined;
  let shown = 0;
  let skipped = 0;
  const status = $('live-status');
  const rows = $('event-rows');
  const connect = (): void => {
    source?.close();
    shown = 0;
    skipped = 0;
    rows.replaceChildren();
    const q = new URLSearchParams();
    for (const name of ['campaign', 'type', 'customer']) {
      const v = $(`f-${name}`).value.trim();
      if (v !== '') q.set(name, v);
    }
    source = new EventSource(`/console/live/events?${q.toString()}`);
    source.onopen = () => {
      status.textContent = 'Live: connected, waiting for decisions…';
    };
    source.onerror = () => {
      status.textContent = 'Disconnected; reconnecting…';
    };
    source.addEventListener('decisions', (e) => {
      const b = JSON.parse(e.data) as Batch;
      const byType = new Map<string, Record<string, number>>();
      for (const c of b.counts) byType.set(c.type, { ...(byType.get(c.type) ?? {}), [c.decision]: c.count });
      $('counts').lastElementChild?.replaceChildren(
        ...[...byType].map(([type, n]) => {
          const tr = document.createElement('tr');
          tr.append(cell('th', type), cell('td', String(n.SENT ?? 0), 'num'), cell('td', String(n.HELD ?? 0), 'num'), cell('td', String(n.SUPPRESSED ?? 0), 'num'));
          tr.lastElementChild?.setAttribute('data-type', type);
          return tr;
        }),
      );
      for (const x of b.entries) {
        const tr = document.createElement('tr');
        const cls = x.decision === 'SENT' ? 'sent' : x.decision === 'HELD' ? 'held' : 'suppressed';
        const who = document.createElement('td');
        const a = document.createElement('a');
        a.setAttribute('href', `/console/customer?id=${encodeURIComponent(x.customerId)}`);
        a.textContent = x.customerId;
        who.append(a);
        tr.append(cell('td', new Date(x.occurredAt).toISOString()), who, cell('td', x.type), cell('td', x.campaignId), cell('td', x.decision, cls), cell('td', x.reason), cell('td', x.detail ?? ''));
        rows.prepend(tr);
      }
      while (rows.children.length > 200) rows.lastElementChild?.remove();
      shown += b.entries.length;
      skipped += b.skipped;
      status.textContent = `Live: ${shown} decisions shown${skipped > 0 ? `, ${skipped} skipped by sampling` : ''}.`;
    });
  };
  $('live-filters').addEventListener('submit', (e) => {
    e.preventDefault();
    connect();
  });
  connect();
}

/** The settings page: check (validation and diff), backtest preview, publish. */
export function settingsClient(): void {
  const $ = (id: string): El | null => document.getElementById(id);
  const el = (tag: string, text?: string, cls?: string): El => {
    const c = document.createElement(tag);
    if (text !== undefined) c.textContent = text;
    if (cls !== undefined) c.className = cls;
    return c;
  };
  const row = (cells: (string | El)[], head = false): El => {
    const tr = el('tr');
    cells.forEach((c, i) => {
      const td = el(head ? 'th' : i === 0 ? 'th' : 'td');
      if (head || i === 0) td.setAttribute('scope', head ? 'col' : 'row');
      if (typeof c === 'string') td.textContent = c;
      else td.append(c);
      tr.append(td);
    });
    return tr;
  };
  const table = (caption: string, head: string[], body: (string | El)[][], id?: string): El => {
    const t = el('table');
    if (id !== undefined) t.setAttribute('id', id);
    const thead = el('thead');
    thead.append(row(head, true));
    const tbody = el('tbody');
    for (const r of body) tbody.append(row(r));
    t.append(el('caption', caption), thead, tbody);
    return t;
  };
  const config = $('config') as El;
  interface Problem { readonly error: { readonly code: string; readonly message: string; readonly fields?: { path: string; message: string }[] } }
  const post = async <T>(url: string, body: unknown): Promise<{ status: number; json: T & Partial<Problem> }> => {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), credentials: 'same-origin' });
    return { status: res.status, json: (await res.json()) as T & Partial<Problem> };
  };
  /** Selects the field's key in the editor: the error shown at the field. */
  const goTo = (path: string): void => {
    const key = path.split('/').filter((s) => s !== '').pop();
    config.focus();
    if (key === undefined) return;
    const text = config.value;
    let at = -1;
    let from = 0;
    // The path's segments in order, so /campaigns/x/params/cap finds the cap under x.
    for (const seg of path.split('/').filter((s) => s !== '' && !/^\d+$/.test(s))) {
      const i = text.indexOf(`"${seg}"`, from);
      if (i < 0) break;
      at = i;
      from = i + 1;
    }
    if (at >= 0) {
      config.selectionStart = at;
      config.selectionEnd = at + key.length + 2;
    }
  };
  const showErrors = (target: El, fields: { path: string; message: string }[]): void => {
    const ul = el('ul', undefined, 'errors');
    ul.setAttribute('id', 'field-errors');
    for (const f of fields) {
      const li = el('li');
      const b = el('button', f.path);
      b.setAttribute('type', 'button');
      b.setAttribute('aria-label', `go to ${f.path}`);
      b.addEventListener('click', () => goTo(f.path));
      li.append(b, `: ${f.message}`);
      ul.append(li);
    }
    target.replaceChildren(el('p', `${fields.length} error${fields.length === 1 ? '' : 's'}: the config in force stays.`, 'error'), ul);
  };
  interface Change { path: string; from?: string; to?: string }
  const check = async (): Promise<boolean> => {
    const out = $('check-result') as El;
    out.replaceChildren(el('p', 'Checking…', 'note'));
    const { json } = await post<{ changes: Change[] }>('/console/api/settings/check', { config: config.value });
    if (json.error !== undefined) {
      showErrors(out, json.error.fields ?? [{ path: '/', message: json.error.message }]);
      return false;
    }
    out.replaceChildren(
      el('p', json.changes.length === 0 ? 'Valid; nothing changes against the config in force.' : `Valid; ${json.changes.length} field${json.changes.length === 1 ? '' : 's'} change against the config in force:`),
      ...(json.changes.length === 0 ? [] : [table('Changes (defaults filled in)', ['Field', 'In force', 'Edited'], json.changes.map((c) => [c.path, c.from ?? '(absent)', c.to ?? '(absent)']), 'diff')]),
    );
    return true;
  };
  interface TypeRow { type: string; current: number; edited: number; difference: number; onlyEdited: string[]; onlyCurrent: string[]; currentDecisions: Record<string, number>; editedDecisions: Record<string, number> }
  interface Result {
    lines: number;
    badLines: number;
    elapsedMs: number;
    types: TypeRow[];
    days: { day: string; type: string; current: number; edited: number }[];
    source: { kind: 'file' } | { kind: 'window'; window: string; records: number; undecodable: number; truncated: boolean };
  }
  const customers = (ids: string[]): El => {
    const span = el('span');
    ids.forEach((id, i) => {
      const a = el('a', id);
      a.setAttribute('href', `/console/customer?id=${encodeURIComponent(id)}`);
      span.append(...(i === 0 ? [] : [', ']), a);
    });
    if (ids.length === 0) span.textContent = '–';
    return span;
  };
  const signed = (n: number): El => el('span', n > 0 ? `+${n}` : String(n), n > 0 ? 'plus' : n < 0 ? 'minus' : '');
  const reasons = (d: Record<string, number>): string => Object.entries(d).filter(([k]) => !k.startsWith('SENT')).map(([k, n]) => `${k} ${n}`).join(', ') || '–';
  const preview = async (): Promise<void> => {
    const out = $('preview-result') as El;
    const window = ($('events-source') as El).value;
    const file = ($('events-file') as El).files?.[0];
    if (window === 'file' && file === undefined) {
      out.replaceChildren(el('p', 'Choose an NDJSON file of events first, or the input topics as the events to replay.', 'error'));
      ($('events-file') as El).focus();
      return;
    }
    const button = $('preview') as El;
    button.disabled = true;
    out.replaceChildren(el('p', `Replaying ${window === 'file' ? file?.name : `the last ${window} of the input topics`} with both configs…`, 'note'));
    try {
      const body = window === 'file' ? { config: config.value, events: await file?.text() } : { config: config.value, window };
      const { json } = await post<{ result: Result }>('/console/api/settings/preview', body);
      if (json.error !== undefined) {
        if (json.error.fields !== undefined) showErrors(out, json.error.fields);
        else out.replaceChildren(el('p', json.error.message, 'error'));
        return;
      }
      const r = json.result;
      out.replaceChildren(
        el(
          'p',
          `${r.lines} ${r.source.kind === 'window' ? `records of the last ${r.source.window}${r.source.truncated ? ' (the first ones only: the limit was reached)' : ''}${r.source.undecodable > 0 ? `, ${r.source.undecodable} undecodable skipped,` : ''}` : 'lines'} replayed twice in ${(r.elapsedMs / 1000).toFixed(1)} s${r.badLines > 0 ? ` (${r.badLines} bad lines skipped)` : ''}.`,
        ),
        table(
          'Would have sent, per trigger type',
          ['Type', 'In force', 'Edited', 'Difference', 'Not sent (in force)', 'Not sent (edited)', 'Only with the edit', 'Only in force'],
          r.types.map((t) => [t.type, String(t.current), String(t.edited), signed(t.difference), reasons(t.currentDecisions), reasons(t.editedDecisions), customers(t.onlyEdited), customers(t.onlyCurrent)]),
          'preview-types',
        ),
        table('Per day (UTC, event time)', ['Day', 'Type', 'In force', 'Edited', 'Difference'], r.days.map((d) => [d.day, d.type, String(d.current), String(d.edited), signed(d.edited - d.current)]), 'preview-days'),
      );
    } finally {
      button.disabled = false;
    }
  };
  const publish = async (): Promise<void> => {
    const out = $('publish-result') as El;
    if (!(await check())) {
      out.replaceChildren(el('p', 'Not published: fix the errors first.', 'error'));
      return;
    }
    out.replaceChildren(el('p', 'Publishing…', 'note'));
    const before = Number(($('cfg-version') as El).textContent);
    const { json } = await post<{ topic: string; partition: number; offset: string; by: string; at: string }>('/console/api/settings/publish', { config: config.value });
    if (json.error !== undefined) {
      out.replaceChildren(el('p', json.error.message, 'error'));
      return;
    }
    const line = el('p', `Published to ${json.topic} (partition ${json.partition}, offset ${json.offset}) by ${json.by} at ${json.at}; waiting for the engine to apply it…`);
    out.replaceChildren(line);
    for (let i = 0; i < 120; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const res = await fetch('/console/api/settings/state', { credentials: 'same-origin' });
      const s = (await res.json()) as { version: number; source: string; rejected?: string[] };
      if (s.version > before) {
        ($('cfg-version') as El).textContent = String(s.version);
        ($('cfg-source') as El).textContent = s.source;
        out.append(el('p', `Applied: version ${s.version} is in force (from ${s.source}).`, 'sent'));
        return;
      }
    }
    out.append(el('p', 'Not applied within a minute: see the instance log (kairos_config_reloads_total).', 'error'));
  };
  const on = (id: string, fn: () => Promise<unknown>): void => {
    $(id)?.addEventListener('click', () => {
      fn().catch((err: unknown) => {
        ($('check-result') as El).replaceChildren(el('p', `Request failed: ${(err as Error).message}`, 'error'));
      });
    });
  };
  // Quick edit: the guards' common fields as a form, written into the JSON (the JSON stays what is checked).
  const field = (id: string): El => $(id) as El;
  const fromJson = (): void => {
    let cfg: { guards?: { cap?: { max?: number; window?: string | number } | null; quietHours?: { start?: string; end?: string } | null; defaultTimezone?: string } };
    try {
      cfg = JSON.parse(config.value) as typeof cfg;
    } catch {
      return;
    }
    const g = cfg.guards ?? {};
    field('q-cap-max').value = g.cap === null ? '' : String(g.cap?.max ?? 3);
    field('q-cap-window').value = g.cap === null ? '' : String(g.cap?.window ?? '24h');
    field('q-quiet-start').value = g.quietHours === null ? '' : (g.quietHours?.start ?? '22:00');
    field('q-quiet-end').value = g.quietHours === null ? '' : (g.quietHours?.end ?? '08:00');
    field('q-timezone').value = g.defaultTimezone ?? '';
  };
  $('quick-form')?.addEventListener('submit', (e) => {
    e.preventDefault();
    let cfg: Record<string, unknown>;
    try {
      cfg = JSON.parse(config.value) as Record<string, unknown>;
    } catch (err) {
      ($('check-result') as El).replaceChildren(el('p', `The JSON below does not parse (${(err as Error).message}); fix it first.`, 'error'));
      return;
    }
    const g = { ...((cfg.guards ?? {}) as Record<string, unknown>) };
    const max = field('q-cap-max').value.trim();
    const window = field('q-cap-window').value.trim();
    g.cap = max === '' ? null : { max: Number(max), window: /^[0-9]+$/.test(window) ? Number(window) : window || '24h' };
    const start = field('q-quiet-start').value;
    const end = field('q-quiet-end').value;
    g.quietHours = start === '' && end === '' ? null : { start, end };
    const tz = field('q-timezone').value.trim();
    if (tz === '') delete g.defaultTimezone;
    else g.defaultTimezone = tz;
    config.value = JSON.stringify({ ...cfg, guards: g }, null, 2);
    check().catch((err: unknown) => {
      ($('check-result') as El).replaceChildren(el('p', `Request failed: ${(err as Error).message}`, 'error'));
    });
  });
  fromJson();
  on('check', check);
  on('preview', preview);
  on('publish', publish);
}

/**
 * The script text of a client function: its source (as compiled, so JavaScript), called once. `__name` is the
 * helper tsx/esbuild insert to keep function names when the engine runs from source; defined as a no-op.
 */
export function clientScript(fn: () => void): string {
  return `"use strict";var __name=function(f){return f};(${fn.toString()})();\n`;
}
