/**
 * Distributed tracing of the real process (`node src/main.ts`): W3C traceparent/tracestate from the browser
 * through a target to the upstream, and OpenTelemetry spans over OTLP/HTTP to a receiver this test runs
 * (plain node:http on 127.0.0.1 at /v1/traces, as an OpenTelemetry Collector would listen).
 *
 * Off (no OTEL_EXPORTER_OTLP_* endpoint): a valid traceparent and its tracestate reach the upstream
 * unchanged; a malformed one is dropped with its tracestate. On: the upstream's parent is token-handler's
 * span of the upstream call, in the caller's trace; the receiver gets the request, IdP, store and upstream
 * spans with their parent/child links, flushed on SIGTERM, and none of them carries a token, a cookie, a
 * code, a state or a query value.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.ts';
import { tempDir } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { devIdpClientFlags } from '../support/process.ts';
import { closedPort } from '../proxy/support.ts';
import { CLIENT, SERVER, spansOf, startReceiver, type ReceivedSpan, type Receiver } from '../support/otlp.ts';
import { API, CALLBACK_URI } from './support.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;
const TRACESTATE = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';

interface Started {
  child: ChildProcess;
  base: string;
  output: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startProcess(dir: string, upstreamUrl: string, issuer: string, extraEnv: Record<string, string>, extraArgs: string[] = []): Promise<Started> {
  const configFile = join(dir, 'token-handler.json');
  // `down`: nothing listens there (a port bound, then released).
  writeFileSync(configFile, JSON.stringify({ targets: [{ id: 'api', url: upstreamUrl }, { id: 'live', url: upstreamUrl, websocket: true }, { id: 'down', url: `http://127.0.0.1:${await closedPort()}` }] }));
  const args = [
    '--listen_addr=127.0.0.1:0',
    ...devIdpClientFlags(issuer),
    `--db_path=${join(dir, 'sessions.db')}`,
    `--config=${configFile}`,
    '--log_level=info',
    ...extraArgs,
  ];
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', HOME: dir, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const base = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    void exit.then(({ code }) => reject(new Error(`token-handler exited (${code}) before listening:\n${out}`)));
  });
  return { child, base, output: () => out, exit };
}

async function login(browser: Browser, base: string): Promise<Map<string, string>> {
  const secrets = new Map<string, string>();
  const start = await browser.get(`${base}${API}/clients/default/auth?return_to=${encodeURIComponent('/app')}`);
  expect(start.status).toBe(302);
  secrets.set('state', new URL(start.headers.get('location')!).searchParams.get('state')!);
  secrets.set('login-state cookie', browser.cookies(base).find((c) => c.name.startsWith('th-login-'))!.value);
  const flow = await loginAtDevIdp(browser, start.headers.get('location')!, { username: 'demo', password: 'demo' });
  expect(flow.response.status).toBe(302);
  secrets.set('authorization code', new URL(flow.url).searchParams.get('code')!);
  secrets.set('session cookie', browser.cookie('session', base)!.value);
  secrets.set('XSRF token', browser.cookie('XSRF-TOKEN', base)!.value);
  return secrets;
}

interface Echo {
  headers: Record<string, string | undefined>;
  query: Record<string, string>;
}

async function echo(browser: Browser, base: string, headers: Record<string, string>, query = ''): Promise<Echo> {
  const res = await browser.get(`${base}${API}/targets/api/echo${query}`, { headers });
  expect(res.status).toBe(200);
  return (await res.json()) as Echo;
}

/** Opens a WebSocket through the `live` target; resolves with the upstream's first message (what it received). */
function openWebSocket(browser: Browser, base: string, headers: Record<string, string>): Promise<{ traceparent: string | null; tracestate: string | null }> {
  const cookie = browser.cookies(base).map((c) => `${c.name}=${c.value}`).join('; ');
  const ws = new WebSocket(`${base.replace('http', 'ws')}${API}/targets/live/ws`, { headers: { ...headers, cookie }, origin: base });
  return new Promise((resolve, reject) => {
    ws.once('message', (data) => {
      ws.close();
      resolve(JSON.parse(String(data)) as { traceparent: string | null; tracestate: string | null });
    });
    ws.once('error', reject);
  });
}

describe('W3C trace context and OpenTelemetry spans through the real process', () => {
  let idp: DevIdp;
  /** Access tokens of 3 s, refresh tokens always: a request 1.5 s after the last refresh refreshes. */
  let shortIdp: DevIdp;
  let upstream: DemoUpstream;
  let receiver: Receiver;
  const running: Started[] = [];

  beforeAll(async () => {
    idp = await startDevIdp({ redirectUris: [CALLBACK_URI] });
    // Opaque access tokens: the IdP's userinfo endpoint refuses audience-bound JWTs.
    shortIdp = await startDevIdp({ redirectUris: [CALLBACK_URI], accessTokenTtlSec: 3, refreshTokens: 'always', jwtAccessTokens: false });
    upstream = await startDemoUpstream();
    receiver = await startReceiver();
  });
  afterAll(async () => {
    for (const r of running) if (r.child.exitCode === null) r.child.kill('SIGKILL');
    await receiver?.close();
    await upstream?.close();
    await idp?.close();
    await shortIdp?.close();
  });

  it('tracing off: a valid traceparent and its tracestate pass unchanged; a malformed one is dropped with its tracestate', async () => {
    const th = await startProcess(tempDir('th-trace-off-'), upstream.url, idp.issuer, {});
    running.push(th);
    const browser = createBrowser();
    await login(browser, th.base);

    const passed = await echo(browser, th.base, { traceparent: TRACEPARENT, tracestate: TRACESTATE });
    expect(passed.headers.traceparent).toBe(TRACEPARENT);
    expect(passed.headers.tracestate).toBe(TRACESTATE);

    for (const malformed of [
      `00-${TRACE_ID.toUpperCase()}-${PARENT_ID}-01`,
      `00-${'0'.repeat(32)}-${PARENT_ID}-01`,
      `00-${TRACE_ID}-${'0'.repeat(16)}-01`,
      `ff-${TRACE_ID}-${PARENT_ID}-01`,
      `00-${TRACE_ID}-${PARENT_ID}-01-extra`,
      'not a traceparent',
    ]) {
      const dropped = await echo(browser, th.base, { traceparent: malformed, tracestate: TRACESTATE });
      expect(dropped.headers.traceparent, malformed).toBeUndefined();
      expect(dropped.headers.tracestate, malformed).toBeUndefined();
    }
    // WebSocket handshakes: the same.
    expect(await openWebSocket(browser, th.base, { traceparent: TRACEPARENT, tracestate: TRACESTATE })).toMatchObject({ traceparent: TRACEPARENT, tracestate: TRACESTATE });
    expect(await openWebSocket(browser, th.base, { traceparent: 'garbage', tracestate: TRACESTATE })).toMatchObject({ traceparent: null, tracestate: null });

    // A later version may carry more fields: it passes.
    const future = `cc-${TRACE_ID}-${PARENT_ID}-01-what-the-future-will-be-like`;
    expect((await echo(browser, th.base, { traceparent: future })).headers.traceparent).toBe(future);

    th.child.kill('SIGTERM');
    expect((await th.exit).code, th.output()).toBe(0);
    expect(receiver.posts).toHaveLength(0);
  });

  it('tracing on: the upstream gets token-handler\'s span as parent; request, IdP, store and upstream spans reach the OTLP receiver on shutdown, without secrets', async () => {
    const th = await startProcess(tempDir('th-trace-on-'), upstream.url, shortIdp.issuer, {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-key=k3y',
      OTEL_SERVICE_NAME: 'th-under-test',
      // Nothing exported before shutdown: the spans below arrive because SIGTERM flushes them.
      OTEL_BSP_SCHEDULE_DELAY: '600000',
    }, ['--legacy_routes']);
    running.push(th);
    const browser = createBrowser();
    const secrets = await login(browser, th.base);
    // go-token-handler's /userinfo: the IdP's userinfo endpoint, called with the session's access token.
    const userinfo = await browser.get(`${th.base}/userinfo`);
    expect(userinfo.status, await userinfo.clone().text()).toBe(200);
    expect(((await userinfo.json()) as { sub?: string }).sub).toBeDefined();

    const traced = await echo(browser, th.base, { traceparent: TRACEPARENT, tracestate: TRACESTATE }, '?q=s3cr3t-query-value');
    secrets.set('access token', /^Bearer (.+)$/.exec(traced.headers.authorization ?? '')![1]!);
    secrets.set('query value', 's3cr3t-query-value');
    const forwarded = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(traced.headers.traceparent ?? '');
    expect(forwarded, traced.headers.traceparent).not.toBeNull();
    expect(forwarded![1]).toBe(TRACE_ID);
    expect(forwarded![2]).not.toBe(PARENT_ID);
    expect(traced.headers.tracestate).toBe(TRACESTATE);

    // A malformed traceparent: a new trace, no tracestate carried over.
    const fresh = await echo(browser, th.base, { traceparent: `00-${TRACE_ID}-${'0'.repeat(16)}-01`, tracestate: TRACESTATE });
    const restarted = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(fresh.headers.traceparent ?? '');
    expect(restarted, fresh.headers.traceparent).not.toBeNull();
    expect(restarted![1]).not.toBe(TRACE_ID);
    expect(fresh.headers.tracestate).toBeUndefined();

    // The access token lives 3 s and is refreshed once in its second half (min(skew, half its life) ahead):
    // past 1.5 s, the next request refreshes it first; a token in use has 1.5 s left at least.
    await new Promise((r) => setTimeout(r, 1600));
    const refreshed = await echo(browser, th.base, {});
    secrets.set('refreshed access token', /^Bearer (.+)$/.exec(refreshed.headers.authorization ?? '')![1]!);
    expect(secrets.get('refreshed access token')).not.toBe(secrets.get('access token'));
    const refreshedParent = /^00-[0-9a-f]{32}-([0-9a-f]{16})-01$/.exec(refreshed.headers.traceparent ?? '')![1]!;

    // A WebSocket handshake: the upstream's parent is token-handler's span of it, in the caller's trace.
    const wsParent = '2'.repeat(16);
    const wsFirst = await openWebSocket(browser, th.base, { traceparent: `00-${TRACE_ID}-${wsParent}-01`, tracestate: TRACESTATE });
    const wsForwarded = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(wsFirst.traceparent ?? '');
    expect(wsForwarded?.[1], String(wsFirst.traceparent)).toBe(TRACE_ID);
    expect(wsForwarded![2]).not.toBe(wsParent);
    expect(wsFirst.tracestate).toBe(TRACESTATE);

    // An upstream that cannot be reached: 502, and a failed client span.
    expect((await browser.get(`${th.base}${API}/targets/down/x`, { headers: { traceparent: `00-${TRACE_ID}-${'1'.repeat(16)}-01` } })).status).toBe(502);

    // Logout revokes the refresh token at the IdP.
    const logout = await browser.request(`${th.base}${API}/clients/default/logout`, {
      method: 'POST',
      headers: { origin: th.base, 'x-xsrf-token': secrets.get('XSRF token')!, accept: 'application/json' },
    });
    expect(logout.status).toBe(200);

    expect(receiver.posts).toHaveLength(0);
    th.child.kill('SIGTERM');
    expect((await th.exit).code, th.output()).toBe(0);

    expect(receiver.posts.length).toBeGreaterThan(0);
    for (const post of receiver.posts) {
      expect(post.contentType).toContain('application/json');
      expect(post.headers['x-collector-key']).toBe('k3y');
      for (const [what, secret] of secrets) expect(post.body.includes(secret), `${what} in an exported span`).toBe(false);
    }
    const spans = spansOf(receiver);
    expect(new Set(spans.map((s) => s.service))).toEqual(new Set(['th-under-test']));
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const children = (parent: ReceivedSpan) => spans.filter((s) => s.parentSpanId === parent.spanId);

    // The proxied request: server span in the caller's trace, under the caller's span; its upstream call under it.
    const request = spans.find((s) => s.kind === SERVER && s.traceId === TRACE_ID)!;
    expect(request, JSON.stringify(spans, null, 1)).toBeDefined();
    expect(request.parentSpanId).toBe(PARENT_ID);
    expect(request.name).toBe(`GET ${API}/targets/api/*`);
    expect(request.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.route': `${API}/targets/api/*`,
      'url.path': `${API}/targets/api/echo`,
      'url.query': 'q=REDACTED',
      'http.response.status_code': 200,
    });
    const call = byId.get(forwarded![2]!)!;
    expect(call).toBeDefined();
    expect(call).toMatchObject({ name: 'GET', kind: CLIENT, traceId: TRACE_ID, parentSpanId: request.spanId });
    expect(call.attributes).toMatchObject({
      'http.request.method': 'GET',
      'server.address': '127.0.0.1',
      'server.port': Number(new URL(upstream.url).port),
      'url.full': `${new URL(upstream.url).origin}/echo?q=REDACTED`,
      'token_handler.target': 'api',
      'http.response.status_code': 200,
    });

    // The malformed one started a trace of its own, whose upstream call is the parent the upstream saw.
    const freshCall = byId.get(restarted![2]!)!;
    expect(freshCall.traceId).toBe(restarted![1]);
    expect(byId.get(freshCall.parentSpanId!)).toMatchObject({ kind: SERVER, parentSpanId: undefined, traceId: restarted![1] });

    // The login callback: the code exchange (IdP) and the new session (store) are its children.
    const callback = spans.find((s) => s.kind === SERVER && s.name === `GET ${API}/clients/:clientId/callback`)!;
    expect(callback, JSON.stringify(spans.map((s) => s.name))).toBeDefined();
    expect(callback.attributes['url.query']).toBe('code=REDACTED&state=REDACTED&iss=REDACTED');
    const underCallback = children(callback);
    const exchange = underCallback.find((s) => s.name === 'oidc authorization_code')!;
    expect(exchange, JSON.stringify(underCallback.map((s) => s.name))).toBeDefined();
    expect(exchange.kind).toBe(CLIENT);
    expect(exchange.attributes).toMatchObject({ 'server.address': new URL(shortIdp.issuer).host, 'oauth.grant_type': 'authorization_code' });
    const create = underCallback.find((s) => s.name === 'store create')!;
    expect(create).toBeDefined();
    expect(create.attributes).toEqual({ 'db.system.name': 'sqlite', 'db.operation.name': 'create' });
    expect(create.traceId).toBe(callback.traceId);

    // The refresh happened inside the proxied request: its span is a child of that request's span.
    const refreshedRequest = byId.get(byId.get(refreshedParent)!.parentSpanId!)!;
    expect(refreshedRequest.kind).toBe(SERVER);
    const refresh = children(refreshedRequest).find((s) => s.name === 'oidc refresh_token')!;
    expect(refresh, JSON.stringify(children(refreshedRequest).map((s) => s.name))).toBeDefined();
    expect(refresh.attributes).toMatchObject({ 'oauth.grant_type': 'refresh_token', 'server.address': new URL(shortIdp.issuer).host });

    const logoutSpan = spans.find((s) => s.kind === SERVER && s.name === `POST ${API}/clients/:clientId/logout`)!;
    expect(logoutSpan).toBeDefined();
    expect(children(logoutSpan).map((s) => s.name)).toEqual(expect.arrayContaining(['oidc revocation', 'store delete']));

    const userinfoSpan = spans.find((s) => s.kind === SERVER && s.name === 'GET /userinfo')!;
    expect(children(userinfoSpan).map((s) => s.name)).toContain('oidc userinfo');

    const down = spans.find((s) => s.kind === CLIENT && s.attributes['token_handler.target'] === 'down')!;
    expect(down).toMatchObject({ traceId: TRACE_ID, name: 'GET' });
    expect(down.attributes['error.type']).toBe('unavailable');
    expect(down.status).toBe(2);
    expect(byId.get(down.parentSpanId!)).toMatchObject({ kind: SERVER, parentSpanId: '1'.repeat(16) });
    expect(byId.get(down.parentSpanId!)!.attributes['http.response.status_code']).toBe(502);

    const wsCall = byId.get(wsForwarded![2]!)!;
    expect(wsCall).toMatchObject({ kind: CLIENT, name: 'GET', traceId: TRACE_ID });
    expect(wsCall.attributes).toMatchObject({ 'token_handler.target': 'live', 'http.response.status_code': 101, 'url.full': `${new URL(upstream.url).origin}/ws` });
    expect(byId.get(wsCall.parentSpanId!)).toMatchObject({ kind: SERVER, name: `GET ${API}/targets/live/*`, parentSpanId: wsParent });

    // Discovery of the IdP (on the first login): a span of its own kind.
    expect(spans.find((s) => s.name === 'oidc discovery')?.attributes).toEqual({ 'server.address': new URL(shortIdp.issuer).host });

    // Work outside any request: a trace of its own.
    expect(spans.find((s) => s.name === 'store close')).toMatchObject({ parentSpanId: undefined, kind: CLIENT });
  });
});
