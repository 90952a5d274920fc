/**
 * Issue 19.2: tenant resolution as ADSP does it. The tenant header is needed to start a login; afterwards
 * /sessions, targets and logout act in the tenant of the session the cookie names when the header is
 * absent (the seed's own nginx example sets X-Adsp-Tenant on /auth only). A tenant may be given by its
 * URN or by its name. A request under another tenant's header never uses, clears nor ends the session.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Config } from '../../src/config/types.ts';
import type { DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream, type EchoResponse } from '../../src/demo/upstream.ts';
import { tempDir } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { API, portalClientYaml, TENANT_A as A, TENANT_B as B, TENANT_HEADER, csrfHeaders, getJson, login, startTenantIdp, startTokenHandler, yamlConfig, type Running } from './support.ts';

interface View {
  clientId: string;
  tenant: string | null;
  sub: string;
  logoutUrl: string;
}

function config(dir: string, idpA: DevIdp, idpB: DevIdp, upstream: DemoUpstream): Config {
  return yamlConfig(
    dir,
    `clients:
${portalClientYaml(`      "${A}":
        tenantName: Alpha
        issuer: ${idpA.issuer}
        clientId: portal-a
        clientSecret: portal-a-secret
      "${B}":
        tenantName: beta
        issuer: ${idpB.issuer}
        clientId: portal-b
        clientSecret: portal-b-secret
`)}targets:
  - id: api
    url: ${upstream.url}/echo
    client: portal
  - id: up
    url: ${upstream.url}
    client: portal
    websocket: true
`,
  );
}

describe('the tenant of a session (issue 19.2)', () => {
  let idpA: DevIdp;
  let idpB: DevIdp;
  let upstream: DemoUpstream;
  let th: Running;

  beforeAll(async () => {
    idpA = await startTenantIdp('a');
    idpB = await startTenantIdp('b');
    upstream = await startDemoUpstream({ jwksUrl: idpA.jwksUrl });
    th = await startTokenHandler(config(tempDir(), idpA, idpB, upstream));
  });
  afterAll(async () => {
    await th?.close();
    await upstream?.close();
    await idpA?.close();
    await idpB?.close();
  });

  /** Logs in to tenant A through a proxy that sends `header` on the login routes only. */
  async function loggedInToA(header = A): Promise<{ browser: Browser; headers: Record<string, string>; cookie: () => string | undefined }> {
    const headers: Record<string, string> = { [TENANT_HEADER]: header };
    const browser = createBrowser({ headers });
    expect((await login(browser, th.base, 'portal', 'alice')).status).toBe(302);
    delete headers[TENANT_HEADER];
    return { browser, headers, cookie: () => browser.cookie('session-portal', th.base)?.value };
  }

  async function liveSessionOf(cookie: string | undefined) {
    return th.th.ctx.sessions.resolve(cookie, { clientId: 'portal', tenant: A });
  }

  it('a login needs the header; the header may name the tenant by its name (any case)', async () => {
    const missing = await createBrowser().get(`${th.base}${API}/clients/portal/auth`);
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: string }).error).toBe('tenant_required');
    const { browser } = await loggedInToA('alpha');
    const { body } = await getJson<View[]>(browser, `${th.base}${API}/sessions`, { [TENANT_HEADER]: 'ALPHA' });
    expect(body).toEqual([expect.objectContaining({ tenant: A, sub: 'alice' })]);
    // A name of another tenant is that tenant: A's session is not listed under it.
    expect((await getJson(browser, `${th.base}${API}/sessions`, { [TENANT_HEADER]: 'Beta' })).body).toEqual([]);
    const unknown = await getJson<{ error: string }>(browser, `${th.base}${API}/clients/portal/auth`, { [TENANT_HEADER]: 'gamma' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toBe('unknown_tenant');
  });

  it('without the header: /sessions, API GET and POST, and logout act in the session\'s tenant', async () => {
    const { browser, cookie } = await loggedInToA();
    const { body: views } = await getJson<View[]>(browser, `${th.base}${API}/sessions`);
    expect(views).toEqual([expect.objectContaining({ clientId: 'portal', tenant: A, sub: 'alice' })]);

    const get = await browser.get(`${th.base}${API}/targets/api/orders`);
    expect(get.status).toBe(200);
    const echoed = (await get.json()) as EchoResponse;
    expect(echoed.token.valid).toBe(true);
    const post = await browser.request(`${th.base}${API}/targets/api/orders`, { method: 'POST', json: { id: 7 }, headers: csrfHeaders(browser, th.base) });
    expect(post.status).toBe(200);
    expect(((await post.json()) as EchoResponse).method).toBe('POST');
    // A forged POST (no XSRF header, another site's Origin) is still refused when the tenant comes from the session.
    const forged = await browser.request(`${th.base}${API}/targets/api/orders`, { method: 'POST', json: {}, headers: { origin: 'http://evil.example' } });
    expect(forged.status).toBe(403);

    const logout = await browser.post(`${th.base}${API}/clients/portal/logout`, undefined, { headers: csrfHeaders(browser, th.base) });
    expect(logout.status).toBe(200);
    const answer = (await logout.json()) as { loggedOut: boolean; redirectTo: string };
    expect(answer.redirectTo).toBe(`${API}/clients/portal/end-session`);
    // The end-session step goes to tenant A's IdP.
    const end = await browser.get(`${th.base}${answer.redirectTo}`, { headers: { 'sec-fetch-dest': 'empty' } });
    expect(end.status).toBe(302);
    expect(end.headers.get('location')!.startsWith(`${idpA.issuer}/`)).toBe(true);
    expect(cookie()).toBeUndefined();
    expect((await getJson(browser, `${th.base}${API}/sessions`)).body).toEqual([]);
  });

  it('under another tenant\'s header, the session is neither used, nor cleared, nor ended', async () => {
    const { browser, cookie } = await loggedInToA();
    const value = cookie();
    expect(await liveSessionOf(value)).toBeDefined();
    const underB = { [TENANT_HEADER]: B };

    const api = await browser.get(`${th.base}${API}/targets/api/orders`, { headers: underB });
    expect(api.status).toBe(401);
    expect(api.headers.getSetCookie().join('\n')).not.toContain('session-portal');

    const post = await browser.post(`${th.base}${API}/clients/portal/logout`, undefined, { headers: { ...csrfHeaders(browser, th.base), ...underB } });
    expect(post.status).toBe(200);
    expect(post.headers.getSetCookie().join('\n')).not.toContain('session-portal');
    const get = await browser.get(`${th.base}${API}/clients/portal/logout`, { headers: { ...underB, 'sec-fetch-site': 'none' } });
    await get.body?.cancel();
    expect(get.headers.getSetCookie().join('\n')).not.toContain('session-portal');

    const del = await browser.request(`${th.base}${API}/sessions`, { method: 'DELETE', headers: { ...csrfHeaders(browser, th.base), ...underB } });
    expect(del.status).toBe(401);

    // Still the browser's, still live, still usable on A's site.
    expect(cookie()).toBe(value);
    expect(await liveSessionOf(value)).toBeDefined();
    expect((await browser.get(`${th.base}${API}/targets/api/orders`)).status).toBe(200);
  });

  it('WebSocket upgrades: without the header, in the session\'s tenant (its origins); under another tenant\'s, refused', async () => {
    const { browser } = await loggedInToA();
    const cookie = browser.jar.cookieHeader(`${th.base}/`) ?? '';
    const open = (headers: Record<string, string>) =>
      new Promise<{ status: number; first?: Record<string, unknown> }>((resolve, reject) => {
        const ws = new WebSocket(`${th.base.replace('http', 'ws')}${API}/targets/up/ws`, { headers: { cookie, ...headers } });
        ws.once('message', (data) => {
          resolve({ status: 101, first: JSON.parse(String(data)) as Record<string, unknown> });
          ws.close();
        });
        ws.once('unexpected-response', (_req, res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0 });
        });
        ws.once('error', reject);
      });
    const ok = await open({ origin: th.base });
    expect(ok.status).toBe(101);
    expect(ok.first).toMatchObject({ authorization: { present: true, valid: true, sub: 'alice' } });
    expect((await open({ origin: 'http://evil.example' })).status).toBe(403);
    expect((await open({ origin: th.base, [TENANT_HEADER]: B })).status).toBe(401);
  });

  it('without header and without a session, a client serving several tenants cannot tell which: 400', async () => {
    const browser = createBrowser();
    const res = await browser.post(`${th.base}${API}/clients/portal/logout`, undefined, { headers: { origin: th.base, 'sec-fetch-site': 'same-origin', accept: 'application/json' } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('tenant_required');
  });
});
