/**
 * The query API (fastify): customer state, triggers and product watchers for the shop frontend, answered by
 * any instance. A key's owner is the task (partition) the producers' partitioner gives it; the owner's address
 * comes from the group's routing. A request for a key owned elsewhere is forwarded once to the owner; during a
 * rebalance (no owner known, or the task still restoring) it is served from a local standby copy with its lag
 * stated, or answered 503 with Retry-After. Every answer says where it came from (`freshness`).
 */
import { Agent as HttpAgent, request as httpRequest, STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Type, type Static } from '@sinclair/typebox';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Topology } from '../engine/api/index.js';
import { TriggerType, type TriggerType as TriggerTypeName } from '../../schemas/contract.js';
import type { StateReader } from '../engine/state/reader.js';
import { KairosError, isKairosError, type KairosErrorCode } from '../errors.js';
import { createAuthenticator, type AuthConfig, type AuthResult, type Principal, type Scope } from './auth.js';
import { formatDuration, RouteRateLimiter, type RateLimitHit } from './rate-limit.js';
import { LatencyHistogram, type LatencyChild } from './latency-histogram.js';
import { CustomerViewCache } from './view-cache.js';
import { customerView, freshnessOf, productWishers, skuWatchers, type Freshness } from './views.js';

/** Request property: when the request reached its route (performance.now()), for the latency histogram. */
const START_MS = 'kairosStartMs';
declare module 'fastify' {
  interface FastifyRequest {
    kairosStartMs: number;
  }
}

/** What the API needs from the runner. */
export interface QueryBackend {
  /** The task owning a key; undefined before the runner knows the partition count. */
  partitionOf(key: string): number | undefined;
  /** Task → API address of its owner, from the group's routing; undefined before the first assignment. */
  owner(partition: number): string | null | undefined;
  /** Local read access to a task: active, or a standby copy; undefined when this instance has neither. */
  reader(partition: number): Promise<StateReader | undefined>;
  /**
   * What `reader` would answer, when that is at hand without waiting (an open active task, a standby copy);
   * undefined otherwise (then `reader` is asked). Optional: with it, an answer the view cache holds is written
   * in the route handler itself, with no promise between the request and its answer.
   */
  readerNow?(partition: number): StateReader | undefined;
  readonly topology: Topology;
}

export interface ApiOptions {
  readonly backend: QueryBackend;
  /** This instance's address as published in the routing (host:port). */
  readonly self: () => string;
  readonly auth: AuthConfig;
  /** Requests per minute per API key. */
  readonly rateLimitService: number;
  /** Requests per minute per customer token (and per IP for unauthenticated requests). */
  readonly rateLimitCustomer: number;
  readonly forwardTimeoutMs: number;
  readonly logger?: Logger;
  /**
   * The customer's live onsite placements (written by `kairos dispatch` to Redis); the placements route exists
   * only when this is given. Not partitioned: any instance reads them directly.
   */
  readonly placements?: (customerId: string) => Promise<readonly object[]>;
  /** The serialized customer views kept between requests (tests pass their own to inspect it). @default a new CustomerViewCache */
  readonly viewCache?: CustomerViewCache;
  /**
   * Local answers (200) of GET requests are written to Node's response directly (`reply.hijack()`, one
   * `writeHead` with the header list, `end`), with the same status, headers in the same order and bytes as
   * fastify's reply writes them; false sends them through fastify's reply (the tests compare both).
   * @default true
   */
  readonly directAnswers?: boolean;
  /** Milliseconds since the epoch for rate-limit windows and token times (tests fix it). @default Date.now */
  readonly clock?: () => number;
  /**
   * With `directAnswers`: a `GET /v1/customers/<id>` whose view the cache holds is answered in the HTTP server's
   * request listener, before fastify (see `answerAtOnce` in registerApi); false leaves every request to fastify.
   * @default true
   */
  readonly answerAtOnce?: boolean;
}

export const FORWARDED_HEADER = 'x-kairos-forwarded-by';
const JSON_TYPE = 'application/json; charset=utf-8';
/** Path parameters up to the contract's 128-character ids (fastify's default stops at 100 with a 414). */
export const FASTIFY_OPTIONS = {
  logger: false,
  routerOptions: { maxParamLength: 512 },
  // Errors fastify answers before any route runs, in the documented shape too.
  frameworkErrors: (err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void => {
    if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') void sendError(reply, 'KAIROS_ERR_API_URI_TOO_LONG', 'a path parameter is longer than 512 characters (ids are 1–128 characters)');
    else if (err.code === 'FST_ERR_BAD_URL') void sendError(reply, 'KAIROS_ERR_API_BAD_REQUEST', 'malformed URL (bad percent-encoding in the path)');
    else void sendError(reply, 'KAIROS_ERR_API_BAD_REQUEST', err.message);
  },
  clientErrorHandler: answerClientError,
} satisfies FastifyServerOptions;

/** Errors Node's HTTP parser raises before fastify sees a request (headers too large, timeouts, garbage). */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [code, message]: [KairosErrorCode, string] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? ['KAIROS_ERR_API_HEADERS_TOO_LARGE', 'request line and headers larger than 16 KiB']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? ['KAIROS_ERR_API_REQUEST_TIMEOUT', 'the request did not arrive in time']
        : ['KAIROS_ERR_API_BAD_REQUEST', 'malformed HTTP request'];
  const status = STATUS[code] ?? 400;
  const body = JSON.stringify({ error: { code, message }, statusCode: status });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}
/** Ids as the contract allows them (1–128 characters), without control characters or the store key separator. */
const Id = Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\u0000-\\u001f\\u007f]+$' });
const Params = Type.Object({ id: Id });
const SkuParams = Type.Object({ sku: Id });
const ProductParams = Type.Object({ productId: Id });
const PageQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
});
const WishersQuery = Type.Intersect([PageQuery, Type.Object({ sku: Type.Optional(Id) })]);
const TRIGGER_TYPES = TriggerType.anyOf.map((t) => t.const);
/** An enum (not a union of literals): a bad value is answered 400 naming the accepted values. */
const TriggersQuery = Type.Object({ type: Type.Optional(Type.Unsafe<TriggerTypeName>({ type: 'string', enum: TRIGGER_TYPES, description: 'one trigger type' })) });
const ErrorBody = Type.Object({ error: Type.Object({ code: Type.String(), message: Type.String() }), statusCode: Type.Integer() });

/** HTTP status per error code: the one place that maps them. */
const STATUS: Partial<Record<KairosErrorCode, number>> = {
  KAIROS_ERR_API_BAD_REQUEST: 400,
  KAIROS_ERR_API_UNAUTHORIZED: 401,
  KAIROS_ERR_API_FORBIDDEN: 403,
  KAIROS_ERR_API_NOT_FOUND: 404,
  KAIROS_ERR_API_REQUEST_TIMEOUT: 408,
  KAIROS_ERR_API_URI_TOO_LONG: 414,
  KAIROS_ERR_API_HEADERS_TOO_LARGE: 431,
  KAIROS_ERR_API_RATE_LIMITED: 429,
  KAIROS_ERR_API_UNAVAILABLE: 503,
  KAIROS_ERR_INTERNAL: 500,
};

/** Who is asking (admit) and the rate-limit state its answer states. */
interface Admitted {
  readonly principal: Principal;
  readonly hit: RateLimitHit;
}

/**
 * What the customer route's own request listener (`answerAtOnce`) found before it left a request to fastify: the
 * caller identified and counted, so that `admit` does not count it twice, and when the request arrived.
 */
interface HandedOver {
  readonly auth: AuthResult;
  readonly limiter: RouteRateLimiter;
  readonly hit: RateLimitHit;
  readonly startMs: number;
}

/** A routed GET: what it reads from the owning task, made once per route. */
interface Route<A, T> {
  /** The route pattern (the latency histogram's `route` label). */
  readonly url: string;
  /** The thing a 404 names. */
  readonly what: (key: string) => string;
  readonly read: (r: StateReader, arg: A, key: string) => Promise<T | undefined>;
  /** The answer when it is at hand synchronously (the view cache), else undefined (then `read`). */
  readonly peek?: (r: StateReader, arg: A, key: string) => T | undefined;
  /** The latency histogram's child for its direct 200 answers (made on first use). */
  ok?: LatencyChild;
}

function fail(code: KairosErrorCode, message: string): never {
  throw new KairosError(code, message);
}

interface ValidationIssue {
  readonly instancePath?: string;
  readonly message?: string;
  readonly params?: { readonly allowedValues?: readonly unknown[] };
}

/** A request validation failure naming the field (`?type`, `:id`) and what it accepts. */
function validationMessage(err: unknown): string {
  const e = err as { validation?: readonly ValidationIssue[]; validationContext?: string; message: string };
  if (!Array.isArray(e.validation) || e.validation.length === 0) return e.message;
  const where = (path: string | undefined): string => {
    const name = (path ?? '').replace(/^\//, '').replace(/\//g, '.');
    if (e.validationContext === 'querystring') return name === '' ? 'query string' : `?${name}`;
    if (e.validationContext === 'params') return name === '' ? 'path' : `:${name}`;
    return `${e.validationContext ?? 'request'}${name === '' ? '' : `.${name}`}`;
  };
  return e.validation
    .map((v) => `${where(v.instancePath)}: ${v.params?.allowedValues ? `must be one of ${v.params.allowedValues.map(String).join(', ')}` : (v.message ?? 'invalid')}`)
    .join('; ');
}

/** The rate-limit headers of an answer sent through fastify's reply: set first, as @fastify/rate-limit did. */
function limitHeaders(reply: FastifyReply, hit: RateLimitHit): FastifyReply {
  return reply.header('x-ratelimit-limit', hit.max).header('x-ratelimit-remaining', hit.remaining).header('x-ratelimit-reset', hit.resetSeconds);
}

function sendError(reply: FastifyReply, code: KairosErrorCode, message: string, retryAfter?: number): FastifyReply {
  const status = STATUS[code] ?? 500;
  if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
  return reply.code(status).send({ error: { code, message }, statusCode: status });
}

/** Registers /v1 routes, /docs/json, auth, rate limits and API metrics on `app`. */
export async function registerApi(app: FastifyInstance, opts: ApiOptions, registry: Registry): Promise<void> {
  const { backend } = opts;
  const log = opts.logger?.child({ component: 'api' });
  // Its observation is a bucket search (latency-histogram.ts); prom-client's labelled child cost ~0.8 µs per request.
  const latency = new LatencyHistogram({
    name: 'kairos_api_request_duration_seconds',
    help: 'Query API latency by method, route (pattern) and status code, from the request to the answer handed to the socket (/v1 routes) or to its end (other routes)',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5],
    registers: [registry],
  });
  const forwarded = new Counter({
    name: 'kairos_api_forwarded_total',
    help: 'Query API requests forwarded to the owning instance, by result (ok, error, unreachable) or served from a standby (standby) or refused during a rebalance (unavailable)',
    labelNames: ['result'],
    registers: [registry],
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Kairos query API', version: '1.0.0', description: 'Customer state, triggers and product watchers, answered from the owning task' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An API key, or a customer token (HS256 JWT, sub = customer id)' },
          apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
        },
      },
      security: [{ bearer: [] }, { apiKey: [] }],
    },
  });
  // Latency per method, route pattern and status, one pre-resolved histogram child per combination (no label
  // object hashed per request). The /v1 routes observe their answer where they send it, up to the answer handed to
  // the socket (no response hook per request); every other route through a route-level onResponse hook.
  const latencyChildren = new Map<string, LatencyChild>();
  const childOf = (method: string, route: string, status: number): LatencyChild => {
    const id = `${method} ${status} ${route}`;
    let child = latencyChildren.get(id);
    if (child === undefined) {
      child = latency.labels({ method, route, status_code: String(status) });
      latencyChildren.set(id, child);
    }
    return child;
  };
  const observe = (method: string, route: string, status: number, ms: number): void => childOf(method, route, status).observe(ms / 1000);
  // fastify times a reply (elapsedTime) only for routes with a response hook (or a logger): the /v1 routes take
  // their start in an onRequest hook (before validation, so a 400 is timed too) and the not-found handler in
  // preValidation.
  app.decorateRequest(START_MS, 0);
  /** Requests the customer route's own listener left to fastify after counting them (see `answerAtOnce`). */
  const handedOver = new WeakMap<IncomingMessage, HandedOver>();
  const markStart = (req: FastifyRequest, _reply: FastifyReply, done: () => void): void => {
    req[START_MS] = handedOver.get(req.raw)?.startMs ?? performance.now();
    done();
  };
  const elapsedMs = (req: FastifyRequest, reply: FastifyReply): number => {
    const started = req[START_MS];
    return started > 0 ? performance.now() - started : reply.elapsedTime;
  };
  const observeReply = (req: FastifyRequest, reply: FastifyReply): void => observe(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, elapsedMs(req, reply));
  const onResponse = (req: FastifyRequest, reply: FastifyReply, done: () => void): void => {
    observeReply(req, reply);
    done();
  };
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/v1/')) {
      route.onRequest = route.onRequest === undefined ? [markStart] : [markStart, ...(Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest])];
      return;
    }
    route.onResponse = route.onResponse === undefined ? [onResponse] : [...(Array.isArray(route.onResponse) ? route.onResponse : [route.onResponse]), onResponse];
  });

  const answerError = (err: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (isKairosError(err)) return sendError(reply, err.code, err.message, err.code === 'KAIROS_ERR_API_UNAVAILABLE' ? 1 : undefined);
    const e = err as { validation?: unknown; statusCode?: number; message: string };
    if (e.validation !== undefined) return sendError(reply, 'KAIROS_ERR_API_BAD_REQUEST', validationMessage(err));
    if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return reply.code(e.statusCode).send({ error: { code: 'KAIROS_ERR_API_BAD_REQUEST', message: e.message }, statusCode: e.statusCode });
    log?.error({ err, url: req.url }, 'query API request failed');
    return sendError(reply, 'KAIROS_ERR_INTERNAL', 'internal error');
  };
  app.setErrorHandler((err, req, reply) => {
    const sent = answerError(err, req, reply);
    // The /v1 routes have no response hook: their errors are observed here, once sent.
    if (req.routeOptions.url?.startsWith('/v1/') === true) observeReply(req, reply);
    return sent;
  });
  app.setNotFoundHandler({ preValidation: markStart }, (req, reply) => {
    const sent = sendError(reply, 'KAIROS_ERR_API_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0] ?? ''}`);
    observeReply(req, reply);
    return sent;
  });

  app.get('/docs/json', { schema: { hide: true } }, () => app.swagger());

  /**
   * Every /v1 request, in the order its answer depends on: the caller is identified (verified credentials are
   * remembered: createAuthenticator), counted against the route's limit for it (per API key, per customer token,
   * per IP without valid credentials, so bad credentials are limited too), then authorized: a customer token reads
   * only its own customer. Done in the handler (no hook, no promise per step). Every answer from here on carries
   * the rate-limit headers first, as @fastify/rate-limit set them: admit's refusals here, the answers written
   * directly in their header list (`answer`), every other answer through fastify's reply by `limitHeaders` before
   * anything else is set on it (`routed`, `local` and `forwardTo` for their errors).
   */
  const authenticate = createAuthenticator(opts.auth);
  const clock = opts.clock ?? Date.now;
  function admit(req: FastifyRequest, reply: FastifyReply, limiter: RouteRateLimiter, customerId?: string): Admitted {
    let a: AuthResult;
    let hit: RateLimitHit;
    const over = handedOver.get(req.raw);
    if (over !== undefined && over.limiter === limiter) {
      // Identified and counted already (answerAtOnce): checked below as if here.
      handedOver.delete(req.raw);
      a = over.auth;
      hit = over.hit;
    } else {
      const now = clock();
      a = authenticate(req.headers, now);
      const principal = a.ok ? a.principal : undefined;
      hit = limiter.hit(principal?.id ?? req.ip, principal?.kind === 'service' ? opts.rateLimitService : opts.rateLimitCustomer, now);
    }
    if (hit.exceeded) {
      limitHeaders(reply, hit).header('retry-after', hit.resetSeconds);
      fail('KAIROS_ERR_API_RATE_LIMITED', `rate limit of ${hit.max} requests per ${formatDuration(hit.resetSeconds * 1000)} exceeded`);
    }
    if (!a.ok) {
      limitHeaders(reply, hit);
      fail('KAIROS_ERR_API_UNAUTHORIZED', a.reason);
    }
    if (a.principal.kind === 'customer' && a.principal.customerId !== customerId) {
      limitHeaders(reply, hit);
      fail('KAIROS_ERR_API_FORBIDDEN', customerId === undefined ? 'a customer token reads only its own customer' : 'a customer token reads only its own customer, not this one');
    }
    return { principal: a.principal, hit };
  }
  /** One limiter per route: each route counts its own requests (as @fastify/rate-limit's per-route stores did). */
  const limiter = (): RouteRateLimiter => new RouteRateLimiter(60_000);

  /**
   * Answers from the task owning `key`: locally (active task, or standby copy during a rebalance), or by
   * forwarding the request once to the owner. A local answer the route can give synchronously (`peek`: the view
   * cache's bytes) from a reader at hand (`readerNow`) is written here and now, with no promise. Errors thrown here
   * reach fastify's error handler through the route handler; those of the steps that wait (`local`, `forwardTo`)
   * are sent by them (`failed`): fastify gets no promise to wait on (one promise reaction less per request).
   */
  function routed<A, T extends object | string>(req: FastifyRequest, reply: FastifyReply, route: Route<A, T>, key: string, arg: A, hit: RateLimitHit): void {
    try {
      const partition = backend.partitionOf(key);
      if (partition === undefined) fail('KAIROS_ERR_API_UNAVAILABLE', 'the instance is starting: partitions not known yet');
      const self = opts.self();
      const owner = backend.owner(partition);
      if (owner === self || owner === undefined || owner === null || typeof req.headers[FORWARDED_HEADER] === 'string') {
        const now = backend.readerNow?.(partition);
        if (now !== undefined && route.peek !== undefined && (now.source === 'active' || owner !== self)) {
          const body = route.peek(now, arg, key);
          if (body !== undefined) {
            if (now.source === 'standby') forwarded.inc({ result: 'standby' });
            answer(req, reply, route, now, self, body, key, hit);
            return;
          }
          void local(req, reply, route, key, arg, hit, partition, self, owner, now, true);
          return;
        }
        void local(req, reply, route, key, arg, hit, partition, self, owner, now, false);
        return;
      }
      void forwardTo(req, reply, route, key, arg, hit, partition, self, owner);
    } catch (err) {
      limitHeaders(reply, hit);
      throw err;
    }
  }

  async function local<A, T extends object | string>(
    req: FastifyRequest,
    reply: FastifyReply,
    route: Route<A, T>,
    key: string,
    arg: A,
    hit: RateLimitHit,
    partition: number,
    self: string,
    owner: string | null | undefined,
    now: StateReader | undefined,
    peeked: boolean,
  ): Promise<void> {
    try {
      const r = now ?? (await backend.reader(partition));
      if (r && (r.source === 'active' || owner !== self)) {
        if (r.source === 'standby') forwarded.inc({ result: 'standby' });
        // The answer at hand (`peek`), else read; no await (no further promise turn) when it is at hand.
        const atHand = peeked ? undefined : route.peek?.(r, arg, key);
        answer(req, reply, route, r, self, atHand !== undefined ? atHand : await route.read(r, arg, key), key, hit);
        return;
      }
      forwarded.inc({ result: 'unavailable' });
      fail('KAIROS_ERR_API_UNAVAILABLE', owner === self ? `task ${partition} is being restored here` : `task ${partition} is moving between instances (rebalance)`);
    } catch (err) {
      limitHeaders(reply, hit);
      failed(req, reply, err);
    }
  }

  /**
   * An error of a step that waited (`local`, `forwardTo`: their promises are not handed to fastify), sent as
   * fastify sends a rejected handler promise's: to the error handler, unless the answer is out already. Never
   * throws (nothing awaits these promises).
   */
  function failed(req: FastifyRequest, reply: FastifyReply, err: unknown): void {
    try {
      if (reply.sent) log?.error({ err, url: req.url }, 'query API request failed after its answer was sent');
      else reply.send(err instanceof Error ? err : new Error(String(err)));
    } catch (e) {
      log?.error({ err: e, url: req.url }, 'query API error not sent');
    }
  }

  /** Owned elsewhere: forwards once, with the caller's credentials, over a pooled keep-alive connection. */
  async function forwardTo<A, T extends object | string>(req: FastifyRequest, reply: FastifyReply, route: Route<A, T>, key: string, arg: A, hit: RateLimitHit, partition: number, self: string, owner: string): Promise<void> {
    // Answered through fastify's reply (the owner's answer, a standby's through `answer`, or an error).
    limitHeaders(reply, hit);
    try {
      try {
        const headers: Record<string, string> = { [FORWARDED_HEADER]: self, accept: 'application/json' };
        for (const h of ['authorization', 'x-api-key']) {
          const v = req.headers[h];
          if (typeof v === 'string') headers[h] = v;
        }
        const res = await forward(owner, req.url, headers, opts.forwardTimeoutMs);
        forwarded.inc({ result: res.status < 300 || res.status === 404 ? 'ok' : 'error' });
        for (const h of ['retry-after', 'x-kairos-served-by', 'x-kairos-source']) {
          const v = res.headers[h];
          if (typeof v === 'string') void reply.header(h, v);
        }
        reply.code(res.status).header('content-type', 'application/json; charset=utf-8').send(res.body);
        observeReply(req, reply);
        return;
      } catch (err) {
        forwarded.inc({ result: 'unreachable' });
        log?.warn({ owner, partition, err: (err as Error).message }, 'owner unreachable; trying a local standby copy');
        const r = await backend.reader(partition);
        if (r) {
          answer(req, reply, route, r, self, route.peek?.(r, arg, key) ?? (await route.read(r, arg, key)), key, hit);
          return;
        }
        fail('KAIROS_ERR_API_UNAVAILABLE', `the owner of task ${partition} (${owner}) is unreachable`);
      }
    } catch (err) {
      failed(req, reply, err);
    }
  }

  /**
   * The JSON of `freshness` for an answer from `r`: for an active task, a text kept per partition and made again
   * when its stream time moves (the bytes JSON.stringify(freshnessOf(r, self)) gives; the tests compare them).
   */
  const freshnessTexts: ({ readonly prefix: string; streamTime: number; json: string } | undefined)[] = [];
  let freshnessSelf = '';
  function freshnessJson(r: StateReader, self: string): string {
    if (r.source !== 'active') return JSON.stringify(freshnessOf(r, self));
    if (self !== freshnessSelf) {
      freshnessTexts.length = 0;
      freshnessSelf = self;
    }
    let f = freshnessTexts[r.partition];
    if (f === undefined) {
      // NaN: equal to no stream time, so the text is made below.
      f = { prefix: `{"servedBy":${JSON.stringify(self)},"source":"active","partition":${r.partition},"streamTime":`, streamTime: Number.NaN, json: '' };
      freshnessTexts[r.partition] = f;
    }
    if (r.streamTime !== f.streamTime) {
      f.streamTime = r.streamTime;
      f.json = `${f.prefix}${Number.isFinite(r.streamTime) ? String(r.streamTime) : 'null'}}`;
    }
    return f.json;
  }

  const direct = opts.directAnswers ?? true;
  /**
   * A local answer: the body built for this request, with `freshness` appended in place (last key, as a spread
   * would put it); a body serialized already (a string: JSON without its closing brace) gets the same bytes
   * appended. A GET's answer is written to Node's response directly (see `directAnswers`): the headers fastify's
   * reply would write, in its order (admit's rate-limit headers, served-by, source, content type, length).
   */
  function answer<A, T extends object | string>(req: FastifyRequest, reply: FastifyReply, route: Route<A, T>, r: StateReader, self: string, body: T | undefined, key: string, hit: RateLimitHit): void {
    if (body === undefined) fail('KAIROS_ERR_API_NOT_FOUND', `unknown ${route.what(key)}`);
    let json: string;
    if (typeof body === 'string') json = `${body},"freshness":${freshnessJson(r, self)}}`;
    else {
      (body as { freshness?: Freshness }).freshness = freshnessOf(r, self);
      json = JSON.stringify(body);
    }
    if (direct && req.method === 'GET') {
      reply.hijack();
      writeAnswer(reply.raw, hit, self, r.source, json);
      // Observed as observeReply would: from the request to the answer handed to the socket.
      route.ok ??= childOf('GET', route.url, 200);
      route.ok.observe(elapsedMs(req, reply) / 1000);
      return;
    }
    // Serialized here with its content type set: fastify sends the string as it is (no serializer lookup).
    limitHeaders(reply, hit).header('x-kairos-served-by', self).header('x-kairos-source', r.source).header('content-type', JSON_TYPE).send(json);
    observeReply(req, reply);
  }

  /** A direct answer's head and body: the headers fastify's reply would write, in its order. */
  function writeAnswer(res: ServerResponse, hit: RateLimitHit, self: string, source: StateReader['source'], json: string): void {
    res.writeHead(200, [
      'x-ratelimit-limit',
      hit.max,
      'x-ratelimit-remaining',
      hit.remaining,
      'x-ratelimit-reset',
      hit.resetSeconds,
      'x-kairos-served-by',
      self,
      'x-kairos-source',
      source,
      'content-type',
      JSON_TYPE,
      'content-length',
      Buffer.byteLength(json),
    ]);
    res.end(json);
  }

  const secured: { security: Record<string, string[]>[] } = { security: [{ bearer: [] }, { apiKey: [] }] };
  const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 429: ErrorBody, 503: ErrorBody };

  // Serialized customer views, reused while the state they show is unchanged (view-cache.ts).
  const views = opts.viewCache ?? new CustomerViewCache();
  const customerRoute: Route<ReadonlySet<Scope>, string> = {
    url: '/v1/customers/:id',
    what: customerWhat,
    read: (r, scopes, id) => views.build(r, scopes, id),
    peek: (r, scopes, id) => views.cached(r, scopes, id),
  };
  const customerLimits = limiter();
  app.get<{ Params: Static<typeof Params> }>(
    '/v1/customers/:id',
    {
      schema: {
        summary: 'A customer: profile (PII only with the pii scope), basket, wishlist, browsing session, pending timers, recent triggers and decisions',
        params: Params,
        ...secured,
        response: errors,
      },
    },
    // Not async: an answer the view cache holds is written before the handler returns (routed).
    (req, reply) => {
      const a = admit(req, reply, customerLimits, req.params.id);
      routed(req, reply, customerRoute, req.params.id, a.principal.scopes, a.hit);
    },
  );

  /**
   * `GET /v1/customers/<id>` answered from the view cache in the server's request listener, before fastify routes
   * the request (no route lookup, request and reply objects, hooks or schema validation): the same checks in the
   * same order as the route (authenticated, authorized, counted against the route's limit, then read where
   * `routed` would read) and the same answer `answer` writes, observed in the same histogram. Only a plain request
   * is taken: GET, an id of 1–128 unreserved characters (nothing to decode, valid by the route's schema), no query
   * string, valid credentials that may read the customer, the task's reader at hand and to be read here. Anything
   * else goes to fastify untouched, or, once counted (over the limit, a view not cached, an error), with its
   * admission (`handedOver`), which `admit` takes instead of counting the request again. True when answered.
   */
  function answerAtOnce(raw: IncomingMessage, res: ServerResponse): boolean {
    if (closing || raw.method !== 'GET') return false;
    const url = raw.url;
    if (url === undefined || !url.startsWith(CUSTOMER_PREFIX) || !plainId(url, CUSTOMER_PREFIX.length)) return false;
    const startMs = performance.now();
    const id = url.slice(CUSTOMER_PREFIX.length);
    const headers = raw.headers;
    const now = clock();
    const auth = authenticate(headers, now);
    if (!auth.ok) return false;
    const principal = auth.principal;
    if (principal.kind === 'customer' && principal.customerId !== id) return false;
    const partition = backend.partitionOf(id);
    if (partition === undefined) return false;
    const self = opts.self();
    const owner = backend.owner(partition);
    if (owner !== self && owner !== undefined && owner !== null && typeof headers[FORWARDED_HEADER] !== 'string') return false;
    const r = backend.readerNow?.(partition);
    if (r === undefined || (r.source !== 'active' && owner === self)) return false;
    const hit = customerLimits.hit(principal.id, principal.kind === 'service' ? opts.rateLimitService : opts.rateLimitCustomer, now);
    let body: string | undefined;
    try {
      body = hit.exceeded ? undefined : views.cached(r, principal.scopes, id);
    } catch {
      body = undefined;
    }
    if (body === undefined) {
      handedOver.set(raw, { auth, limiter: customerLimits, hit, startMs });
      return false;
    }
    if (r.source === 'standby') forwarded.inc({ result: 'standby' });
    writeAnswer(res, hit, self, r.source, `${body},"freshness":${freshnessJson(r, self)}}`);
    customerRoute.ok ??= childOf('GET', customerRoute.url, 200);
    customerRoute.ok.observe((performance.now() - startMs) / 1000);
    return true;
  }
  let closing = false;
  // In front of fastify's own listener (the handler it gave the server: app.routing); not where the server is not
  // the one fastify made that way (a serverFactory), nor for `inject` (tests), which calls fastify's handler.
  const server = app.server;
  const routing = app.routing;
  if (direct && (opts.answerAtOnce ?? true) && server.listeners('request').includes(routing)) {
    server.removeListener('request', routing);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      let answered = false;
      try {
        answered = answerAtOnce(req, res);
      } catch (err) {
        // Nothing written yet (writeHead checks before it writes): fastify answers it.
        log?.error({ err, url: req.url }, 'query API: the direct customer answer failed; left to fastify');
      }
      if (!answered) routing(req, res);
    });
    // As fastify answers 503 to requests once closing (return503OnClosing), leave them to it.
    app.addHook('preClose', (done) => {
      closing = true;
      done();
    });
  }

  const triggersLimits = limiter();
  const triggersRoute: Route<{ scopes: ReadonlySet<Scope>; type: TriggerTypeName | undefined }, object> = {
    url: '/v1/customers/:id/triggers',
    what: customerWhat,
    read: async (r, { scopes, type }, id) => {
      const v = await customerView(r, id, scopes);
      if (!v) return undefined;
      return {
        customerId: v.customerId,
        triggers: v.triggers.filter((t) => type === undefined || t.type === type),
        decisions: v.decisions.filter((d) => type === undefined || d.type === type),
      };
    },
  };
  app.get<{ Params: Static<typeof Params>; Querystring: Static<typeof TriggersQuery> }>(
    '/v1/customers/:id/triggers',
    { schema: { summary: 'Recent triggers sent to a customer and the guards\' decisions with reasons', params: Params, querystring: TriggersQuery, ...secured, response: errors } },
    (req, reply) => {
      const a = admit(req, reply, triggersLimits, req.params.id);
      routed(req, reply, triggersRoute, req.params.id, { scopes: a.principal.scopes, type: req.query.type }, a.hit);
    },
  );

  const placements = opts.placements;
  if (placements) {
    const placementLimits = limiter();
    app.get<{ Params: Static<typeof Params> }>(
      '/v1/customers/:id/placements',
      { schema: { summary: 'The customer\'s live onsite placements (from the onsite channel), newest first', params: Params, ...secured, response: errors } },
      async (req, reply) => {
        limitHeaders(reply, admit(req, reply, placementLimits, req.params.id).hit);
        let list: readonly object[];
        try {
          list = await placements(req.params.id);
        } catch (err) {
          log?.warn({ err: (err as Error).message }, 'placements store unavailable');
          fail('KAIROS_ERR_API_UNAVAILABLE', 'the placements store (Redis) is unavailable');
        }
        const sent = reply.send({ customerId: req.params.id, placements: list, servedBy: opts.self() });
        observeReply(req, reply);
        return sent;
      },
    );
  }

  const watcherLimits = limiter();
  const watchersRoute: Route<{ limit: number; cursor: string | undefined }, object> = {
    url: '/v1/products/:sku/watchers',
    what: (sku) => `sku "${sku}"`,
    read: async (r, { limit, cursor }, sku) => {
      const w = await skuWatchers(r, sku, limit, cursor);
      if (w.productId === null && w.basket.count === 0) return undefined;
      return w;
    },
  };
  app.get<{ Params: Static<typeof SkuParams>; Querystring: Static<typeof PageQuery> }>(
    '/v1/products/:sku/watchers',
    {
      schema: { summary: 'A sku: catalog price and stock, and the customers with it in their basket (price-drop watchers), counted and paged; wishlist watchers: /v1/products/by-id/{productId}/wishers', params: SkuParams, querystring: PageQuery, ...secured, response: errors },
    },
    (req, reply) => {
      const a = admit(req, reply, watcherLimits);
      routed(req, reply, watchersRoute, req.params.sku, { limit: req.query.limit ?? 100, cursor: req.query.cursor }, a.hit);
    },
  );

  const wisherLimits = limiter();
  const wishersRoute: Route<{ sku: string | null; limit: number; cursor: string | undefined }, object> = {
    url: '/v1/products/by-id/:productId/wishers',
    what: (productId) => `product "${productId}" on any wishlist`,
    read: async (r, { sku, limit, cursor }, productId) => {
      const page = await productWishers(r, productId, sku, limit, cursor);
      return page.count === 0 ? undefined : { productId, sku, wishlist: page };
    },
  };
  app.get<{ Params: Static<typeof ProductParams>; Querystring: Static<typeof WishersQuery> }>(
    '/v1/products/by-id/:productId/wishers',
    {
      schema: { summary: 'Customers with the product (optionally one sku of it) on their wishlist, in key order (sku, then customer id)', params: ProductParams, querystring: WishersQuery, ...secured, response: errors },
    },
    (req, reply) => {
      const a = admit(req, reply, wisherLimits);
      routed(req, reply, wishersRoute, req.params.productId, { sku: req.query.sku ?? null, limit: req.query.limit ?? 100, cursor: req.query.cursor }, a.hit);
    },
  );

  const topologyLimits = limiter();
  app.get('/v1/topology', { schema: { summary: 'The running topology: nodes, stores, topics (text and Mermaid too)', ...secured } }, (req, reply) => {
    limitHeaders(reply, admit(req, reply, topologyLimits).hit);
    const t = backend.topology;
    const sent = reply.send({
      applicationId: t.applicationId,
      nodes: [...t.nodes.values()].map((n) => ({
        name: n.name,
        kind: n.kind,
        ...(n.kind === 'source' ? { topics: n.topics } : {}),
        ...(n.kind === 'sink' ? { topic: n.topic } : {}),
        ...(n.kind === 'processor' ? { stores: n.stores } : {}),
        children: t.children.get(n.name) ?? [],
      })),
      stores: [...t.stores.values()].map((s) => ({ name: s.spec.name, kind: s.spec.kind, processors: s.processors })),
      repartitionTopics: t.repartitionTopics,
      text: t.describe(),
      mermaid: t.describeMermaid(),
    });
    observeReply(req, reply);
    return sent;
  });
}

const customerWhat = (id: string): string => `customer "${id}"`;

const CUSTOMER_PREFIX = '/v1/customers/';

/**
 * Whether `url` from `start` to its end is 1–128 unreserved characters (RFC 3986: letters, digits, `-._~`): a
 * path parameter fastify passes on as it is (no percent-decoding) and the route's schema accepts.
 */
function plainId(url: string, start: number): boolean {
  const n = url.length - start;
  if (n < 1 || n > 128) return false;
  for (let i = start; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (!((c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 126)) return false;
  }
  return true;
}

const agent = new HttpAgent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 });

/** GET http://<address><path> through the shared keep-alive agent; rejects on network errors and timeouts. */
function forward(address: string, path: string, headers: Record<string, string>, timeoutMs: number): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  const sep = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const r = httpRequest({ host: address.slice(0, sep), port: Number(address.slice(sep + 1)), path, method: 'GET', headers, agent, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    r.on('timeout', () => r.destroy(new Error(`no answer from ${address} within ${timeoutMs} ms`)));
    r.on('error', reject);
    r.end();
  });
}

/** A standalone fastify instance with the API (tests, and the HTTP server of an instance). */
export function createApiApp(): FastifyInstance {
  return Fastify(FASTIFY_OPTIONS);
}
