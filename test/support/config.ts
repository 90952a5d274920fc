import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClientConfig, Config, TargetConfig } from '../../src/config/types.ts';

/** A fresh temporary directory for a test's files (SQLite databases, config files). */
export function tempDir(prefix = 'th-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function testClient(overrides: Partial<ClientConfig> & Pick<ClientConfig, 'issuer'>): ClientConfig {
  return {
    id: 'default',
    clientId: 'token-handler',
    clientSecret: 'token-handler-secret',
    scopes: ['openid', 'profile', 'email', 'offline_access', 'roles'],
    postLoginRedirectUrl: '/',
    allowedOrigins: [],
    extraAuthParams: { prompt: 'consent' },
    disableVerifyHost: false,
    ...overrides,
  };
}

export function testTarget(overrides: Partial<TargetConfig> & Pick<TargetConfig, 'id' | 'url'>): TargetConfig {
  return {
    mountPath: `/token-handler/v1/targets/${overrides.id}`,
    clientId: 'default',
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    tokenRequirement: 'user',
    timeoutMs: 30_000,
    headers: {},
    passSetCookie: false,
    allowMethodOverride: false,
    pool: { connections: 128, keepAliveTimeoutMs: 60_000, keepAliveMaxTimeoutMs: 600_000 },
    websocket: false,
    // As buildTargets decides: a target that sends no token lets cross-site GETs through.
    csrf: { mode: 'token', allMethods: false, allowCrossSiteGet: overrides.tokenRequirement === 'none' },
    goErrors: false,
    redirectBareMount: false,
    ...overrides,
  };
}

/** A complete development Config on a temporary SQLite file; tests override what they exercise. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  const base: Config = {
    isProduction: false,
    logLevel: 'silent',
    listen: { host: '127.0.0.1', port: 0 },
    basePath: '/token-handler/v1',
    trustProxy: false,
    cookie: { name: 'session', sameSite: 'lax', secure: 'auto' },
    csrf: { cookieName: 'XSRF-TOKEN', headerName: 'X-XSRF-TOKEN' },
    tenantHeader: 'X-ADSP-TENANT',
    session: {
      authSecrets: [Buffer.from('test-auth-secret-0123456789abcdef')],
      encSecrets: [Buffer.from('test-enc-secret-0123456789abcdef')],
      dbKeys: [Buffer.from('test-db-key-0123456789abcdef012345')],
      absoluteLifetimeSec: 8 * 3600,
      idleLifetimeSec: 3600,
      sweepIntervalSec: 60,
      sweepBatchSize: 1000,
      refreshSkewSec: 30,
    },
    db: { type: 'sqlite', path: join(tempDir(), 'sessions.db') },
    oidc: { timeoutMs: 5000, allowInsecureIssuer: true },
    clients: [],
    targets: [],
    legacyRoutes: true,
    limits: { maxBodyBytes: 10 * 1024 * 1024, maxHeaderBytes: 16 * 1024 },
    rateLimit: { loginPerMinute: 0 },
  };
  return { ...base, ...overrides };
}
