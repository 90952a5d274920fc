/** The config file fields of this feature: tenants, registration without clientId, the admin token policy. */
import { describe, expect, it } from 'vitest';
import { parseClaimPath } from '../../src/config/clients.ts';
import { InvalidValue } from '../../src/config/parsers.ts';
import { load, problemsOf, tempDir, writeFiles } from '../config/helpers.ts';

const yaml = (text: string) => writeFiles(tempDir(), { 'th.yaml': text });

describe('config: tenants and registration', () => {
  it('builds a multi-tenant client: shared defaults, per-tenant issuer and credentials', () => {
    const dir = yaml(`
clients:
  - id: portal
    clientId: shared-id
    postLoginRedirectUrl: /home
    allowedOrigins: [https://portal.example.com]
    tenants:
      "urn:tenant:a":
        issuer: https://login.example.com/realms/a
        clientSecretEnv: A_SECRET
      "urn:tenant:b":
        issuer: https://login.example.com/realms/b
        clientId: b-id
        registered: true
        authCallbackUrl: https://b.example.com/token-handler/v1/clients/portal/callback
`);
    const { config } = load(['--config', 'th.yaml'], { cwd: dir, env: { A_SECRET: 'a-secret' } });
    const [portal] = config.clients;
    expect(portal).toMatchObject({ id: 'portal', clientId: 'shared-id', postLoginRedirectUrl: '/home' });
    expect(portal?.tenant).toBeUndefined();
    expect(portal?.tenants?.['urn:tenant:a']).toMatchObject({
      tenant: 'urn:tenant:a',
      issuer: 'https://login.example.com/realms/a',
      clientId: 'shared-id',
      clientSecret: 'a-secret',
      postLoginRedirectUrl: '/home',
      allowedOrigins: ['https://portal.example.com'],
    });
    expect(portal?.tenants?.['urn:tenant:b']).toMatchObject({ tenant: 'urn:tenant:b', clientId: 'b-id', registered: true, redirectUrl: 'https://b.example.com/token-handler/v1/clients/portal/callback' });
    expect(portal?.tenants?.['urn:tenant:b']?.clientSecret).toBeUndefined();
  });

  it('reports tenant problems once, naming where each field is', () => {
    const dir = yaml(`
clients:
  - id: portal
    issuer: ftp://bad.example.com
    tenant: x
    tenants:
      "with space": { clientId: a, clientSecret: s }
      ok: { clientId: b }
  - id: default
    issuer: https://idp.example.com
    tenants: { a: { clientId: x, clientSecret: y } }
`);
    expect(problemsOf(['--config', 'th.yaml'], { cwd: dir })).toEqual([
      'config file clients[1].tenants: the default client cannot serve several tenants; give the multi-tenant client an id of its own',
      'config file clients[0]: set tenant (one tenant) or tenants (several), not both',
      'config file clients[0].issuer "ftp://bad.example.com": must be an http(s) URL',
      'config file clients[0].tenants["with space"]: a tenant must be a non-empty value without whitespace',
      'config file clients[0].tenants["ok"]: clientSecret, clientSecretEnv or clientSecretFile is required, unless the client authenticates with a private key (privateKeyFile) or is registered: true',
    ]);
  });

  it('a registered client needs no clientId; the admin policy fields are checked', () => {
    const dir = yaml(`
clients:
  - id: self
    issuer: https://idp.example.com
    registered: true
    adminRole: th-admin
    adminRoleClaim: [realm_access.roles, 'resource_access["urn:ads:platform:token-handler"].roles']
    adminTokenAudience: th-api
`);
    const { config } = load(['--config', 'th.yaml'], { cwd: dir });
    expect(config.clients[0]).toMatchObject({
      id: 'self',
      clientId: '',
      registered: true,
      admin: { role: 'th-admin', roleClaimPaths: [['realm_access', 'roles'], ['resource_access', 'urn:ads:platform:token-handler', 'roles']], audience: 'th-api' },
    });
    expect(problemsOf(['--config', 'th.yaml'], { cwd: yaml('clients:\n  - id: p\n    issuer: https://idp.example.com\n    clientSecret: s\n') })).toEqual([
      'client "p": clientId is required (config file clients[0].clientId), unless the client is registered: true',
    ]);
    const bad = yaml('clients:\n  - id: p\n    issuer: https://idp.example.com\n    registered: true\n    adminRoleClaim: "a..b"\n    adminRole: " "\n');
    expect(problemsOf(['--config', 'th.yaml'], { cwd: bad })).toEqual([
      'config file clients[0].adminRole: must be a non-empty role name',
      'config file clients[0].adminRoleClaim "a..b": a dot must be followed by a name (write a claim path like realm_access.roles or resource_access["my-client"].roles)',
    ]);
  });

  it('parses claim paths', () => {
    expect(parseClaimPath('roles')).toEqual(['roles']);
    expect(parseClaimPath('realm_access.roles')).toEqual(['realm_access', 'roles']);
    expect(parseClaimPath("resource_access['my.client'].roles")).toEqual(['resource_access', 'my.client', 'roles']);
    expect(parseClaimPath('["https://example.com/roles"]')).toEqual(['https://example.com/roles']);
    for (const bad of ['', 'a.', '.a', 'a[b]', 'a["b"', 'a b', 'a.["b"]']) expect(() => parseClaimPath(bad), bad).toThrow(InvalidValue);
  });
});
