/**
 * ADSP's administrator view of GET /sessions: with an admin bearer token (see adminAuth.ts) instead of a
 * session cookie, the live sessions of the administrator's tenant, made at the issuer that signed the
 * token. The tenant is the tenant header's, else that of the clients at the token's issuer. Never a token.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../context.ts';
import { sendProblem } from '../http/problem.ts';
import { header } from '../http/request.ts';
import { sameIssuer } from '../oidc/issuer.ts';
import type { JwksCache } from '../oidc/jwks.ts';
import { sessionEndsAt } from '../session/model.ts';
import type { SessionRecord } from '../store/types.ts';
import { checkToken, refuse, unauthorized, unverifiedIssuer } from './adminAuth.ts';

/** At most this many sessions in one answer (oldest first). */
export const ADMIN_SESSION_LIMIT = 1000;

/** One session as an administrator sees it: ADSP's fields, and ours. */
export interface AdminSessionEntry {
  tenantId: string | null;
  id: string;
  name: string | null;
  email: string | null;
  roles: string[];
  expiry: string;
  authenticatedBy: string;
  clientId: string;
  tenant: string | null;
  sub: string;
  createdAt: string;
  lastUsedAt: string;
}

export function adminSessionList(ctx: AppContext, jwks: JwksCache) {
  return async (request: FastifyRequest, reply: FastifyReply, token: string): Promise<FastifyReply> => {
    reply.header('cache-control', 'no-store');
    const iss = unverifiedIssuer(token);
    if (iss === undefined) return unauthorized(reply, 'invalid_token', 'the bearer token is not a JWT with an issuer');
    const wanted = header(request, ctx.config.tenantHeader);
    const atIssuer = ctx.registry
      .variants()
      .filter((v) => sameIssuer(v.client.issuer, iss) && (wanted === undefined || v.tenant === wanted));
    if (atIssuer.length === 0) {
      return unauthorized(reply, 'invalid_token', `the token's issuer is not the issuer of any client${wanted === undefined ? '' : ` of tenant "${wanted}"`}`);
    }
    // The issuer's tenant is that of its tenant-scoped clients; without any, its sessions have no tenant.
    const tenants = [...new Set(atIssuer.map((v) => v.tenant).filter((t): t is string => t !== null))];
    if (tenants.length > 1) {
      return sendProblem(reply, 400, 'tenant_required', `several tenants log in at the token's issuer: name one in the ${ctx.config.tenantHeader} header`);
    }
    const tenant = tenants[0] ?? null;
    const candidates = atIssuer.filter((v) => v.tenant === tenant);
    // The token must pass the admin policy of a client of the tenant at that issuer (the first refusal is answered).
    let claims;
    let refusal;
    for (const candidate of candidates) {
      const checked = await checkToken(ctx, jwks, request, candidate.client, tenant, token, 'session listing');
      if (checked.ok) {
        claims = checked.claims;
        break;
      }
      refusal ??= checked.refusal;
    }
    if (claims === undefined) return refuse(reply, refusal!);
    const issuer = typeof claims.iss === 'string' ? claims.iss : iss;
    const records = await ctx.store.listByIssuer(issuer, tenant, Date.now(), ADMIN_SESSION_LIMIT);
    request.log.info({ tenant, sessions: records.length, by: claims.sub }, 'sessions listed by an administrator');
    return reply.send(records.map((record) => adminEntry(ctx, record)));
  };
}

function adminEntry(ctx: AppContext, record: SessionRecord): AdminSessionEntry {
  let claims: { name?: string; email?: string; roles: string[] } = { roles: [] };
  let refreshExpiresAt: number | undefined;
  try {
    ({ claims, refreshExpiresAt } = ctx.sessions.decryptPayload(record));
  } catch {
    // Sealed with a key no longer configured: listed without its user facts.
  }
  return {
    tenantId: record.tenant,
    id: record.sub,
    name: claims.name ?? null,
    email: claims.email ?? null,
    roles: claims.roles,
    expiry: new Date(Math.min(sessionEndsAt(record, refreshExpiresAt === undefined ? {} : { refreshExpiresAt }), record.idleExpiresAt)).toISOString(),
    authenticatedBy: record.clientId,
    clientId: record.clientId,
    tenant: record.tenant,
    sub: record.sub,
    createdAt: new Date(record.createdAt).toISOString(),
    lastUsedAt: new Date(record.lastUsedAt).toISOString(),
  };
}
