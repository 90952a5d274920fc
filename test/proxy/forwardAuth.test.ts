/**
 * Forward-auth (src/proxy/forwardAuth.ts): a real nginx (Debian's) in front, using auth_request against the
 * internal listener exactly as docs/forward-auth.md configures it; the dev IdP, the demo upstream (which
 * validates the token it receives against the IdP's JWKS) and a real login through nginx. Then the listener
 * itself, as Traefik (X-Forwarded-Method/-Uri) and Envoy (the check request is the original request) call it.
 */
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream, type EchoResponse } from '../../src/demo/upstream.ts';
import { forwardAuthAddress } from '../../src/proxy/forwardAuth.ts';
import { tempDir, testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { nginxSocketDir, probeNginx, startNginx, type Nginx } from '../support/nginx.ts';
import { expireAccessToken } from '../support/sessions.ts';
import { buildApp } from '../../src/app.ts';
import { memoryLogger } from '../ops/support.ts';
import { rawRequest, type RawResponse, type RunningApp } from './support.ts';

const nginxMissing = probeNginx();
// .ci/run installs Debian's nginx: on CI a missing nginx fails the suite instead of skipping it.
if (nginxMissing !== undefined && process.env.CI === 'true') throw new Error(`nginx is required in CI: ${nginxMissing}`);
if (nginxMissing !== undefined) console.warn(`[forward-auth] SKIPPING the nginx cases: ${nginxMissing}`);
const EVIL = 'https://evil.example';

function cookieNames(header: string | string[] | undefined): string[] {
  return String(header ?? '').split(/;\s*/).filter(Boolean).map((pair) => pair.split('=')[0]!);
}

/**
 * The nginx server block of docs/forward-auth.md, with the ports of this test; `check`: where the
 * forward-auth listener is, `127.0.0.1:<port>` or `unix:<path>`.
 */
function nginxServer(thPort: number, check: string, upstreamPort: number): string {
  return `
    # Login, callback, logout, session: the token handler's public listener.
    location /token-handler/v1/ {
      proxy_pass http://127.0.0.1:${thPort};
      proxy_set_header Host $http_host;
    }
    # The API: nginx proxies it itself, after asking the token handler.
    location /api/ {
      auth_request /_token_handler_check;
      auth_request_set $th_authorization $upstream_http_authorization;
      auth_request_set $th_cookie $upstream_http_cookie;
      proxy_set_header Authorization $th_authorization;   # the access token (or none)
      proxy_set_header Cookie $th_cookie;                 # the browser's cookies without ours
      proxy_set_header X-XSRF-TOKEN "";
      proxy_pass http://127.0.0.1:${upstreamPort}/echo/;
    }
    location = /_token_handler_check {
      internal;
      proxy_pass http://${check};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_buffer_size 16k;                              # the answer's headers: a token and the cookies
      proxy_buffers 4 16k;
    }
  `;
}

describe.skipIf(nginxMissing !== undefined)('forward-auth behind a real nginx (auth_request)', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let th: RunningApp;
  let nginx: Nginx;
  let check: string;
  let browser: Browser;
  let xsrf: string;
  let session: string;
  const logs = memoryLogger('info');
  const tokensSeen = new Set<string>();

  beforeAll(async () => {
    idp = await startDevIdp({ rotateRefreshToken: true });
    upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource });
    const built = await buildApp(
      testConfig({
        clients: [testClient({ issuer: idp.issuer })],
        targets: [
          testTarget({ id: 'api', url: `${upstream.url}/echo`, mountPath: '/api' }),
          testTarget({ id: 'orders', url: `${upstream.url}/echo`, mountPath: '/api/orders', methods: ['GET', 'HEAD'] }),
          testTarget({ id: 'public', url: `${upstream.url}/echo`, mountPath: '/api/public', tokenRequirement: 'none' }),
        ],
        forwardAuthListen: { host: '127.0.0.1', port: 0 },
        forwardAuthAllow: ['127.0.0.1'],
      }),
      { sweeper: false, logger: logs.logger },
    );
    await built.app.listen({ host: '127.0.0.1', port: 0 });
    th = { th: built, base: `http://127.0.0.1:${(built.app.server.address() as { port: number }).port}`, close: () => built.app.close() };
    const checkPort = forwardAuthAddress(th.th.app)!.port;
    check = `http://127.0.0.1:${checkPort}`;
    nginx = await startNginx({ server: nginxServer(Number(new URL(th.base).port), `127.0.0.1:${checkPort}`, upstream.port) });
    browser = createBrowser();
    const flow = await loginAtDevIdp(browser, `${nginx.base}/token-handler/v1/clients/default/auth`, { username: 'demo', password: 'demo' });
    expect(flow.response.status).toBe(302);
    await flow.response.body?.cancel();
    session = browser.cookie('session', nginx.base)?.value ?? '';
    xsrf = browser.cookie('XSRF-TOKEN', nginx.base)?.value ?? '';
    expect(session).not.toBe('');
    expect(xsrf).not.toBe('');
  });

  afterAll(async () => {
    await nginx?.stop();
    await th?.close();
    await upstream?.close();
    await idp?.close();
  });

  async function echo(res: Response): Promise<EchoResponse> {
    expect(res.status, `${await res.clone().text()}\n${nginx.errorLog()}`).toBe(200);
    const body = (await res.json()) as EchoResponse;
    if (typeof body.headers.authorization === 'string') tokensSeen.add(body.headers.authorization.slice('Bearer '.length));
    return body;
  }

  it('the upstream receives the access token and the app cookies, none of ours and no XSRF header', async () => {
    const cookies = browser.jar.cookieHeader(`${nginx.base}/api/`) ?? '';
    expect(cookies).toContain('session=');
    const body = await echo(
      await browser.get(`${nginx.base}/api/hello?x=1`, {
        headers: { cookie: `${cookies}; theme=dark`, 'x-xsrf-token': xsrf, authorization: 'Bearer from-the-browser' },
      }),
    );
    expect(body.path).toBe('/echo/hello');
    expect(body.token).toMatchObject({ present: true, valid: true, claims: { sub: 'demo', iss: idp.issuer } });
    expect(body.headers.authorization).not.toContain('from-the-browser');
    // (The jar also holds the dev IdP's cookies: same host, another port. They are not ours, so they pass.)
    expect(cookieNames(body.headers.cookie)).toContain('theme');
    expect(cookieNames(body.headers.cookie)).not.toContain('session');
    expect(cookieNames(body.headers.cookie)).not.toContain('XSRF-TOKEN');
    expect(body.headers['x-xsrf-token']).toBeUndefined();
  });

  it('passes large app cookies and a long path (the headers of the check answer fit the buffer of nginx)', async () => {
    const big = `prefs=${'p'.repeat(8000)}`;
    const path = `/api/${'segment/'.repeat(150)}end`;
    const body = await echo(await browser.get(`${nginx.base}${path}`, { headers: { cookie: `session=${session}; ${big}` } }));
    expect(body.token.valid).toBe(true);
    expect(body.headers.cookie).toBe(big);
    expect(body.path).toBe(`/echo${path.slice('/api'.length)}`);
    const envoy = await rawRequest(check, path, { headers: { cookie: `session=${session}` } });
    expect(envoy.status, envoy.body).toBe(200);
  });

  it('sends no Cookie header at all when the browser sent only ours', async () => {
    const body = await echo(await browser.get(`${nginx.base}/api/hello`, { headers: { cookie: `session=${session}; XSRF-TOKEN=${xsrf}` } }));
    expect(body.token.valid).toBe(true);
    expect(body.headers.cookie).toBeUndefined();
  });

  it('without a session nginx answers 401 and the upstream is never called', async () => {
    const before = upstream.requests;
    const res = await createBrowser().get(`${nginx.base}/api/hello`);
    expect(res.status).toBe(401);
    expect(await res.text()).not.toMatch(/eyJ/);
    expect(upstream.requests).toBe(before);
  });

  it('a target that needs no token is let through without one (the browser Authorization is dropped)', async () => {
    const body = await echo(await createBrowser().get(`${nginx.base}/api/public/x`, { headers: { authorization: 'Bearer from-the-browser' } }));
    expect(body.path).toBe('/echo/public/x');
    expect(body.headers.authorization).toBeUndefined();
  });

  it('a cross-site POST is refused through the gateway (403) and never reaches the upstream; a same-origin one passes', async () => {
    const before = upstream.requests;
    const cross = await browser.post(`${nginx.base}/api/orders-form`, 'a=1', {
      headers: { origin: EVIL, 'sec-fetch-site': 'cross-site', 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(cross.status).toBe(403);
    const forged = await browser.post(`${nginx.base}/api/x`, 'a=1', { headers: { origin: nginx.base, 'content-type': 'text/plain' } });
    expect(forged.status).toBe(403);
    expect(upstream.requests).toBe(before);
    const ok = await echo(await browser.post(`${nginx.base}/api/x`, '{"a":1}', { headers: { origin: nginx.base, 'x-xsrf-token': xsrf, 'content-type': 'application/json' } }));
    expect(ok.method).toBe('POST');
    expect(ok.bodyLength).toBe(7);
    expect(ok.token.valid).toBe(true);
  });

  it('a method the target does not accept is refused (403), also through an override header', async () => {
    const before = upstream.requests;
    const res = await browser.request(`${nginx.base}/api/orders/1`, { method: 'DELETE', headers: { origin: nginx.base, 'x-xsrf-token': xsrf } });
    expect(res.status).toBe(403);
    const overridden = await browser.get(`${nginx.base}/api/orders/1`, { headers: { 'x-http-method-override': 'DELETE' } });
    expect(overridden.status).toBe(403);
    expect(upstream.requests).toBe(before);
    expect((await echo(await browser.get(`${nginx.base}/api/orders/1`))).path).toBe('/echo/orders/1');
  });

  it('refreshes an expired access token first: 20 concurrent requests, exactly one refresh grant', async () => {
    const before = await echo(await browser.get(`${nginx.base}/api/a`));
    await expireAccessToken(th.th, session);
    idp.resetCounters();
    const answers = await Promise.all(Array.from({ length: 20 }, () => browser.get(`${nginx.base}/api/b`).then(echo)));
    expect(idp.refreshGrantCount).toBe(1);
    expect(idp.refreshReuseCount).toBe(0);
    const tokens = new Set(answers.map((a) => a.headers.authorization));
    expect(tokens.size).toBe(1);
    expect([...tokens][0]).not.toBe(before.headers.authorization);
    for (const answer of answers) expect(answer.token.valid).toBe(true);
  });

  it('the browser cannot reach the check: nginx keeps it internal (404), and the public listener has no such route', async () => {
    const direct = await browser.get(`${nginx.base}/_token_handler_check`, { headers: { 'x-original-uri': '/api/x', 'x-original-method': 'GET' } });
    expect(direct.status).toBe(404);
    expect(direct.headers.get('authorization')).toBeNull();
    const cookie = browser.jar.cookieHeader(`${th.base}/`) ?? '';
    expect(cookie).toContain('session=');
    for (const path of ['/', '/_token_handler_check', '/forward-auth', '/auth', '/token-handler/v1/forward-auth', '/token-handler/v1/auth']) {
      for (const headers of [
        { 'x-original-uri': '/api/x', 'x-original-method': 'GET' },
        { 'x-forwarded-uri': '/api/x', 'x-forwarded-method': 'GET' },
      ] as Record<string, string>[]) {
        const res = await rawRequest(th.base, path, { headers: { cookie, ...headers } });
        expect(res.status, `${path}: ${res.body}`).toBe(404);
        expect(res.headers.authorization).toBeUndefined();
        expect(res.body).not.toMatch(/eyJ/);
      }
    }
  });

  describe('the internal listener, called as Traefik and Envoy call it', () => {
    const cookieHeader = (): string => `session=${session}; XSRF-TOKEN=${xsrf}; theme=dark`;

    it('Traefik (GET with X-Forwarded-Method/-Uri): 200 with the token, no-store, the cookies without ours', async () => {
      const res = await rawRequest(check, '/', {
        headers: { cookie: cookieHeader(), 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/api/things?q=1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'app.example.test' },
      });
      expect(res.status, res.body).toBe(200);
      expect(res.headers.authorization).toMatch(/^Bearer eyJ/);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers.cookie).toBe('theme=dark');
      expect(res.body).toBe('');
      tokensSeen.add(String(res.headers.authorization).slice('Bearer '.length));
    });

    it('lets a CORS preflight through without a token (it carries no credentials; the upstream answers CORS)', async () => {
      const res = await rawRequest(check, '/', {
        method: 'OPTIONS',
        headers: { 'x-original-method': 'OPTIONS', 'x-original-uri': '/api/orders/1', origin: 'https://app.example.test', 'access-control-request-method': 'DELETE' },
      });
      expect(res.status).toBe(200);
      expect(res.headers.authorization).toBeUndefined();
      expect(res.headers['cache-control']).toBe('no-store');
    });

    it('Traefik: a POST is checked as a POST (CSRF), from the forwarded method, not the GET it arrives as', async () => {
      const headers = { cookie: cookieHeader(), 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/api/things', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'app.example.test' };
      const refused = await rawRequest(check, '/', { headers: { ...headers, origin: EVIL } });
      expect(refused.status).toBe(403);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(refused.body)).toMatchObject({ status: 403, error: 'csrf_failed' });
      expect(refused.headers.authorization).toBeUndefined();
      // Over https the session cookie has its secure name: the insecure one is not accepted.
      const secure = await rawRequest(check, '/', { headers: { ...headers, origin: 'https://app.example.test', 'x-xsrf-token': xsrf } });
      expect(secure.status).toBe(401);
    });

    it('Envoy (the check request is the original request): method, path, CSRF and token from it', async () => {
      const ok = await rawRequest(check, '/api/orders/7', { headers: { cookie: cookieHeader(), host: 'app.example.test' } });
      expect(ok.status, ok.body).toBe(200);
      expect(ok.headers.authorization).toMatch(/^Bearer eyJ/);
      const post = await rawRequest(check, '/api/things', {
        method: 'POST',
        headers: { cookie: cookieHeader(), host: 'app.example.test', origin: 'http://app.example.test', 'x-xsrf-token': xsrf, 'content-type': 'application/json', 'content-length': '0' },
      });
      expect(post.status, post.body).toBe(200);
      const forged = await rawRequest(check, '/api/things', { method: 'POST', headers: { cookie: cookieHeader(), host: 'app.example.test', origin: EVIL, 'content-length': '0' } });
      expect(forged.status).toBe(403);
      const notAccepted = await rawRequest(check, '/api/orders/7', { method: 'PUT', headers: { cookie: cookieHeader(), host: 'app.example.test', origin: 'http://app.example.test', 'x-xsrf-token': xsrf } });
      expect(notAccepted.status).toBe(403);
      expect(JSON.parse(notAccepted.body)).toMatchObject({ error: 'method_not_allowed' });
    });

    it('refuses without a token: no session (401), unknown target, bad path, conflicting or half original-request headers (403)', async () => {
      const answers: [RawResponse, number, string][] = [
        [await rawRequest(check, '/', { headers: { 'x-original-method': 'GET', 'x-original-uri': '/api/x' } }), 401, 'login_required'],
        [await rawRequest(check, '/', { headers: { cookie: cookieHeader(), 'x-original-method': 'GET', 'x-original-uri': '/elsewhere' } }), 403, 'unknown_target'],
        [await rawRequest(check, '/', { headers: { cookie: cookieHeader(), 'x-original-method': 'GET', 'x-original-uri': '/api/a/../../admin' } }), 403, 'invalid_path'],
        [await rawRequest(check, '/', { headers: { cookie: cookieHeader(), 'x-original-uri': '/api/x' } }), 403, 'invalid_forward_auth_request'],
        [
          await rawRequest(check, '/', {
            headers: { cookie: cookieHeader(), 'x-original-method': 'GET', 'x-original-uri': '/api/x', 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/api/x' },
          }),
          403,
          'invalid_forward_auth_request',
        ],
      ];
      for (const [res, status, error] of answers) {
        expect(res.status, res.body).toBe(status);
        expect(JSON.parse(res.body)).toMatchObject({ status, error });
        expect(res.headers['cache-control']).toBe('no-store');
        expect(res.headers.authorization).toBeUndefined();
        expect(res.body).not.toMatch(/eyJ/);
      }
    });

    it('counts the checks in the request metrics (route forward-auth, by status)', async () => {
      const metrics = await (await fetch(`${th.base}/metrics`)).text();
      expect(metrics).toMatch(/token_handler_http_requests_total\{[^}]*route="forward-auth"[^}]*status="200"[^}]*\} [1-9]/);
      expect(metrics).toMatch(/token_handler_http_requests_total\{[^}]*route="forward-auth"[^}]*status="403"[^}]*\} [1-9]/);
      expect(metrics).toMatch(/token_handler_csrf_rejections_total\{reason="forward_auth"\} [1-9]/);
    });

    it('logs each refusal with its error code, and never a token or a session cookie', () => {
      const refusals = logs.lines().filter((line) => line.msg === 'forward-auth check refused');
      const codes = new Set(refusals.map((line) => line.error));
      for (const code of ['login_required', 'csrf_failed', 'method_not_allowed', 'unknown_target', 'invalid_path', 'invalid_forward_auth_request']) expect(codes).toContain(code);
      expect(refusals.every((line) => line.listener === 'forward-auth')).toBe(true);
      // Allowed checks are not logged (the gateway's access log has them): besides refusals, only the start.
      const others = logs.lines().filter((line) => line.listener === 'forward-auth' && line.msg !== 'forward-auth check refused');
      expect(others.map((line) => line.msg).filter((msg) => !/listening/i.test(String(msg)))).toEqual([]);
      expect(tokensSeen.size).toBeGreaterThan(1);
      const text = logs.text();
      for (const token of tokensSeen) expect(text).not.toContain(token);
      expect(text).not.toContain(session);
    });
  });
});

describe.skipIf(nginxMissing !== undefined)('forward-auth on a Unix socket (--forward_auth_listen_addr unix:...), behind a real nginx', () => {
  it('nginx reaches the check through the socket; the socket has the configured mode and is gone after close', async () => {
    const idp = await startDevIdp();
    const upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource });
    // As docs/forward-auth.md sets it up: a directory whose group is nginx's workers' (setgid, so the socket
    // gets that group), and the socket 0660 (the default).
    const socket = join(nginxSocketDir('th-fa-socket-'), 'forward-auth.sock');
    const built = await buildApp(
      testConfig({
        clients: [testClient({ issuer: idp.issuer })],
        targets: [testTarget({ id: 'api', url: `${upstream.url}/echo`, mountPath: '/api' })],
        forwardAuthListen: { path: socket },
      }),
      { sweeper: false },
    );
    let nginx: Nginx | undefined;
    try {
      await built.app.listen({ host: '127.0.0.1', port: 0 });
      const stats = statSync(socket);
      expect(stats.isSocket()).toBe(true);
      expect(stats.mode & 0o777).toBe(0o660);
      expect(forwardAuthAddress(built.app)).toBeUndefined();
      const thPort = (built.app.server.address() as { port: number }).port;
      nginx = await startNginx({ server: nginxServer(thPort, `unix:${socket}`, upstream.port) });
      const browser = createBrowser();
      // Without a session: the check (through the socket) says 401, and nginx answers 401.
      expect((await browser.get(`${nginx.base}/api/hello`)).status, nginx.errorLog()).toBe(401);
      const flow = await loginAtDevIdp(browser, `${nginx.base}/token-handler/v1/clients/default/auth`, { username: 'demo', password: 'demo' });
      expect(flow.response.status).toBe(302);
      await flow.response.body?.cancel();
      const res = await browser.get(`${nginx.base}/api/hello`);
      expect(res.status, `${await res.clone().text()}\n${nginx.errorLog()}`).toBe(200);
      const body = (await res.json()) as EchoResponse;
      expect(body.token).toMatchObject({ present: true, valid: true, claims: { sub: 'demo' } });
      expect(cookieNames(body.headers.cookie)).not.toContain('session');
      // The socket answers what the port would, to a local client that may connect.
      const direct = await rawRequest(`unix:${socket}`, '/', { headers: { 'x-original-method': 'GET', 'x-original-uri': '/api/x', cookie: `session=${browser.cookie('session', nginx.base)?.value ?? ''}` } });
      expect(direct.status, direct.body).toBe(200);
      expect(direct.headers.authorization).toMatch(/^Bearer eyJ/);
    } finally {
      await nginx?.stop();
      await built.app.close();
      await upstream.close();
      await idp.close();
    }
    expect(existsSync(socket)).toBe(false);
  });

  it('keeps serving on the socket after garbage, a client that aborts mid-request and one that closes at once', async () => {
    const socket = join(nginxSocketDir('th-fa-abuse-'), 'forward-auth.sock');
    const built = await buildApp(testConfig({ forwardAuthListen: { path: socket } }), { sweeper: false });
    try {
      await built.app.listen({ host: '127.0.0.1', port: 0 });
      const send = (bytes: string, end: boolean) =>
        new Promise<string>((resolve) => {
          const client = connect({ path: socket });
          let answer = '';
          client.on('data', (chunk: Buffer) => (answer += chunk.toString()));
          client.on('close', () => resolve(answer));
          client.on('error', () => resolve(answer));
          client.write(bytes, () => (end ? client.end() : client.destroy()));
        });
      expect(await send('NOT HTTP AT ALL\r\n\r\n', true)).toMatch(/^HTTP\/1\.1 400/);
      await send('GET / HTTP/1.1\r\nHost: x\r\nX-Original-Method: GET\r\nX-Orig', false);
      await send('', false);
      const check = await rawRequest(`unix:${socket}`, '/', { headers: { 'x-original-method': 'GET', 'x-original-uri': '/nowhere' } });
      expect(check.status, check.body).toBe(403);
    } finally {
      await built.app.close();
    }
  });

  it('removes a socket a killed process left behind, refuses one that is live or a file that is not a socket, and deletes neither', async () => {
    const dir = tempDir('th-fa-stale-');
    const start = async (path: string) => {
      const built = await buildApp(testConfig({ forwardAuthListen: { path } }), { sweeper: false });
      try {
        await built.app.listen({ host: '127.0.0.1', port: 0 });
      } catch (err) {
        await built.app.close().catch(() => undefined);
        throw err;
      }
      return built;
    };

    // A process that listened on the socket and was killed (SIGKILL) without closing it.
    const stale = join(dir, 'stale.sock');
    const holder = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => console.log('listening'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
    holder.kill('SIGKILL');
    await new Promise<void>((resolve) => holder.once('exit', () => resolve()));
    expect(lstatSync(stale).isSocket()).toBe(true);
    const restarted = await start(stale);
    expect((await rawRequest(`unix:${stale}`, '/', { headers: { 'x-original-method': 'GET', 'x-original-uri': '/nowhere' } })).status).toBe(403);

    // The same socket while that instance listens: refused, and the live socket stays.
    await expect(start(stale)).rejects.toThrow(/is in use: another process listens on it/);
    expect((await rawRequest(`unix:${stale}`, '/', { headers: { 'x-original-method': 'GET', 'x-original-uri': '/nowhere' } })).status).toBe(403);
    await restarted.app.close();

    // A regular file at the path is never removed.
    const file = join(dir, 'not-a-socket');
    writeFileSync(file, 'keep me');
    await expect(start(file)).rejects.toThrow(/exists and is not a Unix socket; not removing it/);
    expect(readFileSync(file, 'utf8')).toBe('keep me');
  });
});

describe('forward-auth --forward_auth_allow', () => {
  it('refuses a peer outside the list (403, no token) and answers one inside it', async () => {
    const idp = await startDevIdp();
    const apps = await Promise.all(
      [['10.0.0.0/8'], ['loopback']].map(async (allow) => {
        const built = await buildApp(
          testConfig({
            clients: [testClient({ issuer: idp.issuer })],
            targets: [testTarget({ id: 'public', url: 'http://127.0.0.1:9/', mountPath: '/api', tokenRequirement: 'none' })],
            forwardAuthListen: { host: '127.0.0.1', port: 0 },
            forwardAuthAllow: allow,
          }),
          { sweeper: false },
        );
        await built.app.listen({ host: '127.0.0.1', port: 0 });
        return built;
      }),
    );
    try {
      const [elsewhere, loopback] = apps.map((built) => `http://127.0.0.1:${forwardAuthAddress(built.app)!.port}`);
      const headers = { 'x-original-method': 'GET', 'x-original-uri': '/api/x', cookie: 'session=whatever' };
      const refused = await rawRequest(elsewhere!, '/', { headers });
      expect(refused.status).toBe(403);
      expect(JSON.parse(refused.body)).toMatchObject({ error: 'forbidden_peer' });
      expect(refused.headers.authorization).toBeUndefined();
      expect(refused.headers.cookie).toBeUndefined();
      const allowed = await rawRequest(loopback!, '/', { headers });
      expect(allowed.status, allowed.body).toBe(200);
    } finally {
      for (const built of apps) await built.app.close();
      await idp.close();
    }
  });
});
