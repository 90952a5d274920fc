/**
 * The same life of a session against a second, independent implementation: oauth2-mock-server (no login
 * page, `none` as its only advertised client authentication, JWTs typed `JWT`, a key store that signs in
 * turn with each key it holds). What works only against oidc-provider would fail here.
 */
import { randomUUID } from 'node:crypto';
import { decodeProtectedHeader } from 'jose';
import { OAuth2Server } from 'oauth2-mock-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoUpstream, type DemoUpstream, type EchoResponse } from '../../src/demo/upstream.ts';
import { BACKCHANNEL_LOGOUT_EVENT } from '../../src/oidc/logoutToken.ts';
import type { SessionView } from '../../src/routes/sessions.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { expireAccessToken } from '../support/sessions.ts';
import { API, csrfHeaders, getJson, startTokenHandler, type Running } from '../multi/support.ts';

describe('oauth2-mock-server', () => {
  const server = new OAuth2Server();
  let upstream: DemoUpstream;
  let th: Running;
  let issuer: string;
  /** The OP session of the tokens the mock issues next (the mock has none of its own). */
  let sid = randomUUID();

  beforeAll(async () => {
    await server.issuer.keys.generate('RS256');
    await server.start(0, '127.0.0.1');
    issuer = server.issuer.url!;
    server.service.on('beforeTokenSigning', (token: { payload: Record<string, unknown> }) => {
      Object.assign(token.payload, { name: 'John Doe', email: 'john@example.com', roles: ['reader', 'writer'], sid });
    });
    upstream = await startDemoUpstream();
    th = await startTokenHandler(
      testConfig({
        clients: [testClient({ issuer, clientId: 'mock-client', clientSecret: 'mock-secret', extraAuthParams: {}, postLogoutRedirectUrl: '/bye' })],
        targets: [testTarget({ id: 'api', url: upstream.url })],
      }),
    );
  });
  afterAll(async () => {
    await th?.close();
    await upstream?.close();
    await server.stop();
  });

  const browser = createBrowser();
  const cookie = (): string => browser.cookie('session', th.base)!.value;
  const session = async () => (await th.th.ctx.sessions.resolve(cookie(), { clientId: 'default', tenant: null }))!;
  const callApi = async () => {
    const res = await browser.get(`${th.base}${API}/targets/api/echo`);
    return { status: res.status, body: (res.status === 200 ? await res.json() : await res.text()) as EchoResponse };
  };
  const login = async () => {
    const flow = await loginAtDevIdp(browser, `${th.base}${API}/clients/default/auth`);
    await flow.response.body?.cancel();
    return flow.response;
  };

  it('logs in, lists the roles, proxies with the access token', async () => {
    expect((await login()).status).toBe(302);
    const { body } = await getJson<SessionView[]>(browser, `${th.base}${API}/sessions`);
    expect(body[0]).toMatchObject({ authenticated: true, sub: 'johndoe', name: 'John Doe', roles: ['reader', 'writer'] });
    const api = await callApi();
    expect(api.status).toBe(200);
    expect(api.body.headers.authorization).toBe(`Bearer ${(await session()).payload.accessToken}`);
  });

  it('refreshes when the new ID token is signed by a key added after login', async () => {
    const before = await session();
    // The mock signs with its keys in turn: after this, the refresh's ID token carries the new key.
    const added = await server.issuer.keys.generate('RS256');
    await expireAccessToken(th.th, cookie());
    expect((await callApi()).status).toBe(200);
    const after = await session();
    expect(after.payload.refreshToken).not.toBe(before.payload.refreshToken);
    expect(decodeProtectedHeader(after.payload.idToken!).kid).toBe(added.kid);
  });

  it('ends the session on a back-channel logout token signed by the mock', async () => {
    const logoutToken = await server.issuer.buildToken({
      scopesOrTransform: (_header, payload) => Object.assign(payload, { aud: 'mock-client', sid, jti: randomUUID(), events: { [BACKCHANNEL_LOGOUT_EVENT]: {} } }),
    });
    const res = await fetch(`${th.base}${API}/clients/default/backchannel-logout`, { method: 'POST', body: new URLSearchParams({ logout_token: logoutToken }) });
    expect(res.status).toBe(200);
    expect((await getJson(browser, `${th.base}${API}/sessions`)).body).toEqual([]);
    expect((await callApi()).status).toBe(401);
  });

  it('logs out through the end-session endpoint back to the post-logout URL', async () => {
    sid = randomUUID();
    await login();
    const res = await browser.post(`${th.base}${API}/clients/default/logout`, undefined, { headers: csrfHeaders(browser, th.base) });
    const { redirectTo } = (await res.json()) as { redirectTo: string };
    const followed = await browser.follow(new URL(redirectTo, th.base));
    expect(followed.hops.map((hop) => new URL(hop.url).origin)).toContain(new URL(issuer).origin);
    expect(followed.url).toBe(`${th.base}/bye`);
    expect((await getJson(browser, `${th.base}${API}/sessions`)).body).toEqual([]);
  });
});
