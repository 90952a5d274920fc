import type { AppContext } from '../context.ts';
import type { ActiveSession } from '../session/model.ts';
import { ANY_TENANT } from '../session/service.ts';

export type TenantResolution =
  | { ok: true; tenant: string | null }
  | { ok: false; status: 400 | 404; error: 'tenant_required' | 'unknown_tenant'; detail: string };

/**
 * The configured tenant a tenant header names, as ADSP resolves it: the tenant itself (its URN, the key of
 * the configuration), or its name (`tenantName`, in any letter case). Undefined when the client serves none.
 */
export function namedTenant(ctx: AppContext, clientId: string, tenants: readonly string[], value: string): string | undefined {
  if (tenants.includes(value)) return value;
  const name = value.toLowerCase();
  return tenants.find((tenant) => ctx.registry.variant(clientId, tenant)?.tenantName?.toLowerCase() === name);
}

/**
 * The tenant a request for client `clientId` is made in: null for a client that is not tenant-scoped
 * (the header is then ignored), else the tenant the tenant header names (by URN or name), which must be
 * one the client serves. Starting a login (and completing it) needs it; routes that act on a session
 * use `resolveSessionTenant`, which falls back to the session's tenant.
 */
export function resolveTenant(ctx: AppContext, clientId: string, headerValue: string | undefined): TenantResolution {
  const tenants = ctx.registry.tenants(clientId);
  if (tenants === null) return { ok: true, tenant: null };
  if (!headerValue) {
    return { ok: false, status: 400, error: 'tenant_required', detail: `client "${clientId}" needs the ${ctx.config.tenantHeader} header` };
  }
  const tenant = namedTenant(ctx, clientId, tenants, headerValue);
  if (tenant === undefined) {
    return { ok: false, status: 404, error: 'unknown_tenant', detail: `client "${clientId}" does not serve tenant "${headerValue}"` };
  }
  return { ok: true, tenant };
}

export type SessionTenantResolution =
  | {
      ok: true;
      tenant: string | null;
      /** The live session the cookie names in that tenant. */
      session: ActiveSession | undefined;
      /**
       * The cookie names a live session of another tenant than the header's: the request must neither use
       * it, nor clear its cookie, nor end it.
       */
      foreign: boolean;
    }
  | Extract<TenantResolution, { ok: false }>;

/**
 * The tenant and session of a request that acts on the session a cookie names (logout, /sessions, targets),
 * as ADSP does it: the tenant header when the proxy sends one (a session of another tenant is then
 * `foreign`), else the tenant of the cookie's session, if the client still serves it. Without either, a
 * client serving one tenant acts in it; one serving several needs the header (400 tenant_required).
 */
export async function resolveSessionTenant(
  ctx: AppContext,
  clientId: string,
  headerValue: string | undefined,
  cookieValue: string | undefined,
): Promise<SessionTenantResolution> {
  const tenants = ctx.registry.tenants(clientId);
  if (tenants === null) {
    return { ok: true, tenant: null, session: await ctx.sessions.resolve(cookieValue, { clientId, tenant: null }), foreign: false };
  }
  const named = headerValue ? resolveTenant(ctx, clientId, headerValue) : undefined;
  if (named && !named.ok) return named;
  const session = await ctx.sessions.resolve(cookieValue, { clientId, tenant: ANY_TENANT });
  const served = session !== undefined && session.record.tenant !== null && tenants.includes(session.record.tenant);
  if (named) {
    if (served && session.record.tenant !== named.tenant) return { ok: true, tenant: named.tenant, session: undefined, foreign: true };
    return { ok: true, tenant: named.tenant, session: served ? session : undefined, foreign: false };
  }
  if (served) return { ok: true, tenant: session.record.tenant, session, foreign: false };
  if (tenants.length === 1) return { ok: true, tenant: tenants[0]!, session: undefined, foreign: false };
  return { ok: false, status: 400, error: 'tenant_required', detail: `client "${clientId}" needs the ${ctx.config.tenantHeader} header, or a session` };
}
