/**
 * oidc-provider (src/demo/idp.ts) shaped like the products token-handler meets in production: where each
 * puts roles and profile claims, its issuer spelling and token formats, what its discovery lacks. Each
 * profile pairs the IdP with its guide (docs/idps/<guide>.md): the example URLs there are what a test
 * replaces with this IdP's.
 */
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { calculateJwkThumbprint, exportJWK, importSPKI } from 'jose';
import { createPublicKey } from 'node:crypto';
import type { ClientMetadata } from 'oidc-provider';
import { startDevIdp, type DevIdp, type DevUser } from '../../../src/demo/idp.ts';
import { selfSigned } from '../tls.ts';

export interface IdpProfile {
  name: string;
  /** docs/idps/<guide>.md */
  guide: string;
  idp: DevIdp;
  /** The guide's example IdP URL prefix -> this IdP's. */
  replace: Record<string, string>;
  env: Record<string, string>;
  files: Record<string, string>;
  /** The OAuth client_id the guide configures. */
  clientId: string;
  user: DevUser;
  /** The roles /sessions must list for `user`. */
  expectedRoles: string[];
  /**
   * The `aud` of the JWT access token the API receives with the guide's configuration (Auth0: the API its
   * `audience` parameter names); undefined when the access token is opaque (Okta here).
   */
  apiAudience: string | undefined;
  /** Whether the product sends OpenID Connect back-channel logout tokens. */
  backchannelLogout: boolean;
  /** Where RP-initiated logout sends the browser, as a URL prefix (the IdP's end-session endpoint or template). */
  endSessionPrefix: string;
  /** End-session requests the IdP received (its own endpoint or the template's). */
  endSessions(): number;
}

/** A confidential web client of the fake IdP; loopback redirect URIs match any port (native). */
function webClient(clientId: string, extra: Partial<ClientMetadata> = {}): ClientMetadata {
  return {
    client_id: clientId,
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/token-handler/v1/clients/default/callback'],
    post_logout_redirect_uris: ['http://127.0.0.1/'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...extra,
  };
}

const alice = (roles: string[]): DevUser => ({ username: 'alice', password: 'alice', name: 'Alice Liddell', email: 'alice@example.com', roles });

/**
 * Keycloak: issuer `/realms/<realm>`; roles only in the JWT access token (realm_access, resource_access,
 * as the default "roles" client scope maps them), none in the ID token; refresh tokens are HS-signed JWTs
 * whose life is the SSO idle timeout, announced as `refresh_expires_in`; logout tokens typed `JWT` (before
 * Keycloak 25).
 */
export async function keycloak(): Promise<IdpProfile> {
  const user = alice(['app-user', 'offline_access']);
  const idp = await startDevIdp({
    issuerPathPrefix: '/realms/demo',
    clients: [webClient('token-handler', { client_secret: 'keycloak-secret' })],
    users: [user],
    refreshTokens: 'always',
    userClaims: (u) => ({ name: u.name, preferred_username: u.username, email: u.email, email_verified: true }),
    accessTokenClaims: (u, clientId) => ({
      preferred_username: u.username,
      realm_access: { roles: u.roles },
      resource_access: { [clientId]: { roles: ['orders-editor'] }, account: { roles: ['manage-account'] } },
    }),
    refreshTokenTtlSec: 1800,
    refreshTokenFormat: 'jwt',
    refreshExpiresIn: true,
    logoutTokenTyp: 'JWT',
  });
  return {
    name: 'Keycloak',
    guide: 'keycloak',
    idp,
    replace: { 'https://keycloak.example.com': `http://127.0.0.1:${idp.port}` },
    env: { KEYCLOAK_CLIENT_SECRET: 'keycloak-secret' },
    files: {},
    clientId: 'token-handler',
    user,
    expectedRoles: ['app-user', 'offline_access', 'token-handler:orders-editor', 'account:manage-account'],
    apiAudience: idp.apiResource,
    backchannelLogout: true,
    endSessionPrefix: `${idp.issuer}/session/end`,
    endSessions: () => idp.endSessionCount,
  };
}

/**
 * Microsoft Entra ID, multi-tenant: the app's issuer is `/common/v2.0`, whose discovery names the template
 * `.../{tenantid}/v2.0`; tokens carry their directory's issuer and `tid`; app roles in `roles` (ID and access
 * token); no revocation endpoint, no back-channel logout, no `iss` in authorization responses; the client
 * authenticates with a certificate (private_key_jwt with x5t).
 */
export async function entraId(): Promise<IdpProfile> {
  const tid = '72f988bf-86f1-41af-91ab-2d7cd011db47';
  const clientId = '6731de76-14a6-49ae-97bc-6eba6914391e';
  const user = alice(['Orders.Read', 'Orders.Approve']);
  const { certFile, keyFile } = selfSigned();
  const publicJwk = await exportJWK(await importSPKI(createPublicKey(readFileSync(keyFile)).export({ format: 'pem', type: 'spki' }).toString(), 'ES256'));
  const kid = await calculateJwkThumbprint(publicJwk);
  let commonDiscovery = 0;
  const idp: DevIdp = await startDevIdp({
    issuerPathPrefix: `/${tid}/v2.0`,
    clients: [webClient(clientId, { token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...publicJwk, kid, alg: 'ES256', use: 'sig' }] } })],
    users: [user],
    refreshTokens: 'always',
    claimNames: ['tid', 'oid', 'roles', 'ver'],
    userClaims: (u) => ({ name: u.name, preferred_username: u.email, email: u.email, tid, oid: '00000000-0000-0000-66f3-3332eca7ea81', roles: u.roles, ver: '2.0' }),
    accessTokenClaims: (u) => ({ tid, roles: u.roles, scp: 'Orders.Read', ver: '2.0' }),
    omitAuthorizationResponseIss: true,
    discovery: (metadata) => {
      for (const field of ['revocation_endpoint', 'introspection_endpoint', 'backchannel_logout_supported', 'backchannel_logout_session_supported', 'authorization_response_iss_parameter_supported', 'pushed_authorization_request_endpoint']) {
        delete metadata[field];
      }
      return metadata;
    },
    intercept: async (_req, res, url) => {
      if (url.pathname !== '/common/v2.0/.well-known/openid-configuration') return false;
      commonDiscovery += 1;
      const metadata = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
      sendJson(res, { ...metadata, issuer: String(metadata.issuer).replace(tid, '{tenantid}') });
      return true;
    },
  });
  void commonDiscovery;
  return {
    name: 'Entra ID (multi-tenant)',
    guide: 'entra-id',
    idp,
    replace: { 'https://login.microsoftonline.com': `http://127.0.0.1:${idp.port}` },
    env: {},
    files: { 'entra-key.pem': readFileSync(keyFile, 'utf8'), 'entra-cert.pem': readFileSync(certFile, 'utf8') },
    clientId,
    user,
    expectedRoles: ['Orders.Read', 'Orders.Approve'],
    apiAudience: idp.apiResource,
    backchannelLogout: false,
    endSessionPrefix: `${idp.issuer}/session/end`,
    endSessions: () => idp.endSessionCount,
  };
}

/**
 * Auth0: the issuer ends with a slash; roles in a namespaced claim added by an Action to the ID and access
 * token; access tokens are JWTs only for the API named by the `audience` parameter; no end_session_endpoint
 * in discovery (logout is `/v2/logout?client_id=&returnTo=`); rotated refresh tokens may be reused for a while.
 */
export async function auth0(): Promise<IdpProfile> {
  const clientId = '7gH2kLmNpQrStUvWxYz0aBcDeFgHiJkL';
  const user = alice(['orders:reader', 'admin']);
  const namespace = 'https://example.com/roles';
  /** The API identifier (docs/idps/auth0.md): only an authorization request with `audience=<api>` gets a JWT for it. */
  const api = 'https://orders-api.example.com';
  let logouts = 0;
  const idp: DevIdp = await startDevIdp({
    issuerTrailingSlash: true,
    clients: [webClient(clientId, { client_secret: 'auth0-secret' })],
    users: [user],
    refreshTokens: 'always',
    refreshTokenReuseIntervalSec: 10,
    audienceParameter: true,
    apiResource: api,
    claimNames: [namespace, 'nickname'],
    userClaims: (u) => ({ name: u.name, nickname: u.username, email: u.email, email_verified: true, [namespace]: u.roles }),
    accessTokenClaims: (u) => ({ [namespace]: u.roles, permissions: ['read:orders'] }),
    discovery: (metadata) => {
      delete metadata.end_session_endpoint;
      return metadata;
    },
    intercept: (_req, res, url) => {
      if (url.pathname !== '/v2/logout') return false;
      logouts += 1;
      const returnTo = url.searchParams.get('returnTo') ?? '';
      const allowed = url.searchParams.get('client_id') === clientId && /^http:\/\/127\.0\.0\.1(:\d+)?\//.test(returnTo);
      if (!allowed) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('returnTo is not an allowed logout URL of the client');
        return true;
      }
      res.writeHead(302, { location: returnTo }).end();
      return true;
    },
  });
  return {
    name: 'Auth0',
    guide: 'auth0',
    idp,
    replace: { 'https://example.us.auth0.com': `http://127.0.0.1:${idp.port}` },
    env: { AUTH0_CLIENT_SECRET: 'auth0-secret' },
    files: {},
    clientId,
    user,
    expectedRoles: ['orders:reader', 'admin'],
    apiAudience: api,
    backchannelLogout: true,
    endSessionPrefix: `http://127.0.0.1:${idp.port}/v2/logout?client_id=${clientId}&returnTo=`,
    endSessions: () => logouts,
  };
}

/**
 * Okta, custom authorization server `/oauth2/default`: a thin ID token (no groups), `groups` from userinfo;
 * PAR offered; refresh token rotation with a grace period; no back-channel logout (Okta's single logout
 * for OIDC apps is front-channel).
 */
export async function okta(): Promise<IdpProfile> {
  const clientId = '0oa1b2c3d4E5F6g7H8i9';
  const user = alice(['Everyone', 'Order Approvers']);
  const idp = await startDevIdp({
    issuerPathPrefix: '/oauth2/default',
    clients: [webClient(clientId, { client_secret: 'okta-secret' })],
    users: [user],
    refreshTokens: 'always',
    refreshTokenReuseIntervalSec: 30,
    // Okta's custom authorization server issues JWT access tokens; oidc-provider's userinfo refuses
    // audience-bound ones, so this profile keeps them opaque and reads groups from userinfo as Okta's thin
    // ID token requires.
    jwtAccessTokens: false,
    claimNames: ['groups'],
    userClaims: (u, use) => (use === 'userinfo' ? { name: u.name, preferred_username: u.email, email: u.email, groups: u.roles } : { name: u.name, preferred_username: u.email }),
    discovery: (metadata) => {
      delete metadata.backchannel_logout_supported;
      delete metadata.backchannel_logout_session_supported;
      return metadata;
    },
  });
  return {
    name: 'Okta',
    guide: 'okta',
    idp,
    replace: { 'https://example.okta.com': `http://127.0.0.1:${idp.port}` },
    env: { OKTA_CLIENT_SECRET: 'okta-secret' },
    files: {},
    clientId,
    user,
    expectedRoles: ['Everyone', 'Order Approvers'],
    apiAudience: undefined,
    backchannelLogout: false,
    endSessionPrefix: `${idp.issuer}/session/end`,
    endSessions: () => idp.endSessionCount,
  };
}

/**
 * The IdP's jwks_uri as its discovery names it. Not `idp.jwksUrl`: for an issuer with a trailing slash
 * (Auth0) that is `<issuer>/jwks` with a double slash, which the IdP answers 404.
 */
export async function discoveredJwksUri(idp: DevIdp): Promise<string> {
  const res = await fetch(`${idp.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`);
  if (!res.ok) throw new Error(`discovery of ${idp.issuer} answered ${res.status}`);
  return ((await res.json()) as { jwks_uri: string }).jwks_uri;
}

function sendJson(res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}
