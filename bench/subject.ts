/**
 * Benchmark child process: one proxy under test, alone on its event loop.
 *
 *   node bench/subject.ts '<SubjectSpec as JSON>'
 *
 * `bare`: a plain Fastify + @fastify/reply-from proxy with no auth, no logger, no hooks (the floor any
 * proxy pays). `token-handler`: the real service from `loadConfig` + `buildApp`, logging at `info` (to
 * the parent's choice of stdout, /dev/null by default), one target `api` → `<upstream>/`, on the given
 * store in a namespace of its own (temporary SQLite file, PostgreSQL schema, Redis key prefix) that is
 * removed when the parent disconnects. Both serve the same path, `/token-handler/v1/targets/api/*`.
 * Reports `{ type: 'ready', port }` over IPC; answers `'rss'` with its resident set size, `'cpu'` with
 * the CPU time (user + system, µs) it has used, and `'gc-start'` / `'gc-stop'` with its garbage collections
 * in between (GcStats).
 */
import replyFrom from '@fastify/reply-from';
import Fastify, { type FastifyInstance } from 'fastify';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { GCProfiler, type GCProfilerResult } from 'node:v8';
import { monitorEventLoopDelay, type ELDHistogram } from 'node:perf_hooks';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config/load.ts';
import { summariseGcProfile, type GcSummary } from './gcStats.ts';
import { dropPostgresSchema, unlinkRedisPrefix } from './namespaces.ts';

export type StoreKind = 'sqlite' | 'postgresql' | 'redis';

export type SubjectSpec =
  | { mode: 'bare'; upstream: string }
  | { mode: 'token-handler'; upstream: string; issuer: string; store: StoreKind; postgresUrl: string; redisUrl: string; logLevel: string };

export interface SubjectReady {
  type: 'ready';
  port: number;
  pid: number;
}

/** Garbage collection while a load ran (`'gc-start'` … `'gc-stop'`), and the subject's own stalls. */
export interface GcStats extends GcSummary {
  /** Event-loop delay over the same window (perf_hooks, 2 ms timer): how long the subject itself stalled. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

function summariseGc(result: GCProfilerResult | undefined, loop: ELDHistogram | null): GcStats {
  return {
    ...summariseGcProfile(result),
    loopDelayP99Ms: loop ? Math.round(loop.percentile(99) / 1e4) / 100 : 0,
    loopDelayMaxMs: loop ? Math.round(loop.max / 1e4) / 100 : 0,
  };
}

/** Also in bench/run.ts (which must not import this module: it starts a server at load). */
const TARGET_PATH = '/token-handler/v1/targets/api';

async function startBare(upstream: string): Promise<{ app: FastifyInstance; cleanup: () => Promise<void> }> {
  const app = Fastify();
  const origin = new URL(upstream).origin;
  // The same pool settings as a token-handler target (test/support/config.ts testTarget).
  const pool = new Pool(origin, { connections: 128, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000, pipelining: 1 });
  await app.register(replyFrom, { base: origin, undici: pool });
  app.get(`${TARGET_PATH}/*`, (request, reply) => reply.from(`/${(request.params as { '*': string })['*']}`));
  return { app, cleanup: async () => pool.destroy() };
}

async function startTokenHandler(spec: Extract<SubjectSpec, { mode: 'token-handler' }>): Promise<{ app: FastifyInstance; cleanup: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'th-bench-'));
  const configFile = join(dir, 'token-handler.json');
  writeFileSync(configFile, JSON.stringify({ targets: [{ id: 'api', url: `${spec.upstream}/` }] }));
  const namespace = randomBytes(4).toString('hex');
  const schema = `th_bench_${namespace}`;
  const keyPrefix = `th-bench:${namespace}:`;
  const storeArgs: Record<StoreKind, string[]> = {
    sqlite: [`--db_path=${join(dir, 'sessions.db')}`],
    postgresql: ['--db_type=postgresql', `--db_url=${spec.postgresUrl}`, `--db_schema=${schema}`],
    redis: ['--db_type=redis', `--redis_url=${spec.redisUrl}`, `--redis_key_prefix=${keyPrefix}`],
  };
  const argv = [
    '--listen_addr=127.0.0.1:0',
    `--oidc_issuer=${spec.issuer}`,
    '--oidc_client_id=token-handler',
    '--oidc_client_secret=token-handler-secret',
    '--oidc_allow_insecure_issuer',
    `--config=${configFile}`,
    `--log_level=${spec.logLevel}`,
    // The login benchmark logs in from one address as fast as it can: the per-IP login limit would refuse it.
    '--login_rate_limit=0',
    ...storeArgs[spec.store],
  ];
  const { config } = loadConfig({ argv, env: {}, cwd: dir });
  const { app } = await buildApp(config);
  return {
    app,
    async cleanup() {
      rmSync(dir, { recursive: true, force: true });
      if (spec.store === 'postgresql') await dropPostgresSchema(spec.postgresUrl, schema);
      else if (spec.store === 'redis') await unlinkRedisPrefix(spec.redisUrl, keyPrefix);
    },
  };
}

const spec = JSON.parse(process.argv[2] ?? '{}') as SubjectSpec;
const { app, cleanup } = spec.mode === 'bare' ? await startBare(spec.upstream) : await startTokenHandler(spec);
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
const ready: SubjectReady = { type: 'ready', port: typeof address === 'object' && address ? address.port : 0, pid: process.pid };
process.send?.(ready);
let gcProfiler: GCProfiler | null = null;
let loopDelay: ELDHistogram | null = null;
process.on('message', (message: unknown) => {
  if (message === 'rss') process.send?.({ type: 'rss', rss: process.memoryUsage().rss });
  if (message === 'gc-start') {
    gcProfiler?.stop();
    gcProfiler = new GCProfiler();
    gcProfiler.start();
    loopDelay?.disable();
    loopDelay = monitorEventLoopDelay({ resolution: 2 });
    loopDelay.enable();
    process.send?.({ type: 'gc-start' });
  }
  if (message === 'gc-stop') {
    loopDelay?.disable();
    const gc = summariseGc(gcProfiler?.stop(), loopDelay);
    gcProfiler = null;
    loopDelay = null;
    process.send?.({ type: 'gc-stop', gc });
  }
  if (message === 'cpu') {
    const { user, system } = process.cpuUsage();
    process.send?.({ type: 'cpu', micros: user + system });
  }
});
process.once('disconnect', () => {
  void app
    .close()
    .then(cleanup)
    .catch((err: unknown) => console.error('[bench subject] cleanup failed', err))
    .finally(() => process.exit(0));
});
