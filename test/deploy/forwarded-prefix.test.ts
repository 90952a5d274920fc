/**
 * X-Forwarded-Prefix (issue 19.1): honoured from a trusted proxy only, and only as a plain path prefix:
 * it becomes the start of URLs the browser is sent to (the derived callback URL, a JSON logout's
 * redirectTo), so anything else is refused with 400 problem+json, as a bad X-Forwarded-Proto is.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { tempDir } from '../support/config.ts';
import { API, startTokenHandler, type Running } from '../multi/support.ts';

const TENANT = 'urn:ads:platform:tenant-service:v2:/tenants/prefix-test';

async function start(idp: DevIdp, trustProxy: boolean): Promise<Running> {
  const dir = tempDir('th-prefix-');
  const file = join(dir, 'token-handler.yaml');
  writeFileSync(
    file,
    `log_level: silent
oidc_allow_insecure_issuer: true
trust_proxy: ${trustProxy ? '127.0.0.1' : 'false'}
db_path: ${join(dir, 'sessions.db')}
clients:
  - id: my-client
    tenant: "${TENANT}"
    issuer: ${idp.issuer}
    clientId: my-client-app
    clientSecret: my-client-app-secret
    postLoginRedirectUrl: /
`,
  );
  return startTokenHandler(loadConfig({ argv: ['--config', file], env: {}, cwd: dir }).config);
}

/** The redirect_uri token-handler sends to the IdP when a login starts with these forwarding headers. */
async function loginRedirectUri(th: Running, headers: Record<string, string>): Promise<{ status: number; redirectUri: string | null; body: string }> {
  const res = await fetch(`${th.base}${API}/clients/my-client/auth`, { redirect: 'manual', headers: { 'x-adsp-tenant': TENANT, ...headers } });
  const location = res.headers.get('location');
  return { status: res.status, redirectUri: location ? new URL(location).searchParams.get('redirect_uri') : null, body: await res.text() };
}

describe('X-Forwarded-Prefix', () => {
  let idp: DevIdp;
  let trusted: Running;
  let untrusted: Running;
  beforeAll(async () => {
    idp = await startDevIdp({ clients: [{ client_id: 'my-client-app', client_secret: 'my-client-app-secret', application_type: 'native', redirect_uris: ['http://127.0.0.1/auth/callback'], token_endpoint_auth_method: 'client_secret_basic' }] });
    [trusted, untrusted] = await Promise.all([start(idp, true), start(idp, false)]);
  });
  afterAll(async () => {
    await trusted?.close();
    await untrusted?.close();
    await idp?.close();
  });

  it('from a trusted proxy, names where the browser reaches the client\'s routes (the callback URL follows)', async () => {
    const host = 'app.example.com:8443';
    const forwarded = { 'x-forwarded-host': host, 'x-forwarded-proto': 'https' };
    expect((await loginRedirectUri(trusted, { ...forwarded, 'x-forwarded-prefix': '/auth' })).redirectUri).toBe(`https://${host}/auth/callback`);
    expect((await loginRedirectUri(trusted, { ...forwarded, 'x-forwarded-prefix': '/apps/portal/auth/' })).redirectUri).toBe(`https://${host}/apps/portal/auth/callback`);
    // The nearest proxy's entry counts (the last of a list), as for X-Forwarded-Host.
    expect((await loginRedirectUri(trusted, { ...forwarded, 'x-forwarded-prefix': '/spoofed, /auth' })).redirectUri).toBe(`https://${host}/auth/callback`);
    // Without it: token-handler's own path.
    expect((await loginRedirectUri(trusted, forwarded)).redirectUri).toBe(`https://${host}${API}/clients/my-client/callback`);
  });

  it.each(['auth', '//evil.example', 'https://evil.example/auth', '/a/../b', '/a/./b', '/a?x=1', '/a#x', '/a\\b', '/a%2e%2e', `/${'a'.repeat(300)}`])(
    '%j from a trusted proxy: 400 invalid_forwarded_prefix, no login starts',
    async (prefix) => {
      const res = await loginRedirectUri(trusted, { 'x-forwarded-prefix': prefix });
      expect(res.status).toBe(400);
      expect(res.redirectUri).toBeNull();
      expect(JSON.parse(res.body)).toMatchObject({ status: 400, error: 'invalid_forwarded_prefix' });
    },
  );

  it('from a peer that is not a trusted proxy, is ignored (whatever it says)', async () => {
    const { port } = new URL(untrusted.base);
    for (const prefix of ['/auth', '//evil.example']) {
      const res = await loginRedirectUri(untrusted, { 'x-forwarded-prefix': prefix });
      expect(res.status).toBe(302);
      expect(res.redirectUri).toBe(`http://127.0.0.1:${port}${API}/clients/my-client/callback`);
    }
  });
});
