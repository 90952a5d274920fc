import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream, type EchoResponse } from '../../src/demo/upstream.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { expireAccessToken } from '../support/sessions.ts';
import { within } from '../support/reload.ts';
import { closedPort, generatedBody, rawRequest, startApp, startEchoApp, startPausingUpstream, streamUpload, type PausedUpload, type RunningApp } from './support.ts';

const APP_ORIGIN = 'http://app.example.test';
const T = '/token-handler/v1/targets';
/** The `quick` target's timeout. */
const QUICK_TIMEOUT_MS = 2000;

async function login(browser: Browser, base: string): Promise<void> {
  const flow = await loginAtDevIdp(browser, `${base}/token-handler/v1/clients/default/auth`, { username: 'demo', password: 'demo' });
  expect(flow.response.status).toBe(302);
  await flow.response.body?.cancel();
  expect(browser.cookie('session', base)).toBeDefined();
}

async function echo(res: Response): Promise<EchoResponse> {
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as EchoResponse;
}

/**
 * An SSE upstream the test drives: it writes an event only when told (`send`), and ends when told. What
 * reaches the browser before the upstream writes the next event was streamed; a proxy that buffers until
 * the end delivers nothing before `end()`.
 */
async function startDrivenSse(): Promise<{ url: string; opened: Promise<void>; send(id: number): void; end(): void; close(): Promise<void> }> {
  let response: ServerResponse | undefined;
  let markOpened!: () => void;
  const opened = new Promise<void>((resolve) => (markOpened = resolve));
  const server = createServer((_req, res) => {
    response = res;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    markOpened();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    opened,
    send: (id) => response!.write(`id: ${id}\nevent: tick\ndata: ${JSON.stringify({ i: id })}\n\n`),
    end: () => response!.end(),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe('API proxy against the dev IdP, the demo upstream and a real session', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let th: RunningApp;
  let browser: Browser;
  let xsrf: string;
  let pausing: Record<'slowChunked' | 'slowLength', Awaited<ReturnType<typeof startPausingUpstream>>>;
  let sse: Awaited<ReturnType<typeof startDrivenSse>>;

  beforeAll(async () => {
    idp = await startDevIdp();
    upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource });
    pausing = { slowChunked: await startPausingUpstream(1024 * 1024), slowLength: await startPausingUpstream(1024 * 1024) };
    sse = await startDrivenSse();
    const down = await closedPort();
    th = await startApp(
      testConfig({
        clients: [testClient({ issuer: idp.issuer, allowedOrigins: [APP_ORIGIN] })],
        targets: [
          testTarget({ id: 'api', url: `${upstream.url}/echo` }),
          testTarget({ id: 'open', url: `${upstream.url}/echo`, tokenRequirement: 'user-or-none' }),
          testTarget({ id: 'public', url: `${upstream.url}/echo`, tokenRequirement: 'none', methods: ['GET'] }),
          testTarget({ id: 'orders', url: `${upstream.url}/echo`, mountPath: '/api/orders' }),
          testTarget({ id: 'up', url: upstream.url, websocket: true }),
          // Only for the timeout test: the demo upstream's /slow?ms=30000 answers far beyond it.
          testTarget({ id: 'quick', url: upstream.url, tokenRequirement: 'none', timeoutMs: QUICK_TIMEOUT_MS }),
          testTarget({ id: 'plain', url: upstream.url, tokenRequirement: 'none' }),
          testTarget({ id: 'events', url: sse.url }),
          testTarget({ id: 'cookies', url: upstream.url, tokenRequirement: 'none', passSetCookie: true }),
          testTarget({ id: 'down', url: `http://127.0.0.1:${down}`, tokenRequirement: 'none' }),
          testTarget({ id: 'links', url: `${upstream.url}/echo`, csrf: { mode: 'token', allMethods: false, allowCrossSiteGet: true } }),
          testTarget({ id: 'strict', url: `${upstream.url}/echo`, csrf: { mode: 'token', allMethods: true, allowCrossSiteGet: false } }),
          testTarget({ id: 'slowChunked', url: pausing.slowChunked.url }),
          testTarget({ id: 'slowLength', url: pausing.slowLength.url }),
        ],
        limits: { maxBodyBytes: 256 * 1024 * 1024, maxHeaderBytes: 16 * 1024 },
      }),
    );
    browser = createBrowser();
    await login(browser, th.base);
    xsrf = browser.cookie('XSRF-TOKEN', th.base)?.value ?? '';
    expect(xsrf).not.toBe('');
  });

  afterAll(async () => {
    // First: a stream the SSE test left open (it failed) would keep the service's close waiting.
    await sse?.close();
    await th?.close();
    await upstream?.close();
    await pausing?.slowChunked.close();
    await pausing?.slowLength.close();
    await idp?.close();
  });

  it('injects a bearer token the upstream validates against the IdP JWKS', async () => {
    const body = await echo(await browser.get(`${th.base}${T}/api/hello`));
    expect(body.token).toMatchObject({ present: true, valid: true, claims: { sub: 'demo', iss: idp.issuer } });
    expect(body.path).toBe('/echo/hello');
    expect(body.headers['x-forwarded-proto']).toBe('http');
    expect(body.headers['x-forwarded-host']).toBe(new URL(th.base).host);
    expect(body.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(body.headers.host).toBe(new URL(upstream.url).host);
  });

  it('strips our cookies and the browser Authorization; other cookies pass', async () => {
    const jarCookies = browser.jar.cookieHeader(`${th.base}/`) ?? '';
    expect(jarCookies).toContain('session=');
    expect(jarCookies).toContain('XSRF-TOKEN=');
    const body = await echo(
      await browser.get(`${th.base}${T}/api/x`, {
        headers: {
          cookie: `${jarCookies}; theme=dark; th-login-default=state; th-end-session-default=x; session-prefs=compact`,
          authorization: 'Bearer from-the-browser',
          'proxy-authorization': 'Basic eDp5',
          'x-xsrf-token': xsrf,
        },
      }),
    );
    const cookie = String(body.headers.cookie ?? '');
    // The app's cookies pass, also one whose name merely starts like ours.
    expect(cookie).toContain('theme=dark');
    expect(cookie).toContain('session-prefs=compact');
    for (const name of ['session', 'XSRF-TOKEN', 'th-login-default', 'th-end-session-default']) {
      expect(cookie.split(/;\s*/).some((c) => c.startsWith(`${name}=`)), `${name} leaked: ${cookie}`).toBe(false);
    }
    expect(body.headers.authorization).toMatch(/^Bearer ey/);
    expect(body.headers.authorization).not.toContain('from-the-browser');
    expect(body.headers['proxy-authorization']).toBeUndefined();
    expect(body.headers['x-xsrf-token']).toBeUndefined();
    expect(body.token.valid).toBe(true);
  });

  it('keeps the query string and joins sub-paths, also at a custom mount path', async () => {
    const body = await echo(await browser.get(`${th.base}${T}/api/a/b%20c/?x=1&y=%20z&x=2&empty=&enc=%2F`));
    expect(body.path).toBe('/echo/a/b%20c/');
    expect(body.query).toEqual({ x: ['1', '2'], y: ' z', empty: '', enc: '/' });
    expect((await echo(await browser.get(`${th.base}${T}/api`))).path).toBe('/echo');
    const orders = await echo(await browser.get(`${th.base}/api/orders/42?q=1`));
    expect(orders.path).toBe('/echo/42');
    expect(orders.query).toEqual({ q: '1' });
    expect(orders.token.valid).toBe(true);
  });

  it.each([
    '/../../jwks',
    '/a/../../x',
    '/%2e%2e/%2e%2e/x',
    '/%2E./x',
    '/.%2e/x',
    '/a%2f..%2f..%2fx',
    '/a%5c..%5cx',
    '/a\\..\\x',
    '//evil.example/x',
    '/http://evil.example',
    '/./x',
    '/a%00',
  ])('refuses the traversal attempt %s with 400 and forwards nothing', async (sub) => {
    const before = upstream.requests;
    const res = await rawRequest(th.base, `${T}/api${sub}`, { headers: { cookie: browser.jar.cookieHeader(`${th.base}/`) ?? '' } });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_path' });
    expect(upstream.requests).toBe(before);
  });

  it('refuses percent-encoding that is not UTF-8 (the router already does) and forwards nothing', async () => {
    const before = upstream.requests;
    const res = await rawRequest(th.base, `${T}/api/%80`);
    expect(res.status).toBe(400);
    expect(upstream.requests).toBe(before);
  });

  it('refuses a percent-encoded spelling of the mount path itself', async () => {
    const before = upstream.requests;
    const res = await rawRequest(th.base, '/api/%6Frders/1');
    expect([400, 404]).toContain(res.status);
    expect(upstream.requests).toBe(before);
  });

  it('answers 401 login_required (JSON, no redirect) on a user target without a session', async () => {
    const before = upstream.requests;
    const res = await createBrowser().get(`${th.base}${T}/api/x`);
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(await res.json()).toMatchObject({ status: 401, error: 'login_required' });
    // A cookie that does not resolve is also cleared.
    const forged = await createBrowser().get(`${th.base}${T}/api/x`, { headers: { cookie: 'session=forged' } });
    expect(forged.status).toBe(401);
    expect(forged.headers.getSetCookie().some((c) => c.startsWith('session=;'))).toBe(true);
    expect(upstream.requests).toBe(before);
  });

  it('refuses a cross-site GET navigation with the user session before the upstream (18.12); a target may allow them, or require the XSRF header on every method', async () => {
    const before = upstream.requests;
    // A link or <img> on another site: SameSite=Lax lets the session cookie along on a top-level GET.
    const navigation = { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' };
    const refused = await browser.get(`${th.base}${T}/api/x`, { headers: navigation });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ error: 'csrf_failed' });
    expect((await browser.request(`${th.base}${T}/api/x`, { method: 'HEAD', headers: navigation })).status).toBe(403);
    expect(upstream.requests).toBe(before);
    // A CORS fetch from an allowed origin is cross-site too, and passes.
    expect((await echo(await browser.get(`${th.base}${T}/api/x`, { headers: { 'sec-fetch-site': 'cross-site', origin: APP_ORIGIN } }))).token.present).toBe(true);
    // An API that serves links opts out.
    expect((await echo(await browser.get(`${th.base}${T}/links/x`, { headers: navigation }))).token.present).toBe(true);
    // A target that never sends a token has nothing to protect from a link.
    expect((await echo(await browser.get(`${th.base}${T}/public/x`, { headers: navigation }))).token.present).toBe(false);
    // allMethods: a same-origin GET without the XSRF header is refused, with it forwarded.
    expect((await browser.get(`${th.base}${T}/strict/x`, { headers: { 'sec-fetch-site': 'same-origin' } })).status).toBe(403);
    expect((await echo(await browser.get(`${th.base}${T}/strict/x`, { headers: { 'sec-fetch-site': 'same-origin', 'x-xsrf-token': xsrf } }))).token.present).toBe(true);
  });

  it('forwards anonymously on user-or-none, with a token when logged in; none never sends one', async () => {
    const anonymous = await echo(await createBrowser().get(`${th.base}${T}/open/x`, { headers: { authorization: 'Bearer forged' } }));
    expect(anonymous.token.present).toBe(false);
    expect((await echo(await browser.get(`${th.base}${T}/open/x`))).token.valid).toBe(true);
    const pub = await echo(await browser.get(`${th.base}${T}/public/x`));
    expect(pub.token.present).toBe(false);
    expect(String(pub.headers.cookie ?? '')).not.toMatch(/(^|; )(session|XSRF-TOKEN)=/);
  });

  it('forwards a GET without the body Fastify does not read (and without its length)', async () => {
    const res = await rawRequest(th.base, `${T}/api/x`, { headers: { cookie: browser.jar.cookieHeader(`${th.base}/`) ?? '', 'content-length': '5' }, body: 'hello' });
    expect(res.status).toBe(200);
    const body = JSON.parse(res.body) as EchoResponse;
    expect(body.bodyLength).toBe(0);
    expect(body.token.valid).toBe(true);
  });

  it('user-or-none clears a cookie that no longer resolves and forwards anonymously', async () => {
    const res = await createBrowser().get(`${th.base}${T}/open/x`, { headers: { cookie: 'session=forged; theme=dark' } });
    expect(res.headers.getSetCookie().some((c) => c.startsWith('session=;'))).toBe(true);
    const body = await echo(res);
    expect(body.token.present).toBe(false);
    expect(body.headers.cookie).toBe('theme=dark');
  });

  it('405 for a method the target does not accept', async () => {
    const res = await browser.request(`${th.base}${T}/public/x`, { method: 'DELETE', headers: { 'x-xsrf-token': xsrf, origin: th.base } });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET');
  });

  describe('CSRF', () => {
    const cases: [string, Record<string, string>][] = [
      ['no XSRF header', {}],
      ['a mismatched XSRF header', { 'x-xsrf-token': 'not-the-cookie' }],
      ['a cross-site Origin', { 'x-xsrf-token': '$XSRF', origin: 'http://evil.example' }],
      ['Sec-Fetch-Site: cross-site', { 'x-xsrf-token': '$XSRF', 'sec-fetch-site': 'cross-site' }],
      ['Origin: null', { 'x-xsrf-token': '$XSRF', origin: 'null' }],
    ];
    it.each(cases)('refuses a POST with %s: 403 and the upstream sees nothing', async (_name, headers) => {
      const before = upstream.requests;
      const rejections = (await th.th.ctx.metrics.csrfRejections.get()).values.reduce((n, v) => n + v.value, 0);
      const resolved = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v === '$XSRF' ? xsrf : v]));
      const res = await browser.request(`${th.base}${T}/api/items`, { method: 'POST', json: { a: 1 }, headers: resolved });
      expect(res.status).toBe(403);
      expect(await res.json()).toMatchObject({ error: 'csrf_failed' });
      expect(upstream.requests).toBe(before);
      expect((await th.th.ctx.metrics.csrfRejections.get()).values.reduce((n, v) => n + v.value, 0)).toBe(rejections + 1);
    });

    it.each(['POST', 'PUT', 'PATCH', 'DELETE'])('forwards %s with the right header, cookie and our own origin', async (method) => {
      const res = await browser.request(`${th.base}${T}/api/items/7`, {
        method,
        json: { hello: 'world' },
        headers: { 'x-xsrf-token': xsrf, origin: th.base, 'sec-fetch-site': 'same-origin' },
      });
      const body = await echo(res);
      expect(body.method).toBe(method);
      expect(body.bodyLength).toBe(JSON.stringify({ hello: 'world' }).length);
      expect(body.headers['content-type']).toBe('application/json');
      expect(body.token.valid).toBe(true);
    });

    it('accepts a configured app origin', async () => {
      const res = await browser.request(`${th.base}${T}/api/items`, { method: 'POST', json: {}, headers: { 'x-xsrf-token': xsrf, origin: APP_ORIGIN } });
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
      expect(res.headers.get('access-control-allow-credentials')).toBe('true');
      await res.body?.cancel();
    });
  });

  describe('CORS', () => {
    it('answers a preflight from an allowed origin itself, with credentials and the XSRF header', async () => {
      const before = upstream.requests;
      const res = await createBrowser().request(`${th.base}${T}/api/items`, {
        method: 'OPTIONS',
        headers: { origin: APP_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-xsrf-token, content-type' },
      });
      expect(res.status).toBe(204);
      expect(res.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
      expect(res.headers.get('access-control-allow-credentials')).toBe('true');
      expect(res.headers.get('access-control-allow-methods')).toContain('POST');
      expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('x-xsrf-token');
      expect(upstream.requests).toBe(before);
    });

    it('gives a preflight from any other origin no CORS headers, and never *', async () => {
      const res = await createBrowser().request(`${th.base}${T}/api/items`, {
        method: 'OPTIONS',
        headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
      });
      expect(res.status).toBe(204);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
      const get = await browser.get(`${th.base}${T}/api/x`, { headers: { origin: 'http://evil.example' } });
      expect(get.headers.get('access-control-allow-origin')).toBeNull();
      await get.body?.cancel();
    });
  });

  describe('upstream failures', () => {
    it('502 upstream_unavailable when the upstream refuses connections', async () => {
      const res = await browser.get(`${th.base}${T}/down/x`);
      expect(res.status).toBe(502);
      expect(await res.json()).toMatchObject({ error: 'upstream_unavailable' });
      const metric = await th.th.ctx.metrics.proxyRequests.get();
      expect(metric.values.find((v) => v.labels.target === 'down' && v.labels.status === '502')?.value).toBeGreaterThanOrEqual(1);
    });

    it('504 upstream_timeout beyond the target timeout', { timeout: 60_000 }, async () => {
      // The upstream answers after 30 s: an answer well before that (and no sooner than the timeout) is the
      // target's timeout at work, however slow the machine.
      const started = performance.now();
      const res = await browser.get(`${th.base}${T}/quick/slow?ms=30000`);
      const elapsed = performance.now() - started;
      expect(res.status, await res.clone().text()).toBe(504);
      expect(await res.json()).toMatchObject({ error: 'upstream_timeout' });
      expect(elapsed).toBeGreaterThanOrEqual(QUICK_TIMEOUT_MS - 20);
      expect(elapsed).toBeLessThan(15_000);
    });

    it('a reset after the headers just ends the response', async () => {
      const res = await browser.get(`${th.base}${T}/plain/reset`);
      expect(res.status).toBe(200);
      await expect(res.text()).rejects.toThrow();
      // The service is fine afterwards.
      expect((await browser.get(`${th.base}${T}/plain/echo/ok`)).status).toBe(200);
    });

    it('drops upstream Set-Cookie unless the target passes it', async () => {
      const dropped = await browser.get(`${th.base}${T}/plain/set-cookie`);
      expect(dropped.status).toBe(200);
      expect(dropped.headers.getSetCookie()).toEqual([]);
      const passed = await createBrowser().get(`${th.base}${T}/cookies/set-cookie`);
      expect(passed.headers.getSetCookie()).toEqual([expect.stringMatching(/^upstream_session=from-upstream/)]);
    });
  });

  describe('streaming', () => {
    it('Server-Sent Events arrive event by event', async () => {
      // By order, not by time: the upstream writes an event only after the browser has received the one
      // before, and ends only after the last. A proxy that buffers delivers nothing until the end (the
      // generous bound only turns that hang into a failure).
      const pending = browser.get(`${th.base}${T}/events/stream`);
      await within(sse.opened, 20_000, 'the request reaching the SSE upstream');
      sse.send(1);
      const res = await within(pending, 20_000, 'the response headers while the upstream holds the stream open');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/event-stream');
      const reader = res.body!.getReader();
      let received = '';
      try {
        for (const id of [1, 2, 3]) {
          if (id > 1) sse.send(id);
          while (!received.includes(`id: ${id}\n`)) {
            const { done, value } = await within(reader.read(), 20_000, `event ${id} while the upstream holds the stream open`);
            expect(done, `the stream ended before event ${id}: ${received}`).toBe(false);
            received += Buffer.from(value!).toString();
          }
          // Nothing the upstream has not written yet.
          expect(received).not.toContain(`id: ${id + 1}\n`);
        }
        sse.end();
        for (;;) {
          const { done, value } = await within(reader.read(), 20_000, 'the end of the stream');
          if (done) break;
          received += Buffer.from(value).toString();
        }
      } finally {
        // A failure leaves the browser: the service does not keep waiting on the stream when it closes.
        await reader.cancel().catch(() => undefined);
      }
      expect(received.match(/^id: \d+$/gm)).toEqual(['id: 1', 'id: 2', 'id: 3']);
    });

    it.each([
      ['chunked', 'slowChunked', false],
      ['with Content-Length', 'slowLength', true],
    ] as const)(
      'streams a 128 MB upload (%s): an upstream that stops reading stops the browser, and the body arrives whole',
      { timeout: 180_000 },
      async (_kind, which, withLength) => {
        // Structural, not timed: the upstream stops reading after 1 MB. A proxy that streams passes that
        // backpressure on, so the client can only get as far as the socket buffers of two loopback hops
        // allow (a few MB, at most tens with large kernel windows). A proxy that holds the body reads all of
        // it before the upstream sees a byte, so the client sends everything.
        const size = 128 * 1024 * 1024;
        const slow = pausing[which];
        const body = generatedBody(size);
        const headers: Record<string, string> = {
          cookie: browser.jar.cookieHeader(`${th.base}/`) ?? '',
          'x-xsrf-token': xsrf,
          origin: th.base,
          'content-type': 'application/octet-stream',
        };
        if (withLength) headers['content-length'] = String(size);
        const upload = streamUpload(`${th.base}${T}/${which}/upload`, body.stream, { headers });
        upload.catch(() => undefined);
        await Promise.race([slow.paused, upload.then((res) => expect.fail(`answered ${res.status} before the upstream paused: ${res.body}`))]);
        // Wait until the client stops making progress (unchanged for a second) or has sent everything.
        let last = -1;
        let still = 0;
        while (still < 10 && body.sent() < size) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          still = body.sent() === last ? still + 1 : 0;
          last = body.sent();
        }
        const heldBack = size - body.sent();
        console.log(`[backpressure] ${_kind}: the client had sent ${(body.sent() / 1048576).toFixed(1)} MB of ${size / 1048576} MB when it stopped`);
        slow.resume();
        const res = await upload;
        expect(res.status, res.body).toBe(200);
        const seen = JSON.parse(res.body) as PausedUpload;
        expect(seen.length).toBe(size);
        expect(seen.sha256).toBe(await body.sha256);
        expect(seen.authorization).toBe(true);
        expect(seen.transferEncoding).toBe(withLength ? null : 'chunked');
        expect(heldBack, `the client sent ${size - heldBack} of ${size} bytes while the upstream had stopped reading after 1 MB`).toBeGreaterThan(size / 2);
      },
    );
  });

  describe('WebSockets', () => {
    function connect(origin: string, cookie: string): Promise<{ ws: WebSocket; first: Record<string, unknown> } | { status: number; body: string }> {
      const ws = new WebSocket(`${th.base.replace('http', 'ws')}${T}/up/ws`, { headers: { origin, cookie } });
      return new Promise((resolve, reject) => {
        ws.once('message', (data) => resolve({ ws, first: JSON.parse(String(data)) as Record<string, unknown> }));
        ws.once('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        ws.once('error', reject);
      });
    }

    it('relays messages both ways with the token injected and our cookies stripped', async () => {
      const cookie = `${browser.jar.cookieHeader(`${th.base}/`) ?? ''}; theme=dark`;
      const result = await connect(th.base, cookie);
      if (!('ws' in result)) throw new Error(`upgrade refused: ${result.status} ${result.body}`);
      const { ws, first } = result;
      expect(first).toMatchObject({ authorization: { present: true, valid: true, sub: 'demo' }, origin: th.base });
      expect(String(first.cookie)).toContain('theme=dark');
      expect(String(first.cookie)).not.toMatch(/(^|; )(session|XSRF-TOKEN)=/);
      const echoed = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
      ws.send('hello through the proxy');
      expect(await echoed).toBe('hello through the proxy');
      const binary = new Promise<Buffer>((resolve) => ws.once('message', (data) => resolve(data as Buffer)));
      ws.send(Buffer.from([0, 1, 2, 255]));
      expect([...(await binary)]).toEqual([0, 1, 2, 255]);
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      ws.close(1000);
      expect(await closed).toBe(1000);
    });

    it('refuses a foreign Origin (403) and an anonymous user (401), reaching no upstream', async () => {
      const cookie = browser.jar.cookieHeader(`${th.base}/`) ?? '';
      const before = upstream.requests;
      const evil = await connect('http://evil.example', cookie);
      expect(evil).toMatchObject({ status: 403 });
      const anonymous = await connect(th.base, '');
      expect(anonymous).toMatchObject({ status: 401 });
      expect(JSON.parse((anonymous as { body: string }).body)).toMatchObject({ error: 'login_required' });
      expect(upstream.requests).toBe(before);
    });
  });
});

describe('access token refresh through the proxy', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let th: RunningApp;

  beforeAll(async () => {
    // Long-lived tokens: a test makes one due by ageing it in the store (expireAccessToken), never by
    // racing a short lifetime on a machine that may be slow.
    idp = await startDevIdp({ rotateRefreshToken: true });
    ({ upstream, th } = await startEchoApp(idp));
  });

  afterAll(async () => {
    await th?.close();
    await upstream?.close();
    await idp?.close();
  });

  it('refreshes an expiring access token transparently', async () => {
    const browser = createBrowser();
    await login(browser, th.base);
    const before = await echo(await browser.get(`${th.base}${T}/api/x`));
    const refreshes = idp.refreshGrantCount;
    await expireAccessToken(th.th, browser.cookie('session', th.base)!.value);
    const after = await echo(await browser.get(`${th.base}${T}/api/x`));
    expect(after.token.valid).toBe(true);
    expect(idp.refreshGrantCount).toBe(refreshes + 1);
    expect(after.headers.authorization).not.toBe(before.headers.authorization);
  });

  it('50 concurrent requests with an expiring token cause exactly one refresh (rotation, no reuse)', async () => {
    const browser = createBrowser();
    await login(browser, th.base);
    await expireAccessToken(th.th, browser.cookie('session', th.base)!.value);
    const refreshes = idp.refreshGrantCount;
    const reuse = idp.refreshReuseCount;
    const bodies = await Promise.all(Array.from({ length: 50 }, async () => echo(await browser.get(`${th.base}${T}/api/concurrent`))));
    expect(idp.refreshGrantCount).toBe(refreshes + 1);
    expect(idp.refreshReuseCount).toBe(reuse);
    expect(new Set(bodies.map((b) => b.headers.authorization)).size).toBe(1);
    for (const body of bodies) expect(body.token.valid).toBe(true);
  });
});

describe('request body limit', () => {
  let upstream: DemoUpstream;
  let th: RunningApp;

  beforeAll(async () => {
    upstream = await startDemoUpstream();
    th = await startApp(
      testConfig({
        targets: [testTarget({ id: 'public', url: `${upstream.url}/echo`, tokenRequirement: 'none' })],
        limits: { maxBodyBytes: 64 * 1024, maxHeaderBytes: 16 * 1024 },
      }),
    );
  });

  afterAll(async () => {
    await th?.close();
    await upstream?.close();
  });

  const csrf = (base: string): Record<string, string> => ({ cookie: 'XSRF-TOKEN=t', 'x-xsrf-token': 't', origin: base });

  it('413 for a Content-Length above the limit, without forwarding', async () => {
    const before = upstream.requests;
    const res = await rawRequest(th.base, `${T}/public/x`, { method: 'POST', headers: { ...csrf(th.base), 'content-length': String(64 * 1024 + 1) }, body: Buffer.alloc(64 * 1024 + 1) });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'payload_too_large' });
    expect(upstream.requests).toBe(before);
  });

  it('413 when a chunked body grows past the limit; at the limit it passes', async () => {
    const ok = generatedBody(64 * 1024, 8 * 1024);
    const passed = await fetch(`${th.base}${T}/public/x`, { method: 'POST', body: ok.stream, headers: csrf(th.base), duplex: 'half' } as RequestInit);
    expect((await echo(passed)).bodySha256).toBe(await ok.sha256);

    // Counted by token-handler as the 413 it answered, whether or not the browser got to read it.
    const refusals = async (): Promise<number> => {
      const text = await (await fetch(`${th.base}/metrics`)).text();
      return Number(/^token_handler_upstream_responses_total\{target="public",status="413"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    const before = await refusals();
    const big = generatedBody(1024 * 1024, 8 * 1024);
    const res = await fetch(`${th.base}${T}/public/x`, { method: 'POST', body: big.stream, headers: csrf(th.base), duplex: 'half' } as RequestInit).catch(
      (err: unknown) => err as Error,
    );
    // The connection may close while the browser is still sending (the answer then goes unread); when the
    // answer arrives, it is the 413. Either way the refusal happened, and exactly once.
    if (!(res instanceof Error)) {
      expect(res.status).toBe(413);
      expect(await res.json()).toMatchObject({ error: 'payload_too_large' });
    }
    await expect.poll(refusals, { timeout: 10_000 }).toBe(before + 1);
    // And the proxy goes on serving.
    const after = generatedBody(1024, 1024);
    const again = await fetch(`${th.base}${T}/public/x`, { method: 'POST', body: after.stream, headers: csrf(th.base), duplex: 'half' } as RequestInit);
    expect((await echo(again)).bodySha256).toBe(await after.sha256);
  });
});

describe('tenant-scoped client', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let th: RunningApp;

  beforeAll(async () => {
    idp = await startDevIdp();
    ({ upstream, th } = await startEchoApp(idp, { client: { tenant: 'acme' } }));
  });

  afterAll(async () => {
    await th?.close();
    await upstream?.close();
    await idp?.close();
  });

  it('without the tenant header acts in the session\'s tenant; an unknown tenant is refused', async () => {
    const browser = createBrowser({ headers: { 'x-adsp-tenant': 'acme' } });
    await login(browser, th.base);
    const body = await echo(await browser.get(`${th.base}${T}/api/x`));
    expect(body.token.valid).toBe(true);
    expect(body.headers['x-adsp-tenant']).toBe('acme');
    const before = upstream.requests;
    const cookie = browser.jar.cookieHeader(`${th.base}/`) ?? '';
    const missing = await rawRequest(th.base, `${T}/api/x`, { headers: { cookie } });
    expect(missing.status).toBe(200);
    expect((JSON.parse(missing.body) as EchoResponse).token.valid).toBe(true);
    const anonymous = await rawRequest(th.base, `${T}/api/x`, {});
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.body)).toMatchObject({ error: 'login_required' });
    const other = await rawRequest(th.base, `${T}/api/x`, { headers: { cookie, 'x-adsp-tenant': 'other' } });
    expect(other.status).toBe(404);
    expect(JSON.parse(other.body)).toMatchObject({ error: 'unknown_tenant' });
    expect(upstream.requests).toBe(before + 1);
  });
});
