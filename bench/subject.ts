/**
 * Benchmark child process: one proxy under test, alone on its event loop.
 *
 *   node bench/subject.ts '<SubjectSpec as JSON>'
 *
 * `bare`: a plain Fastify + @fastify/reply-from proxy with no auth, no logger, no hooks (the floor any
 * proxy pays). `token-handler`: the real service from `loadConfig` + `buildApp`, logging at `info` (to
 * the parent's choice of stdout, /dev/null by default), one target `api` → `<upstream>/`, on the given
 * store in a namespace of its own (temporary SQLite file, PostgreSQL schema, Redis key prefix) that is
 * removed when the parent disconnects. The real peers (bench/peers.ts): `apache`, Apache + mod_auth_openidc
 * that this process starts and supervises; `nginx-forward-auth`, nginx with `auth_request` to the forward-auth
 * listener of a token-handler (SQLite) running in this process. All serve the same path,
 * `/token-handler/v1/targets/api/*`; the peers' processes count in the CPU time and RSS reported.
 * Reports `{ type: 'ready', port }` over IPC; answers `'rss'` with its resident set size, `'cpu'` with
 * the CPU time (user + system, µs) it has used, and `'gc-start'` / `'gc-stop'` with its garbage collections
 * in between (GcStats).
 *
 * `token-handler` with `workers` other than `1` (`run.ts --workers 1,auto`): token-handler as deployed with
 * `--workers`, a worker group. This process is the primary (src/cluster/primary.ts `runPrimary`) of workers
 * running src/main.ts with the same command line; its answers to `'cpu'` and `'rss'` cover the whole group
 * (primary and workers, from /proc), and it answers `'gc-stop'` with no GC statistics (they would be the
 * primary's, which serves no request).
 */
import replyFrom from '@fastify/reply-from';
import Fastify, { type FastifyInstance } from 'fastify';
import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Pool } from 'undici';
import { GCProfiler, type GCProfilerResult } from 'node:v8';
import { monitorEventLoopDelay, type ELDHistogram } from 'node:perf_hooks';
import { buildApp } from '../src/app.ts';
import { runPrimary } from '../src/cluster/primary.ts';
import { loadConfig } from '../src/config/load.ts';
import { optionDef, optionKeys } from '../src/config/options.ts';
import { startTracing } from '../src/ops/tracing.ts';
import { summariseGcProfile, type GcSummary } from './gcStats.ts';
import { dropPostgresSchema, unlinkRedisPrefix } from './namespaces.ts';
import { cpuMicrosOf, nginxForwardAuthConfig, processTree, rssOf, startApache } from './peers.ts';
import { forwardAuthAddress } from '../src/proxy/forwardAuth.ts';
import { nginxSocketDir, startNginx, type Nginx } from '../test/support/nginx.ts';

export type StoreKind = 'sqlite' | 'postgresql' | 'redis';

export type SubjectSpec =
  | { mode: 'bare'; upstream: string }
  /** `workers`: token-handler's `--workers` (`1` or absent: one process, in this one; else a worker group). */
  | { mode: 'token-handler'; upstream: string; issuer: string; store: StoreKind; postgresUrl: string; redisUrl: string; logLevel: string; workers?: string }
  /**
   * Apache (MPM event) + mod_auth_openidc, started and owned by this process (bench/peers.ts); `children`:
   * its child processes (1 by default, the 64 threads in one; more for the all-cores case).
   */
  | { mode: 'apache'; upstream: string; issuer: string; children?: number }
  /**
   * nginx in front, auth_request to this process's token-handler (SQLite) forward-auth listener: on a port of
   * 127.0.0.1 (`tcp`, the default) or a Unix socket (`unix`).
   */
  | { mode: 'nginx-forward-auth'; upstream: string; issuer: string; logLevel: string; transport?: 'tcp' | 'unix' }
  /**
   * A reference, not a peer: nginx configured the same way, asking a check service that does nothing (a
   * node:http server on a Unix socket answering every check at once with a fixed token). What forward-auth
   * costs whatever the check service decides: nginx's subrequest and Node.js's own HTTP exchange.
   */
  | { mode: 'nginx-noop-check'; upstream: string };

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

type TokenHandlerSpec = Extract<SubjectSpec, { mode: 'token-handler' }>;

/** token-handler's command line, in a namespace of its own (directory, schema, key prefix) that `cleanup` removes. */
function tokenHandlerArgs(spec: TokenHandlerSpec, extraArgs: string[]): { argv: string[]; dir: string; cleanup: () => Promise<void> } {
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
    ...extraArgs,
  ];
  return {
    argv,
    dir,
    async cleanup() {
      rmSync(dir, { recursive: true, force: true });
      if (spec.store === 'postgresql') await dropPostgresSchema(spec.postgresUrl, schema);
      else if (spec.store === 'redis') await unlinkRedisPrefix(spec.redisUrl, keyPrefix);
    },
  };
}

async function startTokenHandler(spec: TokenHandlerSpec, extraArgs: string[] = []): Promise<{ app: FastifyInstance; cleanup: () => Promise<void> }> {
  const { argv, dir, cleanup } = tokenHandlerArgs(spec, extraArgs);
  const { config } = loadConfig({ argv, env: {}, cwd: dir });
  // As src/main.ts: tracing only with an OTLP endpoint in the environment (bench/tracing.ts sets one).
  await startTracing(process.env);
  const { app } = await buildApp(config);
  return { app, cleanup };
}

/**
 * token-handler --workers <n|auto>, as src/main.ts runs it: this process is the primary, the workers run
 * src/main.ts with the same command line (in the namespace's directory, with this process's stdio). Ready
 * once every worker listens (all on the one port node:cluster shares between them).
 */
async function startWorkerGroup(spec: TokenHandlerSpec): Promise<Running> {
  const { argv, dir, cleanup } = tokenHandlerArgs(spec, [`--workers=${spec.workers ?? '1'}`]);
  const { config } = loadConfig({ argv, env: {}, cwd: dir });
  const workers = config.workers ?? 1;
  // The workers read the environment too (src/main.ts): none of the bench's own may configure them.
  for (const key of optionKeys) delete process.env[optionDef(key).env];
  cluster.setupPrimary({ exec: fileURLToPath(new URL('../src/main.ts', import.meta.url)), args: argv, cwd: dir });
  const port = new Promise<number>((resolve, reject) => {
    let listening = 0;
    const onListening = (_worker: unknown, address: { port: number }): void => {
      if (++listening < workers) return;
      cluster.off('listening', onListening);
      resolve(address.port);
    };
    cluster.on('listening', onListening);
    // runPrimary exits this process when a worker fails before the group is up; the parent sees the exit.
    setTimeout(() => reject(new Error(`the ${workers} workers were not all listening within 60 s`)), 60_000).unref();
  });
  let exited: () => void = () => undefined;
  const group = runPrimary({
    workers,
    log: pino({ level: spec.logLevel }),
    shutdownGraceMs: 5_000,
    beforeExit: async () => {
      await cleanup();
      exited();
    },
  });
  return {
    port: await port,
    countSelf: true,
    ownGc: false,
    // The primary exits the process once every worker has drained and `cleanup` has run.
    close: () =>
      new Promise<void>((resolve) => {
        exited = resolve;
        group.shutdown('benchmark done');
      }),
  };
}

/** A token-shaped value as long as the dev IdP's access tokens, so nginx copies as many bytes as with a real one. */
const NOOP_AUTHORIZATION = `Bearer eyJ${'A'.repeat(840)}`;

/** The no-op check service of `nginx-noop-check`: every check answered 200 at once, as a forward-auth 200 looks. */
async function startNoopCheck(socket: string): Promise<Server> {
  const server = createServer((_request, response) => {
    response.writeHead(200, { 'cache-control': 'no-store', authorization: NOOP_AUTHORIZATION, cookie: '', 'content-length': '0' });
    response.end();
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  chmodSync(socket, 0o660);
  return server;
}

/** What runs: its port, how to stop it, and whether this process's own CPU and memory are part of it. */
interface Running {
  port: number;
  close(): Promise<void>;
  /** false for Apache: this process only supervises it. */
  countSelf: boolean;
  /** false for a worker group: this process's garbage collections are not the ones serving requests. */
  ownGc: boolean;
}

async function listening(app: FastifyInstance): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  return typeof address === 'object' && address ? address.port : 0;
}

/** nginx in front of a check service this process runs: nginx's port; this process's CPU and GC count with it. */
function behindNginx(nginx: Nginx, stopOwn: () => Promise<void>): Running {
  return {
    port: nginx.port,
    countSelf: true,
    ownGc: true,
    async close() {
      await nginx.stop();
      await stopOwn();
    },
  };
}

async function start(spec: SubjectSpec): Promise<Running> {
  if (spec.mode === 'apache') {
    const apache = await startApache({ issuer: spec.issuer, upstream: spec.upstream, targetPath: TARGET_PATH, ...(spec.children ? { children: spec.children } : {}) });
    return { port: apache.port, close: apache.stop, countSelf: false, ownGc: true };
  }
  if (spec.mode === 'nginx-forward-auth') {
    // The socket as docs/forward-auth.md sets it up: in a directory of nginx's workers' group, mode 0660.
    const socket = spec.transport === 'unix' ? join(nginxSocketDir('th-bench-socket-'), 'forward-auth.sock') : undefined;
    const th = await startTokenHandler(
      { mode: 'token-handler', upstream: spec.upstream, issuer: spec.issuer, store: 'sqlite', postgresUrl: '', redisUrl: '', logLevel: spec.logLevel },
      [`--forward_auth_listen_addr=${socket === undefined ? '127.0.0.1:0' : `unix:${socket}`}`],
    );
    const port = await listening(th.app);
    const check = socket === undefined ? `127.0.0.1:${forwardAuthAddress(th.app)!.port}` : `unix:${socket}`;
    const nginx = await startNginx(nginxForwardAuthConfig({ upstream: spec.upstream, tokenHandler: `http://127.0.0.1:${port}`, check, targetPath: TARGET_PATH }));
    return behindNginx(nginx, async () => {
      await th.app.close();
      await th.cleanup();
    });
  }
  if (spec.mode === 'nginx-noop-check') {
    const socket = join(nginxSocketDir('th-bench-noop-'), 'check.sock');
    const check = await startNoopCheck(socket);
    const nginx = await startNginx(nginxForwardAuthConfig({ upstream: spec.upstream, tokenHandler: spec.upstream, check: `unix:${socket}`, targetPath: TARGET_PATH }));
    return behindNginx(nginx, async () => {
      check.closeAllConnections();
      await new Promise<void>((resolve) => check.close(() => resolve()));
    });
  }
  if (spec.mode === 'token-handler' && (spec.workers ?? '1') !== '1') return startWorkerGroup(spec);
  const { app, cleanup } = spec.mode === 'bare' ? await startBare(spec.upstream) : await startTokenHandler(spec);
  const port = await listening(app);
  return { port, countSelf: true, ownGc: true, close: async () => app.close().then(cleanup) };
}

const spec = JSON.parse(process.argv[2] ?? '{}') as SubjectSpec;
const running = await start(spec);
/** The processes this subject started (nginx, Apache: master and workers), counted with it. */
const helpers = (): number[] => processTree(process.pid).filter((pid) => pid !== process.pid);
const ready: SubjectReady = { type: 'ready', port: running.port, pid: process.pid };
process.send?.(ready);
let gcProfiler: GCProfiler | null = null;
let loopDelay: ELDHistogram | null = null;
process.on('message', (message: unknown) => {
  if (message === 'rss') process.send?.({ type: 'rss', rss: (running.countSelf ? process.memoryUsage().rss : 0) + rssOf(helpers()) });
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
    process.send?.(running.ownGc ? { type: 'gc-stop', gc } : { type: 'gc-stop' });
  }
  if (message === 'cpu') {
    const { user, system } = process.cpuUsage();
    process.send?.({ type: 'cpu', micros: (running.countSelf ? user + system : 0) + cpuMicrosOf(helpers()) });
  }
});
process.once('disconnect', () => {
  void running
    .close()
    .catch((err: unknown) => console.error('[bench subject] cleanup failed', err))
    .finally(() => process.exit(0));
});
