/** The console's pages, as HTML fragments for {@link layout}. */
import type { CustomerView, Freshness } from '../api/views.js';
import type { Money } from '../../schemas/contract.js';
import { TriggerType } from '../../schemas/contract.js';
import { html, iso, type Html } from './html.js';
import type { WhyNot } from './why-not.js';
import type { RecentEvents } from './recent-events.js';
import type { DailyArm, Report } from '../warehouse/report.js';
import type { Publication } from '../config/live.js';

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

const span = (ms: number): string => (ms % 86_400_000 === 0 && ms > 86_400_000 ? `${ms / 86_400_000} d` : ms % 3_600_000 === 0 ? `${ms / 3_600_000} h` : `${Math.round(ms / 60_000)} min`);

/** What the engine keeps of the customer's input events (see recent-events.ts), and that it is not the events. */
export function recentEventsSection(r: RecentEvents | undefined): Html {
  const head = html`<h3 id="events-h">Recent events</h3>`;
  if (r === undefined) return html`<section aria-labelledby="events-h">${head}<p class="note">Not available on this instance.</p></section>`;
  if (!r.local) {
    return html`<section aria-labelledby="events-h">${head}<p class="note">This customer's task${r.partition === undefined ? '' : ` (${r.partition})`} is not held by this instance: open the console of the instance that runs it (the freshness line names it).</p></section>`;
  }
  if (r.windowMs === 0) return html`<section aria-labelledby="events-h">${head}<p class="note" id="events-note">The engine keeps no copy of input events, and input deduplication is off (<code>input.dedupWindow</code> 0), so nothing of them is kept: see the state they left below.</p></section>`;
  return html`<section aria-labelledby="events-h">${head}<p class="note" id="events-note">The engine keeps no copy of input events, only the state they leave (basket, wishlist, browsing session, profile below). What it keeps of the events themselves: the event ids its input deduplication saw for this customer in the last ${span(r.windowMs)} of stream time, per topic, with when it first saw each. Each trigger names the record that caused it.</p>
${r.events.length === 0 ? html`<p>none within the window</p>` : html`<table id="recent-events"><caption>Event ids seen (newest first${r.more > 0 ? html`, ${r.more} older not shown` : ''})</caption><thead><tr><th scope="col">First seen (stream time)</th><th scope="col">Topic</th><th scope="col">Event id</th></tr></thead><tbody>
${r.events.map((e) => html`<tr><td>${iso(e.seenAt)}</td><td>${e.topic}</td><td>${e.eventId}</td></tr>`)}</tbody></table>`}</section>`;
}

export function customerPage(v: CustomerView & { freshness?: Freshness }, why: readonly WhyNot[], events?: RecentEvents): Html {
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
<thead><tr><th scope="col">Time</th><th scope="col">Type</th><th scope="col">Campaign</th><th scope="col">Variant</th><th scope="col">Channels</th><th scope="col">Rule</th><th scope="col">Caused by</th><th scope="col">Expires</th></tr></thead><tbody>
${v.triggers.length === 0 ? html`<tr><td colspan="8">none recorded</td></tr>` : v.triggers.map((t) => html`<tr><td>${iso(t.occurredAt)}</td><td>${t.type}</td><td>${t.campaignId}</td><td>${t.variant}</td><td>${t.channels.join(', ')}</td><td>${t.rule}</td><td>${t.causedBy.topic}[${t.causedBy.partition}]@${t.causedBy.offset} (${t.causedBy.eventId})</td><td>${iso(t.expiresAt)}</td></tr>`)}
</tbody></table>
${recentEventsSection(events)}
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

export function settingsPage(o: {
  json: string;
  version: number;
  source: string;
  publication: Publication | undefined;
  canPublish: boolean;
  topic: string | undefined;
  lastPublish: string | undefined;
  windows: readonly string[];
  form: Html;
}): Html {
  return html`<p>Version <strong id="cfg-version">${o.version}</strong> is in force (from <code id="cfg-source">${o.source}</code>)<span id="cfg-publisher">${o.publication === undefined ? '' : `, published by ${o.publication.by} at ${o.publication.at}`}</span>.
Edit it as a form or as JSON: <em>Check</em> validates it as a config file is validated and lists what changes; <em>Preview</em> replays events — the input topics' recent records, or an NDJSON file as <code>kairos replay</code> reads it — with the config in force and with yours, and shows what each would have sent. </p>
${o.form}
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

export function resultsForm(campaigns: readonly string[], campaign: string, window: string): Html {
  return html`<form method="get" action="/console/results" class="inline">
<div><label for="r-campaign">Campaign</label><input id="r-campaign" name="campaign" value="${campaign}" list="r-campaigns" required maxlength="128"><datalist id="r-campaigns">${campaigns.map((c) => html`<option value="${c}"></option>`)}</datalist></div>
<div><label for="r-window">Attribution window</label><input id="r-window" name="window" value="${window}" size="6" aria-describedby="r-window-hint"></div>
<button type="submit">Show results</button></form><p class="note" id="r-window-hint">An order within the window after a customer's first trigger (or holdout decision) is a conversion; e.g. 7d, 48h.</p>`;
}

const pct = (x: number | null): string => (x === null ? '–' : `${(x * 100).toFixed(2)} %`);
const pp = (x: number | null): string => (x === null ? '–' : `${x >= 0 ? '+' : ''}${(x * 100).toFixed(2)} pp`);

const PALETTE = ['#1f6fb2', '#0b6b2b', '#8a5a00', '#6a3d9a', '#a4161a'];

/**
 * Per day (UTC) and arm: each arm's sends as a light bar (the holdout's: its held-out decisions) with its
 * conversions as a dark bar inside it (customers first exposed that day who ordered within the window).
 */
export function dailyChart(days: readonly DailyArm[]): Html {
  if (days.length === 0) return html``;
  const dayList = [...new Set(days.map((d) => d.day))].sort();
  const arms = [...new Map(days.map((d) => [d.arm, d.isHoldout])).entries()].sort(([a, ha], [b, hb]) => (ha === hb ? (a < b ? -1 : 1) : ha ? -1 : 1));
  const variants = arms.filter(([, holdout]) => !holdout).map(([arm]) => arm);
  const colour = new Map(arms.map(([arm, holdout]) => [arm, holdout ? '#8a8f94' : (PALETTE[variants.indexOf(arm) % PALETTE.length] as string)]));
  const W = 760;
  const H = 230;
  const [left, top, bottom] = [44, 30, 40];
  const plotH = H - top - bottom;
  const max = Math.max(1, ...days.map((d) => d.sends));
  const groupW = (W - left - 10) / dayList.length;
  const barW = Math.max(2, Math.min(28, (groupW - 8) / arms.length));
  const y = (v: number): number => top + plotH - (v / max) * plotH;
  const at = new Map(days.map((d) => [`${d.day}\0${d.arm}`, d]));
  const bars = dayList.map((day, i) => {
    const x0 = left + i * groupW + (groupW - barW * arms.length) / 2;
    return html`<g>${arms.map(([arm], j) => {
      const d = at.get(`${day}\0${arm}`);
      if (d === undefined) return '';
      const x = (x0 + j * barW).toFixed(1);
      const c = colour.get(arm) ?? '#1f6fb2';
      return html`<rect x="${x}" y="${y(d.sends).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(top + plotH - y(d.sends)).toFixed(1)}" fill="${c}" fill-opacity="0.35"></rect><rect x="${x}" y="${y(d.conversions).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(top + plotH - y(d.conversions)).toFixed(1)}" fill="${c}"></rect>`;
    })}${dayList.length <= 16 || i % Math.ceil(dayList.length / 16) === 0 ? html`<text x="${(left + i * groupW + groupW / 2).toFixed(1)}" y="${H - bottom + 16}" text-anchor="middle">${day.slice(5)}</text>` : ''}</g>`;
  });
  const legend = arms.map(([arm, holdout], i) => html`<rect x="${left + i * 130}" y="4" width="12" height="12" fill="${colour.get(arm) ?? ''}"></rect><text x="${left + i * 130 + 16}" y="14">${holdout && arm !== 'holdout' ? `${arm} (holdout)` : arm}</text>`);
  const desc = dayList
    .map((day) => `${day}: ${arms.map(([arm, holdout]) => {
      const d = at.get(`${day}\0${arm}`);
      return d === undefined ? `${arm} none` : `${arm} ${d.sends} ${holdout ? 'held out' : 'sent'}, ${d.exposed} first exposed, ${d.conversions} converted`;
    }).join('; ')}`)
    .join('. ');
  return html`<figure><svg id="daily-chart" role="img" aria-labelledby="daily-title daily-desc" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">
<title id="daily-title">Per day and arm: sends (light bars) and conversions (dark bars)</title><desc id="daily-desc">${desc}</desc>
${legend}<line x1="${left}" x2="${W - 10}" y1="${top + plotH}" y2="${top + plotH}" stroke="#8a8f94"></line>
<text x="${left - 6}" y="${top + 4}" text-anchor="end">${max}</text><text x="${left - 6}" y="${top + plotH}" text-anchor="end">0</text>
${bars}<text x="${left}" y="${H - 4}">UTC day; light: sends (holdout: held out); dark: conversions, by day of first exposure</text></svg></figure>
<table id="results-daily"><caption>Per day (UTC)</caption><thead><tr><th scope="col">Day</th><th scope="col">Arm</th><th scope="col" class="num">Sends</th><th scope="col" class="num">First exposed</th><th scope="col" class="num">Conversions</th></tr></thead><tbody>
${days.map((d) => html`<tr><td>${d.day}</td><th scope="row">${d.isHoldout && d.arm !== 'holdout' ? `${d.arm} (holdout)` : d.arm}</th><td class="num">${d.sends}</td><td class="num">${d.exposed}</td><td class="num">${d.conversions}</td></tr>`)}
</tbody></table>`;
}

/** The A/B report (`kairos report`): a chart of each arm's conversion rate and its uplift over the holdout with the 95 % CI, and the table; the per-day chart when given. */
export function resultsPage(r: Report, daily: readonly DailyArm[] = []): Html {
  if (r.arms.length === 0) return html`<p role="status">No triggers or holdout decisions of campaign ${r.campaignId} in the warehouse.</p>`;
  const W = 760;
  const rowH = 34;
  const top = 28;
  const H = top + r.arms.length * rowH + 24;
  const [rateX, rateW] = [150, 240];
  const [upX, upW] = [430, 300];
  const maxRate = Math.max(...r.arms.map((a) => a.rate), 0.0001) * 1.15;
  const span = Math.max(...r.arms.flatMap((a) => [Math.abs(a.ciLow ?? 0), Math.abs(a.ciHigh ?? 0), Math.abs(a.uplift ?? 0)]), 0.0001) * 1.15;
  const ux = (v: number): number => upX + upW / 2 + (v / span) * (upW / 2);
  const hasHoldout = r.arms.some((a) => a.isHoldout);
  const name = (a: Report['arms'][number]): string => (a.isHoldout && a.arm !== 'holdout' ? `${a.arm} (holdout)` : a.arm);
  const rows = r.arms.map((a, i) => {
    const y = top + i * rowH;
    const w = (a.rate / maxRate) * rateW;
    return html`<g><text x="0" y="${y + 20}">${name(a)}</text>
<rect x="${rateX}" y="${y + 6}" width="${w.toFixed(1)}" height="20" fill="${a.isHoldout ? '#8a8f94' : '#1f6fb2'}"></rect>
<text x="${(rateX + w + 6).toFixed(1)}" y="${y + 20}">${pct(a.rate)} (${a.conversions}/${a.customers})</text>
${a.uplift === null || a.ciLow === null || a.ciHigh === null ? '' : html`<line x1="${ux(a.ciLow).toFixed(1)}" x2="${ux(a.ciHigh).toFixed(1)}" y1="${y + 16}" y2="${y + 16}" stroke="#1a1a1a" stroke-width="2"></line>
<line x1="${ux(a.ciLow).toFixed(1)}" x2="${ux(a.ciLow).toFixed(1)}" y1="${y + 10}" y2="${y + 22}" stroke="#1a1a1a" stroke-width="2"></line>
<line x1="${ux(a.ciHigh).toFixed(1)}" x2="${ux(a.ciHigh).toFixed(1)}" y1="${y + 10}" y2="${y + 22}" stroke="#1a1a1a" stroke-width="2"></line>
<circle cx="${ux(a.uplift).toFixed(1)}" cy="${y + 16}" r="5" fill="${a.ciLow > 0 ? '#0b6b2b' : a.ciHigh < 0 ? '#a4161a' : '#1f6fb2'}"></circle>`}</g>`;
  });
  const desc = r.arms.map((a) => `${name(a)}: ${pct(a.rate)}${a.uplift === null ? '' : `, uplift ${pp(a.uplift)} [${pp(a.ciLow)}, ${pp(a.ciHigh)}]`}`).join('; ');
  return html`<figure><svg id="results-chart" role="img" aria-labelledby="chart-title chart-desc" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">
<title id="chart-title">Conversion rate per arm and uplift over the holdout with its 95 % confidence interval</title><desc id="chart-desc">${desc}</desc>
<text x="${rateX}" y="14">conversion rate</text><text x="${upX}" y="14">${hasHoldout ? 'uplift over the holdout, 95 % CI' : 'uplift: no holdout in this campaign'}</text>
<line x1="${ux(0)}" x2="${ux(0)}" y1="${top}" y2="${H - 20}" stroke="#8a8f94" stroke-dasharray="4 3"></line>
${hasHoldout ? html`<text x="${ux(0)}" y="${H - 6}" text-anchor="middle">0</text><text x="${upX}" y="${H - 6}">${pp(-span)}</text><text x="${upX + upW}" y="${H - 6}" text-anchor="end">${pp(span)}</text>` : ''}
${rows}</svg><figcaption class="note">Campaign ${r.campaignId}; ${r.method}.</figcaption></figure>
<table id="results"><caption>A/B report</caption><thead><tr><th scope="col">Arm</th><th scope="col" class="num">Customers</th><th scope="col" class="num">Conversions</th><th scope="col" class="num">Rate</th><th scope="col" class="num">Uplift</th><th scope="col">95 % CI</th><th scope="col" class="num">Relative</th></tr></thead><tbody>
${r.arms.map((a) => html`<tr><th scope="row">${name(a)}</th><td class="num">${a.customers}</td><td class="num">${a.conversions}</td><td class="num">${pct(a.rate)}</td><td class="num">${pp(a.uplift)}</td><td>${a.ciLow === null ? '–' : `[${pp(a.ciLow)}, ${pp(a.ciHigh)}]`}</td><td class="num">${a.relativeUplift === null ? '–' : `${a.relativeUplift >= 0 ? '+' : ''}${(a.relativeUplift * 100).toFixed(1)} %`}</td></tr>`)}
</tbody></table>${hasHoldout ? '' : html`<p class="note">No holdout: uplift needs a holdout share in the campaign's experiment.</p>`}
${daily.length === 0 ? '' : html`<h2 id="daily-h">Per day</h2>${dailyChart(daily)}`}`;
}
