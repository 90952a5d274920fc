/**
 * Who the user is, after a login and after each refresh: the grant's validated ID token, the userinfo
 * response (when the client asks for it) and the access token when it is a JWT, reduced to the session's
 * claims (oidc/claims.ts). Userinfo is a courtesy: when it fails the login or refresh goes on without it.
 */
import { decodeJwt } from 'jose';
import type * as oidc from 'openid-client';
import type { Logger } from 'pino';
import type { ClientConfig } from '../config/types.ts';
import type { SessionClaims } from '../session/model.ts';
import type { Refreshed, RefreshContext } from '../session/service.ts';
import { accessTokenClaims, sessionClaims } from './claims.ts';
import { fetchUserInfo, refreshTokens, type LoginResult } from './flows.ts';
import type { OidcRegistry } from './registry.ts';

type Log = Pick<Logger, 'warn' | 'info'>;

/** The session claims of a completed login. */
export async function loginClaims(configuration: oidc.Configuration, client: ClientConfig, result: LoginResult, log: Log): Promise<SessionClaims> {
  const userinfo = client.userinfo ? await userinfoOf(configuration, result.tokens.accessToken, String(result.claims.sub), client, log) : undefined;
  return sessionClaims(
    { idToken: result.claims, ...(userinfo && { userinfo }), ...withAccessToken(result.tokens.accessToken) },
    { ...(client.roleClaims && { roleClaims: client.roleClaims }) },
  );
}

/**
 * The `Refresher` of the session service: the refresh grant at the session's IdP, then the claims
 * recomputed from the new ID token (or, when the IdP sent none or it was not accepted, the session's
 * current one), userinfo and the new access token.
 */
export function createRefresher(registry: OidcRegistry, log: Log): (clientId: string, refreshToken: string, session: RefreshContext) => Promise<Refreshed> {
  return async (clientId, refreshToken, session) => {
    const client = registry.variant(clientId, session.tenant) ?? registry.client(clientId);
    const configuration = await registry.sessionConfiguration(clientId, session.tenant, session.issuer);
    const result = await refreshTokens(configuration, refreshToken, { revalidation: registry.revalidation(clientId, session.tenant), expectedSubject: session.sub });
    if (result.idTokenRejected !== undefined) {
      log.warn({ clientId, reason: result.idTokenRejected }, 'the ID token of a refresh was not accepted; the refreshed tokens are kept, the previous ID token stays');
    }
    const idToken = result.idTokenClaims ?? previousClaims(session.idToken);
    const userinfo = client?.userinfo ? await userinfoOf(configuration, result.tokens.accessToken, session.sub, client, log) : undefined;
    const claims = sessionClaims(
      { ...(idToken && { idToken }), ...(userinfo && { userinfo }), ...withAccessToken(result.tokens.accessToken) },
      { ...(client?.roleClaims && { roleClaims: client.roleClaims }) },
    );
    // What no source mentions any more stays as it was (a profile field only an old userinfo gave).
    return { tokens: result.tokens, claims: { ...session.claims, ...claims } };
  };
}

function withAccessToken(accessToken: string): { accessToken?: Record<string, unknown> } {
  const claims = accessTokenClaims(accessToken);
  return claims ? { accessToken: claims } : {};
}

/** The claims of the session's ID token, validated when it was received. */
function previousClaims(idToken: string | undefined): Record<string, unknown> | undefined {
  if (idToken === undefined) return undefined;
  try {
    return decodeJwt(idToken) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

async function userinfoOf(configuration: oidc.Configuration, accessToken: string, sub: string, client: ClientConfig, log: Log): Promise<Record<string, unknown> | undefined> {
  try {
    return await fetchUserInfo(configuration, accessToken, sub);
  } catch (err) {
    log.warn({ clientId: client.id, reason: (err as Error).message }, 'userinfo failed; the session keeps the ID token and access token claims');
    return undefined;
  }
}
