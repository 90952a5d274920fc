/**
 * A bad day: the IdP down or slow during login and refresh (configured timeout, 502/503, the session
 * kept through a transient failure), an upstream resetting connections, the session store going away
 * (503 with Retry-After, then recovery by itself).
 */
import { randomBytes } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream, type EchoResponse } from '../../src/demo/upstream.ts';
import { createRedisStore } from '../../src/store/redis.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { rawRequest, startApp, startEchoApp, type RunningApp } from '../proxy/support.ts';
import { startTcpProxy, type TcpProxy } from '../store/net.ts';
import { buildApp } from '../../src/app.ts';
import { callbackUrlFromDevIdp } from './support.ts';
import { expireAccessToken } from '../support/sessions.ts';
import { eventually, idpHold, within } from '../support/reload.ts';

const API = '/token-handler/v1';
const T = `${API}/targets`;
/**
 * The OIDC timeout of these apps, which also bounds every call of their normal paths (login, refresh) to
 * the IdP: generous, so a loaded machine does not trip it where the IdP is meant to be healthy.
 */
const OIDC_TIMEOUT_MS = 5000;
/**
 * Failing with the IdP down or unanswering takes no longer than this: a hang, not a slow machine (the IdP
 * that does not answer holds its request until the test ends, never answering).
 */
const ANSWERED_WITHIN_MS = 20_000;

async function login(browser: Browser, base: string): Promise<string> {
  const flow = await loginAtDevIdp(browser, `${base}${API}/clients/default/auth`, { username: 'demo', password: 'demo' });
  await flow.response.body?.cancel();
  expect(flow.response.status).toBe(302);
  return browser.cookie('session', base)!.value;
}

async function problem(res: Response): Promise<{ status: number; error: string }> {
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  return (await res.json()) as { status: number; error: string };
}


describe('the IdP down or slow', () => {
  const hold = idpHold();
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let th: RunningApp;

  beforeAll(async () => {
    idp = await startDevIdp({ intercept: hold.intercept });
    ({ upstream, th } = await startEchoApp(idp, { config: { oidc: { timeoutMs: OIDC_TIMEOUT_MS, allowInsecureIssuer: true } } }));
  });
  afterAll(async () => {
    hold.drop();
    await th?.close();
    await upstream?.close();
    await idp?.close();
  });

  type IdpState = { down?: '503' | 'refuse' | 'reset'; unanswering?: true };

  /**
   * Runs `fn` with the IdP down, or unanswering: then it holds each request it receives, without an answer,
   * until `fn` is done, and drops it (never handled: no grant is carried out behind the test's back).
   */
  async function withIdp<T>(state: IdpState, fn: () => Promise<T>): Promise<T> {
    if (state.down) await idp.setDown(true, state.down);
    if (state.unanswering) hold.hold();
    try {
      return await fn();
    } finally {
      hold.drop();
      await idp.setDown(false);
    }
  }

  /**
   * `request` fails without hanging; with the IdP unanswering, only at the OIDC timeout, while the IdP
   * still holds the one call it received: the timeout, not an answer, ended it.
   */
  async function failsInTime(state: IdpState, request: () => Promise<Response>): Promise<Response> {
    const started = performance.now();
    const res = await within(request(), ANSWERED_WITHIN_MS, 'the answer while the IdP is down or holds the call');
    const elapsed = performance.now() - started;
    if (state.unanswering) {
      expect(hold.waiting).toBe(1);
      // Timers round to the millisecond: "at least the timeout", less that.
      expect(elapsed).toBeGreaterThanOrEqual(OIDC_TIMEOUT_MS - 20);
    }
    return res;
  }

  it.each([
    ['answering 503', { down: '503' as const }],
    ['refusing connections', { down: 'refuse' as const }],
    ['resetting connections', { down: 'reset' as const }],
    ['slower than the OIDC timeout', { unanswering: true as const }],
  ])('login start with the IdP %s (before discovery): 503 idp_unavailable within the timeout, then recovery', async (_name, state: IdpState) => {
    // A fresh instance: nothing discovered yet.
    const fresh = await startApp(testConfig({ oidc: { timeoutMs: OIDC_TIMEOUT_MS, allowInsecureIssuer: true }, clients: [testClient({ issuer: idp.issuer })] }));
    try {
      await withIdp(state, async () => {
        const res = await failsInTime(state, () => createBrowser().get(`${fresh.base}${API}/clients/default/auth`));
        expect(res.status).toBe(503);
        expect((await problem(res)).error).toBe('idp_unavailable');
        expect(await fresh.th.ctx.store.countActive(Date.now())).toBe(0);
      });
      const res = await createBrowser().get(`${fresh.base}${API}/clients/default/auth`);
      expect(res.status).toBe(302);
    } finally {
      await fresh.close();
    }
  });

  it.each([
    ['answering 503', { down: '503' as const }],
    ['resetting connections', { down: 'reset' as const }],
    ['slower than the OIDC timeout', { unanswering: true as const }],
  ])('callback with the token endpoint %s: 502 idp_unavailable within the timeout, no session', async (_name, state: IdpState) => {
    const browser = createBrowser();
    const callback = await callbackUrlFromDevIdp(browser, th.base);
    await withIdp(state, async () => {
      const res = await failsInTime(state, () => browser.get(callback));
      expect(res.status, await res.clone().text()).toBe(502);
      expect((await problem(res)).error).toBe('idp_unavailable');
    });
    expect(browser.cookie('session', th.base)).toBeUndefined();
  });

  it.each([
    ['answering 503', { down: '503' as const }],
    ['refusing connections', { down: 'refuse' as const }],
    ['slower than the OIDC timeout', { unanswering: true as const }],
  ])('refresh with the IdP %s: 503 idp_unavailable with Retry-After, nothing forwarded, the session kept and refreshed later', async (_name, state: IdpState) => {
    const browser = createBrowser();
    const cookie = await login(browser, th.base);
    await expireAccessToken(th.th, cookie);
    await withIdp(state, async () => {
      const before = upstream.requests;
      const res = await failsInTime(state, () => browser.get(`${th.base}${T}/api/x`));
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect((await problem(res)).error).toBe('idp_unavailable');
      expect(upstream.requests).toBe(before);
      // The cookie is not cleared: a transient failure does not log anyone out.
      expect(res.headers.getSetCookie().some((c) => c.startsWith('session=;'))).toBe(false);
    });
    const refreshes = idp.refreshGrantCount;
    const res = await browser.get(`${th.base}${T}/api/x`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as EchoResponse).token.valid).toBe(true);
    expect(idp.refreshGrantCount).toBe(refreshes + 1);
  });
});

describe('an upstream that resets connections', () => {
  let resetter: net.Server;
  let upstream: DemoUpstream;
  let th: RunningApp;
  let resetRequests = 0;

  beforeAll(async () => {
    // Reads each request and resets the connection without answering anything.
    resetter = net.createServer((socket) => {
      socket.once('data', () => {
        resetRequests += 1;
        socket.resetAndDestroy();
      });
    });
    await new Promise<void>((resolve) => resetter.listen(0, '127.0.0.1', resolve));
    upstream = await startDemoUpstream();
    th = await startApp(
      testConfig({
        targets: [
          testTarget({ id: 'resetter', url: `http://127.0.0.1:${(resetter.address() as AddressInfo).port}`, tokenRequirement: 'none' }),
          testTarget({ id: 'flaky', url: upstream.url, tokenRequirement: 'none' }),
        ],
      }),
    );
  });
  afterAll(async () => {
    await th?.close();
    await upstream?.close();
    await new Promise<void>((resolve) => resetter.close(() => resolve()));
  });

  it('502 upstream_unavailable when the upstream resets before answering; one attempt, no retry', async () => {
    // Every connection is new: only a kept-alive one lost unanswered is retried (test/proxy/staleConnection.test.ts).
    for (const [method, attempts] of [['GET', 1], ['POST', 1]] as const) {
      const before = resetRequests;
      const res = await rawRequest(th.base, `${T}/resetter/x`, { method, headers: { cookie: 'XSRF-TOKEN=t', 'x-xsrf-token': 't' }, body: method === 'POST' ? 'x' : undefined });
      expect(res.status).toBe(502);
      expect(JSON.parse(res.body)).toMatchObject({ error: 'upstream_unavailable' });
      expect(resetRequests - before).toBe(attempts);
    }
  });

  it('a reset mid-body ends that response only; the next request on the service is fine', async () => {
    await expect(rawRequest(th.base, `${T}/flaky/reset`)).rejects.toThrow();
    const res = await rawRequest(th.base, `${T}/flaky/echo/ok`);
    expect(res.status).toBe(200);
  });
});

const redisUrl = process.env.TH_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
async function redisMissing(): Promise<string | undefined> {
  // Generous: a refused or reachable Redis answers at once; only a loaded CI machine would come near it.
  const client = new Redis(redisUrl, { lazyConnect: true, connectTimeout: 10_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    return undefined;
  } catch (err) {
    if (process.env.CI === 'true') throw new Error(`Redis is required in CI (${redisUrl})`, { cause: err });
    return (err as Error).message;
  } finally {
    client.disconnect();
  }
}
const noRedis = await redisMissing();

describe.skipIf(noRedis !== undefined)('the session store unavailable (Redis behind a TCP proxy we cut)', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let proxy: TcpProxy;
  let th: RunningApp;
  const keyPrefix = `th-test-security:${randomBytes(6).toString('hex')}:`;

  beforeAll(async () => {
    idp = await startDevIdp();
    upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource });
    const target = new URL(redisUrl);
    proxy = await startTcpProxy(Number(target.port || 6379), target.hostname);
    const via = new URL(redisUrl);
    via.hostname = '127.0.0.1';
    via.port = String(proxy.port);
    // A command timeout far beyond the bound below: a store that waits for Redis instead of failing at once
    // while it is cut would answer only at this timeout, so the bound tells the two apart on any machine.
    const store = createRedisStore({ url: via.href, keyPrefix, onError: () => undefined, commandTimeoutMs: 60_000 });
    const config = testConfig({ clients: [testClient({ issuer: idp.issuer })], targets: [testTarget({ id: 'api', url: `${upstream.url}/echo` })] });
    const built = await buildApp({ ...config, session: { ...config.session, cacheTtlMs: 0 } as typeof config.session }, { sweeper: false, store });
    await built.app.listen({ host: '127.0.0.1', port: 0 });
    th = { th: built, base: `http://127.0.0.1:${(built.app.server.address() as AddressInfo).port}`, close: () => built.app.close() };
  });
  afterAll(async () => {
    await proxy?.restore().catch(() => undefined);
    await th?.close();
    await proxy?.close();
    await upstream?.close();
    await idp?.close();
    const admin = new Redis(redisUrl);
    const keys = await admin.keys(`${keyPrefix}*`);
    if (keys.length > 0) await admin.unlink(...keys);
    admin.disconnect();
  });

  it('503 store_unavailable with Retry-After on the proxy, /sessions and the callback, fast; recovers by itself', { timeout: 90_000 }, async () => {
    const browser = createBrowser();
    await login(browser, th.base);
    const pending = createBrowser();
    const callback = await callbackUrlFromDevIdp(pending, th.base);
    const before = upstream.requests;

    await proxy.cut();
    try {
      for (const request of [() => browser.get(`${th.base}${T}/api/x`), () => browser.get(`${th.base}${API}/sessions`), () => pending.get(callback)]) {
        // Answered while the store is still cut (it only comes back after this loop), so without waiting for it:
        // only waiting (for Redis or the 60 s command timeout), not a slow machine, exceeds this bound.
        const res = await within(request(), 15_000, 'the answer while the store is cut');
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBe('5');
        expect((await problem(res)).error).toBe('store_unavailable');
      }
      expect(upstream.requests).toBe(before);
      expect(pending.cookie('session', th.base)).toBeUndefined();
    } finally {
      await proxy.restore();
    }
    await eventually(async () => (await browser.get(`${th.base}${T}/api/x`)).status === 200, 'the proxy to recover after the store came back', 20_000);
    expect(browser.cookie('session', th.base)).toBeDefined();
  });
});
