/**
 * The browser client (`token-handler/client`, src/client/index.ts) in Debian's Chromium, through the demo
 * page that uses it: login, calls through its fetch wrapper (the XSRF header), the `loginrequired` event on
 * a 401, logout reaching the other tabs, and the `expiring` / `expired` events.
 *
 * Time: the page's clock is Playwright's (page.clock), moved forward by the test, so the client's timers fire
 * exactly when the test says and nothing races the wall clock. token-handler's clock cannot be moved: where
 * the session must really be gone (expired, ended elsewhere) the test ends it in token-handler itself.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startDemo, type Demo } from '../../src/demo/demo.ts';
import { API, LeakGuard, clickForReply, hasChromium, launchBrowser, logInThroughUi, poll, snap } from './support.ts';

/** The events the demo page logged (`<li data-event data-detail>` in #events), oldest first. */
async function events(page: Page): Promise<{ event: string; detail: string }[]> {
  return page.locator('#events li').evaluateAll((items) =>
    items.map((item) => ({ event: item.getAttribute('data-event') ?? '', detail: item.getAttribute('data-detail') ?? '' })),
  );
}

/** The request headers another origin receives when the page calls it through the client's fetch. */
async function headersSeenElsewhere(page: Page, method: string): Promise<IncomingHttpHeaders> {
  const seen: IncomingHttpHeaders[] = [];
  // Allows what a browser could ask, so a leaked header would arrive (after its preflight) rather than be blocked.
  const server = createServer((req, res) => {
    seen.push({ ...req.headers, ':method': req.method });
    req.resume();
    res.writeHead(204, {
      'access-control-allow-origin': req.headers.origin ?? '*',
      'access-control-allow-credentials': 'true',
      'access-control-allow-methods': 'GET, POST, PUT, PATCH, DELETE',
      'access-control-allow-headers': req.headers['access-control-request-headers'] ?? '*',
    }).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/collect`;
    // A string, as it runs in the page: the page's own module, a second client of it. Without an added
    // header this is a simple cross-origin request (no preflight); with one, a preflight names it first.
    await page.evaluate(`(async () => {
      const { createClient } = await import('/client.js');
      const th = createClient({ channel: false });
      await th.fetch(${JSON.stringify(url)}, { method: ${JSON.stringify(method)}, headers: { 'content-type': 'text/plain' }, body: 'x' });
      th.close();
    })()`);
    expect(seen.map((headers) => headers[':method'])).toEqual([method]);
    return seen[0]!;
  } finally {
    server.close();
  }
}

async function eventNames(page: Page): Promise<string[]> {
  return (await events(page)).map((e) => e.event);
}

describe.skipIf(!hasChromium)('token-handler/client in the demo page', () => {
  let browser: Browser;
  let demo: Demo;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    [browser, demo] = await Promise.all([launchBrowser(), startDemo({ port: 0, idpPort: 0, upstreamPort: 0, logLevel: 'error' })]);
  });
  afterAll(async () => {
    await browser?.close();
    await demo?.close();
  });
  beforeEach(async () => {
    // bypassCSP: so the page may also call a server of the test's on another origin (the demo's CSP allows
    // 'self' only); test/e2e/browser.test.ts loads the same page and client under that CSP.
    context = await browser.newContext({ viewport: { width: 1000, height: 900 }, bypassCSP: true });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
  });
  afterEach(async () => {
    await context?.close();
  });

  /** Ends the browser's session inside token-handler, as its expiry or a logout elsewhere would. */
  async function endSessionInTokenHandler(): Promise<void> {
    const cookie = (await context.cookies(demo.url)).find((c) => c.name === 'session')?.value;
    const session = await demo.th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null });
    expect(session, 'the session to end').toBeDefined();
    await demo.th.ctx.sessions.destroy(session!.idHash);
  }

  it('logs in, calls the API through its fetch (GET, and a POST with the XSRF header), and no token reaches the page', async () => {
    const guard = await LeakGuard.attach(context, demo);
    await logInThroughUi(page, demo);
    await poll(() => eventNames(page)).toContain('session');

    expect(await clickForReply(page, 'call-fetch')).toMatchObject({ via: 'fetch', status: 200, body: { message: 'Hello, Demo User' } });
    // A POST through the proxy passes the CSRF check only with the header: the wrapper added it, from the cookie.
    const echoed = page.waitForRequest((r) => r.url().endsWith(`${API}/targets/echo/orders`) && r.method() === 'POST');
    expect(await clickForReply(page, 'post-fetch')).toMatchObject({ via: 'fetch POST', status: 200, upstreamSaw: { method: 'POST', tokenValid: true } });
    const xsrf = (await context.cookies(demo.url)).find((c) => c.name === 'XSRF-TOKEN')?.value;
    expect(xsrf).toBeTruthy();
    expect((await echoed).headers()['x-xsrf-token']).toBe(xsrf);
    // GETs go without it (only state-changing requests need it).
    const get = page.waitForRequest((r) => r.url().endsWith(`${API}/targets/api/api/hello`));
    await clickForReply(page, 'call-fetch');
    expect((await get).headers()['x-xsrf-token']).toBeUndefined();
    // A state-changing call to another origin goes without it: the token is for token-handler only.
    const elsewhere = await headersSeenElsewhere(page, 'POST');
    expect(elsewhere['x-xsrf-token']).toBeUndefined();
    expect(elsewhere.origin).toBe(new URL(demo.url).origin);
    await snap(page, 'client', 'signed-in');
    await guard.check(page, 'client calls');
    expect((await guard.bodies()).map((b) => new URL(b.url).pathname)).toContain('/client.js');
  });

  it('turns a 401 login_required into the loginrequired event, and the page offers to log in again', async () => {
    await logInThroughUi(page, demo);
    await endSessionInTokenHandler();
    expect(await clickForReply(page, 'call-fetch')).toMatchObject({ status: 401, body: { error: 'login_required' } });
    await poll(() => eventNames(page)).toContain('loginrequired');
    await poll(() => page.locator('body').getAttribute('data-session')).toBe('anonymous');
    expect(await page.locator('#notice-text').textContent()).toMatch(/session has ended/);
    await snap(page, 'client', 'login-required');

    // "Log in" from the notice goes through the login (the IdP still knows the user) and back, signed in again.
    await page.locator('#notice-action').click();
    await poll(() => page.locator('body').getAttribute('data-session')).toBe('signed-in');
    expect(await clickForReply(page, 'call-fetch')).toMatchObject({ status: 200 });
  });

  it('logs out in one tab and every other tab hears of it', async () => {
    await logInThroughUi(page, demo);
    const other = await context.newPage();
    await other.goto(demo.url);
    await poll(() => other.locator('body').getAttribute('data-session')).toBe('signed-in');

    await page.locator('#logout').click();
    await page.waitForURL(`${demo.idp.issuer}/**`); // on to the IdP's logout
    await poll(() => other.locator('body').getAttribute('data-session')).toBe('anonymous');
    expect(await events(other)).toContainEqual({ event: 'logout', detail: 'other-tab' });
    expect(await other.locator('#notice-text').textContent()).toBe('You logged out in another tab.');
    await snap(other, 'client', 'other-tab-logged-out');
    // And it was a logout, not a guess: token-handler has no session for this browser any more.
    const sessions = await other.evaluate(async (url) => (await fetch(url)).json() as Promise<unknown[]>, `${API}/sessions`);
    expect(sessions).toEqual([]);
  });

  it('fires expiring a minute before the session ends (asking again first if the app was active), and expired once it has', async () => {
    await page.clock.install();
    await logInThroughUi(page, demo);
    const expiresIn = await page.evaluate(async (url) => ((await (await fetch(url)).json()) as { expiresIn: number }[])[0]?.expiresIn ?? 0, `${API}/sessions`);
    // The demo's sessions end after an hour unused (the default --session_idle_lifetime), well before the absolute 8 h.
    expect(expiresIn).toBeGreaterThan(3000);
    let asked = 0;
    page.on('request', (r) => {
      if (r.url().endsWith(`${API}/sessions`)) asked += 1;
    });

    // 1. The app was active (a call through the wrapper moved the idle end): at the warning time the client
    //    asks token-handler, which still counts almost the whole hour (its clock did not move): no warning.
    expect(await clickForReply(page, 'call-fetch')).toMatchObject({ status: 200 });
    await page.clock.fastForward((expiresIn - 30) * 1000);
    await poll(() => asked).toBe(1);
    await page.clock.fastForward(1000);
    expect(await eventNames(page)).not.toContain('expiring');

    // 2. No activity since: at the (new) warning time, `expiring` with the seconds left, and no request made
    //    to learn it (asking would extend the session of a tab left open).
    const { expiresIn: now } = await page.evaluate(async (url) => ((await (await fetch(url)).json()) as { expiresIn: number }[])[0]!, `${API}/sessions`);
    asked = 0;
    await page.clock.fastForward((now - 90) * 1000);
    expect(await eventNames(page)).not.toContain('expiring');
    await page.clock.fastForward(45_000);
    await poll(() => eventNames(page)).toContain('expiring');
    const left = Number((await events(page)).find((e) => e.event === 'expiring')?.detail);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(60);
    expect(asked).toBe(0);
    expect(await page.locator('#notice-text').textContent()).toMatch(/session ends in about 1 minute/);
    await snap(page, 'client', 'expiring');

    // 3. The end: the client asks token-handler (safe now), which the test ended first (its clock is not the page's).
    await endSessionInTokenHandler();
    await page.clock.fastForward(62_000);
    await poll(() => eventNames(page)).toContain('expired');
    expect(asked).toBe(1);
    await poll(() => page.locator('body').getAttribute('data-session')).toBe('anonymous');
    expect(await page.locator('#notice-text').textContent()).toBe('Your session has ended.');
    await snap(page, 'client', 'expired');
  });
});
