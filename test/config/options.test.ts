import { copyFileSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseArgv, helpOrVersion } from '../../src/config/cli.ts';
import { configurationMarkdown } from '../../src/config/docs.ts';
import { ConfigError } from '../../src/config/errors.ts';
import { helpText, optionDef, optionKeys, versionText } from '../../src/config/options.ts';
import type { OptionKey } from '../../src/config/options.ts';
import type { Config } from '../../src/config/types.ts';
import { selfSigned } from '../support/tls.ts';
import { OIDC, load, problemsOf, tempDir, writeFiles } from './helpers.ts';

/** The go-token-handler flag table (its typos fixed: DB_NAME, SESSION_OLD_DB_KEY): a contract. */
const SEED_OPTIONS: [flag: string, env: string][] = [
  ['cookie_domain', 'COOKIE_DOMAIN'],
  ['cookie_name', 'COOKIE_NAME'],
  ['db_host', 'DB_HOST'],
  ['db_name', 'DB_NAME'],
  ['db_password', 'DB_PASSWORD'],
  ['db_type', 'DB_TYPE'],
  ['db_username', 'DB_USERNAME'],
  ['is_production', 'IS_PRODUCTION'],
  ['listen_addr', 'LISTEN_ADDR'],
  ['log_level', 'LOG_LEVEL'],
  ['oidc_client_id', 'OIDC_CLIENT_ID'],
  ['oidc_client_secret', 'OIDC_CLIENT_SECRET'],
  ['oidc_issuer', 'OIDC_ISSUER'],
  ['oidc_post_login_redirect_url', 'OIDC_POST_LOGIN_REDIRECT_URL'],
  ['oidc_post_logout_redirect_url', 'OIDC_POST_LOGOUT_REDIRECT_URL'],
  ['oidc_redirect_url', 'OIDC_REDIRECT_URL'],
  ['proxy_config', 'PROXY_CONFIG'],
  ['session_auth_secret', 'SESSION_AUTH_SECRET'],
  ['session_db_key', 'SESSION_DB_KEY'],
  ['session_enc_secret', 'SESSION_ENC_SECRET'],
  ['session_old_auth_secret', 'SESSION_OLD_AUTH_SECRET'],
  ['session_old_db_key', 'SESSION_OLD_DB_KEY'],
  ['session_old_enc_secret', 'SESSION_OLD_ENC_SECRET'],
];

interface Sample {
  /** A valid, non-default value. */
  value: string;
  /** Other flags the value needs to be valid (given as flags in every variant). */
  extras?: string[];
  get: (config: Config) => unknown;
  want: unknown;
}

const dir = tempDir();
const file = (name: string) => join(dir, name);
const firstClient = (config: Config) => config.clients[0];

/**
 * One sample per option. Typed as Record<OptionKey, Sample>: adding an option to the table without a
 * sample here fails the type check, and then the loops below test it by flag, hyphen flag and env.
 */
const SAMPLES: Record<OptionKey, Sample> = {
  isProduction: {
    value: 'true',
    extras: ['--session_auth_secret', 'A'.repeat(32), '--session_enc_secret', 'E'.repeat(32), '--session_db_key', 'D'.repeat(32)],
    get: (c) => [c.isProduction, c.cookie.secure],
    want: [true, true],
  },
  logLevel: { value: 'debug', get: (c) => c.logLevel, want: 'debug' },
  listenAddr: { value: '127.0.0.1:8080', get: (c) => c.listen, want: { host: '127.0.0.1', port: 8080 } },
  workers: { value: '3', get: (c) => c.workers, want: 3 },
  metricsListenAddr: { value: ':9100', get: (c) => c.metricsListen, want: { host: '0.0.0.0', port: 9100 } },
  forwardAuthListenAddr: { value: '127.0.0.1:4181', get: (c) => c.forwardAuthListen, want: { host: '127.0.0.1', port: 4181 } },
  forwardAuthSocketMode: { value: '0600', extras: ['--forward_auth_listen_addr', 'unix:/run/th/fa.sock'], get: (c) => c.forwardAuthSocketMode, want: 0o600 },
  forwardAuthAllow: { value: '10.0.0.0/8, 127.0.0.1,loopback', extras: ['--forward_auth_listen_addr', '127.0.0.1:4181'], get: (c) => c.forwardAuthAllow, want: ['10.0.0.0/8', '127.0.0.1', 'loopback'] },
  basePath: { value: '/bff/v2', get: (c) => c.basePath, want: '/bff/v2' },
  publicUrl: { value: 'https://app.example.com', get: (c) => c.publicUrl, want: 'https://app.example.com' },
  trustProxy: { value: '10.0.0.0/8, 127.0.0.1', get: (c) => c.trustProxy, want: ['10.0.0.0/8', '127.0.0.1'] },
  tlsCert: { value: file('cert.pem'), extras: ['--tls_key', file('key.pem')], get: (c) => c.tls, want: { certFile: file('cert.pem'), keyFile: file('key.pem') } },
  tlsKey: { value: file('key.pem'), extras: ['--tls_cert', file('cert.pem')], get: (c) => c.tls, want: { certFile: file('cert.pem'), keyFile: file('key.pem') } },
  legacyRoutes: { value: 'false', get: (c) => c.legacyRoutes, want: false },
  readyzStrict: { value: 'true', get: (c) => c.readyzStrict, want: true },
  config: { value: file('config.yaml'), get: (c) => c.logLevel, want: 'trace' },
  proxyConfig: { value: file('proxy.yaml'), extras: OIDC, get: (c) => c.targets.map((t) => t.mountPath), want: ['/proxy'] },
  cookieName: { value: 'sid', get: (c) => c.cookie.name, want: 'sid' },
  cookieDomain: { value: 'example.com', get: (c) => c.cookie.domain, want: 'example.com' },
  cookieSameSite: { value: 'strict', get: (c) => c.cookie.sameSite, want: 'strict' },
  cookieSecure: { value: 'true', get: (c) => c.cookie.secure, want: true },
  csrfCookieName: { value: 'CSRF', get: (c) => c.csrf.cookieName, want: 'CSRF' },
  csrfHeaderName: { value: 'X-CSRF', get: (c) => c.csrf.headerName, want: 'X-CSRF' },
  csrfMode: { value: 'origin', get: (c) => c.csrf.mode, want: 'origin' },
  tenantHeader: { value: 'X-Tenant', get: (c) => c.tenantHeader, want: 'X-Tenant' },
  sessionAuthSecret: { value: 'a'.repeat(32), get: (c) => c.session.authSecrets.map(String), want: ['a'.repeat(32)] },
  sessionOldAuthSecret: { value: 'b'.repeat(64), get: (c) => c.session.authSecrets.map((s) => s.length), want: [32, 64] },
  sessionEncSecret: { value: `hex:${'00'.repeat(24)}`, get: (c) => c.session.encSecrets, want: [Buffer.alloc(24)] },
  sessionOldEncSecret: {
    value: 'c'.repeat(16),
    extras: ['--session_enc_secret', 'e'.repeat(32)],
    get: (c) => c.session.encSecrets.map(String),
    want: ['e'.repeat(32), 'c'.repeat(16)],
  },
  sessionDbKey: { value: `base64:${Buffer.alloc(32, 7).toString('base64')}`, get: (c) => c.session.dbKeys, want: [Buffer.alloc(32, 7)] },
  sessionOldDbKey: {
    value: 'o'.repeat(32),
    extras: ['--session_db_key', 'n'.repeat(32)],
    get: (c) => c.session.dbKeys.map(String),
    want: ['n'.repeat(32), 'o'.repeat(32)],
  },
  sessionAbsoluteLifetime: { value: '12h', get: (c) => c.session.absoluteLifetimeSec, want: 43_200 },
  sessionIdleLifetime: { value: '15m', get: (c) => c.session.idleLifetimeSec, want: 900 },
  sessionSweepInterval: { value: '1h30m', get: (c) => c.session.sweepIntervalSec, want: 5400 },
  sessionSweepBatchSize: { value: '50', get: (c) => c.session.sweepBatchSize, want: 50 },
  maxSessionsPerUser: { value: '3', get: (c) => c.session.maxPerUser, want: 3 },
  refreshSkew: { value: '90', get: (c) => c.session.refreshSkewSec, want: 90 },
  sessionCacheTtl: { value: '1500ms', get: (c) => c.session.cacheTtlMs, want: 1500 },
  dbSchema: { value: 'token_handler', get: (c) => c.db.schema, want: 'token_handler' },
  redisKeyPrefix: { value: 'app1:', get: (c) => c.db.redisKeyPrefix, want: 'app1:' },
  dbType: { value: 'postgresql', extras: ['--db_url', 'postgres://db/th'], get: (c) => c.db.type, want: 'postgresql' },
  dbPath: { value: file('sessions.db'), get: (c) => c.db.path, want: file('sessions.db') },
  dbUrl: { value: 'postgresql://th:pw@db:5432/th', get: (c) => c.db.url, want: 'postgresql://th:pw@db:5432/th' },
  dbHost: { value: 'db.internal', get: (c) => c.db.host, want: 'db.internal' },
  dbPort: { value: '5433', get: (c) => c.db.port, want: 5433 },
  dbName: { value: 'token_handler', get: (c) => c.db.name, want: 'token_handler' },
  dbUsername: { value: 'th', get: (c) => c.db.username, want: 'th' },
  dbPassword: { value: 'db-password', get: (c) => c.db.password, want: 'db-password' },
  redisUrl: { value: 'redis://cache:6379/0', get: (c) => c.db.redisUrl, want: 'redis://cache:6379/0' },
  oidcIssuer: {
    value: 'https://login.example.org/realms/x',
    extras: ['--oidc_client_id', 'th', '--oidc_client_secret', 's'],
    get: (c) => firstClient(c)?.issuer,
    want: 'https://login.example.org/realms/x',
  },
  oidcClientId: { value: 'my-client', extras: ['--oidc_issuer', 'https://idp.example.com', '--oidc_client_secret', 's'], get: (c) => firstClient(c)?.clientId, want: 'my-client' },
  oidcClientSecret: { value: 'shh', extras: ['--oidc_issuer', 'https://idp.example.com', '--oidc_client_id', 'th'], get: (c) => firstClient(c)?.clientSecret, want: 'shh' },
  oidcRedirectUrl: { value: 'https://app.example.com/callback', extras: OIDC, get: (c) => firstClient(c)?.redirectUrl, want: 'https://app.example.com/callback' },
  oidcPostLoginRedirectUrl: { value: '/app', extras: OIDC, get: (c) => firstClient(c)?.postLoginRedirectUrl, want: '/app' },
  oidcPostLogoutRedirectUrl: { value: 'https://app.example.com/bye', extras: OIDC, get: (c) => firstClient(c)?.postLogoutRedirectUrl, want: 'https://app.example.com/bye' },
  oidcFailureRedirectUrl: { value: '/login-failed', extras: OIDC, get: (c) => firstClient(c)?.failureRedirectUrl, want: '/login-failed' },
  oidcScopes: { value: 'openid,email', extras: OIDC, get: (c) => firstClient(c)?.scopes, want: ['openid', 'email'] },
  allowedOrigins: {
    value: 'https://a.example.com, https://b.example.com:8443',
    extras: OIDC,
    get: (c) => firstClient(c)?.allowedOrigins,
    want: ['https://a.example.com', 'https://b.example.com:8443'],
  },
  oidcEndSessionMethod: { value: 'post', extras: OIDC, get: (c) => firstClient(c)?.endSessionMethod, want: 'post' },
  oidcAuthParams: {
    value: 'audience=https%3A%2F%2Fapi.example.com&acr_values=mfa',
    extras: OIDC,
    get: (c) => firstClient(c)?.extraAuthParams,
    want: { audience: 'https://api.example.com', acr_values: 'mfa' },
  },
  oidcRoleClaims: {
    value: 'https://example.com/roles, resource_access["my.app"].roles',
    extras: OIDC,
    get: (c) => firstClient(c)?.roleClaims,
    want: [['https://example.com/roles'], ['resource_access', 'my.app', 'roles']],
  },
  oidcUserinfo: { value: 'true', extras: OIDC, get: (c) => firstClient(c)?.userinfo, want: true },
  oidcEndSessionUrl: {
    value: 'https://tenant.auth0.com/v2/logout?client_id={client_id}&returnTo={post_logout_redirect_uri}',
    extras: OIDC,
    get: (c) => firstClient(c)?.endSessionUrl,
    want: 'https://tenant.auth0.com/v2/logout?client_id={client_id}&returnTo={post_logout_redirect_uri}',
  },
  oidcPrivateKeyFile: {
    value: file('client-key.pem'),
    extras: ['--oidc_issuer', 'https://idp.example.com', '--oidc_client_id', 'th'],
    get: (c) => [firstClient(c)?.clientKey?.alg, firstClient(c)?.clientSecret],
    want: ['ES256', undefined],
  },
  oidcPrivateKeyId: {
    value: 'key-2026',
    extras: ['--oidc_issuer', 'https://idp.example.com', '--oidc_client_id', 'th', '--oidc_private_key_file', file('client-key.pem')],
    get: (c) => firstClient(c)?.clientKey?.kid,
    want: 'key-2026',
  },
  oidcCertificateFile: {
    value: file('client-cert.pem'),
    extras: ['--oidc_issuer', 'https://idp.example.com', '--oidc_client_id', 'th', '--oidc_private_key_file', file('client-key.pem')],
    get: (c) => typeof firstClient(c)?.clientKey?.x5tS256,
    want: 'string',
  },
  oidcPar: { value: 'true', extras: OIDC, get: (c) => firstClient(c)?.par, want: true },
  oidcAllowedTids: {
    value: '72f988bf-86f1-41af-91ab-2d7cd011db47,f8cdef31-a31e-4b4a-93e4-5f571e91255a',
    extras: OIDC,
    get: (c) => firstClient(c)?.allowedTids,
    want: ['72f988bf-86f1-41af-91ab-2d7cd011db47', 'f8cdef31-a31e-4b4a-93e4-5f571e91255a'],
  },
  oidcTimeout: { value: '2500ms', get: (c) => c.oidc.timeoutMs, want: 2500 },
  oidcAllowInsecureIssuer: { value: 'true', get: (c) => c.oidc.allowInsecureIssuer, want: true },
  maxBodySize: { value: '1gb', get: (c) => c.limits.maxBodyBytes, want: 1024 ** 3 },
  maxHeaderSize: { value: '32kb', get: (c) => c.limits.maxHeaderBytes, want: 32 * 1024 },
  loginRateLimit: { value: '0', get: (c) => c.rateLimit.loginPerMinute, want: 0 },
  configWatch: { value: 'false', get: (c) => c.configWatch, want: false },
  directoryUrl: { value: 'https://directory.example/directory/v2/namespaces/platform/entries', get: (c) => c.directory?.sources, want: ['https://directory.example/directory/v2/namespaces/platform/entries'] },
  directoryRefresh: { value: '5m', extras: ['--directory_url', 'https://directory.example/entries'], get: (c) => c.directory?.refreshMs, want: 300_000 },
};

beforeAll(() => {
  writeFiles(dir, {
    'cert.pem': 'not really a certificate',
    'key.pem': 'not really a key',
    'config.yaml': 'log_level: trace\n',
    'proxy.yaml': 'proxies:\n  - endpoint: /proxy\n    target: http://127.0.0.1:9081\n',
  });
  // A real P-256 key and its certificate, for the private_key_jwt options.
  const { certFile, keyFile } = selfSigned();
  copyFileSync(keyFile, file('client-key.pem'));
  copyFileSync(certFile, file('client-cert.pem'));
});

describe('every option in the table', () => {
  describe.each(optionKeys.map((key) => [optionDef(key).flag, key] as const))('--%s', (flag, key) => {
    const sample = SAMPLES[key];
    const def = optionDef(key);
    const extras = sample.extras ?? [];

    it('is set by its flag (--name=value and --name value)', () => {
      expect(sample.get(load([...extras, `--${flag}=${sample.value}`]).config)).toEqual(sample.want);
      expect(sample.get(load([...extras, `--${flag}`, sample.value]).config)).toEqual(sample.want);
    });

    it('is set by the hyphen spelling of its flag', () => {
      expect(sample.get(load([...extras, `--${flag.replaceAll('_', '-')}=${sample.value}`]).config)).toEqual(sample.want);
    });

    it(`is set by its environment variable ${def.env}`, () => {
      expect(sample.get(load(extras, { env: { [def.env]: sample.value } }).config)).toEqual(sample.want);
    });

    it('is not already the default (so the sample proves the wiring)', () => {
      let withoutIt: unknown;
      try {
        withoutIt = sample.get(load(extras).config);
      } catch (error) {
        // Required by its companions: loading without it must fail for its sake, naming it; any other
        // failure is a bug of the sample (or of loading) and fails the test.
        if (!(error instanceof ConfigError)) throw error;
        expect(error.problems.join('\n'), `refused without --${flag}, for another reason`).toContain(`--${flag}`);
        return;
      }
      expect(withoutIt).not.toEqual(sample.want);
    });
  });
});

describe('the seed flag table (go-token-handler contract)', () => {
  it.each(SEED_OPTIONS)('has --%s with environment variable %s', (flag, env) => {
    const key = optionKeys.find((candidate) => optionDef(candidate).flag === flag);
    expect(key, `--${flag} missing`).toBeDefined();
    expect(key && optionDef(key).env).toBe(env);
  });

  it('keeps the seed defaults', () => {
    const defaults = Object.fromEntries(optionKeys.map((key) => [optionDef(key).flag, optionDef(key).default]));
    expect(defaults).toMatchObject({
      cookie_domain: 'localhost',
      cookie_name: 'session',
      db_type: 'sqlite',
      listen_addr: ':9080',
      log_level: 'info',
      session_auth_secret: 'my-secret-key-CHANGE-ME-IN-PROD!',
    });
  });

  it('has unique flags and environment variables', () => {
    const flags = optionKeys.map((key) => optionDef(key).flag);
    const envs = optionKeys.map((key) => optionDef(key).env);
    expect(new Set(flags).size).toBe(flags.length);
    expect(new Set(envs).size).toBe(envs.length);
  });
});

describe('help, version and docs', () => {
  it('helpText lists every flag with its environment variable and default', () => {
    const help = helpText();
    for (const [flag, env] of SEED_OPTIONS) {
      expect(help).toContain(`--${flag}`);
      expect(help).toContain(`env ${env}`);
    }
    for (const key of optionKeys) {
      const def = optionDef(key);
      expect(help).toContain(`--${def.flag}`);
      expect(help).toContain(`env ${def.env}`);
      if (def.default !== undefined) expect(help).toContain(`(default ${JSON.stringify(def.default)})`);
    }
  });

  it('helpOrVersion answers --help, -h and --version (with hyphens too) and nothing else', () => {
    expect(helpOrVersion(['--help'])).toBe(helpText());
    expect(helpOrVersion(['--db_type', 'sqlite', '-h'])).toBe(helpText());
    expect(helpOrVersion(['--version'])).toBe(versionText());
    expect(versionText()).toMatch(/^token-handler \d+\.\d+\.\d+/);
    expect(helpOrVersion(['--db-type', 'sqlite'])).toBeUndefined();
  });

  it('docs/configuration.md contains the generated option reference', () => {
    const docs = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    expect(docs).toContain(configurationMarkdown());
  });
});

describe('command line syntax', () => {
  it('takes a switch alone as true and --switch=false as false', () => {
    expect(load(['--legacy_routes=false']).config.legacyRoutes).toBe(false);
    expect(load(['--oidc_allow_insecure_issuer']).config.oidc.allowInsecureIssuer).toBe(true);
  });

  it('takes --workers auto as the available parallelism, defaults to 1, refuses 0 and words', () => {
    expect(load([]).config.workers).toBe(1);
    expect(load(['--workers', 'auto']).config.workers).toBe(availableParallelism());
    expect(load([], { env: { WORKERS: 'AUTO' } }).config.workers).toBe(availableParallelism());
    expect(problemsOf(['--workers', '0'])).toEqual(['--workers "0" (from flag --workers): must be a whole number between 1 and 1024']);
    expect(problemsOf(['--workers', 'many'])).toHaveLength(1);
    expect(problemsOf(['--workers', '2', '--db_path', ':memory:'])).toEqual([
      '--workers "2" (from flag --workers): workers share the session store, and an in-memory SQLite database (:memory:) is one process\'s; use a database file (--db_path)',
    ]);
    expect(load(['--workers', '2', '--db_path', 'sessions.db']).config.workers).toBe(2);
  });

  it('lets the last occurrence win, as Go flag does', () => {
    expect(load(['--log_level', 'warn', '--log-level', 'error']).config.logLevel).toBe('error');
  });

  it('reports unknown options with a suggestion, stray arguments and missing values', () => {
    const { problems } = parseArgv(['--oidc_isuer', 'https://x', 'stray', '--db_type']);
    expect(problems).toEqual([
      'unknown option --oidc_isuer (did you mean --oidc_issuer?); run --help for the list',
      'unexpected argument "stray": token-handler takes only options',
      '--db_type: missing value (<type>)',
    ]);
  });

  it('takes a word after a switch as its value, but not a following option', () => {
    expect(load(['--legacy_routes', 'no']).config.legacyRoutes).toBe(false);
    expect(load(['--oidc_allow_insecure_issuer', '--log_level', 'debug']).config).toMatchObject({ logLevel: 'debug', oidc: { allowInsecureIssuer: true } });
  });
});
