/**
 * THE option table: every flag, its environment variable, default, description and parser. The
 * command line, `--help`, the config file's option keys and docs/configuration.md all derive from it,
 * so adding an option here is all it takes (the tests iterate over it too).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import {
  durationMs,
  fail,
  durationSeconds,
  integer,
  oneOf,
  parseBoolean,
  parseCookieDomain,
  parseCookieName,
  parseHttpUrl,
  parseFileMode,
  parseInternalListenAddr,
  parseListenAddr,
  parseLogLevel,
  parseOptionalString,
  parseOrigin,
  parseOriginList,
  parsePathPrefix,
  parseRedirectTarget,
  parseRequiredString,
  parseScopes,
  parseSecret,
  parseSize,
  parseToken,
  parseTrustProxy,
  parseAddressList,
  splitList,
} from './parsers.ts';
import { parseAuthParams, parseClaimPathList, parseEndSessionTemplate, parseTidList } from './oidcParsers.ts';
import type { CookieSecure, CsrfMode, DbType, SameSite } from './types.ts';

export type OptionGroup = 'Server' | 'Cookies and CSRF' | 'Sessions and secrets' | 'Database' | 'OIDC' | 'Targets and limits';

interface OptionBase<T> {
  /** Flag name without `--`, underscore form (the hyphen form is accepted too). */
  flag: string;
  env: string;
  description: string;
  group: OptionGroup;
  /** Placeholder shown in help, e.g. `<duration>`. */
  valueName: string;
  /** Converts the raw text (from any source) or throws `InvalidValue`. */
  parse: (raw: string) => T;
  /** Never echo the value (in errors, warnings, help). */
  secret?: boolean;
  /** May be given without a value on the command line (`--is_production` means true). */
  switch?: boolean;
  /** A comma-separated list: a config-file array is joined with commas. */
  list?: boolean;
  /** A file or directory path: resolved against cwd (or the config file's directory when set there). */
  path?: boolean;
}
export interface DefaultedOption<T> extends OptionBase<T> {
  /** Parsed like any other value; shown in help and docs. */
  default: string;
}
export interface OptionalOption<T> extends OptionBase<T> {
  default?: undefined;
}
export type OptionDef<T = unknown> = DefaultedOption<T> | OptionalOption<T>;

function withDefault<T>(def: DefaultedOption<T>): DefaultedOption<T> {
  return def;
}
function optional<T>(def: OptionalOption<T>): OptionalOption<T> {
  return def;
}

const parseSameSite = oneOf<SameSite>(['lax', 'strict', 'none']);
const parseCsrfMode = oneOf<CsrfMode>(['token', 'origin']);
const parseDbType = oneOf<DbType>(['sqlite', 'postgresql', 'redis'], { postgres: 'postgresql' });
function parseCookieSecure(raw: string): CookieSecure {
  const value = raw.trim().toLowerCase();
  if (value === 'auto') return 'auto';
  if (['true', '1', 'yes', 'false', '0', 'no'].includes(value)) return parseBoolean(value);
  return fail('must be one of true, false, auto');
}
/** Directory sources: http(s) URLs or file paths (resolved by the loader), comma-separated. */
function parseDirectorySources(raw: string): string[] | undefined {
  const sources = splitList(raw);
  if (sources.length === 0) return undefined;
  for (const source of sources) if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) parseHttpUrl(source, { allowQuery: true });
  return sources;
}
function optionalOf<T>(parse: (raw: string) => T) {
  return (raw: string): T | undefined => (raw.trim() === '' ? undefined : parse(raw));
}
function parseDbUrl(raw: string): string | undefined {
  const value = raw.trim();
  if (value === '') return undefined;
  if (!/^postgres(ql)?:\/\/./i.test(value)) return fail('must be a postgres:// or postgresql:// connection URL');
  return value;
}
/** A PostgreSQL schema name we can quote safely and that fits an identifier (63 bytes). */
function parseSchemaName(raw: string): string {
  const value = raw.trim();
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(value)) return fail('must be a schema name: a letter or _, then letters, digits or _ (at most 63)');
  return value;
}
function parseRedisKeyPrefix(raw: string): string {
  const value = parseRequiredString(raw);
  if (/\s/.test(value) || value.length > 64) return fail('must be at most 64 characters without spaces');
  return value;
}
/** The session cache may be off (0) but never long: it bounds how stale an instance can be when an invalidation is lost. */
function parseCacheTtl(raw: string): number {
  const ms = durationMs(0, '0s')(raw);
  if (ms > 60_000) return fail('must be at most 60s');
  return ms;
}
/** `auto`: one worker per core this process may use (os.availableParallelism()); else a count. */
function parseWorkers(raw: string): number {
  if (raw.trim().toLowerCase() === 'auto') return availableParallelism();
  return integer(1, 1024)(raw);
}
function parseRedisUrl(raw: string): string | undefined {
  const value = raw.trim();
  if (value === '') return undefined;
  if (!/^rediss?:\/\/./i.test(value)) return fail('must be a redis:// or rediss:// URL');
  return value;
}

export const optionTable = {
  // Server
  isProduction: withDefault({
    flag: 'is_production', env: 'IS_PRODUCTION', group: 'Server', valueName: '[=<bool>]', switch: true, default: 'false',
    description: 'Production mode: refuses default or short secrets, missing encryption keys, non-https URLs and development-only settings.',
    parse: parseBoolean,
  }),
  logLevel: withDefault({
    flag: 'log_level', env: 'LOG_LEVEL', group: 'Server', valueName: '<level>', default: 'info',
    description: 'Logging level: fatal, error, warn (or warning), info, debug, trace, silent.',
    parse: parseLogLevel,
  }),
  listenAddr: withDefault({
    flag: 'listen_addr', env: 'LISTEN_ADDR', group: 'Server', valueName: '<host:port>', default: ':9080',
    description: 'Where the service listens: `host:port`, `:port` (all interfaces) or `[::1]:port`.',
    parse: parseListenAddr,
  }),
  workers: withDefault({
    flag: 'workers', env: 'WORKERS', group: 'Server', valueName: '<n|auto>', default: '1',
    description:
      'Worker processes sharing the listener (node:cluster); `auto`: one per available core. 1: one process, no cluster (see docs/deployment.md#workers).',
    parse: parseWorkers,
  }),
  metricsListenAddr: optional({
    flag: 'metrics_listen_addr', env: 'METRICS_LISTEN_ADDR', group: 'Server', valueName: '<host:port>',
    description: 'Separate listener for /metrics (same syntax as listen_addr). Unset: served on the main listener.',
    parse: optionalOf(parseListenAddr),
  }),
  forwardAuthListenAddr: optional({
    flag: 'forward_auth_listen_addr', env: 'FORWARD_AUTH_LISTEN_ADDR', group: 'Server', valueName: '<host:port|unix:path>',
    description:
      'Internal listener for forward-auth checks from nginx auth_request, Traefik ForwardAuth or Envoy ext_authz (docs/forward-auth.md); it answers with access tokens, so never expose it. `unix:/absolute/path`: a Unix domain socket instead of a port (a gateway on the same host; unreachable from the network, guarded by its file mode). Unset: no forward-auth.',
    parse: optionalOf(parseInternalListenAddr),
  }),
  forwardAuthSocketMode: withDefault({
    flag: 'forward_auth_socket_mode', env: 'FORWARD_AUTH_SOCKET_MODE', group: 'Server', valueName: '<octal>', default: '0660',
    description: 'File mode of the forward-auth Unix socket (--forward_auth_listen_addr unix:...): connecting needs write permission, so 0660 lets the owner and the group (e.g. the gateway\'s user) in.',
    parse: parseFileMode,
  }),
  forwardAuthAllow: optional({
    flag: 'forward_auth_allow', env: 'FORWARD_AUTH_ALLOW', group: 'Server', valueName: '<list>', list: true,
    description: 'Peers allowed on the forward-auth listener: a comma list of gateway IPs/CIDRs (and loopback, linklocal, uniquelocal); others get 403. Unset: any peer that reaches the listener.',
    parse: optionalOf(parseAddressList),
  }),
  basePath: withDefault({
    flag: 'base_path', env: 'BASE_PATH', group: 'Server', valueName: '<path>', default: '/token-handler/v1',
    description: 'Base path of the token handler API.',
    parse: parsePathPrefix,
  }),
  publicUrl: optional({
    flag: 'public_url', env: 'PUBLIC_URL', group: 'Server', valueName: '<origin>',
    description: 'Public origin of the service (scheme://host[:port]) used to build callback URLs. Unset: taken from the request.',
    parse: optionalOf(parseOrigin),
  }),
  trustProxy: withDefault({
    flag: 'trust_proxy', env: 'TRUST_PROXY', group: 'Server', valueName: '[=<list>]', switch: true, list: true, default: 'false',
    description: 'Trust X-Forwarded-* headers: false, true, or a comma list of proxy IPs/CIDRs (and loopback, linklocal, uniquelocal).',
    parse: parseTrustProxy,
  }),
  tlsCert: optional({
    flag: 'tls_cert', env: 'TLS_CERT', group: 'Server', valueName: '<file>', path: true,
    description: 'PEM certificate file to serve HTTPS directly (together with tls_key).',
    parse: parseOptionalString,
  }),
  tlsKey: optional({
    flag: 'tls_key', env: 'TLS_KEY', group: 'Server', valueName: '<file>', path: true,
    description: 'PEM private key file for tls_cert.',
    parse: parseOptionalString,
  }),
  legacyRoutes: withDefault({
    flag: 'legacy_routes', env: 'LEGACY_ROUTES', group: 'Server', valueName: '[=<bool>]', switch: true, default: 'true',
    description: 'Serve the go-token-handler routes (/login, /callback, /logout, /userinfo) for the `default` client.',
    parse: parseBoolean,
  }),
  readyzStrict: withDefault({
    flag: 'readyz_strict', env: 'READYZ_STRICT', group: 'Server', valueName: '[=<bool>]', switch: true, default: 'false',
    description:
      'Also answer /readyz with 503 when an identity provider cannot be reached. Default: an IdP outage is reported as `degraded` with 200 (sessions keep working through the proxy without the IdP; only the session store makes an instance unready).',
    parse: parseBoolean,
  }),
  config: optional({
    flag: 'config', env: 'CONFIG_FILE', group: 'Server', valueName: '<file>', path: true,
    description: 'YAML or JSON config file with option values, `clients` and `targets` (see docs/configuration.md).',
    parse: parseOptionalString,
  }),
  configWatch: withDefault({
    flag: 'config_watch', env: 'CONFIG_WATCH', group: 'Server', valueName: '[=<bool>]', switch: true, default: 'true',
    description:
      'Reload clients and targets when the config file or proxy file changes. SIGHUP reloads either way; other options change only at a restart (see docs/configuration.md, Reloading).',
    parse: parseBoolean,
  }),
  proxyConfig: optional({
    flag: 'proxy_config', env: 'PROXY_CONFIG', group: 'Targets and limits', valueName: '<file>', path: true,
    description: 'The path to the proxy configuration file: go-token-handler `proxies:` and/or our `targets:`.',
    parse: parseOptionalString,
  }),

  // Cookies and CSRF
  cookieName: withDefault({
    flag: 'cookie_name', env: 'COOKIE_NAME', group: 'Cookies and CSRF', valueName: '<name>', default: 'session',
    description: 'The name of the session cookie (`__Host-` is prefixed automatically when it applies).',
    parse: parseCookieName,
  }),
  cookieDomain: withDefault({
    flag: 'cookie_domain', env: 'COOKIE_DOMAIN', group: 'Cookies and CSRF', valueName: '<domain>', default: 'localhost',
    description: 'Domain attribute of the session cookie. Unset or `localhost`: host-only cookie (no Domain attribute).',
    parse: parseCookieDomain,
  }),
  cookieSameSite: withDefault({
    flag: 'cookie_same_site', env: 'COOKIE_SAME_SITE', group: 'Cookies and CSRF', valueName: '<lax|strict|none>', default: 'lax',
    description: 'SameSite attribute of the session cookie; `none` requires Secure.',
    parse: parseSameSite,
  }),
  cookieSecure: withDefault({
    flag: 'cookie_secure', env: 'COOKIE_SECURE', group: 'Cookies and CSRF', valueName: '[=<true|false|auto>]', switch: true, default: 'auto',
    description: 'Secure attribute: `auto` is Secure in production and for HTTPS requests. Production forces true; `false` is refused there.',
    parse: parseCookieSecure,
  }),
  csrfCookieName: withDefault({
    flag: 'csrf_cookie_name', env: 'CSRF_COOKIE_NAME', group: 'Cookies and CSRF', valueName: '<name>', default: 'XSRF-TOKEN',
    description: 'Cookie carrying the CSRF token (readable by the frontend).',
    parse: parseCookieName,
  }),
  csrfHeaderName: withDefault({
    flag: 'csrf_header_name', env: 'CSRF_HEADER_NAME', group: 'Cookies and CSRF', valueName: '<header>', default: 'X-XSRF-TOKEN',
    description: 'Header in which the frontend echoes the CSRF token.',
    parse: parseToken,
  }),
  csrfMode: optional({
    flag: 'csrf_mode', env: 'CSRF_MODE', group: 'Cookies and CSRF', valueName: '<token|origin>',
    description:
      'CSRF defence of the targets that set none: `token`, the X-XSRF-TOKEN header must echo the XSRF-TOKEN cookie (and the Origin be allowed); `origin`, Sec-Fetch-Site and Origin must show a same-origin or allowed-origin request (requests with neither header, from non-browser clients, pass). Unset: `token` for `targets:`, `origin` for go-token-handler `proxies:`.',
    parse: optionalOf(parseCsrfMode),
  }),
  tenantHeader: withDefault({
    flag: 'tenant_header', env: 'TENANT_HEADER', group: 'Cookies and CSRF', valueName: '<header>', default: 'X-ADSP-TENANT',
    description: 'Header naming the tenant, set by the reverse proxy (used by tenant-scoped clients).',
    parse: parseToken,
  }),

  // Sessions and secrets
  sessionAuthSecret: withDefault({
    flag: 'session_auth_secret', env: 'SESSION_AUTH_SECRET', group: 'Sessions and secrets', valueName: '<secret>', secret: true,
    default: 'my-secret-key-CHANGE-ME-IN-PROD!',
    description: 'The authentication key for the session cookie (>= 16 bytes; >= 32 and not the default in production).',
    parse: parseSecret,
  }),
  sessionOldAuthSecret: optional({
    flag: 'session_old_auth_secret', env: 'SESSION_OLD_AUTH_SECRET', group: 'Sessions and secrets', valueName: '<secret>', secret: true,
    description: 'The old authentication key for the session cookie, accepted during secret rotation.',
    parse: parseSecret,
  }),
  sessionEncSecret: optional({
    flag: 'session_enc_secret', env: 'SESSION_ENC_SECRET', group: 'Sessions and secrets', valueName: '<secret>', secret: true,
    description: 'The encryption key for the session cookie (required in production).',
    parse: parseSecret,
  }),
  sessionOldEncSecret: optional({
    flag: 'session_old_enc_secret', env: 'SESSION_OLD_ENC_SECRET', group: 'Sessions and secrets', valueName: '<secret>', secret: true,
    description: 'The old encryption key for the session cookie, accepted during secret rotation.',
    parse: parseSecret,
  }),
  sessionDbKey: optional({
    flag: 'session_db_key', env: 'SESSION_DB_KEY', group: 'Sessions and secrets', valueName: '<secret>', secret: true,
    description: 'The encryption key for the tokens stored in the session database (required in production).',
    parse: parseSecret,
  }),
  sessionOldDbKey: optional({
    flag: 'session_old_db_key', env: 'SESSION_OLD_DB_KEY', group: 'Sessions and secrets', valueName: '<secret>', secret: true,
    description: 'The old encryption key for the session database, accepted during key rotation.',
    parse: parseSecret,
  }),
  sessionAbsoluteLifetime: withDefault({
    flag: 'session_absolute_lifetime', env: 'SESSION_ABSOLUTE_LIFETIME', group: 'Sessions and secrets', valueName: '<duration>', default: '8h',
    description: 'Maximum session age, however active the user is.',
    parse: durationSeconds(60),
  }),
  sessionIdleLifetime: withDefault({
    flag: 'session_idle_lifetime', env: 'SESSION_IDLE_LIFETIME', group: 'Sessions and secrets', valueName: '<duration>', default: '1h',
    description: 'A session unused for this long expires.',
    parse: durationSeconds(60),
  }),
  sessionSweepInterval: withDefault({
    flag: 'session_sweep_interval', env: 'SESSION_SWEEP_INTERVAL', group: 'Sessions and secrets', valueName: '<duration>', default: '60s',
    description: 'How often expired sessions are deleted from the store.',
    parse: durationSeconds(1),
  }),
  sessionSweepBatchSize: withDefault({
    flag: 'session_sweep_batch_size', env: 'SESSION_SWEEP_BATCH_SIZE', group: 'Sessions and secrets', valueName: '<n>', default: '1000',
    description: 'Expired sessions deleted per batch.',
    parse: integer(1, 1_000_000),
  }),
  maxSessionsPerUser: withDefault({
    flag: 'max_sessions_per_user', env: 'MAX_SESSIONS_PER_USER', group: 'Sessions and secrets', valueName: '<n>', default: '0',
    description: 'Most sessions one user may hold per client (and tenant) at once; a new login beyond it ends the oldest. 0: no limit.',
    parse: integer(0, 1_000_000),
  }),
  refreshSkew: withDefault({
    flag: 'refresh_skew', env: 'REFRESH_SKEW', group: 'Sessions and secrets', valueName: '<duration>', default: '30s',
    description: 'Refresh the access token when it expires within this long, or within half its lifetime if that is shorter (a token living shorter than the skew is refreshed about once per half-life, not on every request).',
    parse: durationSeconds(0),
  }),
  sessionCacheTtl: withDefault({
    flag: 'session_cache_ttl', env: 'SESSION_CACHE_TTL', group: 'Sessions and secrets', valueName: '<duration>', default: '5s',
    description:
      'How long an instance may reuse a session it read from the store (at most 60s; 0 turns the cache off). Logout and revocation reach every instance at once through the store (PostgreSQL LISTEN/NOTIFY, Redis pub/sub); this only bounds how stale an instance can be when such a message is lost, and how long cached sessions keep working during a store outage.',
    parse: parseCacheTtl,
  }),

  // Database
  dbType: withDefault({
    flag: 'db_type', env: 'DB_TYPE', group: 'Database', valueName: '<type>', default: 'sqlite',
    description: 'The session store: sqlite, postgresql or redis.',
    parse: parseDbType,
  }),
  dbPath: withDefault({
    flag: 'db_path', env: 'DB_PATH', group: 'Database', valueName: '<file>', default: './token-handler.db', path: true,
    description: 'SQLite database file (`:memory:` for an in-memory database). Unset, a `db_name` is used as the file, as go-token-handler did.',
    parse: parseRequiredString,
  }),
  dbUrl: optional({
    flag: 'db_url', env: 'DATABASE_URL', group: 'Database', valueName: '<url>', secret: true,
    description: 'PostgreSQL connection URL; wins over db_host/db_port/db_name/db_username/db_password.',
    parse: parseDbUrl,
  }),
  dbSchema: withDefault({
    flag: 'db_schema', env: 'DB_SCHEMA', group: 'Database', valueName: '<schema>', default: 'public',
    description: 'PostgreSQL schema holding the tables (created on first start), so several deployments can share one database.',
    parse: parseSchemaName,
  }),
  dbHost: optional({
    flag: 'db_host', env: 'DB_HOST', group: 'Database', valueName: '<host>',
    description: 'The database server hostname or IP address; `host:port` (and `[::1]:5433`) is accepted, as go-token-handler users spell another port.',
    parse: parseOptionalString,
  }),
  dbPort: optional({
    flag: 'db_port', env: 'DB_PORT', group: 'Database', valueName: '<port>',
    description: 'The database server port (PostgreSQL default 5432).',
    parse: optionalOf(integer(1, 65535)),
  }),
  dbName: optional({
    flag: 'db_name', env: 'DB_NAME', group: 'Database', valueName: '<name>',
    description: 'The database name.',
    parse: parseOptionalString,
  }),
  dbUsername: optional({
    flag: 'db_username', env: 'DB_USERNAME', group: 'Database', valueName: '<user>',
    description: 'The username to use to connect the database.',
    parse: parseOptionalString,
  }),
  dbPassword: optional({
    flag: 'db_password', env: 'DB_PASSWORD', group: 'Database', valueName: '<password>', secret: true,
    description: 'The password to use to connect the database.',
    parse: parseOptionalString,
  }),
  redisUrl: optional({
    flag: 'redis_url', env: 'REDIS_URL', group: 'Database', valueName: '<url>', secret: true,
    description: 'Redis URL (redis:// or rediss://) when db_type is redis.',
    parse: parseRedisUrl,
  }),
  redisKeyPrefix: withDefault({
    flag: 'redis_key_prefix', env: 'REDIS_KEY_PREFIX', group: 'Database', valueName: '<prefix>', default: 'th:',
    description: 'Prefix of every Redis key and of the invalidation channel, so several deployments can share one Redis (or use a database number in redis_url).',
    parse: parseRedisKeyPrefix,
  }),

  // OIDC (the `default` client)
  oidcIssuer: optional({
    flag: 'oidc_issuer', env: 'OIDC_ISSUER', group: 'OIDC', valueName: '<url>',
    description: 'The URL of the OIDC issuer; when set, the `default` client is built from the oidc_* options.',
    parse: optionalOf((raw) => parseHttpUrl(raw)),
  }),
  oidcClientId: optional({
    flag: 'oidc_client_id', env: 'OIDC_CLIENT_ID', group: 'OIDC', valueName: '<id>',
    description: 'The OAuth client_id of the `default` client.',
    parse: parseOptionalString,
  }),
  oidcClientSecret: optional({
    flag: 'oidc_client_secret', env: 'OIDC_CLIENT_SECRET', group: 'OIDC', valueName: '<secret>', secret: true,
    description: 'The OAuth client secret of the `default` client.',
    parse: parseOptionalString,
  }),
  oidcRedirectUrl: optional({
    flag: 'oidc_redirect_url', env: 'OIDC_REDIRECT_URL', group: 'OIDC', valueName: '<url>',
    description: 'Absolute URL of the login callback as the IdP sees it. Unset: derived from public_url or the request.',
    parse: optionalOf((raw) => parseHttpUrl(raw)),
  }),
  oidcPostLoginRedirectUrl: withDefault({
    flag: 'oidc_post_login_redirect_url', env: 'OIDC_POST_LOGIN_REDIRECT_URL', group: 'OIDC', valueName: '<url|path>', default: '/',
    description: 'Where to redirect the browser after a successful login (a path or an absolute URL).',
    parse: parseRedirectTarget,
  }),
  oidcPostLogoutRedirectUrl: optional({
    flag: 'oidc_post_logout_redirect_url', env: 'OIDC_POST_LOGOUT_REDIRECT_URL', group: 'OIDC', valueName: '<url|path>',
    description: 'Where to redirect the browser after a logout.',
    parse: optionalOf(parseRedirectTarget),
  }),
  oidcFailureRedirectUrl: optional({
    flag: 'oidc_failure_redirect_url', env: 'OIDC_FAILURE_REDIRECT_URL', group: 'OIDC', valueName: '<url|path>',
    description: 'Where a failed login is redirected (with ?error=...). Unset: a problem+json response.',
    parse: optionalOf(parseRedirectTarget),
  }),
  oidcScopes: withDefault({
    flag: 'oidc_scopes', env: 'OIDC_SCOPES', group: 'OIDC', valueName: '<scopes>', list: true, default: 'openid profile email offline_access',
    description: 'Scopes requested (space or comma separated; must include openid). Also the default for config-file clients.',
    parse: parseScopes,
  }),
  oidcEndSessionMethod: withDefault({
    flag: 'oidc_end_session_method', env: 'OIDC_END_SESSION_METHOD', group: 'OIDC', valueName: '<get|post>', default: 'get',
    description:
      "How a logout continues to the IdP's end_session_endpoint: `get`, a redirect carrying the ID token (id_token_hint) in its URL, or `post`, an auto-submitted form that keeps it out of URLs, browser history and access logs. Use `post` where the IdP accepts POST there with its session cookie (SameSite=None: Keycloak, Entra ID, Okta, Auth0, Duende IdentityServer; node-oidc-provider only with enableHttpPostMethods). Config-file clients: `endSessionMethod`.",
    parse: oneOf<'post' | 'get'>(['post', 'get']),
  }),
  oidcAuthParams: optional({
    flag: 'oidc_auth_params', env: 'OIDC_AUTH_PARAMS', group: 'OIDC', valueName: '<query>',
    description: 'Extra authorization request parameters of the `default` client, in query syntax: `audience=https://api.example.com&acr_values=mfa` (Auth0 `audience`, RFC 8707 `resource`, `acr_values`, `prompt`...).',
    parse: optionalOf(parseAuthParams),
  }),
  oidcRoleClaims: optional({
    flag: 'oidc_role_claims', env: 'OIDC_ROLE_CLAIMS', group: 'OIDC', valueName: '<paths>', list: true,
    description: 'Claim paths holding the `default` client\'s roles, comma separated (e.g. `https://example.com/roles` for Auth0). Unset: `realm_access.roles`, `resource_access.*.roles` (as client:role), `roles`, `groups`.',
    parse: optionalOf(parseClaimPathList),
  }),
  oidcUserinfo: withDefault({
    flag: 'oidc_userinfo', env: 'OIDC_USERINFO', group: 'OIDC', valueName: '[=<bool>]', switch: true, default: 'false',
    description: 'Also read the user\'s profile and roles from the userinfo endpoint (at login and refresh) for the `default` client.',
    parse: parseBoolean,
  }),
  oidcEndSessionUrl: optional({
    flag: 'oidc_end_session_url', env: 'OIDC_END_SESSION_URL', group: 'OIDC', valueName: '<url template>',
    description: 'Logout URL of an IdP whose discovery has no end_session_endpoint (Auth0: `https://TENANT.auth0.com/v2/logout?client_id={client_id}&returnTo={post_logout_redirect_uri}`); placeholders {client_id}, {post_logout_redirect_uri}, {id_token_hint}.',
    parse: optionalOf(parseEndSessionTemplate),
  }),
  oidcPrivateKeyFile: optional({
    flag: 'oidc_private_key_file', env: 'OIDC_PRIVATE_KEY_FILE', group: 'OIDC', valueName: '<file>', path: true,
    description: 'PEM (PKCS#8 or PKCS#1) or JWK private key: the `default` client authenticates with private_key_jwt (RFC 7523) instead of a secret.',
    parse: parseOptionalString,
  }),
  oidcPrivateKeyId: optional({
    flag: 'oidc_private_key_id', env: 'OIDC_PRIVATE_KEY_ID', group: 'OIDC', valueName: '<kid>',
    description: 'The `kid` of the private key as registered at the IdP. Unset: the JWK\'s own kid, else its RFC 7638 thumbprint.',
    parse: parseOptionalString,
  }),
  oidcCertificateFile: optional({
    flag: 'oidc_certificate_file', env: 'OIDC_CERTIFICATE_FILE', group: 'OIDC', valueName: '<file>', path: true,
    description: 'PEM certificate of the private key, for IdPs that identify the key by certificate thumbprint (Entra ID): adds x5t and x5t#S256 to the client assertion.',
    parse: parseOptionalString,
  }),
  oidcPar: withDefault({
    flag: 'oidc_par', env: 'OIDC_PAR', group: 'OIDC', valueName: '[=<bool>]', switch: true, default: 'false',
    description: 'Push the authorization request (RFC 9126 PAR) when the IdP offers it. An IdP that requires PAR gets it anyway.',
    parse: parseBoolean,
  }),
  oidcAllowedTids: optional({
    flag: 'oidc_allowed_tids', env: 'OIDC_ALLOWED_TIDS', group: 'OIDC', valueName: '<ids>', list: true,
    description: 'Entra ID multi-tenant issuers (`/common/v2.0`, `/organizations/v2.0`): the directory ids (`tid`) whose users may log in, comma separated, or `*` for any.',
    parse: optionalOf(parseTidList),
  }),
  allowedOrigins: optional({
    flag: 'allowed_origins', env: 'ALLOWED_ORIGINS', group: 'OIDC', valueName: '<origins>', list: true,
    description: 'Comma-separated origins (scheme://host[:port]) accepted for return_to and CSRF Origin checks, for every client.',
    parse: optionalOf(parseOriginList),
  }),
  oidcTimeout: withDefault({
    flag: 'oidc_timeout', env: 'OIDC_TIMEOUT', group: 'OIDC', valueName: '<duration>', default: '10s',
    description: 'Timeout of every call to an identity provider. A refresh renews its cross-instance lease no longer than five times this plus a second (the most IdP calls one refresh makes: discovery, the grant, the key set and one refetch of it, userinfo).',
    parse: durationMs(100, '100ms'),
  }),
  oidcAllowInsecureIssuer: withDefault({
    flag: 'oidc_allow_insecure_issuer', env: 'OIDC_ALLOW_INSECURE_ISSUER', group: 'OIDC', valueName: '[=<bool>]', switch: true, default: 'false',
    description: 'Development only: allow http:// issuers (the demo IdP, tests). Refused in production.',
    parse: parseBoolean,
  }),

  // Targets and limits
  maxBodySize: withDefault({
    flag: 'max_body_size', env: 'MAX_BODY_SIZE', group: 'Targets and limits', valueName: '<size>', default: '10mb',
    description: 'Largest request body accepted (e.g. 512kb, 10mb, 1gb, or bytes).',
    parse: parseSize,
  }),
  maxHeaderSize: withDefault({
    flag: 'max_header_size', env: 'MAX_HEADER_SIZE', group: 'Targets and limits', valueName: '<size>', default: '16kb',
    description: 'Largest request header section accepted.',
    parse: parseSize,
  }),
  directoryUrl: optional({
    flag: 'directory_url', env: 'DIRECTORY_URL', group: 'Targets and limits', valueName: '<file|url>[,...]', list: true,
    description:
      'Service directory for targets whose `url` is an ADSP service URN (`urn:ads:namespace:service[:api]`): a YAML/JSON file or an http(s) URL (e.g. ADSP\'s `/directory/v2/namespaces/<namespace>/entries`) listing `{urn, url}` entries; several are merged (see docs/clients-and-tenants.md).',
    parse: parseDirectorySources,
  }),
  directoryRefresh: withDefault({
    flag: 'directory_refresh', env: 'DIRECTORY_REFRESH', group: 'Targets and limits', valueName: '<duration>', default: '60s',
    description: 'How often the service directory is read again; a changed URL applies to the requests that start after.',
    parse: durationMs(100, '100ms'),
  }),
  loginRateLimit: withDefault({
    flag: 'login_rate_limit', env: 'LOGIN_RATE_LIMIT', group: 'Targets and limits', valueName: '<n>', default: '60',
    description: 'Login starts, and separately login callbacks, accepted per client IP per minute (then 429); 0 disables the limit.',
    parse: integer(0, 1_000_000),
  }),
};

export type OptionTable = typeof optionTable;
export type OptionKey = keyof OptionTable;
type ValueOf<D> = D extends DefaultedOption<infer T> ? T : D extends OptionalOption<infer T> ? T | undefined : never;
/** The parsed value of every option (defaulted options are never undefined). */
export type OptionValues = { [K in OptionKey]: ValueOf<OptionTable[K]> };

export const optionKeys = Object.keys(optionTable) as OptionKey[];

export function optionDef(key: OptionKey): OptionDef {
  return optionTable[key] as OptionDef;
}

const byFlag = new Map<string, OptionKey>(optionKeys.map((key) => [optionTable[key].flag, key]));

/** Finds an option by flag or config-file key, in underscore or hyphen spelling. */
export function optionByName(name: string): OptionKey | undefined {
  return byFlag.get(name.replaceAll('-', '_'));
}

export function versionText(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { name?: string; version?: string };
  return `${pkg.name ?? 'token-handler'} ${pkg.version ?? 'unknown'}`;
}

export const GROUPS: readonly OptionGroup[] = ['Server', 'Cookies and CSRF', 'Sessions and secrets', 'Database', 'OIDC', 'Targets and limits'];

/** `--help`: every flag with its environment variable and default, grouped as in the docs. */
export function helpText(): string {
  const lines = [
    'Usage: token-handler [options]',
    '',
    'Every option can also be set by its environment variable, in a token_handler.env file in the',
    'working directory, or in the --config file. Precedence: flag > environment > token_handler.env >',
    'config file > default. Flags are also accepted with hyphens (--oidc-issuer).',
  ];
  for (const group of GROUPS) {
    lines.push('', `${group}:`);
    for (const key of optionKeys) {
      const def = optionDef(key);
      if (def.group !== group) continue;
      const value = def.valueName.startsWith('[') ? def.valueName : ` ${def.valueName}`;
      const shownDefault = def.default === undefined ? '' : `  (default ${JSON.stringify(def.default)})`;
      lines.push(`  --${def.flag}${value}`, `      env ${def.env}${shownDefault}`, `      ${def.description}`);
    }
  }
  lines.push('', 'Other:', '  --help, -h      show this help', '  --version, -v   print the version', '');
  return lines.join('\n');
}
