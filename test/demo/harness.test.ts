/**
 * The login helper and cookie jar against a minimal relying party shaped like the token handler:
 * a login route that 302s to the IdP, a callback that sets session cookies, and a back-channel
 * logout endpoint.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJwt, jwtVerify, createRemoteJWKSet } from 'jose';
import * as client from 'openid-client';
import { startDevIdp } from '../../src/demo/idp.ts';
import type { DevIdp } from '../../src/demo/idp.ts';
import { createBrowser } from '../support/http.ts';
import { loginAtDevIdp, logoutAtDevIdp } from '../support/login.ts';
import { discoverDevIdp } from '../support/oidc-rp.ts';

interface MiniRp {
  url: string;
  logoutTokens: string[];
  idTokens: string[];
  close(): Promise<void>;
}

async function startMiniRp(idp: DevIdp): Promise<MiniRp> {
  const logoutTokens: string[] = [];
  const idTokens: string[] = [];
  const tx = new Map<string, { verifier: string; state: string }>();
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const config = await discoverDevIdp({ issuer: idp.issuer });

  server.on('request', (req, res) => {
    void (async () => {
      const u = new URL(req.url ?? '/', url);
      if (u.pathname === '/login') {
        const verifier = client.randomPKCECodeVerifier();
        const state = client.randomState();
        const id = client.randomState();
        tx.set(id, { verifier, state });
        const auth = client.buildAuthorizationUrl(config, {
          redirect_uri: `${url}/callback`, scope: 'openid profile offline_access', prompt: 'consent', state,
          code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
        });
        res.writeHead(302, { location: auth.href, 'set-cookie': `rp_tx=${id}; Path=/callback; HttpOnly; Secure; SameSite=Lax` }).end();
      } else if (u.pathname === '/callback') {
        const id = /rp_tx=([^;]+)/.exec(req.headers.cookie ?? '')?.[1] ?? '';
        const t = tx.get(id);
        if (!t) { res.writeHead(400).end('no transaction'); return; }
        const tokens = await client.authorizationCodeGrant(config, u, { pkceCodeVerifier: t.verifier, expectedState: t.state });
        idTokens.push(tokens.id_token ?? '');
        res.writeHead(302, {
          location: '/app',
          'set-cookie': [
            '__Host-rp_session=s1; Path=/; Secure; HttpOnly; SameSite=Strict',
            'rp_tx=; Path=/callback; Max-Age=0',
          ],
        }).end();
      } else if (u.pathname === '/backchannel' && req.method === 'POST') {
        let body = '';
        for await (const c of req) body += String(c);
        logoutTokens.push(new URLSearchParams(body).get('logout_token') ?? '');
        res.writeHead(200).end();
      } else {
        res.writeHead(200, { 'content-type': 'text/plain' }).end(`page ${u.pathname}`);
      }
    })().catch((err: unknown) => res.writeHead(500).end(String(err)));
  });
  return {
    url, logoutTokens, idTokens,
    close: () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }),
  };
}

describe('login helper against a relying party', () => {
  let idp: DevIdp;
  let rp: MiniRp;

  beforeAll(async () => {
    // The RP port is unknown when the IdP starts: loopback matching accepts any port for these paths.
    idp = await startDevIdp({
      redirectUris: ['http://127.0.0.1/callback'],
      postLogoutRedirectUris: ['http://127.0.0.1/logged-out'],
    });
    rp = await startMiniRp(idp);
    // Registered URIs other than redirect URIs are port-exact: set it once the RP port is known.
    await idp.updateClient('token-handler', { backchannel_logout_uri: `${rp.url}/backchannel`, backchannel_logout_session_required: true });
  });
  afterAll(async () => {
    await rp?.close();
    await idp?.close();
  });

  it('follows RP -> IdP -> login -> consent -> RP callback and leaves the session cookie in the jar', async () => {
    const browser = createBrowser();
    const flow = await loginAtDevIdp(browser, `${rp.url}/login`, { username: 'demo', password: 'demo' });
    expect(flow.idpOrigin).toBe(idp.issuer);
    expect(flow.url.startsWith(`${rp.url}/callback?code=`)).toBe(true);
    expect(flow.response.status).toBe(302);
    expect(flow.response.headers.get('location')).toBe('/app');
    expect(browser.cookie('__Host-rp_session', rp.url)).toMatchObject({ value: 's1', secure: true, httpOnly: true, sameSite: 'Strict' });
    expect(browser.cookie('rp_tx', `${rp.url}/callback`)).toBeUndefined(); // deleted by Max-Age=0
    const hosts = flow.hops.map((h) => new URL(h.url).origin);
    expect(hosts[0]).toBe(rp.url);
    expect(hosts).toContain(idp.issuer);

    // A second login reuses the IdP session: no form, straight back to the callback.
    const logins = idp.loginCount;
    const again = await loginAtDevIdp(browser, `${rp.url}/login`);
    expect(again.url.startsWith(`${rp.url}/callback?code=`)).toBe(true);
    expect(idp.loginCount).toBe(logins);
  });

  it('sends back-channel logout tokens: automatically on end_session and on demand', async () => {
    const browser = createBrowser();
    await loginAtDevIdp(browser, `${rp.url}/login`);
    const idToken = rp.idTokens.at(-1) ?? '';
    const { sid, sub } = decodeJwt(idToken);
    expect(typeof sid).toBe('string');

    const jwks = createRemoteJWKSet(new URL(idp.jwksUrl));
    const sent = await idp.sendBackchannelLogout({ clientId: 'token-handler', sub: String(sub), sid: String(sid) });
    expect(sent.status).toBe(200);
    const manual = await jwtVerify(rp.logoutTokens.at(-1) ?? '', jwks, { issuer: idp.issuer, audience: 'token-handler', typ: 'logout+jwt' });
    expect(manual.payload).toMatchObject({ sub, sid });

    const count = rp.logoutTokens.length;
    const endSession = client.buildEndSessionUrl(await discoverDevIdp({ issuer: idp.issuer }), {
      id_token_hint: idToken, post_logout_redirect_uri: `${rp.url}/logged-out`,
    });
    const out = await logoutAtDevIdp(browser, endSession, { idpOrigin: idp.issuer });
    expect(out.url).toBe(`${rp.url}/logged-out`);
    expect(rp.logoutTokens.length).toBe(count + 1);
    const auto = await jwtVerify(rp.logoutTokens.at(-1) ?? '', jwks, { issuer: idp.issuer, audience: 'token-handler' });
    expect(auto.payload).toMatchObject({ sub, sid, events: { 'http://schemas.openid.net/event/backchannel-logout': {} } });
  });
});
