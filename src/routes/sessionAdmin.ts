/**
 * The user's own session management: every session of the current user (same subject at the same
 * issuer, same tenant), each named by an opaque handle, revocable one by one or all at once. A handle is
 * an HMAC of the session's id hash under a key derived from the cookie authentication secret: it names a
 * session without being, or leading to, anything a cookie could be made of.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { revokeToken } from '../oidc/flows.ts';
import { checkCsrf } from '../security/csrf.ts';
import { deriveKey } from '../session/keys.ts';
import type { ActiveSession } from '../session/model.ts';
import type { SessionRecord } from '../store/types.ts';
import { sendProblem } from '../http/problem.ts';
import { header, isHttps } from '../http/request.ts';
import { configuredAppOrigins } from '../http/publicPath.ts';

const HANDLE_LENGTH = 32;
export const HANDLE_PATTERN = /^[A-Za-z0-9_-]{32}$/;
const handleKeys = new WeakMap<Config, Buffer>();

/** The opaque handle of a session: base64url(HMAC-SHA256(key, id hash)), 32 characters. */
export function sessionHandle(config: Config, idHash: string): string {
  let key = handleKeys.get(config);
  if (!key) {
    key = deriveKey(config.session.authSecrets[0]!, 'session-handle');
    handleKeys.set(config, key);
  }
  return createHmac('sha256', key).update(idHash).digest('base64url').slice(0, HANDLE_LENGTH);
}

export function sameHandle(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** One entry of GET /sessions?all=true. Never a token, never a session id. */
export interface SessionListEntry {
  handle: string;
  /** This browser's session (one of them, when it is logged in to several clients). */
  current: boolean;
  clientId: string;
  tenant: string | null;
  issuer: string;
  createdAt: string;
  lastUsedAt: string;
  expiresAt: string;
  userAgent: string | null;
}

/**
 * Every live session of the users behind this browser's sessions: for each, the sessions of the same
 * subject at the same issuer in the same tenant (of any client), newest use first.
 */
export async function listUserSessions(ctx: AppContext, current: ActiveSession[], now = Date.now()): Promise<SessionRecord[]> {
  const byHash = new Map<string, SessionRecord>();
  const identities = new Map<string, { issuer: string; sub: string; tenant: string | null }>();
  for (const { record } of current) identities.set(JSON.stringify([record.issuer, record.sub, record.tenant]), record);
  for (const { issuer, sub, tenant } of identities.values()) {
    for (const record of await ctx.store.listBySubject(issuer, sub)) {
      if (record.tenant !== tenant || record.expiresAt <= now || record.idleExpiresAt <= now) continue;
      byHash.set(record.idHash, record);
    }
  }
  // The current sessions as this request saw them (their idle expiry may just have been extended).
  for (const { record } of current) byHash.set(record.idHash, record);
  return [...byHash.values()].sort((a, b) => b.lastUsedAt - a.lastUsedAt);
}

export function listEntry(ctx: AppContext, record: SessionRecord, currentHashes: ReadonlySet<string>): SessionListEntry {
  return {
    handle: sessionHandle(ctx.config, record.idHash),
    current: currentHashes.has(record.idHash),
    clientId: record.clientId,
    tenant: record.tenant,
    issuer: record.issuer,
    createdAt: new Date(record.createdAt).toISOString(),
    lastUsedAt: new Date(record.lastUsedAt).toISOString(),
    expiresAt: new Date(Math.min(record.expiresAt, record.idleExpiresAt)).toISOString(),
    userAgent: record.userAgent,
  };
}

/**
 * Ends one session: deleted everywhere (store and every instance's cache), then its refresh token (else
 * its access token) revoked at the IdP (RFC 7009). A revocation failure is logged, not fatal: the
 * session is gone either way.
 */
export async function revokeSession(ctx: AppContext, request: FastifyRequest, record: SessionRecord): Promise<void> {
  await ctx.sessions.destroy(record.idHash);
  ctx.metrics.logouts.inc({ client: record.clientId, kind: 'revoke' });
  let payload;
  try {
    payload = ctx.sessions.decryptPayload(record);
  } catch {
    return;
  }
  try {
    const configuration = await ctx.registry.configuration(record.clientId, record.tenant);
    if (payload.refreshToken) await revokeToken(configuration, payload.refreshToken, 'refresh_token');
    else await revokeToken(configuration, payload.accessToken, 'access_token');
  } catch (err) {
    request.log.warn({ clientId: record.clientId, tenant: record.tenant, reason: (err as Error).message }, 'token revocation failed when revoking a session');
  }
}

/**
 * The CSRF check of the state-changing session routes, as POST /logout does it: the XSRF cookie echoed in
 * the header, and an Origin that is ours or one a configured client allows. Replies 403 when it fails.
 */
export function sessionCsrfOk(ctx: AppContext, request: FastifyRequest, reply: FastifyReply): boolean {
  const origins = new Set<string>([ctx.origins.originOf(request)]);
  for (const { client } of ctx.registry.variants()) for (const origin of [...client.allowedOrigins, ...configuredAppOrigins(client)]) origins.add(origin);
  const csrf = checkCsrf({
    method: request.method,
    origin: header(request, 'origin'),
    secFetchSite: header(request, 'sec-fetch-site'),
    headerToken: header(request, ctx.cookies.xsrfHeaderName),
    cookieToken: request.cookies[ctx.cookies.xsrfCookieName],
    allowedOrigins: origins,
  });
  if (csrf.ok) return true;
  ctx.metrics.csrfRejections.inc({ reason: 'sessions' });
  sendProblem(reply, 403, 'csrf_failed', csrf.reason);
  return false;
}

/** Clears the session cookie of each of these sessions (the browser's own, now revoked). */
export function clearSessionCookies(ctx: AppContext, request: FastifyRequest, reply: FastifyReply, sessions: ActiveSession[]): void {
  const secure = ctx.cookies.secure(isHttps(request));
  for (const session of sessions) {
    reply.clearCookie(ctx.cookies.sessionCookieName(session.record.clientId, secure), ctx.cookies.attributes(secure, { httpOnly: true }));
  }
}
