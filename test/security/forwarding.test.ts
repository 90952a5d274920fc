/**
 * What a client may tell token-handler, and through it an upstream, about where a request came from and
 * what it is (issue 18, items 3, 5, 6, 7): a trusted X-Forwarded-Proto other than http/https (3), Upgrade
 * protocols other than WebSocket (5), method-override headers (6), client-chosen forwarding headers (7).
 * Every attack runs against a running token-handler in front of a real upstream that reports what
 * reached it.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { rawRequest, startApp, type RunningApp } from '../proxy/support.ts';
import { portOf, rawExchange, statuses } from './support.ts';

const API = '/token-handler/v1';
const T = `${API}/targets`;

/** An upstream that echoes each request as JSON and answers every upgrade (any protocol) with 101. */
interface ReportingUpstream {
  url: string;
  /** Upgrades that reached it, with their headers. */
  upgrades: IncomingHttpHeaders[];
  requests: number;
  close(): Promise<void>;
}

async function startReportingUpstream(): Promise<ReportingUpstream> {
  const upgrades: IncomingHttpHeaders[] = [];
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests += 1;
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers }));
    });
  });
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('upgrade', (req, socket) => {
    upgrades.push(req.headers);
    socket.end(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${String(req.headers.upgrade)}\r\n\r\ntunnel open`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    upgrades,
    get requests() {
      return requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

interface Echo {
  method: string;
  url: string;
  headers: Record<string, string | undefined>;
}

const WS_HANDSHAKE = 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

describe('forwarding headers, upgrades and method overrides', () => {
  let idp: DevIdp;
  let upstream: ReportingUpstream;
  /** Trusts only 10.0.0.0/8: the test's own connections (127.0.0.1) are untrusted peers. */
  let untrusting: RunningApp;
  /** Trusts every peer (--trust_proxy=true), as behind a reverse proxy. */
  let trusting: RunningApp;

  function config(trustProxy: Config['trustProxy']): Config {
    return testConfig({
      trustProxy,
      clients: [testClient({ issuer: idp.issuer, postLogoutRedirectUrl: '/bye' })],
      targets: [
        testTarget({ id: 'api', url: upstream.url, tokenRequirement: 'none', methods: ['GET'] }),
        testTarget({ id: 'ws', url: upstream.url, tokenRequirement: 'none', websocket: true }),
        testTarget({ id: 'legacy', url: upstream.url, tokenRequirement: 'none', methods: ['GET', 'POST'], allowMethodOverride: true }),
      ],
    });
  }

  beforeAll(async () => {
    idp = await startDevIdp();
    upstream = await startReportingUpstream();
    untrusting = await startApp(config(['10.0.0.0/8']));
    trusting = await startApp(config(true));
  });
  afterAll(async () => {
    await untrusting?.close();
    await trusting?.close();
    await upstream?.close();
    await idp?.close();
  });

  const echoOf = async (res: { status: number; body: string }): Promise<Echo> => {
    expect(res.status, res.body).toBe(200);
    return JSON.parse(res.body) as Echo;
  };

  describe('18.3: a trusted X-Forwarded-Proto other than http or https', () => {
    const hostile = ['https://evil.example/?', 'javascript', 'javascript:alert(1)//', 'HTTPS', 'ftp'];

    it.each(hostile)('%j never becomes part of the post-logout redirect: 400 invalid_forwarded_proto', async (proto) => {
      const res = await rawRequest(trusting.base, `${API}/clients/default/logout`, { headers: { 'x-forwarded-proto': proto } });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_forwarded_proto' });
      expect(res.headers.location).toBeUndefined();
    });

    it.each(hostile)('%j never becomes part of the login redirect_uri, nor is a request proxied with it', async (proto) => {
      const before = upstream.requests;
      for (const path of [`${API}/clients/default/auth`, '/login', `${T}/api/x`]) {
        const res = await rawRequest(trusting.base, path, { headers: { 'x-forwarded-proto': proto } });
        expect(res.status, path).toBe(400);
        expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_forwarded_proto' });
        expect(res.headers.location).toBeUndefined();
      }
      expect(upstream.requests).toBe(before);
    });

    it.each(hostile)('%j on a WebSocket upgrade: 400, no upgrade reaches the upstream', async (proto) => {
      const before = upstream.upgrades.length;
      const host = new URL(trusting.base).host;
      const raw = await rawExchange(
        portOf(trusting.base),
        `GET ${T}/ws/socket HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${WS_HANDSHAKE}Origin: https://${host}\r\nX-Forwarded-Proto: ${proto}\r\n\r\n`,
      );
      expect(statuses(raw)).toEqual([400]);
      expect(raw).toContain('invalid_forwarded_proto');
      expect(upstream.upgrades.length).toBe(before);
    });

    it('http and https are honoured (control): the redirects use the forwarded scheme', async () => {
      const host = new URL(trusting.base).host;
      const logout = await rawRequest(trusting.base, `${API}/clients/default/logout`, { headers: { 'x-forwarded-proto': 'https' } });
      expect(logout.status).toBe(302);
      expect(logout.headers.location).toBe(`https://${host}/bye`);
      const login = await rawRequest(trusting.base, `${API}/clients/default/auth`, { headers: { 'x-forwarded-proto': 'https' } });
      expect(login.status).toBe(302);
      expect(new URL(login.headers.location!).searchParams.get('redirect_uri')).toBe(`https://${host}${API}/clients/default/callback`);
    });

    it('from an untrusted peer the header decides nothing', async () => {
      const res = await rawRequest(untrusting.base, `${API}/clients/default/logout`, { headers: { 'x-forwarded-proto': 'javascript' } });
      expect(res.status).toBe(302);
      expect(res.headers.location).toBe(`${untrusting.base}/bye`);
    });
  });

  describe('18.5: only Upgrade: websocket to a WebSocket target switches protocols', () => {
    const h2c = { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA' };

    it('GET /sessions with Upgrade: h2c is served as plain HTTP', async () => {
      const res = await rawRequest(untrusting.base, `${API}/sessions`, { headers: h2c });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toEqual([]);
    });

    it('Upgrade: h2c to a WebSocket target is proxied as plain HTTP: no tunnel, no Upgrade upstream', async () => {
      const before = upstream.upgrades.length;
      const echo = await echoOf(await rawRequest(untrusting.base, `${T}/ws/data`, { headers: h2c }));
      expect(echo.url).toBe('/data');
      expect(echo.headers.upgrade).toBeUndefined();
      expect(echo.headers['http2-settings']).toBeUndefined();
      expect(upstream.upgrades.length).toBe(before);
    });

    it('an h2c upgrade on a raw socket gets an HTTP answer, never 101', async () => {
      const before = upstream.upgrades.length;
      const raw = await rawExchange(
        portOf(untrusting.base),
        `GET ${T}/ws/data HTTP/1.1\r\nHost: ${new URL(untrusting.base).host}\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`,
      );
      expect(statuses(raw)).toEqual([200]);
      expect(raw).not.toContain('tunnel open');
      expect(upstream.upgrades.length).toBe(before);
    });

    it('Upgrade: websocket to a target without WebSocket support is plain HTTP too', async () => {
      const echo = await echoOf(await rawRequest(untrusting.base, `${T}/api/x`, { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } }));
      expect(echo.url).toBe('/x');
      expect(echo.headers.upgrade).toBeUndefined();
    });

    it('a WebSocket upgrade to the WebSocket target still switches (control)', async () => {
      const before = upstream.upgrades.length;
      const host = new URL(untrusting.base).host;
      const raw = await rawExchange(
        portOf(untrusting.base),
        `GET ${T}/ws/socket HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${WS_HANDSHAKE}Origin: http://${host}\r\n\r\n`,
      );
      expect(statuses(raw)).toEqual([101]);
      expect(upstream.upgrades.length).toBe(before + 1);
      expect(upstream.upgrades.at(-1)?.upgrade).toBe('websocket');
    });
  });

  describe('18.6: method-override headers', () => {
    const overrides = { 'x-http-method-override': 'DELETE', 'x-http-method': 'DELETE', 'x-method-override': 'DELETE' };

    it('never reach the upstream of a target that does not opt in', async () => {
      const echo = await echoOf(await rawRequest(untrusting.base, `${T}/api/items/7`, { headers: overrides }));
      expect(echo.method).toBe('GET');
      for (const name of Object.keys(overrides)) expect(echo.headers[name], name).toBeUndefined();
    });

    it('on a target that opts in, name a method of its allow-list (else 405) and pass the CSRF check as that method', async () => {
      const before = upstream.requests;
      const notAllowed = await rawRequest(untrusting.base, `${T}/legacy/items/7`, { headers: { 'x-http-method-override': 'DELETE' } });
      expect(notAllowed.status).toBe(405);
      expect(JSON.parse(notAllowed.body)).toMatchObject({ error: 'method_not_allowed' });
      const forged = await rawRequest(untrusting.base, `${T}/legacy/items/7`, { headers: { 'x-http-method-override': 'POST' } });
      expect(forged.status).toBe(403);
      expect(JSON.parse(forged.body)).toMatchObject({ error: 'csrf_failed' });
      const ambiguous = await rawRequest(untrusting.base, `${T}/legacy/items/7`, { headers: { 'x-http-method-override': 'POST', 'x-http-method': 'GET' } });
      expect(ambiguous.status).toBe(400);
      expect(upstream.requests).toBe(before);

      const csrf = { cookie: 'XSRF-TOKEN=t', 'x-xsrf-token': 't', origin: untrusting.base };
      const echo = await echoOf(await rawRequest(untrusting.base, `${T}/legacy/items/7`, { headers: { ...csrf, 'x-http-method-override': 'POST' } }));
      expect(echo.headers['x-http-method-override']).toBe('POST');
    });
  });

  describe('18.7: client-chosen forwarding headers', () => {
    const chosen = {
      forwarded: 'for=10.1.2.3;proto=https;host=admin.internal',
      'x-real-ip': '10.1.2.3',
      'true-client-ip': '10.1.2.3',
      'x-client-ip': '10.1.2.3',
      'x-forwarded-port': '8443',
      'x-forwarded-prefix': '/admin',
      'x-forwarded-server': 'admin.internal',
      'x-original-host': 'admin.internal',
      'x-host': 'admin.internal',
      'x-original-url': '/admin/users/delete',
      'x-rewrite-url': '/admin/users/delete',
      'x-forwarded-for': '10.1.2.3',
    };

    it('none passes from an untrusted peer; X-Forwarded-For starts at the real peer', async () => {
      const echo = await echoOf(await rawRequest(untrusting.base, `${T}/api/x`, { headers: chosen }));
      for (const name of Object.keys(chosen)) {
        if (name !== 'x-forwarded-for') expect(echo.headers[name], name).toBeUndefined();
      }
      expect(echo.headers['x-forwarded-for']).toBe('127.0.0.1');
      expect(echo.headers['x-forwarded-proto']).toBe('http');
      expect(echo.headers['x-forwarded-host']).toBe(new URL(untrusting.base).host);
    });

    it('none passes on a WebSocket upgrade from an untrusted peer either', async () => {
      const host = new URL(untrusting.base).host;
      const lines = Object.entries(chosen).map(([name, value]) => `${name}: ${value}\r\n`).join('');
      const raw = await rawExchange(
        portOf(untrusting.base),
        `GET ${T}/ws/socket HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${WS_HANDSHAKE}Origin: http://${host}\r\n${lines}\r\n`,
      );
      expect(statuses(raw)).toEqual([101]);
      const seen = upstream.upgrades.at(-1)!;
      for (const name of Object.keys(chosen)) {
        if (name !== 'x-forwarded-for') expect(seen[name], name).toBeUndefined();
      }
      expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    });

    it('from a trusted proxy they pass, and X-Forwarded-For gains the peer', async () => {
      const echo = await echoOf(await rawRequest(trusting.base, `${T}/api/x`, { headers: chosen }));
      expect(echo.headers).toMatchObject({ ...chosen, 'x-forwarded-for': '10.1.2.3, 127.0.0.1' });
    });
  });
});
