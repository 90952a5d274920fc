/**
 * Issue 21: token-handler started with a go-token-handler configuration as it is — its token_handler.env,
 * flags in both spellings, a proxy file with a subtree endpoint (`/api/`) and a plain one, Go's session
 * table already in the SQLite file / the PostgreSQL database — and driven the way a fetch-based frontend
 * written for go-token-handler drives it: login, API calls (a same-origin POST without any XSRF header
 * among them), an upstream Set-Cookie, error bodies in Go's shape, a bookmarked logout, and a W3C
 * `traceparent` carried to the upstream with the spans exported over OTLP, as Go's otelhttp did.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevIdp } from '../../src/demo/idp.ts';
import type { DemoUpstream, EchoResponse } from '../../src/demo/upstream.ts';
import { createGoPostgresTables, createGoSqliteTables, goPostgresSnapshot, goSqliteSnapshot, postgresTables, sqliteTables } from '../support/goTables.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { SERVER, startReceiver, waitForSpans, type Receiver } from '../support/otlp.ts';
import { cleanEnv, type Running } from '../support/process.ts';
import { PG_URL, probePostgres, requireService } from '../support/services.ts';
import { GO_SESSION_KEYS_ENV, goOidcEnv, legacyLogin, startGoBinary, startGoSide } from './support.ts';

const EVIL = 'https://evil.example';

interface GoError {
  code: number;
  status: string;
  message: string;
  timestamp: string;
  error: string;
}

/** go-token-handler's error answer: application/json, {code, status, message, timestamp}, plus our `error` code. */
async function expectGoError(res: Response, code: number): Promise<GoError> {
  expect(res.status).toBe(code);
  expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
  const body = (await res.json()) as GoError;
  expect(Object.keys(body).sort()).toStrictEqual(['code', 'error', 'message', 'status', 'timestamp']);
  expect(body).toMatchObject({ code, status: expect.any(String), message: expect.any(String) });
  expect(Number.isNaN(Date.parse(body.timestamp))).toBe(false);
  return body;
}

interface Backend {
  name: 'sqlite' | 'postgresql';
  /** Creates Go's tables; returns token_handler.env lines and a snapshot reader for Go's data. */
  prepare(dir: string): Promise<{ env: string[]; snapshot: () => Promise<string>; tables: () => Promise<string[]>; cleanup: () => Promise<void> }>;
}

const sqlite: Backend = {
  name: 'sqlite',
  async prepare(dir) {
    // Go's working directory: its sessions.db, with its table, indexes and a row.
    const path = join(dir, 'sessions.db');
    createGoSqliteTables(path);
    return {
      env: ['DB_TYPE=sqlite', 'DB_NAME=sessions.db'],
      snapshot: async () => goSqliteSnapshot(path),
      tables: async () => sqliteTables(path),
      cleanup: async () => {},
    };
  },
};

const postgresUnavailable = await probePostgres();
const postgresql: Backend = {
  name: 'postgresql',
  async prepare() {
    // A database of its own, with Go's `public.sessions` exactly as Go creates it.
    const database = `th_go_${randomBytes(5).toString('hex')}`;
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`create database "${database}"`);
    await admin.end();
    const url = new URL(PG_URL);
    url.pathname = `/${database}`;
    const client = new pg.Client({ connectionString: url.href });
    await client.connect();
    await createGoPostgresTables(client, 'public');
    return {
      // Go has no port setting: DB_HOST=host:port is how its users reach one (issue 21.3).
      env: ['DB_TYPE=postgresql', `DB_HOST=${url.hostname}:${url.port || '5432'}`, `DB_NAME=${database}`, `DB_USERNAME=${decodeURIComponent(url.username) || 'postgres'}`, 'DB_PASSWORD=unused-with-trust'],
      snapshot: () => goPostgresSnapshot(client, 'public'),
      tables: () => postgresTables(client, 'public'),
      cleanup: async () => {
        await client.end();
        const dropper = new pg.Client({ connectionString: PG_URL });
        await dropper.connect();
        await dropper.query(`drop database if exists "${database}" with (force)`);
        await dropper.end();
      },
    };
  },
};

const backends = [sqlite, ...(requireService('postgresql', postgresUnavailable) ? [postgresql] : [])];

describe.each(backends)('token-handler in place of go-token-handler ($name)', (backend) => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let proc: Running;
  let base: string;
  let goBefore: string;
  let prepared: Awaited<ReturnType<Backend['prepare']>>;
  let browser: Browser;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = await startReceiver();
    const side = await startGoSide('th-go-side-');
    ({ idp, upstream } = side);
    prepared = await backend.prepare(side.dir);
    goBefore = await prepared.snapshot();
    // The env file names the port (Go's redirect URL): on EADDRINUSE the side moves to another one.
    proc = await startGoBinary(side, {
      files: () => ({
        proxy: [
          'proxies:',
          '  - endpoint: /api/', // Go ServeMux's subtree pattern (issue 21.1)
          `    target: ${upstream.url}/echo`,
          '  - endpoint: /proxy',
          `    target: ${upstream.url}/echo`,
          '    parameters:',
          '      idle-conn-timeout: 120s',
          '      max-idle-conns: 100',
          '  - endpoint: /account/',
          `    target: ${upstream.url}`,
        ],
        // An http issuer on this machine (a local Keycloak in development): no extra flag (issue 21.4).
        env: [...goOidcEnv(side, 'token-handler-secret'), ...prepared.env, ...GO_SESSION_KEYS_ENV],
      }),
      // Flags in both spellings: the hyphens of Go's binary and the underscores of its README.
      args: () => ['--listen-addr', `127.0.0.1:${side.port}`, '--log_level', 'info', '--cookie-name', 'session'],
      env: cleanEnv({
        // Go's standard OpenTelemetry variables; a short batch delay so the spans arrive while the test runs.
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_SERVICE_NAME: 'go-config',
        OTEL_BSP_SCHEDULE_DELAY: '200',
      }),
    });
    base = side.base;
    browser = createBrowser();
    const flow = await legacyLogin(browser, base);
    expect(flow.response.status).toBe(302);
    await flow.response.body?.cancel();
  }, 60_000);

  afterAll(async () => {
    await proc?.stop();
    await upstream?.close();
    await idp?.close();
    await prepared?.cleanup();
    await receiver?.close();
  });

  it('started beside Go\'s session table with a warning for the local http issuer, and created only prefixed tables', async () => {
    expect(proc.stdout + proc.stderr).toMatch(/http:\/\/ issuer on this machine, accepted outside production/);
    const tables = await prepared.tables();
    expect(tables).toContain('sessions');
    expect(tables.filter((name) => name !== 'sessions').every((name) => name.startsWith('token_handler_'))).toBe(true);
    expect(tables).toContain('token_handler_sessions');
    expect(await prepared.snapshot()).toBe(goBefore);
  });

  it('serves the subtree of a /api/ endpoint and answers /api with a 301, as Go ServeMux did; plain endpoints too', async () => {
    const item = (await (await browser.get(`${base}/api/items/7?expand=1`)).json()) as EchoResponse;
    expect(item.path).toBe('/echo/items/7');
    expect(item.query).toMatchObject({ expand: '1' });
    expect(item.headers.authorization).toMatch(/^Bearer .+/);
    const bare = await browser.request(`${base}/api?page=2`, { method: 'GET' });
    expect(bare.status).toBe(301);
    expect(bare.headers.get('location')).toBe('/api/?page=2');
    expect(((await (await browser.get(`${base}/api/`)).json()) as EchoResponse).path).toBe('/echo/');
    expect(((await (await browser.get(`${base}/proxy`)).json()) as EchoResponse).path).toBe('/echo');
  });

  it('forwards a same-origin fetch() POST without any XSRF header, and a non-browser POST; refuses a cross-site one in Go\'s shape', async () => {
    const sameOrigin = await browser.post(`${base}/api/items`, undefined, {
      json: { name: 'x' },
      headers: { origin: base, 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'cors' },
    });
    expect(sameOrigin.status).toBe(200);
    expect(((await sameOrigin.json()) as EchoResponse).method).toBe('POST');
    // A server or script with the session cookie and neither browser header.
    const client = await browser.request(`${base}/proxy`, { method: 'DELETE' });
    expect(client.status).toBe(200);
    const before = upstream.requests;
    const forged = await browser.post(`${base}/api/items`, 'name=x', {
      headers: { origin: EVIL, 'sec-fetch-site': 'cross-site', 'content-type': 'application/x-www-form-urlencoded' },
    });
    const body = await expectGoError(forged, 403);
    expect(body).toMatchObject({ status: 'Forbidden', error: 'csrf_failed' });
    // And a link from another site does not reach the upstream with the user's token either (18.12).
    await expectGoError(await browser.get(`${base}/api/items`, { headers: { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' } }), 403);
    expect(upstream.requests).toBe(before);
  });

  it('carries a W3C traceparent to the upstream and exports the request and upstream spans over OTLP', async () => {
    const traceId = randomBytes(16).toString('hex');
    const parentId = randomBytes(8).toString('hex');
    const item = (await (await browser.get(`${base}/api/traced`, { headers: { traceparent: `00-${traceId}-${parentId}-01` } })).json()) as EchoResponse;
    const traceparent = String(item.headers.traceparent);
    const forwarded = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(traceparent);
    expect(forwarded, traceparent).not.toBeNull();
    expect(forwarded![1]).toBe(traceId);
    // The upstream's parent is token-handler's span of the upstream call, a child of the request's span.
    const { request, call } = await waitForSpans(receiver, (spans) => {
      const upstreamCall = spans.find((s) => s.traceId === traceId && s.spanId === forwarded![2]);
      const incoming = spans.find((s) => s.traceId === traceId && s.kind === SERVER);
      return upstreamCall && incoming ? { request: incoming, call: upstreamCall } : undefined;
    }, `span of trace ${traceId}`);
    expect(request).toMatchObject({ parentSpanId: parentId, service: 'go-config' });
    expect(call.parentSpanId).toBe(request.spanId);
  });

  it("passes the upstream's Set-Cookie to the browser, as Go did", async () => {
    const res = await browser.get(`${base}/account/set-cookie`);
    expect(res.status).toBe(200);
    expect(res.headers.getSetCookie()).toEqual([expect.stringMatching(/^upstream_session=from-upstream;/)]);
  });

  it('answers errors in Go\'s JSON shape with the same status codes: no session on a proxy and on /userinfo', async () => {
    const anonymous = createBrowser();
    const proxied = await expectGoError(await anonymous.get(`${base}/api/items`), 401);
    expect(proxied).toMatchObject({ status: 'Unauthorized', error: 'login_required', message: 'this API needs a logged-in session' });
    await expectGoError(await anonymous.get(`${base}/userinfo`), 401);
    // Whatever an upstream answers is passed on untouched.
    const upstreamError = await browser.get(`${base}/account/nothing-here`);
    expect(upstreamError.status).toBe(404);
    expect(await upstreamError.json()).toStrictEqual({ error: 'not_found', path: '/nothing-here' });
  });

  it('logs out from a bookmark (Sec-Fetch-Site: none); a link from another site gets a confirmation page, not a logout', async () => {
    const crossSite = await browser.get(`${base}/logout`, { headers: { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', referer: `${EVIL}/page` } });
    expect(crossSite.status).toBe(200);
    const page = await crossSite.text();
    // The button posts back to the path the browser used (the legacy /logout), which ends the session.
    const action = /<form method="post" action="(\/logout\?sid=[^"]+)"><button type="submit">Sign out<\/button><\/form>/.exec(page);
    expect(action, page).not.toBeNull();
    expect((await browser.get(`${base}/userinfo`)).status).toBe(200);
    const confirmed = await browser.request(`${base}${action![1]!}`, { method: 'POST', headers: { origin: base, 'sec-fetch-site': 'same-origin' } });
    expect(confirmed.status).toBe(303);
    await expectGoError(await browser.get(`${base}/userinfo`), 401);
    // Signed in again for the bookmark logout below.
    const again = await legacyLogin(browser, base);
    expect(again.response.status).toBe(302);
    await again.response.body?.cancel();

    const bookmark = await browser.request(`${base}/logout`, { method: 'GET', headers: { 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate' } });
    expect(bookmark.status).toBe(302);
    const location = new URL(bookmark.headers.get('location')!);
    expect(location.origin).toBe(new URL(idp.issuer).origin);
    expect(location.searchParams.get('post_logout_redirect_uri')).toBe(`${base}/`);
    await expectGoError(await browser.get(`${base}/api/items`), 401);
  });

  it('documents the 301 and the Go error shape in its OpenAPI document', async () => {
    const doc = (await (await createBrowser().get(`${base}/token-handler/v1/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>>;
    };
    expect(Object.keys(doc.paths['/api']!.get!.responses)).toStrictEqual(['301']);
    expect(Object.keys(doc.paths['/api/{path}']!.post!.responses['403']!.content!)).toStrictEqual(['application/json']);
    expect(Object.keys(doc.paths['/userinfo']!.get!.responses['401']!.content!)).toStrictEqual(['application/json']);
  });

  it("left Go's table, its indexes and its rows exactly as they were", async () => {
    expect(await prepared.snapshot()).toBe(goBefore);
  });
});
