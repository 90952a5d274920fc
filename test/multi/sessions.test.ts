/**
 * A user's own session management: GET /sessions?all=true lists every session of the user (never a
 * token, never a session id), DELETE /sessions/{handle} revokes one of them (404 for anyone else's),
 * DELETE /sessions logs out everywhere, revoking the refresh tokens at the IdP. Both need the CSRF token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import type { SessionListEntry } from '../../src/routes/sessionAdmin.ts';
import { testClient, testConfig } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { API, csrfHeaders, getJson, idpClient, login, startTokenHandler, type Running } from './support.ts';

type Entry = SessionListEntry;

const USERS = [
  { username: 'demo', password: 'demo', name: 'Demo User', email: 'demo@example.com', roles: ['user'] },
  { username: 'other', password: 'other', name: 'Other User', email: 'other@example.com', roles: ['user'] },
];

describe('session listing and revocation', () => {
  let idp: DevIdp;
  let th: Running;

  beforeAll(async () => {
    idp = await startDevIdp({ users: USERS, clients: [idpClient('token-handler', 'default'), idpClient('second-app', 'second')] });
    th = await startTokenHandler(
      testConfig({
        clients: [testClient({ issuer: idp.issuer }), testClient({ id: 'second', issuer: idp.issuer, clientId: 'second-app', clientSecret: 'second-app-secret' })],
      }),
    );
  });
  afterAll(async () => {
    await th?.close();
    await idp?.close();
  });

  async function device(userAgent: string, username = 'demo', client = 'default'): Promise<Browser> {
    const browser = createBrowser({ headers: { 'user-agent': userAgent } });
    expect((await login(browser, th.base, client, username)).status).toBe(302);
    return browser;
  }
  const list = async (browser: Browser) => (await getJson<Entry[]>(browser, `${th.base}${API}/sessions?all=true`)).body;
  const refreshTokenOf = async (browser: Browser, client = 'default') => {
    const name = client === 'default' ? 'session' : `session-${client}`;
    return (await th.th.ctx.sessions.resolve(browser.cookie(name, th.base)!.value, { clientId: client, tenant: null }))!.payload.refreshToken!;
  };
  const revoke = (browser: Browser, handle: string, headers = csrfHeaders(browser, th.base)) =>
    browser.request(`${th.base}${API}/sessions/${handle}`, { method: 'DELETE', headers });

  it("lists the user's sessions on every device and client: no tokens, no session ids, the current one marked", async () => {
    const laptop = await device('Laptop/1.0');
    const phone = await device('Phone/2.0');
    await login(phone, th.base, 'second');
    const stranger = await device('Stranger/9.9', 'other');

    const res = await laptop.get(`${th.base}${API}/sessions?all=true`);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const text = await res.text();
    const entries = (JSON.parse(text) as Entry[]).filter((e) => ['Laptop/1.0', 'Phone/2.0'].includes(e.userAgent ?? ''));
    expect(entries.map((e) => [e.userAgent, e.clientId, e.current]).sort()).toEqual([
      ['Laptop/1.0', 'default', true],
      ['Phone/2.0', 'default', false],
      ['Phone/2.0', 'second', false],
    ]);
    for (const entry of entries) {
      expect(entry.handle).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(entry.issuer).toBe(idp.issuer);
      expect(Date.parse(entry.lastUsedAt)).toBeGreaterThanOrEqual(Date.parse(entry.createdAt));
    }
    // Nobody else's session, no token, nothing a cookie could be made of.
    expect(text).not.toContain('Stranger/9.9');
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
    expect(text).not.toMatch(/token/i);
    const laptopCookie = laptop.cookie('session', th.base)!.value;
    const laptopHash = (await th.th.ctx.sessions.resolve(laptopCookie, { clientId: 'default', tenant: null }))!.idHash;
    expect(text).not.toContain(laptopCookie);
    expect(text).not.toContain(laptopHash.slice(0, 16));
    // The plain /sessions view carries the same handle.
    const [view] = (await getJson<{ handle: string }[]>(laptop, `${th.base}${API}/sessions`)).body;
    expect(entries.find((e) => e.current)!.handle).toBe(view!.handle);
    expect((await list(stranger)).map((e) => e.userAgent)).toEqual(['Stranger/9.9']);
  });

  it("revokes one of the user's own sessions (CSRF-protected), revoking its refresh token at the IdP", async () => {
    const laptop = await device('Laptop/1.1');
    const phone = await device('Phone/2.1');
    const phoneRefresh = await refreshTokenOf(phone);
    expect(idp.refreshTokenState(phoneRefresh)).toBe('active');
    const phoneHandle = (await list(laptop)).find((e) => e.userAgent === 'Phone/2.1')!.handle;

    const noToken = await revoke(laptop, phoneHandle, { origin: th.base });
    expect(noToken.status).toBe(403);
    const foreignOrigin = await revoke(laptop, phoneHandle, { ...csrfHeaders(laptop, th.base), origin: 'https://evil.example' });
    expect(foreignOrigin.status).toBe(403);
    expect(await list(phone)).not.toEqual([]);

    const res = await revoke(laptop, phoneHandle);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ revoked: 1 });
    expect(await list(phone)).toEqual([]);
    expect(idp.refreshTokenState(phoneRefresh)).toBe('absent');
    expect((await list(laptop)).some((e) => e.userAgent === 'Laptop/1.1' && e.current)).toBe(true);
    // Gone is gone: the same handle again is 404.
    expect((await revoke(laptop, phoneHandle)).status).toBe(404);
  });

  it("answers 404 for another user's session, an unknown handle or garbage; 401 without a session", async () => {
    const mine = await device('Mine/1.0');
    const theirs = await device('Theirs/1.0', 'other');
    const theirHandle = (await list(theirs)).find((e) => e.current)!.handle;
    for (const handle of [theirHandle, 'A'.repeat(32), 'nope']) {
      const res = await revoke(mine, handle);
      expect(res.status, handle).toBe(404);
    }
    expect((await list(theirs)).filter((e) => e.userAgent === 'Theirs/1.0')).toHaveLength(1);
    const anonymous = createBrowser();
    await getJson(mine, `${th.base}${API}/sessions`);
    anonymous.jar.setCookie(`XSRF-TOKEN=${mine.cookie('XSRF-TOKEN', th.base)!.value}; Path=/`, th.base);
    expect((await revoke(anonymous, theirHandle, csrfHeaders(anonymous, th.base))).status).toBe(401);
  });

  it('revokes the current session with its handle: its cookie is cleared', async () => {
    const laptop = await device('Laptop/1.2');
    const own = (await list(laptop)).find((e) => e.current)!;
    expect((await revoke(laptop, own.handle)).status).toBe(200);
    expect(laptop.cookie('session', th.base)).toBeUndefined();
    expect((await getJson(laptop, `${th.base}${API}/sessions`)).body).toEqual([]);
  });

  it("logs out everywhere: every session of the user (all clients), refresh tokens revoked; others' sessions stay", async () => {
    const laptop = await device('Laptop/1.3');
    const phone = await device('Phone/2.3');
    await login(phone, th.base, 'second');
    const theirs = await device('Theirs/1.3', 'other');
    const refreshTokens = [await refreshTokenOf(laptop), await refreshTokenOf(phone), await refreshTokenOf(phone, 'second')];
    const before = (await list(laptop)).length;
    expect(before).toBeGreaterThanOrEqual(3);

    const denied = await laptop.request(`${th.base}${API}/sessions`, { method: 'DELETE', headers: { origin: th.base } });
    expect(denied.status).toBe(403);
    expect((await list(laptop)).length).toBe(before);

    const res = await laptop.request(`${th.base}${API}/sessions`, { method: 'DELETE', headers: csrfHeaders(laptop, th.base) });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ revoked: before });
    expect(laptop.cookie('session', th.base)).toBeUndefined();
    expect(await list(laptop)).toEqual([]);
    expect(await list(phone)).toEqual([]);
    expect((await getJson(phone, `${th.base}${API}/sessions`)).body).toEqual([]);
    for (const token of refreshTokens) expect(idp.refreshTokenState(token)).toBe('absent');
    expect((await list(theirs)).filter((e) => e.userAgent === 'Theirs/1.3' && e.current)).toHaveLength(1);
  });
});
