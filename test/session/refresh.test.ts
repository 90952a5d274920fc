import { randomBytes } from 'node:crypto';
import pg from 'pg';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type TokenHandlerApp } from '../../src/app.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { RefreshUnavailableError, SessionEndedError } from '../../src/session/errors.ts';
import { createPostgresStore } from '../../src/store/postgres.ts';
import type { SessionStore } from '../../src/store/types.ts';
import { testClient, testConfig } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { PG_URL, probePostgres, requireService } from '../support/services.ts';
import { expireAccessToken } from '../support/sessions.ts';
import { eventually } from '../support/reload.ts';

const API = '/token-handler/v1';


async function start(th: TokenHandlerApp): Promise<string> {
  await th.app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(th.app.server.address() as { port: number }).port}`;
}

/** Logs in through `base` and returns the session cookie value. */
async function login(base: string): Promise<string> {
  const browser = createBrowser();
  await loginAtDevIdp(browser, `${base}${API}/clients/default/auth`, { username: 'demo', password: 'demo' });
  return browser.cookie('session', base)!.value;
}


async function tokenVia(th: TokenHandlerApp, cookie: string): Promise<string> {
  const session = await th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null });
  if (!session) throw new Error('no session');
  return th.ctx.sessions.accessToken(session);
}

describe('token refresh', () => {
  let idp: DevIdp;
  let th: TokenHandlerApp;
  let base: string;

  beforeAll(async () => {
    idp = await startDevIdp({ redirectUris: ['http://127.0.0.1/token-handler/v1/clients/default/callback'], rotateRefreshToken: true });
    th = await buildApp(testConfig({ clients: [testClient({ issuer: idp.issuer })] }), { sweeper: false });
    base = await start(th);
  });
  afterAll(async () => {
    await th?.app.close();
    await idp?.close();
  });

  it('50 concurrent requests with an expired token cause exactly one refresh (SQLite, one instance)', async () => {
    const cookie = await login(base);
    const before = await tokenVia(th, cookie);
    await expireAccessToken(th, cookie);
    idp.resetCounters();
    const tokens = await Promise.all(Array.from({ length: 50 }, () => tokenVia(th, cookie)));
    expect(idp.refreshGrantCount).toBe(1);
    expect(idp.refreshReuseCount).toBe(0);
    expect(new Set(tokens).size).toBe(1);
    expect(tokens[0]).not.toBe(before);
    // The refreshed token is stored: the next request does not refresh again.
    expect(await tokenVia(th, cookie)).toBe(tokens[0]);
    expect(idp.refreshGrantCount).toBe(1);
  });

  it('keeps the session on a transient IdP failure (503) and refreshes once it is back', async () => {
    const cookie = await login(base);
    await expireAccessToken(th, cookie);
    await idp.setDown(true, '503');
    try {
      await expect(tokenVia(th, cookie)).rejects.toBeInstanceOf(RefreshUnavailableError);
    } finally {
      await idp.setDown(false);
    }
    expect(await th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null })).toBeDefined();
    idp.resetCounters();
    await expect(tokenVia(th, cookie)).resolves.toMatch(/^eyJ/);
    expect(idp.refreshGrantCount).toBe(1);
  });

  it('a logout while the refresh is at the IdP wins: the new tokens are neither stored nor served', async () => {
    const cookie = await login(base);
    const session = (await th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null }))!;
    await expireAccessToken(th, cookie);
    idp.resetCounters();
    idp.setRefreshResponseDelay(500);
    try {
      const pending = tokenVia(th, cookie);
      await expect.poll(() => idp.refreshGrantCount).toBe(1);
      await th.ctx.sessions.destroy(session.idHash);
      await expect(pending).rejects.toBeInstanceOf(SessionEndedError);
    } finally {
      idp.setRefreshResponseDelay(0);
    }
    expect(await th.ctx.store.get(session.idHash)).toBeUndefined();
  });

  it('ends the session when the IdP refuses the refresh token (invalid_grant)', async () => {
    const cookie = await login(base);
    const session = (await th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null }))!;
    // Someone else uses the refresh token first: with rotation on, ours is then consumed.
    const configuration = await th.ctx.registry.configuration('default');
    await oidc.refreshTokenGrant(configuration, session.payload.refreshToken!);
    await expireAccessToken(th, cookie);
    await expect(tokenVia(th, cookie)).rejects.toBeInstanceOf(SessionEndedError);
    expect(await th.ctx.store.get(session.idHash)).toBeUndefined();
    expect(await th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null })).toBeUndefined();
  });
});

describe('token refresh across two instances on one PostgreSQL store', async () => {
  const available = requireService('postgresql', await probePostgres());
  const schema = `th_refresh_${randomBytes(5).toString('hex')}`;
  let idp: DevIdp;
  let a: TokenHandlerApp;
  let b: TokenHandlerApp;
  let baseA: string;

  beforeAll(async () => {
    if (!available) return;
    idp = await startDevIdp({ redirectUris: ['http://127.0.0.1/token-handler/v1/clients/default/callback'], rotateRefreshToken: true });
    const base = testConfig({ clients: [testClient({ issuer: idp.issuer })], db: { type: 'postgresql', path: '', url: PG_URL } });
    // Cached sessions live a minute: what one instance learns of another's changes, it learns by LISTEN/NOTIFY.
    const config = { ...base, session: { ...base.session, cacheTtlMs: 60_000 } };
    const open = (): SessionStore => createPostgresStore({ connectionString: PG_URL, schema, poolSize: 8, onError: () => undefined });
    a = await buildApp(config, { store: open(), sweeper: false });
    b = await buildApp(config, { store: open(), sweeper: false });
    baseA = await start(a);
    await start(b);
  });
  afterAll(async () => {
    if (!available) return;
    await a?.app.close();
    await b?.app.close();
    await idp?.close();
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`drop schema if exists "${schema}" cascade`);
    await admin.end();
  });

  it.skipIf(!available)('50 concurrent requests split over both instances cause exactly one refresh', async () => {
    const cookie = await login(baseA);
    // The session made on A works on B.
    const onB = await tokenVia(b, cookie);
    expect(onB).toMatch(/^eyJ/);
    await expireAccessToken(a, cookie, [b]);
    idp.resetCounters();
    const tokens = await Promise.all(Array.from({ length: 50 }, (_, i) => tokenVia(i % 2 === 0 ? a : b, cookie)));
    expect(idp.refreshGrantCount).toBe(1);
    expect(idp.refreshReuseCount).toBe(0);
    expect(new Set(tokens).size).toBe(1);
    expect(tokens[0]).not.toBe(onB);
  });

  it.skipIf(!available)('a logout on one instance is seen by the other', async () => {
    const cookie = await login(baseA);
    const onB = await b.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null });
    expect(onB).toBeDefined();
    await a.ctx.sessions.destroy(onB!.idHash);
    // Invalidation travels through LISTEN/NOTIFY, well within B's minute of caching.
    await eventually(async () => (await b.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null })) === undefined, 'B to drop the session', 20_000);
  });
});
