import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import type { AppContext } from '../context.ts';
import type { Metrics } from '../metrics.ts';
import { internalListenerAddress, internalListenerOf, serveInternalListener } from '../ops/internalListener.ts';
import { quietLogLevel } from '../ops/quietLogLevel.ts';

/** GET /metrics in the Prometheus text format, from this app's own registry (or its worker group's). Logged at `warn` only. */
export async function metricsRoute(app: FastifyInstance, opts: { metrics: Metrics }): Promise<void> {
  const { metrics } = opts;
  app.get('/metrics', { logLevel: quietLogLevel(app) }, async (_request, reply) => {
    const { body, contentType } = await metrics.exposition();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
}

/** The separate metrics listener of an app built with `config.metricsListen` (once the app is ready). */
export function metricsServerOf(app: FastifyInstance): FastifyInstance | undefined {
  return internalListenerOf(app, 'metrics');
}

/** Where the separate metrics listener listens, once started. */
export function metricsAddress(app: FastifyInstance): AddressInfo | undefined {
  return internalListenerAddress(app, 'metrics');
}

/**
 * Serves /metrics on `config.metricsListen` instead of the main listener: an internal listener
 * (ops/internalListener.ts), so scrapers reach metrics on a port that the reverse proxy never exposes.
 */
export function serveMetricsSeparately(app: FastifyInstance, ctx: AppContext, logger: FastifyBaseLogger): void {
  const listen = ctx.config.metricsListen;
  if (!listen) throw new Error('serveMetricsSeparately needs config.metricsListen');
  serveInternalListener(app, logger, {
    name: 'metrics',
    listen,
    setup: async (server) => {
      await server.register(metricsRoute, { metrics: ctx.metrics });
      server.setNotFoundHandler((_request, reply) => reply.code(404).header('content-type', 'text/plain; charset=utf-8').send('only /metrics is served here\n'));
    },
  });
}
