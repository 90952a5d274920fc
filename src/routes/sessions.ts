import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { bearerToken } from './adminAuth.ts';
import type { AppContext } from '../context.ts';
import { sessionEndsAt, type ActiveSession } from '../session/model.ts';
import { logoutGuard } from './auth.ts';
import { resolveSessionTenant } from '../http/tenant.ts';
import { sendProblem } from '../http/problem.ts';
import { header, isHttps } from '../http/request.ts';
import { clientPublicPath } from '../http/publicPath.ts';
import { clearXsrfCookieAfterLogout, issueXsrfCookie } from './xsrfCookie.ts';
import {
  clearSessionCookies,
  HANDLE_PATTERN,
  listEntry,
  listUserSessions,
  revokeSession,
  sameHandle,
  sessionCsrfOk,
  sessionHandle,
} from './sessionAdmin.ts';

/** What the app learns about a session. Never a token. */
export interface SessionView {
  authenticated: true;
  clientId: string;
  tenant: string | null;
  sub: string;
  name: string | null;
  email: string | null;
  preferredUsername: string | null;
  roles: string[];
  createdAt: string;
  expiresAt: string;
  idleExpiresAt: string;
  /** Seconds until the session ends (the earlier of absolute and idle expiry), as Duende's session_expires_in. */
  expiresIn: number;
  /** A GET URL that logs this session out (carries the CSRF guard). */
  logoutUrl: string;
  /** Opaque name of this session for DELETE /sessions/{handle} (not a session id). */
  handle: string;
  // ADSP's session entry (its `name`, `email` and `roles` are ours above): what an ADSP frontend reads.
  /** ADSP: the tenant the session was made in (the tenant header's value), null when not tenant-scoped. */
  tenantId: string | null;
  /** ADSP: the user's id (`sub`). */
  id: string;
  /** ADSP: when the session ends (the earlier of its absolute and idle end), as an ISO date. */
  expiry: string;
  /** ADSP: the client that logged the user in. */
  authenticatedBy: string;
}

export function sessionView(ctx: AppContext, request: FastifyRequest, session: ActiveSession, now = Date.now()): SessionView {
  const { record, payload } = session;
  const guard = encodeURIComponent(logoutGuard(session));
  // The absolute end, or the refresh token's when the IdP bounds it (Keycloak's SSO idle and max).
  const endsAt = sessionEndsAt(record, payload);
  return {
    authenticated: true,
    clientId: record.clientId,
    tenant: record.tenant,
    sub: record.sub,
    name: payload.claims.name ?? null,
    email: payload.claims.email ?? null,
    preferredUsername: payload.claims.preferredUsername ?? null,
    roles: payload.claims.roles,
    createdAt: new Date(record.createdAt).toISOString(),
    expiresAt: new Date(endsAt).toISOString(),
    idleExpiresAt: new Date(record.idleExpiresAt).toISOString(),
    expiresIn: Math.max(0, Math.floor((Math.min(endsAt, record.idleExpiresAt) - now) / 1000)),
    logoutUrl: `${logoutPath(ctx, request, session)}?sid=${guard}`,
    handle: sessionHandle(ctx.config, record.idHash),
    tenantId: record.tenant,
    id: record.sub,
    expiry: new Date(Math.min(endsAt, record.idleExpiresAt)).toISOString(),
    authenticatedBy: record.clientId,
  };
}

/** The browser's path of the logout route of a session's client (through the reverse proxy: publicPath.ts). */
function logoutPath(ctx: AppContext, request: FastifyRequest, session: ActiveSession): string {
  const { clientId, tenant } = session.record;
  const client = ctx.registry.variant(clientId, tenant) ?? ctx.registry.client(clientId) ?? { id: clientId };
  return `${clientPublicPath(ctx, request, client, session.payload.publicPath)}/logout`;
}

/**
 * Every live session this browser holds, one per client cookie it carries. A tenant-scoped client's
 * session is looked up in the tenant the tenant header names (by URN or name, and only if the client
 * serves it), so a session made for one tenant never shows, nor acts, under another's header; without the
 * header, in its own tenant (resolveSessionTenant).
 */
export async function resolveAllSessions(ctx: AppContext, request: FastifyRequest): Promise<ActiveSession[]> {
  const secure = ctx.cookies.secure(isHttps(request));
  const tenantHeader = header(request, ctx.config.tenantHeader);
  const found: ActiveSession[] = [];
  for (const client of ctx.registry.clients()) {
    const value = request.cookies[ctx.cookies.sessionCookieName(client.id, secure)];
    if (!value) continue;
    const resolved = await resolveSessionTenant(ctx, client.id, tenantHeader, value);
    if (resolved.ok && resolved.session) found.push(resolved.session);
  }
  return found;
}

/** Whether the request carries a session cookie of one of our clients (valid or not). */
function carriesSessionCookie(ctx: AppContext, request: FastifyRequest): boolean {
  const secure = ctx.cookies.secure(isHttps(request));
  return ctx.registry.clients().some((client) => request.cookies[ctx.cookies.sessionCookieName(client.id, secure)] !== undefined);
}

type HandleParams = { Params: { handle: string } };

/**
 * GET /sessions: `[]` when the browser has no live session (so `const [session] = await res.json()`
 * from the ADSP docs yields undefined), else one entry per client. Also hands out an XSRF cookie when
 * the browser lacks one, so apps can always make state-changing calls after checking the session.
 *
 * GET /sessions?all=true: every session of the same user (this browser's and others), with handles.
 * DELETE /sessions/{handle}: ends one of them. DELETE /sessions: ends them all ("log out everywhere").
 */
export async function sessionRoutes(
  app: FastifyInstance,
  opts: {
    ctx: AppContext;
    /** ADSP's administrator listing: GET /sessions with an admin bearer token (routes/adminSessions.ts). */
    adminList?: (request: FastifyRequest, reply: FastifyReply, token: string) => Promise<FastifyReply>;
  },
): Promise<void> {
  const { ctx, adminList } = opts;
  app.get<{ Querystring: { all?: string } }>('/sessions', async (request, reply) => {
    // An administrator's tool sends a bearer token and no session cookie; a browser app's own
    // Authorization header beside its session cookie is neither used nor looked at.
    const token = adminList === undefined || carriesSessionCookie(ctx, request) ? undefined : bearerToken(request);
    if (token !== undefined) return adminList!(request, reply, token);
    const found = await resolveAllSessions(ctx, request);
    const secure = ctx.cookies.secure(isHttps(request));
    for (const session of found) {
      if (session.resealCookie) {
        reply.setCookie(
          ctx.cookies.sessionCookieName(session.record.clientId, secure),
          ctx.sessions.sealCookie(session),
          ctx.cookies.attributes(secure, { httpOnly: true, expires: new Date(session.record.expiresAt) }),
        );
      }
    }
    if (found.length > 0 && !request.cookies[ctx.cookies.xsrfCookieName]) {
      issueXsrfCookie(ctx, request, reply, Math.max(...found.map((s) => s.record.expiresAt)));
    }
    reply.header('cache-control', 'no-store');
    if (request.query.all === 'true') {
      const current = new Set(found.map((s) => s.idHash));
      return (await listUserSessions(ctx, found)).map((record) => listEntry(ctx, record, current));
    }
    return found.map((s) => sessionView(ctx, request, s));
  });

  app.delete<HandleParams>('/sessions/:handle', async (request, reply) => {
    reply.header('cache-control', 'no-store');
    if (!sessionCsrfOk(ctx, request, reply)) return reply;
    const current = await resolveAllSessions(ctx, request);
    if (current.length === 0) return sendProblem(reply, 401, 'login_required', 'no session: log in first');
    const { handle } = request.params;
    const target = HANDLE_PATTERN.test(handle)
      ? (await listUserSessions(ctx, current)).find((record) => sameHandle(sessionHandle(ctx.config, record.idHash), handle))
      : undefined;
    // Another user's session, an ended one, or nothing at all: the same answer.
    if (!target) return sendProblem(reply, 404, 'not_found', 'no such session of yours');
    await revokeSession(ctx, request, target);
    const ended = current.filter((s) => s.idHash === target.idHash);
    clearSessionCookies(ctx, request, reply, ended);
    if (ended.length > 0) clearXsrfCookieAfterLogout(ctx, request, reply, new Set(ended.map((s) => s.record.clientId)));
    request.log.info({ clientId: target.clientId, sub: target.sub }, 'session revoked by its user');
    return reply.send({ revoked: 1 });
  });

  app.delete('/sessions', async (request, reply) => {
    reply.header('cache-control', 'no-store');
    if (!sessionCsrfOk(ctx, request, reply)) return reply;
    const current = await resolveAllSessions(ctx, request);
    if (current.length === 0) return sendProblem(reply, 401, 'login_required', 'no session: log in first');
    const records = await listUserSessions(ctx, current);
    await Promise.all(records.map((record) => revokeSession(ctx, request, record)));
    clearSessionCookies(ctx, request, reply, current);
    clearXsrfCookieAfterLogout(ctx, request, reply, new Set(current.map((s) => s.record.clientId)));
    request.log.info({ sessions: records.length, subs: [...new Set(records.map((r) => r.sub))] }, 'all sessions of the user revoked');
    return reply.send({ revoked: records.length });
  });
}
