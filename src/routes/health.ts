import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../context.ts';
import { quietLogLevel } from '../ops/quietLogLevel.ts';
import { ReadinessChecker, type ReadinessOptions } from '../ops/readiness.ts';

/**
 * Probes at the root, outside the base path, as oauth2-proxy serves them. None needs a session; they log
 * at `warn` (or quieter, see quietLogLevel) so a kubelet probing every few seconds does not fill the logs (failures still appear).
 *
 * - `/healthz` (and `/ping`): the process is alive and its event loop turns. No dependency is checked:
 *   a liveness probe that failed on a database outage would restart every replica for nothing.
 * - `/readyz`: 200 when the session store answers (`ok`, or `degraded` when an issuer does not: the
 *   instance still serves, so an IdP outage does not empty the load balancer), 503 when it does not (or,
 *   with --readyz_strict, when an issuer does not either); the body holds the result of each check.
 *   During shutdown Fastify answers 503 on its own (`return503OnClosing`).
 */
export async function healthRoutes(app: FastifyInstance, opts: { ctx: AppContext; readiness?: ReadinessOptions }): Promise<void> {
  const checker = new ReadinessChecker(opts.ctx, opts.readiness);
  const quiet = { logLevel: quietLogLevel(app) };

  const alive = async (_request: FastifyRequest, reply: FastifyReply) => {
    reply.header('cache-control', 'no-store');
    return { status: 'ok' };
  };
  app.get('/healthz', quiet, alive);
  app.get('/ping', quiet, alive);

  app.get('/readyz', quiet, async (request, reply) => {
    const report = await checker.check();
    reply.header('cache-control', 'no-store');
    if (report.status === 'fail') {
      request.log.warn({ checks: report.checks }, 'not ready');
      reply.code(503);
    } else if (report.status === 'degraded') {
      request.log.warn({ checks: report.checks }, 'ready, degraded: an identity provider cannot be reached');
    }
    return report;
  });
}
