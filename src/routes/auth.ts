import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ClientConfig } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { loginOutcomeLabel } from '../metrics.ts';
import { OidcError } from '../oidc/errors.ts';
import { beginLogin, completeLogin, endSessionUrl, revokeToken } from '../oidc/flows.ts';
import { checkCsrf } from '../security/csrf.ts';
import { checkReturnTo } from '../security/returnTo.ts';
import type { ActiveSession } from '../session/model.ts';
import { loginClaims } from '../oidc/identity.ts';
import { lookupClient } from './clientLookup.ts';
import { resolveSessionTenant } from '../http/tenant.ts';
import { LOGIN_STATE_TTL_SEC, loginCookiesOverBudget, readLoginAttempts, sealLoginAttempts, sealRemainingAttempts } from './loginState.ts';
import { continueToEndSession, endSessionStep, parseEndSessionStep, sendLogoutConfirmation, type EndSessionStep } from './logoutPages.ts';
import { clearXsrfCookieAfterLogout, issueXsrfCookie } from './xsrfCookie.ts';
import { sendProblem } from '../http/problem.ts';
import { header, isHttps } from '../http/request.ts';
import { appOrigin, clientPublicPath, configuredAppOrigins, forwardedClientPath } from '../http/publicPath.ts';

type ClientParams = { Params: { clientId: string } };
type AuthQuery = { Querystring: { return_to?: string; prompt?: string; login_hint?: string } };

/** Login, callback and logout for every configured client, under the API base path. */
export async function authRoutes(app: FastifyInstance, opts: { ctx: AppContext }): Promise<void> {
  const { ctx } = opts;
  const handlers = createAuthHandlers(ctx);
  // A cross-site HTML form can POST to logout: its body is never read, so the CSRF check answers it (403),
  // not the missing form parser (415).
  app.addContentTypeParser(['application/x-www-form-urlencoded', 'multipart/form-data'], (_request, _payload, done) => done(null, undefined));
  app.get<ClientParams & AuthQuery>('/clients/:clientId/auth', (req, reply) => handlers.login(req, reply, req.params.clientId));
  app.get<ClientParams>('/clients/:clientId/callback', (req, reply) => handlers.callback(req, reply, req.params.clientId));
  app.post<ClientParams>('/clients/:clientId/logout', (req, reply) => handlers.logout(req, reply, req.params.clientId, 'post'));
  app.get<ClientParams>('/clients/:clientId/logout', (req, reply) => handlers.logout(req, reply, req.params.clientId, 'get'));
  app.get<ClientParams>('/clients/:clientId/end-session', (req, reply) => handlers.endSessionRedirect(req, reply, req.params.clientId));
}

export interface AuthHandlers {
  /** `callbackPath`: where the IdP sends the browser back when the client has no configured redirect URL. */
  login(request: FastifyRequest, reply: FastifyReply, clientId: string, callbackPath?: string): Promise<FastifyReply>;
  callback(request: FastifyRequest, reply: FastifyReply, clientId: string): Promise<FastifyReply>;
  logout(request: FastifyRequest, reply: FastifyReply, clientId: string, method: 'get' | 'post'): Promise<FastifyReply>;
  /** Continues a JSON logout at the IdP's end-session endpoint, from the sealed continuation cookie. */
  endSessionRedirect(request: FastifyRequest, reply: FastifyReply, clientId: string): Promise<FastifyReply>;
}

const END_SESSION_TTL_SEC = 60;
const endSessionPurpose = (clientId: string): string => `end-session:${clientId}`;

/** The handlers, shared by the /token-handler/v1 routes and the go-token-handler compatible ones. */
export function createAuthHandlers(ctx: AppContext): AuthHandlers {
  const { config, cookies, registry, sessions, sealer, metrics } = ctx;

  function allowedOrigins(request: FastifyRequest, client: ClientConfig): Set<string> {
    return new Set<string>([ctx.origins.originOf(request), ...client.allowedOrigins, ...configuredAppOrigins(client)]);
  }

  function redirectUri(request: FastifyRequest, client: ClientConfig, callbackPath?: string): string {
    return client.redirectUrl ?? `${ctx.origins.originOf(request)}${callbackPath ?? `${clientPublicPath(ctx, request, client)}/callback`}`;
  }

  async function fail(
    request: FastifyRequest,
    reply: FastifyReply,
    client: ClientConfig,
    status: number,
    error: string,
    detail: string,
    /** Where the browser goes when the client names no failure URL; absent: a problem+json answer. */
    defaultFailureUrl?: string,
  ): Promise<FastifyReply> {
    metrics.logins.inc({ client: client.id, outcome: loginOutcomeLabel(error) });
    request.log.warn({ clientId: client.id, error, detail }, 'login failed');
    const failureUrl = client.failureRedirectUrl ?? defaultFailureUrl;
    if (failureUrl) {
      const target = new URL(failureUrl, appOrigin(ctx, request, client));
      target.searchParams.set('error', error);
      return reply.header('cache-control', 'no-store').redirect(target.href, 302);
    }
    return sendProblem(reply, status, error, detail);
  }

  return {
    async login(request, reply, clientId, callbackPath) {
      const found = lookupClient(ctx, request, reply, clientId);
      if (!found) return reply;
      const { client, tenant } = found;
      const query = request.query as { return_to?: string; prompt?: string; login_hint?: string };
      if (client.redirectUrl && !client.disableVerifyHost && !config.publicUrl) {
        // Cookies are not isolated by port (RFC 6265 §8.5): the host name is what must match. A proxy that
        // sends `Host $host` drops the port, which is no reason to refuse the login.
        const expectedHost = new URL(client.redirectUrl).host;
        if (hostName(request.host) !== hostName(expectedHost)) {
          return sendProblem(reply, 400, 'host_mismatch', `start the login on ${expectedHost}, the host of the callback URL, so the session cookie is set where the app runs`);
        }
      }
      let returnTo = client.postLoginRedirectUrl;
      if (query.return_to !== undefined) {
        const checked = checkReturnTo(query.return_to, allowedOrigins(request, client));
        if (!checked.ok) return sendProblem(reply, 400, 'invalid_return_to', checked.reason);
        returnTo = checked.url;
      }
      const extra: Record<string, string> = { ...client.extraAuthParams };
      if (query.prompt && /^[a-z_ ]{1,64}$/.test(query.prompt)) extra.prompt = query.prompt;
      if (query.login_hint && query.login_hint.length <= 256) extra.login_hint = query.login_hint;
      let configuration;
      try {
        configuration = await registry.configuration(client.id, tenant);
      } catch (err) {
        if (err instanceof OidcError && err.kind === 'rejected') {
          // A `registered: true` client before its registration (POST /clients/{id}).
          return sendProblem(reply, 503, 'client_not_registered', err.message);
        }
        request.log.error({ clientId: client.id, tenant, reason: (err as Error).message }, 'IdP discovery failed');
        return sendProblem(reply, 503, 'idp_unavailable', 'the identity provider cannot be reached; try again shortly');
      }
      const uri = redirectUri(request, client, callbackPath);
      let begun;
      try {
        begun = await beginLogin(configuration, { redirectUri: uri, scopes: client.scopes, extra, par: client.par === true });
      } catch (err) {
        // Only a pushed authorization request talks to the IdP here.
        const e = err instanceof OidcError ? err : new OidcError('unavailable', String(err));
        request.log.error({ clientId: client.id, tenant, reason: e.message }, 'pushed authorization request failed');
        if (e.kind === 'unavailable') return sendProblem(reply, 503, 'idp_unavailable', 'the identity provider cannot be reached; try again shortly');
        return sendProblem(reply, 502, 'idp_error', `the identity provider refused the pushed authorization request${e.error ? ` (${e.error})` : ''}`);
      }
      const { url, checks } = begun;
      const secure = cookies.secure(isHttps(request));
      const cookieName = cookies.loginStateCookieName(client.id, secure);
      const now = Date.now();
      const attempt = { ...checks, tenant, returnTo, redirectUri: uri, expiresAt: now + LOGIN_STATE_TTL_SEC * 1000 };
      const earlier = readLoginAttempts(sealer, client.id, request.cookies[cookieName], now);
      const sealed = sealLoginAttempts(sealer, client.id, attempt, earlier);
      if (sealed === undefined) return sendProblem(reply, 400, 'invalid_return_to', 'return_to is too long to carry through the login');
      for (const name of loginCookiesOverBudget(request.cookies, cookies.loginStateCookiePrefix(secure), cookieName, sealed.length)) {
        reply.clearCookie(name, cookies.attributes(secure, { httpOnly: true }));
      }
      reply.setCookie(cookieName, sealed, cookies.attributes(secure, { httpOnly: true, maxAgeSec: LOGIN_STATE_TTL_SEC }));
      return reply.header('cache-control', 'no-store').redirect(url.href, 302);
    },

    async callback(request, reply, clientId) {
      const found = lookupClient(ctx, request, reply, clientId);
      if (!found) return reply;
      const { client, tenant } = found;
      const query = request.query as Record<string, string | undefined>;
      const secure = cookies.secure(isHttps(request));
      const stateParam = typeof query.state === 'string' ? query.state : '';
      if (stateParam.length < 16) return fail(request, reply, client, 400, 'invalid_state', 'the callback carries no valid state');
      const stateCookie = cookies.loginStateCookieName(client.id, secure);
      const now = Date.now();
      const attempts = readLoginAttempts(sealer, client.id, request.cookies[stateCookie], now);
      const loginState = attempts.find((attempt) => attempt.state === stateParam);
      if (loginState) {
        // An attempt is single-use, whatever happens next; the browser's other attempts stay.
        const remaining = attempts.filter((attempt) => attempt !== loginState);
        const sealed = sealRemainingAttempts(sealer, client.id, remaining);
        if (sealed === undefined) reply.clearCookie(stateCookie, cookies.attributes(secure, { httpOnly: true }));
        else {
          const maxAgeSec = Math.ceil((Math.max(...remaining.map((attempt) => attempt.expiresAt)) - now) / 1000);
          reply.setCookie(stateCookie, sealed, cookies.attributes(secure, { httpOnly: true, maxAgeSec }));
        }
      }
      if (!loginState || loginState.tenant !== tenant) {
        return fail(request, reply, client, 400, 'invalid_state', 'no login was started in this browser for this state (expired, replayed or forged)');
      }
      if (typeof query.error === 'string') {
        const error = /^[\w.-]{1,64}$/.test(query.error) ? query.error : 'idp_error';
        // The user cancelled at the IdP: a browser navigation that goes back to the app, as in ADSP.
        if (error === 'access_denied') return fail(request, reply, client, 400, error, 'the user cancelled the login at the identity provider', '/');
        return fail(request, reply, client, 400, error, `the identity provider refused the login (${error})`);
      }
      let configuration;
      try {
        configuration = await registry.configuration(client.id, tenant);
      } catch {
        return fail(request, reply, client, 503, 'idp_unavailable', 'the identity provider cannot be reached; try again shortly');
      }
      const currentUrl = new URL(loginState.redirectUri);
      const q = request.url.indexOf('?');
      currentUrl.search = q >= 0 ? request.url.slice(q) : '';
      let result;
      try {
        result = await completeLogin(configuration, currentUrl, loginState.redirectUri, loginState, registry.revalidation(client.id, tenant));
      } catch (err) {
        const e = err instanceof OidcError ? err : new OidcError('unavailable', String(err));
        if (e.error === 'tenant_not_allowed') return fail(request, reply, client, 403, 'tenant_not_allowed', e.message);
        const status = e.kind === 'unavailable' || e.kind === 'rejected' ? 502 : 400;
        const error = e.kind === 'idp_error' ? (e.error ?? 'idp_error') : e.kind === 'invalid_grant' ? 'invalid_grant' : e.kind === 'invalid_response' ? 'invalid_response' : 'idp_unavailable';
        return fail(request, reply, client, status, error, e.message);
      }
      const { claims, tokens } = result;
      const sub = claims.sub as string;
      // Never continue a session the browser brought: the old one (if any, of whichever tenant: the cookie
      // is per client) ends, a new id is issued.
      const previousCookie = request.cookies[cookies.sessionCookieName(client.id, secure)];
      for (const candidate of registry.tenants(client.id) ?? [null]) {
        const previous = await sessions.resolve(previousCookie, { clientId: client.id, tenant: candidate });
        if (previous) await sessions.destroy(previous.idHash);
        if (previous || !previousCookie) break;
      }
      const { cookieValue, session } = await sessions.create({
        clientId: client.id,
        tenant,
        issuer: typeof claims.iss === 'string' ? claims.iss : client.issuer,
        sub,
        sid: typeof claims.sid === 'string' ? claims.sid : null,
        tokens,
        claims: await loginClaims(configuration, client, result, request.log),
        userAgent: header(request, 'user-agent') ?? null,
        publicPath: forwardedClientPath(ctx, request, client.id),
      });
      reply.setCookie(
        cookies.sessionCookieName(client.id, secure),
        cookieValue,
        cookies.attributes(secure, { httpOnly: true, expires: new Date(session.record.expiresAt) }),
      );
      issueXsrfCookie(ctx, request, reply, session.record.expiresAt);
      metrics.logins.inc({ client: client.id, outcome: 'success' });
      request.log.info({ clientId: client.id, sub }, 'login succeeded');
      return reply.header('cache-control', 'no-store').redirect(loginState.returnTo, 302);
    },

    async logout(request, reply, clientId, method) {
      if (!registry.client(clientId)) return sendProblem(reply, 404, 'unknown_client', `no client "${clientId}" is configured`);
      const secure = cookies.secure(isHttps(request));
      const cookieName = cookies.sessionCookieName(clientId, secure);
      // The tenant header's tenant, else the session's: a logout needs no header (ADSP). A session of another
      // tenant than the header's is neither ended nor has its cookie cleared.
      const resolved = await resolveSessionTenant(ctx, clientId, header(request, config.tenantHeader), request.cookies[cookieName]);
      if (!resolved.ok) return sendProblem(reply, resolved.status, resolved.error, resolved.detail);
      const client = registry.variant(clientId, resolved.tenant);
      if (!client) return sendProblem(reply, 404, 'unknown_client', `no client "${clientId}" is configured`);
      const { session, foreign } = resolved;
      const origins = allowedOrigins(request, client);
      if (method === 'post') {
        const csrf = checkCsrf({
          method: 'POST',
          origin: header(request, 'origin'),
          secFetchSite: header(request, 'sec-fetch-site'),
          headerToken: header(request, cookies.xsrfHeaderName),
          cookieToken: request.cookies[cookies.xsrfCookieName],
          allowedOrigins: origins,
        });
        // Our page is on our origin as the browser sees it: the request's, or the app's (appOrigin: a proxy
        // sending `Host $host` drops the port).
        const ours = new Set([ctx.origins.originOf(request), appOrigin(ctx, request, client)]);
        if (!csrf.ok && !(session && confirmedOnOurPage(request, session, ours))) {
          metrics.csrfRejections.inc({ reason: 'logout' });
          return sendProblem(reply, 403, 'csrf_failed', csrf.reason);
        }
      } else if (session && !getLogoutAllowed(request, session, origins)) {
        // A navigation from another site: SameSite=Lax cookies came along, but the user did not evidently
        // ask for this. Nothing ends; the user decides, on our page, with a POST.
        const action = `${clientPublicPath(ctx, request, client, session.payload.publicPath)}/logout?sid=${encodeURIComponent(logoutGuard(session))}`;
        return sendLogoutConfirmation(reply, action, ctx.origins.originOf(request));
      }
      let step: EndSessionStep | undefined;
      const postLogout = client.postLogoutRedirectUrl
        ? new URL(client.postLogoutRedirectUrl, appOrigin(ctx, request, client)).href
        : undefined;
      if (session) {
        step = await endSession(request, client, session, postLogout);
        metrics.logouts.inc({ client: client.id, kind: 'rp' });
      }
      if (!foreign) {
        reply.clearCookie(cookieName, cookies.attributes(secure, { httpOnly: true }));
        clearXsrfCookieAfterLogout(ctx, request, reply, new Set([client.id]));
      }
      const fallback = postLogout ?? '/';
      reply.header('cache-control', 'no-store');
      if (method === 'post' && (header(request, 'accept') ?? '').includes('application/json')) {
        // The end-session step carries the ID token (id_token_hint): script must not read it. The app gets
        // our own continuation URL instead, which continues from a sealed, HttpOnly, one-minute cookie.
        let redirectTo = fallback;
        if (step) {
          reply.setCookie(
            cookies.endSessionCookieName(client.id, secure),
            sealer.seal(endSessionPurpose(client.id), Buffer.from(JSON.stringify(step)), Date.now() + END_SESSION_TTL_SEC * 1000),
            cookies.attributes(secure, { httpOnly: true, maxAgeSec: END_SESSION_TTL_SEC }),
          );
          redirectTo = `${clientPublicPath(ctx, request, client, session?.payload.publicPath)}/end-session`;
        }
        return reply.send({ loggedOut: true, redirectTo });
      }
      return continueToEndSession(request, reply, step ?? { method: 'redirect', url: fallback }, method === 'post' ? 303 : 302);
    },

    async endSessionRedirect(request, reply, clientId) {
      const client = registry.client(clientId);
      if (!client) return sendProblem(reply, 404, 'unknown_client', `no client "${clientId}" is configured`);
      const secure = cookies.secure(isHttps(request));
      const name = cookies.endSessionCookieName(client.id, secure);
      const unsealed = sealer.unseal(endSessionPurpose(client.id), request.cookies[name] ?? '');
      reply.clearCookie(name, cookies.attributes(secure, { httpOnly: true }));
      const step = unsealed ? parseEndSessionStep(unsealed.data.toString('utf8')) : undefined;
      const fallback = client.postLogoutRedirectUrl ? new URL(client.postLogoutRedirectUrl, appOrigin(ctx, request, client)).href : '/';
      return continueToEndSession(request, reply, step ?? { method: 'redirect', url: fallback }, 302);
    },
  };

  /** Revokes the tokens at the IdP, deletes the session and returns how to continue to the IdP's end-session endpoint (if any). */
  async function endSession(
    request: FastifyRequest,
    client: ClientConfig,
    session: ActiveSession,
    postLogout: string | undefined,
  ): Promise<EndSessionStep | undefined> {
    await sessions.destroy(session.idHash);
    let configuration;
    try {
      configuration = await registry.configuration(client.id, session.record.tenant);
    } catch {
      request.log.warn({ clientId: client.id }, 'IdP unreachable at logout: tokens not revoked, no end-session redirect');
      return undefined;
    }
    const { refreshToken, accessToken, idToken } = session.payload;
    try {
      const revoked = refreshToken ? await revokeToken(configuration, refreshToken, 'refresh_token') : await revokeToken(configuration, accessToken, 'access_token');
      // Entra ID has no revocation endpoint: the tokens die with the session (ours was the only copy) and at their expiry.
      if (!revoked) request.log.debug({ clientId: client.id }, 'the IdP offers no token revocation: the tokens were deleted with the session, not revoked');
    } catch (err) {
      request.log.warn({ clientId: client.id, reason: (err as Error).message }, 'token revocation failed at logout');
    }
    const params: { idTokenHint?: string; postLogoutRedirectUri?: string; template?: string } = {};
    if (idToken) params.idTokenHint = idToken;
    if (postLogout) params.postLogoutRedirectUri = postLogout;
    if (client.endSessionUrl !== undefined) params.template = client.endSessionUrl;
    const url = endSessionUrl(configuration, params);
    if (url === undefined) return undefined;
    return endSessionStep(url, configuration.serverMetadata().end_session_endpoint, client.endSessionMethod ?? 'get');
  }
}

/**
 * Whether a GET logout (a link or a navigation) is one the user made. It must not be triggerable from
 * another site (SameSite=Lax cookies do travel with cross-site top-level GETs), but works as
 * go-token-handler's `GET /logout` did for what users do: a typed URL or a bookmark (`Sec-Fetch-Site:
 * none`), a link on a page of this origin (`same-origin`), or a link on a page of one of the client's
 * allowed origins (a sibling app: its Referer origin, which a page cannot forge). The session's `sid`
 * guard (from the logoutUrl of /sessions, as Duende BFF does) is accepted from anywhere. Anything else
 * gets the confirmation page.
 */
export function getLogoutAllowed(request: FastifyRequest, session: ActiveSession, allowedOrigins: ReadonlySet<string>): boolean {
  const sid = (request.query as { sid?: string }).sid;
  if (sid !== undefined && sid === logoutGuard(session)) return true;
  const site = header(request, 'sec-fetch-site');
  if (site === 'none' || site === 'same-origin') return true;
  const referer = header(request, 'referer');
  if (!referer) return false;
  try {
    return allowedOrigins.has(new URL(referer).origin);
  } catch {
    return false;
  }
}

/**
 * A POST logout from the confirmation page: our own page (its Origin, not cross-site) posting the
 * session's sid guard, which only our pages hand out. Stands in for the XSRF header a form cannot send.
 */
function confirmedOnOurPage(request: FastifyRequest, session: ActiveSession, ownOrigins: ReadonlySet<string>): boolean {
  const sid = (request.query as { sid?: string }).sid;
  if (sid === undefined || sid !== logoutGuard(session)) return false;
  const site = header(request, 'sec-fetch-site');
  if (site !== undefined && site !== 'same-origin') return false;
  const origin = header(request, 'origin');
  return origin !== undefined && ownOrigins.has(origin);
}

/** The host name of a `host[:port]` (an IPv6 literal keeps its brackets), lower-cased. */
function hostName(host: string): string {
  const end = host.startsWith('[') ? host.indexOf(']') + 1 : host.lastIndexOf(':');
  return (end > 0 ? host.slice(0, end) : host).toLowerCase();
}

/** The value a GET logout must carry: the OIDC sid when the IdP gave one, else a digest of the session. */
export function logoutGuard(session: ActiveSession): string {
  return session.record.sid ?? session.idHash.slice(0, 32);
}
