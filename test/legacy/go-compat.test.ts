import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream, type EchoResponse } from '../../src/demo/upstream.ts';
import { tempDir } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';

const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts the real token-handler binary in `cwd` and resolves once it listens. */
async function startProcess(cwd: string, args: string[]): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { cwd, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`token-handler did not start:\n${output}`)), 15_000);
    const check = (): void => {
      if (/Server listening at/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`token-handler exited with ${code}:\n${output}`));
    });
  });
  return { child, output: () => output };
}

describe('drop-in for go-token-handler: its env file, proxy file, flags and routes', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let proc: { child: ChildProcess; output: () => string };
  let base: string;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    // Opaque access tokens: the IdP's userinfo endpoint accepts those (it refuses audience-bound JWTs).
    idp = await startDevIdp({ redirectUris: [`${base}/callback`], postLogoutRedirectUris: [`${base}/`], jwtAccessTokens: false });
    upstream = await startDemoUpstream();
    const dir = tempDir('th-go-compat-');
    // The go-token-handler proxy file, verbatim.
    writeFileSync(
      join(dir, 'proxy.yaml'),
      ['proxies:', '  - endpoint: /proxy', `    target: ${upstream.url}/echo`, '    parameters:', '      idle-conn-timeout: 120s', '      max-idle-conns: 100', '      keep-alive: 30s', '      timeout: 90s', ''].join('\n'),
    );
    // A go-token-handler style token_handler.env, with its key sizes (auth 32 bytes, enc 16, db 32).
    writeFileSync(
      join(dir, 'token_handler.env'),
      [
        '# go-token-handler configuration',
        `OIDC_ISSUER=${idp.issuer}`,
        'OIDC_CLIENT_ID=token-handler',
        'OIDC_CLIENT_SECRET="token-handler-secret"',
        `OIDC_REDIRECT_URL=${base}/callback`,
        `OIDC_POST_LOGIN_REDIRECT_URL=${base}/`,
        `OIDC_POST_LOGOUT_REDIRECT_URL=${base}/`,
        'PROXY_CONFIG=proxy.yaml',
        'DB_TYPE=sqlite',
        'DB_NAME=sessions.db',
        'SESSION_AUTH_SECRET=0123456789abcdef0123456789abcdef',
        'SESSION_ENC_SECRET=0123456789abcdef',
        'SESSION_DB_KEY=abcdef0123456789abcdef0123456789',
        '',
      ].join('\n'),
    );
    // Flags spelled with hyphens, as the Go binary did.
    proc = await startProcess(dir, ['--listen-addr', `127.0.0.1:${port}`, '--log-level', 'info', '--oidc-allow-insecure-issuer']);
  });

  afterAll(async () => {
    proc?.child.kill('SIGTERM');
    await upstream?.close();
    await idp?.close();
  });

  it('logs in through /login and /callback, serves /userinfo and proxies sub-paths with their query strings', async () => {
    const browser = createBrowser();
    const flow = await loginAtDevIdp(browser, `${base}/login`, { username: 'demo', password: 'demo' });
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

  it('answers /userinfo and the proxy with 401 JSON without a session', async () => {
    const anonymous = createBrowser();
    const info = await anonymous.get(`${base}/userinfo`);
    expect(info.status).toBe(401);
    expect(((await info.json()) as { error: string }).error).toBe('login_required');
    const proxied = await anonymous.get(`${base}/proxy/orders`);
    expect(proxied.status).toBe(401);
  });

  it('does not log out on a cross-site GET /logout, does on a same-origin one', async () => {
    const browser = createBrowser();
    await loginAtDevIdp(browser, `${base}/login`, { username: 'demo', password: 'demo' });
    const attempts: Record<string, string>[] = [{ 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }, { referer: 'https://evil.example/page' }, {}];
    for (const headers of attempts) {
      const res = await browser.get(`${base}/logout`, { headers });
      expect(res.status).toBe(403);
      expect((await browser.get(`${base}/userinfo`)).status).toBe(200);
    }
    const res = await browser.get(`${base}/logout`, { headers: { 'sec-fetch-site': 'same-origin' } });
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location')!);
    expect(location.origin).toBe(new URL(idp.issuer).origin);
    expect(location.searchParams.get('post_logout_redirect_uri')).toBe(`${base}/`);
    expect((await browser.get(`${base}/userinfo`)).status).toBe(401);
    expect(proc.output()).not.toContain('token-handler-secret');
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
