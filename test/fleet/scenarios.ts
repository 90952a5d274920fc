/**
 * The fleet scenarios, run once per shared store (PostgreSQL, Redis): two token-handler processes behind
 * no sticky routing (the test sends each request to whichever it likes; a cookie jar ignores ports, as
 * a browser would for one site behind a load balancer), then a third one whose store connection goes
 * through a TCP proxy the test cuts and restores.
 *
 * The fleet runs with --session_cache_ttl=60s, so a logout seen on the other instance well within that
 * (PROPAGATION_BOUND_MS after it cached the session) can only be the invalidation message (LISTEN/NOTIFY,
 * pub/sub), not the cache expiring.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevIdp } from '../../src/demo/idp.ts';
import type { DemoUpstream } from '../../src/demo/upstream.ts';
import { startTcpProxy } from '../store/net.ts';
import { createBrowser } from '../support/http.ts';
import { logoutAtDevIdp } from '../support/login.ts';
import {
  API,
  csrfHeaders,
  echo,
  fleetConfigFile,
  login,
  loginShortLived,
  sessionCount,
  sleep,
  startIdpAndUpstream,
  startInstance,
  statusOf,
  withCookie,
  within,
  type FleetBackend,
  type Instance,
  type StoreNamespace,
} from './support.ts';

/** The session cache TTL of the fleet's two instances. */
const CACHE_TTL_MS = 60_000;
/**
 * How long B answers a cached session from memory without asking the store: a cached session is reloaded
 * in the background in the last fifth of its TTL (src/session/cache.ts), so 48 s after it was cached.
 */
const CACHE_HOLDS_MS = CACHE_TTL_MS * 0.8;
/**
 * How soon after B cached a session B must see it ended on A: generous, so that a slow machine does not
 * fail the test (LISTEN/NOTIFY and pub/sub take milliseconds; how fast is not what is proven), and far below
 * CACHE_HOLDS_MS, so that B cannot have learnt it by reloading the session itself.
 */
const PROPAGATION_BOUND_MS = 20_000;

/**
 * Polls `check` until it holds, as long as PROPAGATION_BOUND_MS after `cachedAt` (read just before B cached
 * the session): seen by then, the end reached B through the invalidation message, not its cache expiring.
 */
async function seenOnBInTime(cachedAt: number, check: () => Promise<boolean>, what: string): Promise<void> {
  await within(Math.max(0, cachedAt + PROPAGATION_BOUND_MS - Date.now()), check, what);
  // However long the last poll took to answer: still before B would have reloaded the session by itself.
  expect(Date.now() - cachedAt).toBeLessThan(CACHE_HOLDS_MS);
}

export function fleetSuite(backend: FleetBackend): void {
  describe.skipIf(backend.unavailable !== undefined)(`a fleet of two processes on one ${backend.name} store`, () => {
    let idp: DevIdp;
    let upstream: DemoUpstream;
    let ns: StoreNamespace;
    let configFile: string;
    let a: Instance;
    let b: Instance;
    const started: Instance[] = [];

    const start = async (extra: string[]): Promise<Instance> => {
      const instance = await startInstance({ issuer: idp.issuer, configFile, extra });
      started.push(instance);
      return instance;
    };

    beforeAll(async () => {
      ({ idp, upstream } = await startIdpAndUpstream());
      ns = backend.namespace();
      configFile = fleetConfigFile(upstream.url);
      // A migrates first; B then finds the schema in place (concurrent migration is the contract suite's job).
      a = await start([...ns.flags(), `--session_cache_ttl=${CACHE_TTL_MS / 1000}s`]);
      b = await start([...ns.flags(), `--session_cache_ttl=${CACHE_TTL_MS / 1000}s`]);
    });

    afterAll(async () => {
      await Promise.all(started.map((i) => i.stop()));
      await upstream?.close();
      await idp?.close();
      await ns?.drop();
    });

    it('a session made on A works on B', async () => {
      const cookie = await login(createBrowser(), a.base);
      expect(await sessionCount(b.base, cookie)).toBe(1);
      const onB = await echo(b.base, cookie);
      expect(onB).toMatchObject({ status: 200, valid: true });
      expect(onB.token).toMatch(/^Bearer ey/);
    });

    it('50 concurrent requests split over A and B with an expiring token cause exactly one refresh', async () => {
      const { cookie, refreshDueAt } = await loginShortLived(idp, a.base, createBrowser());
      await sleep(Math.max(0, refreshDueAt - Date.now()));
      idp.resetCounters();

      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => echo(i % 2 === 0 ? a.base : b.base, cookie)));

      expect(results.map((r) => r.status)).toEqual(Array(50).fill(200));
      expect(results.every((r) => r.valid)).toBe(true);
      expect(idp.refreshGrantCount).toBe(1);
      expect(idp.refreshReuseCount).toBe(0);
      const tokens = new Set(results.map((r) => r.token));
      expect(tokens.size).toBe(1);
      // Both instances now serve the refreshed (long-lived) token without refreshing again.
      expect((await echo(a.base, cookie)).token).toBe([...tokens][0]);
      expect((await echo(b.base, cookie)).token).toBe([...tokens][0]);
      expect(idp.refreshGrantCount).toBe(1);
    });

    it('a logout on A is seen on B at once', async () => {
      const cookie = await login(createBrowser(), a.base);
      // B caches the session (for 60 s).
      const cachedAt = Date.now();
      expect(await sessionCount(b.base, cookie)).toBe(1);
      expect((await echo(b.base, cookie)).status).toBe(200);

      const res = await fetch(`${a.base}${API}/clients/default/logout`, { method: 'POST', headers: await csrfHeaders(a.base, cookie), redirect: 'manual' });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ loggedOut: true });

      await seenOnBInTime(cachedAt, async () => (await sessionCount(b.base, cookie)) === 0, 'B still sees the session');
      expect(await statusOf(`${b.base}${API}/targets/api/echo`, cookie)).toBe(401);
    });

    it('revoking a session (DELETE /sessions/{handle}) on A ends it on B at once', async () => {
      const mine = await login(createBrowser(), a.base);
      const other = await login(createBrowser(), a.base);
      // B caches the other session (for 60 s).
      const cachedAt = Date.now();
      expect((await echo(b.base, other)).status).toBe(200);
      const [view] = (await (await withCookie(`${a.base}${API}/sessions`, other)).json()) as { handle: string }[];
      // The user ends their session on another device from this browser.
      const res = await fetch(`${a.base}${API}/sessions/${view!.handle}`, { method: 'DELETE', headers: await csrfHeaders(a.base, mine) });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ revoked: 1 });

      await seenOnBInTime(cachedAt, async () => (await echo(b.base, other)).status === 401, 'B still serves the revoked session');
      expect(await sessionCount(b.base, other)).toBe(0);
      expect(await sessionCount(b.base, mine)).toBe(1);
    });

    it('a back-channel logout delivered to A ends the session on B at once', async () => {
      // The OP itself posts the logout token to A when the user signs out at the OP.
      await idp.updateClient('token-handler', { backchannel_logout_uri: `${a.base}${API}/clients/default/backchannel-logout`, backchannel_logout_session_required: true });
      const browser = createBrowser();
      const cookie = await login(browser, a.base);
      // B caches the session (for 60 s).
      const cachedAt = Date.now();
      expect(await sessionCount(b.base, cookie)).toBe(1);
      expect((await echo(b.base, cookie)).status).toBe(200);

      const sent = idp.backchannelLogoutSentCount;
      const ended = await logoutAtDevIdp(browser, `${idp.issuer}/session/end`, { idpOrigin: new URL(idp.issuer).origin });
      expect(ended.html).toContain('signed-out');
      // The OP's delivery and the invalidation message, both within the bound.
      await seenOnBInTime(cachedAt, async () => idp.backchannelLogoutSentCount > sent, 'the OP did not deliver the logout token');

      await seenOnBInTime(cachedAt, async () => (await sessionCount(b.base, cookie)) === 0, 'B still sees the session');
      expect(await statusOf(`${b.base}${API}/targets/api/echo`, cookie)).toBe(401);
      expect(await sessionCount(a.base, cookie)).toBe(0);
    });

    it('store outage: 503 problem+json and unready while cut, recovery by itself with the session intact', async () => {
      const proxy = await startTcpProxy(backend.target.port, backend.target.host);
      try {
        // A short session cache: cached sessions keep working through an outage for at most this long.
        const c = await start([...ns.flags({ port: proxy.port }), '--session_cache_ttl=1s']);
        const cookie = await login(createBrowser(), c.base);
        const before = await echo(c.base, cookie);
        expect(before).toMatchObject({ status: 200, valid: true });
        expect((await fetch(`${c.base}/readyz`)).status).toBe(200);

        // Traffic keeps flowing while the store goes away and comes back.
        const statuses = new Map<number, number>();
        let traffic = true;
        const load = (async () => {
          while (traffic) {
            const status = await statusOf(`${c.base}${API}/targets/api/echo`, cookie).catch(() => -1);
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
            await sleep(20);
          }
        })();
        await sleep(200);
        await proxy.cut();

        for (const path of [`${API}/targets/api/echo`, `${API}/sessions`]) {
          // A session cached before the cut keeps resolving for at most the cache TTL (1 s here).
          await within(5000, async () => (await statusOf(`${c.base}${path}`, cookie)) === 503, `${path} does not answer 503`);
          const res = await withCookie(`${c.base}${path}`, cookie);
          expect(res.status, path).toBe(503);
          expect(res.headers.get('content-type'), path).toMatch(/^application\/problem\+json/);
          expect(res.headers.get('retry-after'), path).toBe('5');
          expect(await res.json(), path).toMatchObject({ status: 503, error: 'store_unavailable' });
        }
        const unready = await fetch(`${c.base}/readyz`);
        expect(unready.status).toBe(503);
        expect(await unready.json()).toMatchObject({ status: 'fail', checks: { store: { status: 'fail' } } });
        // Liveness is not the store's business: restarting the process would not bring the store back.
        expect((await fetch(`${c.base}/healthz`)).status).toBe(200);
        expect(c.child.exitCode).toBeNull();

        await proxy.restore();
        const recovered = await within(15_000, async () => (await fetch(`${c.base}/readyz`)).status === 200, 'not ready again after the store came back');
        traffic = false;
        await load;

        const after = await echo(c.base, cookie);
        expect(after).toMatchObject({ status: 200, valid: true });
        expect(await sessionCount(c.base, cookie)).toBe(1);
        // The session is the same one everywhere, not a re-created one.
        expect(await sessionCount(a.base, cookie)).toBe(1);
        // The background traffic saw nothing but 200 and 503: no 500, no reset. (Whether one of its requests
        // fell inside the outage window is timing: a request that waits on the connection timeout across
        // the restore succeeds. The 503s of the outage are asserted directly above.)
        expect([...statuses.keys()].filter((status) => status !== 200 && status !== 503)).toEqual([]);
        expect(statuses.get(200)).toBeGreaterThan(0);
        expect(recovered).toBeLessThan(15_000);
        expect(c.output()).not.toMatch(/"level":(50|60).*"msg":"unhandled error"/);
      } finally {
        await proxy.close();
      }
    });
  });
}
