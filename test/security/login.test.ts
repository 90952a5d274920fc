/**
 * Attacks on the login: forged, replayed or mixed-up authorization responses against the real dev IdP,
 * and forged ID tokens from a real (rogue) OpenID Provider whose token endpoint lies. Every one must end
 * without a session: no session cookie, nothing in the store.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { testClient, testConfig } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { startApp, type RunningApp } from '../proxy/support.ts';
import { callbackUrlFromDevIdp, loginWithoutPrompt, startRogueIdp, type IdTokenMode, type RogueIdp } from './support.ts';

const API = '/token-handler/v1';

async function activeSessions(th: RunningApp): Promise<number> {
  return th.th.ctx.store.countActive(Date.now());
}

function noSession(browser: Browser, base: string): void {
  expect(browser.cookie('session', base)).toBeUndefined();
  expect(browser.cookie('XSRF-TOKEN', base)).toBeUndefined();
}

describe('authorization response attacks against the dev IdP', () => {
  let idp: DevIdp;
  let th: RunningApp;

  beforeAll(async () => {
    idp = await startDevIdp();
    th = await startApp(testConfig({ clients: [testClient({ issuer: idp.issuer })] }));
  });
  afterAll(async () => {
    await th?.close();
    await idp?.close();
  });

  it('the honest callback logs in (control for every refusal below)', async () => {
    const browser = createBrowser();
    const callback = await callbackUrlFromDevIdp(browser, th.base);
    const res = await browser.get(callback);
    expect(res.status).toBe(302);
    expect(browser.cookie('session', th.base)).toBeDefined();
  });

  it('refuses a callback without state, with a short one, or with a state of another login (400 invalid_state)', async () => {
    const browser = createBrowser();
    const callback = await callbackUrlFromDevIdp(browser, th.base);
    const before = await activeSessions(th);
    const noState = new URL(callback);
    noState.searchParams.delete('state');
    const shortState = new URL(callback);
    shortState.searchParams.set('state', 'abc');
    // A second login in the same browser: its state cookie exists, but not for the first state's value.
    const other = await browser.get(`${th.base}${API}/clients/default/auth`);
    const otherState = new URL(other.headers.get('location')!).searchParams.get('state')!;
    const mismatched = new URL(callback);
    mismatched.searchParams.set('state', `${otherState.slice(0, 16)}${'A'.repeat(otherState.length - 16)}`);
    for (const url of [noState, shortState, mismatched]) {
      const res = await browser.get(url);
      expect(res.status, url.href).toBe(400);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(((await res.json()) as { error: string }).error).toBe('invalid_state');
    }
    noSession(browser, th.base);
    expect(await activeSessions(th)).toBe(before);
  });

  it('refuses a replayed callback even with the login-state cookie captured (code single-use at the IdP, 400 invalid_grant)', async () => {
    const browser = createBrowser();
    const callback = await callbackUrlFromDevIdp(browser, th.base);
    const stateCookie = browser.cookies(th.base).find((c) => c.name.startsWith('th-login-'))!;
    expect(stateCookie).toBeDefined();
    expect((await browser.get(callback)).status).toBe(302);
    // The attacker replays the same request, login-state cookie included.
    const attacker = createBrowser();
    attacker.jar.setCookie(`${stateCookie.name}=${stateCookie.value}; Path=/`, th.base);
    const before = await activeSessions(th);
    const replay = await attacker.get(callback);
    expect(replay.status).toBe(400);
    expect(((await replay.json()) as { error: string }).error).toBe('invalid_grant');
    noSession(attacker, th.base);
    expect(await activeSessions(th)).toBe(before);
  });

  it('refuses every foreign return_to at login start (and at the go-token-handler /login): 400, no cookie, no IdP redirect', async () => {
    const foreign = [
      'https://evil.example/', 'http://evil.example', '//evil.example', '/\\evil.example', '\\\\evil.example', '/%2f%2fevil.example', '/%5cevil.example',
      '%2f%2fevil.example', '/%09/evil.example', 'javascript:alert(document.cookie)', 'JAVASCRIPT%3Aalert(1)', 'data:text/html,<script>alert(1)</script>',
      'https://127.0.0.1.evil.example/', 'https://user@evil.example', `${th.base}@evil.example/`, '/x\r\nLocation: https://evil.example',
    ];
    for (const path of [`${API}/clients/default/auth`, '/login']) {
      for (const value of foreign) {
        const browser = createBrowser();
        const res = await browser.get(`${th.base}${path}?return_to=${encodeURIComponent(value)}`);
        expect(res.status, `${path} ${value}`).toBe(400);
        expect(((await res.json()) as { error: string }).error).toBe('invalid_return_to');
        expect(res.headers.get('location')).toBeNull();
        expect(browser.cookies(th.base)).toEqual([]);
      }
    }
    // Our own paths and origin are fine (control).
    const ok = await createBrowser().get(`${th.base}${API}/clients/default/auth?return_to=${encodeURIComponent(`${th.base}/app?x=1`)}`);
    expect(ok.status).toBe(302);
  });

  it.each([
    ['another issuer', (url: URL) => url.searchParams.set('iss', 'http://127.0.0.1:9/evil')],
    ['no iss although the IdP advertises RFC 9207', (url: URL) => url.searchParams.delete('iss')],
  ])('refuses an authorization response with %s (mix-up), before redeeming the code', async (_name, change) => {
    const browser = createBrowser();
    const callback = await callbackUrlFromDevIdp(browser, th.base);
    expect(callback.searchParams.get('iss')).toBe(idp.issuer);
    change(callback);
    const codes = idp.authorizationCodeGrantCount;
    const before = await activeSessions(th);
    const res = await browser.get(callback);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_response');
    expect(idp.authorizationCodeGrantCount).toBe(codes);
    noSession(browser, th.base);
    expect(await activeSessions(th)).toBe(before);
  });
});

describe('forged ID tokens from a rogue OpenID Provider', () => {
  let rogue: RogueIdp;
  let th: RunningApp;

  beforeAll(async () => {
    rogue = await startRogueIdp({ clientId: 'token-handler', clientSecret: 'token-handler-secret' });
    th = await startApp(testConfig({ clients: [testClient({ issuer: rogue.issuer, extraAuthParams: {} })] }));
  });
  afterAll(async () => {
    await th?.close();
    await rogue?.close();
  });

  it('logs in with a correctly signed ID token (control: the rogue IdP is a working IdP)', async () => {
    rogue.mode = 'valid';
    rogue.authorizationIss = rogue.issuer;
    const browser = createBrowser();
    const res = await loginWithoutPrompt(browser, `${th.base}${API}/clients/default/auth`);
    expect(res.status, await res.clone().text()).toBe(302);
    expect(browser.cookie('session', th.base)).toBeDefined();
    const sessions = (await (await browser.get(`${th.base}${API}/sessions`)).json()) as { sub: string }[];
    expect(sessions[0]?.sub).toBe('mallory');
  });

  it.each<[IdTokenMode, string]>([
    ['bad-signature', 'signed by a key that is not in the JWKS'],
    ['alg-none', 'unsigned (alg: none)'],
    ['hs256', 'HMAC-signed with the client secret (algorithm confusion)'],
    ['wrong-aud', 'issued to another client (aud)'],
    ['expired', 'expired'],
    ['wrong-nonce', 'carrying another login’s nonce'],
    ['no-nonce', 'without the nonce'],
    ['wrong-iss', 'from another issuer (iss)'],
  ])('refuses an ID token %s: 400 invalid_response, no session', async (mode) => {
    rogue.mode = mode;
    rogue.authorizationIss = rogue.issuer;
    const browser = createBrowser();
    const before = await activeSessions(th);
    const tokenRequests = rogue.tokenRequests;
    const res = await loginWithoutPrompt(browser, `${th.base}${API}/clients/default/auth`);
    expect(rogue.tokenRequests).toBe(tokenRequests + 1);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(((await res.json()) as { error: string }).error).toBe('invalid_response');
    noSession(browser, th.base);
    expect(await activeSessions(th)).toBe(before);
  });

  it('refuses an authorization response whose iss names another issuer, without calling the token endpoint', async () => {
    rogue.mode = 'valid';
    rogue.authorizationIss = 'http://127.0.0.1:9/honest-idp';
    try {
      const browser = createBrowser();
      const tokenRequests = rogue.tokenRequests;
      const res = await loginWithoutPrompt(browser, `${th.base}${API}/clients/default/auth`);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toBe('invalid_response');
      expect(rogue.tokenRequests).toBe(tokenRequests);
      noSession(browser, th.base);
    } finally {
      rogue.authorizationIss = rogue.issuer;
    }
  });
});
