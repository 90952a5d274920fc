/** Helpers for the proxy integration tests: raw HTTP (paths exactly as written), ports, streams. */
import { createHash } from 'node:crypto';
import { request as httpRequest, createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { buildApp, type TokenHandlerApp } from '../../src/app.ts';
import type { Config } from '../../src/config/types.ts';

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
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method: options.method ?? 'GET', path, headers: options.headers, agent: false }, (res) => {
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
export function generatedBody(total: number, chunkSize = 256 * 1024): { stream: ReadableStream<Uint8Array>; sha256: Promise<string> } {
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
  return { stream, sha256 };
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

/** A full garbage collection, so memory samples show what is held rather than what awaits collection. */
export const collectGarbage: () => void = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();
