/**
 * The logout flows a browser makes (issue 18.13 and issue 21.6), against the dev IdP:
 * - `GET /logout` works for a navigation the user made (typed or bookmarked, a link on this origin or on
 *   one of the client's allowed origins); from another site it ends nothing and shows a confirmation page
 *   whose button POSTs the logout;
 * - with `endSessionMethod: post`, the browser continues to the IdP's end_session_endpoint with an
 *   auto-submitted form POST (CSP nonce, no inline script otherwise), so the ID token is in no URL;
 * - the XSRF cookie lives as long as the session cookie and goes at logout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { parseForms } from '../support/html.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { loginAtDevIdp, logoutAtDevIdp } from '../support/login.ts';
import { idpClient } from '../multi/support.ts';
import { startApp, type RunningApp } from '../proxy/support.ts';

const API = '/token-handler/v1';
const APP_ORIGIN = 'https://app.example.com';
const JWT = /eyJ[\w-]{4,}\.eyJ[\w-]{4,}\.[\w-]*/;

describe('logout in the browser', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let th: RunningApp;

  beforeAll(async () => {
    idp = await startDevIdp({ clients: [idpClient('token-handler', 'default'), idpClient('second-app', 'second')] });
    upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer });
    th = await startApp(
      testConfig({
        clients: [
          testClient({ issuer: idp.issuer, allowedOrigins: [APP_ORIGIN], postLogoutRedirectUrl: '/signed-out', endSessionMethod: 'post' }),
          testClient({ id: 'second', issuer: idp.issuer, clientId: 'second-app', clientSecret: 'second-app-secret', postLogoutRedirectUrl: '/signed-out' }),
        ],
        targets: [testTarget({ id: 'api', url: `${upstream.url}/echo` })],
      }),
    );
    for (const client of ['token-handler', 'second-app']) await idp.updateClient(client, { post_logout_redirect_uris: [`${th.base}/signed-out`] });
  });
  afterAll(async () => {
    await th?.close();
    await upstream?.close();
    await idp?.close();
  });

  async function loggedIn(client = 'default', browser = createBrowser()): Promise<Browser> {
    const flow = await loginAtDevIdp(browser, `${th.base}${API}/clients/${client}/auth`);
    expect(flow.response.status).toBe(302);
    return browser;
  }
  const sessionCount = async (browser: Browser): Promise<number> => ((await (await browser.get(`${th.base}${API}/sessions`)).json()) as unknown[]).length;
  const logoutUrl = async (browser: Browser): Promise<string> => {
    const [view] = (await (await browser.get(`${th.base}${API}/sessions`)).json()) as { logoutUrl: string }[];
    return `${th.base}${view!.logoutUrl}`;
  };

  describe('GET /logout for a navigation the user made (#21.6)', () => {
    const made: [string, Record<string, string>][] = [
      ['typed or bookmarked (Sec-Fetch-Site: none)', { 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }],
      ['a link on this origin', { 'sec-fetch-site': 'same-origin', referer: '' }],
      ['a link on an allowed sibling origin (same-site)', { 'sec-fetch-site': 'same-site', referer: `${APP_ORIGIN}/account` }],
      ['a link on an allowed origin of another site', { 'sec-fetch-site': 'cross-site', referer: `${APP_ORIGIN}/account` }],
      ['a link on an allowed origin, from a browser without Fetch Metadata', { referer: `${APP_ORIGIN}/account` }],
    ];

    for (const path of [`${API}/clients/default/logout`, '/logout']) {
      it.each(made)(`${path}: %s logs out`, async (_name, headers) => {
        const browser = await loggedIn();
        const own = { ...headers, ...(headers.referer === '' && { referer: `${th.base}/app` }) };
        const res = await browser.get(`${th.base}${path}`, { headers: own });
        expect(res.status).toBe(200);
        expect(await res.text()).toContain('document.forms[0].submit()');
        expect(await sessionCount(browser)).toBe(0);
      });
    }

    const foreign: [string, Record<string, string>][] = [
      ['another site', { 'sec-fetch-site': 'cross-site', referer: 'https://evil.example/page' }],
      ['another site that hides its address', { 'sec-fetch-site': 'cross-site' }],
      ['a sibling origin that is not allowed', { 'sec-fetch-site': 'same-site', referer: 'https://other.example.com/' }],
      ['a browser without Fetch Metadata, from another site', { referer: 'https://evil.example/page' }],
    ];

    it.each(foreign)('from %s: nothing ends; a confirmation page (not framable, not cached) asks', async (_name, headers) => {
      const browser = await loggedIn();
      const res = await browser.get(`${th.base}${API}/clients/default/logout`, { headers });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
      expect(res.headers.get('x-frame-options')).toBe('DENY');
      // Its button's POST must carry the page's Origin: under no-referrer, browsers send `Origin: null`.
      expect(res.headers.get('referrer-policy')).toBe('same-origin');
      const html = await res.text();
      expect(html).toContain(`Sign out of ${th.base}?`);
      expect(html).not.toMatch(/<script/);
      expect(await sessionCount(browser)).toBe(1);
    });

    it('the confirmation button POSTs the logout from our page; the same POST from elsewhere is refused', async () => {
      const browser = await loggedIn();
      const page = await browser.get(`${th.base}${API}/clients/default/logout`, { headers: { 'sec-fetch-site': 'cross-site' } });
      const [form] = parseForms(await page.text());
      expect(form!.method).toBe('POST');
      const action = new URL(form!.action, th.base);
      expect(action.pathname).toBe(`${API}/clients/default/logout`);

      // Without the guard the page carries, or from another site's page: refused, nothing ends.
      const noGuard = await browser.post(`${th.base}${API}/clients/default/logout`, {}, { headers: { origin: th.base, 'sec-fetch-site': 'same-origin' } });
      expect(noGuard.status).toBe(403);
      const elsewhere = await browser.post(action, {}, { headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } });
      expect(elsewhere.status).toBe(403);
      expect(await sessionCount(browser)).toBe(1);

      const pressed = await browser.post(action, {}, { headers: { origin: th.base, 'sec-fetch-site': 'same-origin', 'sec-fetch-dest': 'document' } });
      expect(pressed.status).toBe(200);
      expect(await pressed.text()).toContain('document.forms[0].submit()');
      expect(await sessionCount(browser)).toBe(0);
    });
  });

  describe('the end-session request as a form POST (#18.13)', () => {
    it('a navigation gets a self-submitting form to the end_session_endpoint: the ID token is in no URL', async () => {
      const browser = await loggedIn();
      const res = await browser.get(`${th.base}/logout`, { headers: { 'sec-fetch-site': 'none', 'sec-fetch-dest': 'document' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('location')).toBeNull();
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      const html = await res.text();
      // CSP-safe: the only script is the one the per-response nonce allows; nothing else may load.
      const csp = res.headers.get('content-security-policy')!;
      const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
      expect(nonce).toBeTruthy();
      expect(csp).toContain("default-src 'none'");
      expect(csp).not.toContain('unsafe-inline');
      expect([...html.matchAll(/<script([^>]*)>/g)].map((m) => m[1])).toEqual([` nonce="${nonce}"`]);
      const [form] = parseForms(html);
      expect(form).toMatchObject({ method: 'POST', action: `${idp.issuer}/session/end` });
      expect(form!.fields.id_token_hint).toMatch(JWT);
      expect(form!.fields.post_logout_redirect_uri).toBe(`${th.base}/signed-out`);
      expect(await sessionCount(browser)).toBe(0);
    });

    it('the whole logout, from the logout link to the post-logout page, puts no ID token in any URL', async () => {
      const browser = await loggedIn();
      const endBefore = idp.endSessionCount;
      const flow = await logoutAtDevIdp(browser, await logoutUrl(browser), { idpOrigin: new URL(idp.issuer).origin });
      expect(flow.url).toBe(`${th.base}/signed-out`);
      expect(idp.endSessionCount).toBe(endBefore + 1);
      expect(flow.hops.some((hop) => hop.method === 'POST' && hop.url === `${idp.issuer}/session/end`)).toBe(true);
      for (const hop of browser.history) {
        expect(hop.url, hop.url).not.toMatch(JWT);
        expect(hop.location ?? '', hop.url).not.toMatch(JWT);
      }
    });

    it('a JSON logout continues through our end-session URL to the same form', async () => {
      const browser = await loggedIn();
      const xsrf = browser.cookie('XSRF-TOKEN', th.base)!.value;
      const res = await browser.post(`${th.base}${API}/clients/default/logout`, undefined, { headers: { accept: 'application/json', 'x-xsrf-token': xsrf, origin: th.base } });
      const body = await res.text();
      expect(body).not.toMatch(JWT);
      const { redirectTo } = JSON.parse(body) as { redirectTo: string };
      const page = await browser.get(`${th.base}${redirectTo}`, { headers: { 'sec-fetch-dest': 'document' } });
      expect(page.status).toBe(200);
      const [form] = parseForms(await page.text());
      expect(form).toMatchObject({ method: 'POST', action: `${idp.issuer}/session/end` });
      expect(form!.fields.id_token_hint).toMatch(JWT);
    });

    it("a script's fetch of the logout URL gets no page holding the ID token, only the redirect", async () => {
      const browser = await loggedIn();
      const res = await browser.get(await logoutUrl(browser), { headers: { 'sec-fetch-site': 'same-origin', 'sec-fetch-dest': 'empty', 'sec-fetch-mode': 'cors' } });
      expect(res.status).toBe(302);
      expect(new URL(res.headers.get('location')!).origin).toBe(new URL(idp.issuer).origin);
      expect(await res.text()).not.toMatch(JWT);
    });

    it('a client with endSessionMethod get (the default) redirects, as for an IdP without POST support', async () => {
      const browser = await loggedIn('second');
      const res = await browser.get(`${th.base}${API}/clients/second/logout`, { headers: { 'sec-fetch-site': 'same-origin' } });
      expect(res.status).toBe(302);
      const location = new URL(res.headers.get('location')!);
      expect(location.origin + location.pathname).toBe(`${idp.issuer}/session/end`);
      expect(location.searchParams.get('id_token_hint')).toMatch(JWT);
    });
  });

  describe('the XSRF cookie lives with the session (#18.13)', () => {
    it('expires with the session cookie: after a browser restart, state-changing calls still pass', async () => {
      const browser = await loggedIn();
      const session = browser.cookie('session', th.base)!;
      const xsrf = browser.cookie('XSRF-TOKEN', th.base)!;
      expect(session.expires).toBeDefined();
      expect(xsrf.expires).toBeDefined();
      expect(Math.abs(xsrf.expires! - session.expires!)).toBeLessThan(2000);

      // A browser restart keeps persistent cookies only.
      const restarted = createBrowser();
      for (const cookie of browser.cookies(th.base)) if (cookie.expires !== undefined) restarted.jar.setCookie(cookie.raw, `${th.base}/`);
      expect(restarted.cookie('XSRF-TOKEN', th.base)?.value).toBe(xsrf.value);
      const res = await restarted.request(`${th.base}${API}/targets/api/items`, { method: 'POST', json: {}, headers: { 'x-xsrf-token': xsrf.value, origin: th.base } });
      expect(res.status).toBe(200);
      await res.body?.cancel();
    });

    it('goes with the last session at logout, and stays while another client still has one', async () => {
      const browser = await loggedIn();
      await loggedIn('second', browser);
      const headers = (): Record<string, string> => ({ accept: 'application/json', 'x-xsrf-token': browser.cookie('XSRF-TOKEN', th.base)!.value, origin: th.base });
      expect((await browser.post(`${th.base}${API}/clients/second/logout`, undefined, { headers: headers() })).status).toBe(200);
      expect(browser.cookie('XSRF-TOKEN', th.base)).toBeDefined();
      expect((await browser.post(`${th.base}${API}/clients/default/logout`, undefined, { headers: headers() })).status).toBe(200);
      expect(browser.cookie('XSRF-TOKEN', th.base)).toBeUndefined();
      expect(browser.cookie('session', th.base)).toBeUndefined();
    });
  });
});
