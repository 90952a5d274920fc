/** /metrics after a real login: counters, histograms, store latency, active sessions; the separate listener. */
import { createServer, type Server } from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevIdp } from '../../src/demo/idp.ts';
import { startDevIdp } from '../../src/demo/idp.ts';
import { metricsAddress } from '../../src/routes/metricsRoute.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { API, CALLBACK_URI, startTokenHandler, type Running } from './support.ts';

/** The value of one sample of a Prometheus text exposition, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

describe('/metrics on the main listener', () => {
  let idp: DevIdp;
  let th: Running;

  beforeAll(async () => {
    idp = await startDevIdp({ redirectUris: [CALLBACK_URI], postLogoutRedirectUris: ['http://127.0.0.1/signed-out'] });
    th = await startTokenHandler(testConfig({ clients: [testClient({ issuer: idp.issuer })] }));
  });
  afterAll(async () => {
    await th?.app.close();
    await idp?.close();
  });

  it('counts logins, failures and logouts, HTTP requests by route, store latency and active sessions', async () => {
    const before = await scrape(`${th.base}/metrics`);
    const loginsBefore = sample(before, 'token_handler_logins_total', { client: 'default', outcome: 'success' }) ?? 0;

    const browser = createBrowser();
    const flow = await loginAtDevIdp(browser, `${th.base}${API}/clients/default/auth`, { username: 'demo', password: 'demo' });
    expect(flow.response.status).toBe(302);
    expect((await browser.get(`${th.base}${API}/sessions`)).status).toBe(200);
    // A refused callback.
    const other = createBrowser();
    const start = await other.get(`${th.base}${API}/clients/default/auth`);
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    expect((await other.get(`${th.base}${API}/clients/default/callback?error=access_denied&state=${state}`)).status).toBe(302);

    const text = await scrape(`${th.base}/metrics`);
    expect(sample(text, 'token_handler_logins_total', { client: 'default', outcome: 'success' })).toBe(loginsBefore + 1);
    expect(sample(text, 'token_handler_logins_total', { client: 'default', outcome: 'access_denied' })).toBe(1);
    expect(sample(text, 'token_handler_active_sessions')).toBe(1);

    const callbackRoute = `${API}/clients/:clientId/callback`;
    // The login and the cancelled one (access_denied goes back to the app).
    expect(sample(text, 'token_handler_http_requests_total', { route: callbackRoute, method: 'GET', status: '302' })).toBe(2);
    expect(sample(text, 'token_handler_http_requests_total', { route: `${API}/sessions`, method: 'GET', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'token_handler_http_request_duration_seconds_count', { route: callbackRoute, method: 'GET' })).toBe(2);
    expect(sample(text, 'token_handler_http_request_duration_seconds_bucket', { route: callbackRoute, method: 'GET', le: '+Inf' })).toBe(2);
    // Store calls are timed by the decorator (src/ops/timedStore.ts).
    expect(sample(text, 'token_handler_store_duration_seconds_count', { operation: 'create' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'token_handler_store_duration_seconds_count', { operation: 'get' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'token_handler_store_duration_seconds_count', { operation: 'migrate' })).toBe(1);
    // Families present even before their first event, and the process metrics.
    for (const family of ['token_handler_upstream_responses_total', 'token_handler_upstream_duration_seconds', 'token_handler_refreshes_total', 'token_handler_logouts_total', 'token_handler_process_cpu_seconds_total']) {
      expect(text).toContain(`# TYPE ${family}`);
    }

    const xsrf = browser.cookie('XSRF-TOKEN', th.base)!.value;
    const logout = await browser.post(`${th.base}${API}/clients/default/logout`, undefined, { headers: { accept: 'application/json', 'x-xsrf-token': xsrf, origin: th.base } });
    expect(logout.status).toBe(200);
    const after = await scrape(`${th.base}/metrics`);
    expect(sample(after, 'token_handler_logouts_total', { client: 'default', kind: 'rp' })).toBe(1);
    expect(sample(after, 'token_handler_active_sessions')).toBe(0);
  });

  it('counts an IdP error it does not know as outcome "other": a callback cannot create series (#18.8)', async () => {
    const before = sample(await scrape(`${th.base}/metrics`), 'token_handler_logins_total', { client: 'default', outcome: 'other' }) ?? 0;
    for (let i = 0; i < 5; i += 1) {
      const browser = createBrowser();
      const start = await browser.get(`${th.base}${API}/clients/default/auth`);
      const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
      const res = await browser.get(`${th.base}${API}/clients/default/callback?error=attacker_chosen_${i}&state=${state}`);
      expect(res.status).toBe(400);
    }
    const text = await scrape(`${th.base}/metrics`);
    expect(text).not.toContain('attacker_chosen');
    expect(sample(text, 'token_handler_logins_total', { client: 'default', outcome: 'other' })).toBe(before + 5);
  });

  it('labels unknown paths as one route, so scanners cannot explode the label set', async () => {
    for (const path of ['/nope-1', '/nope-2', '/wp-admin.php']) expect((await fetch(`${th.base}${path}`)).status).toBe(404);
    const text = await scrape(`${th.base}/metrics`);
    expect(text).not.toContain('nope-1');
    expect(sample(text, 'token_handler_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' })).toBeGreaterThanOrEqual(3);
  });
});

describe('upstream statuses as labels (#18.8)', () => {
  let upstream: Server;
  let th: Running;
  beforeAll(async () => {
    // Answers with the status the path names: an upstream is free to send 299 or 599.
    upstream = createServer((req, res) => res.writeHead(Number(req.url!.slice(1))).end());
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}`;
    th = await startTokenHandler(testConfig({ targets: [testTarget({ id: 'odd', url, tokenRequirement: 'none', clientId: 'none' })] }));
  });
  afterAll(async () => {
    await th?.app.close();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
  });

  it('are registered HTTP statuses or "other", in the upstream and the request counters', async () => {
    for (const status of [299, 599, 420, 207, 404]) expect((await fetch(`${th.base}${API}/targets/odd/${status}`)).status).toBe(status);
    const text = await scrape(`${th.base}/metrics`);
    expect(sample(text, 'token_handler_upstream_responses_total', { target: 'odd', status: 'other' })).toBe(3);
    expect(sample(text, 'token_handler_upstream_responses_total', { target: 'odd', status: '207' })).toBe(1);
    expect(sample(text, 'token_handler_upstream_responses_total', { target: 'odd', status: '404' })).toBe(1);
    expect(sample(text, 'token_handler_http_requests_total', { route: `${API}/targets/odd/*`, method: 'GET', status: 'other' })).toBe(3);
    expect(text).not.toMatch(/status="(299|599|420)"/);
  });
});

describe('/metrics on a separate listener (metricsListen)', () => {
  let th: Running;
  beforeAll(async () => {
    th = await startTokenHandler(testConfig({ metricsListen: { host: '127.0.0.1', port: 0 } }));
  });
  afterAll(async () => th?.app.close());

  it('serves /metrics only there, and closes it with the app', async () => {
    const address = metricsAddress(th.app);
    expect(address).toBeDefined();
    expect(address!.port).not.toBe((th.app.server.address() as net.AddressInfo).port);
    const metricsBase = `http://127.0.0.1:${address!.port}`;

    expect((await fetch(`${th.base}/healthz`)).status).toBe(200);
    const text = await scrape(`${metricsBase}/metrics`);
    // The main listener's traffic is counted, and the main listener has no /metrics.
    expect(sample(text, 'token_handler_http_requests_total', { route: '/healthz', method: 'GET', status: '200' })).toBe(1);
    const main = await fetch(`${th.base}/metrics`);
    expect(main.status).toBe(404);
    expect((await fetch(`${metricsBase}/healthz`)).status).toBe(404);

    await th.app.close();
    const refused = await new Promise<string>((resolve) => {
      const socket = net.connect(address!.port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect(refused).toBe('ECONNREFUSED');
  });
});
