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
      'client "default": --oidc_client_secret (OIDC_CLIENT_SECRET) is required, unless the config file marks the client registered: true',
    ]);
  });

  it('refuses oidc options without an issuer', () => {
    expect(problemsOf([], { env: { OIDC_CLIENT_ID: 'x' } })).toEqual([
      '--oidc_client_id (from env OIDC_CLIENT_ID): set --oidc_issuer (OIDC_ISSUER) too, or define the "default" client in the config file',
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
      'config file clients[1]: unknown key "colour"; allowed: id, issuer, clientId, clientSecret, clientSecretEnv, clientSecretFile, registered, scopes, authCallbackUrl, redirectUrl, postLoginRedirectUrl, postLogoutRedirectUrl, failureRedirectUrl, extraAuthParams, allowedOrigins, tenant, disableVerifyHost, tenants, adminRole, adminRoleClaim, adminTokenAudience',
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

  it('needs oidc_allow_insecure_issuer for an http issuer in development', () => {
    const argv = ['--oidc_issuer', 'http://localhost:3000', '--oidc_client_id', 'a', '--oidc_client_secret', 's'];
    expect(problemsOf(argv)[0]).toMatch(/an http:\/\/ issuer needs --oidc_allow_insecure_issuer \(development only\)/);
    expect(load([...argv, '--oidc_allow_insecure_issuer']).config.clients[0]?.issuer).toBe('http://localhost:3000');
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
});
