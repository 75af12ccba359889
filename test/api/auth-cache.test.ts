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

test('remembered by the raw header value: X-Api-Key still wins over Authorization, spellings of Bearer, failures never remembered', () => {
  const auth = createAuthenticator(cfg);
  const t0 = 1_800_000_000_000;
  const token = signCustomerToken(SECRET, 'c1', 60, t0);
  const cases: Record<string, string>[] = [
    { authorization: 'Bearer service-key-0123456789' },
    // The same key in another spelling of the header, and a wrong X-Api-Key next to a remembered Authorization.
    { authorization: 'bearer   service-key-0123456789 ' },
    { authorization: 'Bearer service-key-0123456789', 'x-api-key': 'wrong-key-0123456789' },
    { 'x-api-key': 'service-key-0123456789', authorization: 'Bearer wrong' },
    { authorization: 'Basic service-key-0123456789' },
    { 'x-api-key': `${token}` },
    { authorization: `Bearer ${token}`, 'x-api-key': '' },
    { 'x-api-key': 'service-key-012345678' },
  ];
  for (let round = 0; round < 3; round++) {
    for (const headers of cases) assert.deepEqual(auth(headers, t0), authenticate(cfg, headers, t0), `${round} ${JSON.stringify(headers)}`);
  }
  // A remembered token is refused once expired whichever header carried it.
  const late = t0 + 60_000 + 31_000;
  assert.equal(auth({ 'x-api-key': token }, late).ok, false);
  assert.equal(auth({ authorization: `Bearer ${token}` }, late).ok, false);
});

test('a key another authenticator (another configuration) accepted is not accepted from its cache', () => {
  const before = createAuthenticator(cfg);
  const rotated: AuthConfig = { ...cfg, keys: [{ name: 'svc', key: 'service-key-rotated-0123', scopes: new Set<Scope>(['read']) }] };
  const after = createAuthenticator(rotated);
  assert.equal(before({ 'x-api-key': 'service-key-0123456789' }).ok, true);
  const r = after({ 'x-api-key': 'service-key-0123456789' });
  assert.deepEqual(r, { ok: false, reason: 'unknown API key' }, 'the old key is unknown to the new configuration');
  assert.equal(after({ 'x-api-key': 'service-key-rotated-0123' }).ok, true);
});
