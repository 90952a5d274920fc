import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ClientConfig } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { sendProblem } from '../http/problem.ts';
import { header } from '../http/request.ts';
import { resolveTenant } from '../http/tenant.ts';

/**
 * The configured client named in the URL, with the settings of the tenant named by the tenant header for
 * tenant-scoped clients (its issuer, credentials and URLs). Replies 404/400 and returns undefined when
 * the request cannot be served.
 */
export function lookupClient(
  ctx: AppContext,
  request: FastifyRequest,
  reply: FastifyReply,
  clientId: string,
): { client: ClientConfig; tenant: string | null } | undefined {
  if (!ctx.registry.client(clientId)) {
    sendProblem(reply, 404, 'unknown_client', `no client "${clientId}" is configured`);
    return undefined;
  }
  const resolved = resolveTenant(ctx, clientId, header(request, ctx.config.tenantHeader));
  if (!resolved.ok) {
    sendProblem(reply, resolved.status, resolved.error, resolved.detail);
    return undefined;
  }
  const client = ctx.registry.variant(clientId, resolved.tenant);
  if (!client) {
    sendProblem(reply, 404, 'unknown_client', `no client "${clientId}" is configured`);
    return undefined;
  }
  return { client, tenant: resolved.tenant };
}
