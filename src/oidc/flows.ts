import * as oidc from 'openid-client';
import { toOidcError } from './errors.ts';

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
  /** ms since epoch, or null when the IdP gave no `expires_in`. */
  accessExpiresAt: number | null;
  scope: string | undefined;
}

export interface LoginResult {
  tokens: TokenSet;
  /** Validated ID token claims. */
  claims: Record<string, unknown>;
}

/** Builds the authorization URL: code flow, PKCE S256, state and nonce, always. */
export async function beginLogin(
  configuration: oidc.Configuration,
  params: { redirectUri: string; scopes: string[]; extra: Record<string, string> },
): Promise<{ url: URL; checks: LoginChecks }> {
  const verifier = oidc.randomPKCECodeVerifier();
  const checks: LoginChecks = { verifier, state: oidc.randomState(), nonce: oidc.randomNonce() };
  const url = oidc.buildAuthorizationUrl(configuration, {
    ...params.extra,
    redirect_uri: params.redirectUri,
    scope: params.scopes.join(' '),
    response_type: 'code',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state: checks.state,
    nonce: checks.nonce,
  });
  return { url, checks };
}

/**
 * Validates the authorization response (state, `iss` per RFC 9207 when offered, IdP errors) and exchanges
 * the code with client authentication; openid-client validates the ID token (signature, iss, aud, exp, nonce).
 */
export async function completeLogin(
  configuration: oidc.Configuration,
  callbackUrl: URL,
  redirectUri: string,
  checks: LoginChecks,
): Promise<LoginResult> {
  try {
    const response = await oidc.authorizationCodeGrant(
      configuration,
      callbackUrl,
      { pkceCodeVerifier: checks.verifier, expectedState: checks.state, expectedNonce: checks.nonce, idTokenExpected: true },
      { redirect_uri: redirectUri },
    );
    const claims = response.claims();
    if (!claims) throw new Error('no ID token claims');
    return { tokens: toTokenSet(response), claims: { ...claims } };
  } catch (err) {
    throw toOidcError(err, 'code exchange');
  }
}

export async function refreshTokens(configuration: oidc.Configuration, refreshToken: string): Promise<TokenSet> {
  try {
    return toTokenSet(await oidc.refreshTokenGrant(configuration, refreshToken));
  } catch (err) {
    throw toOidcError(err, 'refresh');
  }
}

/** RFC 7009 revocation, when the IdP advertises a revocation endpoint. Returns whether it was attempted. */
export async function revokeToken(
  configuration: oidc.Configuration,
  token: string,
  hint: 'refresh_token' | 'access_token',
): Promise<boolean> {
  if (!configuration.serverMetadata().revocation_endpoint) return false;
  try {
    await oidc.tokenRevocation(configuration, token, { token_type_hint: hint });
    return true;
  } catch (err) {
    throw toOidcError(err, 'revocation');
  }
}

/** RP-initiated logout URL, or undefined when the IdP has no end_session_endpoint. */
export function endSessionUrl(
  configuration: oidc.Configuration,
  params: { idTokenHint?: string; postLogoutRedirectUri?: string },
): URL | undefined {
  if (!configuration.serverMetadata().end_session_endpoint) return undefined;
  const query: Record<string, string> = { client_id: configuration.clientMetadata().client_id };
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
    return { ...(await oidc.fetchUserInfo(configuration, accessToken, expectedSubject)) };
  } catch (err) {
    throw toOidcError(err, 'userinfo');
  }
}

function toTokenSet(response: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers): TokenSet {
  const expiresIn = response.expiresIn();
  return {
    accessToken: response.access_token,
    refreshToken: response.refresh_token,
    idToken: response.id_token,
    accessExpiresAt: expiresIn === undefined ? null : Date.now() + expiresIn * 1000,
    scope: response.scope,
  };
}
