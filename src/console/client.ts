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
  checked: boolean;
  open: boolean;
  readonly parentElement: El | null;
  setAttribute(name: string, value: string): void;
  getAttribute(name: string): string | null;
  removeAttribute(name: string): void;
  querySelectorAll(selector: string): ArrayLike<El>;
  closest(selector: string): El | null;
  append(...nodes: (El | string)[]): void;
  prepend(...nodes: (El | string)[]): void;
  replaceChildren(...nodes: (El | string)[]): void;
  addEventListener(type: string, fn: (e: { preventDefault(): void; readonly data?: string; readonly target?: El | null }) => void): void;
  focus(): void;
  remove(): void;
  readonly children: { readonly length: number };
  readonly lastElementChild: El | null;
}
interface Doc {
  getElementById(id: string): El | null;
  querySelectorAll(selector: string): ArrayLike<El>;
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
      const errs = json.error.fields ?? [{ path: '/', message: json.error.message }];
      showErrors(out, errs);
      errorsAtFields(errs);
      return false;
    }
    errorsAtFields([]);
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
    warmupLines: number;
    source: { kind: 'file' } | { kind: 'window'; window: string; records: number; undecodable: number; truncated: boolean; warmup: { stretch: string; skipped?: string } };
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
          `${r.lines - r.warmupLines} ${r.source.kind === 'window' ? `records of the last ${r.source.window}${r.source.truncated ? ' (the first ones only: the limit was reached)' : ''}${r.source.undecodable > 0 ? `, ${r.source.undecodable} undecodable skipped,` : ''}` : 'lines'} replayed twice in ${(r.elapsedMs / 1000).toFixed(1)} s${r.badLines > 0 ? ` (${r.badLines} bad lines skipped)` : ''}.`,
        ),
        ...(r.source.kind !== 'window'
          ? [el('p', 'A file is replayed from empty state: what its customers did before its first line is not known to the replay.', 'note')]
          : r.source.warmup.skipped === undefined
            ? [el('p', `Warm-up: first the ${r.warmupLines} records of the ${r.source.warmup.stretch} before the window were replayed, so baskets, browsing sessions, profiles, cooldowns and caps from before it are known; what they triggered is not counted. Anything older than that is not known to the preview.`, 'note')]
            : [el('p', `No warm-up: ${r.source.warmup.skipped}; the replay starts from empty state at the window's start, so what customers did before it is not known.`, 'note')]),
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
      const s = (await res.json()) as { version: number; source: string; publishedBy?: string; publishedAt?: string };
      if (s.version > before) {
        const who = s.publishedBy === undefined ? '' : `, published by ${s.publishedBy} at ${s.publishedAt ?? '?'}`;
        ($('cfg-version') as El).textContent = String(s.version);
        ($('cfg-source') as El).textContent = s.source;
        ($('cfg-publisher') as El).textContent = who;
        out.append(el('p', `Applied: version ${s.version} is in force (from ${s.source}${who}).`, 'sent'));
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
  // The form generated from the config schema (config-form.ts): each control carries its JSON pointer and
  // kind; a change writes that one value into the JSON (empty: removed, so the default applies) and checks it.
  const fields = (): El[] => Array.from(document.querySelectorAll('#config-form [data-path]'));
  const segs = (path: string): string[] => path.split('/').filter((x) => x !== '');
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const getAt = (root: unknown, path: string): unknown => segs(path).reduce<unknown>((v, k) => (isObj(v) ? v[k] : undefined), root);
  const setAt = (root: Record<string, unknown>, path: string, value: unknown): void => {
    const ks = segs(path);
    let o = root;
    for (const k of ks.slice(0, -1)) {
      const next = o[k];
      o = isObj(next) ? next : (o[k] = {});
    }
    const last = ks[ks.length - 1];
    if (last !== undefined) o[last] = value;
  };
  const deleteAt = (root: Record<string, unknown>, path: string): void => {
    const ks = segs(path);
    const chain: Record<string, unknown>[] = [root];
    for (const k of ks.slice(0, -1)) {
      const next = chain[chain.length - 1]?.[k];
      if (!isObj(next)) return;
      chain.push(next);
    }
    const last = ks[ks.length - 1];
    if (last !== undefined) delete chain[chain.length - 1]?.[last];
    // Objects left empty go too (an absent object and an empty one mean the same: defaults).
    for (let i = chain.length - 1; i > 0; i--) {
      if (Object.keys(chain[i] ?? {}).length > 0) break;
      const key = ks[i - 1];
      if (key !== undefined) delete chain[i - 1]?.[key];
    }
  };
  const showText = (kind: string, v: unknown): string => {
    if (v === undefined) return '';
    if (kind === 'list' && Array.isArray(v)) return v.map(String).join(', ');
    if (kind === 'json') return JSON.stringify(v);
    if (v === null) return 'null';
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
  };
  const fromJson = (): void => {
    let cfg: unknown;
    try {
      cfg = JSON.parse(config.value);
    } catch {
      return;
    }
    for (const f of fields()) {
      const v = getAt(cfg, f.getAttribute('data-path') ?? '');
      if (f.getAttribute('data-kind') === 'null') f.checked = v === null;
      else f.value = showText(f.getAttribute('data-kind') ?? '', v);
    }
  };
  /** The value a control holds: `{ absent: true }` for empty, an error text when it cannot be read. */
  const valueOf = (f: El): { absent: true } | { value: unknown } | { error: string } => {
    const kind = f.getAttribute('data-kind');
    if (kind === 'null') return f.checked ? { value: null } : { absent: true };
    const text = f.value.trim();
    if (text === '') return { absent: true };
    if (kind === 'boolean') return { value: text === 'true' };
    if (kind === 'number') return Number.isFinite(Number(text)) ? { value: Number(text) } : { error: 'not a number' };
    if (kind === 'list') return { value: text.split(',').map((x) => x.trim()).filter((x) => x !== '') };
    if (kind === 'json') {
      try {
        return { value: JSON.parse(text) as unknown };
      } catch (err) {
        return { error: `not valid JSON: ${(err as Error).message}` };
      }
    }
    if (kind === 'scalar') {
      const accepts = (f.getAttribute('data-accepts') ?? '').split(' ');
      if (accepts.includes('null') && text === 'null') return { value: null };
      if (accepts.includes('boolean') && (text === 'true' || text === 'false')) return { value: text === 'true' };
      if (accepts.includes('number') && /^-?[0-9]+(\.[0-9]+)?$/.test(text)) return { value: Number(text) };
    }
    return { value: text };
  };
  const fieldError = (f: El, message: string | undefined): void => {
    const out = $(`${f.getAttribute('id') ?? ''}-error`);
    if (out !== null) out.textContent = message ?? '';
    if (message === undefined) f.removeAttribute('aria-invalid');
    else f.setAttribute('aria-invalid', 'true');
  };
  /** Each error at the control of its path (or of the nearest enclosing path that has one); its sections opened. */
  const errorsAtFields = (errs: { path: string; message: string }[]): void => {
    const all = fields();
    for (const f of all) fieldError(f, undefined);
    for (const e of errs) {
      let best: El | undefined;
      let bestLen = -1;
      for (const f of all) {
        const p = f.getAttribute('data-path') ?? '';
        if ((e.path === p || e.path.startsWith(`${p}/`)) && p.length > bestLen && f.getAttribute('data-kind') !== 'null') {
          best = f;
          bestLen = p.length;
        }
      }
      if (best === undefined) continue;
      const out = $(`${best.getAttribute('id') ?? ''}-error`);
      fieldError(best, `${out?.textContent ? `${out.textContent}; ` : ''}${e.path === best.getAttribute('data-path') ? '' : `${e.path}: `}${e.message}`);
      for (let d = best.closest('details'); d !== null; d = d.parentElement?.closest('details') ?? null) d.open = true;
    }
  };
  $('config-form')?.addEventListener('change', (e) => {
    const f = e.target;
    const path = f?.getAttribute('data-path');
    if (f === null || f === undefined || path === null || path === undefined) return;
    let cfg: Record<string, unknown>;
    try {
      const parsed = JSON.parse(config.value) as unknown;
      cfg = isObj(parsed) ? parsed : {};
    } catch (err) {
      fieldError(f, `the JSON editor does not parse (${(err as Error).message}); fix it first`);
      return;
    }
    const v = valueOf(f);
    if ('error' in v) {
      fieldError(f, v.error);
      return;
    }
    fieldError(f, undefined);
    if ('absent' in v) deleteAt(cfg, path);
    else setAt(cfg, path, v.value);
    config.value = JSON.stringify(cfg, null, 2);
    fromJson();
    check().catch((err: unknown) => {
      ($('check-result') as El).replaceChildren(el('p', `Request failed: ${(err as Error).message}`, 'error'));
    });
  });
  // Enter in a field applies it (its change event), never submits the page.
  $('config-form')?.addEventListener('submit', (e) => e.preventDefault());
  config.addEventListener('change', () => fromJson());
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
