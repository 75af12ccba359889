/**
 * The HTTP side of a running instance: Prometheus metrics and health probes (the query API joins it later).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

export interface HttpServerOptions {
  readonly registry: Registry;
  /** Ready when every assigned task is open and restored. */
  readonly ready: () => boolean;
  readonly port: number;
  readonly host?: string;
}

export async function startHttpServer(opts: HttpServerOptions): Promise<{ server: FastifyInstance; address: string }> {
  const server = Fastify({ logger: false });
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
  return { server, address: `${opts.host && opts.host !== '0.0.0.0' ? opts.host : '127.0.0.1'}:${port}` };
}
