/**
 * Server-rendered HTML of the console: one layout (skip link, navigation, main landmark), escaping in one
 * place, and the stylesheet. Pages work without JavaScript except the live stream and the settings editor,
 * whose scripts are served from /console/assets (same origin: the Content-Security-Policy allows nothing else).
 */

/** Text and attribute values, escaped for HTML. */
export function esc(v: unknown): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;'));
}

/** Marks fragments this module built: a symbol, so no value parsed from JSON (a payload with an `html` field) passes. */
const TRUSTED: unique symbol = Symbol('kairos.console.html');

/** A trusted fragment (already escaped). */
export interface Html {
  readonly html: string;
  readonly [TRUSTED]: true;
}

/** Tagged template: interpolations are escaped unless they are {@link Html} fragments or arrays of them. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0] ?? '';
  values.forEach((v, i) => {
    out += render(v) + (strings[i + 1] ?? '');
  });
  return { html: out, [TRUSTED]: true };
}

function render(v: unknown): string {
  if (Array.isArray(v)) return v.map(render).join('');
  if (typeof v === 'object' && v !== null && (v as Partial<Html>)[TRUSTED] === true) return (v as Html).html;
  if (v === undefined || v === null || v === false) return '';
  return esc(v);
}

export const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

export const iso = (ms: number | null | undefined): string => (typeof ms === 'number' && Number.isFinite(ms) ? new Date(ms).toISOString().replace('.000Z', 'Z') : '–');

export interface LayoutOptions {
  readonly title: string;
  readonly active?: 'live' | 'customer' | 'settings' | 'results';
  /** Who is signed in (null on the sign-in page). */
  readonly user: string | null;
  readonly body: Html;
  readonly script?: string;
}

export function layout(o: LayoutOptions): string {
  const link = (href: string, name: NonNullable<LayoutOptions['active']>, label: string) =>
    html`<li><a href="${href}"${o.active === name ? html` aria-current="page"` : ''}>${label}</a></li>`;
  return `<!doctype html>${html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${o.title} · Kairos console</title><link rel="stylesheet" href="/console/assets/console.css"></head>
<body><a class="skip" href="#main">Skip to content</a>
<header><span class="brand">Kairos console</span>
${o.user === null ? '' : html`<nav aria-label="Console"><ul>${link('/console/live', 'live', 'Live')}${link('/console/customer', 'customer', 'Customer')}${link('/console/settings', 'settings', 'Campaign settings')}${link('/console/results', 'results', 'Results')}</ul></nav>
<form method="post" action="/console/logout" class="who"><span>Signed in as ${o.user}</span> <button type="submit">Sign out</button></form>`}</header>
<main id="main" tabindex="-1"><h1>${o.title}</h1>${o.body}</main>
${o.script === undefined ? '' : html`<script src="/console/assets/${o.script}" defer></script>`}</body></html>`.html}`;
}

export const CSS = `
:root { font-family: system-ui, sans-serif; color: #1a1a1a; background: #fff; }
body { margin: 0; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px; z-index: 2; }
header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; padding: .5rem 1rem; background: #12324a; color: #fff; }
header a, header button { color: #fff; } .brand { font-weight: 700; }
nav ul { display: flex; gap: 1rem; list-style: none; margin: 0; padding: 0; }
nav a[aria-current="page"] { font-weight: 700; text-decoration-thickness: 3px; }
.who { margin-left: auto; } .who button { background: none; border: 1px solid #fff; border-radius: 3px; cursor: pointer; }
main { padding: 1rem; max-width: 78rem; } main:focus { outline: none; }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible { outline: 3px solid #d97a00; outline-offset: 2px; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .9rem; } caption { text-align: left; font-weight: 600; padding: .25rem 0; }
th, td { border-bottom: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; } th { background: #eef2f5; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
form.inline { display: flex; gap: .5rem; align-items: end; flex-wrap: wrap; margin-bottom: 1rem; }
label { display: block; font-weight: 600; margin-bottom: .2rem; }
input, select, button, textarea { font: inherit; } button { padding: .3rem .8rem; cursor: pointer; }
textarea { width: 100%; font-family: ui-monospace, monospace; font-size: .85rem; }
.badge { display: inline-block; padding: 0 .4rem; border-radius: 3px; font-size: .8rem; font-weight: 700; border: 1px solid; }
.sent { color: #0b6b2b; } .held { color: #8a5a00; } .suppressed { color: #a4161a; } .waiting, .nothing, .off { color: #555; }
.error { color: #a4161a; } .note { color: #555; font-size: .9rem; }
.errors li { margin: .2rem 0; } code { background: #f3f3f3; padding: 0 .2rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: 0 2rem; }
.plus { color: #0b6b2b; font-weight: 700; } .minus { color: #a4161a; font-weight: 700; }
#events { max-height: 32rem; overflow: auto; }
svg text { font: 12px system-ui, sans-serif; fill: #1a1a1a; }
.vh { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
#config-form details { border: 1px solid #ccc; border-radius: 4px; padding: .25rem .75rem; margin: .4rem 0; } #config-form summary { font-weight: 600; cursor: pointer; }
#config-form fieldset { border: 1px solid #ddd; margin: .4rem 0; } .fields { display: flex; flex-wrap: wrap; gap: .5rem 1.25rem; margin: .4rem 0; }
.field { display: flex; flex-direction: column; max-width: 22rem; } .field.wide { flex-basis: 100%; max-width: none; } .field.check { flex-direction: row; align-items: center; gap: .3rem; flex-wrap: wrap; }
.field .hint { font-size: .8rem; } .field-error:empty { display: none; } [aria-invalid="true"] { border: 2px solid #a4161a; }
.actions { display: flex; gap: .75rem; align-items: end; flex-wrap: wrap; margin-top: .5rem; }
`;
