/** Helpers for the proxy integration tests: raw HTTP (paths exactly as written), ports, streams. */
import { createHash } from 'node:crypto';
import { request as httpRequest, createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildApp, type TokenHandlerApp } from '../../src/app.ts';
import type { ClientConfig, Config } from '../../src/config/types.ts';
import type { DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';

export interface RunningApp {
  th: TokenHandlerApp;
  base: string;
  close(): Promise<void>;
}

export async function startApp(config: Config): Promise<RunningApp> {
  const th = await buildApp(config, { sweeper: false });
  await th.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = th.app.server.address() as AddressInfo;
  return { th, base: `http://127.0.0.1:${port}`, close: () => th.app.close() };
}

/**
 * The demo upstream validating `idp`'s access tokens (its keys, issuer and API audience), and the token
 * handler with the default client at `idp` and the target `api` to the upstream's /echo; `client` is added
 * to the client, `config` to the test config.
 */
export async function startEchoApp(idp: DevIdp, options: { client?: Partial<ClientConfig>; config?: Partial<Config> } = {}): Promise<{ upstream: DemoUpstream; th: RunningApp }> {
  const upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource });
  try {
    const th = await startApp(
      testConfig({
        clients: [testClient({ issuer: idp.issuer, ...options.client })],
        targets: [testTarget({ id: 'api', url: `${upstream.url}/echo` })],
        ...options.config,
      }),
    );
    return { upstream, th };
  } catch (err) {
    await upstream.close();
    throw err;
  }
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * A request with the path sent exactly as given: fetch (WHATWG URL) would resolve `..` and `%2e%2e`
 * before sending, which is the very thing these tests must not let a client do for them.
 */
export function rawRequest(base: string, path: string, options: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<RawResponse> {
  // `unix:/path`: over a Unix domain socket; else an http:// origin.
  const where = base.startsWith('unix:') ? { socketPath: base.slice('unix:'.length) } : { host: new URL(base).hostname, port: new URL(base).port };
  return new Promise((resolve, reject) => {
    const req = httpRequest({ ...where, method: options.method ?? 'GET', path, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A port on 127.0.0.1 where nothing listens (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `total` bytes of deterministic pseudo-random data as a web stream, and the SHA-256 it will have. */
export function generatedBody(total: number, chunkSize = 256 * 1024): { stream: ReadableStream<Uint8Array>; sha256: Promise<string>; sent: () => number } {
  const block = Buffer.alloc(chunkSize);
  let x = 0x12345678;
  for (let i = 0; i < chunkSize; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    block.writeUInt32LE(x, i);
  }
  const hash = createHash('sha256');
  let sent = 0;
  let resolveHash: (digest: string) => void = () => undefined;
  const sha256 = new Promise<string>((resolve) => {
    resolveHash = resolve;
  });
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= total) {
        controller.close();
        resolveHash(hash.digest('hex'));
        return;
      }
      const n = Math.min(chunkSize, total - sent);
      // A fresh copy per chunk: the consumer may hold on to it.
      const chunk = Buffer.from(block.subarray(0, n));
      chunk.writeUInt32LE(sent >>> 0, 0);
      hash.update(chunk);
      sent += n;
      controller.enqueue(chunk);
    },
  });
  return { stream, sha256, sent: () => sent };
}

/** What the pausing upstream saw of one request body. */
export interface PausedUpload {
  length: number;
  sha256: string;
  authorization: boolean;
  transferEncoding: string | null;
}

/**
 * An upstream that reads the first `pauseAfter` bytes of a request body, then stops reading until
 * `resume()`; it answers with the length and SHA-256 of the whole body. With it a test can see whether
 * backpressure reaches the client through the proxy.
 */
export async function startPausingUpstream(pauseAfter: number): Promise<{
  url: string;
  paused: Promise<void>;
  resume: () => void;
  close: () => Promise<void>;
}> {
  let markPaused: () => void = () => undefined;
  const paused = new Promise<void>((resolve) => {
    markPaused = resolve;
  });
  let resumeBody: () => void = () => undefined;
  const resumed = new Promise<void>((resolve) => {
    resumeBody = resolve;
  });
  const server = createServer((req, res) => {
    const hash = createHash('sha256');
    let length = 0;
    let held = false;
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      length += chunk.length;
      if (!held && length >= pauseAfter) {
        held = true;
        req.pause();
        markPaused();
        void resumed.then(() => req.resume());
      }
    });
    req.on('end', () => {
      const answer: PausedUpload = {
        length,
        sha256: hash.digest('hex'),
        authorization: /^Bearer \S+$/.test(req.headers.authorization ?? ''),
        transferEncoding: req.headers['transfer-encoding'] ?? null,
      };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    paused,
    resume: () => resumeBody(),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Uploads a web stream with node:http, honouring backpressure. (Node's fetch reads a stream body as
 * fast as it can and holds it, so it cannot show whether the proxy streams.)
 */
export function streamUpload(
  url: string,
  body: ReadableStream<Uint8Array>,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'PUT', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    void (async () => {
      const reader = body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!req.write(value)) await new Promise((r) => req.once('drain', r));
      }
      req.end();
    })().catch(reject);
  });
}
