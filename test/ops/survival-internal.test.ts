/**
 * No request can take the process down (issue #17), on the paths added since survival.test.ts: the
 * forward-auth listener, configuration reload, and targets by service URN through a directory. Every bad
 * input gets a clear answer (problem+json with the right status, or the HTTP parser's own 4xx) and loses
 * nothing; after each, the same process still serves a normal request, and no token reaches the logs.
 *
 * Forward-auth runs in-process (the refresh test makes the stored access token look expired, as
 * test/proxy/forwardAuth.test.ts does, and holds the IdP's token endpoint on a gate: no timer is raced);
 * reload and the directory run the service as a child process, as test/ops/reload.test.ts and
 * test/proxy/directory.test.ts do.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type TokenHandlerApp } from '../../src/app.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { forwardAuthAddress } from '../../src/proxy/forwardAuth.ts';
import { tempDir, testClient, testConfig, testTarget } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { eventually, replaceFile, startService, upstreamOf } from '../support/reload.ts';
import type { Running } from '../support/process.ts';
import { expireAccessToken } from '../support/sessions.ts';
import { login } from '../fleet/support.ts';
import { rawRequest, type RawResponse } from '../proxy/support.ts';
import { eventually as pollUntil, memoryLogger, send } from './support.ts';

/** 4 KB of every byte value, control characters and NUL first: no protocol, no text format. */
const BINARY = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7) % 256)).toString('latin1');

/** A problem+json refusal that carries no token. */
function expectProblem(res: RawResponse, status: number, error: string): void {
  expect(res.status, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(JSON.parse(res.body)).toMatchObject({ status, error });
  expect(res.headers.authorization).toBeUndefined();
  expect(res.body).not.toMatch(/eyJ/);
}

/** Writes `text` on a raw connection; resolves with what the server answered before closing (or after `destroyAfterWrite`, nothing). */
function rawExchange(port: number, text: string, options: { destroyAfterWrite?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const socket: Socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(answer));
    socket.write(text, 'latin1', () => {
      if (options.destroyAfterWrite) socket.destroy();
    });
  });
}

/** The status of a raw HTTP answer (`HTTP/1.1 431 ...`), 0 when nothing came back. */
function statusOf(answer: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
}

describe('the forward-auth listener keeps serving', () => {
  let idp: DevIdp;
  let th: TokenHandlerApp;
  let base: string;
  let check: string;
  let checkPort: number;
  let session: string;
  const logs = memoryLogger('info');
  const tokensSeen = new Set<string>();
  /** When set, the next refresh grant waits at the IdP's door until released. */
  let gate: { arrived: () => void; released: Promise<void> } | undefined;

  beforeAll(async () => {
    idp = await startDevIdp({
      rotateRefreshToken: true,
      intercept: async (req, _res, url) => {
        if (gate && req.method === 'POST' && url.pathname.endsWith('/token')) {
          const held = gate;
          gate = undefined;
          held.arrived();
          await held.released;
        }
        return false;
      },
    });
    th = await buildApp(
      testConfig({
        clients: [testClient({ issuer: idp.issuer })],
        targets: [
          testTarget({ id: 'api', url: 'http://127.0.0.1:9/echo', mountPath: '/api' }),
          testTarget({ id: 'orders', url: 'http://127.0.0.1:9/echo', mountPath: '/api/orders', methods: ['GET', 'HEAD'] }),
        ],
        forwardAuthListen: { host: '127.0.0.1', port: 0 },
      }),
      { sweeper: false, logger: logs.logger },
    );
    await th.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(th.app.server.address() as AddressInfo).port}`;
    checkPort = forwardAuthAddress(th.app)!.port;
    check = `http://127.0.0.1:${checkPort}`;
    session = await login(createBrowser(), base);
  });

  afterAll(async () => {
    await th?.app.close();
    await idp?.close();
  });

  /** A normal check (nginx's headers) for the live session: 200 with its access token. */
  async function allowed(uri = '/api/items'): Promise<string> {
    const res = await rawRequest(check, '/', { headers: { cookie: `session=${session}`, 'x-original-method': 'GET', 'x-original-uri': uri } });
    expect(res.status, res.body).toBe(200);
    expect(res.headers.authorization).toMatch(/^Bearer \S+$/);
    const token = String(res.headers.authorization).slice('Bearer '.length);
    tokensSeen.add(token);
    return token;
  }

  /** Both listeners of the same app still answer. */
  async function stillServing(): Promise<void> {
    await allowed();
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  }

  it('a check aborted by the gateway midway through its headers, and midway through a body', async () => {
    const cut = await rawExchange(checkPort, `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: session=${session}\r\nX-Original-Method: GET\r\nX-Origi`, { destroyAfterWrite: true });
    expect(cut).toBe('');
    // Envoy may send the original body: 4 MB announced, 256 KB sent, then the connection dropped.
    const body = Buffer.alloc(4 * 1024 * 1024, 0x61);
    const res = await send(`${check}/api/upload`, {
      method: 'POST',
      headers: { cookie: `session=${session}`, 'content-type': 'application/octet-stream', 'content-length': String(body.length) },
      body,
      abortAfterBytes: 256 * 1024,
    });
    expect(res).toEqual({ aborted: true });
    await stillServing();
    // Logged as abandoned by the gateway, not as a failed check.
    await pollUntil(async () => expect(logs.lines().some((line) => line.msg === 'forward-auth check abandoned: the gateway closed the connection')).toBe(true));
  });

  it('malformed original-request headers: 403 problem+json (nginx knows only 401 and 403), never a token', async () => {
    const cookie = `session=${session}`;
    const cases: [Record<string, string>, string][] = [
      [{ cookie, 'x-forwarded-method': 'GET', 'x-forwarded-uri': 'garbage without a slash' }, 'invalid_forward_auth_request'],
      [{ cookie, 'x-forwarded-method': 'GET', 'x-forwarded-uri': 'http://evil.example/api/x' }, 'invalid_forward_auth_request'],
      [{ cookie, 'x-original-uri': '/api/x' }, 'invalid_forward_auth_request'],
      [{ cookie, 'x-forwarded-method': 'GET' }, 'invalid_forward_auth_request'],
      [{ cookie, 'x-original-method': 'G E T', 'x-original-uri': '/api/x' }, 'invalid_forward_auth_request'],
      [{ cookie, 'x-original-method': '<script>', 'x-original-uri': '/api/x' }, 'invalid_forward_auth_request'],
      [{ cookie, 'x-original-method': 'GET', 'x-original-uri': '/api/%zz%' }, 'invalid_path'],
      [{ cookie, 'x-original-method': 'GET', 'x-original-uri': '/api/%C0%AF..%C0%AF' }, 'invalid_path'],
      [{ cookie, 'x-original-method': 'GET', 'x-original-uri': '/api/x%0d%0aSet-Cookie:%20a=b' }, 'invalid_path'],
      [{ cookie, 'x-original-method': 'GET', 'x-original-uri': '/api/%2e%2e/%2e%2e/admin' }, 'invalid_path'],
      [{ cookie, 'x-original-method': 'GET', 'x-original-uri': `/api/${'%ff'.repeat(2000)}` }, 'invalid_path'],
      [{ cookie, 'x-original-method': 'PROPFIND', 'x-original-uri': '/api/orders/1' }, 'method_not_allowed'],
      [{ cookie, 'x-original-method': 'GET', 'x-original-uri': '/api/x', 'x-http-method-override': 'DELETE, PUT' }, 'invalid_method_override'],
      [{ cookie, 'x-original-method': 'GET', 'x-original-uri': '/api/x', 'x-forwarded-proto': 'gopher' }, 'invalid_forwarded_proto'],
    ];
    for (const [headers, error] of cases) {
      const res = await rawRequest(check, '/', { headers });
      expectProblem(res, 403, error);
      expect(res.headers['cache-control']).toBe('no-store');
    }
    await stillServing();
  });

  it('headers the HTTP parser refuses (CRLF inside a value, a bare LF, huge headers): its 4xx, the connection closed', async () => {
    const head = `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: session=${session}\r\nX-Original-Method: GET\r\n`;
    // A CR inside the URI header's value, smuggling a second header line.
    expect(statusOf(await rawExchange(checkPort, `${head}X-Original-URI: /api/x\rX-Injected: 1\r\n\r\n`))).toBe(400);
    expect(statusOf(await rawExchange(checkPort, `${head}X-Original-URI: /api/x\nTransfer-Encoding: chunked\r\n\r\n`))).toBe(400);
    // 64 KB of URI: over Node's 16 KB header limit.
    expect(statusOf(await rawExchange(checkPort, `${head}X-Original-URI: /api/${'a'.repeat(64 * 1024)}\r\n\r\n`))).toBe(431);
    // Bytes that are no HTTP at all.
    expect(statusOf(await rawExchange(checkPort, `${BINARY}\r\n\r\n`))).toBe(400);
    await stillServing();
  });

  it('a missing, garbage or oversized session cookie: 401 login_required without a token', async () => {
    const headers = { 'x-original-method': 'GET', 'x-original-uri': '/api/x' };
    for (const cookie of [undefined, 'session=', 'session=%%%zz', `session=${'A'.repeat(8000)}`, 'session=a; session=b', `theme=dark; session=${session.slice(0, -4)}xxxx`]) {
      const res = await rawRequest(check, '/', { headers: cookie === undefined ? headers : { ...headers, cookie } });
      expectProblem(res, 401, 'login_required');
    }
    await stillServing();
  });

  it('a request for no target: 403 unknown_target', async () => {
    for (const uri of ['/', '/elsewhere', '/apix/items', '/token-handler/v1/sessions']) {
      const res = await rawRequest(check, '/', { headers: { cookie: `session=${session}`, 'x-original-method': 'GET', 'x-original-uri': uri } });
      expectProblem(res, 403, 'unknown_target');
    }
    await stillServing();
  });

  it('the gateway closes the connection while the check refreshes the token: the refresh is kept, nothing is lost', async () => {
    const before = await allowed();
    await expireAccessToken(th, session);
    idp.resetCounters();
    let release!: () => void;
    const arrived = new Promise<void>((resolve) => {
      gate = { arrived: resolve, released: new Promise<void>((r) => (release = r)) };
    });
    // The check starts the refresh; the refresh waits at the IdP; the gateway gives up and closes.
    const abandoned = httpRequest(`${check}/`, { headers: { cookie: `session=${session}`, 'x-original-method': 'GET', 'x-original-uri': '/api/a' }, agent: false });
    abandoned.on('error', () => undefined);
    abandoned.end();
    await arrived;
    abandoned.destroy();
    release();
    // The next check gets the refreshed token (joining the refresh, or reading its result): one grant, no reuse.
    const after = await allowed('/api/b');
    expect(after).not.toBe(before);
    expect(idp.refreshGrantCount).toBe(1);
    expect(idp.refreshReuseCount).toBe(0);
    expect(await allowed('/api/c')).toBe(after);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  it('follows a configuration reload: a removed target is refused, an added one answered; an invalid reload keeps the targets', async () => {
    const targets = th.ctx.config.targets;
    try {
      th.reconfigure({ ...th.ctx.config, targets: [testTarget({ id: 'moved', url: 'http://127.0.0.1:9/echo', mountPath: '/moved' })] });
      const removed = await rawRequest(check, '/', { headers: { cookie: `session=${session}`, 'x-original-method': 'GET', 'x-original-uri': '/api/items' } });
      expectProblem(removed, 403, 'unknown_target');
      await allowed('/moved/items');
      expect(() => th.reconfigure({ ...th.ctx.config, targets: [testTarget({ id: 'bad', url: 'http://127.0.0.1:9/', mountPath: '/bad', clientId: 'nobody' })] })).toThrow(/nobody/);
      await allowed('/moved/items');
    } finally {
      th.reconfigure({ ...th.ctx.config, targets });
    }
    await stillServing();
  });

  it('logs every refusal without a token or the session cookie, and no check as failed', () => {
    const text = logs.text();
    expect(tokensSeen.size).toBeGreaterThan(1);
    for (const token of tokensSeen) expect(text).not.toContain(token);
    expect(text).not.toContain(session);
    expect(logs.lines().filter((line) => line.msg === 'forward-auth check failed')).toEqual([]);
  });
});

describe('the forward-auth listener with targets by service URN', () => {
  it('starts, answers for a URN the directory has, and 503 problem+json for one it has not', async () => {
    const dir = tempDir('th-survival-fa-urn-');
    const directoryFile = join(dir, 'directory.json');
    writeFileSync(directoryFile, JSON.stringify({ 'urn:ads:platform:known': 'http://127.0.0.1:9/v1' }));
    const th = await buildApp(
      testConfig({
        targets: [
          testTarget({ id: 'known', url: 'urn:ads:platform:known', mountPath: '/known', tokenRequirement: 'none' }),
          testTarget({ id: 'missing', url: 'urn:ads:platform:missing', mountPath: '/missing', tokenRequirement: 'none' }),
        ],
        directory: { sources: [directoryFile], refreshMs: 60_000 },
        forwardAuthListen: { host: '127.0.0.1', port: 0 },
      }),
      { sweeper: false },
    );
    try {
      await th.app.listen({ host: '127.0.0.1', port: 0 });
      const check = `http://127.0.0.1:${forwardAuthAddress(th.app)!.port}`;
      const known = await rawRequest(check, '/', { headers: { 'x-original-method': 'GET', 'x-original-uri': '/known/x' } });
      expect(known.status, known.body).toBe(200);
      const missing = await rawRequest(check, '/', { headers: { 'x-original-method': 'GET', 'x-original-uri': '/missing/x' } });
      expectProblem(missing, 503, 'target_unresolved');
      expect(missing.headers['retry-after']).toBe('5');
      expect(JSON.parse(missing.body).detail).toContain('urn:ads:platform:missing');
      expect((await rawRequest(check, '/', { headers: { 'x-original-method': 'GET', 'x-original-uri': '/known/y' } })).status).toBe(200);
    } finally {
      await th.app.close();
    }
  });
});

/** An upstream answering `{ upstream, path, length }` once the request body has ended; `/slow` waits for `releaseSlow()`. */
interface StreamUpstream {
  url: string;
  /** Resolves when the first bytes of a POST /upload body arrived. */
  uploadStarted: Promise<void>;
  slowArrived: Promise<void>;
  releaseSlow(): void;
  close(): Promise<void>;
}

async function startStreamUpstream(name: string): Promise<StreamUpstream> {
  let started!: () => void;
  const uploadStarted = new Promise<void>((resolve) => (started = resolve));
  let arrived!: () => void;
  const slowArrived = new Promise<void>((resolve) => (arrived = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const server: Server = createServer((req, res) => {
    let length = 0;
    req.on('data', (chunk: Buffer) => {
      if (length === 0 && req.url?.endsWith('/upload')) started();
      length += chunk.length;
    });
    req.on('end', () => {
      const answer = (): void => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ upstream: name, path: req.url, length }));
      };
      if (req.url?.endsWith('/slow')) {
        arrived();
        void released.then(answer);
      } else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    uploadStarted,
    slowArrived,
    releaseSlow: release,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** What a same-origin browser call adds to pass the CSRF check (double-submit XSRF token, Origin). */
function sameOrigin(base: string): Record<string, string> {
  return { origin: base, cookie: 'XSRF-TOKEN=survival-xsrf', 'x-xsrf-token': 'survival-xsrf' };
}

/** The process has not exited. */
function alive(th: Running): void {
  expect(th.child.exitCode, th.stdout + th.stderr).toBeNull();
  expect(th.child.signalCode).toBeNull();
}

const target = (id: string, url: string) => ({ id, url, mountPath: `/api/${id}`, tokenRequirement: 'none' });

describe('configuration reload keeps serving', { timeout: 120_000 }, () => {
  let a: StreamUpstream;
  let b: StreamUpstream;
  let dir: string;

  beforeAll(async () => {
    a = await startStreamUpstream('a');
    b = await startStreamUpstream('b');
    dir = mkdtempSync(join(tmpdir(), 'th-survival-reload-'));
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  it('an invalid file on SIGHUP (broken, binary, wrong shape, unservable, deleted, huge) is refused with one error line; the old configuration serves', async () => {
    const file = join(dir, 'sighup.json');
    const good = JSON.stringify({ targets: [target('first', a.url)] });
    writeFileSync(file, good);
    const { th, base } = await startService(file, ['--config_watch=false']);
    const refusals = (): number => th.stdout.split('\n').filter((line) => line.includes('configuration reload refused')).length;
    try {
      expect(await upstreamOf(base, '/api/first/x')).toBe('a');
      const bad: [string, string | undefined][] = [
        ['broken JSON', '{"targets": [{"id": "first", '],
        ['binary', BINARY],
        ['targets not a list', JSON.stringify({ targets: 'nope' })],
        ['a target without a URL', JSON.stringify({ targets: [{ id: 'first', mountPath: '/api/first' }] })],
        ['a target to a non-HTTP URL', JSON.stringify({ targets: [target('first', 'ftp://127.0.0.1/')] })],
        ['a target of an unknown client', JSON.stringify({ targets: [{ ...target('first', b.url), tokenRequirement: 'user', client: 'nobody' }] })],
        ['8 MB of garbage', `targets: ${'x'.repeat(8 * 1024 * 1024)}`],
        ['deleted', undefined],
      ];
      for (const [what, text] of bad) {
        const before = refusals();
        if (text === undefined) rmSync(file);
        else replaceFile(file, text);
        th.child.kill('SIGHUP');
        await eventually(async () => refusals() === before + 1, `the refusal of ${what}`);
        expect(th.stdout.split('\n').filter((line) => line.includes('configuration reload refused')).at(-1), what).toContain(file);
        alive(th);
        expect(await upstreamOf(base, '/api/first/x'), what).toBe('a');
        const unknown = await fetch(`${base}/api/second/x`);
        expect(unknown.status).toBe(404);
        expect(unknown.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        await unknown.body?.cancel();
      }
      // A good file again applies.
      replaceFile(file, JSON.stringify({ targets: [target('first', a.url), target('second', b.url)] }));
      th.child.kill('SIGHUP');
      await eventually(async () => (await upstreamOf(base, '/api/second/x')) === 'b', 'the good file after the bad ones');
      alive(th);
    } finally {
      expect((await th.stop()).code).toBe(0);
    }
  });

  it('a reload while requests are in flight (a streamed upload, a slow answer) removes their target without cutting them', async () => {
    const file = join(dir, 'watched.json');
    writeFileSync(file, JSON.stringify({ targets: [target('up', a.url)] }));
    const { th, base } = await startService(file);
    try {
      const total = 8 * 1024 * 1024;
      const chunk = Buffer.alloc(256 * 1024, 0x62);
      let applied!: () => void;
      const reloaded = new Promise<void>((resolve) => (applied = resolve));
      const upload = new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(`${base}/api/up/upload`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'content-length': String(total), ...sameOrigin(base) }, agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.write(chunk);
        // The rest of the body is sent only once the reload has been applied.
        void (async () => {
          await a.uploadStarted;
          await reloaded;
          for (let sent = chunk.length; sent < total; sent += chunk.length) {
            if (!req.write(chunk)) await new Promise((resolve) => req.once('drain', resolve));
          }
          req.end();
        })();
      });
      const slow = fetch(`${base}/api/up/slow`);
      // Both requests reach the upstream (an early answer, e.g. a refusal, fails the test instead of hanging it).
      await Promise.race([
        Promise.all([a.uploadStarted, a.slowArrived]),
        upload.then((res) => {
          throw new Error(`the upload was answered before its body was sent: ${res.status} ${res.body}`);
        }),
      ]);

      // The file changes (no signal): the target of both requests is removed, another added.
      replaceFile(file, JSON.stringify({ targets: [target('other', b.url)] }));
      await eventually(async () => (await upstreamOf(base, '/api/other/x')) === 'b', 'the reload');
      expect(await upstreamOf(base, '/api/up/x')).toBe(404);
      applied();
      a.releaseSlow();

      const uploaded = await upload;
      expect(uploaded.status, uploaded.body).toBe(200);
      expect(JSON.parse(uploaded.body)).toEqual({ upstream: 'a', path: '/upload', length: total });
      const slowRes = await slow;
      expect(slowRes.status).toBe(200);
      expect(await slowRes.json()).toMatchObject({ upstream: 'a', path: '/slow' });
      alive(th);
      expect(await upstreamOf(base, '/api/other/y')).toBe('b');
    } finally {
      expect((await th.stop()).code).toBe(0);
    }
  });
});

type DirectoryMode = 'ok' | 'status-500' | 'reset' | 'not-json' | 'huge' | 'oversized' | 'oversized-chunked' | 'wrong-shape' | 'not-http-urls';

/** An HTTP directory in ADSP's shape whose answer the test chooses; counts the requests answered per mode. */
async function startDirectory(entries: Record<string, string>): Promise<{ url: string; mode: DirectoryMode; served: Map<DirectoryMode, number>; close(): Promise<void> }> {
  const state = { mode: 'ok' as DirectoryMode, served: new Map<DirectoryMode, number>() };
  const server: Server = createServer((req, res) => {
    const mode = state.mode;
    state.served.set(mode, (state.served.get(mode) ?? 0) + 1);
    const json = (body: string): void => {
      res.setHeader('content-type', 'application/json');
      res.end(body);
    };
    if (mode === 'reset') return void req.socket.destroy();
    if (mode === 'status-500') {
      res.statusCode = 500;
      return void res.end('{"error":"down"}');
    }
    if (mode === 'not-json') return json('<html><body>502 Bad Gateway</body></html>');
    if (mode === 'huge') return json(`[${'{"urn":"urn:ads:platform:junk","url":"not a url"},'.repeat(400_000)}`);
    if (mode === 'oversized' || mode === 'oversized-chunked') {
      // Valid, and it would move every URN to a closed port, but over 4 MB (MAX_DIRECTORY_BYTES): refused unread.
      const moved = Object.keys(entries).map((urn) => ({ urn, url: 'http://127.0.0.1:9/' }));
      const body = JSON.stringify([...moved, ...Array.from({ length: 100_000 }, (_, i) => ({ urn: `urn:ads:platform:junk-${i}`, url: 'http://127.0.0.1:9/' }))]);
      res.setHeader('content-type', 'application/json');
      if (mode === 'oversized') return void res.end(body);
      // No Content-Length: the limit applies while reading.
      for (let i = 0; i < body.length; i += 65_536) res.write(body.slice(i, i + 65_536));
      return void res.end();
    }
    if (mode === 'wrong-shape') return json('42');
    if (mode === 'not-http-urls') return json(JSON.stringify(Object.keys(entries).map((urn) => ({ urn, url: 'file:///etc/passwd' }))));
    json(JSON.stringify(Object.entries(entries).map(([urn, url]) => ({ urn, url }))));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(state, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/directory/v2/namespaces/platform/entries`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

describe('targets by service URN keep serving whatever the directory answers', { timeout: 120_000 }, () => {
  let a: StreamUpstream;
  let directory: Awaited<ReturnType<typeof startDirectory>>;
  let dir: string;

  beforeAll(async () => {
    a = await startStreamUpstream('a');
    directory = await startDirectory({ 'urn:ads:platform:svc': a.url });
    dir = mkdtempSync(join(tmpdir(), 'th-survival-directory-'));
  });
  afterAll(async () => {
    await Promise.all([a?.close(), directory?.close()]);
  });

  async function expectUnresolved(base: string, path: string, urn: string): Promise<void> {
    const res = await fetch(`${base}${path}`);
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(await res.json()).toMatchObject({ status: 503, error: 'target_unresolved', detail: expect.stringContaining(urn) });
  }

  it('starts with the directory down, resolves when it answers, and keeps its entries through every bad answer', async () => {
    directory.mode = 'reset';
    const file = join(dir, 'config.json');
    writeFileSync(
      file,
      JSON.stringify({
        directory_url: [directory.url],
        directory_refresh: '200ms',
        targets: [target('svc', 'urn:ads:platform:svc'), target('missing', 'urn:ads:platform:missing')],
      }),
    );
    const { th, base } = await startService(file);
    const failures = (): number => th.stdout.split('\n').filter((line) => line.includes('service directory could not be read')).length;
    try {
      // Down at startup: the service starts, its URN targets answer 503 until the directory answers.
      expect(failures()).toBeGreaterThan(0);
      await expectUnresolved(base, '/api/svc/x', 'urn:ads:platform:svc');
      directory.mode = 'ok';
      await eventually(async () => (await upstreamOf(base, '/api/svc/x')) === 'a', 'the directory back up');

      for (const mode of ['status-500', 'reset', 'not-json', 'huge', 'oversized', 'oversized-chunked', 'wrong-shape', 'not-http-urls'] as const) {
        const before = failures();
        const served = directory.served.get(mode) ?? 0;
        directory.mode = mode;
        if (mode === 'not-http-urls') {
          // Read without error, but no usable entry: the URN is no longer in the directory.
          await eventually(async () => (await upstreamOf(base, '/api/svc/x')) === 503, 'the entries without an http(s) URL');
          await expectUnresolved(base, '/api/svc/x', 'urn:ads:platform:svc');
        } else {
          await eventually(async () => (directory.served.get(mode) ?? 0) > served && failures() > before, `the failed read (${mode}) logged`);
          expect(await upstreamOf(base, '/api/svc/x'), mode).toBe('a');
        }
        alive(th);
        await expectUnresolved(base, '/api/missing/x', 'urn:ads:platform:missing');
        directory.mode = 'ok';
        await eventually(async () => (await upstreamOf(base, '/api/svc/x')) === 'a', `the directory answering again after ${mode}`);
      }
      alive(th);
    } finally {
      directory.mode = 'ok';
      expect((await th.stop()).code).toBe(0);
    }
  });
});
