/**
 * --workers 2, run once per store (SQLite, PostgreSQL, Redis): one real `node src/main.ts` process group
 * (a primary and two workers sharing the listener), a dev IdP that rotates refresh tokens, and the demo
 * upstream. Requests go over fresh connections (no keep-alive), which the primary hands to the workers
 * in turn, so consecutive requests land on different workers; the per-worker request counter of the
 * group's /metrics shows that they did.
 *
 * The group runs with --session_cache_ttl=60s: a session refused by a worker that had it cached can only
 * be the invalidation relayed to it, not the cache expiring.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it as vitestIt } from 'vitest';
import type { DevIdp } from '../../src/demo/idp.ts';
import type { DemoUpstream, EchoResponse } from '../../src/demo/upstream.ts';
import {
  API,
  csrfHeaders,
  fleetConfigFile,
  login,
  loginShortLived,
  sleep,
  startIdpAndUpstream,
  startInstance,
  within,
  type Instance,
  type StoreBackend,
  type StoreNamespace,
} from '../fleet/support.ts';
import { createBrowser } from '../support/http.ts';

const WORKERS = 2;
/** Real processes on a shared, loaded machine: starting a replacement worker alone can take seconds. */
const it = (name: string, test: () => Promise<void>) => vitestIt(name, test, 90_000);
/**
 * The lifetime of the token the 50 concurrent requests refresh. It is due half of it (5 s) after it was
 * issued, a moment the rest of the login and the four warm-up requests must not reach: a 2 s token, due
 * after 1 s, was raced by them on a loaded machine (a login took 1.3 s there, the warm-up 0.6 s).
 */
const WARM_UP_TTL_SEC = 10;
/** --login_rate_limit of the group: the tests' own logins (from 127.0.0.1) stay well below it. */
const LOGIN_LIMIT = 10;

interface Answer {
  status: number;
  body: string;
}

/** One request on a connection of its own (`agent: false`), so the primary picks a worker for it. */
function fresh(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of every series of `name` in a Prometheus text, by its label text (`{worker="0"}`). */
function series(text: string, name: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(name.length, at), Number(line.slice(at + 1)));
  }
  return values;
}

async function metrics(base: string): Promise<string> {
  const res = await fresh(`${base}/metrics`);
  expect(res.status).toBe(200);
  return res.body;
}

/** Requests handled so far by each worker slot ("0", "1"). */
async function perWorker(base: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const [labels, value] of series(await metrics(base), 'token_handler_worker_requests_total')) {
    counts.set(/worker="(\d+)"/.exec(labels)![1]!, value);
  }
  return counts;
}

/** The pid of each live worker slot. */
async function workerPids(base: string): Promise<Map<string, number>> {
  const pids = new Map<string, number>();
  for (const labels of series(await metrics(base), 'token_handler_worker_info').keys()) {
    const match = /worker="(\d+)",pid="(\d+)"/.exec(labels)!;
    pids.set(match[1]!, Number(match[2]));
  }
  return pids;
}

/** How many requests each worker handled between two `perWorker` readings. */
function delta(before: Map<string, number>, after: Map<string, number>): number[] {
  return Array.from({ length: WORKERS }, (_, i) => (after.get(String(i)) ?? 0) - (before.get(String(i)) ?? 0));
}

async function echoFresh(base: string, cookie: string): Promise<{ status: number; token: string | undefined }> {
  const res = await fresh(`${base}${API}/targets/api/echo`, { cookie: `session=${cookie}` });
  if (res.status !== 200) return { status: res.status, token: undefined };
  const body = JSON.parse(res.body) as EchoResponse;
  const auth = body.headers.authorization;
  expect(body.token.valid).toBe(true);
  return { status: 200, token: typeof auth === 'string' ? auth : undefined };
}

export function workersSuite(backend: StoreBackend): void {
  describe.skipIf(backend.unavailable !== undefined)(`--workers ${WORKERS} on ${backend.name}`, () => {
    let idp: DevIdp;
    let upstream: DemoUpstream;
    let ns: StoreNamespace;
    let group: Instance;
    let base: string;

    beforeAll(async () => {
      ({ idp, upstream } = await startIdpAndUpstream());
      ns = backend.namespace();
      const extra = [...ns.flags(), '--session_cache_ttl=60s', `--workers=${WORKERS}`, `--login_rate_limit=${LOGIN_LIMIT}`, '--trust_proxy=127.0.0.1', '--session_sweep_interval=1s'];
      group = await startInstance({ issuer: idp.issuer, configFile: fleetConfigFile(upstream.url), extra });
      base = group.base;
      await within(30_000, async () => /all 2 workers listening/.test(group.output()), 'the workers did not all start');
    }, 60_000);

    afterAll(async () => {
      await group?.stop();
      await upstream?.close();
      await idp?.close();
      await ns?.drop();
    });

    it('requests land on every worker, and /metrics answers for the whole group', async () => {
      const before = await perWorker(base);
      const healthBefore = series(await metrics(base), 'token_handler_http_requests_total').get('{route="/healthz",method="GET",status="200"}') ?? 0;
      for (let i = 0; i < 20; i++) expect((await fresh(`${base}/healthz`)).status).toBe(200);
      const text = await metrics(base);
      const spread = delta(before, await perWorker(base));
      expect(spread.every((n) => n > 0), `requests per worker: ${spread.join(', ')}`).toBe(true);
      // Every worker's requests in one answer (one worker alone saw about half of them).
      expect(series(text, 'token_handler_http_requests_total').get('{route="/healthz",method="GET",status="200"}')).toBe(healthBefore + 20);
      expect(series(text, 'token_handler_worker_info').size).toBe(WORKERS);
      expect(series(await metrics(base), 'token_handler_readiness_check').size).toBe(0);
      for (let i = 0; i < 4; i++) expect((await fresh(`${base}/readyz`)).status).toBe(200);
      expect(series(await metrics(base), 'token_handler_readiness_check')).toEqual(new Map([['{check="store"}', 1], ['{check="issuer:default"}', 1]]));
    });

    it('one worker sweeps and counts the active sessions for the group', async () => {
      const calls = async (operation: string) => series(await metrics(base), 'token_handler_store_duration_seconds_count').get(`{operation="${operation}"}`) ?? 0;
      // Each scrape counts the store's sessions once (on one worker), not once per worker.
      const before = await calls('countActive');
      for (let i = 0; i < 4; i++) await metrics(base);
      const counted = (await calls('countActive')) - before;
      expect(counted).toBeGreaterThanOrEqual(4);
      expect(counted).toBeLessThanOrEqual(5);
      expect(series(await metrics(base), 'token_handler_active_sessions').size).toBe(1);
      // --session_sweep_interval=1s: one sweep (one deleteExpired: nothing has expired) a second, where two
      // sweeping workers would make two. Six sweeps then take 5 s at least; a loaded machine only makes
      // timers late, so longer, never shorter.
      const first = await calls('deleteExpired');
      const since = performance.now();
      await within(30_000, async () => (await calls('deleteExpired')) >= first + 6, 'no sweeps');
      const swept = (await calls('deleteExpired')) - first;
      expect(swept).toBeLessThanOrEqual((performance.now() - since) / 1000 + 1.5);
    });

    it('a logout on one worker is refused by every worker on the next request', async () => {
      const cookie = await login(createBrowser(), base);
      // Every worker caches the session (for 60 s).
      const before = await perWorker(base);
      for (let i = 0; i < 6; i++) expect((await echoFresh(base, cookie)).status).toBe(200);
      expect(delta(before, await perWorker(base)).every((n) => n > 0)).toBe(true);

      const res = await fetch(`${base}${API}/clients/default/logout`, { method: 'POST', headers: await csrfHeaders(base, cookie), redirect: 'manual' });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ loggedOut: true });

      // At once, no waiting: the logout was answered after every worker had evicted the session.
      const after = await perWorker(base);
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await echoFresh(base, cookie)).status);
      expect(statuses).toEqual(Array(6).fill(401));
      expect(delta(after, await perWorker(base)).every((n) => n > 0)).toBe(true);
    });

    it('a revocation (DELETE /sessions/{handle}) on one worker is refused by every worker on the next request', async () => {
      const mine = await login(createBrowser(), base);
      const other = await login(createBrowser(), base);
      const before = await perWorker(base);
      for (let i = 0; i < 4; i++) expect((await echoFresh(base, other)).status).toBe(200);
      expect(delta(before, await perWorker(base)).every((n) => n > 0)).toBe(true);
      const [view] = JSON.parse((await fresh(`${base}${API}/sessions`, { cookie: `session=${other}` })).body) as { handle: string }[];
      const res = await fetch(`${base}${API}/sessions/${view!.handle}`, { method: 'DELETE', headers: await csrfHeaders(base, mine) });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ revoked: 1 });

      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await echoFresh(base, other)).status);
      expect(statuses).toEqual([401, 401, 401, 401]);
      expect((await echoFresh(base, mine)).status).toBe(200);
    });

    it('50 concurrent requests with an expiring token, spread over every worker, cause exactly one refresh', async () => {
      idp.resetCounters();
      const { cookie, refreshDueAt } = await loginShortLived(idp, base, createBrowser(), WARM_UP_TTL_SEC);
      // Every worker caches the session with the short-lived token, long before it is due.
      const loggedInAt = Date.now();
      for (let i = 0; i < 4; i++) expect((await echoFresh(base, cookie)).status).toBe(200);
      const warmUpMs = Date.now() - loggedInAt;
      // Waiting past the due time is safe (however late the timer fires, the token stays due); a warm-up
      // reaching it is not: its request would have made the refresh the 50 are meant to share.
      expect(idp.refreshGrantCount, `a warm-up request refreshed the ${WARM_UP_TTL_SEC} s token: the warm-up took ${warmUpMs} ms after the login`).toBe(0);
      await sleep(Math.max(0, refreshDueAt - Date.now()));
      const before = await perWorker(base);

      const results = await Promise.all(Array.from({ length: 50 }, () => echoFresh(base, cookie)));

      const spread = delta(before, await perWorker(base));
      expect(spread.every((n) => n > 0), `requests per worker: ${spread.join(', ')}`).toBe(true);
      expect(results.map((r) => r.status)).toEqual(Array(50).fill(200));
      expect(idp.refreshGrantCount).toBe(1);
      expect(idp.refreshReuseCount).toBe(0);
      const tokens = new Set(results.map((r) => r.token));
      expect(tokens.size).toBe(1);
      // Every worker now serves the refreshed (long-lived) token without refreshing again.
      for (let i = 0; i < 4; i++) expect((await echoFresh(base, cookie)).token).toBe([...tokens][0]);
      expect(idp.refreshGrantCount).toBe(1);
    });

    it('counts the login rate limit once for the group, not once per worker', async () => {
      // A client of its own (forwarded by the trusted 127.0.0.1), so the other tests' logins do not count.
      const client = { 'x-forwarded-for': '203.0.113.77' };
      const before = await perWorker(base);
      const statuses = [];
      for (let i = 0; i <= LOGIN_LIMIT; i++) statuses.push((await fresh(`${base}${API}/clients/default/auth`, client)).status);
      expect(delta(before, await perWorker(base)).every((n) => n > 0)).toBe(true);
      expect(statuses).toEqual([...Array<number>(LOGIN_LIMIT).fill(302), 429]);
    });

    it('SIGHUP to the primary is forwarded to the workers, which keep running', async () => {
      const pids = await workerPids(base);
      group.child.kill('SIGHUP');
      await within(10_000, async () => /SIGHUP: forwarding to every worker/.test(group.output()), 'the primary did not forward SIGHUP');
      // A worker that SIGHUP ended would be gone at once; give it time to show.
      await sleep(500);
      for (let i = 0; i < 4; i++) expect((await fresh(`${base}/healthz`)).status).toBe(200);
      expect(await workerPids(base)).toEqual(pids);
      expect(group.output()).not.toMatch(/exited \(signal SIGHUP\)/);
    });

    it('a worker killed with SIGKILL is replaced, and the service keeps answering', async () => {
      const pids = await workerPids(base);
      expect(pids.size).toBe(WORKERS);
      const victim = pids.get('1')!;
      process.kill(victim, 'SIGKILL');
      await within(30_000, async () => /worker 1 \(pid \d+\) exited \(signal SIGKILL\); starting a replacement/.test(group.output()), 'no replacement log line');
      // The replacement takes connections once it listens (it answers the primary before that).
      await within(30_000, async () => /worker 1 \(pid \d+\) listening/.test(group.output()), 'the replacement of worker 1 did not listen');
      const now = await workerPids(base);
      expect(now.size).toBe(WORKERS);
      expect(now.get('1')).not.toBe(victim);
      expect(now.get('0')).toBe(pids.get('0'));
      const before = await perWorker(base);
      for (let i = 0; i < 10; i++) expect((await fresh(`${base}/healthz`)).status).toBe(200);
      expect(delta(before, await perWorker(base)).every((n) => n > 0)).toBe(true);

      // The replacement dies young too: the next one waits (a crash loop does not spin).
      process.kill(now.get('1')!, 'SIGKILL');
      await within(30_000, async () => /worker 1 \(pid \d+\) exited \(signal SIGKILL\); starting a replacement in 1000 ms/.test(group.output()), 'no backoff');
      await within(30_000, async () => [...group.output().matchAll(/worker 1 \(pid \d+\) listening/g)].length === 2, 'the second replacement did not listen');
      for (let i = 0; i < 4; i++) expect((await fresh(`${base}/healthz`)).status).toBe(200);
    });

    it('SIGTERM drains the requests in flight on every worker, then the group exits 0', async () => {
      const cookie = await login(createBrowser(), base);
      const seen = upstream.requests;
      const slow = Array.from({ length: 4 }, () => fresh(`${base}${API}/targets/api/slow?ms=1500`, { cookie: `session=${cookie}` }));
      // All four are at the upstream (two on each worker, the connections taking turns).
      await within(20_000, async () => upstream.requests >= seen + 4, 'the slow requests did not reach the upstream');
      const exited = new Promise<number | null>((resolve) => group.child.once('exit', (code) => resolve(code)));
      group.child.kill('SIGTERM');
      const answers = await Promise.all(slow);
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
      expect(await exited, group.output().slice(-3000)).toBe(0);
      const draining = new Set([...group.output().matchAll(/"pid":(\d+)[^\n]*shutting down: finishing in-flight requests/g)].map((m) => m[1]));
      expect(draining.size).toBe(WORKERS);
      // The slow requests were answered by both workers.
      const slowBy = new Set([...group.output().matchAll(/"pid":(\d+)[^\n]*targets\/api\/slow/g)].map((m) => m[1]));
      expect(slowBy.size).toBe(WORKERS);
    });
  });
}
