/**
 * The one validated, typed configuration the whole service is built from. `loadConfig` (./load.ts)
 * produces it from flags, environment, env file and config file; nothing else reads process.env.
 */

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type DbType = 'sqlite' | 'postgresql' | 'redis';
export type SameSite = 'lax' | 'strict' | 'none';
/** `auto`: Secure in production, and in development whenever the request arrived over HTTPS. */
export type CookieSecure = boolean | 'auto';
/** `user`: 401 without a session. `user-or-none`: forwarded without a token when anonymous. `none`: never a token. */
export type TokenRequirement = 'user' | 'user-or-none' | 'none';
/** `token`: the XSRF header must echo the XSRF cookie. `origin`: Sec-Fetch-Site / Origin must show our own or an allowed origin. */
export type CsrfMode = 'token' | 'origin';

/** How a target guards against cross-site requests (src/security/csrf.ts checkTargetCsrf). */
export interface TargetCsrfPolicy {
  mode: CsrfMode;
  /** Check every method, GET and HEAD too (Duende BFF's rule): a request must pass the mode's check whatever its method. */
  allMethods: boolean;
  /** Let cross-site GET/HEAD navigations (links from other sites) through with the user's token; default false. */
  allowCrossSiteGet: boolean;
}

export interface ClientConfig {
  /** The id in our URLs: `/token-handler/v1/clients/{id}/...`. The flag-configured client is `default`. */
  id: string;
  issuer: string;
  clientId: string;
  /** Absent for a client that is registered at run time (POST /clients/{id}). */
  clientSecret?: string;
  scopes: string[];
  /** Absolute URL of this client's callback as the IdP sees it. Absent: derived from the request. */
  redirectUrl?: string;
  postLoginRedirectUrl: string;
  postLogoutRedirectUrl?: string;
  /** Where a failed login is redirected to, with `?error=...`. Absent: a problem+json response. */
  failureRedirectUrl?: string;
  /** Origins (scheme://host[:port]) that `return_to` and CSRF Origin checks accept besides our own. */
  allowedOrigins: string[];
  /** Extra authorization request parameters (`prompt`, `audience`, `resource`, ...). */
  extraAuthParams: Record<string, string>;
  /** When set, this client is tenant-scoped: requests must carry this tenant in the tenant header. */
  tenant?: string;
  /** The tenant's name (ADSP: a tenant is named by its URN or its name): the tenant header may give either. */
  tenantName?: string;
  /** Development only: do not check that the request's host matches `redirectUrl`. Refused in production. */
  disableVerifyHost: boolean;
  /**
   * A client serving several tenants: the complete settings of each tenant (its issuer, clientId, secret,
   * URLs), keyed by the tenant value of the tenant header; each has `tenant` set to its key. The client's
   * own fields are then only the shared defaults (its `issuer` and `clientId` may be empty).
   * Mutually exclusive with `tenant`.
   */
  tenants?: Record<string, ClientConfig>;
  /** `registered: true` in the config file: the credentials come from POST /clients/{id} at run time. */
  registered?: boolean;
  /** Who may register this client (POST /clients/{id}); absent: the built-in defaults (see oidc/adminToken.ts). */
  admin?: AdminTokenPolicy;
  /**
   * How a logout continues to the IdP's end_session_endpoint in the browser: `get` (absent: the default),
   * a redirect with the ID token (id_token_hint) in its URL; `post`, an auto-submitted form that keeps it
   * out of URLs and history, for an IdP that accepts POST there with its session cookie (RP-Initiated
   * Logout requires POST of OPs, but a SameSite=Lax session cookie does not come along with a cross-site POST).
   */
  endSessionMethod?: 'post' | 'get';
  /** Claim paths (lists of property names, `*` for any) holding the user's roles; absent: oidc/claims.ts defaults. */
  roleClaims?: string[][];
  /** Read the profile and roles from the userinfo endpoint too, at login and refresh. */
  userinfo?: boolean;
  /** End-session URL template ({client_id}, {post_logout_redirect_uri}, {id_token_hint}); wins over discovery. */
  endSessionUrl?: string;
  /** private_key_jwt client authentication (RFC 7523) instead of a secret. */
  clientKey?: ClientKey;
  /** Push authorization requests (RFC 9126) when the IdP offers it. */
  par?: boolean;
  /** A multi-tenant Entra ID issuer (`{tenantid}`): the `tid` values allowed to log in, or `['*']`. */
  allowedTids?: string[];
}

/** A client's private key for private_key_jwt, loaded with the configuration (config/clientKey.ts). */
export interface ClientKey {
  /** PKCS#8 PEM. Never logged. */
  pkcs8: string;
  /** JWS algorithm of the client assertion. */
  alg: string;
  kid: string;
  /** SHA-1 / SHA-256 thumbprints of the key's certificate, when one was given (Entra ID). */
  x5t?: string;
  x5tS256?: string;
}

/** How the bearer token of a client registration request is checked. Absent fields use the defaults. */
export interface AdminTokenPolicy {
  /** The role the token must carry; default `token-handler-admin`. */
  role?: string;
  /** Claim paths (each a list of property names) searched for the role; the first path that holds it wins. */
  roleClaimPaths?: string[][];
  /** When set, the token's `aud` must contain this value. */
  audience?: string;
}

export interface TargetConfig {
  id: string;
  /** Upstream base URL; request sub-paths are joined below its path, never outside it. */
  url: string;
  /** Where the target is mounted; default `${basePath}/targets/${id}`. */
  mountPath: string;
  /** Which client's session supplies the access token. */
  clientId: string;
  methods: string[];
  tokenRequirement: TokenRequirement;
  /** Whole-request timeout towards the upstream, milliseconds. */
  timeoutMs: number;
  /** Headers added to every upstream request. */
  headers: Record<string, string>;
  /** Pass upstream Set-Cookie headers to the browser. */
  passSetCookie: boolean;
  /**
   * Forward method-override headers (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override); the
   * method they name must be one of `methods` and passes the CSRF check as that method. Default false:
   * removed, so an upstream framework that honours them cannot turn a GET into a DELETE.
   */
  allowMethodOverride: boolean;
  csrf: TargetCsrfPolicy;
  /** Error answers in go-token-handler's JSON shape ({code, status, message, timestamp}): its `proxies:` entries. */
  goErrors: boolean;
  /**
   * A go-token-handler endpoint written with a trailing slash (`/api/`, Go ServeMux's subtree pattern): the
   * bare path (`/api`) is answered with a 301 to `/api/`, as Go did.
   */
  redirectBareMount: boolean;
  /** undici pool settings (from go-token-handler `parameters` or our own format). */
  pool: { connections: number; keepAliveTimeoutMs: number; keepAliveMaxTimeoutMs: number };
  websocket: boolean;
}

/** A Unix domain socket to listen on: an absolute path. */
export interface SocketAddress {
  path: string;
}

/** Where an internal listener listens: a TCP address, or a Unix domain socket. */
export type InternalListenAddress = { host: string; port: number } | SocketAddress;

export interface Config {
  isProduction: boolean;
  logLevel: LogLevel;
  listen: { host: string; port: number };
  /** Worker processes sharing the listener (src/cluster/); absent or 1: one process, no cluster. */
  workers?: number;
  /** Separate listen address for /metrics; absent: served on the main listener. */
  metricsListen?: { host: string; port: number };
  /**
   * Internal listener for forward-auth checks (src/proxy/forwardAuth.ts), a TCP address or a Unix domain
   * socket (`{ path }`); absent: no forward-auth.
   */
  forwardAuthListen?: InternalListenAddress;
  /** File mode of the forward-auth Unix socket; absent: 0o660. */
  forwardAuthSocketMode?: number;
  /** Peers (IPs, CIDRs, proxy-addr names) allowed on the forward-auth listener; absent: any. */
  forwardAuthAllow?: string[];
  /** Base path of our API, `/token-handler/v1`. */
  basePath: string;
  /** Public origin of the service (scheme://host[:port]) used to build callback URLs; absent: from the request. */
  publicUrl?: string;
  trustProxy: boolean | string[];
  tls?: { certFile: string; keyFile: string };

  cookie: {
    /** Name as configured (`session`); the `__Host-` prefix is added when it applies. */
    name: string;
    /** Absent: host-only cookie (and `__Host-` prefix when Secure). */
    domain?: string;
    sameSite: SameSite;
    secure: CookieSecure;
  };
  /** `mode`: --csrf_mode when set (the targets have it applied already: TargetConfig.csrf). */
  csrf: { cookieName: string; headerName: string; mode?: CsrfMode };
  /** Header naming the tenant, set by the reverse proxy. */
  tenantHeader: string;

  session: {
    /** Current secret first, then the old one(s). Raw bytes as configured. */
    authSecrets: Buffer[];
    encSecrets: Buffer[];
    dbKeys: Buffer[];
    absoluteLifetimeSec: number;
    idleLifetimeSec: number;
    sweepIntervalSec: number;
    sweepBatchSize: number;
    /** Refresh the access token when it expires within this many seconds. */
    refreshSkewSec: number;
    /** How long a resolved session may be served from memory, milliseconds (0: no cache); absent: 5000. */
    cacheTtlMs?: number;
    /** Most live sessions of one user per client and tenant; a login beyond it ends the oldest. 0 or absent: no limit. */
    maxPerUser?: number;
  };

  db: {
    type: DbType;
    /** SQLite file. */
    path: string;
    host?: string;
    port?: number;
    name?: string;
    username?: string;
    password?: string;
    /** PostgreSQL connection URL; wins over host/port/name/username/password. */
    url?: string;
    /** PostgreSQL schema of the tables; absent: `public`. */
    schema?: string;
    redisUrl?: string;
    /** Prefix of every Redis key and of the pub/sub channel; absent: `th:`. */
    redisKeyPrefix?: string;
  };

  oidc: {
    /** Timeout for every call to an IdP, milliseconds. */
    timeoutMs: number;
    /** Development only: allow http:// issuers (the embedded demo IdP, tests). */
    allowInsecureIssuer: boolean;
  };

  clients: ClientConfig[];
  targets: TargetConfig[];
  /** Where targets named by a service URN are looked up (src/proxy/directory.ts). */
  directory?: { sources: string[]; refreshMs: number };
  /** Reload clients and targets when the config files change (SIGHUP reloads either way). */
  configWatch?: boolean;

  /** go-token-handler routes (/login, /callback, /logout, /userinfo) for the `default` client. */
  legacyRoutes: boolean;
  /** /readyz answers 503 when an IdP is unreachable too (default: 200 with status `degraded`). */
  readyzStrict?: boolean;
  limits: { maxBodyBytes: number; maxHeaderBytes: number };
  rateLimit: { loginPerMinute: number };
}
