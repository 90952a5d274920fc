/**
 * One client id serving two tenants, each with its own IdP (issuer), client_id and secret, selected by
 * the X-ADSP-TENANT header the reverse proxy sets. Configured from a YAML file, as an operator would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import type { DevIdp } from '../../src/demo/idp.ts';
import { tempDir } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { API, portalClientYaml, TENANT_A as A, TENANT_B as B, TENANT_HEADER, getJson, login, startTenantIdp, startTokenHandler, yamlConfig, type Running } from './support.ts';

interface View {
  clientId: string;
  tenant: string | null;
  sub: string;
}

function portalConfig(dir: string, idpA: DevIdp, idpB: DevIdp): Config {
  return yamlConfig(
    dir,
    `clients:
${portalClientYaml(`      "${A}":
        issuer: ${idpA.issuer}
        clientId: portal-a
        clientSecret: portal-a-secret
      "${B}":
        issuer: ${idpB.issuer}
        clientId: portal-b
        clientSecretEnv: PORTAL_B_SECRET
        postLoginRedirectUrl: /portal-b
`)}`,
    { env: { PORTAL_B_SECRET: 'portal-b-secret' } },
  );
}

describe('tenants', () => {
  let idpA: DevIdp;
  let idpB: DevIdp;
  let th: Running;

  beforeAll(async () => {
    idpA = await startTenantIdp('a');
    idpB = await startTenantIdp('b');
    th = await startTokenHandler(portalConfig(tempDir(), idpA, idpB));
  });
  afterAll(async () => {
    await th?.close();
    await idpA?.close();
    await idpB?.close();
  });

  /** A browser behind a reverse proxy that sets the tenant header (mutable, to play the other site). */
  function tenantBrowser(tenant: string | undefined): { browser: Browser; headers: Record<string, string> } {
    const headers: Record<string, string> = tenant === undefined ? {} : { [TENANT_HEADER]: tenant };
    return { browser: createBrowser({ headers }), headers };
  }

  const loginTenant = (browser: Browser, username: string): Promise<Response> => login(browser, th.base, 'portal', username);

  it('sends each tenant to its own issuer with its own client_id', async () => {
    for (const [tenant, idp, clientId] of [[A, idpA, 'portal-a'], [B, idpB, 'portal-b']] as const) {
      const res = await createBrowser().get(`${th.base}${API}/clients/portal/auth`, { headers: { [TENANT_HEADER]: tenant } });
      expect(res.status).toBe(302);
      const location = new URL(res.headers.get('location')!);
      expect(location.href.startsWith(`${idp.issuer}/`)).toBe(true);
      expect(location.searchParams.get('client_id')).toBe(clientId);
    }
  });

  it('refuses a missing tenant header (400) and an unknown tenant (404)', async () => {
    const missing = await createBrowser().get(`${th.base}${API}/clients/portal/auth`);
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: string }).error).toBe('tenant_required');
    const unknown = await createBrowser().get(`${th.base}${API}/clients/portal/auth`, { headers: { [TENANT_HEADER]: 'urn:tenant:nobody' } });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: string }).error).toBe('unknown_tenant');
  });

  it('logs in per tenant; a session of tenant A is not accepted with the header of B (without a header, it is A\'s)', async () => {
    const { browser, headers } = tenantBrowser(A);
    const callback = await loginTenant(browser, 'alice');
    expect(callback.status).toBe(302);
    expect(callback.headers.get('location')).toBe('/portal');
    const { body: views } = await getJson<View[]>(browser, `${th.base}${API}/sessions`);
    expect(views).toEqual([expect.objectContaining({ clientId: 'portal', tenant: A, sub: 'alice' })]);

    headers[TENANT_HEADER] = B;
    expect((await getJson(browser, `${th.base}${API}/sessions`)).body).toEqual([]);
    expect((await getJson(browser, `${th.base}${API}/sessions?all=true`)).body).toEqual([]);
    // Without a header, a session acts in its own tenant (as ADSP does: the header is needed to start a login).
    delete headers[TENANT_HEADER];
    expect((await getJson(browser, `${th.base}${API}/sessions`)).body).toEqual([expect.objectContaining({ clientId: 'portal', tenant: A, sub: 'alice' })]);
    // Not accepted is not destroyed: back on A's site the session is still there.
    headers[TENANT_HEADER] = A;
    expect((await getJson<View[]>(browser, `${th.base}${API}/sessions`)).body).toHaveLength(1);

    // And the service itself refuses it for B, whatever the route.
    const cookie = browser.cookie('session-portal', th.base)!.value;
    expect(await th.th.ctx.sessions.resolve(cookie, { clientId: 'portal', tenant: B })).toBeUndefined();
    expect(await th.th.ctx.sessions.resolve(cookie, { clientId: 'portal', tenant: A })).toBeDefined();
  });

  it('refuses a callback in another tenant than the login started in', async () => {
    const { browser, headers } = tenantBrowser(A);
    const start = await browser.get(`${th.base}${API}/clients/portal/auth`);
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    headers[TENANT_HEADER] = B;
    const res = await browser.get(`${th.base}${API}/clients/portal/callback?code=x&state=${state}`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_state');
  });

  it('tenant B logs in at its own IdP; logging in there ends the tenant A session the cookie held', async () => {
    const { browser, headers } = tenantBrowser(A);
    await loginTenant(browser, 'alice');
    const sessionA = await th.th.ctx.sessions.resolve(browser.cookie('session-portal', th.base)!.value, { clientId: 'portal', tenant: A });
    expect(sessionA).toBeDefined();

    headers[TENANT_HEADER] = B;
    const callback = await loginTenant(browser, 'bob');
    expect(callback.headers.get('location')).toBe('/portal-b');
    const { body: views } = await getJson<View[]>(browser, `${th.base}${API}/sessions`);
    expect(views).toEqual([expect.objectContaining({ tenant: B, sub: 'bob' })]);
    expect(await th.th.ctx.store.get(sessionA!.idHash)).toBeUndefined();
  });

  it("a back-channel logout from tenant B's IdP ends tenant B's session only (the token's issuer picks the tenant)", async () => {
    const alice = tenantBrowser(A);
    await loginTenant(alice.browser, 'alice');
    const bob = tenantBrowser(B);
    await loginTenant(bob.browser, 'bob');
    const endpoint = `${th.base}${API}/clients/portal/backchannel-logout`;
    const post = async (token: string) =>
      (await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: token }) })).status;
    // Tenant A's IdP cannot log out tenant B's users: its token is for A's client_id.
    expect(await post(await idpA.signLogoutToken({ aud: 'portal-b', sub: 'bob' }))).toBe(400);
    expect((await getJson<View[]>(bob.browser, `${th.base}${API}/sessions`)).body).toHaveLength(1);
    expect(await post(await idpB.signLogoutToken({ aud: 'portal-b', sub: 'bob' }))).toBe(200);
    expect((await getJson<View[]>(bob.browser, `${th.base}${API}/sessions`)).body).toEqual([]);
    expect((await getJson<View[]>(alice.browser, `${th.base}${API}/sessions`)).body).toHaveLength(1);
  });

  it("refreshes a tenant's tokens at that tenant's IdP", async () => {
    const { browser } = tenantBrowser(B);
    await loginTenant(browser, 'bob');
    const cookie = browser.cookie('session-portal', th.base)!.value;
    const session = (await th.th.ctx.sessions.resolve(cookie, { clientId: 'portal', tenant: B }))!;
    const record = (await th.th.ctx.store.get(session.idHash))!;
    await th.th.ctx.store.updatePayload(record.idHash, record.version, { payload: record.payload, accessExpiresAt: Date.now() - 1000 });
    await th.th.ctx.store.publishInvalidation([record.idHash]);
    await new Promise((r) => setTimeout(r, 20));
    idpA.resetCounters();
    idpB.resetCounters();
    const fresh = (await th.th.ctx.sessions.resolve(cookie, { clientId: 'portal', tenant: B }))!;
    const token = await th.th.ctx.sessions.accessToken(fresh);
    expect(token).not.toBe(session.payload.accessToken);
    expect(idpB.refreshGrantCount).toBe(1);
    expect(idpA.refreshGrantCount).toBe(0);
  });
});
