/**
 * Logout against an IdP whose discovery has neither a `revocation_endpoint` nor an `end_session_endpoint`
 * (Entra ID has no revocation endpoint; an Auth0 tenant without RP-initiated logout has no end-session
 * endpoint), as docs/configuration.md (Logout) and the README's HTTP API table say:
 * - the session is deleted here and its cookie cleared, but no token is revoked and no revocation is
 *   attempted: the refresh token stays valid at the IdP until it expires;
 * - without an `endSessionUrl` template the logout is local only: the browser goes to the post-logout
 *   redirect URL (`/` when none is configured), never to the IdP; with a template it goes there.
 * The control: the same logout against an IdP that advertises revocation revokes the refresh token, which
 * the request log below sees.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { API, csrfHeaders, getJson, idpClient, login } from '../multi/support.ts';
import { startApp, type RunningApp } from '../proxy/support.ts';

interface IdpRequest {
  method: string;
  path: string;
}

/** The dev IdP, its discovery edited by `discovery`, with a log of every request it receives. */
async function loggedIdp(issuerPathPrefix: string, discovery?: (metadata: Record<string, unknown>) => Record<string, unknown>): Promise<{ idp: DevIdp; requests: IdpRequest[] }> {
  const requests: IdpRequest[] = [];
  const idp = await startDevIdp({
    issuerPathPrefix,
    clients: [idpClient('token-handler', 'default'), idpClient('bare-app', 'bare'), idpClient('templated-app', 'templated'), idpClient('revoking-app', 'revoking')],
    ...(discovery ? { discovery } : {}),
    intercept: (req, _res, url) => {
      requests.push({ method: req.method ?? 'GET', path: url.pathname });
      return false;
    },
  });
  return { idp, requests };
}

describe('logout at an IdP without revocation and end-session endpoints', () => {
  let bare: { idp: DevIdp; requests: IdpRequest[] };
  let full: { idp: DevIdp; requests: IdpRequest[] };
  let upstream: DemoUpstream;
  let th: RunningApp;

  beforeAll(async () => {
    bare = await loggedIdp('/bare', (metadata) => {
      delete metadata.revocation_endpoint;
      delete metadata.end_session_endpoint;
      return metadata;
    });
    full = await loggedIdp('/full');
    upstream = await startDemoUpstream();
    const issuer = bare.idp.issuer;
    th = await startApp(
      testConfig({
        clients: [
          testClient({ issuer, postLogoutRedirectUrl: '/signed-out' }),
          testClient({ id: 'bare', issuer, clientId: 'bare-app', clientSecret: 'bare-app-secret' }),
          testClient({
            id: 'templated',
            issuer,
            clientId: 'templated-app',
            clientSecret: 'templated-app-secret',
            postLogoutRedirectUrl: '/signed-out',
            // oidc-provider still serves its end-session endpoint, though discovery no longer names it.
            endSessionUrl: `${issuer}/session/end?client_id={client_id}&post_logout_redirect_uri={post_logout_redirect_uri}`,
          }),
          testClient({ id: 'revoking', issuer: full.idp.issuer, clientId: 'revoking-app', clientSecret: 'revoking-app-secret', postLogoutRedirectUrl: '/signed-out' }),
        ],
        targets: [testTarget({ id: 'api', url: `${upstream.url}/echo`, clientId: 'default' })],
      }),
    );
  });
  afterAll(async () => {
    await th?.close();
    await upstream?.close();
    await bare?.idp.close();
    await full?.idp.close();
  });

  /** The session cookie of our client `clientId` over http. */
  const sessionCookie = (clientId: string): string => (clientId === 'default' ? 'session' : `session-${clientId}`);

  /** Logs in to our client `clientId`; returns the refresh token the session holds. */
  async function loggedIn(browser: Browser, clientId: string): Promise<string> {
    expect((await login(browser, th.base, clientId)).status).toBe(302);
    const cookie = browser.cookie(sessionCookie(clientId), th.base)!.value;
    const session = await th.th.ctx.sessions.resolve(cookie, { clientId, tenant: null });
    expect(session?.payload.refreshToken).toEqual(expect.any(String));
    return session!.payload.refreshToken!;
  }

  const revocations = (requests: IdpRequest[]): IdpRequest[] => requests.filter((r) => r.path.includes('revoc'));
  const endSessions = (requests: IdpRequest[]): IdpRequest[] => requests.filter((r) => r.path.includes('/session/end'));

  it('the IdP advertises neither endpoint', async () => {
    const metadata = (await th.th.ctx.registry.configuration('default', null)).serverMetadata();
    expect(metadata.revocation_endpoint).toBeUndefined();
    expect(metadata.end_session_endpoint).toBeUndefined();
    expect(metadata.token_endpoint).toEqual(expect.any(String));
  });

  it('POST logout: the session ends here, nothing is revoked or attempted at the IdP, the browser goes to the post-logout URL', async () => {
    const browser = createBrowser();
    const refreshToken = await loggedIn(browser, 'default');
    const cookie = browser.cookie('session', th.base)!.value;
    expect((await browser.get(`${th.base}${API}/targets/api`)).status).toBe(200);
    bare.requests.length = 0;

    const res = await browser.post(`${th.base}${API}/clients/default/logout`, undefined, { headers: csrfHeaders(browser, th.base) });
    expect(res.status).toBe(200);
    // No end-session step: straight to the post-logout URL, not through /end-session.
    expect(await res.json()).toEqual({ loggedOut: true, redirectTo: `${th.base}/signed-out` });

    // Deleted here: the store has no session, the cookie is gone, the API answers 401.
    expect(await th.th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null })).toBeUndefined();
    expect(browser.cookie('session', th.base)).toBeUndefined();
    expect((await getJson(browser, `${th.base}${API}/sessions`)).body).toEqual([]);
    expect((await browser.get(`${th.base}${API}/targets/api`)).status).toBe(401);

    // Not revoked there: no revocation request of any kind, and the refresh token is still live at the IdP.
    expect(revocations(bare.requests)).toEqual([]);
    expect(endSessions(bare.requests)).toEqual([]);
    expect(bare.idp.revocationCount).toBe(0);
    expect(bare.idp.refreshTokenState(refreshToken)).toBe('active');
  });

  it('form POST and navigation: 303 / 302 to the post-logout URL, or `/` for a client without one', async () => {
    const form = createBrowser();
    const formToken = await loggedIn(form, 'default');
    const xsrf = form.cookie('XSRF-TOKEN', th.base)!.value;
    const posted = await form.post(`${th.base}${API}/clients/default/logout`, undefined, { headers: { 'x-xsrf-token': xsrf, origin: th.base } });
    expect(posted.status).toBe(303);
    expect(posted.headers.get('location')).toBe(`${th.base}/signed-out`);
    expect(form.cookie('session', th.base)).toBeUndefined();

    const nav = createBrowser();
    const navToken = await loggedIn(nav, 'bare');
    const navigated = await nav.get(`${th.base}${API}/clients/bare/logout`, { headers: { 'sec-fetch-site': 'none' } });
    expect(navigated.status).toBe(302);
    expect(navigated.headers.get('location')).toBe('/');
    expect(nav.cookie(sessionCookie('bare'), th.base)).toBeUndefined();
    expect((await getJson(nav, `${th.base}${API}/sessions`)).body).toEqual([]);

    expect(revocations(bare.requests)).toEqual([]);
    expect(endSessions(bare.requests)).toEqual([]);
    expect(bare.idp.refreshTokenState(formToken)).toBe('active');
    expect(bare.idp.refreshTokenState(navToken)).toBe('active');
  });

  it('with an endSessionUrl template the browser still goes to the IdP; still nothing is revoked', async () => {
    const browser = createBrowser();
    const refreshToken = await loggedIn(browser, 'templated');
    bare.requests.length = 0;
    const res = await browser.post(`${th.base}${API}/clients/templated/logout`, undefined, { headers: csrfHeaders(browser, th.base) });
    expect(res.status).toBe(200);
    const { redirectTo } = (await res.json()) as { redirectTo: string };
    expect(redirectTo).toBe(`${API}/clients/templated/end-session`);
    const continued = await browser.get(new URL(redirectTo, th.base));
    expect(continued.status).toBe(302);
    const location = new URL(continued.headers.get('location')!);
    expect(`${location.origin}${location.pathname}`).toBe(`${bare.idp.issuer}/session/end`);
    expect(location.searchParams.get('post_logout_redirect_uri')).toBe(`${th.base}/signed-out`);
    expect(revocations(bare.requests)).toEqual([]);
    expect(bare.idp.refreshTokenState(refreshToken)).toBe('active');
  });

  it('control: at an IdP that advertises revocation, the same logout revokes the refresh token (the log sees it)', async () => {
    const browser = createBrowser();
    const refreshToken = await loggedIn(browser, 'revoking');
    full.requests.length = 0;
    const res = await browser.post(`${th.base}${API}/clients/revoking/logout`, undefined, { headers: csrfHeaders(browser, th.base) });
    expect(res.status).toBe(200);
    expect(revocations(full.requests)).toEqual([{ method: 'POST', path: '/full/token/revocation' }]);
    expect(full.idp.refreshTokenState(refreshToken)).toBe('absent');
  });
});
