/**
 * The query API's baseline: a bare fastify app answering `GET /v1/customers/:id` with bodies captured from a
 * Kairos instance, from a Map (no auth, no state, no hooks). Run as its own process by api-latency.ts.
 *
 *   node --import tsx load-tests/lib/bare-api.ts <bodies.json: {customerId: body}> <port>
 * Prints "listening <port>" when ready.
 */
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';

const bodies = new Map<string, string>(Object.entries(JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as Record<string, string>));
const app = Fastify({ logger: false, routerOptions: { maxParamLength: 512 } });
app.get<{ Params: { id: string } }>('/v1/customers/:id', (req, reply) => {
  const body = bodies.get(req.params.id);
  if (body === undefined) return reply.code(404).send({ error: { code: 'KAIROS_ERR_API_NOT_FOUND', message: 'unknown customer' }, statusCode: 404 });
  return reply.type('application/json; charset=utf-8').send(body);
});
await app.listen({ host: '127.0.0.1', port: Number(process.argv[3] ?? 0) });
process.stdout.write(`listening ${(app.server.address() as { port: number }).port}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
