import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { OidcError } from '../oidc/errors.ts';
import { fetchUserInfo } from '../oidc/flows.ts';
import { DEFAULT_CLIENT_ID } from '../session/cookiePolicy.ts';
import { RefreshUnavailableError, SessionEndedError } from '../session/errors.ts';
import { createAuthHandlers } from './auth.ts';
import { goErrorShape } from '../http/goError.ts';
import { sendProblem } from '../http/problem.ts';
import { isHttps } from '../http/request.ts';

const LEGACY_CALLBACK = '/callback';

/**
 * go-token-handler's routes for the flag-configured (`default`) client, so its users switch binaries
 * without touching their frontend or reverse proxy: GET /login, /callback, /logout, /userinfo. Their
 * errors come in Go's JSON shape (http/goError.ts), with our status codes.
 */
export async function legacyRoutes(app: FastifyInstance, opts: { ctx: AppContext }): Promise<void> {
  const { ctx } = opts;
  if (!ctx.registry.client(DEFAULT_CLIENT_ID)) return;
  const handlers = createAuthHandlers(ctx);
  // A frontend written for go-token-handler reads its error shape ({code, status, message, timestamp}).
  app.addHook('onSend', goErrorShape);
  app.get('/login', (req, reply) => handlers.login(req, reply, DEFAULT_CLIENT_ID, LEGACY_CALLBACK));
  app.get(LEGACY_CALLBACK, (req, reply) => handlers.callback(req, reply, DEFAULT_CLIENT_ID));
  app.get('/logout', (req, reply) => handlers.logout(req, reply, DEFAULT_CLIENT_ID, 'get'));
  // The confirmation page a GET /logout from another site gets posts back to the URL the browser used.
  app.post('/logout', (req, reply) => handlers.logout(req, reply, DEFAULT_CLIENT_ID, 'post'));
  app.get('/userinfo', (req, reply) => userinfo(ctx, req, reply));
}

/**
 * Mounts the callback at the path of --oidc_redirect_url when that path is not already a callback route,
 * so an IdP registration made for go-token-handler keeps working.
 */
export async function redirectUrlRoute(app: FastifyInstance, opts: { ctx: AppContext }): Promise<void> {
  const { ctx } = opts;
  const path = redirectUrlPath(ctx.config);
  if (path === undefined) return;
  const handlers = createAuthHandlers(ctx);
  app.addHook('onSend', goErrorShape);
  app.get(path, (req, reply) => handlers.callback(req, reply, DEFAULT_CLIENT_ID));
}

/** The path of --oidc_redirect_url when it needs a callback route of its own (see redirectUrlRoute). */
export function redirectUrlPath(config: Config): string | undefined {
  const client = config.clients.find((c) => c.id === DEFAULT_CLIENT_ID);
  if (!client?.redirectUrl) return undefined;
  const path = new URL(client.redirectUrl).pathname;
  const taken = new Set([`${config.basePath}/clients/${DEFAULT_CLIENT_ID}/callback`]);
  if (config.legacyRoutes) taken.add(LEGACY_CALLBACK);
  return taken.has(path) ? undefined : path;
}

/** The IdP's userinfo for the current session, fetched server-side with the session's access token. */
async function userinfo(ctx: AppContext, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const secure = ctx.cookies.secure(isHttps(request));
  const session = await ctx.sessions.resolve(request.cookies[ctx.cookies.sessionCookieName(DEFAULT_CLIENT_ID, secure)], {
    clientId: DEFAULT_CLIENT_ID,
    tenant: null,
  });
  if (!session) return sendProblem(reply, 401, 'login_required', 'no session: log in first');
  reply.header('cache-control', 'no-store');
  try {
    const accessToken = await ctx.sessions.accessToken(session);
    const configuration = await ctx.registry.configuration(DEFAULT_CLIENT_ID);
    return reply.send(await fetchUserInfo(configuration, accessToken, session.record.sub));
  } catch (err) {
    if (err instanceof SessionEndedError) return sendProblem(reply, 401, 'login_required', 'the session has ended: log in again');
    if (err instanceof RefreshUnavailableError) return sendProblem(reply, 503, 'idp_unavailable', 'the identity provider cannot be reached');
    if (err instanceof OidcError && err.status !== undefined && err.status < 500) {
      return sendProblem(reply, err.status, err.error ?? 'userinfo_refused', 'the identity provider refused the userinfo request');
    }
    request.log.warn({ reason: (err as Error).message }, 'userinfo failed');
    return sendProblem(reply, 502, 'idp_unavailable', 'the identity provider did not answer the userinfo request');
  }
}
