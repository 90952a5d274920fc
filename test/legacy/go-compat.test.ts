import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevIdp } from '../../src/demo/idp.ts';
import type { DemoUpstream, EchoResponse } from '../../src/demo/upstream.ts';
import { createBrowser } from '../support/http.ts';
import type { Running } from '../support/process.ts';
import { GO_SESSION_KEYS_ENV, goOidcEnv, legacyLogin, startGoBinary, startGoSide } from './support.ts';

describe('drop-in for go-token-handler: its env file, proxy file, flags and routes', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let proc: Running;
  let base: string;

  beforeAll(async () => {
    const side = await startGoSide('th-go-compat-');
    ({ idp, upstream } = side);
    proc = await startGoBinary(side, {
      files: () => ({
        // The go-token-handler proxy file, verbatim.
        proxy: ['proxies:', '  - endpoint: /proxy', `    target: ${upstream.url}/echo`, '    parameters:', '      idle-conn-timeout: 120s', '      max-idle-conns: 100', '      keep-alive: 30s', '      timeout: 90s'],
        // A go-token-handler style token_handler.env, with its key sizes (auth 32 bytes, enc 16, db 32).
        env: ['# go-token-handler configuration', ...goOidcEnv(side, '"token-handler-secret"'), 'DB_TYPE=sqlite', 'DB_NAME=sessions.db', ...GO_SESSION_KEYS_ENV],
      }),
      // Flags spelled with hyphens, as the Go binary did.
      args: () => ['--listen-addr', `127.0.0.1:${side.port}`, '--log-level', 'info', '--oidc-allow-insecure-issuer'],
      env: { PATH: process.env.PATH ?? '' },
    });
    // The port the binary listens on (another than startGoSide's if that one was taken meanwhile).
    ({ base } = side);
  });

  afterAll(async () => {
    await proc?.stop();
    await upstream?.close();
    await idp?.close();
  });

  it('logs in through /login and /callback, serves /userinfo and proxies sub-paths with their query strings', async () => {
    const browser = createBrowser();
    const flow = await legacyLogin(browser, base);
    expect(new URL(flow.url).pathname).toBe('/callback');
    expect(flow.response.status).toBe(302);
    expect(flow.response.headers.get('location')).toBe(`${base}/`);
    expect(browser.cookie('session', base)?.httpOnly).toBe(true);

    const info = await browser.get(`${base}/userinfo`);
    expect(info.status).toBe(200);
    expect(await info.json()).toMatchObject({ sub: 'demo', name: 'Demo User', email: 'demo@example.com' });

    const proxied = await browser.get(`${base}/proxy/orders/7?expand=items&page=2`);
    expect(proxied.status).toBe(200);
    const echo = (await proxied.json()) as EchoResponse;
    expect(echo.path).toBe('/echo/orders/7');
    expect(echo.query).toMatchObject({ expand: 'items', page: '2' });
    expect(echo.headers.authorization).toMatch(/^Bearer .+/);
    const forwardedCookies = String(echo.headers.cookie ?? '').split(';').map((c) => c.trim().split('=')[0]);
    expect(forwardedCookies).not.toContain('session');
    expect(forwardedCookies).not.toContain('XSRF-TOKEN');
  });

  it("answers /userinfo and the proxy with 401 JSON in go-token-handler's shape without a session", async () => {
    const anonymous = createBrowser();
    const info = await anonymous.get(`${base}/userinfo`);
    expect(info.status).toBe(401);
    expect(info.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await info.json()).toMatchObject({ code: 401, status: 'Unauthorized', message: 'no session: log in first' });
    const proxied = await anonymous.get(`${base}/proxy/orders`);
    expect(proxied.status).toBe(401);
  });

  it('does not log out on a cross-site GET /logout (a confirmation page instead), does on a same-origin one', async () => {
    const browser = createBrowser();
    await legacyLogin(browser, base);
    const attempts: Record<string, string>[] = [{ 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }, { referer: 'https://evil.example/page' }, {}];
    for (const headers of attempts) {
      const res = await browser.get(`${base}/logout`, { headers });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('Sign out of');
      expect((await browser.get(`${base}/userinfo`)).status).toBe(200);
    }
    const res = await browser.get(`${base}/logout`, { headers: { 'sec-fetch-site': 'same-origin' } });
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location')!);
    expect(location.origin).toBe(new URL(idp.issuer).origin);
    expect(location.searchParams.get('post_logout_redirect_uri')).toBe(`${base}/`);
    expect((await browser.get(`${base}/userinfo`)).status).toBe(401);
    expect(proc.stdout + proc.stderr).not.toContain('token-handler-secret');
  });
});

describe('the go-token-handler routes can be switched off', () => {
  it('answers 404 for /login, /callback, /logout and /userinfo with --legacy_routes=false, while the v1 API stays', async () => {
    const { buildApp } = await import('../../src/app.ts');
    const { testClient, testConfig } = await import('../support/config.ts');
    const client = testClient({ issuer: 'http://127.0.0.1:9/never-contacted' });
    for (const legacyRoutes of [true, false]) {
      const { app } = await buildApp(testConfig({ clients: [client], legacyRoutes }), { sweeper: false });
      try {
        for (const path of ['/login', '/callback', '/logout', '/userinfo']) {
          const res = await app.inject({ method: 'GET', url: path });
          if (legacyRoutes) expect(res.statusCode, path).not.toBe(404);
          else expect(res.statusCode, path).toBe(404);
        }
        expect((await app.inject({ method: 'GET', url: '/token-handler/v1/sessions' })).statusCode).toBe(200);
      } finally {
        await app.close();
      }
    }
  });
});
