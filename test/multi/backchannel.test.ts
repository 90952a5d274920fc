/**
 * OpenID Connect Back-Channel Logout: logout tokens sent by a real oidc-provider end sessions (the API
 * proxy then answers 401); invalid logout tokens get 400 and end nothing. No CSRF token is needed (the
 * OP calls server to server).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.ts';
import { BACKCHANNEL_LOGOUT_EVENT } from '../../src/oidc/logoutToken.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { logoutAtDevIdp } from '../support/login.ts';
import { eventually } from '../support/reload.ts';
import { API, getJson, idpClient, login, startTokenHandler, type Running } from './support.ts';

describe('back-channel logout', () => {
  let idp: DevIdp;
  let stranger: DevIdp;
  let upstream: DemoUpstream;
  let th: Running;
  /** A second instance on the same store (the same SQLite file), as in a fleet. */
  let sibling: Running;
  let endpoint: string;

  beforeAll(async () => {
    idp = await startDevIdp({ clients: [idpClient('token-handler', 'default'), idpClient('other-app', 'other')] });
    stranger = await startDevIdp();
    upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer });
    const config = testConfig({
      clients: [testClient({ issuer: idp.issuer }), testClient({ id: 'other', issuer: idp.issuer, clientId: 'other-app', clientSecret: 'other-app-secret' })],
      targets: [testTarget({ id: 'api', url: upstream.url })],
    });
    th = await startTokenHandler(config);
    sibling = await startTokenHandler(config);
    endpoint = `${th.base}${API}/clients/default/backchannel-logout`;
    // The OP calls this URL itself when its session ends.
    await idp.updateClient('token-handler', { backchannel_logout_uri: endpoint, backchannel_logout_session_required: true });
  });
  afterAll(async () => {
    await sibling?.close();
    await th?.close();
    await upstream?.close();
    await idp?.close();
    await stranger?.close();
  });

  async function loggedIn(client = 'default', browser = createBrowser()): Promise<{ browser: Browser; sid: string; idHash: string }> {
    await login(browser, th.base, client);
    const name = client === 'default' ? 'session' : `session-${client}`;
    const session = (await th.th.ctx.sessions.resolve(browser.cookie(name, th.base)!.value, { clientId: client, tenant: null }))!;
    expect(session.record.sid).toBeTruthy();
    return { browser, sid: session.record.sid!, idHash: session.idHash };
  }

  const sessionCount = async (browser: Browser): Promise<number> => ((await getJson<unknown[]>(browser, `${th.base}${API}/sessions`)).body).length;
  const apiStatus = async (browser: Browser): Promise<number> => (await browser.get(`${th.base}${API}/targets/api/api/hello`)).status;

  async function post(token: string | undefined, url = endpoint): Promise<{ status: number; body: unknown; cacheControl: string | null }> {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: token === undefined ? 'nothing=here' : new URLSearchParams({ logout_token: token }),
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text), cacheControl: res.headers.get('cache-control') };
  }

  it('ends the session when the OP session ends (logout token sent by the IdP itself)', async () => {
    const { browser, idHash } = await loggedIn();
    expect(await apiStatus(browser)).toBe(200);
    const sent = idp.backchannelLogoutSentCount;
    // The user signs out at the IdP (another application's logout link): the OP notifies every client.
    const ended = await logoutAtDevIdp(browser, `${idp.issuer}/session/end`, { idpOrigin: new URL(idp.issuer).origin });
    expect(ended.html).toContain('signed-out');
    await eventually(async () => idp.backchannelLogoutSentCount !== sent, 'the IdP to send its logout token');
    expect(idp.backchannelLogoutSentCount).toBe(sent + 1);
    expect(await sessionCount(browser)).toBe(0);
    expect((await getJson<unknown[]>(browser, `${th.base}${API}/sessions?all=true`)).body).toEqual([]);
    expect(await th.th.ctx.store.get(idHash)).toBeUndefined();
    expect(await apiStatus(browser)).toBe(401);
  });

  it('a logout token with sid ends that OP session; 200 and no-store, no CSRF token needed', async () => {
    const { browser, sid } = await loggedIn();
    const bystander = await loggedIn();
    const { status, logoutToken } = await idp.sendBackchannelLogout({ clientId: 'token-handler', sid, uri: endpoint });
    expect(status).toBe(200);
    expect(logoutToken).toBeTruthy();
    expect(await sessionCount(browser)).toBe(0);
    expect(await apiStatus(browser)).toBe(401);
    expect(await sessionCount(bystander.browser)).toBe(1);
  });

  it("a logout token with only sub ends the user's sessions of this client, not of another client", async () => {
    const first = await loggedIn();
    const second = await loggedIn();
    const otherClient = await loggedIn('other');
    const res = await post(await idp.signLogoutToken({ aud: 'token-handler', sub: 'demo' }));
    expect(res.status).toBe(200);
    expect(res.cacheControl).toBe('no-store');
    expect(await sessionCount(first.browser)).toBe(0);
    expect(await sessionCount(second.browser)).toBe(0);
    expect(await sessionCount(otherClient.browser)).toBe(1);
  });

  it('refuses invalid logout tokens with 400 invalid_request and ends nothing', async () => {
    const { browser, sid, idHash } = await loggedIn();
    const now = Math.floor(Date.now() / 1000);
    const events = { [BACKCHANNEL_LOGOUT_EVENT]: {} };
    const bad: Record<string, string | undefined> = {
      'nonce present': await idp.signLogoutToken({ aud: 'token-handler', sid, nonce: 'n-0S6_WzA2Mj' }),
      'wrong aud': await idp.signLogoutToken({ aud: 'someone-else', sid }),
      'bad signature': await stranger.signLogoutToken({ aud: 'token-handler', sid, iss: idp.issuer }),
      'foreign issuer': await stranger.signLogoutToken({ aud: 'token-handler', sid }),
      'missing events': await idp.issueToken({ aud: 'token-handler', sid }, { typ: 'logout+jwt' }),
      'other event': await idp.issueToken({ aud: 'token-handler', sid, events: { 'https://example.com/other': {} } }, { typ: 'logout+jwt' }),
      'typ at+jwt': await idp.issueToken({ aud: 'token-handler', sid, events }, { typ: 'at+jwt' }),
      'too old': await idp.signLogoutToken({ aud: 'token-handler', sid, iat: now - 3600, exp: now + 60 }),
      'expired': await idp.signLogoutToken({ aud: 'token-handler', sid, iat: now - 200, exp: now - 100 }),
      'neither sub nor sid': await idp.signLogoutToken({ aud: 'token-handler' }),
      // Required (Back-Channel Logout 1.0 §2.4): without it a replay cannot be told from a new logout.
      'no jti': await idp.signLogoutToken({ aud: 'token-handler', sid, jti: undefined }),
      'empty jti': await idp.signLogoutToken({ aud: 'token-handler', sid, jti: '' }),
      'not a JWT': 'not-a-jwt',
      'no logout_token': undefined,
    };
    for (const [why, token] of Object.entries(bad)) {
      const res = await post(token);
      expect(res.status, why).toBe(400);
      expect(res.body, why).toMatchObject({ error: 'invalid_request' });
      expect(res.cacheControl, why).toBe('no-store');
    }
    // For an unknown client too.
    expect((await post(await idp.signLogoutToken({ aud: 'token-handler', sid }), `${th.base}${API}/clients/nope/backchannel-logout`)).status).toBe(400);
    expect(await th.th.ctx.store.get(idHash)).toBeDefined();
    expect(await sessionCount(browser)).toBe(1);
    expect(await apiStatus(browser)).toBe(200);
  });

  it('refuses a replayed logout token (same jti)', async () => {
    const { sid } = await loggedIn();
    const token = await idp.signLogoutToken({ aud: 'token-handler', sid });
    expect((await post(token)).status).toBe(200);
    const again = await post(token);
    expect(again.status).toBe(400);
    expect(again.body).toMatchObject({ error: 'invalid_request' });
  });

  it('refuses a replay on every instance of the fleet: the use is recorded in the store', async () => {
    // A sub-only token ends the user's sessions of the client: replayed later, it would end a new login too.
    const token = await idp.signLogoutToken({ aud: 'token-handler', sub: 'demo' });
    expect((await post(token)).status).toBe(200);
    const { browser } = await loggedIn();
    const replay = await post(token, `${sibling.base}${API}/clients/default/backchannel-logout`);
    expect(replay.status).toBe(400);
    expect(replay.body).toMatchObject({ error: 'invalid_request', error_description: expect.stringContaining('already used') });
    expect(await sessionCount(browser)).toBe(1);
    expect(await apiStatus(browser)).toBe(200);
  });

  it('of the same token sent to two instances at once, one ends the sessions and the other refuses it', async () => {
    await loggedIn();
    const token = await idp.signLogoutToken({ aud: 'token-handler', sub: 'demo' });
    const results = await Promise.all([post(token), post(token, `${sibling.base}${API}/clients/default/backchannel-logout`)]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 400]);
  });
});
