import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import * as client from 'openid-client';
import { startDevIdp } from '../../src/demo/idp.ts';
import type { DevIdp } from '../../src/demo/idp.ts';
import { createBrowser } from '../support/http.ts';
import { LoginFailedError, loginAtDevIdp, logoutAtDevIdp } from '../support/login.ts';
import { discoverDevIdp, runCodeFlow, startCallbackServer } from '../support/oidc-rp.ts';
import { eventually } from '../support/reload.ts';
import type { CallbackServer } from '../support/oidc-rp.ts';

describe('dev IdP', () => {
  let idp: DevIdp;
  let cb: CallbackServer;
  let config: client.Configuration;

  beforeAll(async () => {
    idp = await startDevIdp();
    cb = await startCallbackServer();
    config = await discoverDevIdp({ issuer: idp.issuer });
  });
  afterAll(async () => {
    await cb?.close();
    await idp?.close();
  });

  it('publishes a discovery document and a JWKS on 127.0.0.1', async () => {
    const res = await fetch(`${idp.issuer}/.well-known/openid-configuration`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Record<string, unknown>;
    expect(idp.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(doc).toMatchObject({
      issuer: idp.issuer,
      jwks_uri: idp.jwksUrl,
      authorization_endpoint: `${idp.issuer}/auth`,
      token_endpoint: `${idp.issuer}/token`,
      revocation_endpoint: `${idp.issuer}/token/revocation`,
      end_session_endpoint: `${idp.issuer}/session/end`,
      userinfo_endpoint: `${idp.issuer}/me`,
      code_challenge_methods_supported: ['S256'],
      response_types_supported: ['code'],
      backchannel_logout_supported: true,
      authorization_response_iss_parameter_supported: true,
    });
    expect(doc.scopes_supported).toEqual(expect.arrayContaining(['openid', 'offline_access', 'profile', 'email', 'roles']));
    const jwks = (await (await fetch(idp.jwksUrl)).json()) as { keys: { kty: string; alg: string; d?: string }[] };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'RSA', alg: 'RS256' });
    expect(jwks.keys[0]?.d).toBeUndefined(); // private part never published
  });

  it('rejects an authorization request without PKCE', async () => {
    const browser = createBrowser();
    const url = client.buildAuthorizationUrl(config, { redirect_uri: cb.redirectUri, scope: 'openid', state: 'x' });
    const res = await browser.get(url);
    expect(res.status).toBe(303);
    const location = new URL(res.headers.get('location') ?? '');
    expect(location.searchParams.get('error')).toBe('invalid_request');
    expect(location.searchParams.get('error_description')).toMatch(/PKCE/);
  });

  it('shows the login form again with an error on a wrong password', async () => {
    const browser = createBrowser();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: cb.redirectUri, scope: 'openid', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256',
    });
    const failed = idp.failedLoginCount;
    const err = await loginAtDevIdp(browser, url, { password: 'wrong' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LoginFailedError);
    expect((err as Error).message).toContain('Invalid username or password');
    expect(idp.failedLoginCount).toBe(failed + 1);
  });

  it('runs authorization code + PKCE with openid-client and issues JWT access tokens for the API', async () => {
    const browser = createBrowser();
    const { tokens, flow } = await runCodeFlow(config, browser, cb);

    // The chain went RP(auth URL) -> login form -> consent (automatic) -> callback on the RP.
    expect(flow.url.startsWith(`${cb.redirectUri}?`)).toBe(true);
    expect(new URL(flow.url).searchParams.get('iss')).toBe(idp.issuer);
    expect(flow.hops.some((h) => h.method === 'POST' && h.url.includes('/interaction/'))).toBe(true);
    // IdP session cookies exist, host-only, HttpOnly; names are per instance (port) to avoid clashes.
    const session = browser.cookies('127.0.0.1').find((c) => c.name === `_op${idp.port}_session`);
    expect(session).toMatchObject({ httpOnly: true, hostOnly: true, sameSite: 'Lax' });

    expect(tokens.token_type.toLowerCase()).toBe('bearer');
    expect(tokens.refresh_token).toBeTruthy();
    const idClaims = tokens.claims();
    expect(idClaims).toMatchObject({
      iss: idp.issuer, aud: 'token-handler', sub: 'demo', name: 'Demo User', email: 'demo@example.com', roles: ['user'],
    });
    expect(typeof idClaims?.sid).toBe('string');

    const { payload, protectedHeader } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(idp.jwksUrl)), {
      issuer: idp.issuer,
      audience: idp.apiResource,
    });
    expect(protectedHeader.typ).toBe('at+jwt');
    expect(payload).toMatchObject({ sub: 'demo', client_id: 'token-handler', name: 'Demo User', roles: ['user'] });
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(idp.authorizationCodeGrantCount).toBeGreaterThanOrEqual(1);
  });

  it('issues a JWT access token for openid-only requests and carries requested API scopes', async () => {
    const openidOnly = await runCodeFlow(config, createBrowser(), cb, { scope: 'openid' });
    expect(decodeJwt(openidOnly.tokens.access_token)).toMatchObject({ aud: idp.apiResource, sub: 'demo' });
    const withApi = await runCodeFlow(config, createBrowser(), cb, { scope: 'openid api:read' });
    expect(decodeJwt(withApi.tokens.access_token).scope).toBe('api:read');
  });

  it('rotates refresh tokens; reusing the old one fails, is counted and revokes the grant', async () => {
    const { tokens } = await runCodeFlow(config, createBrowser(), cb);
    const rt1 = tokens.refresh_token!;
    const before = { refresh: idp.refreshGrantCount, reuse: idp.refreshReuseCount };

    const refreshed = await client.refreshTokenGrant(config, rt1);
    const rt2 = refreshed.refresh_token!;
    expect(rt2).toBeTruthy();
    expect(rt2).not.toBe(rt1);
    expect(decodeJwt(refreshed.access_token).aud).toBe(idp.apiResource);
    expect(idp.refreshGrantCount).toBe(before.refresh + 1);
    expect(idp.refreshTokenState(rt1)).toBe('consumed');
    expect(idp.isRefreshTokenRevoked(rt1)).toBe(true);
    expect(idp.isRefreshTokenRevoked(rt2)).toBe(false);

    const reuse = await client.refreshTokenGrant(config, rt1).catch((e: unknown) => e);
    expect(reuse).toBeInstanceOf(client.ResponseBodyError);
    expect((reuse as client.ResponseBodyError).error).toBe('invalid_grant');
    expect(idp.refreshReuseCount).toBe(before.reuse + 1);
    expect(idp.refreshGrantCount).toBe(before.refresh + 1);
    // oidc-provider treats reuse as token theft: the whole grant, including rt2, is revoked.
    expect(idp.isRefreshTokenRevoked(rt2)).toBe(true);
    await expect(client.refreshTokenGrant(config, rt2)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('only issues a refresh token when offline_access is requested with prompt=consent', async () => {
    const noOffline = await runCodeFlow(config, createBrowser(), cb, { scope: 'openid profile' });
    expect(noOffline.tokens.refresh_token).toBeUndefined();
    const noConsent = await runCodeFlow(config, createBrowser(), cb, { prompt: 'login' });
    expect(noConsent.tokens.refresh_token).toBeUndefined();
  });

  it('counts successful revocations and revokes the refresh token', async () => {
    const { tokens } = await runCodeFlow(config, createBrowser(), cb);
    const before = idp.revocationCount;
    await client.tokenRevocation(config, tokens.refresh_token!, { token_type_hint: 'refresh_token' });
    expect(idp.revocationCount).toBe(before + 1);
    expect(idp.isRefreshTokenRevoked(tokens.refresh_token!)).toBe(true);
    await expect(client.refreshTokenGrant(config, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('rejects the resource-bound JWT at userinfo (documented limitation)', async () => {
    const { tokens } = await runCodeFlow(config, createBrowser(), cb);
    const res = await fetch(`${idp.issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/invalid_token/);
  });

  it('RP-initiated logout via the confirmation page is counted', async () => {
    const browser = createBrowser();
    const { tokens } = await runCodeFlow(config, browser, cb);
    const before = idp.endSessionCount;
    const endSession = client.buildEndSessionUrl(config, {
      id_token_hint: tokens.id_token!,
      post_logout_redirect_uri: `${cb.redirectUri.replace(/\/callback$/, '')}/`,
      state: 'bye',
    });
    const flow = await logoutAtDevIdp(browser, endSession, { idpOrigin: idp.issuer });
    expect(new URL(flow.url).searchParams.get('state')).toBe('bye');
    expect(idp.endSessionCount).toBe(before + 1);
    expect(browser.cookies('127.0.0.1').find((c) => c.name === `_op${idp.port}_session`)).toBeUndefined();
  });

  it('signs logout tokens and arbitrary JWTs with the published key', async () => {
    const jwks = createRemoteJWKSet(new URL(idp.jwksUrl));
    const logout = await jwtVerify(await idp.signLogoutToken({ aud: 'token-handler', sub: 'demo', sid: 's1' }), jwks, {
      issuer: idp.issuer, audience: 'token-handler', typ: 'logout+jwt',
    });
    expect(logout.payload.events).toEqual({ 'http://schemas.openid.net/event/backchannel-logout': {} });
    const admin = await jwtVerify(await idp.issueToken({ sub: 'admin', scope: 'admin' }), jwks, { issuer: idp.issuer });
    expect(admin.payload).toMatchObject({ sub: 'admin', scope: 'admin' });
  });

  it('can be made unavailable or slow', async () => {
    await idp.setDown(true);
    expect((await fetch(idp.jwksUrl)).status).toBe(503);
    await idp.setDown(true, 'reset');
    await expect(fetch(idp.jwksUrl)).rejects.toThrow();
    await idp.setDown(true, 'refuse');
    await expect(fetch(idp.jwksUrl)).rejects.toThrow();
    await idp.setDown(false);
    expect((await fetch(idp.jwksUrl)).status).toBe(200);

    idp.setDelay(150);
    const t0 = performance.now();
    await fetch(idp.jwksUrl);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    idp.setDelay(0);
  });
});

describe('dev IdP options', () => {
  it('jwtAccessTokens: false gives opaque tokens usable at userinfo; resource= still yields a JWT', async () => {
    const idp = await startDevIdp({ jwtAccessTokens: false, tokenEndpointAuthMethod: 'client_secret_post' });
    const cb = await startCallbackServer();
    try {
      const config = await discoverDevIdp({ issuer: idp.issuer, authMethod: 'client_secret_post' });
      const { tokens } = await runCodeFlow(config, createBrowser(), cb);
      expect(tokens.access_token.split('.')).toHaveLength(1);
      const info = await client.fetchUserInfo(config, tokens.access_token, 'demo');
      expect(info).toMatchObject({ sub: 'demo', name: 'Demo User', email: 'demo@example.com', roles: ['user'] });

      const jwt = await client.refreshTokenGrant(config, tokens.refresh_token!, { resource: idp.apiResource });
      expect(decodeJwt(jwt.access_token).aud).toBe(idp.apiResource);
    } finally {
      await cb.close();
      await idp.close();
    }
  });

  it('userinfoForJwtAccessTokens: userinfo answers for its own JWT access tokens (as Keycloak), by their scopes', async () => {
    const idp = await startDevIdp({ userinfoForJwtAccessTokens: true });
    const cb = await startCallbackServer();
    try {
      const config = await discoverDevIdp({ issuer: idp.issuer });
      const { tokens } = await runCodeFlow(config, createBrowser(), cb);
      expect(decodeJwt(tokens.access_token)).toMatchObject({ aud: idp.apiResource, scope: expect.stringContaining('openid') });
      const info = await client.fetchUserInfo(config, tokens.access_token, 'demo');
      expect(info).toMatchObject({ sub: 'demo', name: 'Demo User', preferred_username: 'demo', email: 'demo@example.com', roles: ['user'] });
      // A token it did not sign is refused as oidc-provider would.
      const [header, payload] = tokens.access_token.split('.');
      const forged = await fetch(`${idp.issuer}/me`, { headers: { authorization: `Bearer ${header}.${payload}.${'A'.repeat(342)}` } });
      expect(forged.status).toBe(401);
      expect(forged.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
    } finally {
      await cb.close();
      await idp.close();
    }
  });

  it('runs two issuers under path prefixes on one host without cookie clashes', async () => {
    const [a, b] = await Promise.all([startDevIdp({ issuerPathPrefix: '/a' }), startDevIdp({ issuerPathPrefix: '/b' })]);
    const cb = await startCallbackServer();
    try {
      expect(a.issuer).toMatch(/\/a$/);
      const browser = createBrowser();
      for (const idp of [a, b]) {
        const config = await discoverDevIdp({ issuer: idp.issuer });
        const { tokens } = await runCodeFlow(config, browser, cb);
        expect(decodeJwt(tokens.access_token).iss).toBe(idp.issuer);
      }
      expect((await fetch(`${a.issuer}/../b/jwks`.replace('/a/../', '/'))).status).toBe(404);
    } finally {
      await cb.close();
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('supports refreshTokens: always, rotateRefreshToken: false and custom users', async () => {
    const idp = await startDevIdp({
      refreshTokens: 'always',
      rotateRefreshToken: false,
      users: [{ username: 'alice', password: 'pw', sub: 'u-alice', name: 'Alice', email: 'a@example.com', roles: ['admin'] }],
    });
    const cb = await startCallbackServer();
    try {
      const config = await discoverDevIdp({ issuer: idp.issuer });
      const { tokens } = await runCodeFlow(config, createBrowser(), cb, { scope: 'openid profile roles', prompt: 'login', username: 'alice', password: 'pw' });
      expect(tokens.claims()).toMatchObject({ sub: 'u-alice', name: 'Alice', roles: ['admin'] });
      const again = await client.refreshTokenGrant(config, tokens.refresh_token!);
      expect(again.refresh_token ?? tokens.refresh_token).toBe(tokens.refresh_token);
      expect(idp.isRefreshTokenRevoked(tokens.refresh_token!)).toBe(false);
    } finally {
      await cb.close();
      await idp.close();
    }
  });

  it('refreshTokenReuseIntervalSec honours a rotated refresh token within the interval, and only then', async () => {
    // Long enough that the second presentation comes within it however slow the machine (consumption is
    // recorded in whole seconds, so a 1 s interval could already be over at once); shortened below.
    const idp = await startDevIdp({ refreshTokenReuseIntervalSec: 30 });
    const cb = await startCallbackServer();
    try {
      const config = await discoverDevIdp({ issuer: idp.issuer });
      const { tokens } = await runCodeFlow(config, createBrowser(), cb);
      const rt1 = tokens.refresh_token!;
      const first = await client.refreshTokenGrant(config, rt1);
      // Presented again at once (a client that lost the first answer): new tokens, nothing revoked.
      const again = await client.refreshTokenGrant(config, rt1);
      expect(again.refresh_token).not.toBe(first.refresh_token);
      expect(idp.refreshReuseToleratedCount).toBe(1);
      expect(idp.refreshReuseCount).toBe(0);
      await expect(client.refreshTokenGrant(config, again.refresh_token!)).resolves.toMatchObject({ access_token: expect.any(String) });
      expect(idp.refreshGrants.map((g) => g.grantId)).toEqual(Array(3).fill(idp.refreshGrants[0]!.grantId));
      // Past the interval, reuse is reuse: refused and the grant revoked.
      idp.setRefreshTokenReuseInterval(1);
      await new Promise((r) => setTimeout(r, 1100));
      await expect(client.refreshTokenGrant(config, rt1)).rejects.toMatchObject({ error: 'invalid_grant' });
      expect(idp.refreshReuseCount).toBe(1);
    } finally {
      await cb.close();
      await idp.close();
    }
  });

  it('holds refresh answers after rotating (setRefreshResponseDelay) and changes the access-token lifetime at run time', async () => {
    const idp = await startDevIdp({ accessTokenTtlSec: 60 });
    const cb = await startCallbackServer();
    try {
      const config = await discoverDevIdp({ issuer: idp.issuer });
      const { tokens } = await runCodeFlow(config, createBrowser(), cb);
      expect(tokens.expires_in).toBe(60);
      idp.setAccessTokenTtl(7);
      const DELAY_MS = 1000;
      idp.setRefreshResponseDelay(DELAY_MS);
      const pending = client.refreshTokenGrant(config, tokens.refresh_token!).then((answer) => ({ answer, at: Date.now() }));
      // The grant is carried out (the old refresh token consumed) before the answer leaves: at least the delay
      // before it (timestamps, so a slow machine cannot blur the order).
      await eventually(async () => idp.refreshGrantCount === 1, 'the refresh grant');
      expect(idp.refreshTokenState(tokens.refresh_token!)).toBe('consumed');
      const { answer: refreshed, at } = await pending;
      expect(at - idp.refreshGrants[0]!.at).toBeGreaterThanOrEqual(DELAY_MS - 5);
      expect(refreshed.expires_in).toBe(7);
      expect(decodeJwt(refreshed.access_token).exp! - decodeJwt(refreshed.access_token).iat!).toBe(7);
    } finally {
      await cb.close();
      await idp.close();
    }
  });

  it('enables dynamic client registration with an initial access token', async () => {
    const idp = await startDevIdp({ registration: true });
    try {
      const body = JSON.stringify({ redirect_uris: ['http://127.0.0.1/cb'], token_endpoint_auth_method: 'client_secret_basic' });
      const denied = await fetch(`${idp.issuer}/reg`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(denied.status).toBe(401);
      const ok = await fetch(`${idp.issuer}/reg`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${idp.registrationInitialAccessToken}` },
        body,
      });
      expect(ok.status).toBe(201);
      expect(await ok.json()).toMatchObject({ client_id: expect.any(String), client_secret: expect.any(String) });
    } finally {
      await idp.close();
    }
  });
});
