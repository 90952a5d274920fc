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
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { JWK, JWTPayload } from 'jose';
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
  /** Resource indicator / audience of JWT access tokens. Default `http://127.0.0.1/api`. */
  apiResource?: string;
  /** Scopes the API resource server understands. Default ['api:read', 'api:write']. */
  apiScopes?: string[];
  users?: DevUser[];
  /** Enable Dynamic Client Registration. `true` generates an initial access token. */
  registration?: boolean | { initialAccessToken?: string };
  /** Serve the issuer under a path, e.g. '/tenant-a', so two issuers can share a host. */
  issuerPathPrefix?: string;
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
  readonly provider: Provider;
  readonly users: readonly DevUser[];
  close(): Promise<void>;

  readonly refreshGrantCount: number;
  readonly authorizationCodeGrantCount: number;
  /** Refresh attempts presenting a refresh token that had already been rotated (consumed). */
  readonly refreshReuseCount: number;
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

  /** Current metadata of a client (static or registered). */
  getClient(clientId: string): ClientMetadata | undefined;
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
        return p ? structuredClone(p) : undefined;
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
        if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
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

function assertLoopback(uri: string): void {
  const host = new URL(uri).hostname;
  if (host !== '127.0.0.1' && host !== 'localhost' && host !== '[::1]') {
    throw new Error(`dev IdP only talks to loopback addresses, refusing ${uri}`);
  }
}

export async function startDevIdp(options: DevIdpOptions = {}): Promise<DevIdp> {
  const prefix = normalizePrefix(options.issuerPathPrefix);
  const users = options.users ?? DEFAULT_USERS;
  const accessTokenTtlSec = options.accessTokenTtlSec ?? 300;
  const jwtAccessTokens = options.jwtAccessTokens ?? true;
  const apiResource = options.apiResource ?? 'http://127.0.0.1/api';
  const apiScopes = options.apiScopes ?? ['api:read', 'api:write'];
  const store = new MemoryStore();

  // A fresh signing key per start: tests must never depend on a fixed key.
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID();
  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };

  const counters = {
    refresh: 0, code: 0, reuse: 0, endSession: 0, revocation: 0, login: 0, failedLogin: 0, requests: 0,
    backchannelSent: 0, backchannelFailed: 0,
  };
  let delayMs = 0;
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
  const issuer = `${origin}${prefix}`;

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
    jwks: { keys: [privateJwk] },
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
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      roles: ['roles'],
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'roles'],
    responseTypes: ['code'],
    // With JWT (aud-bound) access tokens userinfo is unusable, so the ID token must carry the
    // scope claims itself instead of only `sub` (oidc-provider's default conform behaviour).
    conformIdTokenClaims: false,
    findAccount: (_ctx, sub) => {
      const user = findUser(sub);
      if (!user) return undefined;
      return {
        accountId: sub,
        claims: () => ({
          sub,
          name: user.name,
          preferred_username: user.username,
          email: user.email,
          email_verified: true,
          roles: user.roles,
        }),
      };
    },
    // Put the user's display name and roles in JWT access tokens so the upstream can authorize.
    extraTokenClaims: async (_ctx, token) => {
      const accountId = 'accountId' in token ? token.accountId : undefined;
      const user = accountId ? findUser(accountId) : undefined;
      return user ? { name: user.name, roles: user.roles } : undefined;
    },
    interactions: {
      url: (_ctx, interaction) => `${prefix}/interaction/${interaction.uid}`,
    },
    pkce: { required: () => true },
    rotateRefreshToken: options.rotateRefreshToken ?? true,
    ...(options.refreshTokens === 'always'
      ? { issueRefreshToken: (_ctx: KoaContextWithOIDC, client) => client.grantTypeAllowed('refresh_token') }
      : {}),
    ttl: {
      AccessToken: accessTokenTtlSec,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: 14 * 24 * 3600,
      RefreshToken: 14 * 24 * 3600,
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
      resourceIndicators: {
        enabled: true,
        // Every authorization request is bound to the API resource so the grant covers its scopes.
        defaultResource: () => apiResource,
        // When true, the token endpoint uses the granted resource even for `openid` requests,
        // which is what makes oidc-provider issue a JWT instead of an opaque userinfo token.
        useGrantedResource: () => jwtAccessTokens,
        getResourceServerInfo: (_ctx, indicator) => {
          if (indicator !== apiResource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          return resourceServer;
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

  const provider = new Provider(issuer, configuration);
  // Validate the client metadata now rather than on the first authorization request.
  for (const c of clients) await provider.Client.find(c.client_id);
  // oidc-provider only puts `sid` in ID tokens for clients registered with
  // backchannel_logout_session_required + backchannel_logout_uri. Relying parties (the token handler)
  // need it to correlate back-channel logouts even when registered without them, so always include it.
  provider.Client.prototype.includeSid = () => true;

  provider.on('grant.success', (ctx) => {
    const gt = ctx.oidc.params?.grant_type;
    if (gt === 'refresh_token') counters.refresh += 1;
    if (gt === 'authorization_code') counters.code += 1;
  });
  provider.on('grant.error', (ctx) => {
    const rt = ctx.oidc?.params?.refresh_token;
    if (ctx.oidc?.params?.grant_type === 'refresh_token' && typeof rt === 'string' && store.consumedRefreshTokens.has(rt)) {
      counters.reuse += 1;
    }
  });
  provider.on('backchannel.success', () => {
    counters.backchannelSent += 1;
  });
  provider.on('backchannel.error', (_ctx, err, client) => {
    counters.backchannelFailed += 1;
    console.warn(`[dev-idp] back-channel logout to ${client.backchannelLogoutUri ?? client.clientId} failed: ${err.message}`);
  });
  provider.on('end_session.success', () => {
    counters.endSession += 1;
  });
  // Server errors would otherwise be swallowed into an HTML page; surface them in test output.
  provider.on('server_error', (_ctx, err) => console.error('[dev-idp] server_error', err));

  const callback = provider.callback();
  const revocationPath = `${prefix}/token/revocation`;

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
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'logout+jwt' })
      .setIssuer(claims.iss ?? issuer)
      .setIssuedAt(claims.iat ?? now)
      .setExpirationTime(claims.exp ?? now + 120)
      .sign(privateKey);
  };

  const handle_: DevIdp = {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    port,
    registrationInitialAccessToken: registrationToken,
    apiResource,
    provider,
    users,
    get refreshGrantCount() { return counters.refresh; },
    get authorizationCodeGrantCount() { return counters.code; },
    get refreshReuseCount() { return counters.reuse; },
    get endSessionCount() { return counters.endSession; },
    get revocationCount() { return counters.revocation; },
    get loginCount() { return counters.login; },
    get failedLoginCount() { return counters.failedLogin; },
    get requestCount() { return counters.requests; },
    get backchannelLogoutSentCount() { return counters.backchannelSent; },
    get backchannelLogoutFailedCount() { return counters.backchannelFailed; },
    resetCounters() {
      for (const k of Object.keys(counters) as (keyof typeof counters)[]) counters[k] = 0;
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

    getClient(clientId) {
      const c = store.get('Client', clientId);
      return c ? (structuredClone(c) as ClientMetadata) : undefined;
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
        .setProtectedHeader({ alg: 'RS256', kid, typ: opts.typ ?? 'JWT' })
        .setIssuer(claims.iss ?? issuer)
        .setIssuedAt(claims.iat ?? now)
        .setExpirationTime(claims.exp ?? now + (opts.expiresInSec ?? 300))
        .sign(privateKey);
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
