/**
 * The HTTP side of a running instance: Prometheus metrics, health probes and (for `kairos start`) the query API.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { FASTIFY_OPTIONS, registerApi, type ApiOptions } from '../api/server.js';

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
}

export async function startHttpServer(opts: HttpServerOptions): Promise<{ server: FastifyInstance; address: string }> {
  const server = Fastify(FASTIFY_OPTIONS);
  let address = '';
  if (opts.api) await registerApi(server, { ...opts.api, self: () => address }, opts.registry);
  server.get('/metrics', async (_req, reply) => {
    const body = await opts.registry.metrics();
    return reply.header('content-type', opts.registry.contentType).send(body);
  });
  server.get('/health/live', () => ({ status: 'live' }));
  server.get('/health/ready', (_req, reply) =>
    opts.ready() ? reply.send({ status: 'ready' }) : reply.code(503).header('retry-after', '1').send({ status: 'restoring' }),
  );
  await server.listen({ port: opts.port, host: opts.host ?? '0.0.0.0' });
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  address = `${opts.advertisedHost ?? (opts.host && opts.host !== '0.0.0.0' ? opts.host : '127.0.0.1')}:${port}`;
  return { server, address };
}
