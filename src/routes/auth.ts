import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ClientConfig } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { OidcError } from '../oidc/errors.ts';
import { beginLogin, completeLogin, endSessionUrl, revokeToken } from '../oidc/flows.ts';
import { checkCsrf } from '../security/csrf.ts';
import { checkReturnTo } from '../security/returnTo.ts';
import { pickClaims, type ActiveSession } from '../session/model.ts';
import { lookupClient } from './clientLookup.ts';
import { LOGIN_STATE_TTL_SEC, sealLoginState, unsealLoginState } from './loginState.ts';
import { sendProblem } from './problem.ts';
import { header, isHttps, requestOrigin } from './requestInfo.ts';

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
    const origins = new Set<string>([requestOrigin(request, config), ...client.allowedOrigins]);
    for (const url of [client.postLoginRedirectUrl, client.postLogoutRedirectUrl]) {
      if (url && /^https?:\/\//.test(url)) origins.add(new URL(url).origin);
    }
    return origins;
  }

  function redirectUri(request: FastifyRequest, client: ClientConfig, callbackPath?: string): string {
    return client.redirectUrl ?? `${requestOrigin(request, config)}${callbackPath ?? `${config.basePath}/clients/${client.id}/callback`}`;
  }

  function setXsrfCookie(request: FastifyRequest, reply: FastifyReply): void {
    const secure = cookies.secure(isHttps(request));
    reply.setCookie(cookies.xsrfCookieName, randomBytes(32).toString('base64url'), cookies.attributes(secure, { httpOnly: false }));
  }

  async function fail(
    request: FastifyRequest,
    reply: FastifyReply,
    client: ClientConfig,
    status: number,
    error: string,
    detail: string,
  ): Promise<FastifyReply> {
    metrics.logins.inc({ client: client.id, outcome: error });
    request.log.warn({ clientId: client.id, error, detail }, 'login failed');
    if (client.failureRedirectUrl) {
      const target = new URL(client.failureRedirectUrl, requestOrigin(request, config));
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
        const expectedHost = new URL(client.redirectUrl).host;
        if (request.host !== expectedHost) {
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
      const { url, checks } = await beginLogin(configuration, { redirectUri: uri, scopes: client.scopes, extra });
      const secure = cookies.secure(isHttps(request));
      reply.setCookie(
        cookies.loginStateCookieName(checks.state, secure),
        sealLoginState(sealer, { ...checks, clientId: client.id, tenant, returnTo, redirectUri: uri }),
        cookies.attributes(secure, { httpOnly: true, maxAgeSec: LOGIN_STATE_TTL_SEC }),
      );
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
      const stateCookie = cookies.loginStateCookieName(stateParam, secure);
      const loginState = unsealLoginState(sealer, client.id, request.cookies[stateCookie]);
      // The login state is single-use, whatever happens next.
      reply.clearCookie(stateCookie, cookies.attributes(secure, { httpOnly: true }));
      if (!loginState || loginState.state !== stateParam || loginState.tenant !== tenant) {
        return fail(request, reply, client, 400, 'invalid_state', 'no login was started in this browser for this state (expired, replayed or forged)');
      }
      if (typeof query.error === 'string') {
        const error = /^[\w.-]{1,64}$/.test(query.error) ? query.error : 'idp_error';
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
        result = await completeLogin(configuration, currentUrl, loginState.redirectUri, loginState);
      } catch (err) {
        const e = err instanceof OidcError ? err : new OidcError('unavailable', String(err));
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
        claims: pickClaims(claims),
        userAgent: header(request, 'user-agent') ?? null,
      });
      reply.setCookie(
        cookies.sessionCookieName(client.id, secure),
        cookieValue,
        cookies.attributes(secure, { httpOnly: true, expires: new Date(session.record.expiresAt) }),
      );
      setXsrfCookie(request, reply);
      metrics.logins.inc({ client: client.id, outcome: 'success' });
      request.log.info({ clientId: client.id, sub }, 'login succeeded');
      return reply.header('cache-control', 'no-store').redirect(loginState.returnTo, 302);
    },

    async logout(request, reply, clientId, method) {
      const found = lookupClient(ctx, request, reply, clientId);
      if (!found) return reply;
      const { client, tenant } = found;
      const secure = cookies.secure(isHttps(request));
      const cookieName = cookies.sessionCookieName(client.id, secure);
      const session = await sessions.resolve(request.cookies[cookieName], { clientId: client.id, tenant });
      if (method === 'post') {
        const csrf = checkCsrf({
          method: 'POST',
          origin: header(request, 'origin'),
          secFetchSite: header(request, 'sec-fetch-site'),
          headerToken: header(request, cookies.xsrfHeaderName),
          cookieToken: request.cookies[cookies.xsrfCookieName],
          allowedOrigins: allowedOrigins(request, client),
        });
        if (!csrf.ok) {
          metrics.csrfRejections.inc({ reason: 'logout' });
          return sendProblem(reply, 403, 'csrf_failed', csrf.reason);
        }
      } else if (session && !getLogoutAllowed(request, session, requestOrigin(request, config))) {
        return sendProblem(reply, 403, 'csrf_failed', 'a GET logout needs the sid parameter from the logoutUrl of /sessions, or must come from a page of this site');
      }
      let destination: string | undefined;
      const postLogout = client.postLogoutRedirectUrl
        ? new URL(client.postLogoutRedirectUrl, requestOrigin(request, config)).href
        : undefined;
      if (session) {
        destination = await endSession(request, client, session, postLogout);
        metrics.logouts.inc({ client: client.id, kind: 'rp' });
      }
      reply.clearCookie(cookieName, cookies.attributes(secure, { httpOnly: true }));
      destination ??= postLogout ?? '/';
      reply.header('cache-control', 'no-store');
      if (method === 'post' && (header(request, 'accept') ?? '').includes('application/json')) {
        // The end-session URL carries the ID token (id_token_hint): script must not read it. The app gets
        // our own continuation URL instead, which redirects there from a sealed, HttpOnly, one-minute cookie.
        if (destination !== (postLogout ?? '/')) {
          reply.setCookie(
            cookies.endSessionCookieName(client.id, secure),
            sealer.seal(endSessionPurpose(client.id), Buffer.from(destination), Date.now() + END_SESSION_TTL_SEC * 1000),
            cookies.attributes(secure, { httpOnly: true, maxAgeSec: END_SESSION_TTL_SEC }),
          );
          destination = `${config.basePath}/clients/${client.id}/end-session`;
        }
        return reply.send({ loggedOut: true, redirectTo: destination });
      }
      return reply.redirect(destination, method === 'post' ? 303 : 302);
    },

    async endSessionRedirect(request, reply, clientId) {
      const client = registry.client(clientId);
      if (!client) return sendProblem(reply, 404, 'unknown_client', `no client "${clientId}" is configured`);
      const secure = cookies.secure(isHttps(request));
      const name = cookies.endSessionCookieName(client.id, secure);
      const unsealed = sealer.unseal(endSessionPurpose(client.id), request.cookies[name] ?? '');
      reply.clearCookie(name, cookies.attributes(secure, { httpOnly: true }));
      const fallback = client.postLogoutRedirectUrl ? new URL(client.postLogoutRedirectUrl, requestOrigin(request, config)).href : '/';
      return reply.header('cache-control', 'no-store').redirect(unsealed ? unsealed.data.toString('utf8') : fallback, 302);
    },
  };

  /** Revokes the tokens at the IdP, deletes the session and returns the IdP's end-session URL (if any). */
  async function endSession(
    request: FastifyRequest,
    client: ClientConfig,
    session: ActiveSession,
    postLogout: string | undefined,
  ): Promise<string | undefined> {
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
      if (refreshToken) await revokeToken(configuration, refreshToken, 'refresh_token');
      else await revokeToken(configuration, accessToken, 'access_token');
    } catch (err) {
      request.log.warn({ clientId: client.id, reason: (err as Error).message }, 'token revocation failed at logout');
    }
    const params: { idTokenHint?: string; postLogoutRedirectUri?: string } = {};
    if (idToken) params.idTokenHint = idToken;
    if (postLogout) params.postLogoutRedirectUri = postLogout;
    return endSessionUrl(configuration, params)?.href;
  }
}

/**
 * A GET logout (a link or navigation) must not be triggerable from another site: SameSite=Lax cookies do
 * travel with cross-site top-level GETs. It is allowed when it carries the session's `sid` guard (from
 * /sessions' logoutUrl, as Duende BFF does), or when the browser declares it same-origin
 * (`Sec-Fetch-Site: same-origin`), or, for browsers without Fetch Metadata, when its Referer is our origin.
 */
export function getLogoutAllowed(request: FastifyRequest, session: ActiveSession, ownOrigin: string): boolean {
  const sid = (request.query as { sid?: string }).sid;
  if (sid !== undefined && sid === logoutGuard(session)) return true;
  const site = header(request, 'sec-fetch-site');
  if (site !== undefined) return site === 'same-origin';
  const referer = header(request, 'referer');
  if (!referer) return false;
  try {
    return new URL(referer).origin === ownOrigin;
  } catch {
    return false;
  }
}

/** The value a GET logout must carry: the OIDC sid when the IdP gave one, else a digest of the session. */
export function logoutGuard(session: ActiveSession): string {
  return session.record.sid ?? session.idHash.slice(0, 32);
}
