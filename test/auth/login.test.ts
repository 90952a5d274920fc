import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type TokenHandlerApp } from '../../src/app.ts';
import type { Config } from '../../src/config/types.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { testClient, testConfig } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { loginAtDevIdp, logoutAtDevIdp } from '../support/login.ts';

interface Running {
  th: TokenHandlerApp;
  app: FastifyInstance;
  base: string;
}

async function startTokenHandler(config: Config, now?: () => number): Promise<Running> {
  const th = await buildApp(config, { sweeper: false, now });
  await th.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = th.app.server.address() as { port: number };
  return { th, app: th.app, base: `http://127.0.0.1:${port}` };
}

const API = '/token-handler/v1';

describe('OIDC login, sessions and logout against a real OpenID Provider', () => {
  let idp: DevIdp;
  let th: Running;

  beforeAll(async () => {
    idp = await startDevIdp({
      redirectUris: ['http://127.0.0.1/token-handler/v1/clients/default/callback'],
      postLogoutRedirectUris: ['http://127.0.0.1/signed-out'],
    });
    th = await startTokenHandler(
      testConfig({
        clients: [
          testClient({
            issuer: idp.issuer,
            postLoginRedirectUrl: '/app',
            postLogoutRedirectUrl: '/signed-out',
            failureRedirectUrl: undefined,
          }),
        ],
      }),
    );
    // The post-logout URL is relative: it resolves against our origin, known only now.
    await idp.updateClient('token-handler', { post_logout_redirect_uris: [`${th.base}/signed-out`] });
  });

  afterAll(async () => {
    await th?.app.close();
    await idp?.close();
  });

  async function login(browser: Browser, query = ''): Promise<Response> {
    const flow = await loginAtDevIdp(browser, `${th.base}${API}/clients/default/auth${query}`, { username: 'demo', password: 'demo' });
    return flow.response;
  }

  it('/auth redirects to the IdP with code flow, PKCE S256, state, nonce and the scopes', async () => {
    const browser = createBrowser();
    const res = await browser.get(`${th.base}${API}/clients/default/auth`);
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location')!);
    expect(location.origin + location.pathname).toContain(new URL(idp.issuer).origin);
    const q = location.searchParams;
    expect(q.get('response_type')).toBe('code');
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(q.get('state')).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(q.get('nonce')).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(q.get('scope')!.split(' ')).toEqual(expect.arrayContaining(['openid', 'profile', 'email', 'offline_access']));
    expect(q.get('redirect_uri')).toBe(`${th.base}${API}/clients/default/callback`);
    const stateCookie = browser.cookies(th.base).find((c) => c.name.startsWith('th-login-'));
    expect(stateCookie?.httpOnly).toBe(true);
  });

  it('logs in: new HttpOnly session cookie, XSRF cookie readable, redirect to the post-login URL, /sessions shows the user', async () => {
    const browser = createBrowser();
    expect(await (await browser.get(`${th.base}${API}/sessions`)).json()).toEqual([]);
    const callback = await login(browser);
    expect(callback.status).toBe(302);
    expect(callback.headers.get('location')).toBe('/app');
    const session = browser.cookie('session', th.base);
    expect(session?.httpOnly).toBe(true);
    expect(session?.sameSite).toBe('Lax');
    expect(session?.secure).toBe(false); // plain http in development with cookie_secure=auto
    const xsrf = browser.cookie('XSRF-TOKEN', th.base);
    expect(xsrf?.httpOnly).toBe(false);
    expect(browser.cookies(th.base).some((c) => c.name.startsWith('th-login-'))).toBe(false);

    const res = await browser.get(`${th.base}${API}/sessions`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const text = await res.text();
    const sessions = JSON.parse(text) as Array<Record<string, unknown>>;
    expect(sessions).toHaveLength(1);
    expect(sessions[0]).toMatchObject({
      authenticated: true,
      clientId: 'default',
      sub: 'demo',
      name: 'Demo User',
      email: 'demo@example.com',
      roles: ['user'],
    });
    expect(Date.parse(sessions[0]!.expiresAt as string)).toBeGreaterThan(Date.now());
    // No token of any kind in the response.
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
    expect(text).not.toMatch(/access_?token|refresh_?token|id_?token/i);
  });

  it('issues a new session id at every login (no fixation)', async () => {
    const browser = createBrowser();
    await login(browser);
    const first = browser.cookie('session', th.base)!.value;
    await login(browser);
    const second = browser.cookie('session', th.base)!.value;
    expect(second).not.toBe(first);
    // The session the browser had before is gone.
    const replay = createBrowser();
    replay.jar.setCookie(`session=${first}; Path=/`, th.base);
    expect(await (await replay.get(`${th.base}${API}/sessions`)).json()).toEqual([]);
  });

  it('honours a relative return_to and refuses foreign ones', async () => {
    const browser = createBrowser();
    const callback = await login(browser, `?return_to=${encodeURIComponent('/orders?id=7')}`);
    expect(callback.headers.get('location')).toBe('/orders?id=7');
    for (const bad of ['https://evil.example/', '//evil.example', '/\\evil.example', 'javascript:alert(1)']) {
      const res = await createBrowser().get(`${th.base}${API}/clients/default/auth?return_to=${encodeURIComponent(bad)}`);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(((await res.json()) as { error: string }).error).toBe('invalid_return_to');
    }
  });

  it('refuses a callback with a wrong state, without a login-state cookie, or with a tampered one', async () => {
    const browser = createBrowser();
    const start = await browser.get(`${th.base}${API}/clients/default/auth`);
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    const wrong = await browser.get(`${th.base}${API}/clients/default/callback?code=abc&state=${'x'.repeat(43)}`);
    expect(wrong.status).toBe(400);
    expect(((await wrong.json()) as { error: string }).error).toBe('invalid_state');

    const noCookie = await createBrowser().get(`${th.base}${API}/clients/default/callback?code=abc&state=${state}`);
    expect(noCookie.status).toBe(400);

    const tampered = createBrowser();
    const start2 = await tampered.get(`${th.base}${API}/clients/default/auth`);
    const state2 = new URL(start2.headers.get('location')!).searchParams.get('state')!;
    const cookie = tampered.cookies(th.base).find((c) => c.name.startsWith('th-login-'))!;
    tampered.jar.setCookie(`${cookie.name}=${cookie.value.slice(0, -3)}AAA; Path=/`, th.base);
    const res = await tampered.get(`${th.base}${API}/clients/default/callback?code=abc&state=${state2}`);
    expect(res.status).toBe(400);
    expect(tampered.cookie('session', th.base)).toBeUndefined();
  });

  it('refuses a replayed authorization code and creates no session', async () => {
    const browser = createBrowser();
    const flow = await loginAtDevIdp(browser, `${th.base}${API}/clients/default/auth`, { username: 'demo', password: 'demo' });
    expect(flow.response.status).toBe(302);
    const callbackUrl = flow.url;
    // The attacker replays the exact callback (code + state) with the login-state cookie re-created.
    const replay = createBrowser();
    const res = await replay.get(callbackUrl);
    expect(res.status).toBe(400);
    expect(replay.cookie('session', th.base)).toBeUndefined();
  });

  it('a user who cancels at the IdP (access_denied) goes back to the app (/?error=access_denied), without a session', async () => {
    const browser = createBrowser();
    const start = await browser.get(`${th.base}${API}/clients/default/auth`);
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    const res = await browser.get(`${th.base}${API}/clients/default/callback?error=access_denied&error_description=nope&state=${state}&iss=${encodeURIComponent(idp.issuer)}`);
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(`${th.base}/?error=access_denied`);
    expect(browser.cookie('session', th.base)).toBeUndefined();
  });

  it('maps another IdP error (temporarily_unavailable) to a clear 400 without a session', async () => {
    const browser = createBrowser();
    const start = await browser.get(`${th.base}${API}/clients/default/auth`);
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    const res = await browser.get(`${th.base}${API}/clients/default/callback?error=temporarily_unavailable&state=${state}&iss=${encodeURIComponent(idp.issuer)}`);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string };
    expect(body.error).toBe('temporarily_unavailable');
    expect(browser.cookie('session', th.base)).toBeUndefined();
  });

  it('answers 404 for an unknown client', async () => {
    const res = await createBrowser().get(`${th.base}${API}/clients/nope/auth`);
    expect(res.status).toBe(404);
  });

  it('POST logout needs the XSRF header; then revokes the refresh token, ends the IdP session and deletes the session', async () => {
    const browser = createBrowser();
    await login(browser);
    const before = idp.revocationCount;
    const denied = await browser.post(`${th.base}${API}/clients/default/logout`, undefined, { headers: { accept: 'application/json' } });
    expect(denied.status).toBe(403);
    expect(((await (await browser.get(`${th.base}${API}/sessions`)).json()) as unknown[]).length).toBe(1);

    const xsrf = browser.cookie('XSRF-TOKEN', th.base)!.value;
    const res = await browser.post(`${th.base}${API}/clients/default/logout`, undefined, {
      headers: { accept: 'application/json', 'x-xsrf-token': xsrf, origin: th.base },
    });
    expect(res.status).toBe(200);
    const body = await res.text();
    // The ID token (id_token_hint) never reaches script: the app gets our continuation URL.
    expect(body).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
    const { redirectTo: continuation } = JSON.parse(body) as { redirectTo: string };
    expect(continuation).toBe(`${API}/clients/default/end-session`);
    const continued = await browser.get(`${th.base}${continuation}`);
    expect(continued.status).toBe(302);
    const redirectTo = continued.headers.get('location')!;
    const endSession = new URL(redirectTo);
    expect(endSession.origin).toBe(new URL(idp.issuer).origin);
    // The continuation is single-use.
    const again = await browser.get(`${th.base}${continuation}`);
    expect(again.headers.get('location')).toBe(`${th.base}/signed-out`);
    expect(endSession.searchParams.get('id_token_hint')).toBeTruthy();
    expect(endSession.searchParams.get('post_logout_redirect_uri')).toBe(`${th.base}/signed-out`);
    expect(idp.revocationCount).toBe(before + 1);
    expect(browser.cookie('session', th.base)).toBeUndefined();
    expect(await (await browser.get(`${th.base}${API}/sessions`)).json()).toEqual([]);

    const endBefore = idp.endSessionCount;
    const ended = await logoutAtDevIdp(browser, redirectTo, { idpOrigin: new URL(idp.issuer).origin });
    expect(ended.url).toBe(`${th.base}/signed-out`);
    expect(idp.endSessionCount).toBe(endBefore + 1);
  });

  it('GET logout with the sid guard from /sessions logs out; without it (nothing shows where it came from) it only asks', async () => {
    const browser = createBrowser();
    await login(browser);
    const [view] = (await (await browser.get(`${th.base}${API}/sessions`)).json()) as Array<{ logoutUrl: string }>;
    const unexplained = await browser.get(`${th.base}${API}/clients/default/logout`);
    expect(unexplained.status).toBe(200);
    expect(await unexplained.text()).toContain('Sign out of');
    expect(((await (await browser.get(`${th.base}${API}/sessions`)).json()) as unknown[]).length).toBe(1);
    const res = await browser.get(`${th.base}${view!.logoutUrl}`);
    expect(res.status).toBe(302);
    expect(await (await browser.get(`${th.base}${API}/sessions`)).json()).toEqual([]);
  });
});

describe('session lifetimes', () => {
  let idp: DevIdp;
  afterAll(async () => idp?.close());

  // The service's clock is moved past a lifetime instead of sleeping through it: however slow the login, the
  // session is checked well inside its lifetime and then well past it (the browser's own clock is not moved,
  // so the cookie is still sent: the service itself refuses it).
  it('ends a session after its idle lifetime and after its absolute lifetime', async () => {
    const LIFETIME_SEC = 600;
    let skewMs = 0;
    const now = (): number => Date.now() + skewMs;
    idp = await startDevIdp({ redirectUris: ['http://127.0.0.1/token-handler/v1/clients/default/callback'] });
    const base = testConfig({ clients: [testClient({ issuer: idp.issuer })] });
    const idle = await startTokenHandler({ ...base, session: { ...base.session, idleLifetimeSec: LIFETIME_SEC, absoluteLifetimeSec: 8 * 3600 } }, now);
    const absolute = await startTokenHandler(
      { ...base, db: { type: 'sqlite', path: `${base.db.path}-abs` }, session: { ...base.session, idleLifetimeSec: 8 * 3600, absoluteLifetimeSec: LIFETIME_SEC } },
      now,
    );
    try {
      for (const th of [idle, absolute]) {
        const browser = createBrowser();
        await loginAtDevIdp(browser, `${th.base}${API}/clients/default/auth`, { username: 'demo', password: 'demo' });
        expect(((await (await browser.get(`${th.base}${API}/sessions`)).json()) as unknown[]).length).toBe(1);
        expect(await th.th.ctx.sessions.sweep()).toBe(0);
        skewMs += (LIFETIME_SEC + 1) * 1000;
        expect(browser.cookie('session', th.base)).toBeDefined();
        expect(await (await browser.get(`${th.base}${API}/sessions`)).json()).toEqual([]);
        // Expired sessions are swept from the store.
        expect(await th.th.ctx.sessions.sweep()).toBe(1);
        expect(await th.th.ctx.store.countActive(now())).toBe(0);
      }
    } finally {
      await idle.app.close();
      await absolute.app.close();
    }
  });
});
