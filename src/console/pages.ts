/** The console's pages, as HTML fragments for {@link layout}. */
import type { CustomerView, Freshness } from '../api/views.js';
import type { Money } from '../../schemas/contract.js';
import { TriggerType } from '../../schemas/contract.js';
import { html, iso, type Html } from './html.js';
import type { WhyNot } from './why-not.js';

const money = (m: Money | null | undefined): string => (m ? `${(m.amount / 100).toFixed(2)} ${m.currency}` : '–');
const badge = (cls: string, text: string): Html => html`<span class="badge ${cls}">${text}</span>`;
const decisionClass = (d: string): string => (d === 'SENT' ? 'sent' : d === 'HELD' ? 'held' : 'suppressed');

export function loginPage(error: string | undefined, next: string): Html {
  return html`<p>Sign in with an API key that has the <code>console</code> scope (<code>KAIROS_API_KEYS</code>).</p>
${error === undefined ? '' : html`<p class="error" role="alert">${error}</p>`}
<form method="post" action="/console/login" class="inline">
<input type="hidden" name="next" value="${next}">
<div><label for="key">API key</label><input id="key" name="key" type="password" autocomplete="current-password" required size="40"></div>
<button type="submit">Sign in</button></form>`;
}

export function customerForm(id: string): Html {
  return html`<form method="get" action="/console/customer" class="inline" role="search">
<div><label for="customer-id">Customer id</label><input id="customer-id" name="id" value="${id}" required maxlength="128" size="30"></div>
<button type="submit">Look up</button></form>`;
}

export function customerPage(v: CustomerView & { freshness?: Freshness }, why: readonly WhyNot[]): Html {
  const f = v.freshness;
  const p = v.profile;
  return html`<h2>Customer <span id="customer-name">${v.customerId}</span></h2>
${f ? html`<p class="note">Served by ${f.servedBy} from the ${f.source} copy of task ${f.partition}; stream time ${iso(f.streamTime)}${f.lagRecords === undefined ? '' : html`, ${f.lagRecords ?? '?'} records behind`}.</p>` : ''}
<table id="why-not"><caption>Why not? — per trigger type, from the newest recorded decision</caption>
<thead><tr><th scope="col">Type</th><th scope="col">Campaign</th><th scope="col">Status</th><th scope="col">Answer</th></tr></thead><tbody>
${why.map((w) => html`<tr data-type="${w.type}"><th scope="row">${w.type}</th><td>${w.campaignId ?? '–'}</td><td>${badge(w.verdict, w.verdict)}</td><td>${w.answer}</td></tr>`)}
</tbody></table>
<table id="decisions"><caption>Guard decisions (newest first, last 25)</caption>
<thead><tr><th scope="col">Time</th><th scope="col">Type</th><th scope="col">Campaign</th><th scope="col">Variant</th><th scope="col">Decision</th><th scope="col">Reason</th><th scope="col">Detail</th></tr></thead><tbody>
${v.decisions.length === 0 ? html`<tr><td colspan="7">none recorded</td></tr>` : v.decisions.map((d) => html`<tr><td>${iso(d.occurredAt)}</td><td>${d.type}</td><td>${d.campaignId}</td><td>${d.variant}</td><td>${badge(decisionClass(d.decision), d.decision)}</td><td>${d.reason}</td><td>${d.detail ?? ''}</td></tr>`)}
</tbody></table>
<table id="triggers"><caption>Triggers sent (newest first, last 10)</caption>
<thead><tr><th scope="col">Time</th><th scope="col">Type</th><th scope="col">Campaign</th><th scope="col">Variant</th><th scope="col">Channels</th><th scope="col">Rule</th><th scope="col">Expires</th></tr></thead><tbody>
${v.triggers.length === 0 ? html`<tr><td colspan="7">none recorded</td></tr>` : v.triggers.map((t) => html`<tr><td>${iso(t.occurredAt)}</td><td>${t.type}</td><td>${t.campaignId}</td><td>${t.variant}</td><td>${t.channels.join(', ')}</td><td>${t.rule}</td><td>${iso(t.expiresAt)}</td></tr>`)}
</tbody></table>
<div class="grid"><section aria-labelledby="basket-h"><h3 id="basket-h">Basket</h3>
${v.basket === null ? html`<p>empty</p>` : html`<table><thead><tr><th scope="col">SKU</th><th scope="col">Product</th><th scope="col" class="num">Qty</th><th scope="col" class="num">Unit price</th><th scope="col">Added</th></tr></thead><tbody>
${v.basket.items.map((i) => html`<tr><td>${i.sku}</td><td>${i.productId ?? '–'}</td><td class="num">${i.quantity}</td><td class="num">${money(i.unitPrice)}</td><td>${iso(i.addedAt)}</td></tr>`)}
</tbody></table><p>Value ${money(v.basket.value)}; last activity ${v.basket.lastActivityType ?? '–'} at ${iso(v.basket.lastActivityAt)}</p>`}</section>
<section aria-labelledby="wishlist-h"><h3 id="wishlist-h">Wishlist</h3>
${v.wishlist.length === 0 ? html`<p>empty</p>` : html`<ul>${v.wishlist.map((w) => html`<li>${w.productId}${w.sku === null ? ' (any size)' : html` sku ${w.sku}`}</li>`)}</ul>`}</section>
<section aria-labelledby="timers-h"><h3 id="timers-h">Pending timers</h3>
${v.timers === null ? html`<p>not listed by a standby copy</p>` : v.timers.length === 0 ? html`<p>none</p>` : html`<table id="timers"><thead><tr><th scope="col">Processor</th><th scope="col">Timer</th><th scope="col">Due (${'stream time'})</th></tr></thead><tbody>
${v.timers.map((t) => html`<tr><td>${t.processor}</td><td>${t.name}</td><td>${iso(t.time)}</td></tr>`)}</tbody></table>`}</section>
<section aria-labelledby="browse-h"><h3 id="browse-h">Browsing session</h3>
${v.browsing === null ? html`<p>none</p>` : html`<p>${v.browsing.views} views since ${iso(v.browsing.sessionStart)}, last at ${iso(v.browsing.lastViewAt)}: ${v.browsing.products.map((x) => `${x.productId} ×${x.views}`).join(', ')}</p>`}</section>
<section aria-labelledby="profile-h"><h3 id="profile-h">Profile</h3>
${p === null ? html`<p>no profile known (every trigger is suppressed: no consent)</p>` : html`<dl>
<dt>Consents</dt><dd>${Object.entries(p.consents).map(([k, ok]) => `${k} ${ok ? 'yes' : 'no'}`).join(', ')}</dd>
<dt>Time zone</dt><dd>${p.timezone ?? 'default of the guards'}</dd>
<dt>Segments</dt><dd>${p.segments.join(', ') || '–'}</dd>
<dt>Attributes</dt><dd>${Object.entries(p.attributes).map(([k, x]) => `${k} = ${String(x)}`).join(', ') || '–'}</dd>
${p.email === undefined ? '' : html`<dt>E-mail</dt><dd>${p.email}</dd>`}<dt>Updated</dt><dd>${iso(p.updatedAt)}</dd></dl>`}</section></div>`;
}

const TYPES = TriggerType.anyOf.map((t) => t.const);

export function livePage(campaigns: readonly string[]): Html {
  return html`<p>Guard decisions as this instance's tasks write them (other instances show their own partitions). The list shows at most 50 new decisions per half second; more are counted as skipped, never queued.</p>
<form id="live-filters" class="inline" aria-controls="events">
<div><label for="f-campaign">Campaign</label><select id="f-campaign" name="campaign"><option value="">all</option>${campaigns.map((c) => html`<option>${c}</option>`)}</select></div>
<div><label for="f-type">Trigger type</label><select id="f-type" name="type"><option value="">all</option>${TYPES.map((t) => html`<option>${t}</option>`)}</select></div>
<div><label for="f-customer">Customer id</label><input id="f-customer" name="customer" maxlength="128"></div>
<button type="submit">Apply filters</button></form>
<p id="live-status" role="status" aria-live="polite">Connecting…</p>
<table id="counts"><caption>Decisions since this instance started, per type and decision</caption>
<thead><tr><th scope="col">Type</th><th scope="col" class="num">Sent</th><th scope="col" class="num">Held</th><th scope="col" class="num">Suppressed</th></tr></thead><tbody></tbody></table>
<div id="events"><table><caption>Latest decisions (newest first)</caption><thead><tr><th scope="col">Event time</th><th scope="col">Customer</th><th scope="col">Type</th><th scope="col">Campaign</th><th scope="col">Decision</th><th scope="col">Reason</th><th scope="col">Detail</th></tr></thead><tbody id="event-rows"></tbody></table></div>`;
}

export function settingsPage(o: { json: string; version: number; source: string; canPublish: boolean; topic: string | undefined; lastPublish: string | undefined; windows: readonly string[] }): Html {
  return html`<p>Version <strong id="cfg-version">${o.version}</strong> is in force (from <code id="cfg-source">${o.source}</code>).
Edit it as JSON: <em>Check</em> validates it as a config file is validated and lists what changes; <em>Preview</em> replays events — the input topics' recent records, or an NDJSON file as <code>kairos replay</code> reads it — with the config in force and with yours, and shows what each would have sent. A replay starts from empty state: what customers did before the window is not known to it.</p>
<form id="settings-form">
<label for="config">Campaign config (JSON)</label>
<textarea id="config" name="config" rows="16" spellcheck="false" aria-describedby="check-result">${o.json}</textarea>
<div class="actions">
<button type="button" id="check">Check and diff</button>
<div><label for="events-source">Events to replay</label><select id="events-source">
<option value="file">an NDJSON file (next field)</option>${o.windows.map((w) => html`<option value="${w}">the input topics, last ${w}</option>`)}</select></div>
<div><label for="events-file">Events for the preview (NDJSON)</label><input type="file" id="events-file" accept=".ndjson,.json,.txt,application/x-ndjson"></div>
<button type="button" id="preview">Preview</button>
${o.canPublish ? html`<button type="button" id="publish">Publish to ${o.topic ?? ''}</button>` : ''}
</div></form>
${o.canPublish ? '' : html`<p class="note">${o.topic === undefined ? 'Publishing needs KAIROS_CAMPAIGNS_TOPIC (the compacted campaign topic).' : 'Publishing needs the console-publish scope.'}</p>`}
${o.lastPublish === undefined ? '' : html`<p class="note" id="last-publish">${o.lastPublish}</p>`}
<section aria-labelledby="check-h"><h2 id="check-h">Check</h2><div id="check-result" role="status" aria-live="polite"><p class="note">Not checked yet.</p></div></section>
<section aria-labelledby="preview-h"><h2 id="preview-h">Backtest preview</h2><div id="preview-result" role="status" aria-live="polite"><p class="note">No preview yet.</p></div></section>
<section aria-labelledby="publish-h"><h2 id="publish-h">Publish</h2><div id="publish-result" role="status" aria-live="polite"></div></section>`;
}
