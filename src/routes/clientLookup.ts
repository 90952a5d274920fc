import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ClientConfig } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { sendProblem } from './problem.ts';
import { header } from './requestInfo.ts';

export type TenantResolution =
  | { ok: true; tenant: string | null }
  | { ok: false; status: 400 | 404; error: 'tenant_required' | 'unknown_tenant'; detail: string };

/**
 * The tenant a request for client `clientId` is made in: null for a client that is not tenant-scoped
 * (the header is then ignored), else the tenant header's value, which must be one the client serves.
 * Shared by every route that acts for a client, so a session made for one tenant is never looked up
 * for another.
 */
export function resolveTenant(ctx: AppContext, clientId: string, headerValue: string | undefined): TenantResolution {
  const tenants = ctx.registry.tenants(clientId);
  if (tenants === null) return { ok: true, tenant: null };
  if (!headerValue) {
    return { ok: false, status: 400, error: 'tenant_required', detail: `client "${clientId}" needs the ${ctx.config.tenantHeader} header` };
  }
  if (!tenants.includes(headerValue)) {
    return { ok: false, status: 404, error: 'unknown_tenant', detail: `client "${clientId}" does not serve tenant "${headerValue}"` };
  }
  return { ok: true, tenant: headerValue };
}

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
