/**
 * No request can take the process down (issue #17). A real `node src/main.ts` process, once with
 * `--trust_proxy 127.0.0.1` (as the deployment docs require behind nginx) and once without, proxies
 * requests whose bodies are small, large, aborted by the browser midway, or cut by an upstream that
 * closes early; WebSocket tunnels and Server-Sent Events cut by either side. After each, the same
 * process (same pid, no exit) must still answer.
 */
import { spawn } from 'node:child_process';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { Writable } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { fileURLToPath } from 'node:url';
import type { AddressInfo, Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { buildApp } from '../../src/app.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { createLogger } from '../../src/log.ts';
import { tempDir, testConfig } from '../support/config.ts';
import { createBrowser } from '../support/http.ts';
import { API, login, sleep, startInstance, type Instance } from '../fleet/support.ts';
import { send } from './support.ts';

/** An upstream with the misbehaviours the proxy must survive. */
interface TestUpstream {
  url: string;
  close(): Promise<void>;
}

async function startUpstream(): Promise<TestUpstream> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/close-early') {
      // Reads the first chunk of the body, then drops the connection without answering.
      req.once('data', () => req.socket.destroy());
      return;
    }
    if (path === '/answer-early') {
      // Answers before reading the body, then closes.
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
      res.end('{"error":"too big for me"}');
      return;
    }
    if (path === '/cut-mid-response') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' });
      res.write('partial', () => setTimeout(() => req.socket.destroy(), 10));
      return;
    }
    if (path === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
      let i = 0;
      const timer = setInterval(() => {
        i += 1;
        res.write(`id: ${i}\ndata: tick\n\n`);
        // ?cut=N: the upstream goes away after N events.
        const cut = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('cut') ?? 0);
        if (cut > 0 && i >= cut) {
          clearInterval(timer);
          req.socket.destroy();
        }
      }, 20);
      res.once('close', () => clearInterval(timer));
      return;
    }
    // Anything else: read the whole body and answer its length.
    let length = 0;
    req.on('data', (chunk: Buffer) => (length += chunk.length));
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, length, authorization: req.headers.authorization !== undefined });
      res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: IncomingMessage, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data) => {
        const text = String(data);
        if (text === 'upstream-terminate') ws.terminate();
        else if (text === 'upstream-close') ws.close(1000, 'bye');
        else ws.send(text);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Mode {
  name: string;
  flags: string[];
  /** Headers a trusted reverse proxy in front would add. */
  proxyHeaders(base: string): Record<string, string>;
}

const MODES: Mode[] = [
  {
    name: 'behind a trusted proxy (--trust_proxy 127.0.0.1)',
    flags: ['--trust_proxy=127.0.0.1'],
    proxyHeaders: (base) => ({ 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'http', 'x-forwarded-host': new URL(base).host }),
  },
  { name: 'without a trusted proxy', flags: [], proxyHeaders: () => ({}) },
];

for (const mode of MODES) {
  describe(`the process keeps serving, ${mode.name}`, () => {
    let idp: DevIdp;
    let upstream: TestUpstream;
    let instance: Instance;
    let cookie: string;
    let xsrf: string;

    /** Headers of a same-origin, CSRF-protected API call from the logged-in browser. */
    const apiHeaders = (extra: Record<string, string> = {}): Record<string, string> => ({
      ...mode.proxyHeaders(instance.base),
      cookie: `session=${cookie}; XSRF-TOKEN=${xsrf}`,
      'x-xsrf-token': xsrf,
      origin: instance.base,
      ...extra,
    });

    /** The same process still answers: it has not exited, and a session lookup and a proxied GET work. */
    async function stillServing(): Promise<void> {
      // Late errors (log lines, hooks) run after the response: give them a moment to crash the process.
      await sleep(100);
      expect(instance.child.exitCode, instance.output()).toBeNull();
      expect(instance.child.signalCode).toBeNull();
      const sessions = await fetch(`${instance.base}${API}/sessions`, { headers: apiHeaders() });
      expect(sessions.status).toBe(200);
      expect(((await sessions.json()) as unknown[]).length).toBe(1);
      const get = await fetch(`${instance.base}${API}/targets/api/items`, { headers: apiHeaders() });
      expect(get.status).toBe(200);
      expect(await get.json()).toMatchObject({ method: 'GET', authorization: true });
    }

    beforeAll(async () => {
      idp = await startDevIdp();
      upstream = await startUpstream();
      const dir = tempDir('th-survival-');
      const configFile = join(dir, 'token-handler.json');
      writeFileSync(configFile, JSON.stringify({ targets: [{ id: 'api', url: upstream.url, websocket: true }] }));
      instance = await startInstance({ issuer: idp.issuer, configFile, extra: [...mode.flags, '--max_body_size=8MB'] });
      cookie = await login(createBrowser(), instance.base);
      const res = await fetch(`${instance.base}${API}/sessions`, { headers: { cookie: `session=${cookie}` } });
      await res.arrayBuffer();
      xsrf = /XSRF-TOKEN=([^;]+)/.exec(res.headers.getSetCookie().join('\n'))?.[1] ?? '';
      expect(xsrf).not.toBe('');
    });

    afterAll(async () => {
      await instance?.stop();
      await upstream?.close();
      await idp?.close();
    });

    const small = Buffer.from(JSON.stringify({ item: 'book', quantity: 2 }));
    const large = Buffer.alloc(4 * 1024 * 1024, 0x61);

    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      it(`${method} with a small JSON body`, async () => {
        const res = await send(`${instance.base}${API}/targets/api/orders`, { method, headers: apiHeaders({ 'content-type': 'application/json' }), body: small });
        expect(res, JSON.stringify(res)).toMatchObject({ status: method === 'POST' ? 201 : 200 });
        expect(JSON.parse((res as { body: string }).body)).toMatchObject({ method, length: small.length });
        await stillServing();
      });

      it(`${method} with a 4 MB body`, async () => {
        const res = await send(`${instance.base}${API}/targets/api/upload`, { method, headers: apiHeaders({ 'content-type': 'application/octet-stream' }), body: large });
        expect(res).toMatchObject({ status: method === 'POST' ? 201 : 200 });
        expect(JSON.parse((res as { body: string }).body)).toMatchObject({ length: large.length });
        await stillServing();
      });

      it(`${method} aborted by the browser midway through its body`, async () => {
        const res = await send(`${instance.base}${API}/targets/api/upload`, {
          method,
          headers: apiHeaders({ 'content-type': 'application/octet-stream', 'content-length': String(large.length) }),
          body: large,
          abortAfterBytes: 256 * 1024,
        });
        expect(res).toEqual({ aborted: true });
        await stillServing();
      });

      it(`${method} to an upstream that closes the connection while reading the body`, async () => {
        const res = await send(`${instance.base}${API}/targets/api/close-early`, { method, headers: apiHeaders({ 'content-type': 'application/octet-stream' }), body: large });
        // 502 problem+json, or the connection cut while the body was still being sent: never a crash.
        if ('status' in res) expect(res.status).toBe(502);
        await stillServing();
      });

      it(`${method} to an upstream that answers before reading the body`, async () => {
        const res = await send(`${instance.base}${API}/targets/api/answer-early`, { method, headers: apiHeaders({ 'content-type': 'application/octet-stream' }), body: large });
        if ('status' in res) expect([413, 502]).toContain(res.status);
        await stillServing();
      });
    }

    it('a response cut by the upstream midway', async () => {
      const res = await send(`${instance.base}${API}/targets/api/cut-mid-response`, { method: 'GET', headers: apiHeaders() });
      // The status line was sent: the browser sees a cut body (or a 502 if nothing was sent yet).
      expect(res).not.toMatchObject({ status: 200, body: expect.stringMatching(/.{100000}/) });
      await stillServing();
    });

    it('Server-Sent Events cut by the browser', async () => {
      const controller = new AbortController();
      const res = await fetch(`${instance.base}${API}/targets/api/sse`, { headers: apiHeaders({ accept: 'text/event-stream' }), signal: controller.signal });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toContain('data: tick');
      controller.abort();
      await reader.read().catch(() => undefined);
      await stillServing();
    });

    it('Server-Sent Events cut by the upstream', async () => {
      const res = await fetch(`${instance.base}${API}/targets/api/sse?cut=3`, { headers: apiHeaders({ accept: 'text/event-stream' }) });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toContain('data: tick');
      // The upstream goes away after three events: the browser sees the stream end or fail, nothing else.
      for (;;) {
        const next = await reader.read().catch(() => ({ done: true as const }));
        if (next.done) break;
      }
      await stillServing();
    });

    const wsUrl = (): string => `${instance.base.replace('http', 'ws')}${API}/targets/api/ws`;
    const openWs = async (): Promise<WebSocket> => {
      const ws = new WebSocket(wsUrl(), { headers: apiHeaders() });
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
        ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      });
      ws.send('ping');
      const echoed = await new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
      expect(echoed).toBe('ping');
      return ws;
    };
    const closed = (ws: WebSocket): Promise<void> => new Promise((resolve) => (ws.readyState === WebSocket.CLOSED ? resolve() : ws.once('close', () => resolve())));

    it('a WebSocket closed by the browser', async () => {
      const ws = await openWs();
      ws.close(1000, 'done');
      await closed(ws);
      await stillServing();
    });

    it('a WebSocket dropped by the browser (no close frame)', async () => {
      const ws = await openWs();
      ws.terminate();
      await closed(ws);
      await stillServing();
    });

    it('a WebSocket closed and one dropped by the upstream', async () => {
      const polite = await openWs();
      polite.send('upstream-close');
      await closed(polite);
      const rude = await openWs();
      rude.send('upstream-terminate');
      await closed(rude);
      await stillServing();
    });

    it('a WebSocket upgrade abandoned by the browser before the answer', async () => {
      const url = new URL(wsUrl().replace('ws', 'http'));
      const req = httpRequest(url, {
        headers: { ...apiHeaders(), connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' },
        agent: false,
      });
      req.on('error', () => undefined);
      req.end();
      req.destroy();
      await stillServing();
    });
  });
}

describe('the process-level safety net', () => {
  it('an error thrown by a late hook is logged with the request id; the process keeps serving', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        lines.push(String(chunk));
        callback();
      },
    });
    const logger = createLogger({ logLevel: 'info', isProduction: true }, false, stream);
    const th = await buildApp(testConfig({ trustProxy: ['127.0.0.1'] }), { sweeper: false, logger: logger as unknown as FastifyBaseLogger });
    let throwLate = true;
    th.app.addHook('onResponse', (_request, _reply, done) => {
      if (throwLate) throw new Error('late hook failure');
      done();
    });
    await th.app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(th.app.server.address() as AddressInfo).port}`;
    try {
      const res = await fetch(`${base}/healthz?verbose=1`, { headers: { 'x-forwarded-for': '203.0.113.9' } });
      expect(res.status).toBe(200);
      const requestId = res.headers.get('x-request-id');
      await sleep(50);
      const logged = lines.flatMap((l) => l.split('\n')).filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      const line = logged.find((l) => l.msg === 'request errored');
      expect(line, lines.join('')).toBeDefined();
      expect(line).toMatchObject({ reqId: requestId, err: { message: 'late hook failure' }, req: { remoteAddress: '203.0.113.9' } });
      throwLate = false;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    } finally {
      await th.app.close();
    }
  });

  it('a request line the log stream refuses is reported on a line of its own with the request id', async () => {
    const lines: string[] = [];
    let failNext = false;
    const stream = new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        lines.push(String(chunk));
        callback();
      },
    });
    // A synchronous destination that throws once (EPIPE from a log collector that went away).
    const write = stream.write.bind(stream);
    stream.write = ((chunk: string) => {
      if (failNext && chunk.includes('request completed')) {
        failNext = false;
        throw Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
      }
      return write(chunk);
    }) as typeof stream.write;
    const logger = createLogger({ logLevel: 'info', isProduction: true }, false, stream);
    const th = await buildApp(testConfig(), { sweeper: false, logger: logger as unknown as FastifyBaseLogger });
    await th.app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(th.app.server.address() as AddressInfo).port}`;
    try {
      failNext = true;
      const res = await fetch(`${base}/token-handler/v1/sessions`);
      expect(res.status).toBe(200);
      const requestId = res.headers.get('x-request-id');
      await sleep(50);
      const logged = lines.flatMap((l) => l.split('\n')).filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(logged.find((l) => l.msg === 'could not log the completed request')).toMatchObject({ reqId: requestId, reason: 'write EPIPE' });
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    } finally {
      await th.app.close();
    }
  });

  it('a genuinely fatal error exits 1 with one clear fatal log line', async () => {
    const dir = tempDir('th-fatal-');
    const preload = join(dir, 'fatal.mjs');
    // Throws from a timer (no request, no handler can catch it) once the service has installed its net.
    writeFileSync(
      preload,
      `const t = setInterval(() => { if (process.listenerCount('uncaughtException') > 0) { clearInterval(t); throw new Error('fatal by design'); } }, 20);\n`,
    );
    const main = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', preload, main, '--listen_addr=127.0.0.1:0', '--log_level=info'], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', HOME: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code, out).toBe(1);
    const fatal = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.level === 60);
    expect(fatal, out).toMatchObject({ msg: 'uncaught error: exiting so that the supervisor restarts the service', err: { message: 'fatal by design' } });
  });
});
