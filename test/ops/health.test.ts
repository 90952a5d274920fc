/** /healthz, /ping, /readyz against real dependencies: a SQLite or PostgreSQL store and the dev IdP. */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevIdp } from '../../src/demo/idp.ts';
import { startDevIdp } from '../../src/demo/idp.ts';
import type { ReadinessReport } from '../../src/ops/readiness.ts';
import { createPostgresStore } from '../../src/store/postgres.ts';
import { closedPort, startTcpProxy, type TcpProxy } from '../store/net.ts';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { eventually } from '../support/reload.ts';
import { API, CALLBACK_URI, startTokenHandler, type Running } from './support.ts';

async function ready(base: string): Promise<{ status: number; body: ReadinessReport }> {
  const res = await fetch(`${base}/readyz`);
  expect(res.headers.get('cache-control')).toBe('no-store');
  return { status: res.status, body: (await res.json()) as ReadinessReport };
}

describe('health and readiness probes (SQLite store, dev IdP)', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let th: Running;
  /** The same service with --readyz_strict. */
  let strict: Running;

  beforeAll(async () => {
    idp = await startDevIdp({ redirectUris: [CALLBACK_URI] });
    upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource });
    const config = testConfig({ clients: [testClient({ issuer: idp.issuer })], targets: [testTarget({ id: 'api', url: `${upstream.url}/echo` })] });
    th = await startTokenHandler(config);
    strict = await startTokenHandler({ ...config, readyzStrict: true });
  });
  afterAll(async () => {
    await strict?.app.close().catch(() => {});
    await th?.app.close().catch(() => {});
    await upstream?.close();
    await idp?.close();
  });

  it('/healthz and /ping answer without a session or any dependency', async () => {
    for (const path of ['/healthz', '/ping']) {
      const res = await fetch(`${th.base}${path}`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok' });
    }
    expect((await fetch(`${th.base}/healthz`, { method: 'HEAD' })).status).toBe(200);
  });

  it('/readyz is 200 with every check when all is well', async () => {
    const { status, body } = await ready(th.base);
    expect(status).toBe(200);
    expect(body.status).toBe('ok');
    expect(body.checks.store).toMatchObject({ status: 'ok', kind: 'sqlite' });
    expect(body.checks.issuers).toEqual([expect.objectContaining({ status: 'ok', clientId: 'default', issuer: idp.issuer })]);
  });

  it('while the IdP is down, /readyz stays 200 "degraded" (the proxy still serves logged-in users), and recovers (#18.13)', async () => {
    const browser = createBrowser();
    await loginAtDevIdp(browser, `${th.base}${API}/clients/default/auth`);
    // The upstream validates tokens with the IdP's keys: it fetches them now, while the IdP is up.
    expect((await browser.get(`${th.base}${API}/targets/api/x`)).status).toBe(200);
    for (const mode of ['503', 'refuse'] as const) {
      await idp.setDown(true, mode);
      try {
        const { status, body } = await ready(th.base);
        expect(status, mode).toBe(200);
        expect(body.status).toBe('degraded');
        expect(body.checks.store.status).toBe('ok');
        expect(body.checks.issuers[0]).toMatchObject({ status: 'fail', clientId: 'default' });
        expect(body.checks.issuers[0]!.error).toBeTruthy();
        // What readiness is for: this replica serves. A session's API calls need no IdP.
        const api = await browser.get(`${th.base}${API}/targets/api/x`);
        expect(api.status).toBe(200);
        expect(((await api.json()) as { token: { valid: boolean } }).token.valid).toBe(true);
        const metrics = await (await fetch(`${th.base}/metrics`)).text();
        expect(metrics).toMatch(/token_handler_readiness_check\{check="issuer:default"\} 0/);
      } finally {
        await idp.setDown(false);
      }
      expect(await ready(th.base)).toMatchObject({ status: 200, body: { status: 'ok' } });
    }
    // /healthz never depended on the IdP.
    expect((await fetch(`${th.base}/healthz`)).status).toBe(200);
  });

  it('with --readyz_strict, /readyz is 503 while the IdP is down, and recovers', async () => {
    await idp.setDown(true, '503');
    try {
      const { status, body } = await ready(strict.base);
      expect(status).toBe(503);
      expect(body.status).toBe('fail');
      expect(body.checks.issuers[0]).toMatchObject({ status: 'fail', clientId: 'default' });
    } finally {
      await idp.setDown(false);
    }
    expect(await ready(strict.base)).toMatchObject({ status: 200, body: { status: 'ok' } });
  });

  it('/readyz is "degraded" when the IdP was never reachable (discovery fails); 503 with --readyz_strict', async () => {
    const port = await closedPort();
    const config = testConfig({ clients: [testClient({ issuer: `http://127.0.0.1:${port}` })], oidc: { timeoutMs: 1000, allowInsecureIssuer: true } });
    for (const [readyzStrict, expected] of [[false, { status: 200, body: { status: 'degraded' } }], [true, { status: 503, body: { status: 'fail' } }]] as const) {
      const lonely = await startTokenHandler({ ...config, readyzStrict });
      try {
        const report = await ready(lonely.base);
        expect(report).toMatchObject(expected);
        expect(report.body.checks.issuers[0]).toMatchObject({ status: 'fail' });
      } finally {
        await lonely.app.close();
      }
    }
  });

  it('/readyz is 503 when the SQLite store is closed (and /healthz stays 200)', async () => {
    await th.th.ctx.store.close();
    const { status, body } = await ready(th.base);
    expect(status).toBe(503);
    expect(body.checks.store).toMatchObject({ status: 'fail', kind: 'sqlite' });
    expect(body.checks.store.error).toBeTruthy();
    expect((await fetch(`${th.base}/healthz`)).status).toBe(200);
    const metrics = await (await fetch(`${th.base}/metrics`)).text();
    expect(metrics).toMatch(/token_handler_readiness_check\{check="store"\} 0/);
    expect(metrics).toMatch(/token_handler_store_errors_total\{operation="ping"\} [1-9]/);
  });
});

const pgUrl = process.env.TH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
async function pgUnavailable(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.end().catch(() => {});
  }
}
const noPostgres = await pgUnavailable();

describe.skipIf(noPostgres !== undefined)('readiness with a PostgreSQL store behind a TCP proxy we cut', () => {
  let proxy: TcpProxy;
  let th: Running;
  const schema = `th_ops_${Date.now().toString(36)}`;

  beforeAll(async () => {
    const target = new URL(pgUrl);
    proxy = await startTcpProxy(Number(target.port || 5432), target.hostname);
    target.host = `127.0.0.1:${proxy.port}`;
    const store = createPostgresStore({ connectionString: target.href, schema, onError: () => {} });
    th = await startTokenHandler(testConfig(), { store });
  });
  afterAll(async () => {
    await proxy?.restore().catch(() => {});
    await th?.app.close().catch(() => {});
    await proxy?.close();
    const admin = new pg.Client({ connectionString: pgUrl });
    await admin.connect();
    await admin.query(`drop schema if exists "${schema}" cascade`);
    await admin.end();
  });

  it('is ready, turns 503 within the ping timeout when the database goes away, and recovers', async () => {
    expect((await ready(th.base)).status).toBe(200);
    await proxy.cut();
    const started = Date.now();
    const down = await ready(th.base);
    expect(down.status).toBe(503);
    expect(down.body.checks.store).toMatchObject({ status: 'fail', kind: 'postgresql' });
    // The store check gives up after 2 s; a check left to the driver would wait out a 10 s statement timeout
    // or hang. The bound leaves a loaded machine's late timers room.
    expect(Date.now() - started).toBeLessThan(6000);
    await proxy.restore();
    await eventually(async () => (await ready(th.base)).status === 200, 'ready again after the database came back');
  });
});
