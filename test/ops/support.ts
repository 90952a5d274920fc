/** Shared helpers of the operations tests: a real token handler on port 0 in front of the real dev IdP. */
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
