import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AppContext } from '../context.ts';
import type { ActiveSession } from '../session/model.ts';
import { logoutGuard } from './auth.ts';
import { resolveTenant } from './clientLookup.ts';
import { sendProblem } from './problem.ts';
import { header, isHttps } from './requestInfo.ts';
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
}

export function sessionView(ctx: AppContext, session: ActiveSession, now = Date.now()): SessionView {
  const { record, payload } = session;
  const guard = encodeURIComponent(logoutGuard(session));
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
    expiresAt: new Date(record.expiresAt).toISOString(),
    idleExpiresAt: new Date(record.idleExpiresAt).toISOString(),
    expiresIn: Math.max(0, Math.floor((Math.min(record.expiresAt, record.idleExpiresAt) - now) / 1000)),
    logoutUrl: `${ctx.config.basePath}/clients/${record.clientId}/logout?sid=${guard}`,
    handle: sessionHandle(ctx.config, record.idHash),
  };
}

/**
 * Every live session this browser holds, one per client cookie it carries. A tenant-scoped client's
 * session is looked up only in the tenant the tenant header names (and only if the client serves it),
 * so a session made for one tenant never shows, nor acts, in another.
 */
export async function resolveAllSessions(ctx: AppContext, request: FastifyRequest): Promise<ActiveSession[]> {
  const secure = ctx.cookies.secure(isHttps(request));
  const tenantHeader = header(request, ctx.config.tenantHeader);
  const found: ActiveSession[] = [];
  for (const client of ctx.registry.clients()) {
    const value = request.cookies[ctx.cookies.sessionCookieName(client.id, secure)];
    if (!value) continue;
    const resolved = resolveTenant(ctx, client.id, tenantHeader);
    if (!resolved.ok) continue;
    const session = await ctx.sessions.resolve(value, { clientId: client.id, tenant: resolved.tenant });
    if (session) found.push(session);
  }
  return found;
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
export async function sessionRoutes(app: FastifyInstance, opts: { ctx: AppContext }): Promise<void> {
  const { ctx } = opts;
  app.get<{ Querystring: { all?: string } }>('/sessions', async (request, reply) => {
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
      reply.setCookie(ctx.cookies.xsrfCookieName, randomBytes(32).toString('base64url'), ctx.cookies.attributes(secure, { httpOnly: false }));
    }
    reply.header('cache-control', 'no-store');
    if (request.query.all === 'true') {
      const current = new Set(found.map((s) => s.idHash));
      return (await listUserSessions(ctx, found)).map((record) => listEntry(ctx, record, current));
    }
    return found.map((s) => sessionView(ctx, s));
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
    clearSessionCookies(ctx, request, reply, current.filter((s) => s.idHash === target.idHash));
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
    request.log.info({ sessions: records.length, subs: [...new Set(records.map((r) => r.sub))] }, 'all sessions of the user revoked');
    return reply.send({ revoked: records.length });
  });
}
