/**
 * Logs of a full flow against the real dev IdP, captured at `trace` through the production logger
 * configuration (log.ts), must not contain any credential: cookies, the XSRF token, the login state,
 * the authorization code, `state`, tokens (opaque or JWT), the client secret or the session secrets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevIdp } from '../../src/demo/idp.ts';
import { startDevIdp } from '../../src/demo/idp.ts';
import { testClient, testConfig } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { API, CALLBACK_URI, memoryLogger, startTokenHandler, type Running } from './support.ts';

const CLIENT_SECRET = 'token-handler-secret';

describe('logs: one redacted line per request, validated request ids', () => {
  let idp: DevIdp;
  let th: Running;
  const logs = memoryLogger('trace');
  const config = testConfig({ logLevel: 'trace', clients: [testClient({ issuer: idp0(), clientSecret: CLIENT_SECRET, postLogoutRedirectUrl: '/signed-out' })] });
  // The issuer is only known once the IdP runs: patched in beforeAll.
  function idp0(): string {
    return 'http://127.0.0.1:1';
  }

  beforeAll(async () => {
    idp = await startDevIdp({ redirectUris: [CALLBACK_URI, 'http://127.0.0.1/callback'], postLogoutRedirectUris: ['http://127.0.0.1/signed-out'] });
    config.clients = [{ ...config.clients[0]!, issuer: idp.issuer }];
    th = await startTokenHandler(config, { logger: logs.logger });
  });

  afterAll(async () => {
    await th?.app.close();
    await idp?.close();
  });

  it('a full flow (login, /sessions, userinfo, a refused callback, a replayed code, logout) leaks no secret into trace logs', async () => {
    const secrets = new Map<string, string>();
    const browser = createBrowser();

    // 1. Login, keeping every credential the flow produces.
    const start = await browser.get(`${th.base}${API}/clients/default/auth?return_to=${encodeURIComponent('/app')}`);
    expect(start.status).toBe(302);
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    secrets.set('state', state);
    const loginCookie = browser.cookies(th.base).find((c) => c.name.startsWith('th-login-'))!;
    secrets.set('login-state cookie', loginCookie.value);
    const flow = await loginAtDevIdp(browser, start.headers.get('location')!, { username: 'demo', password: 'demo' });
    expect(flow.response.status).toBe(302);
    secrets.set('authorization code', new URL(flow.url).searchParams.get('code')!);
    const sessionCookie = browser.cookie('session', th.base)!.value;
    secrets.set('session cookie', sessionCookie);
    secrets.set('XSRF token', browser.cookie('XSRF-TOKEN', th.base)!.value);

    const session = await th.th.ctx.sessions.resolve(sessionCookie, { clientId: 'default', tenant: null });
    expect(session).toBeDefined();
    secrets.set('access token', session!.payload.accessToken);
    if (session!.payload.refreshToken) secrets.set('refresh token', session!.payload.refreshToken);
    if (session!.payload.idToken) secrets.set('id token', session!.payload.idToken);

    // 2. The app's calls, one with an Authorization header of its own (must be neither used nor logged).
    const sessions = await browser.get(`${th.base}${API}/sessions`, { headers: { authorization: `Bearer ${session!.payload.accessToken}` } });
    expect(sessions.status).toBe(200);
    const [view] = (await sessions.json()) as Array<{ logoutUrl: string }>;
    secrets.set('logout guard', new URL(view!.logoutUrl, th.base).searchParams.get('sid')!);
    await (await browser.get(`${th.base}/userinfo`)).arrayBuffer();

    // A refresh that succeeds, then one that fails because the IdP is down.
    for (const down of [false, true]) {
      const current = (await th.th.ctx.sessions.resolve(sessionCookie, { clientId: 'default', tenant: null }))!;
      const record = (await th.th.ctx.store.get(current.idHash))!;
      await th.th.ctx.store.updatePayload(record.idHash, record.version, { payload: record.payload, accessExpiresAt: Date.now() - 1000 });
      await th.th.ctx.store.publishInvalidation([record.idHash]);
      await new Promise((r) => setTimeout(r, 50));
      if (down) await idp.setDown(true);
      const expired = (await th.th.ctx.sessions.resolve(sessionCookie, { clientId: 'default', tenant: null }))!;
      const refreshed = await th.th.ctx.sessions.accessToken(expired).catch((err: unknown) => err);
      if (down) {
        expect(refreshed).toBeInstanceOf(Error);
        await idp.setDown(false);
      } else {
        expect(refreshed, String(refreshed)).toBeTypeOf('string');
        const after = (await th.th.ctx.sessions.resolve(sessionCookie, { clientId: 'default', tenant: null }))!;
        secrets.set('refreshed access token', after.payload.accessToken);
        if (after.payload.refreshToken) secrets.set('rotated refresh token', after.payload.refreshToken);
      }
    }

    // 3. A callback the IdP refused, and replays of the successful callback (code and state in the URL).
    // (A replayed code makes the IdP revoke the grant, so the refreshes come before it.)
    const second = createBrowser();
    const start2 = await second.get(`${th.base}${API}/clients/default/auth`);
    const state2 = new URL(start2.headers.get('location')!).searchParams.get('state')!;
    secrets.set('second state', state2);
    secrets.set('second login-state cookie', second.cookies(th.base).find((c) => c.name.startsWith('th-login-'))!.value);
    const refused = await second.get(`${th.base}${API}/clients/default/callback?error=access_denied&error_description=denied&state=${state2}`);
    expect(refused.status).toBe(302);
    const replay = await createBrowser().get(flow.url);
    expect(replay.status).toBe(400);
    // The same replay with the login-state cookie copied: the code reaches the IdP, which refuses it.
    const thief = createBrowser();
    thief.jar.setCookie(`${loginCookie.name}=${loginCookie.value}; Path=/`, th.base);
    const exchanged = await thief.get(flow.url);
    expect(exchanged.status).toBe(400);
    expect(((await exchanged.json()) as { error: string }).error).toBe('invalid_grant');

    // 4. Logout (POST with the XSRF header), then its continuation, which redirects to the IdP with the
    // id token as id_token_hint.
    const xsrf = secrets.get('XSRF token')!;
    const logout = await browser.post(`${th.base}${API}/clients/default/logout`, undefined, {
      headers: { accept: 'application/json', 'x-xsrf-token': xsrf, origin: th.base },
    });
    expect(logout.status).toBe(200);
    const { redirectTo } = (await logout.json()) as { redirectTo: string };
    const continued = await browser.get(new URL(redirectTo, th.base));
    expect(continued.status).toBe(302);
    const hint = new URL(continued.headers.get('location')!).searchParams.get('id_token_hint');
    expect(hint).toMatch(/^eyJ/);
    secrets.set('id_token_hint', hint!);

    // The logs are there, at trace, and say what happened...
    const text = logs.text();
    expect(text).toContain('login succeeded');
    expect(text).toContain('login failed');
    expect(text).toContain('invalid_grant');
    expect(text).toContain('refresh failed');
    expect(text).toContain('request completed');
    expect(text).toContain(`${API}/clients/default/callback?`);

    if (process.env.TH_DUMP_LOGS) console.log(text);
    // ...without any credential.
    const configSecrets = {
      'client secret': CLIENT_SECRET,
      'session auth secret': config.session.authSecrets[0]!.toString(),
      'session enc secret': config.session.encSecrets[0]!.toString(),
      'session db key': config.session.dbKeys[0]!.toString(),
    };
    for (const [what, value] of [...secrets, ...Object.entries(configSecrets)]) {
      expect(value.length, what).toBeGreaterThan(8);
      expect(text.includes(value), `${what} appears in the logs`).toBe(false);
      expect(text.includes(encodeURIComponent(value)), `${what} (URL-encoded) appears in the logs`).toBe(false);
    }
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{5,}/);
    expect(text).not.toMatch(/Bearer\s/i);
  });

  it('scrubs JWTs and Authorization credentials from messages and fields, and redacts token fields', async () => {
    const capture = memoryLogger('trace');
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c2lnbmF0dXJl';
    capture.logger.warn({ reason: `invalid token ${jwt}` }, `upstream said Bearer opaque-token-123 and ${jwt}`);
    capture.logger.info({ tokens: { accessToken: 'opaque-access-1' }, accessToken: 'opaque-access-2', nested: { refresh_token: 'opaque-refresh-3' } }, 'token set');
    capture.logger.info({ request: { headers: { authorization: 'Basic dXNlcjpwYXNz', cookie: 'session=abc123secret' } } }, 'raw request');
    const text = capture.text();
    for (const secret of [jwt, 'opaque-token-123', 'opaque-access-1', 'opaque-access-2', 'opaque-refresh-3', 'dXNlcjpwYXNz', 'abc123secret']) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain('[REDACTED_JWT]');
    expect(text).toContain('Bearer [REDACTED]');
  });

  it('writes one line per request with the request id, echoed in X-Request-Id', async () => {
    const id = `req-${Date.now()}.ok_ID`;
    const res = await fetch(`${th.base}${API}/sessions`, { headers: { 'x-request-id': id } });
    expect(res.headers.get('x-request-id')).toBe(id);
    const mine = logs.lines().filter((l) => l.reqId === id);
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ msg: 'request completed', level: 30, res: { statusCode: 200 }, req: { method: 'GET', url: `${API}/sessions` } });
    expect(typeof mine[0]!.responseTime).toBe('number');
  });

  it('replaces request ids that could forge or flood log lines', async () => {
    for (const bad of ['a b', 'x'.repeat(129), 'id"}{"level":60', 'caf\u00e9', '']) {
      const res = await fetch(`${th.base}/healthz`, { headers: { 'x-request-id': bad } });
      const echoed = res.headers.get('x-request-id');
      expect(echoed).not.toBe(bad);
      expect(echoed).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect(logs.text()).not.toContain('"level":60');
  });

  it('does not log health probes and scrapes at info', async () => {
    const ids = ['probe-healthz', 'probe-ping', 'probe-readyz', 'probe-metrics'];
    await Promise.all(
      ['/healthz', '/ping', '/readyz', '/metrics'].map(async (path, i) => {
        const res = await fetch(`${th.base}${path}`, { headers: { 'x-request-id': ids[i]! } });
        expect(res.status, path).toBe(200);
        await res.arrayBuffer();
      }),
    );
    expect(logs.lines().filter((l) => ids.includes(String(l.reqId)))).toEqual([]);
  });
});
