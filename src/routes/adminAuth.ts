/**
 * The administrator of ADSP's admin surface (POST/GET /clients/{id}, GET /sessions with a bearer token):
 * an access token of the client's issuer meant for the token handler, carrying the admin role (see
 * oidc/adminToken.ts). Which tenant: the tenant header's, else, as ADSP does, the tenant whose issuer
 * signed the token.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { decodeJwt, type JWTPayload } from 'jose';
import type { ClientConfig } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { sendProblem } from '../http/problem.ts';
import { header } from '../http/request.ts';
import { verifyAdminToken } from '../oidc/adminToken.ts';
import { sameIssuer } from '../oidc/issuer.ts';
import type { JwksCache } from '../oidc/jwks.ts';
import { lookupClient } from './clientLookup.ts';

export interface AdminAccess {
  client: ClientConfig;
  tenant: string | null;
  claims: JWTPayload;
}

/** The bearer token of a request, or undefined. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const value = header(request, 'authorization');
  const match = value === undefined ? null : /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)$/i.exec(value.trim());
  return match?.[1];
}

/** The `iss` a token names, unverified: it only chooses whose keys verify it. */
export function unverifiedIssuer(token: string): string | undefined {
  try {
    const { iss } = decodeJwt(token);
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

/** The client ids our OIDC clients have at their IdPs (configured, or registered and in use here). */
export function ourClientIds(ctx: AppContext): Set<string> {
  return new Set(ctx.registry.variants().map((v) => v.client.clientId).filter((id) => id !== ''));
}

/**
 * The client (and tenant) an admin request is about, after its bearer token passed; else replies
 * (401/403/400/404/502/503) and returns undefined.
 */
export async function authorizeAdmin(
  ctx: AppContext,
  jwks: JwksCache,
  request: FastifyRequest,
  reply: FastifyReply,
  clientId: string,
  action: string,
): Promise<AdminAccess | undefined> {
  const token = bearerToken(request);
  const found = findClient(ctx, request, reply, clientId, token);
  if (!found) return undefined;
  const { client, tenant } = found;
  if (token === undefined) {
    unauthorized(reply, 'invalid_request', 'send the administrator access token as Authorization: Bearer <token>');
    return undefined;
  }
  const checked = await checkToken(ctx, jwks, request, client, tenant, token, action);
  if (!checked.ok) {
    refuse(reply, checked.refusal);
    return undefined;
  }
  return { client, tenant, claims: checked.claims };
}

/** Why an admin token was refused, ready to answer. */
export interface AdminRefusal {
  status: 401 | 403 | 502 | 503;
  error: string;
  detail: string;
}

/** Verifies an admin token against the issuer of a (client, tenant): its claims, or why it was refused. */
export async function checkToken(
  ctx: AppContext,
  jwks: JwksCache,
  request: FastifyRequest,
  client: ClientConfig,
  tenant: string | null,
  token: string,
  action: string,
): Promise<{ ok: true; claims: JWTPayload } | { ok: false; refusal: AdminRefusal }> {
  let metadata;
  try {
    metadata = await ctx.registry.serverMetadata(client.id, tenant);
  } catch (err) {
    request.log.warn({ clientId: client.id, tenant, reason: (err as Error).message }, `issuer discovery failed at ${action}`);
    return { ok: false, refusal: { status: 503, error: 'idp_unavailable', detail: 'the identity provider cannot be reached; try again shortly' } };
  }
  if (metadata.jwks_uri === undefined) {
    return { ok: false, refusal: { status: 502, error: 'idp_misconfigured', detail: 'the issuer publishes no jwks_uri, so the bearer token cannot be checked' } };
  }
  // Registrations another instance made and this one has not used yet are ours too: without them, a token
  // issued to one of those clients could pass as an admin credential, so an unreadable store refuses.
  try {
    await ctx.registry.loadRegistrations();
  } catch (err) {
    request.log.warn({ clientId: client.id, tenant, reason: (err as Error).message }, `could not read the client registrations at ${action}`);
    return { ok: false, refusal: { status: 503, error: 'store_unavailable', detail: 'the session store cannot be reached; try again shortly' } };
  }
  const check = await verifyAdminToken(token, { issuer: metadata.issuer, keys: jwks.get(metadata.jwks_uri), policy: client.admin, ourClientIds: ourClientIds(ctx) });
  if (check.ok) return { ok: true, claims: check.claims };
  request.log.warn({ clientId: client.id, tenant, error: check.error, detail: check.detail }, `${action} refused`);
  return { ok: false, refusal: { status: check.status, error: check.error, detail: check.detail } };
}

/** Answers a refused admin token (401 and 403 with their WWW-Authenticate). */
export function refuse(reply: FastifyReply, refusal: AdminRefusal): FastifyReply {
  if (refusal.status === 401) return unauthorized(reply, 'invalid_token', refusal.detail);
  if (refusal.status === 403) reply.header('www-authenticate', 'Bearer error="insufficient_scope"');
  return sendProblem(reply, refusal.status, refusal.error, refusal.detail);
}

/**
 * The client and tenant: the tenant header's, or for a tenant-scoped client without it, the one tenant
 * whose issuer is the token's `iss` (ADSP takes the tenant from the admin's token).
 */
function findClient(ctx: AppContext, request: FastifyRequest, reply: FastifyReply, clientId: string, token: string | undefined): { client: ClientConfig; tenant: string | null } | undefined {
  const tenants = ctx.registry.tenants(clientId);
  if (tenants === null || header(request, ctx.config.tenantHeader) || token === undefined) return lookupClient(ctx, request, reply, clientId);
  const iss = unverifiedIssuer(token);
  const matching = iss === undefined ? [] : tenants.filter((tenant) => sameIssuer(ctx.registry.variant(clientId, tenant)!.issuer, iss));
  if (matching.length !== 1) {
    sendProblem(
      reply,
      400,
      'tenant_required',
      matching.length === 0
        ? `client "${clientId}" needs the ${ctx.config.tenantHeader} header: the token's issuer is none of its tenants'`
        : `client "${clientId}" needs the ${ctx.config.tenantHeader} header: several of its tenants share the token's issuer`,
    );
    return undefined;
  }
  const tenant = matching[0]!;
  return { client: ctx.registry.variant(clientId, tenant)!, tenant };
}

export function unauthorized(reply: FastifyReply, error: 'invalid_request' | 'invalid_token', detail: string): FastifyReply {
  reply.header('www-authenticate', error === 'invalid_token' ? `Bearer error="invalid_token"` : 'Bearer');
  return sendProblem(reply, 401, error, detail);
}
