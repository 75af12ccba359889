/**
 * The HTTP side of a running instance: Prometheus metrics, health probes and (for `kairos start`) the query API.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { FASTIFY_OPTIONS, registerApi, type ApiOptions } from '../api/server.js';
import { registerConsole, type ConsoleOptions } from '../console/routes.js';
import { KairosError } from '../errors.js';

/** A listen failure in words: which address, why, and which settings choose another. */
function listenError(err: unknown, host: string, port: number): unknown {
  const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
  const why =
    code === 'EADDRINUSE'
      ? 'the port is in use (another kairos, or another program)'
      : code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN'
        ? 'the host is not an address of this machine'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied (ports below 1024 need privileges)'
          : undefined;
  if (why === undefined) return err;
  return new KairosError('KAIROS_ERR_LISTEN', `cannot listen on ${host}:${port}: ${why}; choose another with KAIROS_HTTP_PORT / KAIROS_HTTP_HOST (kairos demo: --port)`, { cause: err });
}

export interface HttpServerOptions {
  readonly registry: Registry;
  /** Ready when every assigned task is open and restored. */
  readonly ready: () => boolean;
  readonly port: number;
  readonly host?: string;
  /** The host other instances reach this one at (routing, forwarding); default: host, else 127.0.0.1. */
  readonly advertisedHost?: string;
  /** The query API (/v1, /docs/json); `self` is this server's own address. */
  readonly api?: Omit<ApiOptions, 'self'>;
  /** The campaign console (/console); it reads customers through the query API. */
  readonly console?: ConsoleOptions;
}

export async function startHttpServer(opts: HttpServerOptions): Promise<{ server: FastifyInstance; address: string }> {
  const server = Fastify(FASTIFY_OPTIONS);
  let address = '';
  if (opts.api) await registerApi(server, { ...opts.api, self: () => address }, opts.registry);
  if (opts.api && opts.console) await registerConsole(server, opts.console);
  server.get('/metrics', async (_req, reply) => {
    const body = await opts.registry.metrics();
    return reply.header('content-type', opts.registry.contentType).send(body);
  });
  server.get('/health/live', () => ({ status: 'live' }));
  server.get('/health/ready', (_req, reply) =>
    opts.ready() ? reply.send({ status: 'ready' }) : reply.code(503).header('retry-after', '1').send({ status: 'restoring' }),
  );
  const host = opts.host ?? '0.0.0.0';
  try {
    await server.listen({ port: opts.port, host });
  } catch (err) {
    await server.close().catch(() => undefined);
    throw listenError(err, host, opts.port);
  }
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  address = `${opts.advertisedHost ?? (host !== '0.0.0.0' && host !== '::' ? host : '127.0.0.1')}:${port}`;
  return { server, address };
}
