/**
 * The campaign console at /console (issue 18), registered on the instance's HTTP server next to the query API:
 *   /console/customer  a customer's timeline and "why not?" per trigger type, read through the query API
 *                      (GET /v1/customers/:id, so owner routing, standby answers and freshness are the API's);
 *   /console/live      guard decisions as this instance writes them (server-sent events, bounded);
 *   /console/settings  the campaign config in force, checked and diffed as edited, a backtest preview, and
 *                      publish to the campaign topic.
 * Authentication: src/console/session.ts. Writes (POST) are refused from another origin, and the JSON ones
 * only accept application/json (a cross-site form cannot send it); the session cookie is SameSite=Strict.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { AuthConfig, Scope } from '../api/auth.js';
import type { CustomerView, Freshness } from '../api/views.js';
import type { LiveCampaigns } from '../config/live.js';
import type { KairosErrorCode } from '../errors.js';
import type { RecentInput } from '../kafka/recent-input.js';
import { toMs } from '../config/duration.js';
import type { DailyArm, Report } from '../warehouse/report.js';
import { Backtester } from './backtest.js';
import { clientScript, liveClient, settingsClient } from './client.js';
import type { LiveFeed } from './feed.js';
import { CSP, CSS, html, layout } from './html.js';
import { customerForm, customerPage, livePage, loginPage, resultsForm, resultsPage, settingsPage } from './pages.js';
import { COOKIE, ConsoleSessions, SESSION_TTL_MS, type ConsoleUser } from './session.js';
import { checkConfigText, diffConfigs, type FieldError } from './settings.js';
import { configForm } from './config-form.js';
import { whyNot } from './why-not.js';
import type { RecentEvents } from './recent-events.js';

export interface ConsolePublisher {
  readonly topic: string;
  publish(config: unknown, by: string, at: number): Promise<{ partition: number; offset: string }>;
}

export interface ConsoleOptions {
  readonly auth: AuthConfig;
  readonly live: LiveCampaigns;
  readonly feed: LiveFeed;
  /** The campaign topic (KAIROS_CAMPAIGNS_TOPIC); publishing is off without it. */
  readonly publisher?: ConsolePublisher | undefined;
  readonly backtester?: Backtester;
  /** The input topics' records since a time, as replay lines (the preview's "last N hours"); absent: upload only. */
  readonly recentInput?: ((since: number) => Promise<RecentInput>) | undefined;
  /** What the engine keeps of a customer's recent input events (the customer page); absent: the page says so. */
  readonly recentEvents?: ((customerId: string, windowMs: number) => Promise<RecentEvents>) | undefined;
  /** The A/B report of `kairos report` from the configured warehouse; the results page says how to set one up without it. */
  readonly report?: ((campaignId: string, windowMs: number) => Promise<Report>) | undefined;
  /** The report per day and arm (sends, first exposures, conversions), for the results page's per-day chart. */
  readonly daily?: ((campaignId: string, windowMs: number) => Promise<readonly DailyArm[]>) | undefined;
  readonly logger?: Logger;
}

/** At most this many live streams per instance (each polls the feed twice a second). */
export const MAX_STREAMS = 20;
/** The preview's windows over the input topics. */
export const WINDOWS: Readonly<Record<string, number>> = { '1h': 3_600_000, '6h': 6 * 3_600_000, '24h': 24 * 3_600_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000 };
/** A window's preview first replays the stretch before it (as long as the window, at most this), uncounted. */
export const WARMUP_MAX_MS = 7 * 86_400_000;

interface WindowSource {
  readonly kind: 'window';
  readonly window: string;
  readonly records: number;
  readonly undecodable: number;
  readonly truncated: boolean;
  /** The stretch before the window replayed to warm up the state ("24h", "7d"), or why it was not. */
  readonly warmup: { readonly stretch: string; readonly skipped?: string };
}

const duration = (ms: number): string => (ms % 86_400_000 === 0 && ms > 86_400_000 ? `${ms / 86_400_000}d` : ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : `${Math.round(ms / 60_000)}m`);

/** Largest NDJSON file a preview accepts (the request body, JSON-encoded). */
export const PREVIEW_BODY_LIMIT = 32 * 1024 * 1024;

interface ApiProblem {
  readonly error: { readonly code: KairosErrorCode; readonly message: string; readonly fields?: readonly FieldError[] };
  readonly statusCode: number;
}

const problem = (reply: FastifyReply, status: number, code: KairosErrorCode, message: string, fields?: readonly FieldError[]): FastifyReply =>
  reply.code(status).send({ error: { code, message, ...(fields === undefined ? {} : { fields }) }, statusCode: status } satisfies ApiProblem);

const sendPage = (reply: FastifyReply, page: string, status = 200): FastifyReply =>
  reply.code(status).header('content-type', 'text/html; charset=utf-8').header('content-security-policy', CSP).header('cache-control', 'no-store').header('x-content-type-options', 'nosniff').send(page);

/** Only paths inside the console are followed after sign-in. */
const safeNext = (next: unknown): string => (typeof next === 'string' && /^\/console(\/[^\s\\]*)?(\?[^\s\\]*)?$/.test(next) && !next.startsWith('//') ? next : '/console/live');

export async function registerConsole(app: FastifyInstance, opts: ConsoleOptions): Promise<void> {
  const sessions = new ConsoleSessions(opts.auth);
  const backtester = opts.backtester ?? new Backtester();
  const log = opts.logger?.child({ component: 'console' });
  const streams = new Set<() => void>();
  let lastPublish: string | undefined;
  // Generated from the config schema once (it is fixed for the process).
  const form = configForm();

  await app.register(
    (c, _o, done) => {
      c.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16 * 1024 }, (_req, body, next) => {
        next(null, Object.fromEntries(new URLSearchParams(body as string)));
      });
      c.setErrorHandler((err, req, reply) => {
        const e = err as { statusCode?: number; message: string };
        const status = typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500 ? e.statusCode : 500;
        if (status === 500) log?.error({ err, url: req.url }, 'console request failed');
        return problem(reply, status, status === 500 ? 'KAIROS_ERR_INTERNAL' : 'KAIROS_ERR_API_BAD_REQUEST', status === 500 ? 'internal error' : e.message);
      });
      // Writes only from the console's own origin (browsers send Origin on every POST).
      c.addHook('preHandler', (req, reply, next) => {
        const origin = req.headers.origin;
        if (req.method === 'POST' && typeof origin === 'string' && origin !== 'null') {
          let host: string | undefined;
          try {
            host = new URL(origin).host;
          } catch {
            host = undefined;
          }
          if (host !== req.headers.host) {
            void problem(reply, 403, 'KAIROS_ERR_API_FORBIDDEN', 'cross-origin request refused');
            return;
          }
        }
        next();
      });

      /** The user of a page request, or a redirect to sign in (401) or a refusal page (403). */
      const pageUser = (req: FastifyRequest, reply: FastifyReply): ConsoleUser | undefined => {
        const a = sessions.user(req.headers);
        if (a.ok) return a.user;
        if (a.status === 401) void reply.redirect(`/console/login?next=${encodeURIComponent(req.url)}`, 303);
        else void sendPage(reply, layout({ title: 'Not allowed', user: null, body: html`<p class="error" role="alert">${a.reason}</p><p><a href="/console/login">Sign in with another key</a></p>` }), 403);
        return undefined;
      };
      /** The user of a JSON request with `scope`, or undefined after answering 401/403. */
      const apiUser = (req: FastifyRequest, reply: FastifyReply, scope: Scope = 'console'): ConsoleUser | undefined => {
        const a = sessions.user(req.headers);
        if (!a.ok) {
          void problem(reply, a.status, a.status === 401 ? 'KAIROS_ERR_API_UNAUTHORIZED' : 'KAIROS_ERR_API_FORBIDDEN', a.reason);
          return undefined;
        }
        if (!a.user.scopes.has(scope)) {
          void problem(reply, 403, 'KAIROS_ERR_API_FORBIDDEN', `${a.user.id} lacks the ${scope} scope`);
          return undefined;
        }
        return a.user;
      };
      const userName = (u: ConsoleUser): string => (u.id.startsWith('key:') ? u.id.slice(4) : u.id);

      c.get('/console', (_req, reply) => reply.redirect('/console/live', 302));

      c.get('/console/assets/console.css', (_req, reply) => reply.header('content-type', 'text/css; charset=utf-8').header('cache-control', 'max-age=300').send(CSS));
      const scripts = new Map([
        ['live.js', clientScript(liveClient)],
        ['settings.js', clientScript(settingsClient)],
      ]);
      c.get<{ Params: { name: string } }>('/console/assets/:name', (req, reply) => {
        const body = scripts.get(req.params.name);
        if (body === undefined) return problem(reply, 404, 'KAIROS_ERR_API_NOT_FOUND', `no asset ${req.params.name}`);
        return reply.header('content-type', 'text/javascript; charset=utf-8').header('cache-control', 'max-age=300').send(body);
      });

      c.get<{ Querystring: { next?: string } }>('/console/login', (req, reply) => {
        if (sessions.open) return reply.redirect(safeNext(req.query.next), 303);
        return sendPage(reply, layout({ title: 'Sign in', user: null, body: loginPage(undefined, safeNext(req.query.next)) }));
      });
      c.post<{ Body: { key?: string; next?: string } | undefined }>('/console/login', (req, reply) => {
        const next = safeNext(req.body?.next);
        const r = sessions.signIn(String(req.body?.key ?? ''));
        if (!r.ok) {
          log?.warn({ reason: r.reason }, 'console sign-in refused');
          return sendPage(reply, layout({ title: 'Sign in', user: null, body: loginPage(r.reason, next) }), 401);
        }
        log?.info({ user: r.user.id }, 'console sign-in');
        const secure = req.protocol === 'https' || req.headers['x-forwarded-proto'] === 'https' ? '; Secure' : '';
        void reply.header('set-cookie', `${COOKIE}=${r.cookie}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=${SESSION_TTL_MS / 1000}${secure}`);
        return reply.redirect(next, 303);
      });
      c.post('/console/logout', (_req, reply) => {
        void reply.header('set-cookie', `${COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0`);
        return reply.redirect('/console/login', 303);
      });

      // Customer: the query API's answer for the customer, as this user (same credentials, same routing).
      c.get<{ Querystring: { id?: string } }>('/console/customer', async (req, reply) => {
        const user = pageUser(req, reply);
        if (user === undefined) return reply;
        const id = (req.query.id ?? '').trim();
        const page = (body: ReturnType<typeof html>, status = 200) =>
          sendPage(reply, layout({ title: 'Customer', active: 'customer', user: userName(user), body: html`${customerForm(id)}${body}` }), status);
        if (id === '') return page(html`<p class="note">Enter a customer id to see their recent triggers, every guard decision with its reason, basket, wishlist and pending timers.</p>`);
        const res = await app.inject({ method: 'GET', url: `/v1/customers/${encodeURIComponent(id)}`, headers: user.credential === undefined ? {} : { 'x-api-key': user.credential } });
        if (res.statusCode !== 200) {
          const message = (res.json<{ error?: { message?: string } }>().error?.message ?? res.body).toString();
          return page(html`<p class="error" role="alert">${res.statusCode === 404 ? `No customer "${id}" in the engine's state (no events, or erased).` : `The query API answered ${res.statusCode}: ${message}`}</p>`, res.statusCode === 404 ? 404 : 502);
        }
        const view = res.json<CustomerView & { freshness?: Freshness }>();
        const why = whyNot({ triggers: view.triggers, decisions: view.decisions, timers: view.timers }, opts.live.current);
        const events = await opts.recentEvents?.(id, opts.live.current.input.dedupWindowMs).catch((err: unknown) => {
          log?.warn({ err: (err as Error).message }, 'console: recent events not readable');
          return undefined;
        });
        return page(customerPage(view, why, events));
      });

      const campaignIds = (): string[] => {
        const cfg = opts.live.current;
        return [cfg.basketAbandonment, cfg.browseAbandonment, cfg.basketPriceDrop, cfg.wishlistRestock].flatMap((x) => (x ? [x.campaignId] : []));
      };

      // Results: the A/B report as a chart.
      c.get<{ Querystring: { campaign?: string; window?: string } }>('/console/results', async (req, reply) => {
        const user = pageUser(req, reply);
        if (user === undefined) return reply;
        const campaign = (req.query.campaign ?? '').trim();
        const window = (req.query.window ?? '7d').trim();
        const page = (body: ReturnType<typeof html>, status = 200) =>
          sendPage(reply, layout({ title: 'Results', active: 'results', user: userName(user), body: html`${resultsForm(campaignIds(), campaign, window)}${body}` }), status);
        if (opts.report === undefined) return page(html`<p role="status">No warehouse: start with <code>KAIROS_WAREHOUSE</code> set (as <code>kairos report</code> reads it; the demo: <code>--warehouse dir</code>) to see A/B results here.</p>`);
        if (campaign === '') return page(html`<p class="note">Choose a campaign to see its variants and holdout: conversion rates and uplift with 95 % confidence intervals.</p>`);
        let windowMs: number;
        try {
          windowMs = toMs(/^[0-9]+$/.test(window) ? Number(window) : window);
        } catch {
          return page(html`<p class="error" role="alert">Attribution window: expected a duration like 7d, 48h or milliseconds, got "${window}".</p>`, 400);
        }
        try {
          // The per-day query failing (a warehouse without it) leaves the report and says so.
          let dailyError: string | undefined;
          const [report, daily] = await Promise.all([
            opts.report(campaign, windowMs),
            (opts.daily?.(campaign, windowMs) ?? Promise.resolve([])).catch((err: unknown) => {
              dailyError = (err as Error).message;
              log?.warn({ err: dailyError, campaign }, 'console results: the per-day report failed');
              return [];
            }),
          ]);
          return page(html`${resultsPage(report, daily)}${dailyError === undefined ? '' : html`<p class="error" role="alert" id="daily-error">The per-day report failed: ${dailyError}</p>`}`);
        } catch (err) {
          log?.warn({ err: (err as Error).message, campaign }, 'console results: the report failed');
          return page(html`<p class="error" role="alert">The report failed: ${(err as Error).message}</p>`, 502);
        }
      });

      // Live.
      c.get('/console/live', (req, reply) => {
        const user = pageUser(req, reply);
        if (user === undefined) return reply;
        const campaigns = campaignIds();
        return sendPage(reply, layout({ title: 'Live', active: 'live', user: userName(user), body: livePage(campaigns), script: 'live.js' }));
      });
      c.get<{ Querystring: { campaign?: string; type?: string; customer?: string } }>('/console/live/events', (req, reply) => {
        if (apiUser(req, reply) === undefined) return reply;
        if (streams.size >= MAX_STREAMS) return problem(reply.header('retry-after', '5'), 503, 'KAIROS_ERR_API_UNAVAILABLE', `at most ${MAX_STREAMS} live streams per instance`);
        const filter = { campaign: req.query.campaign, type: req.query.type, customer: req.query.customer };
        void reply.hijack();
        const raw = reply.raw;
        raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
        raw.write('retry: 2000\n\n');
        // The last 50 decisions first, then what comes.
        let after = Math.max(0, opts.feed.last - 50);
        let quiet = 0;
        const tick = (): void => {
          const r = opts.feed.read(after, filter, 50);
          after = r.last;
          if (r.entries.length > 0 || r.skipped > 0 || quiet >= 30) {
            raw.write(`event: decisions\ndata: ${JSON.stringify({ entries: r.entries, skipped: r.skipped, counts: opts.feed.counts() })}\n\n`);
            quiet = 0;
          } else quiet++;
        };
        const end = (): void => {
          clearInterval(timer);
          streams.delete(end);
          if (!raw.writableEnded) raw.end();
        };
        quiet = 30;
        tick();
        const timer = setInterval(tick, 500);
        streams.add(end);
        req.raw.once('close', end);
        return reply;
      });

      // Settings.
      const inForce = (): unknown => opts.live.input ?? {};
      c.get('/console/settings', (req, reply) => {
        const user = pageUser(req, reply);
        if (user === undefined) return reply;
        const canPublish = opts.publisher !== undefined && user.scopes.has('console-publish');
        return sendPage(
          reply,
          layout({
            title: 'Campaign settings',
            active: 'settings',
            user: userName(user),
            body: settingsPage({ json: JSON.stringify(inForce(), null, 2), version: opts.live.version, source: opts.live.source, publication: opts.live.publication, form, canPublish, topic: opts.publisher?.topic, lastPublish, windows: opts.recentInput === undefined ? [] : Object.keys(WINDOWS) }),
            script: 'settings.js',
          }),
        );
      });
      c.get('/console/api/settings/state', (req, reply) => {
        if (apiUser(req, reply) === undefined) return reply;
        return { version: opts.live.version, source: opts.live.source, ...(opts.live.publication === undefined ? {} : { publishedBy: opts.live.publication.by, publishedAt: opts.live.publication.at }), config: inForce() };
      });
      const edited = (req: FastifyRequest<{ Body: { config?: unknown } }>, reply: FastifyReply) => {
        const text = req.body?.config;
        if (typeof text !== 'string') {
          void problem(reply, 400, 'KAIROS_ERR_API_BAD_REQUEST', 'body.config: the edited config as JSON text is required');
          return undefined;
        }
        const checked = checkConfigText(text);
        if (!checked.ok) {
          void problem(reply, 400, 'KAIROS_ERR_API_BAD_REQUEST', `invalid campaign config: ${checked.errors.length} error${checked.errors.length === 1 ? '' : 's'}`, checked.errors);
          return undefined;
        }
        return checked;
      };
      c.post<{ Body: { config?: unknown } }>('/console/api/settings/check', (req, reply) => {
        if (apiUser(req, reply) === undefined) return reply;
        const checked = edited(req, reply);
        if (checked === undefined) return reply;
        return { ok: true, version: opts.live.version, changes: diffConfigs(opts.live.current, checked.config) };
      });
      c.post<{ Body: { config?: unknown; events?: unknown; window?: unknown } }>('/console/api/settings/preview', { bodyLimit: PREVIEW_BODY_LIMIT }, async (req, reply) => {
        if (apiUser(req, reply) === undefined) return reply;
        const checked = edited(req, reply);
        if (checked === undefined) return reply;
        const { events, window } = req.body;
        let ndjson: string;
        let source: { kind: 'file' } | WindowSource;
        let countFrom: number | undefined;
        if (typeof window === 'string') {
          const ms = WINDOWS[window];
          if (ms === undefined) return problem(reply, 400, 'KAIROS_ERR_API_BAD_REQUEST', `body.window: one of ${Object.keys(WINDOWS).join(', ')}`);
          if (opts.recentInput === undefined) return problem(reply, 503, 'KAIROS_ERR_API_UNAVAILABLE', 'this instance cannot read its input topics; upload an NDJSON file');
          // The stretch before the window is replayed first, not counted: customers' baskets, sessions,
          // profiles, cooldowns and caps from before the window are then known (a replay starts from empty state).
          const from = Date.now() - ms;
          const warmMs = Math.min(ms, WARMUP_MAX_MS);
          let recent = await opts.recentInput(from - warmMs);
          let warmup: WindowSource['warmup'] = { stretch: duration(warmMs) };
          if (recent.truncated) {
            recent = await opts.recentInput(from);
            warmup = { stretch: duration(warmMs), skipped: `the window and the ${duration(warmMs)} before it hold more than the preview's record limit` };
          }
          if (recent.records === 0) return problem(reply, 400, 'KAIROS_ERR_API_BAD_REQUEST', `no input records in the last ${window}`);
          ndjson = recent.ndjson;
          countFrom = from;
          source = { kind: 'window', window, records: recent.records, undecodable: recent.undecodable, truncated: recent.truncated, warmup };
        } else if (typeof events === 'string' && events.trim() !== '') {
          ndjson = events;
          source = { kind: 'file' };
        } else return problem(reply, 400, 'KAIROS_ERR_API_BAD_REQUEST', 'body.events (an NDJSON file of event envelopes) or body.window is required');
        const r = await backtester.run(ndjson, inForce(), checked.input, countFrom);
        if (!r.ok) return problem(reply, r.status, r.status === 503 ? 'KAIROS_ERR_API_UNAVAILABLE' : 'KAIROS_ERR_API_BAD_REQUEST', r.error);
        return { ok: true, result: { ...r.result, source } };
      });
      c.post<{ Body: { config?: unknown } }>('/console/api/settings/publish', async (req, reply) => {
        const user = apiUser(req, reply, 'console-publish');
        if (user === undefined) return reply;
        if (opts.publisher === undefined) return problem(reply, 503, 'KAIROS_ERR_API_UNAVAILABLE', 'no campaign topic: set KAIROS_CAMPAIGNS_TOPIC to publish from the console');
        const checked = edited(req, reply);
        if (checked === undefined) return reply;
        const at = Date.now();
        const r = await opts.publisher.publish(checked.input, user.id, at);
        const when = new Date(at).toISOString();
        lastPublish = `Last published from this instance by ${user.id} at ${when} (${opts.publisher.topic}[${r.partition}]@${r.offset}).`;
        log?.info({ user: user.id, topic: opts.publisher.topic, ...r, changes: diffConfigs(opts.live.current, checked.config).map((x) => x.path) }, 'campaign config published from the console');
        return { ok: true, topic: opts.publisher.topic, partition: r.partition, offset: r.offset, by: user.id, at: when };
      });
      done();
    },
  );

  // Open streams would keep the server from closing.
  app.addHook('preClose', (done) => {
    for (const end of [...streams]) end();
    done();
  });
}
