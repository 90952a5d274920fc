import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ClientConfig } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { sendProblem } from './problem.ts';
import { header } from './requestInfo.ts';

/**
 * The configured client named in the URL, checked against the tenant header for tenant-scoped clients.
 * Replies 404/400 and returns undefined when the request cannot be served.
 */
export function lookupClient(
  ctx: AppContext,
  request: FastifyRequest,
  reply: FastifyReply,
  clientId: string,
): { client: ClientConfig; tenant: string | null } | undefined {
  const client = ctx.registry.client(clientId);
  if (!client) {
    sendProblem(reply, 404, 'unknown_client', `no client "${clientId}" is configured`);
    return undefined;
  }
  if (client.tenant === undefined) return { client, tenant: null };
  const tenant = header(request, ctx.config.tenantHeader);
  if (!tenant) {
    sendProblem(reply, 400, 'tenant_required', `client "${clientId}" needs the ${ctx.config.tenantHeader} header`);
    return undefined;
  }
  if (tenant !== client.tenant) {
    sendProblem(reply, 404, 'unknown_tenant', `client "${clientId}" does not serve tenant "${tenant}"`);
    return undefined;
  }
  return { client, tenant };
}
