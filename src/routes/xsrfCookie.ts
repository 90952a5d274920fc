/**
 * The XSRF cookie (`XSRF-TOKEN`, readable by the app, echoed as `X-XSRF-TOKEN`) lives as long as the
 * session it protects: a browser-session cookie beside a persistent session cookie was gone after a
 * browser restart, and every state-changing call got 403 until the app called /sessions again. It goes
 * when the browser's last session of ours goes.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../context.ts';
import { isHttps } from '../http/request.ts';

/** Sets a new XSRF cookie that expires with the session (`expiresAt`, ms since epoch). */
export function issueXsrfCookie(ctx: AppContext, request: FastifyRequest, reply: FastifyReply, expiresAt: number): void {
  const secure = ctx.cookies.secure(isHttps(request));
  reply.setCookie(ctx.cookies.xsrfCookieName, randomBytes(32).toString('base64url'), ctx.cookies.attributes(secure, { httpOnly: false, expires: new Date(expiresAt) }));
}

/**
 * Clears the XSRF cookie when the sessions of `endedClients` were the browser's last: no session cookie
 * of another client came with the request (another app of the site still needs the token).
 */
export function clearXsrfCookieAfterLogout(ctx: AppContext, request: FastifyRequest, reply: FastifyReply, endedClients: ReadonlySet<string>): void {
  if (request.cookies[ctx.cookies.xsrfCookieName] === undefined) return;
  const secure = ctx.cookies.secure(isHttps(request));
  for (const client of ctx.registry.clients()) {
    if (!endedClients.has(client.id) && request.cookies[ctx.cookies.sessionCookieName(client.id, secure)] !== undefined) return;
  }
  reply.clearCookie(ctx.cookies.xsrfCookieName, ctx.cookies.attributes(secure, { httpOnly: false }));
}
