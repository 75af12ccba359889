/** The API's authenticator remembers verified credentials without changing any answer (auth.ts). */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { authenticate, createAuthenticator, signCustomerToken, type AuthConfig, type Scope } from '../../src/api/auth.js';

const SECRET = 'token-secret-0123456789abcdef';
const cfg: AuthConfig = { mode: 'required', keys: [{ name: 'svc', key: 'service-key-0123456789', scopes: new Set<Scope>(['read', 'pii']) }], tokenSecret: SECRET };

test('cached authentication answers as authenticate() does: keys, tokens, expiry with leeway, nbf, failures', () => {
  const auth = createAuthenticator(cfg);
  const t0 = 1_800_000_000_000;
  const token = signCustomerToken(SECRET, 'c1', 60, t0);
  const cases: { headers: Record<string, string>; at: number }[] = [
    { headers: { 'x-api-key': 'service-key-0123456789' }, at: t0 },
    { headers: { authorization: 'Bearer service-key-0123456789' }, at: t0 },
    { headers: { 'x-api-key': 'service-key-0123456789x' }, at: t0 },
    { headers: { authorization: `Bearer ${token}` }, at: t0 },
    { headers: { authorization: `Bearer ${token}` }, at: t0 + 60_000 + 29_000 }, // within the 30 s leeway
    { headers: { authorization: `Bearer ${token}` }, at: t0 + 60_000 + 31_000 }, // expired, although cached
    { headers: { authorization: `Bearer ${token}` }, at: t0 }, // valid again at that time
    { headers: { authorization: `Bearer ${token.slice(0, -2)}xx` }, at: t0 },
    { headers: {}, at: t0 },
  ];
  for (const c of [...cases, ...cases]) {
    assert.deepEqual(auth(c.headers, c.at), authenticate(cfg, c.headers, c.at), JSON.stringify(c));
  }
  // A token not valid yet (nbf) is refused, also after the cache saw it valid.
  const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
  const nbfToken = (() => {
    const payload = Buffer.from(JSON.stringify({ sub: 'c2', nbf: t0 / 1000 + 100, exp: t0 / 1000 + 1000 })).toString('base64url');
    return `${header}.${payload}.${createHmac('sha256', SECRET).update(`${header}.${payload}`).digest('base64url')}`;
  })();
  for (const at of [t0 + 100_000, t0, t0 + 100_000, t0 + 50_000]) {
    assert.deepEqual(auth({ authorization: `Bearer ${nbfToken}` }, at), authenticate(cfg, { authorization: `Bearer ${nbfToken}` }, at), String(at));
  }
});

test('the cache is bounded', () => {
  const auth = createAuthenticator(cfg, 3);
  for (let i = 0; i < 10; i++) {
    const token = signCustomerToken(SECRET, `c${i}`, 60);
    const r = auth({ authorization: `Bearer ${token}` });
    assert.ok(r.ok && r.principal.kind === 'customer' && r.principal.customerId === `c${i}`);
  }
});
