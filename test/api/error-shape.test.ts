/**
 * Issue 15, validation: every answer of the query API that is an error has the documented shape
 * `{"error": {"code", "message"}, "statusCode"}` — also those fastify or Node's HTTP parser give before a route
 * runs (414 path parameter too long, 431 headers too large, 400 malformed URL) — and an unknown enum value in a
 * query string is 400 naming the parameter and the accepted values. Real HTTP on a free port.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import type { AuthConfig } from '../../src/api/auth.js';
import { createApiApp, registerApi, type QueryBackend } from '../../src/api/server.js';
import { buildTopology } from '../../src/app/topology.js';
import { resolveCampaigns } from '../../src/config/campaigns.js';
import { stateReader } from '../../src/engine/state/reader.js';
import { TopologyTestDriver } from '../../src/engine/testing/test-driver.js';

const KEY = 'read-key-0123456789';
let driver: TopologyTestDriver;
let app: FastifyInstance;
let base = '';
let port = 0;

before(async () => {
  const topology = buildTopology(resolveCampaigns({}), 'shape');
  driver = await TopologyTestDriver.create(topology);
  const backend: QueryBackend = {
    topology,
    partitionOf: () => 0,
    owner: () => 'self:1',
    reader: () => Promise.resolve(stateReader(driver.task.state, { source: 'active', partition: 0, timers: (k) => driver.task.timerInfosFor(k) })),
  };
  const auth: AuthConfig = { mode: 'required', keys: [{ name: 'svc', key: KEY, scopes: new Set(['read']) }], tokenSecret: undefined };
  app = createApiApp();
  await registerApi(app, { backend, auth, self: () => 'self:1', rateLimitService: 10_000, rateLimitCustomer: 1000, forwardTimeoutMs: 1000 }, new Registry());
  base = await app.listen({ port: 0, host: '127.0.0.1' });
  port = Number(new URL(base).port);
});

after(async () => {
  await app.close();
  await driver.close();
});

interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
  readonly statusCode: number;
}

function assertShape(status: number, body: unknown, expected: number, code: string): ErrorBody {
  assert.equal(status, expected, JSON.stringify(body));
  const b = body as ErrorBody;
  assert.deepEqual(Object.keys(b).sort(), ['error', 'statusCode']);
  assert.deepEqual(Object.keys(b.error).sort(), ['code', 'message']);
  assert.equal(b.statusCode, expected);
  assert.equal(b.error.code, code);
  assert.ok(b.error.message.length > 0);
  return b;
}

const get = async (path: string, headers: Record<string, string> = { authorization: `Bearer ${KEY}` }): Promise<{ status: number; body: unknown }> => {
  const r = await fetch(`${base}${path}`, { headers });
  return { status: r.status, body: (await r.json()) as unknown };
};

/** A raw request (what fetch would refuse to send), answered by Node's parser or fastify. */
function raw(request: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (text += c));
    socket.on('error', reject);
    socket.on('close', () => {
      const [head = '', body = ''] = text.split('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
      try {
        resolve({ status, body: JSON.parse(body) as unknown });
      } catch {
        reject(new Error(`not JSON: ${text}`));
      }
    });
  });
}

test('an unknown trigger type in ?type is 400 naming the parameter and every accepted value', async () => {
  const bogus = await get('/v1/customers/anna/triggers?type=BOGUS');
  const b = assertShape(bogus.status, bogus.body, 400, 'KAIROS_ERR_API_BAD_REQUEST');
  assert.match(b.error.message, /^\?type: must be one of BASKET_PRICE_DROP, WISHLIST_BACK_IN_STOCK, BASKET_ABANDONED, CHECKOUT_ABANDONED, BROWSE_ABANDONED$/);
  const ok = await get('/v1/customers/anna/triggers?type=BASKET_ABANDONED');
  assert.notEqual(ok.status, 400, JSON.stringify(ok.body));
  const many = await get('/v1/products/jacket-m/watchers?limit=many');
  assert.match(assertShape(many.status, many.body, 400, 'KAIROS_ERR_API_BAD_REQUEST').error.message, /^\?limit: /);
});

test('414, 431, malformed URLs and HTTP garbage are answered in the documented error shape', async () => {
  const long = await get(`/v1/customers/${'x'.repeat(600)}`);
  assertShape(long.status, long.body, 414, 'KAIROS_ERR_API_URI_TOO_LONG');
  const badUrl = await raw('GET /v1/customers/%E0%A4%A HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assertShape(badUrl.status, badUrl.body, 400, 'KAIROS_ERR_API_BAD_REQUEST');
  const big = await raw(`GET /v1/customers/anna HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(40_000)}\r\n\r\n`);
  assertShape(big.status, big.body, 431, 'KAIROS_ERR_API_HEADERS_TOO_LARGE');
  const garbage = await raw('NOT HTTP AT ALL\r\n\r\n');
  assertShape(garbage.status, garbage.body, 400, 'KAIROS_ERR_API_BAD_REQUEST');
  const unknown = await get('/nope');
  assertShape(unknown.status, unknown.body, 404, 'KAIROS_ERR_API_NOT_FOUND');
});
