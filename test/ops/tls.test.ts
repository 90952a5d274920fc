/**
 * HTTPS served directly (--tls_cert/--tls_key) with a self-signed certificate made here by openssl, and
 * --trust_proxy deciding whether X-Forwarded-Proto/-Host are believed.
 */
import { readFileSync } from 'node:fs';
import { Agent, getGlobalDispatcher, setGlobalDispatcher, type Dispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevIdp } from '../../src/demo/idp.ts';
import { startDevIdp } from '../../src/demo/idp.ts';
import { testClient, testConfig } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { API, CALLBACK_URI, startTokenHandler, type Running } from './support.ts';
import { hasOpenssl, selfSigned } from '../support/tls.ts';

const openssl = hasOpenssl;

describe.skipIf(!openssl)('HTTPS with --tls_cert/--tls_key', () => {
  let idp: DevIdp;
  let th: Running;
  let previous: Dispatcher;

  beforeAll(async () => {
    const tls = selfSigned();
    // The test's "browser" (global fetch) trusts exactly this certificate.
    previous = getGlobalDispatcher();
    setGlobalDispatcher(new Agent({ connect: { ca: readFileSync(tls.certFile) } }));
    // A web client: https redirect URIs are matched exactly (RFC 8252 port matching is for http loopback).
    idp = await startDevIdp({ loopbackAnyPort: false, redirectUris: ['https://127.0.0.1/placeholder'] });
    th = await startTokenHandler(testConfig({ tls, clients: [testClient({ issuer: idp.issuer })] }));
    // Our port is known only now.
    await idp.updateClient('token-handler', { redirect_uris: [`${th.base}${API}/clients/default/callback`] });
  });
  afterAll(async () => {
    await th?.app.close();
    await idp?.close();
    if (previous) setGlobalDispatcher(previous);
  });

  it('serves HTTPS, and the session cookie is Secure with the __Host- prefix', async () => {
    expect(th.base).toMatch(/^https:/);
    expect((await fetch(`${th.base}/healthz`)).status).toBe(200);

    const browser = createBrowser();
    const start = await browser.get(`${th.base}${API}/clients/default/auth`);
    expect(start.status).toBe(302);
    expect(new URL(start.headers.get('location')!).searchParams.get('redirect_uri')).toBe(`${th.base}${API}/clients/default/callback`);
    const loginState = browser.cookies(th.base).find((c) => c.name.startsWith('__Host-th-login-'));
    expect(loginState?.secure).toBe(true);

    const flow = await loginAtDevIdp(browser, start.headers.get('location')!, { username: 'demo', password: 'demo' });
    expect(flow.response.status).toBe(302);
    const setCookies = flow.response.headers.getSetCookie();
    const session = setCookies.find((c) => c.startsWith('__Host-session='));
    expect(session, setCookies.join('\n')).toBeDefined();
    expect(session).toMatch(/;\s*Secure/i);
    expect(session).toMatch(/;\s*HttpOnly/i);
    expect(session).toMatch(/;\s*Path=\//i);
    expect(session).not.toMatch(/;\s*Domain=/i);
    expect(setCookies.find((c) => c.startsWith('XSRF-TOKEN='))).toMatch(/;\s*Secure/i);
    expect(browser.cookie('session', th.base)).toBeUndefined();

    const sessions = (await (await browser.get(`${th.base}${API}/sessions`)).json()) as Array<{ sub: string }>;
    expect(sessions).toEqual([expect.objectContaining({ sub: 'demo' })]);
  });
});

describe('--trust_proxy and X-Forwarded-Proto / X-Forwarded-Host', () => {
  let idp: DevIdp;
  const started: Running[] = [];
  const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'app.example.com' };

  beforeAll(async () => {
    idp = await startDevIdp({ redirectUris: [CALLBACK_URI] });
  });
  afterAll(async () => {
    for (const th of started) await th.app.close();
    await idp?.close();
  });

  async function start(trustProxy: boolean): Promise<Running> {
    const th = await startTokenHandler(testConfig({ trustProxy, clients: [testClient({ issuer: idp.issuer })] }));
    started.push(th);
    return th;
  }

  it('with trust_proxy on, the forwarded scheme and host make the callback URL and Secure __Host- cookies', async () => {
    const th = await start(true);
    const res = await fetch(`${th.base}${API}/clients/default/auth`, { headers: forwarded, redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(new URL(res.headers.get('location')!).searchParams.get('redirect_uri')).toBe(`https://app.example.com${API}/clients/default/callback`);
    const loginState = res.headers.getSetCookie().find((c) => c.includes('th-login-'));
    expect(loginState).toMatch(/^__Host-th-login-/);
    expect(loginState).toMatch(/;\s*Secure/i);
  });

  it('with trust_proxy off, the forwarded headers are ignored', async () => {
    const th = await start(false);
    const res = await fetch(`${th.base}${API}/clients/default/auth`, { headers: forwarded, redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(new URL(res.headers.get('location')!).searchParams.get('redirect_uri')).toBe(`${th.base}${API}/clients/default/callback`);
    const loginState = res.headers.getSetCookie().find((c) => c.includes('th-login-'));
    expect(loginState).toMatch(/^th-login-/);
    expect(loginState).not.toMatch(/;\s*Secure/i);
  });
});
