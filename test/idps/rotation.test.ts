/**
 * Signing-key rotation never logs anyone out. A refresh whose new ID token is signed by a key the instance
 * cannot get (the IdP's key set unreachable right then) keeps the tokens the IdP answered with: the access
 * token is used, the rotated refresh token stored, the call is no 503; the next refresh is no reuse. A
 * logout token signed with a key published after the key set was fetched is accepted at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.ts';
import { JwksCache } from '../../src/oidc/jwks.ts';
import { validateLogoutToken } from '../../src/oidc/logoutToken.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { expireAccessToken } from '../support/sessions.ts';
import { API, login, startTokenHandler, type Running } from '../multi/support.ts';

describe('signing-key rotation', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let th: Running;
  let keySetDown = false;

  beforeAll(async () => {
    idp = await startDevIdp({
      refreshTokens: 'always',
      intercept: (_req, res, url) => {
        if (!keySetDown || !url.pathname.endsWith('/jwks')) return false;
        res.writeHead(503).end();
        return true;
      },
    });
    upstream = await startDemoUpstream();
    th = await startTokenHandler(testConfig({ clients: [testClient({ issuer: idp.issuer })], targets: [testTarget({ id: 'api', url: upstream.url })] }));
  });
  afterAll(async () => {
    await th?.close();
    await upstream?.close();
    await idp?.close();
  });

  it('keeps the refreshed tokens when the new ID token cannot be validated yet, and refreshes again later without reuse', async () => {
    const browser = createBrowser();
    expect((await login(browser, th.base, 'default', 'demo')).status).toBe(302);
    const cookie = browser.cookie('session', th.base)!.value;
    const resolve = async () => (await th.th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null }))!;
    const before = await resolve();

    await idp.rotateSigningKey();
    keySetDown = true;
    await expireAccessToken(th.th, cookie);
    idp.resetCounters();
    const api = await browser.get(`${th.base}${API}/targets/api/echo`);
    expect(api.status).toBe(200);
    expect(idp.refreshGrantCount).toBe(1);
    const kept = await resolve();
    expect(kept.payload.accessToken).not.toBe(before.payload.accessToken);
    expect(kept.payload.refreshToken).not.toBe(before.payload.refreshToken);
    expect(idp.refreshTokenState(kept.payload.refreshToken!)).toBe('active');
    // The unvalidated ID token was not taken: the session keeps the one it had.
    expect(kept.payload.idToken).toBe(before.payload.idToken);

    keySetDown = false;
    await expireAccessToken(th.th, cookie);
    expect((await browser.get(`${th.base}${API}/targets/api/echo`)).status).toBe(200);
    expect(idp.refreshGrantCount).toBe(2);
    expect(idp.refreshReuseCount).toBe(0);
    expect((await resolve()).payload.idToken).not.toBe(before.payload.idToken);
  });

  it('accepts a logout token signed with a key published after the key set was fetched', async () => {
    const jwks = new JwksCache(5000);
    const keys = jwks.get(idp.jwksUrl);
    const opts = { issuer: idp.issuer, clientId: 'token-handler', keys };
    await expect(validateLogoutToken(await idp.signLogoutToken({ aud: 'token-handler', sid: 'before' }), opts)).resolves.toMatchObject({ sid: 'before' });
    await idp.rotateSigningKey({ dropOld: true });
    await expect(validateLogoutToken(await idp.signLogoutToken({ aud: 'token-handler', sid: 'after' }), opts)).resolves.toMatchObject({ sid: 'after' });
  });
});
