/**
 * Session cookies an attacker (or a bad day) brings: tampered, truncated, oversized, sealed with another
 * key or for another purpose, replayed after logout, made for another client, or whose stored record was
 * tampered with. Each is "no session": 401 on a `user` target (cookie cleared, nothing forwarded), `[]` on
 * /sessions, never a 500. Then CSRF on the routes that change state with that cookie: form posts,
 * cross-site Origin or Sec-Fetch-Site, missing or mismatched XSRF header → 403, nothing done or forwarded.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.ts';
import { CookieSealer } from '../../src/session/cookieSealer.ts';
import { SessionService } from '../../src/session/service.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { rawRequest, startApp, type RunningApp } from '../proxy/support.ts';

const API = '/token-handler/v1';
const T = `${API}/targets`;

async function login(browser: Browser, base: string): Promise<string> {
  const flow = await loginAtDevIdp(browser, `${base}${API}/clients/default/auth`, { username: 'demo', password: 'demo' });
  await flow.response.body?.cancel();
  expect(flow.response.status).toBe(302);
  return browser.cookie('session', base)!.value;
}

function flip(value: string, index: number): string {
  const c = value[index]!;
  return `${value.slice(0, index)}${c === 'A' ? 'B' : 'A'}${value.slice(index + 1)}`;
}

describe('hostile session cookies', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let th: RunningApp;
  let browser: Browser;
  let cookie: string;
  const config = testConfig();

  beforeAll(async () => {
    idp = await startDevIdp();
    upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource });
    th = await startApp(
      testConfig({
        ...config,
        clients: [testClient({ issuer: idp.issuer }), testClient({ id: 'other', issuer: idp.issuer })],
        targets: [testTarget({ id: 'api', url: `${upstream.url}/echo` }), testTarget({ id: 'otherapi', url: `${upstream.url}/echo`, clientId: 'other' })],
      }),
    );
    browser = createBrowser();
    cookie = await login(browser, th.base);
  });
  afterAll(async () => {
    await th?.close();
    await upstream?.close();
    await idp?.close();
  });

  /** The cookie as a session: 401 + cleared on the proxy with nothing forwarded, [] on /sessions, no 5xx. */
  async function expectNoSession(value: string, name = 'session', target = 'api'): Promise<void> {
    const before = upstream.requests;
    const proxied = await rawRequest(th.base, `${T}/${target}/x`, { headers: { cookie: `${name}=${value}` } });
    expect(proxied.status, `${name}=${value.slice(0, 60)}`).toBe(401);
    expect(JSON.parse(proxied.body)).toMatchObject({ error: 'login_required' });
    expect(upstream.requests).toBe(before);
    const sessions = await rawRequest(th.base, `${API}/sessions`, { headers: { cookie: `${name}=${value}` } });
    expect(sessions.status).toBe(200);
    expect(JSON.parse(sessions.body)).toEqual([]);
  }

  it('accepts the real cookie (control)', async () => {
    const res = await rawRequest(th.base, `${T}/api/x`, { headers: { cookie: `session=${cookie}` } });
    expect(res.status).toBe(200);
  });

  it('refuses a tampered cookie: any byte of the body or the MAC changed', async () => {
    const dot = cookie.indexOf('.');
    for (const index of [0, 5, 20, dot - 1, dot + 1, cookie.length - 2]) await expectNoSession(flip(cookie, index));
    await expectNoSession(cookie.replace('.', '..'));
    await expectNoSession(`${cookie}.${cookie}`);
    const [body, mac] = cookie.split('.') as [string, string];
    await expectNoSession(`${mac}.${body}`);
  });

  it('refuses a truncated cookie', async () => {
    for (const length of [0, 1, 10, cookie.indexOf('.'), cookie.indexOf('.') + 1, cookie.length - 1]) {
      const value = cookie.slice(0, length);
      if (value === '') {
        const res = await rawRequest(th.base, `${T}/api/x`, { headers: { cookie: 'session=' } });
        expect(res.status).toBe(401);
      } else {
        await expectNoSession(value);
      }
    }
  });

  it('refuses an oversized cookie (beyond what the sealer reads) without a 500; beyond the header limit it is 431', async () => {
    await expectNoSession(`${cookie}${'A'.repeat(5000)}`);
    await expectNoSession(`${'A'.repeat(8000)}.${'B'.repeat(43)}`);
    const res = await rawRequest(th.base, `${T}/api/x`, { headers: { cookie: `session=${'A'.repeat(20_000)}` } });
    expect(res.status).toBe(431);
    expect(res.headers['content-type']).toContain('application/problem+json');
  });

  it('refuses a cookie sealed with another key, for another purpose, for an id that was never issued, or expired', async () => {
    const foreign = new CookieSealer([Buffer.from('attacker-auth-secret-0123456789abcdef')], [Buffer.from('attacker-enc-secret-0123456789abcdef')]);
    const id = randomBytes(32);
    const later = Date.now() + 3600_000;
    await expectNoSession(foreign.seal(SessionService.cookiePurpose('default'), id, later));
    // Our own keys (as a leaked login-state or another client's cookie would carry): wrong purpose.
    const ours = new CookieSealer(config.session.authSecrets, config.session.encSecrets);
    await expectNoSession(ours.seal('login:default', id, later));
    await expectNoSession(ours.seal(SessionService.cookiePurpose('other'), id, later));
    // Right key and purpose but a session id that was never issued: the store does not know it.
    await expectNoSession(ours.seal(SessionService.cookiePurpose('default'), id, later));
    // The real session id, sealed again with an expiry in the past.
    const session = (await th.th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null }))!;
    await expectNoSession(ours.seal(SessionService.cookiePurpose('default'), session.id, Date.now() - 1000));
  });

  it("refuses another client's cookie: the default client's session does not open the other client's target", async () => {
    await expectNoSession(cookie, 'session-other', 'otherapi');
  });

  it('refuses a cookie replayed after logout', async () => {
    const victim = createBrowser();
    const stolen = await login(victim, th.base);
    const xsrf = victim.cookie('XSRF-TOKEN', th.base)!.value;
    const out = await victim.post(`${th.base}${API}/clients/default/logout`, undefined, { headers: { accept: 'application/json', 'x-xsrf-token': xsrf, origin: th.base } });
    expect(out.status).toBe(200);
    await expectNoSession(stolen);
  });

  it('treats a session whose stored record was tampered with as no session', async () => {
    const victim = createBrowser();
    const value = await login(victim, th.base);
    const session = (await th.th.ctx.sessions.resolve(value, { clientId: 'default', tenant: null }))!;
    const record = (await th.th.ctx.store.get(session.idHash))!;
    const payload = `${record.payload.slice(0, -8)}AAAAAAAA`;
    expect(await th.th.ctx.store.updatePayload(record.idHash, record.version, { payload, accessExpiresAt: record.accessExpiresAt })).not.toBeNull();
    await th.th.ctx.store.publishInvalidation([record.idHash]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await expectNoSession(value);
  });

  it('fuzz: no Cookie header makes the proxy or /sessions fail (never 5xx, nothing forwarded without a session)', async () => {
    const latin1 = fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c));
    const piece = fc.oneof(
      fc.constantFrom('session=', 'session-other=', '__Host-session=', 'XSRF-TOKEN=', 'th-login-0123456789abcdef=', ';', '; ', '=', '.', '%', '%00', '%zz', '"', '\\', ','),
      fc.string({ unit: latin1, maxLength: 12 }),
      fc.constant(cookie),
      fc.constant(cookie.slice(0, 40)),
    );
    const header = fc.array(piece, { maxLength: 12 }).map((parts) => parts.join(''));
    const before = upstream.requests;
    let forwarded = 0;
    await fc.assert(
      fc.asyncProperty(header, async (value) => {
        const proxied = await rawRequest(th.base, `${T}/api/x`, { headers: { cookie: value } });
        expect(proxied.status).toBeLessThan(500);
        if (proxied.status === 200) {
          // Only the real cookie, intact, opens the target.
          expect(value).toContain(`session=${cookie}`);
          forwarded += 1;
        } else {
          expect(proxied.status).toBe(401);
        }
        const sessions = await rawRequest(th.base, `${API}/sessions`, { headers: { cookie: value } });
        expect(sessions.status).toBe(200);
      }),
      { numRuns: 150 },
    );
    expect(upstream.requests - before).toBe(forwarded);
  });

  describe('CSRF with a live session', () => {
    let xsrf: string;
    beforeAll(() => {
      xsrf = browser.cookie('XSRF-TOKEN', th.base)!.value;
    });

    async function stillLoggedIn(): Promise<void> {
      const sessions = (await (await browser.get(`${th.base}${API}/sessions`)).json()) as unknown[];
      expect(sessions).toHaveLength(1);
    }

    const crossSite: [string, () => Record<string, string>][] = [
      ['a form post (no XSRF header) from another site', () => ({ 'content-type': 'application/x-www-form-urlencoded', origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' })],
      ['a form post without Origin or Fetch Metadata (old browser)', () => ({ 'content-type': 'application/x-www-form-urlencoded' })],
      ['a text/plain post with the right token but a cross-site Origin', () => ({ 'content-type': 'text/plain', 'x-xsrf-token': xsrf, origin: 'http://evil.example' })],
      ['the right token but Sec-Fetch-Site: cross-site', () => ({ 'x-xsrf-token': xsrf, 'sec-fetch-site': 'cross-site' })],
      ['a mismatched XSRF header', () => ({ 'x-xsrf-token': `${xsrf}x`, origin: th.base })],
      ['Origin: null (sandboxed frame)', () => ({ 'x-xsrf-token': xsrf, origin: 'null' })],
      ['a same-site sibling without Origin', () => ({ 'x-xsrf-token': xsrf, 'sec-fetch-site': 'same-site' })],
    ];

    it.each(crossSite)('POST logout refuses %s: 403, the session lives on', async (_name, headers) => {
      const res = await browser.request(`${th.base}${API}/clients/default/logout`, { method: 'POST', body: 'a=1', headers: { accept: 'application/json', ...headers() } });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: string }).error).toBe('csrf_failed');
      await stillLoggedIn();
    });

    it.each(crossSite)('DELETE /sessions refuses %s: 403, nothing revoked', async (_name, headers) => {
      // Forms cannot send DELETE: only the headers a cross-site fetch could carry matter here.
      const { 'content-type': _type, ...rest } = headers();
      const res = await browser.request(`${th.base}${API}/sessions`, { method: 'DELETE', headers: rest });
      expect(res.status).toBe(403);
      await stillLoggedIn();
    });

    it.each(crossSite)('the proxy refuses %s: 403 and the upstream sees nothing', async (_name, headers) => {
      for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
        const before = upstream.requests;
        const res = await browser.request(`${th.base}${T}/api/items`, { method, body: 'a=1', headers: headers() });
        expect(res.status, method).toBe(403);
        expect(((await res.json()) as { error: string }).error).toBe('csrf_failed');
        expect(upstream.requests).toBe(before);
      }
    });

    it('a GET logout without the sid guard from another site ends nothing: a confirmation page', async () => {
      const res = await browser.get(`${th.base}${API}/clients/default/logout`, { headers: { 'sec-fetch-site': 'cross-site' } });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('Sign out of');
      await stillLoggedIn();
    });

    it('the same requests from our own page pass (control)', async () => {
      const res = await browser.request(`${th.base}${T}/api/items`, { method: 'POST', json: {}, headers: { 'x-xsrf-token': xsrf, origin: th.base, 'sec-fetch-site': 'same-origin' } });
      expect(res.status).toBe(200);
      await res.body?.cancel();
    });
  });
});
