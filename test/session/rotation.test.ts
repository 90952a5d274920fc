/**
 * Secret rotation inside running instances (issue 18.9): two token-handler apps on one PostgreSQL store,
 * restarted one at a time with new secrets while users keep calling the API and tokens keep being
 * refreshed. Nobody may be logged out, and the old secrets must become unnecessary: the cookies are
 * re-sealed and the stored tokens re-encrypted by the running apps (so breaking either fails this test).
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type TokenHandlerApp } from '../../src/app.ts';
import type { Config } from '../../src/config/types.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream, type EchoResponse } from '../../src/demo/upstream.ts';
import { createPostgresStore } from '../../src/store/postgres.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { PG_URL, probePostgres, requireService } from '../support/services.ts';
import { expireAccessToken } from '../support/sessions.ts';

const API = '/token-handler/v1';

interface Secrets {
  auth: Buffer;
  enc: Buffer;
  db: Buffer;
}
const secrets = (): Secrets => ({ auth: randomBytes(32), enc: randomBytes(32), db: randomBytes(32) });

interface Running {
  th: TokenHandlerApp;
  base: string;
}

describe('secret rotation on a running fleet (PostgreSQL)', async () => {
  const available = requireService('postgresql', await probePostgres());
  const schema = `th_rotation_${randomBytes(5).toString('hex')}`;
  let idp: DevIdp;
  let upstream: DemoUpstream;
  const running = new Set<Running>();

  /** An instance with `current` secrets first, then `old` ones (accepted, never used to seal or encrypt). */
  async function start(current: Secrets, old: Secrets[] = []): Promise<Running> {
    const base = testConfig();
    const all = [current, ...old];
    const config: Config = testConfig({
      clients: [testClient({ issuer: idp.issuer })],
      targets: [testTarget({ id: 'api', url: `${upstream.url}/echo` })],
      db: { type: 'postgresql', path: '', url: PG_URL },
      // A short cache: each instance reads (and so re-encrypts) the sessions in use soon after it starts.
      session: { ...base.session, authSecrets: all.map((s) => s.auth), encSecrets: all.map((s) => s.enc), dbKeys: all.map((s) => s.db), cacheTtlMs: 500 },
    });
    const th = await buildApp(config, { store: createPostgresStore({ connectionString: PG_URL, schema, poolSize: 4, onError: () => undefined }), sweeper: false });
    await th.app.listen({ host: '127.0.0.1', port: 0 });
    const instance = { th, base: `http://127.0.0.1:${(th.app.server.address() as { port: number }).port}` };
    running.add(instance);
    return instance;
  }

  async function stop(instance: Running): Promise<void> {
    running.delete(instance);
    await instance.th.app.close();
  }

  beforeAll(async () => {
    if (!available) return;
    idp = await startDevIdp({ rotateRefreshToken: true });
    upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource });
  });
  afterAll(async () => {
    if (!available) return;
    await Promise.all([...running].map(stop));
    await upstream?.close();
    await idp?.close();
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`drop schema if exists "${schema}" cascade`);
    await admin.end();
  });

  async function login(browser: Browser, base: string): Promise<string> {
    const flow = await loginAtDevIdp(browser, `${base}${API}/clients/default/auth`, { username: 'demo', password: 'demo' });
    await flow.response.body?.cancel();
    expect(flow.response.status).toBe(302);
    return browser.cookie('session', base)!.value;
  }

  it.skipIf(!available)('a key re-encryption on one instance never fails a refresh in flight on another', async () => {
    const s1 = secrets();
    const s2 = secrets();
    const a = await start(s1, [s2]);
    // B already encrypts with the new key: the first time it reads the session it re-encrypts it.
    const b = await start(s2, [s1]);
    try {
      const browser = createBrowser();
      const cookie = await login(browser, a.base);
      const session = (await a.th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null }))!;
      await expireAccessToken(a.th, cookie);
      const version = (await a.th.ctx.store.get(session.idHash))!.version;
      idp.resetCounters();
      // A's refresh: rotated at the IdP at once, answered 2 s later.
      idp.setRefreshResponseDelay(2_000);
      const onA = browser.get(`${a.base}${API}/targets/api/x`);
      try {
        await expect.poll(() => idp.refreshGrantCount, { timeout: 10_000 }).toBe(1);
        // Meanwhile B reads the session (its first read): it re-encrypts it under its key, bumping the version.
        const onB = browser.get(`${b.base}${API}/targets/api/x`);
        await expect.poll(async () => (await a.th.ctx.store.get(session.idHash))!.version, { timeout: 10_000 }).toBe(version + 1);
        const [resA, resB] = await Promise.all([onA, onB]);
        expect(resA.status, await resA.clone().text()).toBe(200);
        expect(resB.status, await resB.clone().text()).toBe(200);
        const [bodyA, bodyB] = (await Promise.all([resA.json(), resB.json()])) as EchoResponse[];
        expect(bodyA!.token.valid).toBe(true);
        // B waited for A's refresh and uses its tokens.
        expect(bodyB!.headers.authorization).toBe(bodyA!.headers.authorization);
      } finally {
        idp.setRefreshResponseDelay(0);
      }
      expect(idp.refreshGrantCount).toBe(1);
      expect(idp.refreshReuseCount).toBe(0);
      // The refreshed tokens are stored, under the current key of the writer.
      const stored = (await a.th.ctx.store.get(session.idHash))!;
      expect(a.th.ctx.sessions.decryptPayload(stored).accessToken).toBe(await bodyOf(await browser.get(`${b.base}${API}/targets/api/x`)));
    } finally {
      await stop(a);
      await stop(b);
    }
  });

  it.skipIf(!available)('a rolling rotation of the cookie and database secrets across two instances under load logs nobody out', { timeout: 90_000 }, async () => {
    const s1 = secrets();
    const s2 = secrets();
    const fleet = [await start(s1), await start(s1)];
    // Two users whose tokens refresh every 2 s during the rotation (refreshes write with the current key),
    // two whose tokens outlive the test (only the running apps' re-encryption moves them to the new key).
    const browsers = Array.from({ length: 4 }, () => createBrowser());
    for (const [i, browser] of browsers.entries()) {
      // The quiet ones log in first; from then on the IdP issues 4 s tokens.
      idp.setAccessTokenTtl(i < 2 ? 300 : 4);
      await login(browser, fleet[i % 2]!.base);
    }
    idp.resetCounters();

    const statuses = new Map<number, number>();
    let traffic = true;
    const load = browsers.map(async (browser, u) => {
      for (let i = u; traffic; i += 1) {
        const bases = fleet.map((instance) => instance.base);
        const res = await browser.get(`${bases[i % bases.length]}${API}/targets/api/x`).catch(() => undefined);
        // The instance was taken out and stopped as this request picked it: a load balancer tries the next.
        if (res === undefined) continue;
        const status = res.status === 200 && !((await res.json()) as EchoResponse).token.valid ? -2 : res.status;
        if (!res.bodyUsed) await res.arrayBuffer();
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        await sleep(50);
      }
    });

    // One instance at a time: first accept the new secrets, then use them, then forget the old ones.
    const steps: [Secrets, Secrets[]][] = [
      [s1, [s2]],
      [s2, [s1]],
      [s2, []],
    ];
    for (const [current, old] of steps) {
      for (let i = 0; i < fleet.length; i += 1) {
        await sleep(1_500);
        const previous = fleet[i]!;
        // Out of the load balancer first, then restarted with the next secrets.
        fleet.splice(i, 1);
        await stop(previous);
        fleet.splice(i, 0, await start(current, old));
      }
    }
    await sleep(1_500);
    traffic = false;
    await Promise.all(load);

    expect(Object.fromEntries(statuses)).toEqual({ 200: expect.any(Number) });
    expect(idp.refreshGrantCount).toBeGreaterThan(4);
    expect(idp.refreshReuseCount).toBe(0);
    // With only the new secrets in the fleet now, every user is still logged in.
    for (const browser of browsers) {
      for (const instance of fleet) {
        const res = await browser.get(`${instance.base}${API}/sessions`);
        expect(((await res.json()) as unknown[]).length).toBe(1);
      }
    }
    await Promise.all(fleet.map(stop));
    idp.setAccessTokenTtl(300);
  });
});

async function bodyOf(res: Response): Promise<string | undefined> {
  const body = (await res.json()) as EchoResponse;
  const auth = body.headers.authorization;
  return typeof auth === 'string' ? auth.replace(/^Bearer /, '') : undefined;
}
