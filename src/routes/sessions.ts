import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AppContext } from '../context.ts';
import type { ActiveSession } from '../session/model.ts';
import { logoutGuard } from './auth.ts';
import { header, isHttps } from './requestInfo.ts';

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
  };
}

/** Every live session this browser holds, one per client cookie it carries. */
export async function resolveAllSessions(ctx: AppContext, request: FastifyRequest): Promise<ActiveSession[]> {
  const secure = ctx.cookies.secure(isHttps(request));
  const tenantHeader = header(request, ctx.config.tenantHeader) ?? null;
  const found: ActiveSession[] = [];
  for (const client of ctx.registry.clients()) {
    const value = request.cookies[ctx.cookies.sessionCookieName(client.id, secure)];
    if (!value) continue;
    const tenant = client.tenant === undefined ? null : tenantHeader;
    if (client.tenant !== undefined && tenant !== client.tenant) continue;
    const session = await ctx.sessions.resolve(value, { clientId: client.id, tenant });
    if (session) found.push(session);
  }
  return found;
}

/**
 * GET /sessions: `[]` when the browser has no live session (so `const [session] = await res.json()`
 * from the ADSP docs yields undefined), else one entry per client. Also hands out an XSRF cookie when
 * the browser lacks one, so apps can always make state-changing calls after checking the session.
 */
export async function sessionRoutes(app: FastifyInstance, opts: { ctx: AppContext }): Promise<void> {
  const { ctx } = opts;
  app.get('/sessions', async (request, reply) => {
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
    return found.map((s) => sessionView(ctx, s));
  });
}
