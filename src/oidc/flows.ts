import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { OidcError, toOidcError } from './errors.ts';
import { traced } from '../ops/tracing.ts';
import { captureTokenResponse, capturedIdToken, replayTokenResponse, withoutIdToken, type CapturedResponse } from './tokenResponse.ts';

/** What the browser must carry from /auth to /callback (sealed in the login-state cookie). */
export interface LoginChecks {
  verifier: string;
  state: string;
  nonce: string;
}

export interface TokenSet {
  accessToken: string;
  refreshToken: string | undefined;
  idToken: string | undefined;
  /**
   * ms since epoch, or null when the IdP gave no `expires_in`. Counted from when the request was sent, not
   * from when its answer came: the IdP's clock started before, and a slow answer must not make a token
   * look valid for longer than it is.
   */
  accessExpiresAt: number | null;
  /**
   * When the refresh token stops working (ms since epoch): Keycloak's `refresh_expires_in` (its SSO idle and
   * max), `refresh_token_expires_in` (Entra ID and others), else a JWT refresh token's `exp`; null: unknown
   * or unlimited (Keycloak's offline tokens answer 0).
   */
  refreshExpiresAt: number | null;
  scope: string | undefined;
}

export interface LoginResult {
  tokens: TokenSet;
  /** Validated ID token claims. */
  claims: Record<string, unknown>;
}

export interface RefreshResult {
  tokens: TokenSet;
  /** Validated claims of the new ID token; undefined when the IdP sent none or it could not be validated. */
  idTokenClaims: Record<string, unknown> | undefined;
  /** Why the new ID token was not accepted (it was dropped; the other tokens were kept). */
  idTokenRejected?: string;
}

/**
 * What the grants need from the client's registry entry to validate a token response again: a
 * configuration with freshly fetched keys or for the token's tenant, and the tenant allow-list.
 */
export interface Revalidation {
  /**
   * A configuration to validate `idToken` (unverified here) with once more: with the issuer's keys fetched
   * again (a key rotated at the IdP), and, for a multi-tenant issuer, expecting the issuer of the token's
   * tenant. Undefined: nothing new to try. Throws OidcError when the token's tenant is not allowed.
   */
  configurationFor(idToken: string): Promise<oidc.Configuration | undefined>;
  /** Throws OidcError (`tenant_not_allowed`) when validated claims come from a tenant that is not allowed. */
  checkClaims(claims: Record<string, unknown>): void;
}

/** Builds the authorization URL: code flow, PKCE S256, state and nonce, always; pushed (RFC 9126) when asked. */
export async function beginLogin(
  configuration: oidc.Configuration,
  params: { redirectUri: string; scopes: string[]; extra: Record<string, string>; par?: boolean },
): Promise<{ url: URL; checks: LoginChecks }> {
  const verifier = oidc.randomPKCECodeVerifier();
  const checks: LoginChecks = { verifier, state: oidc.randomState(), nonce: oidc.randomNonce() };
  const parameters = {
    ...params.extra,
    redirect_uri: params.redirectUri,
    scope: params.scopes.join(' '),
    response_type: 'code',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state: checks.state,
    nonce: checks.nonce,
  };
  if (!usePar(configuration, params.par === true)) return { url: oidc.buildAuthorizationUrl(configuration, parameters), checks };
  try {
    return { url: await oidc.buildAuthorizationUrlWithPAR(configuration, parameters), checks };
  } catch (err) {
    throw toOidcError(err, 'pushed authorization request');
  }
}

/** PAR when the IdP offers it and the client asks for it, or when the IdP requires it. */
export function usePar(configuration: oidc.Configuration, enabled: boolean): boolean {
  const metadata = configuration.serverMetadata();
  if (!metadata.pushed_authorization_request_endpoint) return false;
  return enabled || metadata.require_pushed_authorization_requests === true;
}

/**
 * Validates the authorization response (state, `iss` per RFC 9207 when offered, IdP errors) and exchanges
 * the code with client authentication; openid-client validates the ID token (signature, iss, aud, exp,
 * nonce). An ID token it cannot accept at first (a key rotated since the keys were fetched; one tenant of a
 * multi-tenant issuer) is validated once more against `revalidation`'s configuration, from the response
 * already received: the code is single-use.
 */
export async function completeLogin(
  configuration: oidc.Configuration,
  callbackUrl: URL,
  redirectUri: string,
  checks: LoginChecks,
  revalidation: Revalidation,
): Promise<LoginResult> {
  const requestedAt = Date.now();
  const grant = (config: oidc.Configuration) =>
    oidc.authorizationCodeGrant(
      config,
      callbackUrl,
      { pkceCodeVerifier: checks.verifier, expectedState: checks.state, expectedNonce: checks.nonce, idTokenExpected: true },
      { redirect_uri: redirectUri },
    );
  try {
    const response = await traced('oidc authorization_code', () => idpAttributes(configuration, 'authorization_code'), () => grantValidated(configuration, grant, revalidation));
    const claims = response.claims();
    if (!claims) throw new Error('no ID token claims');
    revalidation.checkClaims({ ...claims });
    return { tokens: toTokenSet(response, requestedAt), claims: { ...claims } };
  } catch (err) {
    throw toOidcError(err, 'code exchange');
  }
}

/**
 * The refresh grant. A response the IdP gave is never thrown away: its refresh token may be the only one
 * that still works (rotation). When its ID token cannot be validated even with the keys fetched again, the
 * ID token is dropped and the other tokens are kept (`idTokenRejected` says why). A validated ID token for
 * another subject than the session's is refused (OpenID Connect Core 12.2): the session must end.
 */
export async function refreshTokens(
  configuration: oidc.Configuration,
  refreshToken: string,
  opts: { revalidation: Revalidation; expectedSubject: string },
): Promise<RefreshResult> {
  // Expiry counts from when the request left: a slow answer must not make a token look valid for longer.
  const requestedAt = Date.now();
  const grant = (config: oidc.Configuration) => oidc.refreshTokenGrant(config, refreshToken);
  const tokenEndpoint = endpointOf(configuration);
  const first = await traced('oidc refresh_token', () => idpAttributes(configuration, 'refresh_token'), () => captureTokenResponse(tokenEndpoint, () => grant(configuration)));
  let response: GrantResponse;
  let idTokenRejected: string | undefined;
  if (first.ok) response = first.value;
  else {
    if (first.response?.status !== 200) throw toOidcError(first.error, 'refresh');
    const captured = first.response;
    try {
      response = await revalidate(configuration, captured, first.error, grant, opts.revalidation);
    } catch (err) {
      const stripped = withoutIdToken(captured);
      // Nothing to strip: the response itself is not acceptable (not JSON, no access token...).
      if (!stripped) throw toOidcError(err, 'refresh');
      idTokenRejected = toOidcError(err, 'refresh').message;
      try {
        response = await replayTokenResponse(tokenEndpoint, stripped, () => grant(configuration));
      } catch (err2) {
        throw toOidcError(err2, 'refresh');
      }
    }
  }
  const claims = response.claims();
  if (claims && claims.sub !== opts.expectedSubject) {
    throw new OidcError('rejected', 'refresh: the new ID token is about another subject than the session');
  }
  return { tokens: toTokenSet(response, requestedAt), idTokenClaims: claims ? { ...claims } : undefined, ...(idTokenRejected !== undefined && { idTokenRejected }) };
}

type GrantResponse = oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;

/** Runs a grant; when openid-client refuses the IdP's 200 answer, validates it once more (`revalidate`). */
async function grantValidated<T extends GrantResponse>(
  configuration: oidc.Configuration,
  grant: (config: oidc.Configuration) => Promise<T>,
  revalidation: Revalidation,
): Promise<T> {
  const first = await captureTokenResponse(endpointOf(configuration), () => grant(configuration));
  if (first.ok) return first.value;
  if (first.response?.status !== 200) throw first.error;
  return revalidate(configuration, first.response, first.error, grant, revalidation);
}

/** Replays a captured 200 response into the configuration `revalidation` offers; rethrows `error` without one. */
async function revalidate<T>(
  configuration: oidc.Configuration,
  captured: CapturedResponse,
  error: unknown,
  grant: (config: oidc.Configuration) => Promise<T>,
  revalidation: Revalidation,
): Promise<T> {
  const idToken = capturedIdToken(captured);
  if (idToken === undefined) throw error;
  const retry = await revalidation.configurationFor(idToken);
  if (!retry) throw error;
  return replayTokenResponse(endpointOf(configuration), captured, () => grant(retry));
}

/** A grant span's attributes: the IdP's host and the grant type (never a token, code or client secret). */
function idpAttributes(configuration: oidc.Configuration, grantType: string | undefined): Record<string, string> {
  const attributes: Record<string, string> = {};
  try {
    attributes['server.address'] = new URL(configuration.serverMetadata().issuer).host;
  } catch {
    // An issuer that is no URL: no address.
  }
  if (grantType !== undefined) attributes['oauth.grant_type'] = grantType;
  return attributes;
}

function endpointOf(configuration: oidc.Configuration): string {
  return configuration.serverMetadata().token_endpoint ?? '';
}

/** RFC 7009 revocation, when the IdP advertises a revocation endpoint. Returns whether it was attempted. */
export async function revokeToken(
  configuration: oidc.Configuration,
  token: string,
  hint: 'refresh_token' | 'access_token',
): Promise<boolean> {
  if (!configuration.serverMetadata().revocation_endpoint) return false;
  try {
    await traced('oidc revocation', () => idpAttributes(configuration, undefined), () => oidc.tokenRevocation(configuration, token, { token_type_hint: hint }));
    return true;
  } catch (err) {
    throw toOidcError(err, 'revocation');
  }
}

/**
 * RP-initiated logout URL: the client's end-session URL template when it has one (Auth0's `/v2/logout`,
 * Cognito's `/logout`: IdPs whose discovery has no end_session_endpoint), else the discovered
 * end_session_endpoint with `id_token_hint`, `post_logout_redirect_uri` and `client_id`; undefined when
 * neither exists (logout is then local: the session is deleted, the IdP session stays).
 */
export function endSessionUrl(
  configuration: oidc.Configuration,
  params: { idTokenHint?: string; postLogoutRedirectUri?: string; template?: string },
): URL | undefined {
  const clientId = configuration.clientMetadata().client_id;
  if (params.template !== undefined) {
    const values: Record<string, string | undefined> = { client_id: clientId, post_logout_redirect_uri: params.postLogoutRedirectUri, id_token_hint: params.idTokenHint };
    return new URL(params.template.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(values[name] ?? '')));
  }
  if (!configuration.serverMetadata().end_session_endpoint) return undefined;
  const query: Record<string, string> = { client_id: clientId };
  if (params.idTokenHint) query.id_token_hint = params.idTokenHint;
  if (params.postLogoutRedirectUri) query.post_logout_redirect_uri = params.postLogoutRedirectUri;
  return oidc.buildEndSessionUrl(configuration, query);
}

export async function fetchUserInfo(
  configuration: oidc.Configuration,
  accessToken: string,
  expectedSubject: string,
): Promise<Record<string, unknown>> {
  try {
    return { ...(await traced('oidc userinfo', () => idpAttributes(configuration, undefined), () => oidc.fetchUserInfo(configuration, accessToken, expectedSubject))) };
  } catch (err) {
    throw toOidcError(err, 'userinfo');
  }
}

function toTokenSet(response: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers, requestedAt: number): TokenSet {
  // expiresIn() counts from when openid-client parsed the answer; expires_in from when the IdP wrote it.
  const expiresIn = typeof response.expires_in === 'number' ? response.expires_in : undefined;
  return {
    accessToken: response.access_token,
    refreshToken: response.refresh_token,
    idToken: response.id_token,
    accessExpiresAt: expiresIn === undefined ? null : requestedAt + expiresIn * 1000,
    refreshExpiresAt: refreshExpiry(response, requestedAt),
    scope: response.scope,
  };
}

/**
 * When the refresh token of a token response expires: `refresh_expires_in` (Keycloak), else
 * `refresh_token_expires_in`, else the `exp` of a refresh token that is a JWT (Keycloak's are; read, not
 * verified: the refresh token is the IdP's to check, and the expiry can only shorten the session). 0 or
 * nothing: unknown.
 */
export function refreshExpiry(response: Record<string, unknown>, now = Date.now()): number | null {
  for (const field of ['refresh_expires_in', 'refresh_token_expires_in']) {
    const seconds = Number(response[field]);
    if (response[field] !== undefined && Number.isFinite(seconds)) return seconds > 0 ? now + seconds * 1000 : null;
  }
  const token = response.refresh_token;
  if (typeof token !== 'string' || token.split('.').length !== 3) return null;
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === 'number' && exp > 0 ? exp * 1000 : null;
  } catch {
    return null;
  }
}
