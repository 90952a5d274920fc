/**
 * Demo upstream API ("target" behind the token handler). Plain node:http so nothing between the
 * socket and the handlers alters what the proxy sent: /echo reports exactly what arrived.
 *
 * Routes:
 *   ANY  /echo[/*]      -> JSON: method, path, query, headers, rawHeaders, bodyLength, bodySha256, token
 *   GET  /api/hello     -> { message: 'Hello, <name>', sub } with a valid bearer JWT, 401 otherwise
 *   GET  /static        -> the same small JSON document whatever the request (the benchmark's route:
 *                          the upstream's work and response bytes are then the same behind any proxy)
 *   GET  /sse?n=5&delay=20 -> text/event-stream with n events
 *   GET  /slow?ms=1000  -> JSON after a delay
 *   GET  /reset         -> headers + part of the body, then the socket is destroyed
 *   GET  /set-cookie    -> JSON with a Set-Cookie header
 *   WS   /ws            -> first message { authorization, origin, cookie, traceparent, tracestate }, then echoes every message
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import type { JWTPayload } from 'jose';
import { WebSocketServer } from 'ws';

export interface DemoUpstreamOptions {
  port?: number;
  /** IdP JWKS used to validate bearer JWTs; without it every token is reported invalid. */
  jwksUrl?: string;
  /** Expected `iss` (checked when given). */
  issuer?: string;
  /** Expected `aud` (checked when given). */
  audience?: string;
}

export type TokenCheck =
  | { present: false; valid: false; error: 'missing bearer token' }
  | { present: true; valid: true; claims: JWTPayload }
  | { present: true; valid: false; error: string };

export interface EchoResponse {
  method: string;
  path: string;
  query: Record<string, string | string[]>;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  bodyLength: number;
  bodySha256: string;
  token: TokenCheck;
}

export interface DemoUpstream {
  readonly url: string;
  readonly port: number;
  /** Number of HTTP requests (including WebSocket upgrades) received. */
  readonly requests: number;
  close(): Promise<void>;
}

const STATIC_BODY = Buffer.from(
  JSON.stringify({ items: [1, 2, 3, 4, 5].map((id) => ({ id, name: `Item ${id}`, price: id * 100, currency: 'EUR' })), total: 5 }),
);
const STATIC_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'content-length': String(STATIC_BODY.length), 'cache-control': 'no-store' };

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function queryOf(url: URL): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const key of new Set(url.searchParams.keys())) {
    const all = url.searchParams.getAll(key);
    out[key] = all.length === 1 ? (all[0] ?? '') : all;
  }
  return out;
}

function intParam(url: URL, name: string, fallback: number, max: number): number {
  const n = Number(url.searchParams.get(name) ?? fallback);
  return Number.isFinite(n) ? Math.min(Math.max(0, Math.floor(n)), max) : fallback;
}

/** Hash and count the body as it streams in, so multi-GB uploads never sit in memory. */
async function digestBody(req: IncomingMessage): Promise<{ length: number; sha256: string }> {
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    length += buf.length;
    hash.update(buf);
  }
  return { length, sha256: hash.digest('hex') };
}

export async function startDemoUpstream(options: DemoUpstreamOptions = {}): Promise<DemoUpstream> {
  // Created lazily by jose: the JWKS is fetched on the first token and refreshed on unknown kids.
  const jwks = options.jwksUrl ? createRemoteJWKSet(new URL(options.jwksUrl)) : undefined;
  let requests = 0;

  async function checkToken(authorization: string | undefined): Promise<TokenCheck> {
    const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
    if (!m?.[1]) return { present: false, valid: false, error: 'missing bearer token' };
    if (!jwks) return { present: true, valid: false, error: 'no jwksUrl configured' };
    try {
      const { payload } = await jwtVerify(m[1], jwks, {
        ...(options.issuer ? { issuer: options.issuer } : {}),
        ...(options.audience ? { audience: options.audience } : {}),
      });
      return { present: true, valid: true, claims: payload };
    } catch (err) {
      return { present: true, valid: false, error: `${(err as Error).name}: ${(err as Error).message}` };
    }
  }

  const sleep = (ms: number, signal: AbortSignal) => new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const path = url.pathname;
    // Aborted when the client goes away, so timers stop writing to a dead socket.
    const gone = new AbortController();
    res.once('close', () => gone.abort());

    if (path === '/echo' || path.startsWith('/echo/')) {
      const [body, token] = await Promise.all([digestBody(req), checkToken(req.headers.authorization)]);
      const out: EchoResponse = {
        method: req.method ?? 'GET',
        path,
        query: queryOf(url),
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bodyLength: body.length,
        bodySha256: body.sha256,
        token,
      };
      json(res, 200, out);
      return;
    }

    if (path === '/static') {
      res.writeHead(200, STATIC_HEADERS);
      res.end(STATIC_BODY);
      return;
    }

    if (path === '/api/hello') {
      const token = await checkToken(req.headers.authorization);
      if (!token.valid) {
        json(res, 401, { error: 'unauthorized', detail: token.error }, {
          'www-authenticate': token.present ? 'Bearer error="invalid_token"' : 'Bearer',
        });
        return;
      }
      const { claims } = token;
      const name = typeof claims.name === 'string' ? claims.name : claims.sub;
      json(res, 200, { message: `Hello, ${name}`, sub: claims.sub });
      return;
    }

    if (path === '/sse') {
      const n = intParam(url, 'n', 5, 10_000);
      const delay = intParam(url, 'delay', 20, 60_000);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      res.flushHeaders();
      for (let i = 1; i <= n && !gone.signal.aborted; i += 1) {
        await sleep(delay, gone.signal);
        res.write(`id: ${i}\nevent: tick\ndata: ${JSON.stringify({ i, n, at: Date.now() })}\n\n`);
      }
      res.end();
      return;
    }

    if (path === '/slow') {
      const ms = intParam(url, 'ms', 1000, 600_000);
      await sleep(ms, gone.signal);
      if (!gone.signal.aborted) json(res, 200, { waitedMs: ms });
      return;
    }

    if (path === '/reset') {
      // Promise a longer body than is sent, flush part of it, then kill the connection: the
      // client sees a premature close mid-body (not a clean response).
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1048576' });
      res.write('partial body before reset\n', () => {
        setTimeout(() => req.socket.destroy(), 20);
      });
      return;
    }

    if (path === '/set-cookie') {
      json(res, 200, { ok: true }, { 'set-cookie': 'upstream_session=from-upstream; Path=/; HttpOnly; SameSite=Lax' });
      return;
    }

    json(res, 404, { error: 'not_found', path });
  }

  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    requests += 1;
    handle(req, res).catch((err: unknown) => {
      // A caller that left while its body was read ('aborted') is not the handler's error.
      if ((err as { code?: unknown }).code === 'ECONNRESET') return void res.destroy();
      console.error('[demo-upstream] handler error', err);
      if (!res.headersSent) json(res, 500, { error: 'internal' });
      else res.destroy();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    requests += 1;
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/ws') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      void checkToken(req.headers.authorization).then((token) => {
        ws.send(JSON.stringify({
          authorization: { present: token.present, valid: token.valid, ...(token.valid ? { sub: token.claims.sub } : { error: token.error }) },
          origin: req.headers.origin ?? null,
          cookie: req.headers.cookie ?? null,
          traceparent: req.headers.traceparent ?? null,
          tracestate: req.headers.tracestate ?? null,
        }));
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get requests() { return requests; },
    async close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
      });
    },
  };
}
