/**
 * Issue 19: what an ADSP deployment relies on, against real oidc-providers with dynamic registration
 * (one per tenant, with Keycloak's token shapes) and a running token-handler:
 *   19.2 registration without the tenant header takes the tenant from the admin token's issuer;
 *   19.3 the session entry carries ADSP's fields, with roles as ADSP computes them;
 *   19.4 GET /clients/{id} for an admin, re-registration deletes the replaced registration at the IdP,
 *        an admin bearer token on GET /sessions lists the tenant's sessions, and a second instance
 *        reading a registration while it is announced does not answer "not registered";
 *   19.5 a user who cancels at the IdP goes back to the app's failure URL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDevIdp, type DevIdp, type DevUser } from '../../src/demo/idp.ts';
import { createStore } from '../../src/store/index.ts';
import type { SessionStore } from '../../src/store/types.ts';
import { tempDir } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { probePostgres, probeRedis, requireService } from '../support/services.ts';
import { postgresNamespace, redisNamespace, type StoreNamespace } from '../fleet/support.ts';
import { API, TENANT_A as A, TENANT_B as B, callJson, getJson, idpClient, login, startOnOwnPort, startTokenHandler, TENANT_HEADER, yamlConfig, type Running } from './support.ts';

const ADSP_AUDIENCE = 'urn:ads:platform:token-handler';
const ADMIN_ROLE = { resource_access: { [ADSP_AUDIENCE]: { roles: ['token-handler-admin'] } } };

/** An IdP with Keycloak's token shapes: roles only in the access token (realm_access, resource_access). */
function keycloakLike(prefix: string, users: DevUser[], clients: Parameters<typeof idpClient>[] = []): Promise<DevIdp> {
  return startDevIdp({
    issuerPathPrefix: prefix,
    registration: true,
    users,
    apiResource: ADSP_AUDIENCE,
    clients: clients.map((args) => idpClient(...args)),
    userClaims: (user) => ({ name: user.name, preferred_username: user.username, email: user.email }),
    accessTokenClaims: (user) => ({
      typ: 'Bearer',
      realm_access: { roles: user.roles },
      resource_access: { account: { roles: ['view-profile', 'manage-account'] }, 'urn:ads:platform:tenant-admin-app': { roles: ['reader'] } },
    }),
  });
}

/** An administrator's access token from an IdP, as Keycloak issues them (payload typ Bearer, the client role). */
function adminToken(idp: DevIdp, extra: Record<string, unknown> = {}): Promise<string> {
  return idp.issueToken({ sub: 'admin', typ: 'Bearer', azp: 'urn:ads:platform:tenant-admin-app', aud: ADSP_AUDIENCE, ...ADMIN_ROLE, ...extra });
}

describe('ADSP compatibility (issue 19)', () => {
  let idpA: DevIdp;
  let idpB: DevIdp;
  let th: Running;

  const config = (dir: string, port: number): Config =>
    yamlConfig(
      dir,
      `clients:
  - id: portal
    scopes: [openid, profile, email]
    postLoginRedirectUrl: /portal
    tenants:
      "${A}":
        issuer: ${idpA.issuer}
        registered: true
      "${B}":
        issuer: ${idpB.issuer}
        registered: true
  - id: plain
    issuer: ${idpA.issuer}
    clientId: plain
    clientSecret: plain-secret
    scopes: [openid, profile, email]
  - id: failing
    issuer: ${idpA.issuer}
    clientId: failing
    clientSecret: failing-secret
    failureRedirectUrl: /signin-failed
`,
      { publicPort: port },
    );

  const user = (username: string, roles: string[]): DevUser => ({ username, password: username, name: `${username} user`, email: `${username}@example.com`, roles });

  beforeAll(async () => {
    idpA = await keycloakLike('/tenant-a', [user('alice', ['user', 'offline_access']), user('carol', ['user'])], [['plain', 'plain'], ['failing', 'failing']]);
    idpB = await keycloakLike('/tenant-b', [user('bob', ['user'])]);
    th = await startOnOwnPort((port) => config(tempDir(), port));
  });
  afterAll(async () => {
    await th?.close();
    await idpA?.close();
    await idpB?.close();
  });

  const clientUrl = () => `${th.base}${API}/clients/portal`;
  const register = async (idp: DevIdp, headers: Record<string, string> = {}) =>
    callJson('POST', clientUrl(), await adminToken(idp), headers, { registrationToken: idp.registrationInitialAccessToken });

  const loginTenant = (browser: Browser, username: string, client = 'portal'): Promise<Response> => login(browser, th.base, client, username);

  it('19.4 GET /clients/{id}: an admin sees the client (clientId null before registration); others are refused', async () => {
    const res = await callJson('GET', clientUrl(), await adminToken(idpA));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id: 'portal',
      authCallbackUrl: `${th.base}${API}/clients/portal/callback`,
      successRedirectUrl: '/portal',
      failureRedirectUrl: '/',
      clientId: null,
      tenant: A,
    });
    expect((await callJson('GET', clientUrl(), undefined, { [TENANT_HEADER]: A })).status).toBe(401);
    const user = await idpA.issueToken({ sub: 'alice', typ: 'Bearer', aud: ADSP_AUDIENCE, realm_access: { roles: ['user'] } });
    expect((await callJson('GET', clientUrl(), user)).status).toBe(403);
  });

  it("19.2 registration without the tenant header takes the tenant from the admin token's issuer", async () => {
    const a = await register(idpA);
    expect(a.status).toBe(200);
    expect(idpA.getClient(a.body.clientId as string)).toBeDefined();
    expect(idpB.getClient(a.body.clientId as string)).toBeUndefined();
    const b = await register(idpB);
    expect(b.status).toBe(200);
    expect(idpB.getClient(b.body.clientId as string)).toBeDefined();
    // The header, when sent, decides: tenant B's client with A's token is refused.
    expect((await register(idpA, { [TENANT_HEADER]: B })).status).toBe(401);
    // A token of an issuer that is no tenant's names no tenant.
    const stranger = await startDevIdp();
    try {
      const res = await callJson('POST', clientUrl(), await adminToken(stranger), {}, { registrationToken: 'x' });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('tenant_required');
    } finally {
      await stranger.close();
    }
    const shown = await callJson('GET', clientUrl(), await adminToken(idpB));
    expect(shown.body).toMatchObject({ clientId: b.body.clientId, tenant: B });
  });

  it('19.4 re-registering deletes the replaced registration at the IdP (RFC 7592); users log in with the new one', async () => {
    const before = (await callJson('GET', clientUrl(), await adminToken(idpA))).body.clientId as string;
    expect(idpA.getClient(before)).toBeDefined();
    const again = await register(idpA);
    expect(again.status).toBe(200);
    expect(again.body.clientId).not.toBe(before);
    expect(idpA.getClient(before)).toBeUndefined();
    expect(idpA.getClient(again.body.clientId as string)).toBeDefined();
    const browser = createBrowser({ headers: { [TENANT_HEADER]: A } });
    const res = await loginTenant(browser, 'alice');
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/portal');
  });

  it("19.3 the session entry carries ADSP's fields; roles as ADSP computes them (realm roles, client:role)", async () => {
    const browser = createBrowser({ headers: { [TENANT_HEADER]: A } });
    expect((await loginTenant(browser, 'alice')).status).toBe(302);
    const { body } = await getJson<Record<string, unknown>[]>(browser, `${th.base}${API}/sessions`);
    expect(body).toHaveLength(1);
    const [session] = body as [Record<string, unknown>];
    expect(session).toMatchObject({
      tenantId: A,
      id: 'alice',
      name: 'alice user',
      email: 'alice@example.com',
      roles: ['user', 'offline_access', 'account:view-profile', 'account:manage-account', 'urn:ads:platform:tenant-admin-app:reader'],
      authenticatedBy: 'portal',
      // Ours beside them.
      clientId: 'portal',
      tenant: A,
      sub: 'alice',
    });
    expect(session.expiry).toBe(session.expiresIn === 0 ? session.expiry : new Date(Math.min(Date.parse(session.expiresAt as string), Date.parse(session.idleExpiresAt as string))).toISOString());
    expect(Date.parse(session.expiry as string)).toBeGreaterThan(Date.now());

    // A client that is not tenant-scoped: tenantId null.
    const plain = createBrowser();
    expect((await loginTenant(plain, 'carol', 'plain')).status).toBe(302);
    const [entry] = (await getJson<Record<string, unknown>[]>(plain, `${th.base}${API}/sessions`)).body;
    expect(entry).toMatchObject({ tenantId: null, id: 'carol', authenticatedBy: 'plain', roles: ['user', 'account:view-profile', 'account:manage-account', 'urn:ads:platform:tenant-admin-app:reader'] });
  });

  it("19.4 an admin bearer token on GET /sessions lists the tenant's sessions (and no other tenant's), never a token", async () => {
    const carol = createBrowser({ headers: { [TENANT_HEADER]: A } });
    expect((await loginTenant(carol, 'carol')).status).toBe(302);
    const bob = createBrowser({ headers: { [TENANT_HEADER]: B } });
    expect((await loginTenant(bob, 'bob')).status).toBe(302);

    const res = await fetch(`${th.base}${API}/sessions`, { headers: { authorization: `Bearer ${await adminToken(idpA)}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const text = await res.text();
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
    const listed = JSON.parse(text) as Record<string, unknown>[];
    // alice's sessions (two logins above) and carol's, all of tenant A at A's issuer; not bob's, not the plain client's (no tenant).
    expect(listed.map((s) => s.id).sort()).toEqual(['alice', 'alice', 'carol']);
    expect(listed.every((s) => s.tenantId === A && s.authenticatedBy === 'portal')).toBe(true);
    expect(listed.find((s) => s.id === 'carol')).toMatchObject({ name: 'carol user', email: 'carol@example.com', roles: expect.arrayContaining(['user']), expiry: expect.any(String) });

    const ofB = await callJson('GET', `${th.base}${API}/sessions`, await adminToken(idpB));
    expect(ofB.status).toBe(200);
    expect((ofB.body as unknown as { id: string }[]).map((s) => s.id)).toEqual(['bob']);

    // Not an admin: 403; a token of A for tenant B: 401; a browser without a token still gets its own sessions.
    const notAdmin = await idpA.issueToken({ sub: 'carol', typ: 'Bearer', aud: ADSP_AUDIENCE, realm_access: { roles: ['user'] } });
    expect((await callJson('GET', `${th.base}${API}/sessions`, notAdmin)).status).toBe(403);
    expect((await callJson('GET', `${th.base}${API}/sessions`, await adminToken(idpA), { [TENANT_HEADER]: B })).status).toBe(401);
    expect((await getJson<{ id: string }[]>(carol, `${th.base}${API}/sessions`)).body.map((s) => s.id)).toEqual(['carol']);
    // A browser's session cookie wins over an Authorization header it sends: its own sessions, never the tenant's.
    const withBoth = await getJson<{ id: string; handle?: string }[]>(carol, `${th.base}${API}/sessions`, { authorization: `Bearer ${await adminToken(idpA)}` });
    expect(withBoth.body.map((s) => s.id)).toEqual(['carol']);
    expect(withBoth.body[0]!.handle).toEqual(expect.any(String));
  });

  it('19.5 a user who cancels at the IdP goes back to the failure URL (default /) with ?error=access_denied', async () => {
    for (const [client, expected] of [['plain', `${th.base}/?error=access_denied`], ['failing', `${th.base}/signin-failed?error=access_denied`]] as const) {
      const browser = createBrowser();
      const page = await browser.follow(`${th.base}${API}/clients/${client}/auth`);
      expect(page.response.status).toBe(200);
      const href = /id="abort" href="([^"]+)"/.exec(await page.response.text())?.[1];
      expect(href).toBeDefined();
      let url = new URL(href!.replaceAll('&amp;', '&'), page.url);
      let res = await browser.get(url);
      // Through the IdP's redirects, to our callback.
      while (url.origin !== th.base && res.headers.get('location')) {
        await res.body?.cancel();
        url = new URL(res.headers.get('location')!, url);
        res = await browser.get(url);
      }
      expect(url.pathname).toBe(`${API}/clients/${client}/callback`);
      expect(url.searchParams.get('error')).toBe('access_denied');
      expect(res.status).toBe(302);
      expect(res.headers.get('location')).toBe(expected);
      expect(browser.cookies(th.base).some((c) => c.name.startsWith('session'))).toBe(false);
    }
  });
});

/** The stores two instances can share: a database file, a PostgreSQL schema (NOTIFY), a Redis prefix (pub/sub). */
const STORES: { name: string; unavailable: string | undefined; namespace?: () => StoreNamespace }[] = [
  { name: 'SQLite', unavailable: undefined },
  { name: 'PostgreSQL', unavailable: await probePostgres(), namespace: postgresNamespace },
  { name: 'Redis', unavailable: await probeRedis(), namespace: redisNamespace },
];

describe.each(STORES.filter((s) => requireService(s.name, s.unavailable)))('19.4 a registration announced while a second instance reads it ($name)', ({ namespace }) => {
  let idp: DevIdp;
  let first: Running;
  let second: Running;
  let backend: SessionStore;
  let config: Config;
  let ns: StoreNamespace | undefined;

  beforeAll(async () => {
    idp = await startDevIdp({ registration: true, apiResource: ADSP_AUDIENCE });
    const dir = tempDir();
    ns = namespace?.();
    const started = await startOnOwnPort((port) =>
      yamlConfig(
        dir,
        `clients:
  - id: race
    issuer: ${idp.issuer}
    registered: true
`,
        { publicPort: port, argv: ns?.flags() ?? [] },
      ),
    );
    ({ config } = started);
    first = started;
    // The second instance on the same store, whose reads the test can hold.
    backend = await createStore(config.db);
    second = await startTokenHandler(config, { store: backend });
  });
  afterAll(async () => {
    await second?.close();
    await first?.close();
    await idp?.close();
    await ns?.drop();
  });

  it('the second instance answers with the new registration, not 503 client_not_registered', async () => {
    const read = backend.getClientRegistration.bind(backend);
    let reading!: () => void;
    const readStarted = new Promise<void>((resolve) => (reading = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let armed = true;
    backend.getClientRegistration = async (key) => {
      if (armed) {
        armed = false;
        reading();
        await released;
      }
      return read(key);
    };
    let announced!: () => void;
    const announcement = new Promise<void>((resolve) => (announced = resolve));
    backend.onInvalidation((messages) => {
      if (messages.some((m) => m.endsWith('race'))) announced();
    });

    // The second instance starts reading the (not yet made) registration for a login...
    const login = createBrowser().get(`${second.base}${API}/clients/race/auth`);
    await readStarted;
    // ...the first instance registers the client, and its announcement reaches the second instance...
    const token = await idp.issueToken({ sub: 'admin', aud: ADSP_AUDIENCE, roles: ['token-handler-admin'] }, { typ: 'at+jwt' });
    const registered = await callJson('POST', `${first.base}${API}/clients/race`, token, {}, { registrationToken: idp.registrationInitialAccessToken });
    expect(registered.status).toBe(200);
    await announcement;
    // ...while its read is still under way: it then reads the new credentials.
    release();
    const res = await login;
    expect(res.status).toBe(302);
    expect(new URL(res.headers.get('location')!).searchParams.get('client_id')).toBe(registered.body.clientId);
  });

  it('18.2 on the other instance too: a token issued to a registration it has not used yet is not an admin credential', async () => {
    let announced!: () => void;
    const announcement = new Promise<void>((resolve) => (announced = resolve));
    backend.onInvalidation((messages) => {
      if (messages.some((m) => m.endsWith('race'))) announced();
    });
    const admin = await idp.issueToken({ sub: 'admin', aud: ADSP_AUDIENCE, roles: ['token-handler-admin'] }, { typ: 'at+jwt' });
    const registered = await callJson('POST', `${first.base}${API}/clients/race`, admin, {}, { registrationToken: idp.registrationInitialAccessToken });
    expect(registered.status).toBe(200);
    await announcement;
    // The second instance dropped the old credentials and has not read the new ones: still, the new
    // registration's client id is one of ours.
    const issuedToIt = await idp.issueToken({ sub: 'admin', aud: [ADSP_AUDIENCE, registered.body.clientId as string], roles: ['token-handler-admin'] }, { typ: 'at+jwt' });
    const res = await callJson('GET', `${second.base}${API}/clients/race`, issuedToIt);
    expect(res.status).toBe(401);
    expect((await callJson('GET', `${second.base}${API}/clients/race`, admin)).body.clientId).toBe(registered.body.clientId);
  });

  it("an admin of an issuer whose clients have no tenant lists the sessions without a tenant, from any instance", async () => {
    const browser = createBrowser();
    expect((await login(browser, first.base, 'race')).status).toBe(302);
    const token = await idp.issueToken({ sub: 'admin', aud: ADSP_AUDIENCE, roles: ['token-handler-admin'] }, { typ: 'at+jwt' });
    const listed = await callJson('GET', `${second.base}${API}/sessions`, token);
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual([expect.objectContaining({ tenantId: null, id: 'demo', authenticatedBy: 'race', clientId: 'race' })]);
  });
});
