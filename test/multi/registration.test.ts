/**
 * Client registration (POST /clients/{id}) against a real oidc-provider with dynamic client registration
 * and an initial access token: the administrator's bearer token is checked (signature, issuer, expiry,
 * role), the client is registered, its credentials are kept encrypted in the store, and the new client
 * then logs users in, also in another instance and after a restart.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { tempDir } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { discoverDevIdp, runCodeFlow, startCallbackServer } from '../support/oidc-rp.ts';
import { API, callJson, getJson, idpClient, login, startOnOwnPort, startTokenHandler, yamlConfig, type Running } from './support.ts';

const USERS = [
  { username: 'demo', password: 'demo', name: 'Demo User', email: 'demo@example.com', roles: ['user'] },
  { username: 'admin', password: 'admin', name: 'Admin', email: 'admin@example.com', roles: ['user', 'token-handler-admin'] },
];

interface Problem {
  error: string;
  status: number;
}

describe('client registration', () => {
  let idp: DevIdp;
  let stranger: DevIdp;
  let config: Config;
  let th: Running;
  let other: Running | undefined;

  beforeAll(async () => {
    idp = await startDevIdp({
      registration: true,
      users: USERS,
      // Access tokens for the token handler's admin API, as ADSP's Keycloak issues them.
      apiResource: 'urn:ads:platform:token-handler',
      clients: [
        idpClient('token-handler', 'static', { redirect_uris: ['http://127.0.0.1/callback', `http://127.0.0.1${API}/clients/static/callback`] }),
        // The administrator's own application (ADSP's tenant admin app), not one of the token handler's clients.
        idpClient('admin-app', 'none', { redirect_uris: ['http://127.0.0.1/callback'] }),
      ],
    });
    stranger = await startDevIdp();
    // The registered URIs come from --public_url: the port is chosen before the start. SO_REUSEPORT: the
    // restart below starts the new instance at this address before the old one lets go of it.
    const started = await startOnOwnPort((port) =>
      yamlConfig(
        tempDir(),
        `clients:
  - id: self
    issuer: ${idp.issuer}
    registered: true
    scopes: [openid, profile, email, offline_access, roles]
    postLoginRedirectUrl: /app
    postLogoutRedirectUrl: /bye
    extraAuthParams: { prompt: consent }
  - id: keycloak-style
    issuer: ${idp.issuer}
    registered: true
    adminRoleClaim: resource_access["urn:ads:platform:token-handler"].roles
    adminTokenAudience: th-admin-api
  - id: static
    issuer: ${idp.issuer}
    clientId: token-handler
    clientSecret: token-handler-secret
`,
        { publicPort: port },
      ),
      { reusePort: true },
    );
    ({ config } = started);
    th = started;
  });
  afterAll(async () => {
    await other?.close();
    await th?.close();
    await idp?.close();
    await stranger?.close();
  });

  const adminToken = (claims: Record<string, unknown> = {}, opts: { expiresInSec?: number } = {}) =>
    idp.issueToken({ sub: 'admin', roles: ['token-handler-admin'], aud: 'urn:ads:platform:token-handler', ...claims }, opts);

  const register = (base: string, clientId: string, bearer: string | undefined, body: unknown = { registrationToken: idp.registrationInitialAccessToken }) =>
    callJson('POST', `${base}${API}/clients/${clientId}`, bearer, {}, body);

  it('refuses without a bearer token (401), and a client that is not registered yet cannot log in', async () => {
    const res = await register(th.base, 'self', undefined);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const auth = await createBrowser().get(`${th.base}${API}/clients/self/auth`);
    expect(auth.status).toBe(503);
    expect(((await auth.json()) as Problem).error).toBe('client_not_registered');
  });

  it('refuses a bad signature, an expired token and a foreign issuer (401)', async () => {
    const valid = await adminToken();
    const [header, payload, signature] = valid.split('.') as [string, string, string];
    const flipped = `${header}.${payload}.${signature.slice(0, 10)}${signature[10] === 'A' ? 'B' : 'A'}${signature.slice(11)}`;
    // Signed by another IdP's key while claiming this issuer.
    const forged = await stranger.issueToken({ iss: idp.issuer, sub: 'admin', roles: ['token-handler-admin'], aud: 'urn:ads:platform:token-handler' });
    const now = Math.floor(Date.now() / 1000);
    const expired = await adminToken({ iat: now - 7200, exp: now - 3600 });
    const foreign = await stranger.issueToken({ sub: 'admin', roles: ['token-handler-admin'], aud: 'urn:ads:platform:token-handler' });
    for (const token of [flipped, forged, expired, foreign, 'not-a-jwt']) {
      const res = await register(th.base, 'self', token);
      expect(res.status, token.slice(0, 20)).toBe(401);
      expect(res.body.error).toBe('invalid_token');
      expect(res.headers.get('www-authenticate')).toContain('invalid_token');
    }
  });

  it('refuses a valid token without the admin role (403)', async () => {
    const res = await register(th.base, 'self', await idp.issueToken({ sub: 'demo', roles: ['user'], aud: 'urn:ads:platform:token-handler' }));
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('insufficient_role');
  });

  it('answers 502 with the IdP error when the IdP refuses the registration (wrong initial access token)', async () => {
    const res = await register(th.base, 'self', await adminToken(), { registrationToken: 'not-the-initial-access-token' });
    expect(res.status).toBe(502);
    expect(res.body.error).toBe('invalid_token');
    expect((await createBrowser().get(`${th.base}${API}/clients/self/auth`)).status).toBe(503);
  });

  it('refuses a body without registrationToken (400) and a client with a configured secret (409)', async () => {
    expect((await register(th.base, 'self', await adminToken(), {})).status).toBe(400);
    const res = await register(th.base, 'static', await adminToken());
    expect(res.status).toBe(409);
    expect(res.body.error).toBe('not_registrable');
  });

  it('registers with a real admin access token; the new client then logs users in', async () => {
    // A second instance on the same store, started before the registration.
    other = await startTokenHandler(config);
    expect((await createBrowser().get(`${other.base}${API}/clients/self/auth`)).status).toBe(503);

    // The administrator's own access token, from a real login at the IdP.
    const callback = await startCallbackServer();
    let accessToken: string;
    try {
      const flow = await runCodeFlow(await discoverDevIdp({ issuer: idp.issuer, clientId: 'admin-app', clientSecret: 'admin-app-secret' }), createBrowser(), callback, { username: 'admin', password: 'admin' });
      accessToken = flow.tokens.access_token;
    } finally {
      await callback.close();
    }
    const res = await register(th.base, 'self', accessToken);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ registered: true, clientId: expect.any(String) });
    const newClientId = res.body.clientId as string;
    const atIdp = idp.getClient(newClientId)!;
    expect(res.text).not.toContain(atIdp.client_secret as string);
    expect(atIdp).toMatchObject({
      redirect_uris: [`${th.base}${API}/clients/self/callback`],
      post_logout_redirect_uris: [`${th.base}/bye`],
      backchannel_logout_uri: `${th.base}${API}/clients/self/backchannel-logout`,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    });

    // Encrypted at rest: neither the secret nor the client id in clear.
    const sealed = (await th.th.ctx.store.getClientRegistration('self'))!;
    expect(sealed).toMatch(/^v1\./);
    expect(sealed).not.toContain(atIdp.client_secret as string);
    expect(sealed).not.toContain(newClientId);

    const browser = createBrowser();
    const start = await browser.get(`${th.base}${API}/clients/self/auth`);
    expect(new URL(start.headers.get('location')!).searchParams.get('client_id')).toBe(newClientId);
    expect((await login(browser, th.base, 'self')).headers.get('location')).toBe('/app');
    expect((await getJson<{ clientId: string }[]>(browser, `${th.base}${API}/sessions`)).body).toEqual([expect.objectContaining({ clientId: 'self', sub: 'demo' })]);

    // The back-channel logout URL registered with the client works: the IdP's logout token ends the session.
    const session = (await th.th.ctx.sessions.resolve(browser.cookie('session-self', th.base)!.value, { clientId: 'self', tenant: null }))!;
    const sent = await idp.sendBackchannelLogout({ clientId: newClientId, sid: session.record.sid! });
    expect(sent.status).toBe(200);
    expect((await getJson(browser, `${th.base}${API}/sessions`)).body).toEqual([]);

    // The other instance reads the registration on its next use.
    const otherStart = await createBrowser().get(`${other.base}${API}/clients/self/auth`);
    expect(otherStart.status).toBe(302);
    expect(new URL(otherStart.headers.get('location')!).searchParams.get('client_id')).toBe(newClientId);
  });

  it('a new registration replaces the credentials in every instance; they survive a restart', async () => {
    const res = await register(th.base, 'self', await adminToken());
    expect(res.status).toBe(200);
    const newest = res.body.clientId as string;
    await new Promise((r) => setTimeout(r, 20));
    const otherStart = await createBrowser().get(`${other!.base}${API}/clients/self/auth`);
    expect(new URL(otherStart.headers.get('location')!).searchParams.get('client_id')).toBe(newest);

    // Restarted at the same address (the redirect URI registered at the IdP is that of the public origin):
    // the new instance binds it beside the old one (SO_REUSEPORT), which then stops, so that no other
    // process can take the port in between.
    const port = Number(new URL(th.base).port);
    const restarted = await startTokenHandler(config, { port, reusePort: true });
    await th.close();
    th = restarted;
    // Let the client side of pooled keep-alive connections see the old instance's closed.
    await new Promise((r) => setTimeout(r, 100));
    const browser = createBrowser();
    expect((await login(browser, th.base, 'self')).status).toBe(302);
    expect(th.th.ctx.registry.client('self')?.clientId).toBe(newest);
  });

  it('uses the configured claim path and audience (Keycloak client roles)', async () => {
    const realmRole = await adminToken({ aud: 'th-admin-api' });
    expect((await register(th.base, 'keycloak-style', realmRole)).status).toBe(403);
    const clientRole = { resource_access: { 'urn:ads:platform:token-handler': { roles: ['token-handler-admin'] } } };
    const wrongAudience = await idp.issueToken({ sub: 'admin', aud: 'another-api', ...clientRole });
    expect((await register(th.base, 'keycloak-style', wrongAudience)).status).toBe(401);
    const res = await register(th.base, 'keycloak-style', await idp.issueToken({ sub: 'admin', aud: 'th-admin-api', ...clientRole }));
    expect(res.status).toBe(200);
    expect(res.body.registered).toBe(true);
  });
});
