/**
 * Issue #8 in a real browser: Debian's Chromium, driven by playwright-core, uses the demo SPA
 * (`npm run demo`) exactly as a person would. Every server binds 127.0.0.1; the app is reached as
 * `localhost` and the IdP as `127.0.0.1`, so their cookies never mix and `127.0.0.1:<other port>` is a
 * different *site* from the app (the attacker's).
 *
 * Screenshots of every step land in artifacts/e2e/. `E2E_UPDATE_DEMO_IMAGE=1` also rewrites the
 * README's docs/images/demo.png from the flow test.
 */
import { mkdirSync } from 'node:fs';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { dirname } from 'node:path';
import { decodeJwt } from 'jose';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startDemo, type Demo } from '../../src/demo/demo.ts';
import type { EchoResponse } from '../../src/demo/upstream.ts';
import {
  API, DEMO_IMAGE, LeakGuard, clickForReply, poll, hasChromium, hasOpenssl, launchBrowser, logInThroughUi, selfSigned, sessionsSeenByPage, snap,
  startAttacker, type Attacker,
} from './support.ts';

/**
 * Access tokens live this long at the IdP; token-handler refreshes REFRESH_SKEW_SEC before expiry. A JWT's
 * `exp` is in whole seconds, so a token may end up to 1 s before the service's reckoning: a 2 s skew keeps
 * every token the service sends about 1 s clear of the upstream's check of `exp`.
 */
const ACCESS_TOKEN_TTL_SEC = 4;
const REFRESH_SKEW_SEC = 2;

let browser: Browser;
let attacker: Attacker;

beforeAll(async () => {
  if (!hasChromium) return;
  [browser, attacker] = await Promise.all([launchBrowser(), startAttacker()]);
});
afterAll(async () => {
  await browser?.close();
  await attacker?.close();
});

/** A fresh browser context (no cookies, no storage) with a LeakGuard, per test. */
function freshContexts(getDemo: () => Demo, https: boolean) {
  const state = {} as { context: BrowserContext; page: Page; guard: LeakGuard };
  beforeEach(async () => {
    state.context = await browser.newContext({ ignoreHTTPSErrors: https, viewport: { width: 1000, height: 720 } });
    // Fail in seconds, not after Playwright's 30 s default (the test's own limit).
    state.context.setDefaultTimeout(10_000);
    state.guard = await LeakGuard.attach(state.context, getDemo());
    state.page = await state.context.newPage();
  });
  afterEach(async () => {
    await state.context?.close();
  });
  return state;
}

/** The cookie the browser keeps for the app (by name), as `context.cookies()` reports it. */
async function appCookie(context: BrowserContext, demo: Demo, name: string) {
  const host = new URL(demo.url).hostname;
  return (await context.cookies(demo.url)).find((c) => c.name === name && c.domain === host);
}

/**
 * A cross-site page auto-submits a form POST (top-level navigation) and sends a no-cors fetch POST to the
 * proxy's echo target. token-handler must answer 403 and the upstream must see nothing. Returns whether
 * the browser attached the session cookie to the forged requests (it depends on SameSite).
 */
async function attackFromAnotherSite(ctx: { context: BrowserContext; page: Page; guard: LeakGuard }, demo: Demo, prefix: string, sessionCookie: string) {
  const target = new URL(`${API}/targets/echo/orders`, demo.url).href;
  const upstreamBefore = demo.upstream.requests;
  // What token-handler itself received (DevTools does not always report the headers of an opaque
  // no-cors request): a second 'request' listener on its server socket, reading headers only.
  const arrived: IncomingHttpHeaders[] = [];
  const listener = (request: IncomingMessage): void => {
    if (request.method === 'POST' && request.url === `${API}/targets/echo/orders`) arrived.push(request.headers);
  };
  demo.app.server.on('request', listener);
  const attackPage = await ctx.context.newPage();
  try {
    // 1) The classic: an auto-submitting form. The browser navigates to token-handler's answer.
    const formAnswer = attackPage.waitForResponse((r) => r.url() === target && r.request().method() === 'POST');
    await attackPage.goto(attacker.formUrl(target));
    expect((await formAnswer).status()).toBe(403);
    await attackPage.waitForURL(target);
    const problem = JSON.parse((await attackPage.locator('body').textContent()) ?? '{}') as { error?: string; detail?: string };
    expect(problem).toMatchObject({ status: 403, error: 'csrf_failed', detail: expect.stringMatching(/cross-site/i) });
    await snap(attackPage, prefix, 'attack-form-403');

    // 2) fetch with credentials in no-cors mode: the attacker cannot read the answer, but could it act?
    const fetchAnswer = attackPage.waitForResponse((r) => r.url() === target && r.request().method() === 'POST');
    await attackPage.goto(attacker.fetchUrl(target));
    expect((await fetchAnswer).status()).toBe(403);
    await poll(() => attackPage.title()).toBe('sent');
  } finally {
    demo.app.server.off('request', listener);
    await attackPage.close();
  }

  expect(arrived).toHaveLength(2);
  for (const headers of arrived) {
    expect(headers.origin).toBe(attacker.origin);
    expect(headers['sec-fetch-site']).toBe('cross-site');
    expect(headers['x-xsrf-token']).toBeUndefined();
  }
  expect(demo.upstream.requests, 'requests that reached the upstream during the attack').toBe(upstreamBefore);
  // The victim's session was live throughout, and still is: the refusal was not for want of a session.
  const after = await clickForReply(ctx.page, 'call-axios');
  expect(after.status).toBe(200);
  await ctx.guard.check(ctx.page, 'after the attack');
  // Whether the browser attached the session cookie to each forged request (it depends on SameSite).
  return arrived.map((headers) => (headers.cookie ?? '').split(/;\s*/).some((c) => c.startsWith(`${sessionCookie}=`)));
}

describe.skipIf(!hasChromium)('demo SPA over http://localhost (token-handler defaults: SameSite=Lax, not Secure on http)', () => {
  let demo: Demo;
  beforeAll(async () => {
    demo = await startDemo({
      port: 0, idpPort: 0, upstreamPort: 0, logLevel: 'error',
      accessTokenTtlSec: ACCESS_TOKEN_TTL_SEC,
      extraArgs: ['--refresh_skew', `${REFRESH_SKEW_SEC}s`],
    });
  });
  afterAll(async () => {
    await demo?.close();
  });
  const ctx = freshContexts(() => demo, false);

  it('logs in at the IdP, calls the API with axios and fetch, POSTs with axios (XSRF header), logs out; no token ever reaches the page', async () => {
    const { page, context, guard } = ctx;
    const shot = (name: string) => snap(page, 'flow', name);

    await page.goto(demo.url);
    await poll(() => page.locator('body').getAttribute('data-session')).toBe('anonymous');
    await expect(page.locator('#login').isVisible()).resolves.toBe(true);
    await shot('01-anonymous');
    await guard.check(page, 'anonymous');

    await logInThroughUi(page, demo, async () => {
      await shot('02-idp-login-form');
      await guard.check(page, 'IdP login form');
    });
    await poll(() => page.locator('#user-email').textContent()).toBe('(demo@example.com)');
    await shot('03-signed-in');
    await guard.check(page, 'signed in');

    // The cookies as configured: HttpOnly session cookie, host-only, SameSite=Lax, not Secure over http;
    // the XSRF cookie readable by JavaScript (that is its point).
    const session = await appCookie(context, demo, 'session');
    expect(session).toMatchObject({ httpOnly: true, secure: false, sameSite: 'Lax', path: '/', domain: 'localhost' });
    expect(await appCookie(context, demo, '__Host-session')).toBeUndefined();
    const xsrf = await appCookie(context, demo, 'XSRF-TOKEN');
    expect(xsrf).toMatchObject({ httpOnly: false, sameSite: 'Lax' });
    expect((await context.cookies(demo.url)).filter((c) => c.name.includes('th-login-')), 'login-state cookies left behind').toEqual([]);

    const viaAxios = await clickForReply(page, 'call-axios');
    expect(viaAxios).toMatchObject({ via: 'axios', status: 200, body: { message: 'Hello, Demo User', sub: 'demo' } });
    await poll(() => page.locator('#result-status').textContent()).toBe('HTTP 200');
    await shot('04-call-api-axios');
    if (process.env.E2E_UPDATE_DEMO_IMAGE === '1') {
      mkdirSync(dirname(DEMO_IMAGE), { recursive: true });
      // Cropped below the reply card: the README shows the page, not an empty viewport.
      const reply = await page.locator('#result').locator('xpath=..').boundingBox();
      await page.screenshot({ path: DEMO_IMAGE, clip: { x: 0, y: 0, width: 1000, height: Math.ceil((reply?.y ?? 0) + (reply?.height ?? 688) + 32) } });
    }
    await guard.check(page, 'API via axios');

    const viaFetch = await clickForReply(page, 'call-fetch');
    expect(viaFetch).toMatchObject({ via: 'fetch', status: 200, body: { message: 'Hello, Demo User' } });
    await shot('05-call-api-fetch');
    await guard.check(page, 'API via fetch');

    // POST through the proxy with axios: the CSRF check passes only because axios echoed the XSRF-TOKEN
    // cookie as X-XSRF-TOKEN by itself (the app sets no header); the upstream got a valid bearer token
    // and none of token-handler's cookies or its XSRF header.
    const upstreamBefore = demo.upstream.requests;
    const echoed = page.waitForResponse((r) => r.url().endsWith(`${API}/targets/echo/orders`));
    const posted = await clickForReply(page, 'post-axios');
    const echo = await echoed;
    expect(posted).toMatchObject({ via: 'axios POST', status: 200, upstreamSaw: { method: 'POST', path: '/echo/orders', tokenValid: true } });
    expect(echo.request().headers()['x-xsrf-token']).toBe((await appCookie(context, demo, 'XSRF-TOKEN'))?.value);
    const upstreamSaw = (await echo.json()) as EchoResponse;
    expect(upstreamSaw.token).toMatchObject({ valid: true, claims: { sub: 'demo', name: 'Demo User' } });
    expect(upstreamSaw.headers.cookie ?? '').not.toMatch(/session|XSRF-TOKEN|th-login/);
    expect(upstreamSaw.headers['x-xsrf-token']).toBeUndefined();
    expect(upstreamSaw.bodySha256).toBeTruthy();
    expect(demo.upstream.requests).toBe(upstreamBefore + 1);
    await shot('06-post-axios');
    await guard.check(page, 'POST via axios');

    // The same POST from the same page without the XSRF header (plain fetch): refused, nothing forwarded.
    const bare = await page.evaluate(async (url) => {
      const response = await fetch(url, { method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' }, body: '{}' });
      return { status: response.status, body: (await response.json()) as { detail?: string } };
    }, `${API}/targets/echo/orders`);
    expect(bare.status).toBe(403);
    expect(bare.body.detail).toMatch(/XSRF/);
    expect(demo.upstream.requests).toBe(upstreamBefore + 1);

    // Log out: token-handler ends the session and sends the browser to the IdP's end-session page.
    const sessionValue = session?.value ?? '';
    await page.locator('#logout').click();
    await page.waitForURL(`${demo.idp.issuer}/**`);
    await shot('07-idp-logout-confirm');
    await guard.check(page, 'IdP logout confirmation');
    await page.locator('#logout').click(); // the IdP's "Yes, sign me out"
    await page.waitForURL(demo.url);
    await poll(() => page.locator('body').getAttribute('data-session')).toBe('anonymous');
    await expect(page.locator('#login').isVisible()).resolves.toBe(true);
    await shot('08-logged-out');
    await guard.check(page, 'logged out');

    expect(await sessionsSeenByPage(page)).toEqual([]);
    expect(await appCookie(context, demo, 'session')).toBeUndefined();
    // Gone on the server too, not just forgotten by this browser: the old cookie opens nothing.
    expect(await demo.th.ctx.sessions.resolve(sessionValue, { clientId: 'default', tenant: null })).toBeUndefined();
    const replay = await fetch(new URL(`${API}/targets/api/api/hello`, demo.url), { headers: { cookie: `session=${sessionValue}` } });
    expect(replay.status).toBe(401);
    await replay.body?.cancel();

    // The guard really looked: it read the API replies and knew the cookie and tokens it searched for.
    const seen = (await guard.bodies()).map((b) => new URL(b.url).pathname);
    expect(seen).toEqual(expect.arrayContaining([
      `${API}/sessions`, `${API}/targets/api/api/hello`, `${API}/targets/echo/orders`, `${API}/clients/default/logout`, '/app.js', '/vendor/axios.min.js',
    ]));
    // The one excused exposure (see LeakGuard) did occur and was removed precisely: the echo reflected
    // the bearer token of our POST. The logout reply needed no excuse: it names no token.
    expect(guard.reflectedBearerTokens).toBeGreaterThanOrEqual(1);
    expect(guard.secretCount).toBeGreaterThanOrEqual(3);
  });

  it('keeps the session across a page reload', async () => {
    const { page, context, guard } = ctx;
    await logInThroughUi(page, demo);
    const before = (await appCookie(context, demo, 'session'))?.value;
    await page.reload();
    await poll(() => page.locator('body').getAttribute('data-session')).toBe('signed-in');
    expect(await page.locator('#user-name').textContent()).toBe('Demo User');
    expect((await appCookie(context, demo, 'session'))?.value).toBe(before);
    expect(await sessionsSeenByPage(page)).toEqual([expect.objectContaining({ name: 'Demo User' })]);
    expect(await clickForReply(page, 'call-fetch')).toMatchObject({ status: 200, body: { message: 'Hello, Demo User' } });
    await snap(page, 'reload', 'signed-in-after-reload');
    await guard.check(page, 'after reload');
  });

  it('refreshes an expired access token without the page noticing', async () => {
    const { page, guard } = ctx;
    await logInThroughUi(page, demo);
    expect(await clickForReply(page, 'call-axios')).toMatchObject({ status: 200 });
    const cookie = (await appCookie(ctx.context, demo, 'session'))?.value;
    const tokenNow = async () => (await demo.th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null }))?.payload.accessToken ?? '';
    const oldToken = await tokenNow();
    const { exp } = decodeJwt(oldToken);
    expect(exp).toBeDefined();
    const refreshesBefore = demo.idp.refreshGrantCount;
    let navigations = 0;
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations += 1;
    });

    // Wait until the access token the session holds has EXPIRED (not merely entered the refresh skew).
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, (exp ?? 0) * 1000 - Date.now() + 250)));
    expect(Date.now()).toBeGreaterThan((exp ?? 0) * 1000);

    // The upstream validates `exp`: a 200 means a fresh token was fetched and used for this very call.
    expect(await clickForReply(page, 'call-axios')).toMatchObject({ via: 'axios', status: 200, body: { message: 'Hello, Demo User' } });
    expect(demo.idp.refreshGrantCount).toBeGreaterThan(refreshesBefore);
    const newToken = await tokenNow();
    expect(newToken).not.toBe(oldToken);
    expect(decodeJwt(newToken).exp ?? 0).toBeGreaterThan(exp ?? 0);
    expect(navigations, 'the page navigated (a refresh must be invisible to it)').toBe(0);
    expect(await page.locator('#user-name').textContent()).toBe('Demo User');
    await snap(page, 'refresh', 'api-after-token-expiry');
    await guard.check(page, 'after refresh');
  });

  it('refuses a cross-site form POST and no-cors fetch to the proxy (403, nothing reaches the upstream)', async () => {
    await logInThroughUi(ctx.page, demo);
    const sent = await attackFromAnotherSite(ctx, demo, 'csrf-lax', 'session');
    // SameSite=Lax: the browser already kept the session cookie off both forged requests.
    expect(sent).toEqual([false, false]);
  });
});

describe.skipIf(!hasChromium)('logout with --oidc_end_session_method post: the browser posts the end-session request (#18.13)', () => {
  let demo: Demo;
  beforeAll(async () => {
    // App and IdP on one site (127.0.0.1), as an IdP whose session cookie comes along with a POST from the
    // app (SameSite=None, or the same site): a SameSite=Lax IdP cookie stays behind on a cross-site POST.
    demo = await startDemo({ port: 0, idpPort: 0, upstreamPort: 0, logLevel: 'error', appHost: '127.0.0.1', extraArgs: ['--oidc_end_session_method', 'post'] });
  });
  afterAll(async () => {
    await demo?.close();
  });
  const ctx = freshContexts(() => demo, false);

  it('the auto-submitted form reaches the IdP (only the nonce script runs), the IdP ends its session, no URL carries the ID token', async () => {
    const { page, context, guard } = ctx;
    await logInThroughUi(page, demo);
    // Learns the session's ID token while its cookie is there (the end-session page's exception needs it).
    await guard.check(page, 'signed in');
    const urls: string[] = [];
    const cspViolations: string[] = [];
    context.on('request', (request) => urls.push(request.url()));
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
    });
    const endBefore = demo.idp.endSessionCount;

    await page.locator('#logout').click();
    await page.waitForURL(`${demo.idp.issuer}/**`);
    await page.locator('#logout').waitFor(); // the IdP's own "sign out?" page: it found its session
    await snap(page, 'post-logout', '01-idp-logout-confirm');
    await guard.check(page, 'IdP logout confirmation');
    await page.locator('#logout').click();
    await page.waitForURL(demo.url);
    await poll(() => page.locator('body').getAttribute('data-session')).toBe('anonymous');
    expect(demo.idp.endSessionCount).toBe(endBefore + 1);

    expect(urls, 'the end-session request: a POST to the bare endpoint').toContain(`${demo.idp.issuer}/session/end`);
    expect(urls.filter((url) => /eyJ[\w-]{4,}\.eyJ/.test(url)), 'a token in a URL').toEqual([]);
    // It went through token-handler's end-session page (the JSON logout's continuation), whose script ran.
    expect(urls).toContain(new URL('/token-handler/v1/clients/default/end-session', demo.url).href);
    expect(cspViolations).toEqual([]);
    // Whatever DevTools caught of that page before it submitted itself may carry the ID token only in its
    // field (the LeakGuard exception, checked to be this session's ID token); nothing else anywhere.
    await guard.check(page, 'logged out');
  });
});

describe.skipIf(!hasChromium || !hasOpenssl)('demo SPA over https://localhost (--tls_cert/--tls_key, self-signed)', () => {
  let demo: Demo;
  beforeAll(async () => {
    const tls = selfSigned();
    demo = await startDemo({ port: 0, idpPort: 0, upstreamPort: 0, logLevel: 'error', extraArgs: ['--tls_cert', tls.certFile, '--tls_key', tls.keyFile] });
  });
  afterAll(async () => {
    await demo?.close();
  });
  const ctx = freshContexts(() => demo, true);

  it('sets __Host-session: Secure, HttpOnly, SameSite=Lax; the flow works over HTTPS', async () => {
    const { page, context, guard } = ctx;
    expect(demo.url).toMatch(/^https:\/\/localhost:\d+\/$/);
    await logInThroughUi(page, demo);
    await snap(page, 'https', 'signed-in');
    const session = await appCookie(context, demo, '__Host-session');
    expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Lax', path: '/', domain: 'localhost' });
    expect(await appCookie(context, demo, 'session')).toBeUndefined();
    expect(await appCookie(context, demo, 'XSRF-TOKEN')).toMatchObject({ httpOnly: false, secure: true });
    expect(await clickForReply(page, 'call-axios')).toMatchObject({ status: 200, body: { message: 'Hello, Demo User' } });
    expect(await clickForReply(page, 'post-axios')).toMatchObject({ status: 200, upstreamSaw: { tokenValid: true } });
    await snap(page, 'https', 'post-axios');
    await guard.check(page, 'https');
  });
});

describe.skipIf(!hasChromium || !hasOpenssl)('cross-site requests with --cookie_same_site none over HTTPS: the CSRF check alone stops them', () => {
  let demo: Demo;
  beforeAll(async () => {
    const tls = selfSigned();
    demo = await startDemo({
      port: 0, idpPort: 0, upstreamPort: 0, logLevel: 'error',
      extraArgs: ['--tls_cert', tls.certFile, '--tls_key', tls.keyFile, '--cookie_same_site', 'none'],
    });
  });
  afterAll(async () => {
    await demo?.close();
  });
  const ctx = freshContexts(() => demo, true);

  it('the browser sends the session cookie along, yet token-handler answers 403 and forwards nothing', async () => {
    await logInThroughUi(ctx.page, demo);
    expect(await appCookie(ctx.context, demo, '__Host-session')).toMatchObject({ httpOnly: true, secure: true, sameSite: 'None' });
    const sent = await attackFromAnotherSite(ctx, demo, 'csrf-none', '__Host-session');
    // The top-level form POST certainly carried the cookie (SameSite=None); so the 403 and the still
    // upstream are the XSRF/Origin check's work, not the browser's.
    expect(sent[0]).toBe(true);
  });
});
