/**
 * Issue 18.1: login starts must not pile up cookies. A page that makes a browser start logins over and
 * over (a cross-site popup navigated to /auth a hundred times) once left a cookie per start, until the
 * Cookie header passed the header limit and every request of that browser got 431 for ten minutes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DemoUpstream } from '../../src/demo/upstream.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { LOGIN_STATE_BUDGET_CHARS, MAX_LOGIN_ATTEMPTS, MAX_LOGIN_STATE_CHARS, loginCookiesOverBudget } from '../../src/routes/loginState.ts';
import { testClient } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { startEchoApp, type RunningApp } from '../proxy/support.ts';

const API = '/token-handler/v1';

describe('login-state cookies stay bounded however many logins a browser starts', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let th: RunningApp;

  beforeAll(async () => {
    idp = await startDevIdp();
    // The default header limit: the one a browser ran into.
    ({ upstream, th } = await startEchoApp(idp, { config: { limits: { maxBodyBytes: 1024 * 1024, maxHeaderBytes: 16 * 1024 } } }));
  });
  afterAll(async () => {
    await th?.close();
    await upstream?.close();
    await idp?.close();
  });

  /** Starts a login; returns the IdP authorization URL it redirects to. */
  async function start(browser: Browser, returnTo?: string): Promise<string> {
    const query = returnTo === undefined ? '' : `?return_to=${encodeURIComponent(returnTo)}`;
    const res = await browser.get(`${th.base}${API}/clients/default/auth${query}`);
    expect(res.status, await res.clone().text()).toBe(302);
    return res.headers.get('location')!;
  }

  const loginCookies = (browser: Browser) => browser.cookies(th.base).filter((c) => c.name.includes('th-login-'));

  it('100 starts with a 2 KB return_to: the browser keeps working, its cookie stays small, the newest login completes', async () => {
    const browser = createBrowser();
    await loginAtDevIdp(browser, `${th.base}${API}/clients/default/auth`);
    expect(browser.cookie('session', th.base)).toBeDefined();

    const longReturnTo = (i: number) => `/app/${i}/${'x'.repeat(2048 - `/app/${i}/`.length)}`;
    let newest = '';
    for (let i = 0; i < 100; i += 1) newest = await start(browser, longReturnTo(i));

    // One login-state cookie, within what a browser keeps.
    expect(loginCookies(browser)).toHaveLength(1);
    expect(loginCookies(browser)[0]!.value.length).toBeLessThanOrEqual(MAX_LOGIN_STATE_CHARS);
    const cookieHeader = browser.jar.cookieHeader(`${th.base}/`) ?? '';
    expect(cookieHeader.length).toBeLessThan(5 * 1024);

    // Every request of that browser still works: /sessions, the API, a login start.
    const sessions = await browser.get(`${th.base}${API}/sessions`);
    expect(sessions.status).toBe(200);
    expect(await sessions.json()).toHaveLength(1);
    const api = await browser.get(`${th.base}${API}/targets/api/x`);
    expect(api.status).toBe(200);
    expect(((await api.json()) as { token: { valid: boolean } }).token.valid).toBe(true);

    const flow = await loginAtDevIdp(browser, newest);
    expect(flow.response.status).toBe(302);
    expect(flow.response.headers.get('location')).toBe(longReturnTo(99));
  });

  it('parallel logins (tabs) each complete, in any order; each attempt is single-use', async () => {
    const browser = createBrowser();
    const first = await start(browser, '/first');
    const second = await start(browser, '/second');
    expect(loginCookies(browser)).toHaveLength(1);

    const secondFlow = await loginAtDevIdp(browser, second);
    expect(secondFlow.response.headers.get('location')).toBe('/second');
    const firstFlow = await loginAtDevIdp(browser, first);
    expect(firstFlow.response.headers.get('location')).toBe('/first');
    // Both attempts used: the cookie is gone.
    expect(loginCookies(browser)).toHaveLength(0);

    // Replaying the first callback (with the browser's cookies) is refused.
    const replay = await browser.get(firstFlow.url);
    expect(replay.status).toBe(400);
    expect(await replay.json()).toMatchObject({ error: 'invalid_state' });
  });

  it('the oldest attempt gives way once more are started than the cookie keeps', async () => {
    const browser = createBrowser();
    const oldest = await start(browser, '/oldest');
    for (let i = 0; i < MAX_LOGIN_ATTEMPTS; i += 1) await start(browser, `/later/${i}`);
    const flow = await loginAtDevIdp(browser, oldest);
    expect(flow.response.status).toBe(400);
    expect(await flow.response.json()).toMatchObject({ error: 'invalid_state' });
    expect(browser.cookie('session', th.base)).toBeUndefined();
  });

  it('a return_to too long to carry is refused at the start, before any cookie is set', async () => {
    const browser = createBrowser();
    // 2,000 characters that each percent-encode to 6: far beyond what a cookie can hold.
    const res = await browser.get(`${th.base}${API}/clients/default/auth?return_to=${encodeURIComponent(`${th.base}/${'é'.repeat(2000)}`)}`);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_return_to' });
    expect(loginCookies(browser)).toHaveLength(0);
  });
});

describe('login-state cookies stay bounded across clients (issue 18.1, several clients)', () => {
  const CLIENTS = ['default', 'c1', 'c2', 'c3', 'c4', 'c5'];
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let th: RunningApp;

  beforeAll(async () => {
    idp = await startDevIdp({ redirectUris: CLIENTS.map((id) => `http://127.0.0.1${API}/clients/${id}/callback`) });
    ({ upstream, th } = await startEchoApp(idp, {
      config: {
        clients: CLIENTS.map((id) => testClient({ id, issuer: idp.issuer })),
        limits: { maxBodyBytes: 1024 * 1024, maxHeaderBytes: 16 * 1024 },
      },
    }));
  });
  afterAll(async () => {
    await th?.close();
    await upstream?.close();
    await idp?.close();
  });

  it('100 starts with a 2 KB return_to spread over 6 clients: the browser keeps working and the newest login completes', async () => {
    const browser = createBrowser();
    await loginAtDevIdp(browser, `${th.base}${API}/clients/default/auth`);
    const longReturnTo = (i: number) => `/app/${i}/${'x'.repeat(2048 - `/app/${i}/`.length)}`;
    let newest = '';
    let newestClient = '';
    for (let i = 0; i < 100; i += 1) {
      newestClient = CLIENTS[i % CLIENTS.length]!;
      const res = await browser.get(`${th.base}${API}/clients/${newestClient}/auth?return_to=${encodeURIComponent(longReturnTo(i))}`);
      expect(res.status, await res.clone().text()).toBe(302);
      newest = res.headers.get('location')!;
      const loginCookies = browser.cookies(th.base).filter((c) => c.name.includes('th-login-'));
      const chars = loginCookies.reduce((sum, c) => sum + c.name.length + c.value.length, 0);
      expect(chars, `after start ${i}`).toBeLessThanOrEqual(LOGIN_STATE_BUDGET_CHARS);
    }
    // One cookie per client used to add up to ~23 KB here: every request got 431.
    expect((browser.jar.cookieHeader(`${th.base}/`) ?? '').length).toBeLessThan(9 * 1024);
    const sessions = await browser.get(`${th.base}${API}/sessions`);
    expect(sessions.status).toBe(200);
    expect((await browser.get(`${th.base}${API}/targets/api/x`)).status).toBe(200);

    const flow = await loginAtDevIdp(browser, newest);
    expect(flow.response.status).toBe(302);
    expect(flow.response.headers.get('location')).toBe(longReturnTo(99));
    expect(newestClient).toBe('c3');
  });

  it('a short login of another client survives: only what is over the budget is cleared, the largest first', () => {
    const prefix = 'th-login-';
    const big = 'v'.repeat(MAX_LOGIN_STATE_CHARS - 200);
    const cookies = { session: 's', [`${prefix}a`]: big, [`${prefix}b`]: 'short', [`${prefix}c`]: big, other: big };
    expect(loginCookiesOverBudget(cookies, prefix, `${prefix}own`, 100)).toStrictEqual([]);
    expect(loginCookiesOverBudget(cookies, prefix, `${prefix}own`, MAX_LOGIN_STATE_CHARS)).toStrictEqual([`${prefix}a`]);
    expect(loginCookiesOverBudget({ ...cookies, [`${prefix}d`]: big }, prefix, `${prefix}own`, MAX_LOGIN_STATE_CHARS)).toStrictEqual([`${prefix}a`, `${prefix}c`]);
    // The client's own cookie is replaced, never counted twice or cleared.
    expect(loginCookiesOverBudget({ [`${prefix}own`]: big }, prefix, `${prefix}own`, MAX_LOGIN_STATE_CHARS)).toStrictEqual([]);
  });
});
