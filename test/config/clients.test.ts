import { describe, expect, it } from 'vitest';
import { OIDC, load, problemsOf, tempDir, writeFiles } from './helpers.ts';

const yaml = (text: string) => writeFiles(tempDir(), { 'th.yaml': text });

describe('clients from the config file', () => {
  it('builds every field, secrets from env var (or token_handler.env) and from a file', () => {
    const dir = yaml(`
allowed_origins: https://shared.example.com
clients:
  - id: partners
    issuer: https://login.partner.example.org
    clientId: th-partners
    clientSecretFile: secrets/partners.txt
    scopes: [openid, profile]
    authCallbackUrl: https://app.example.com/token-handler/v1/clients/partners/callback
    postLoginRedirectUrl: /app
    postLogoutRedirectUrl: https://partners.example.com/
    failureRedirectUrl: /failed
    allowedOrigins: [https://partners.example.com]
    extraAuthParams: { prompt: login, max_age: 300 }
    tenant: partners
  - id: from-env
    issuer: https://idp.example.com
    clientId: th-env
    clientSecretEnv: FROM_ENV_SECRET
  - id: from-env-file
    issuer: https://idp.example.com
    clientId: th-env-file
    clientSecretEnv: FROM_ENV_FILE_SECRET
  - id: self-service
    issuer: https://idp.example.com
    clientId: th-self
    registered: true
`);
    writeFiles(dir, { 'secrets/partners.txt': '  partner-secret \n', 'token_handler.env': 'FROM_ENV_FILE_SECRET=file-secret\n' });
    const { config, warnings } = load(['--config', 'th.yaml'], { cwd: dir, env: { FROM_ENV_SECRET: 'env-secret' } });
    expect(config.clients).toEqual([
      {
        id: 'partners',
        issuer: 'https://login.partner.example.org',
        clientId: 'th-partners',
        clientSecret: 'partner-secret',
        scopes: ['openid', 'profile'],
        redirectUrl: 'https://app.example.com/token-handler/v1/clients/partners/callback',
        postLoginRedirectUrl: '/app',
        postLogoutRedirectUrl: 'https://partners.example.com/',
        failureRedirectUrl: '/failed',
        allowedOrigins: ['https://shared.example.com', 'https://partners.example.com'],
        extraAuthParams: { prompt: 'login', max_age: '300' },
        tenant: 'partners',
        disableVerifyHost: false,
      },
      expect.objectContaining({ id: 'from-env', clientSecret: 'env-secret', scopes: ['openid', 'profile', 'email', 'offline_access'], postLoginRedirectUrl: '/' }),
      expect.objectContaining({ id: 'from-env-file', clientSecret: 'file-secret' }),
      expect.objectContaining({ id: 'self-service' }),
    ]);
    expect(config.clients[3]?.clientSecret).toBeUndefined();
    // An env-file entry named by clientSecretEnv is not "unknown".
    expect(warnings.join('\n')).not.toContain('FROM_ENV_FILE_SECRET');
  });

  it('merges a file entry with id default under the --oidc_* options, flags winning', () => {
    const dir = yaml(`
clients:
  - id: default
    issuer: https://file-idp.example.com
    clientId: from-file
    registered: true
    postLoginRedirectUrl: /from-file
    extraAuthParams: { audience: api }
`);
    const { config } = load(['--config', 'th.yaml', '--oidc_issuer', 'https://flag-idp.example.com'], { cwd: dir });
    expect(config.clients).toEqual([
      expect.objectContaining({ id: 'default', issuer: 'https://flag-idp.example.com', clientId: 'from-file', postLoginRedirectUrl: '/from-file', extraAuthParams: { audience: 'api' } }),
    ]);
    expect(config.clients[0]?.clientSecret).toBeUndefined();
  });

  it('requires the flag client secret unless registered', () => {
    expect(problemsOf(['--oidc_issuer', 'https://idp.example.com', '--oidc_client_id', 'x'])).toEqual([
      'client "default": --oidc_client_secret (OIDC_CLIENT_SECRET) is required, unless the client authenticates with a private key (--oidc_private_key_file) or the config file marks it registered: true',
    ]);
  });

  it('refuses oidc options without an issuer', () => {
    expect(problemsOf([], { env: { OIDC_CLIENT_ID: 'x' } })).toEqual([
      '--oidc_client_id (from env OIDC_CLIENT_ID): set --oidc_issuer (OIDC_ISSUER) too, or define the "default" client in the config file',
    ]);
  });

  it('takes --oidc_scopes as the default scopes of config-file clients, without an --oidc_issuer (as documented)', () => {
    const dir = yaml(`
clients:
  - id: partners
    issuer: https://idp.example.com
    clientId: th-partners
    clientSecret: s
  - id: own
    issuer: https://idp.example.com
    clientId: th-own
    clientSecret: s
    scopes: [openid]
`);
    const { config } = load(['--config', 'th.yaml', '--oidc_scopes', 'openid email offline_access'], { cwd: dir });
    expect(config.clients.map((c) => [c.id, c.scopes])).toEqual([
      ['partners', ['openid', 'email', 'offline_access']],
      ['own', ['openid']],
    ]);
    // Without config-file clients it would configure nothing: still refused.
    expect(problemsOf(['--oidc_scopes', 'openid email'])).toEqual([
      '--oidc_scopes (from flag --oidc_scopes): set --oidc_issuer (OIDC_ISSUER) too, or define the "default" client in the config file',
    ]);
  });

  it('reports an incomplete default client once, not again as an unknown client of its targets', () => {
    const dir = writeFiles(tempDir(), { 'proxy.yaml': 'proxies:\n  - endpoint: /proxy\n    target: http://127.0.0.1:9081\n' });
    expect(problemsOf(['--oidc-issuer', 'https://idp.example.com', '--proxy_config', 'proxy.yaml'], { cwd: dir })).toEqual([
      'client "default": clientId is required (--oidc_client_id / OIDC_CLIENT_ID), unless the client is registered: true',
      'client "default": --oidc_client_secret (OIDC_CLIENT_SECRET) is required, unless the client authenticates with a private key (--oidc_private_key_file) or the config file marks it registered: true',
    ]);
  });

  it('names key paths for unknown keys, missing fields and bad values', () => {
    const dir = yaml(`
clients:
  - id: ok
    issuer: https://idp.example.com
    clientId: ok
    clientSecret: s
  - id: bad
    clientId: b
    clientSecret: s
    colour: blue
  - id: worse
    issuer: ftp://idp.example.com
    clientId: w
    clientSecretEnv: MISSING_SECRET_VAR
    scopes: profile
    postLoginRedirectUrl: //evil.example.com
    extraAuthParams: { redirect_uri: https://evil.example.com }
  - id: "bad id!"
    issuer: https://idp.example.com
  - id: ok
    issuer: https://idp.example.com
    clientId: ok2
    clientSecret: s
`);
    expect(problemsOf(['--config', 'th.yaml'], { cwd: dir })).toEqual([
      'config file clients[1]: unknown key "colour"; allowed: id, issuer, clientId, clientSecret, clientSecretEnv, clientSecretFile, registered, scopes, authCallbackUrl, redirectUrl, postLoginRedirectUrl, postLogoutRedirectUrl, failureRedirectUrl, extraAuthParams, roleClaims, userinfo, endSessionUrl, privateKeyFile, privateKeyId, certificateFile, par, allowedTids, tenantName, allowedOrigins, tenant, disableVerifyHost, tenants, adminRole, adminRoleClaim, adminTokenAudience, endSessionMethod',
      'config file clients[2].issuer "ftp://idp.example.com": must be an http(s) URL',
      'config file clients[2].clientSecretEnv: environment variable "MISSING_SECRET_VAR" is not set',
      'config file clients[2].postLoginRedirectUrl "//evil.example.com": must be a path like /app or an absolute http(s) URL',
      'config file clients[2].scopes "profile": must include openid',
      'config file clients[2].extraAuthParams.redirect_uri: is set by the token handler itself and cannot be overridden',
      'config file clients[3].id "bad id!": must be 1-64 characters of A-Z a-z 0-9 . _ -',
      'config file clients[4].id "ok": duplicate client id (also config file clients[0])',
    ]);
  });

  it('reports a missing issuer and wrong types', () => {
    const dir = yaml('clients:\n  - id: a\n    clientId: 5\n    disableVerifyHost: "yes"\n');
    expect(problemsOf(['--config', 'th.yaml'], { cwd: dir })).toEqual([
      'config file clients[0].clientId: must be a string',
      'config file clients[0].disableVerifyHost: must be a boolean',
    ]);
    const missingIssuer = yaml('clients:\n  - id: a\n    clientId: a\n    clientSecret: s\n');
    expect(problemsOf(['--config', 'th.yaml'], { cwd: missingIssuer })).toEqual(['client "a": issuer is required (config file clients[0].issuer)']);
  });

  it('needs oidc_allow_insecure_issuer for an http issuer in development, unless it is on a loopback host', () => {
    const argv = ['--oidc_issuer', 'http://idp.internal:3000', '--oidc_client_id', 'a', '--oidc_client_secret', 's'];
    expect(problemsOf(argv)[0]).toMatch(/an http:\/\/ issuer needs --oidc_allow_insecure_issuer \(development only/);
    expect(load([...argv, '--oidc_allow_insecure_issuer']).config.clients[0]?.issuer).toBe('http://idp.internal:3000');
    // A local Keycloak in development: accepted with a warning (issue 21.4).
    for (const issuer of ['http://localhost:8080/realms/dev', 'http://127.0.0.1:8080/realms/dev', 'http://[::1]:8080/realms/dev', 'http://keycloak.localhost/realms/dev']) {
      const loaded = load(['--oidc_issuer', issuer, '--oidc_client_id', 'a', '--oidc_client_secret', 's']);
      expect(loaded.config.clients[0]?.issuer).toBe(issuer);
      expect(loaded.warnings.join('\n')).toMatch(/an http:\/\/ issuer on this machine, accepted outside production/);
    }
    // Names that only look local are not loopback.
    for (const issuer of ['http://localhost.example.com', 'http://127.0.0.1.nip.io', 'http://10.0.0.1']) {
      expect(problemsOf(['--oidc_issuer', issuer, '--oidc_client_id', 'a', '--oidc_client_secret', 's'])[0], issuer).toMatch(/needs --oidc_allow_insecure_issuer/);
    }
    // Production refuses every http issuer.
    const production = ['--is_production', '--session_auth_secret', 'A'.repeat(32), '--session_enc_secret', 'E'.repeat(32), '--session_db_key', 'D'.repeat(32), '--cookie_domain', 'app.example.com'];
    expect(problemsOf([...production, '--oidc_issuer', 'http://localhost:8080/realms/dev', '--oidc_client_id', 'a', '--oidc_client_secret', 's']).join('\n')).toMatch(
      /the issuer must be https in production/,
    );
  });

  it('keeps issuer and redirect URLs exactly as written (the IdP compares strings)', () => {
    const { config } = load([...OIDC.slice(2), '--oidc_issuer', 'https://idp.example.com/realms/a/', '--oidc_redirect_url', 'https://App.example.com/cb']);
    expect(config.clients[0]).toMatchObject({ issuer: 'https://idp.example.com/realms/a/', redirectUrl: 'https://App.example.com/cb' });
  });

  it('refuses two secret sources and a secret on a registered client', () => {
    const dir = yaml('clients:\n  - id: a\n    issuer: https://idp.example.com\n    clientId: a\n    clientSecret: s\n    clientSecretEnv: X\n  - id: b\n    issuer: https://idp.example.com\n    clientId: b\n    clientSecretFile: nope.txt\n');
    expect(problemsOf(['--config', 'th.yaml'], { cwd: dir })).toEqual([
      'config file clients[0]: set only one of clientSecret, clientSecretEnv',
      `config file clients[1].clientSecretFile "${dir}/nope.txt": cannot be read (ENOENT)`,
    ]);
  });

  it('tenantName: the name of a tenant, on a tenant-scoped client or one entry of tenants', () => {
    const dir = yaml(`
clients:
  - id: one
    issuer: https://idp.example.com
    clientId: one
    clientSecret: s
    tenant: "urn:ads:platform:tenant-service:v2:/tenants/one"
    tenantName: One
  - id: many
    clientSecret: s
    tenants:
      "urn:t:a": { issuer: "https://a.example.com", clientId: a, tenantName: alpha }
      "urn:t:b": { issuer: "https://b.example.com", clientId: b }
`);
    const { config } = load(['--config', 'th.yaml'], { cwd: dir });
    expect(config.clients.find((c) => c.id === 'one')?.tenantName).toBe('One');
    const many = config.clients.find((c) => c.id === 'many')!;
    expect(many.tenants?.['urn:t:a']?.tenantName).toBe('alpha');
    expect(many.tenants?.['urn:t:b']?.tenantName).toBeUndefined();

    const bad = yaml(`
clients:
  - id: lonely
    issuer: https://idp.example.com
    clientId: l
    clientSecret: s
    tenantName: lonely
  - id: spaced
    issuer: https://idp.example.com
    clientId: sp
    clientSecret: s
    tenant: t
    tenantName: "two words"
  - id: shared
    clientSecret: s
    tenantName: everyone
    tenants:
      "urn:t:a": { issuer: "https://a.example.com", clientId: a }
`);
    expect(problemsOf(['--config', 'th.yaml'], { cwd: bad })).toEqual([
      'config file clients[0].tenantName: names a tenant; set tenant (or use tenants) too',
      'config file clients[1].tenantName: must be a non-empty value without whitespace',
      'config file clients[2].tenantName: a name names one tenant; set it in that tenant\'s entry of tenants',
    ]);
  });
});
