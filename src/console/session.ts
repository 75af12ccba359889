/**
 * Who is using the console. The same API keys as the query API (KAIROS_API_KEYS), with their own scopes:
 * `console` opens the pages, `console-publish` publishes a campaign config. A browser signs in once with its
 * key (a form) and gets a session cookie: the key's name and an expiry, signed with HMAC-SHA256 under a secret
 * derived from the configured keys, so every instance with the same keys accepts it, a key removed from the
 * config ends its sessions, and the key itself never sits in the browser. Scripts may send the key as the API
 * does (`Authorization: Bearer`, `X-Api-Key`). With KAIROS_API_AUTH=none (development, the demo without keys)
 * everyone is `anonymous` with every console scope.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { authenticate, type AuthConfig, type Scope } from '../api/auth.js';

export const COOKIE = 'kairos_console';
/** Sessions last 8 hours. */
export const SESSION_TTL_MS = 8 * 3_600_000;

export interface ConsoleUser {
  /** `key:<name>` or `anonymous`: who published, in the record's headers and the logs. */
  readonly id: string;
  readonly scopes: ReadonlySet<Scope>;
  /** The key's secret, to read the query API as this user (never sent to the browser); undefined without auth. */
  readonly credential: string | undefined;
}

export type ConsoleAuth = { readonly ok: true; readonly user: ConsoleUser } | { readonly ok: false; readonly status: 401 | 403; readonly reason: string };

const ALL: ReadonlySet<Scope> = new Set<Scope>(['read', 'pii', 'console', 'console-publish']);

function secretOf(cfg: AuthConfig): Buffer {
  const h = createHash('sha256').update('kairos-console-session\u0000');
  for (const k of cfg.keys) h.update(`${k.name}\u0000${k.key}\u0000`);
  return h.digest();
}

export class ConsoleSessions {
  readonly #cfg: AuthConfig;
  readonly #secret: Buffer;

  constructor(cfg: AuthConfig) {
    this.#cfg = cfg;
    this.#secret = secretOf(cfg);
  }

  get open(): boolean {
    return this.#cfg.mode === 'none';
  }

  /** Checks a key typed into the sign-in form; the cookie value on success. */
  signIn(key: string, now = Date.now()): { ok: true; cookie: string; user: ConsoleUser } | { ok: false; reason: string } {
    const a = this.#fromKey(key);
    if (!a.ok) return { ok: false, reason: a.reason };
    const name = a.user.id.slice('key:'.length);
    const payload = Buffer.from(JSON.stringify({ n: name, e: now + SESSION_TTL_MS })).toString('base64url');
    return { ok: true, cookie: `${payload}.${this.#sign(payload)}`, user: a.user };
  }

  /** The user of a request: session cookie, or an API key in the headers. */
  user(headers: Readonly<Record<string, string | string[] | undefined>>, now = Date.now()): ConsoleAuth {
    if (this.#cfg.mode === 'none') return { ok: true, user: { id: 'anonymous', scopes: ALL, credential: undefined } };
    const cookie = cookieValue(headers.cookie, COOKIE);
    if (cookie !== undefined) {
      const s = this.#session(cookie, now);
      if (s.ok || (headers.authorization === undefined && headers['x-api-key'] === undefined)) return s;
    }
    const auth = headers.authorization;
    const apiKey = headers['x-api-key'];
    const candidate = typeof apiKey === 'string' ? apiKey : typeof auth === 'string' ? auth.replace(/^Bearer\s+/i, '').trim() : undefined;
    if (candidate === undefined || candidate === '') return { ok: false, status: 401, reason: 'sign in with an API key that has the console scope' };
    return this.#fromKey(candidate);
  }

  #fromKey(key: string): ConsoleAuth {
    const a = authenticate(this.#cfg, { 'x-api-key': key });
    if (!a.ok) return { ok: false, status: 401, reason: a.reason };
    if (a.principal.kind !== 'service') return { ok: false, status: 403, reason: 'a customer token cannot open the console' };
    if (!a.principal.scopes.has('console')) return { ok: false, status: 403, reason: `key ${a.principal.id.slice(4)} lacks the console scope` };
    return { ok: true, user: { id: a.principal.id, scopes: a.principal.scopes, credential: key } };
  }

  #session(cookie: string, now: number): ConsoleAuth {
    const [payload, sig] = cookie.split('.');
    if (!payload || !sig) return { ok: false, status: 401, reason: 'malformed session; sign in again' };
    const expected = Buffer.from(this.#sign(payload));
    const given = Buffer.from(sig);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { ok: false, status: 401, reason: 'session not valid here (keys changed?); sign in again' };
    let claims: { n?: unknown; e?: unknown };
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { n?: unknown; e?: unknown };
    } catch {
      return { ok: false, status: 401, reason: 'malformed session; sign in again' };
    }
    if (typeof claims.e !== 'number' || claims.e < now) return { ok: false, status: 401, reason: 'session expired; sign in again' };
    const key = this.#cfg.keys.find((k) => k.name === claims.n);
    if (key === undefined) return { ok: false, status: 401, reason: 'the session\'s key was removed; sign in again' };
    return this.#fromKey(key.key);
  }

  #sign(payload: string): string {
    return createHmac('sha256', this.#secret).update(payload).digest('base64url');
  }
}

export function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  const h = Array.isArray(header) ? header.join('; ') : header;
  if (h === undefined) return undefined;
  for (const part of h.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}
