import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import type { AppContext } from '../context.ts';
import type { Metrics } from '../metrics.ts';
import { quietLogLevel } from '../ops/quietLogLevel.ts';

/** GET /metrics in the Prometheus text format, from this app's own registry. Logged at `warn` only. */
export async function metricsRoute(app: FastifyInstance, opts: { metrics: Metrics }): Promise<void> {
  const { registry } = opts.metrics;
  app.get('/metrics', { logLevel: quietLogLevel(app) }, async (_request, reply) => {
    const body = await registry.metrics();
    return reply.header('content-type', registry.contentType).header('cache-control', 'no-store').send(body);
  });
}

const servers = new WeakMap<FastifyInstance, FastifyInstance>();

/** The separate metrics listener of an app built with `config.metricsListen` (once the app is ready). */
export function metricsServerOf(app: FastifyInstance): FastifyInstance | undefined {
  return servers.get(app);
}

/** Where the separate metrics listener listens, once started. */
export function metricsAddress(app: FastifyInstance): AddressInfo | undefined {
  const address = servers.get(app)?.server.address();
  return address && typeof address === 'object' ? address : undefined;
}

/**
 * Serves /metrics on `config.metricsListen` instead of the main listener: a second, plain-HTTP Fastify that
 * starts when the app becomes ready (so `app.listen()` fails if its port is taken) and closes with it.
 * Scrapers then reach metrics on an internal port that the reverse proxy never exposes.
 */
export function serveMetricsSeparately(app: FastifyInstance, ctx: AppContext, logger: FastifyBaseLogger): void {
  const listen = ctx.config.metricsListen;
  if (!listen) throw new Error('serveMetricsSeparately needs config.metricsListen');
  app.addHook('onReady', async () => {
    const server = Fastify({
      loggerInstance: logger.child({ listener: 'metrics' }),
      logController: new LogController({ disableRequestLogging: true }),
      forceCloseConnections: true,
    }) as unknown as FastifyInstance;
    await server.register(metricsRoute, { metrics: ctx.metrics });
    server.setNotFoundHandler((_request, reply) => reply.code(404).header('content-type', 'text/plain; charset=utf-8').send('only /metrics is served here\n'));
    await server.listen({ host: listen.host, port: listen.port });
    servers.set(app, server);
  });
  app.addHook('onClose', async () => {
    const server = servers.get(app);
    servers.delete(app);
    await server?.close();
  });
}
