/**
 * Development OpenID Provider (oidc-provider v9) used by `npm run demo` and by
 * every integration test. It is a real OP: PKCE, refresh-token rotation with
 * reuse detection, JWT access tokens bound to an API resource, RP-initiated and
 * back-channel logout, revocation, userinfo and (optionally) dynamic client
 * registration. State lives in an in-memory adapter owned by this instance so
 * tests can inspect it and several IdPs can run in one process without sharing
 * storage (oidc-provider's bundled MemoryAdapter is a module-level singleton).
 *
 * HTTP flow of a login (what `test/support/login.ts` automates):
 *   GET  {issuer}/auth?...                  -> 303 {issuer}/interaction/{uid}
 *   GET  {issuer}/interaction/{uid}         -> 200 HTML login form (#username, #password, #submit)
 *   POST {issuer}/interaction/{uid}/login   -> 303 {issuer}/auth/{uid}    (wrong password: 200 form + error)
 *   GET  {issuer}/auth/{uid}                -> 303 {issuer}/interaction/{uid2}   (consent prompt)
 *   GET  {issuer}/interaction/{uid2}        -> 303 {issuer}/auth/{uid2}   (consent is granted automatically)
 *   GET  {issuer}/auth/{uid2}               -> 303 {redirect_uri}?code=...&state=...&iss=...
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import type { CryptoKey, JWK, JWTPayload } from 'jose';
import Provider, { errors } from 'oidc-provider';
import type {
  Adapter,
  AdapterPayload,
  ClientMetadata,
  Configuration,
  KoaContextWithOIDC,
  ResourceServer,
} from 'oidc-provider';

export interface DevUser {
  username: string;
  password: string;
  /** Subject identifier; defaults to `username`. */
  sub?: string;
  name: string;
  email: string;
  roles: string[];
}

export interface DevIdpOptions {
  port?: number;
  /** Full client list; replaces the default `token-handler` client. Stored in the adapter (see updateClient). */
  clients?: ClientMetadata[];
  /** Redirect URIs of the default client (any port on 127.0.0.1 matches, see `loopbackAnyPort`). */
  redirectUris?: string[];
  /** Post-logout redirect URIs of the default client (loopback port-agnostic like redirect URIs). */
  postLogoutRedirectUris?: string[];
  /**
   * Back-channel logout URI of the default client. Port-EXACT (loopback matching does not apply);
   * when the RP port is only known later use `updateClient(id, { backchannel_logout_uri })`.
   */
  backchannelLogoutUri?: string;
  /** Auth method of the default client. oidc-provider accepts exactly one method per client. */
  tokenEndpointAuthMethod?: 'client_secret_basic' | 'client_secret_post';
  /**
   * Register the default client as `application_type: native` so that RFC 8252 loopback matching
   * applies: a registered `http://127.0.0.1/cb` accepts `http://127.0.0.1:<any port>/cb`. This lets
   * the IdP start before the relying party knows its own port. Default true.
   */
  loopbackAnyPort?: boolean;
  accessTokenTtlSec?: number;
  /** Rotate refresh tokens on every use; reuse of a rotated one fails and revokes the grant. Default true. */
  rotateRefreshToken?: boolean;
  /**
   * With rotation: a rotated refresh token presented again within this many seconds of its rotation is
   * honoured (new tokens, no revocation), as Auth0's "reuse interval", Okta's grace period or Keycloak's
   * "Refresh Token Max Reuse" allow. Default 0: any reuse revokes the grant.
   */
  refreshTokenReuseIntervalSec?: number;
  /**
   * 'offline_access' (default, oidc-provider/OIDC semantics): a refresh token is issued only when
   * `offline_access` was granted, which oidc-provider only keeps when `prompt=consent` is sent.
   * 'always': issue one to every client allowed to use the refresh_token grant.
   */
  refreshTokens?: 'offline_access' | 'always';
  /**
   * true (default): access tokens are JWTs for `apiResource` (aud), even when `openid` was requested.
   * Such tokens are REJECTED by the userinfo endpoint (oidc-provider refuses any token with an `aud`).
   * false: tokens for openid requests are opaque and usable at userinfo; a JWT is still issued when the
   * client sends `resource=<apiResource>` to the token endpoint.
   */
  jwtAccessTokens?: boolean;
  /**
   * Like Keycloak (whose userinfo accepts any access token of its realm): the userinfo endpoint also
   * answers for this IdP's own JWT access tokens, whatever their audience. oidc-provider alone refuses a
   * token with an `aud` there (see `jwtAccessTokens`). The token's signature, issuer, expiry and `openid`
   * scope are checked; the claims are those its scopes grant. Default false.
   */
  userinfoForJwtAccessTokens?: boolean;
  /** Resource indicator / audience of JWT access tokens. Default `http://127.0.0.1/api`. */
  apiResource?: string;
  /** Scopes the API resource server understands. Default ['api:read', 'api:write']. */
  apiScopes?: string[];
  users?: DevUser[];
  /** Enable Dynamic Client Registration. `true` generates an initial access token. */
  registration?: boolean | { initialAccessToken?: string };
  /** Serve the issuer under a path, e.g. '/tenant-a', so two issuers can share a host. */
  issuerPathPrefix?: string;
  /**
   * Accept a form POST at the end_session_endpoint, as OpenID Connect RP-Initiated Logout 1.0 requires
   * of OPs (token-handler's `endSessionMethod: post`). Default true. oidc-provider itself only does so with
   * SameSite=None session cookies (which need https); the dev IdP hands such a POST on as the GET it
   * stands for. false: POST there answers 404, as oidc-provider's default does.
   */
  endSessionPost?: boolean;

  // Shapes of real products (test/support/idps/): where claims go, token formats, discovery.
  /** The issuer ends with a slash, as Auth0 spells it (`https://tenant.auth0.com/`). */
  issuerTrailingSlash?: boolean;
  /**
   * The user's claims per use: the ID token and the userinfo response. Default: profile, email and `roles`
   * in both. Every claim name returned must be listed in `claimNames` (oidc-provider drops unknown ones).
   */
  userClaims?: (user: DevUser, use: 'id_token' | 'userinfo') => Record<string, unknown>;
  /** Claim names `userClaims` may return besides the standard ones (always released, scope `openid`). */
  claimNames?: string[];
  /** Claims added to JWT access tokens. Default: `name` and `roles`. */
  accessTokenClaims?: (user: DevUser, clientId: string) => Record<string, unknown>;
  /** Lifetime of refresh tokens (Keycloak: its SSO idle). Default 14 days. */
  refreshTokenTtlSec?: number;
  /** 'jwt': refresh tokens are HS256 JWTs with `exp` (Keycloak), opaque to the client. Default 'opaque'. */
  refreshTokenFormat?: 'opaque' | 'jwt';
  /** Add Keycloak's `refresh_expires_in` to token responses. */
  refreshExpiresIn?: boolean;
  /** Auth0: the `audience` authorization parameter selects the API of JWT access tokens; without it they are opaque. */
  audienceParameter?: boolean;
  /** Entra ID: no `iss` in authorization responses (RFC 9207), so a multi-tenant template issuer still works. */
  omitAuthorizationResponseIss?: boolean;
  /** Edit the discovery document (drop end_session_endpoint, revocation_endpoint...). */
  discovery?: (metadata: Record<string, unknown>) => Record<string, unknown>;
  /** `typ` of the logout tokens this IdP signs itself (Keycloak before 25: `JWT`). Default `logout+jwt`. */
  logoutTokenTyp?: string;
  /** Requests this IdP answers before oidc-provider sees them; return true when handled. */
  intercept?: (req: IncomingMessage, res: ServerResponse, url: URL) => boolean | Promise<boolean>;
}

export type DownMode = '503' | 'reset' | 'refuse';

export interface BackchannelLogoutInput {
  sub?: string;
  sid?: string;
  clientId: string;
  /** Override the target; defaults to the client's registered backchannel_logout_uri. */
  uri?: string;
}

export interface DevIdp {
  readonly issuer: string;
  readonly jwksUrl: string;
  readonly port: number;
  /** Initial access token for DCR (only when `registration` is enabled). */
  readonly registrationInitialAccessToken: string | undefined;
  readonly apiResource: string;
  /** The current provider (a key rotation makes a new one over the same state). */
  readonly provider: Provider;
  /**
   * Signs with a new key from now on, publishing it first in the JWKS with the old one kept after it
   * (`dropOld` removes it): logins, grants and refresh tokens carry on.
   */
  rotateSigningKey(opts?: { dropOld?: boolean }): Promise<void>;
  /** The dev IdP's store of a model (`RefreshToken`, `Session`...), for tests that inspect the IdP. */
  findStored(model: string, id: string): AdapterPayload | undefined;
  readonly users: readonly DevUser[];
  close(): Promise<void>;

  readonly refreshGrantCount: number;
  readonly authorizationCodeGrantCount: number;
  /** Refresh attempts presenting a refresh token that had already been rotated (consumed), refused. */
  readonly refreshReuseCount: number;
  /** Rotated refresh tokens presented again within the reuse interval, and honoured. */
  readonly refreshReuseToleratedCount: number;
  /** Every refresh grant carried out since the last reset: when (ms since the epoch) and for which grant (one per login). */
  readonly refreshGrants: readonly { at: number; grantId: string }[];
  readonly endSessionCount: number;
  readonly revocationCount: number;
  readonly loginCount: number;
  readonly failedLoginCount: number;
  /** All HTTP requests received (including ones rejected while down). */
  readonly requestCount: number;
  /** Back-channel logout POSTs the provider itself made on end_session (ok / failed). */
  readonly backchannelLogoutSentCount: number;
  readonly backchannelLogoutFailedCount: number;
  resetCounters(): void;

  isRefreshTokenRevoked(token: string): boolean;
  refreshTokenState(token: string): 'active' | 'consumed' | 'absent';
  countGrants(): number;

  /** Make the IdP unavailable: '503' responses, 'reset' sockets, or 'refuse' (stop listening, same port). */
  setDown(down: boolean, mode?: DownMode): Promise<void>;
  /** Delay every request by `ms` before handling it. */
  setDelay(ms: number): void;
  /**
   * Hold the answer to every refresh grant for `ms` after the grant was carried out (the refresh token
   * rotated): a client that dies or gives up meanwhile has lost the new tokens. 0 turns it off.
   */
  setRefreshResponseDelay(ms: number): void;
  /** Lifetime of access tokens issued from now on (seconds). */
  setAccessTokenTtl(seconds: number): void;
  /** Changes `refreshTokenReuseIntervalSec` at run time. */
  setRefreshTokenReuseInterval(seconds: number): void;

  /** Current metadata of a client (static or registered). */
  getClient(clientId: string): ClientMetadata | undefined;
  /** Every client the IdP knows (static and registered). */
  listClients(): ClientMetadata[];
  /**
   * Change a client's metadata at runtime (e.g. `backchannel_logout_uri` or `redirect_uris` once the
   * relying party knows its port). Throws if the result is invalid client metadata.
   */
  updateClient(clientId: string, patch: Partial<ClientMetadata>): Promise<void>;

  signLogoutToken(claims: { aud: string; sub?: string; sid?: string } & JWTPayload): Promise<string>;
  sendBackchannelLogout(input: BackchannelLogoutInput): Promise<{ status: number; logoutToken: string }>;
  /** Sign an arbitrary JWT with the IdP key (iss/iat/exp/jti defaulted unless given). */
  issueToken(claims: JWTPayload, options?: { typ?: string; expiresInSec?: number }): Promise<string>;
}

/** The claims each scope grants (oidc-provider's `claims`; also the JWT userinfo's filter). */

const DEFAULT_USERS: DevUser[] = [
  { username: 'demo', password: 'demo', name: 'Demo User', email: 'demo@example.com', roles: ['user'] },
];

// ---------------------------------------------------------------------------
// In-memory adapter: one store per IdP instance, inspectable by tests.
// ---------------------------------------------------------------------------

interface StoredEntry {
  payload: AdapterPayload;
  expiresAt: number | undefined;
}

const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

class MemoryStore {
  readonly models = new Map<string, Map<string, StoredEntry>>();
  /** Ids of refresh tokens that were consumed (rotated); survives their later destruction. */
  readonly consumedRefreshTokens = new Set<string>();
  /** A consumed refresh token found within this many ms of its consumption is handed out as unconsumed. */
  reuseIntervalMs = 0;
  /** Called when a consumed refresh token is honoured within the reuse interval. */
  onReuseTolerated: () => void = () => {};

  model(name: string): Map<string, StoredEntry> {
    let m = this.models.get(name);
    if (!m) {
      m = new Map();
      this.models.set(name, m);
    }
    return m;
  }

  get(name: string, id: string): AdapterPayload | undefined {
    const m = this.model(name);
    const entry = m.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      m.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  live(name: string): AdapterPayload[] {
    const out: AdapterPayload[] = [];
    for (const id of [...this.model(name).keys()]) {
      const p = this.get(name, id);
      if (p) out.push(p);
    }
    return out;
  }

  adapterFor(name: string): Adapter {
    // Arrow functions keep `this` bound to the store; oidc-provider calls the factory once per model.
    const m = this.model(name);
    return {
      upsert: async (id, payload, expiresIn) => {
        m.set(id, { payload: structuredClone(payload), expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
      },
      find: async (id) => {
        const p = this.get(name, id);
        if (!p) return undefined;
        const found = structuredClone(p);
        if (name === 'RefreshToken' && typeof found.consumed === 'number' && Date.now() - found.consumed * 1000 < this.reuseIntervalMs) {
          // Within the reuse interval a rotated token still works: oidc-provider rotates it again.
          delete found.consumed;
          this.onReuseTolerated();
        }
        return found;
      },
      findByUid: async (uid) => {
        const p = this.live(name).find((e) => e.uid === uid);
        return p ? structuredClone(p) : undefined;
      },
      findByUserCode: async (userCode) => {
        const p = this.live(name).find((e) => e.userCode === userCode);
        return p ? structuredClone(p) : undefined;
      },
      consume: async (id) => {
        const entry = m.get(id);
        // The first consumption counts: a reuse within the interval does not extend it.
        if (entry && typeof entry.payload.consumed !== 'number') entry.payload.consumed = Date.now() / 1000;
        if (name === 'RefreshToken') this.consumedRefreshTokens.add(id);
      },
      destroy: async (id) => {
        m.delete(id);
      },
      revokeByGrantId: async (grantId) => {
        for (const model of GRANTABLE) {
          const mm = this.model(model);
          for (const [id, entry] of mm) if (entry.payload.grantId === grantId) mm.delete(id);
        }
      },
    };
  }
}

// ---------------------------------------------------------------------------
// HTML for the interaction pages.
// ---------------------------------------------------------------------------

function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:3rem auto;padding:0 1rem}
label,input,button{display:block;width:100%;box-sizing:border-box;margin:.3rem 0}input,button{padding:.5rem}
.error{color:#b00020}.hint{color:#666;font-size:.85rem}</style></head><body>${body}</body></html>`;
}

function loginPage(action: string, clientId: string, scope: string, error?: string, username = ''): string {
  return page('Sign in', `<h1>Dev IdP sign-in</h1>
<p class="hint">Client <code>${esc(clientId)}</code> requests <code>${esc(scope)}</code></p>
${error ? `<p class="error" id="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="${esc(action)}" id="login-form" autocomplete="off">
<label for="username">Username</label><input id="username" name="username" value="${esc(username)}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<button id="submit" type="submit">Sign in</button>
</form>
<p class="hint">Demo credentials: demo / demo. <a id="abort" href="${esc(action.replace(/\/login$/, '/abort'))}">Cancel</a></p>`);
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(buf);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

// ---------------------------------------------------------------------------
// startDevIdp
// ---------------------------------------------------------------------------

function normalizePrefix(prefix: string | undefined): string {
  if (!prefix || prefix === '/') return '';
  const p = prefix.startsWith('/') ? prefix : `/${prefix}`;
  return p.endsWith('/') ? p.slice(0, -1) : p;
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

async function newSigningKey(): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { privateKey, jwk: { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' } };
}

function assertLoopback(uri: string): void {
  const host = new URL(uri).hostname;
  if (host !== '127.0.0.1' && host !== 'localhost' && host !== '[::1]') {
    throw new Error(`dev IdP only talks to loopback addresses, refusing ${uri}`);
  }
}

export async function startDevIdp(options: DevIdpOptions = {}): Promise<DevIdp> {
  const prefix = normalizePrefix(options.issuerPathPrefix);
  const users = options.users ?? DEFAULT_USERS;
  let accessTokenTtlSec = options.accessTokenTtlSec ?? 300;
  const jwtAccessTokens = options.jwtAccessTokens ?? true;
  const apiResource = options.apiResource ?? 'http://127.0.0.1/api';
  const apiScopes = options.apiScopes ?? ['api:read', 'api:write'];
  const store = new MemoryStore();
  store.reuseIntervalMs = (options.refreshTokenReuseIntervalSec ?? 0) * 1000;
  store.onReuseTolerated = () => {
    counters.reuseTolerated += 1;
  };

  // A fresh signing key per start: tests must never depend on a fixed key.
  let signing = await newSigningKey();
  let publishedKeys: JWK[] = [signing.jwk];
  /** Claims released per scope (also by the JWT userinfo of `userinfoForJwtAccessTokens`). */
  const claimsByScope: Record<string, string[]> = {
    openid: ['sub', ...(options.claimNames ?? [])],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    roles: ['roles'],
  };
  const accountClaims = (sub: string, user: DevUser, use: 'id_token' | 'userinfo'): { sub: string; [claim: string]: unknown } => ({
    sub,
    ...(options.userClaims
      ? options.userClaims(user, use)
      : { name: user.name, preferred_username: user.username, email: user.email, email_verified: true, roles: user.roles }),
  });

  const counters = {
    refresh: 0, code: 0, reuse: 0, reuseTolerated: 0, endSession: 0, revocation: 0, login: 0, failedLogin: 0, requests: 0,
    backchannelSent: 0, backchannelFailed: 0,
  };
  let delayMs = 0;
  let refreshResponseDelayMs = 0;
  /** Refresh answers held back (setRefreshResponseDelay), by response. */
  const heldResponses = new WeakMap<ServerResponse, number>();
  const refreshGrants: { at: number; grantId: string }[] = [];
  let downMode: DownMode | undefined;

  const sockets = new Set<Socket>();
  // The provider needs the issuer URL (with the port) at construction, so listen first.
  const handlerRef: { current?: (req: IncomingMessage, res: ServerResponse) => void } = {};
  const server = createServer((req, res) => {
    counters.requests += 1;
    if (handlerRef.current) handlerRef.current(req, res);
    else sendHtml(res, 503, 'starting');
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const port = await listen(server, options.port ?? 0);
  const origin = `http://127.0.0.1:${port}`;
  const issuer = `${origin}${prefix}${options.issuerTrailingSlash ? '/' : ''}`;
  // Keycloak's JWT refresh tokens are signed with a secret only the IdP knows.
  const refreshTokenKey = randomBytes(32);

  const registrationToken = typeof options.registration === 'object'
    ? options.registration.initialAccessToken ?? randomBytes(24).toString('base64url')
    : options.registration ? randomBytes(24).toString('base64url') : undefined;

  const defaultClient: ClientMetadata = {
    client_id: 'token-handler',
    client_secret: 'token-handler-secret',
    application_type: options.loopbackAnyPort === false ? 'web' : 'native',
    redirect_uris: options.redirectUris ?? [
      'http://127.0.0.1/token-handler/v1/clients/default/callback',
      'http://127.0.0.1/callback',
    ],
    post_logout_redirect_uris: options.postLogoutRedirectUris ?? ['http://127.0.0.1/'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: options.tokenEndpointAuthMethod ?? 'client_secret_basic',
    ...(options.backchannelLogoutUri
      ? { backchannel_logout_uri: options.backchannelLogoutUri, backchannel_logout_session_required: true }
      : {}),
  };
  const clients = options.clients ?? [defaultClient];

  const findUser = (sub: string): DevUser | undefined => users.find((u) => (u.sub ?? u.username) === sub);

  const resourceServer: ResourceServer = {
    scope: apiScopes.join(' '),
    audience: apiResource,
    accessTokenTTL: accessTokenTtlSec,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  };

  const configuration: Configuration = {
    adapter: (name: string) => store.adapterFor(name),
    // Clients are NOT passed as static `clients`: they are seeded into the adapter instead, because
    // oidc-provider caches static clients privately, while adapter clients are re-read (and re-built
    // whenever their metadata changes). That is what makes `updateClient()` possible, e.g. to set a
    // backchannel_logout_uri once the relying party knows its port.
    jwks: { keys: publishedKeys },
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      // Cookie jars ignore ports: two IdPs (or the IdP and the relying party) on 127.0.0.1 share
      // cookies, so the names are made unique per instance to avoid clobbering each other's session.
      names: {
        session: `_op${port}${prefix.replace(/\W/g, '_')}_session`,
        interaction: `_op${port}${prefix.replace(/\W/g, '_')}_interaction`,
        resume: `_op${port}${prefix.replace(/\W/g, '_')}_resume`,
      },
    },
    claims: claimsByScope,
    scopes: ['openid', 'offline_access', 'profile', 'email', 'roles'],
    responseTypes: ['code'],
    // With JWT (aud-bound) access tokens userinfo is unusable, so the ID token must carry the
    // scope claims itself instead of only `sub` (oidc-provider's default conform behaviour).
    conformIdTokenClaims: false,
    findAccount: (_ctx, sub) => {
      const user = findUser(sub);
      return user ? { accountId: sub, claims: (use: string) => accountClaims(sub, user, use === 'userinfo' ? 'userinfo' : 'id_token') } : undefined;
    },
    // Put the user's display name and roles in JWT access tokens so the upstream can authorize.
    extraTokenClaims: async (_ctx, token) => {
      const accountId = 'accountId' in token ? token.accountId : undefined;
      const user = accountId ? findUser(accountId) : undefined;
      if (!user) return undefined;
      return options.accessTokenClaims ? options.accessTokenClaims(user, token.clientId ?? '') : { name: user.name, roles: user.roles };
    },
    ...(options.audienceParameter ? { extraParams: ['audience'] } : {}),
    interactions: {
      url: (_ctx, interaction) => `${prefix}/interaction/${interaction.uid}`,
    },
    // userinfoForJwtAccessTokens: like Keycloak's, the access token names the OpenID scopes it was granted.
    ...(options.userinfoForJwtAccessTokens
      ? {
          formats: {
            customizers: {
              jwt: async (_ctx, token, jwt) => {
                const grantId = 'grantId' in token ? token.grantId : undefined;
                const grant = grantId === undefined ? undefined : await provider.Grant.find(grantId);
                const granted = grant?.getOIDCScope();
                if (granted) jwt.payload.scope = [...new Set([...String(jwt.payload.scope ?? '').split(' '), ...granted.split(' ')])].filter(Boolean).join(' ');
              },
            },
          },
        }
      : {}),
    pkce: { required: () => true },
    rotateRefreshToken: options.rotateRefreshToken ?? true,
    ...(options.refreshTokens === 'always'
      ? { issueRefreshToken: (_ctx: KoaContextWithOIDC, client) => client.grantTypeAllowed('refresh_token') }
      : {}),
    ttl: {
      AccessToken: () => accessTokenTtlSec,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: 14 * 24 * 3600,
      RefreshToken: options.refreshTokenTtlSec ?? 14 * 24 * 3600,
    },
    clientBasedCORS: () => false,
    // oidc-provider's outgoing fetch (back-channel logout, sector/jwks URIs) uses an SSRF-protected
    // dispatcher that refuses special-use addresses, i.e. every 127.0.0.1 relying party. This dev IdP
    // instead allows ONLY loopback targets.
    fetch: (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      assertLoopback(url);
      const { dispatcher: _ssrfDispatcher, ...rest } = (init ?? {}) as RequestInit & { dispatcher?: unknown };
      return fetch(url, rest);
    },
    features: {
      devInteractions: { enabled: false },
      // Clients may only revoke/introspect their own tokens (oidc-provider's default, made explicit).
      revocation: {
        enabled: true,
        allowedPolicy: (_ctx, client, token) => {
          if (token.clientId !== client.clientId) throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
          return true;
        },
      },
      introspection: {
        enabled: true,
        allowedPolicy: (ctx, client, token) => client.clientAuthMethod !== 'none' || token.clientId === ctx.oidc.client?.clientId,
      },
      userinfo: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: (ctx, form) => {
          ctx.type = 'html';
          ctx.body = page('Sign out', `<h1>Sign out of the dev IdP?</h1>${form}
<button id="logout" type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button id="stay" type="submit" form="op.logoutForm">No, stay signed in</button>`);
        },
        postLogoutSuccessSource: (ctx) => {
          ctx.type = 'html';
          ctx.body = page('Signed out', '<h1 id="signed-out">You are signed out</h1>');
        },
      },
      registration: registrationToken
        ? { enabled: true, initialAccessToken: registrationToken }
        : { enabled: false },
      // RFC 7592: a registered client can be read and deleted at its registration_client_uri.
      registrationManagement: { enabled: registrationToken !== undefined, rotateRegistrationAccessToken: false },
      resourceIndicators: {
        enabled: true,
        // Every authorization request is bound to the API resource so the grant covers its scopes; with
        // `audienceParameter` (Auth0) only when it names the API in `audience`.
        defaultResource: (ctx) => (options.audienceParameter ? (ctx.oidc.params?.audience as string | undefined) : apiResource),
        // When true, the token endpoint uses the granted resource even for `openid` requests,
        // which is what makes oidc-provider issue a JWT instead of an opaque userinfo token.
        useGrantedResource: () => jwtAccessTokens || options.audienceParameter === true,
        getResourceServerInfo: (_ctx, indicator) => {
          if (indicator !== apiResource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          return { ...resourceServer, accessTokenTTL: accessTokenTtlSec };
        },
      },
    },
    renderError: (ctx, out) => {
      ctx.type = 'html';
      ctx.body = page('Error', `<h1>Dev IdP error</h1>${Object.entries(out)
        .map(([k, v]) => `<p><strong>${esc(k)}</strong>: <span class="${esc(k)}">${esc(v)}</span></p>`).join('')}`);
    },
  };

  const clientStore = store.model('Client');
  for (const c of clients) clientStore.set(c.client_id, { payload: structuredClone(c) as AdapterPayload, expiresAt: undefined });

  let provider!: Provider;
  let callback!: ReturnType<Provider['callback']>;
  /** A provider over this IdP's state; made again (same adapter, cookies, clients) when the key rotates. */
  async function startProvider(): Promise<void> {
    const next = new Provider(issuer, { ...configuration, jwks: { keys: publishedKeys } });
    // Validate the client metadata now rather than on the first authorization request.
    for (const c of clients) await next.Client.find(c.client_id);
    // oidc-provider only puts `sid` in ID tokens for clients registered with
    // backchannel_logout_session_required + backchannel_logout_uri. Relying parties (the token handler)
    // need it to correlate back-channel logouts even when registered without them, so always include it.
    next.Client.prototype.includeSid = () => true;
    next.use(shapeResponses);
    next.on('grant.success', (ctx) => {
      const gt = ctx.oidc.params?.grant_type;
      if (gt === 'refresh_token') {
        counters.refresh += 1;
        refreshGrants.push({ at: Date.now(), grantId: String(ctx.oidc.entities.RefreshToken?.grantId ?? '') });
        if (refreshResponseDelayMs > 0) heldResponses.set(ctx.res, refreshResponseDelayMs);
      }
      if (gt === 'authorization_code') counters.code += 1;
    });
    next.on('grant.error', (ctx) => {
      const rt = ctx.oidc?.params?.refresh_token;
      if (ctx.oidc?.params?.grant_type === 'refresh_token' && typeof rt === 'string' && store.consumedRefreshTokens.has(rt)) {
        counters.reuse += 1;
      }
    });
    next.on('backchannel.success', () => {
      counters.backchannelSent += 1;
    });
    next.on('backchannel.error', (_ctx, err, client) => {
      counters.backchannelFailed += 1;
      console.warn(`[dev-idp] back-channel logout to ${client.backchannelLogoutUri ?? client.clientId} failed: ${err.message}`);
    });
    next.on('end_session.success', () => {
      counters.endSession += 1;
    });
    // Server errors would otherwise be swallowed into an HTML page; surface them in test output.
    next.on('server_error', (_ctx, err) => console.error('[dev-idp] server_error', err));
    provider = next;
    callback = next.callback();
  }

  /**
   * Koa middleware shaping what oidc-provider answers like a product: the discovery document, Keycloak's
   * `refresh_expires_in` and JWT refresh tokens, Entra ID's authorization responses without `iss`.
   */
  async function shapeResponses(ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> {
    await next();
    if (ctx.path === '/.well-known/openid-configuration' && options.discovery && ctx.status === 200) {
      ctx.body = options.discovery({ ...(ctx.body as Record<string, unknown>) });
    }
    if (ctx.path === '/token' && ctx.status === 200 && typeof ctx.body === 'object' && ctx.body !== null) {
      const body = ctx.body as Record<string, unknown>;
      const id = body.refresh_token;
      const stored = typeof id === 'string' ? store.get('RefreshToken', id) : undefined;
      if (typeof id === 'string' && stored && typeof stored.exp === 'number') {
        const now = Math.floor(Date.now() / 1000);
        if (options.refreshExpiresIn) body.refresh_expires_in = Math.max(0, stored.exp - now);
        if (options.refreshTokenFormat === 'jwt') body.refresh_token = await wrapRefreshToken(id, stored);
      }
    }
    if (options.omitAuthorizationResponseIss && ctx.status >= 300 && ctx.status < 400) {
      const location = ctx.response.get('location');
      if (location && location.includes('iss=')) {
        const url = new URL(location);
        if (url.searchParams.has('code') || url.searchParams.has('error')) {
          url.searchParams.delete('iss');
          ctx.redirect(url.href);
        }
      }
    }
  }

  function wrapRefreshToken(id: string, stored: AdapterPayload): Promise<string> {
    return new SignJWT({ typ: 'Refresh', azp: stored.clientId, sub: stored.accountId })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setJti(id)
      .setIssuer(issuer)
      .setIssuedAt()
      .setExpirationTime(stored.exp as number)
      .sign(refreshTokenKey);
  }

  /** The opaque refresh token inside one of our JWT refresh tokens (as sent back to /token or revocation). */
  async function unwrapRefreshToken(token: string): Promise<string> {
    try {
      const { payload } = await jwtVerify(token, refreshTokenKey, { issuer });
      return typeof payload.jti === 'string' ? payload.jti : token;
    } catch {
      return token;
    }
  }

  await startProvider();
  const revocationPath = `${prefix}/token/revocation`;
  const endSessionPath = `${prefix}/session/end`;
  const tokenPath = `${prefix}/token`;

  async function interaction(req: IncomingMessage, res: ServerResponse, uid: string, action: string | undefined): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) {
      sendHtml(res, 400, page('Error', '<p class="error">Interaction mismatch; start the sign-in again.</p>'));
      return;
    }
    const clientId = String(details.params.client_id ?? '');
    const scope = String(details.params.scope ?? '');
    const formAction = `${prefix}/interaction/${uid}/login`;

    if (action === 'abort') {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User aborted interaction' }, { mergeWithLastSubmission: false });
      return;
    }

    if (details.prompt.name === 'login') {
      if (action !== 'login' || req.method !== 'POST') {
        sendHtml(res, 200, loginPage(formAction, clientId, scope));
        return;
      }
      const form = await readForm(req);
      const username = form.get('username') ?? '';
      const user = users.find((u) => u.username === username);
      if (!user || user.password !== (form.get('password') ?? '')) {
        counters.failedLogin += 1;
        sendHtml(res, 200, loginPage(formAction, clientId, scope, 'Invalid username or password.', username));
        return;
      }
      counters.login += 1;
      await provider.interactionFinished(req, res, { login: { accountId: user.sub ?? user.username } }, { mergeWithLastSubmission: false });
      return;
    }

    if (details.prompt.name === 'consent') {
      // First-party demo: grant everything that is missing without showing a page.
      const { accountId } = details.session ?? {};
      if (!accountId) throw new Error('consent prompt without a session');
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId, clientId });
      if (!grant) throw new Error('grant of the interaction not found');
      const missing = details.prompt.details as {
        missingOIDCScope?: string[];
        missingOIDCClaims?: string[];
        missingResourceScopes?: Record<string, string[]>;
      };
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: details.grantId ? {} : { grantId } }, { mergeWithLastSubmission: true });
      return;
    }

    sendHtml(res, 400, page('Error', `<p class="error">Unsupported prompt ${esc(details.prompt.name)}</p>`));
  }

  /** `userinfoForJwtAccessTokens`: answers userinfo for one of our JWT access tokens (true), else leaves it to oidc-provider. */
  async function jwtUserinfo(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const token = /^Bearer ([\w-]+\.[\w-]+\.[\w-]+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (token === undefined) return false;
    const refuse = (description: string): true => {
      res.writeHead(401, {
        'content-type': 'application/json; charset=utf-8',
        'cache-control': 'no-store',
        'www-authenticate': `Bearer realm="${issuer}", error="invalid_token", error_description="${description}"`,
      });
      res.end(JSON.stringify({ error: 'invalid_token', error_description: description }));
      return true;
    };
    let payload: JWTPayload;
    try {
      // The keys this IdP publishes (its JWKS), public parts only: a rotation keeps verifying older tokens.
      const keys = createLocalJWKSet({ keys: publishedKeys.map(({ kty, n, e, kid, alg }) => ({ kty, n, e, kid, alg })) });
      ({ payload } = await jwtVerify(token, keys, { issuer, typ: 'at+jwt', algorithms: ['RS256'] }));
    } catch (err) {
      return refuse(`invalid access token (${(err as Error).message})`);
    }
    const scopes = new Set(String(payload.scope ?? '').split(' '));
    const user = typeof payload.sub === 'string' ? findUser(payload.sub) : undefined;
    if (!scopes.has('openid') || !user || payload.sub === undefined) return refuse('access token without openid scope or unknown subject');
    const all = accountClaims(payload.sub, user, 'userinfo');
    const granted = Object.entries(claimsByScope).filter(([scope]) => scopes.has(scope)).flatMap(([, claims]) => claims);
    const body = JSON.stringify(Object.fromEntries(granted.map((claim) => [claim, all[claim]])));
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
    res.end(body);
    return true;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    if (downMode === 'reset' || downMode === 'refuse') {
      req.socket.destroy();
      return;
    }
    if (downMode === '503') {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1', connection: 'close' });
      res.end('dev IdP is down');
      return;
    }

    const url = new URL(req.url ?? '/', origin);
    if (options.intercept && (await options.intercept(req, res, url))) return;
    const m = /^\/interaction\/([\w-]+)(?:\/(login|abort))?$/.exec(url.pathname.slice(prefix.length));
    if (url.pathname.startsWith(`${prefix}/interaction/`) && m?.[1]) {
      try {
        await interaction(req, res, m[1], m[2]);
      } catch (err) {
        if (!res.headersSent) {
          const status = err instanceof errors.SessionNotFound ? 400 : 500;
          sendHtml(res, status, page('Error', `<p class="error">${esc((err as Error).message)}</p>`));
        }
      }
      return;
    }

    if (prefix) {
      if (url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      // oidc-provider derives its mount path from originalUrl minus url (like express/koa-mount).
      (req as IncomingMessage & { originalUrl?: string }).originalUrl = req.url;
      req.url = (req.url ?? '/').slice(prefix.length) || '/';
    }

    if (req.method === 'POST' && url.pathname === endSessionPath && options.endSessionPost !== false && /^application\/x-www-form-urlencoded/i.test(req.headers['content-type'] ?? '')) {
      const form = await readForm(req);
      req.method = 'GET';
      req.url = `${(req.url ?? '/').split('?')[0]}?${form.toString()}`;
      delete req.headers['content-type'];
      delete req.headers['content-length'];
    }
    if (req.method === 'POST' && url.pathname === tokenPath) {
      const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
      res.end = ((...args: unknown[]) => {
        const hold = heldResponses.get(res);
        if (hold === undefined) return end(...args);
        heldResponses.delete(res);
        // Unref'd: a held answer to a client that died must not keep a test process alive.
        setTimeout(() => end(...args), hold).unref();
        return res;
      }) as typeof res.end;
    }
    if (options.refreshTokenFormat === 'jwt' && req.method === 'POST' && (url.pathname === `${prefix}/token` || url.pathname === revocationPath)) {
      // oidc-provider reads an already parsed body from req.body: hand it the opaque token inside ours.
      const form = await readForm(req);
      for (const field of ['refresh_token', 'token']) {
        const value = form.get(field);
        if (value && value.split('.').length === 3) form.set(field, await unwrapRefreshToken(value));
      }
      (req as IncomingMessage & { body?: string }).body = form.toString();
    }
    if (options.userinfoForJwtAccessTokens && url.pathname === `${prefix}/me` && (req.method === 'GET' || req.method === 'POST')) {
      if (await jwtUserinfo(req, res)) return;
    }

    if (req.method === 'POST' && url.pathname === revocationPath) {
      res.once('finish', () => {
        if (res.statusCode === 200) counters.revocation += 1;
      });
    }
    callback(req, res);
  }

  handlerRef.current = (req, res) => {
    handle(req, res).catch((err: unknown) => {
      console.error('[dev-idp] handler error', err);
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  };

  const signLogoutToken: DevIdp['signLogoutToken'] = async (claims) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({
      events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
      jti: randomUUID(),
      ...claims,
    })
      .setProtectedHeader({ alg: 'RS256', kid: signing.jwk.kid, typ: options.logoutTokenTyp ?? 'logout+jwt' })
      .setIssuer(claims.iss ?? issuer)
      .setIssuedAt(claims.iat ?? now)
      .setExpirationTime(claims.exp ?? now + 120)
      .sign(signing.privateKey);
  };

  const handle_: DevIdp = {
    issuer,
    jwksUrl: `${issuer.replace(/\/$/, '')}/jwks`,
    port,
    registrationInitialAccessToken: registrationToken,
    apiResource,
    get provider() {
      return provider;
    },
    async rotateSigningKey(opts = {}) {
      const previous = signing;
      signing = await newSigningKey();
      publishedKeys = opts.dropOld ? [signing.jwk] : [signing.jwk, previous.jwk];
      await startProvider();
    },
    findStored(model, id) {
      const stored = store.get(model, id);
      return stored ? structuredClone(stored) : undefined;
    },
    users,
    get refreshGrantCount() { return counters.refresh; },
    get authorizationCodeGrantCount() { return counters.code; },
    get refreshReuseCount() { return counters.reuse; },
    get refreshReuseToleratedCount() { return counters.reuseTolerated; },
    get refreshGrants() { return refreshGrants; },
    get endSessionCount() { return counters.endSession; },
    get revocationCount() { return counters.revocation; },
    get loginCount() { return counters.login; },
    get failedLoginCount() { return counters.failedLogin; },
    get requestCount() { return counters.requests; },
    get backchannelLogoutSentCount() { return counters.backchannelSent; },
    get backchannelLogoutFailedCount() { return counters.backchannelFailed; },
    resetCounters() {
      for (const k of Object.keys(counters) as (keyof typeof counters)[]) counters[k] = 0;
      refreshGrants.length = 0;
    },

    refreshTokenState(token) {
      const p = store.get('RefreshToken', token);
      if (!p) return 'absent';
      return p.consumed ? 'consumed' : 'active';
    },
    isRefreshTokenRevoked(token) {
      return handle_.refreshTokenState(token) !== 'active';
    },
    countGrants() {
      return store.live('Grant').length;
    },

    async setDown(down, mode = '503') {
      const previous = downMode;
      downMode = down ? mode : undefined;
      if (down) {
        // '503'/'reset' are applied per request, so pooled keep-alive sockets see them too; closing
        // idle sockets here would only add a racy "other side closed" on the client's next request.
        if (mode === 'refuse' && previous !== 'refuse') {
          for (const s of sockets) s.destroy();
          await new Promise<void>((r) => server.close(() => r()));
        }
      } else if (previous === 'refuse') {
        await listen(server, port);
      }
    },
    setDelay(ms) {
      delayMs = ms;
    },
    setRefreshResponseDelay(ms) {
      refreshResponseDelayMs = ms;
    },
    setAccessTokenTtl(seconds) {
      accessTokenTtlSec = seconds;
    },
    setRefreshTokenReuseInterval(seconds) {
      store.reuseIntervalMs = seconds * 1000;
    },

    getClient(clientId) {
      const c = store.get('Client', clientId);
      return c ? (structuredClone(c) as ClientMetadata) : undefined;
    },
    listClients() {
      return [...store.model('Client').keys()].flatMap((id) => {
        const c = store.get('Client', id);
        return c ? [structuredClone(c) as ClientMetadata] : [];
      });
    },
    async updateClient(clientId, patch) {
      const current = store.get('Client', clientId);
      if (!current) throw new Error(`unknown client ${clientId}`);
      clientStore.set(clientId, { payload: { ...current, ...patch } as AdapterPayload, expiresAt: undefined });
      await provider.Client.find(clientId); // validate now
    },

    signLogoutToken,
    async sendBackchannelLogout({ sub, sid, clientId, uri }) {
      const client = store.get('Client', clientId) as ClientMetadata | undefined;
      const target = uri ?? (client?.backchannel_logout_uri as string | undefined);
      if (!target) throw new Error(`client ${clientId} has no backchannel_logout_uri`);
      assertLoopback(target);
      const logoutToken = await signLogoutToken({
        aud: clientId,
        ...(sub !== undefined ? { sub } : {}),
        ...(sid !== undefined ? { sid } : {}),
      });
      const response = await fetch(target, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ logout_token: logoutToken }),
      });
      await response.body?.cancel();
      return { status: response.status, logoutToken };
    },
    async issueToken(claims, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ jti: randomUUID(), ...claims })
        .setProtectedHeader({ alg: 'RS256', kid: signing.jwk.kid, typ: opts.typ ?? 'JWT' })
        .setIssuer(claims.iss ?? issuer)
        .setIssuedAt(claims.iat ?? now)
        .setExpirationTime(claims.exp ?? now + (opts.expiresInSec ?? 300))
        .sign(signing.privateKey);
    },

    async close() {
      downMode = undefined;
      if (!server.listening) return;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
  return handle_;
}
