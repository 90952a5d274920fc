/**
 * Issue 18 finding 2, against a running token-handler and a real oidc-provider with dynamic registration:
 * only an access token meant for the token handler is an administrator's credential for
 * POST /clients/{id}, and the URIs a registration gives the IdP come from configuration, never from the
 * request's Host.
 */
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { tempDir } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { API, idpClient, login, startOnOwnPort, startTokenHandler, yamlConfig, type Running } from './support.ts';

const ADSP_AUDIENCE = 'urn:ads:platform:token-handler';
const USERS = [
  { username: 'admin', password: 'admin', name: 'Admin', email: 'admin@example.com', roles: ['user', 'token-handler-admin'] },
];

/** POST /clients/{id} with a Host header of the caller's choosing (fetch would not send it). */
function register(base: string, clientId: string, bearer: string, body: unknown, host?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = new URL(`${base}${API}/clients/${clientId}`);
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          authorization: `Bearer ${bearer}`,
          ...(host !== undefined && { host }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, body: (text === '' ? {} : JSON.parse(text)) as Record<string, unknown> });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('issue 18.2: the admin credential of client registration', () => {
  let idp: DevIdp;
  let th: Running;
  let fixed: Running;
  let publicPort: number;
  let idToken: string;

  function config(dir: string, publicPort?: number): Config {
    return yamlConfig(
      dir,
      `clients:
  - id: self
    issuer: ${idp.issuer}
    registered: true
  - id: with-callback
    issuer: ${idp.issuer}
    registered: true
    authCallbackUrl: https://app.example/token-handler/v1/clients/with-callback/callback
    postLogoutRedirectUrl: /bye
  - id: static
    issuer: ${idp.issuer}
    clientId: token-handler
    clientSecret: token-handler-secret
    scopes: [openid, profile, email, roles]
  - id: same-audience
    issuer: ${idp.issuer}
    registered: true
    adminTokenAudience: token-handler
`,
      { publicPort },
    );
  }

  beforeAll(async () => {
    idp = await startDevIdp({
      registration: true,
      users: USERS,
      apiResource: ADSP_AUDIENCE,
      clients: [idpClient('token-handler', 'static')],
    });
    th = await startTokenHandler(config(tempDir()));
    fixed = await startOnOwnPort((port) => config(tempDir(), port));
    publicPort = Number(new URL(fixed.base).port);

    // The administrator logs in to one of our clients; the logout redirect carries the ID token through
    // the browser (id_token_hint), where any script or extension of the page can read it.
    const browser = createBrowser();
    expect((await login(browser, th.base, 'static', 'admin')).status).toBe(302);
    const logout = await browser.get(`${th.base}${API}/clients/static/logout`, {
      headers: { 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' },
    });
    const location = new URL(logout.headers.get('location')!);
    idToken = location.searchParams.get('id_token_hint')!;
    expect(idToken).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  });
  afterAll(async () => {
    await fixed?.close();
    await th?.close();
    await idp?.close();
  });

  const registrationToken = () => ({ registrationToken: idp.registrationInitialAccessToken });
  const evilClients = () => idp.listClients().filter((c) => JSON.stringify(c).includes('evil.example'));
  const admin = { sub: 'admin', roles: ['token-handler-admin'] };

  it('refuses the ID token from the browser (id_token_hint), also with a forged Host: nothing is registered', async () => {
    const res = await register(th.base, 'self', idToken, registrationToken(), 'evil.example');
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_token');
    expect(evilClients()).toEqual([]);
  });

  it('refuses an admin access token for another API, and one without an audience (the audience is required by default)', async () => {
    for (const claims of [{ aud: 'https://other-api.example' }, {}]) {
      const res = await register(th.base, 'self', await idp.issueToken({ ...admin, ...claims }, { typ: 'at+jwt' }), registrationToken());
      expect(res.status, JSON.stringify(claims)).toBe(401);
      expect(res.body.error).toBe('invalid_token');
    }
  });

  it('refuses a token whose aud, azp or client_id is one of our OIDC clients, even when the audience matches', async () => {
    for (const claims of [{ aud: [ADSP_AUDIENCE, 'token-handler'] }, { aud: ADSP_AUDIENCE, azp: 'token-handler' }, { aud: ADSP_AUDIENCE, client_id: 'token-handler' }]) {
      const res = await register(th.base, 'self', await idp.issueToken({ ...admin, ...claims }, { typ: 'at+jwt' }), registrationToken());
      expect(res.status, JSON.stringify(claims)).toBe(401);
    }
    // A client whose admin audience is our client id: that client's ID tokens are still no credential.
    const res = await register(th.base, 'same-audience', idToken, registrationToken());
    expect(res.status).toBe(401);
  });

  it('refuses a token that is an ID token by its shape (nonce, at_hash, Keycloak typ "ID") or is typed as something else', async () => {
    const cases: [Record<string, unknown>, string | undefined][] = [
      [{ nonce: 'n' }, undefined],
      [{ at_hash: 'x' }, undefined],
      [{ typ: 'ID' }, 'JWT'],
      [{}, 'id_token+jwt'],
      [{}, 'dpop+jwt'],
    ];
    for (const [claims, typ] of cases) {
      const token = await idp.issueToken({ ...admin, aud: ADSP_AUDIENCE, ...claims }, typ === undefined ? {} : { typ });
      const res = await register(th.base, 'self', token, registrationToken());
      expect(res.status, `${JSON.stringify(claims)} ${typ}`).toBe(401);
    }
  });

  it('a forged Host never becomes a registered URI: without public_url or a callback URL the registration is refused', async () => {
    const token = await idp.issueToken({ ...admin, aud: ADSP_AUDIENCE }, { typ: 'at+jwt' });
    const res = await register(th.base, 'self', token, registrationToken(), 'evil.example');
    expect(res.status).toBe(409);
    expect(res.body.error).toBe('public_url_required');
    expect(evilClients()).toEqual([]);
  });

  it('a forged Host never becomes a registered URI: they come from the callback URL, or from public_url', async () => {
    const token = await idp.issueToken({ ...admin, aud: ADSP_AUDIENCE }, { typ: 'at+jwt' });
    const withCallback = await register(th.base, 'with-callback', token, registrationToken(), 'evil.example');
    expect(withCallback.status).toBe(200);
    expect(idp.getClient(withCallback.body.clientId as string)).toMatchObject({
      redirect_uris: ['https://app.example/token-handler/v1/clients/with-callback/callback'],
      post_logout_redirect_uris: ['https://app.example/bye'],
      backchannel_logout_uri: `https://app.example${API}/clients/with-callback/backchannel-logout`,
    });

    const res = await register(fixed.base, 'self', token, registrationToken(), 'evil.example');
    expect(res.status).toBe(200);
    expect(idp.getClient(res.body.clientId as string)).toMatchObject({
      redirect_uris: [`http://127.0.0.1:${publicPort}${API}/clients/self/callback`],
      backchannel_logout_uri: `http://127.0.0.1:${publicPort}${API}/clients/self/backchannel-logout`,
    });
    expect(evilClients()).toEqual([]);
  });

  it('answers 503 when the registrations of the fleet cannot be read: a token of a client it cannot see is not taken as an admin credential', async () => {
    const dir = tempDir();
    const lone = await startTokenHandler(config(dir));
    try {
      const token = await idp.issueToken({ ...admin, aud: ADSP_AUDIENCE, client_id: 'tenant-admin-app' }, { typ: 'at+jwt' });
      const before = idp.listClients().length;
      // The store cannot read its registrations (as when PostgreSQL or Redis is unreachable).
      const db = new Database(join(dir, 'sessions.db'));
      db.exec('ALTER TABLE token_handler_client_registrations RENAME TO held_away');
      const refused = await register(lone.base, 'with-callback', token, registrationToken());
      expect(refused.status).toBe(503);
      expect(refused.body.error).toBe('store_unavailable');
      expect(idp.listClients()).toHaveLength(before);
      db.exec('ALTER TABLE held_away RENAME TO token_handler_client_registrations');
      db.close();
      expect((await register(lone.base, 'with-callback', token, registrationToken())).status).toBe(200);
    } finally {
      await lone.close();
    }
  });

  it("accepts the administrator's real access token (RFC 9068 at+jwt, aud urn:ads:platform:token-handler) (control)", async () => {
    const token = await idp.issueToken({ ...admin, aud: ADSP_AUDIENCE, client_id: 'tenant-admin-app' }, { typ: 'at+jwt' });
    const res = await register(fixed.base, 'self', token, registrationToken());
    expect(res.status).toBe(200);
  });
});
