/** Shared helpers of the operations tests: a real token handler on port 0 in front of the real dev IdP. */
import { request as httpRequest } from 'node:http';
import { Writable } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { buildApp, type BuildOptions, type TokenHandlerApp } from '../../src/app.ts';
import type { Config } from '../../src/config/types.ts';
import { pino } from 'pino';
import { createLogger, loggerOptions } from '../../src/log.ts';

export const API = '/token-handler/v1';
export const CALLBACK_URI = 'http://127.0.0.1/token-handler/v1/clients/default/callback';

export interface Running {
  th: TokenHandlerApp;
  app: FastifyInstance;
  base: string;
}

export async function startTokenHandler(config: Config, options: BuildOptions = {}): Promise<Running> {
  const th = await buildApp(config, { sweeper: false, ...options });
  await th.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = th.app.server.address() as { port: number };
  const scheme = config.tls ? 'https' : 'http';
  return { th, app: th.app, base: `${scheme}://127.0.0.1:${port}` };
}

/**
 * A pino logger configured exactly as in production (log.ts), writing JSON lines into memory.
 * `plainPino`: the same options without createLogger's mark, so every line (the per-request one too)
 * is written by pino itself.
 */
export function memoryLogger(
  level: Config['logLevel'],
  options: { plainPino?: boolean } = {},
): { logger: FastifyBaseLogger; text(): string; lines(): Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  const config = { logLevel: level, isProduction: true } as const;
  const logger = (options.plainPino ? pino(loggerOptions(config, false), stream) : createLogger(config, false, stream)) as unknown as FastifyBaseLogger;
  const text = () => chunks.join('');
  return {
    logger,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** Polls `check` until it stops throwing (or the time is up). */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 5000, stepMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, stepMs));
    }
  }
}

/** A request through node:http, so a body can be written in parts and the request aborted midway. */
export function send(
  url: string,
  options: { method: string; headers: Record<string, string>; body?: Buffer; abortAfterBytes?: number },
): Promise<{ status: number; body: string } | { aborted: true } | { error: string }> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { method: options.method, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err) => resolve({ error: err.message }));
    });
    req.on('error', (err) => resolve(options.abortAfterBytes !== undefined ? { aborted: true } : { error: err.message }));
    const body = options.body;
    // A browser states the length; Node's client would send a DELETE body without any framing.
    if (body && options.abortAfterBytes === undefined) req.setHeader('content-length', body.length);
    if (!body) {
      req.end();
      return;
    }
    if (options.abortAfterBytes !== undefined) {
      req.write(body.subarray(0, options.abortAfterBytes), () => {
        setTimeout(() => {
          req.destroy();
          resolve({ aborted: true });
        }, 50);
      });
      return;
    }
    req.end(body);
  });
}
