/**
 * Who is calling the query API.
 *  - Internal services send an API key (`Authorization: Bearer <key>` or `X-Api-Key: <key>`); each key has a
 *    name (for logs and rate limits) and scopes: `read` (any customer, no personal data) and `pii` (e-mail
 *    addresses and push tokens too); `console` opens the campaign console (src/console) and `console-publish`
 *    lets it publish a campaign config (a hyphen, not a colon: `:` separates the fields of a key entry).
 *  - A shop session sends a customer token: a JWT signed with HMAC-SHA256 (HS256) by the shop backend with
 *    the shared secret, `sub` = the customer id, `exp` required. It reads only that customer, never PII.
 * Verification is constant-time and rejects every other algorithm (`alg: none` included).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export type Scope = 'read' | 'pii' | 'console' | 'console-publish';
export const SCOPES: readonly Scope[] = ['read', 'pii', 'console', 'console-publish'];

export type Principal =
  | { readonly kind: 'service'; readonly id: string; readonly scopes: ReadonlySet<Scope> }
  | { readonly kind: 'customer'; readonly id: string; readonly customerId: string; readonly scopes: ReadonlySet<Scope> }
  | { readonly kind: 'anonymous'; readonly id: string; readonly scopes: ReadonlySet<Scope> };

export interface ApiKey {
  readonly name: string;
  readonly key: string;
  readonly scopes: ReadonlySet<Scope>;
}

/** `name:key[:scope+scope]`, comma-separated (scopes default to read). Throws a message naming the bad entry. */
export function parseApiKeys(spec: string): ApiKey[] {
  const out: ApiKey[] = [];
  // Messages name the entry by position and name, never by its text: the key must not reach a log.
  const entries = spec.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const [i, raw] of entries.entries()) {
    const [name, key, scopes, extra] = raw.split(':');
    if (!name || !key || extra !== undefined) {
      const which = name && key ? `entry ${i + 1} ("${name}")` : `entry ${i + 1}`;
      throw new Error(`${which}: expected name:key[:scope+scope] (scopes ${SCOPES.join(', ')}; key ≥ 16 characters)`);
    }
    if (key.length < 16) throw new Error(`key "${name}": at least 16 characters`);
    const set = new Set<Scope>();
    for (const s of (scopes ?? 'read').split('+')) {
      const scope = SCOPES.find((x) => x === s);
      if (scope === undefined) throw new Error(`key "${name}": unknown scope "${s}" (${SCOPES.join(', ')})`);
      set.add(scope);
    }
    if (out.some((k) => k.name === name)) throw new Error(`key "${name}" given twice`);
    out.push({ name, key, scopes: set });
  }
  return out;
}

const b64url = (b: Buffer): string => b.toString('base64url');

/** A customer token (HS256 JWT) for `customerId`, valid for `ttlSeconds`: what a shop backend mints per session. */
export function signCustomerToken(secret: string, customerId: string, ttlSeconds: number, now = Date.now()): string {
  const header = b64url(Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })));
  const iat = Math.floor(now / 1000);
  const payload = b64url(Buffer.from(JSON.stringify({ sub: customerId, iat, exp: iat + ttlSeconds })));
  const sig = b64url(createHmac('sha256', secret).update(`${header}.${payload}`).digest());
  return `${header}.${payload}.${sig}`;
}

export type TokenCheck = { readonly ok: true; readonly customerId: string } | { readonly ok: false; readonly reason: string };

/** Verifies an HS256 customer token: signature, `alg`, `exp` (required), `nbf`, and a string `sub`. */
export function verifyCustomerToken(secret: string, token: string, now = Date.now(), leewaySeconds = 30): TokenCheck {
  const parts = token.split('.');
  if (parts.length !== 3) return { ok: false, reason: 'not a JWT' };
  const [h, p, s] = parts as [string, string, string];
  let header: unknown;
  let payload: unknown;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed token' };
  }
  if (typeof header !== 'object' || header === null || (header as { alg?: unknown }).alg !== 'HS256') return { ok: false, reason: 'unsupported algorithm (HS256 only)' };
  const expected = createHmac('sha256', secret).update(`${h}.${p}`).digest();
  const given = Buffer.from(s, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'bad signature' };
  if (typeof payload !== 'object' || payload === null) return { ok: false, reason: 'malformed claims' };
  const { sub, exp, nbf } = payload as { sub?: unknown; exp?: unknown; nbf?: unknown };
  const nowS = now / 1000;
  if (typeof exp !== 'number') return { ok: false, reason: 'exp claim required' };
  if (exp + leewaySeconds < nowS) return { ok: false, reason: 'token expired' };
  if (typeof nbf === 'number' && nbf - leewaySeconds > nowS) return { ok: false, reason: 'token not valid yet' };
  if (typeof sub !== 'string' || sub === '') return { ok: false, reason: 'sub claim (customer id) required' };
  return { ok: true, customerId: sub };
}

export interface AuthConfig {
  /** 'none': every caller is an anonymous service with read and pii (development and the demo only). */
  readonly mode: 'required' | 'none';
  readonly keys: readonly ApiKey[];
  readonly tokenSecret: string | undefined;
}

export type AuthResult = { readonly ok: true; readonly principal: Principal } | { readonly ok: false; readonly reason: string };

const safeEqual = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

/** Identifies the caller from its headers. */
export function authenticate(cfg: AuthConfig, headers: Readonly<Record<string, string | string[] | undefined>>, now = Date.now()): AuthResult {
  if (cfg.mode === 'none') return { ok: true, principal: { kind: 'anonymous', id: 'anonymous', scopes: new Set<Scope>(['read', 'pii']) } };
  const auth = headers.authorization;
  const apiKey = headers['x-api-key'];
  const bearer = typeof auth === 'string' && /^Bearer\s+/i.test(auth) ? auth.replace(/^Bearer\s+/i, '').trim() : undefined;
  const candidate = typeof apiKey === 'string' ? apiKey : bearer;
  if (candidate === undefined || candidate === '') return { ok: false, reason: 'credentials required: Authorization: Bearer <API key or customer token>, or X-Api-Key' };
  for (const k of cfg.keys) if (safeEqual(k.key, candidate)) return { ok: true, principal: { kind: 'service', id: `key:${k.name}`, scopes: k.scopes } };
  if (cfg.tokenSecret !== undefined && candidate.split('.').length === 3) {
    const t = verifyCustomerToken(cfg.tokenSecret, candidate, now);
    if (!t.ok) return { ok: false, reason: `customer token rejected: ${t.reason}` };
    return { ok: true, principal: { kind: 'customer', id: `customer:${t.customerId}`, customerId: t.customerId, scopes: new Set<Scope>() } };
  }
  return { ok: false, reason: 'unknown API key' };
}

/** Entries an {@link Authenticator} remembers before it starts over (bounds memory against random credentials). */
export const AUTH_CACHE_MAX = 10_000;

interface CachedCredential {
  /** The success answered (one object for every request of this caller). */
  readonly result: AuthResult & { readonly ok: true };
  /** Customer tokens: the claims their validity depends on over time (seconds); absent for API keys. */
  readonly exp?: number;
  readonly nbf?: number;
}

/**
 * {@link authenticate} with its successes remembered per credential: an API key is compared once, a customer
 * token's signature verified once; a remembered token is still checked against `exp` and `nbf` (with the same
 * leeway) on every request, and goes through the full check again once it no longer passes them. Failures are
 * not remembered (they answer 401 with their reason each time).
 */
export function createAuthenticator(cfg: AuthConfig, maxEntries = AUTH_CACHE_MAX): (headers: Readonly<Record<string, string | string[] | undefined>>, now?: number) => AuthResult {
  if (cfg.mode === 'none') return (headers, now) => authenticate(cfg, headers, now);
  // Keyed by the header's raw value (X-Api-Key, else Authorization): a remembered caller costs one Map lookup, no
  // parsing of the header. Only successes are kept, so a key that was never valid is never answered from here.
  const byApiKey = new Map<string, CachedCredential>();
  const byAuthorization = new Map<string, CachedCredential>();
  const leewaySeconds = 30;
  return (headers, now = Date.now()) => {
    const apiKey = headers['x-api-key'];
    const auth = headers.authorization;
    const cache = typeof apiKey === 'string' ? byApiKey : typeof auth === 'string' ? byAuthorization : undefined;
    const raw = typeof apiKey === 'string' ? apiKey : auth;
    if (cache !== undefined && typeof raw === 'string') {
      const hit = cache.get(raw);
      if (hit !== undefined) {
        if (hit.exp === undefined && hit.nbf === undefined) return hit.result;
        const nowS = now / 1000;
        const timely = (hit.exp === undefined || hit.exp + leewaySeconds >= nowS) && (hit.nbf === undefined || hit.nbf - leewaySeconds <= nowS);
        if (timely) return hit.result;
        cache.delete(raw);
      }
    }
    const result = authenticate(cfg, headers, now);
    if (result.ok && cache !== undefined && typeof raw === 'string') {
      if (byApiKey.size + byAuthorization.size >= maxEntries) {
        byApiKey.clear();
        byAuthorization.clear();
      }
      if (result.principal.kind === 'customer') {
        const bearer = typeof apiKey === 'string' ? apiKey : raw.replace(/^Bearer\s+/i, '').trim();
        const { exp, nbf } = tokenTimes(bearer);
        cache.set(raw, { result, ...(exp === undefined ? {} : { exp }), ...(nbf === undefined ? {} : { nbf }) });
      } else cache.set(raw, { result });
    }
    return result;
  };
}

/** `exp` and `nbf` of a token that passed {@link verifyCustomerToken} (so its claims parse). */
function tokenTimes(token: string): { exp?: number; nbf?: number } {
  const p = token.split('.')[1] ?? '';
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as { exp?: unknown; nbf?: unknown };
  return {
    ...(typeof claims.exp === 'number' ? { exp: claims.exp } : {}),
    ...(typeof claims.nbf === 'number' ? { nbf: claims.nbf } : {}),
  };
}
