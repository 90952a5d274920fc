// First: on an older Node, one clear line (when it can load this file at all: run bin/token-handler.js).
import '../bin/node-version.js';
import cluster from 'node:cluster';
import type { FastifyBaseLogger } from 'fastify';
import { buildApp } from './app.ts';
import { runPrimary } from './cluster/primary.ts';
import { WorkerLink } from './cluster/worker.ts';
import { createLogger } from './log.ts';
import { ConfigError, formatConfigError } from './config/errors.ts';
import { loadConfig } from './config/load.ts';
import { helpOrVersion } from './config/cli.ts';
import { startTracing } from './ops/tracing.ts';
import { startConfigReloader } from './ops/reload.ts';
import { clearStaleSocket } from './ops/unixSocket.ts';
import { isSocketAddress } from './config/parsers.ts';

const SHUTDOWN_GRACE_MS = 25_000;

/** Process entry: read config, build the app, listen, shut down gracefully on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const text = helpOrVersion(argv);
  if (text !== undefined) {
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    return;
  }
  let loaded;
  try {
    loaded = loadConfig({ argv, env: process.env, cwd: process.cwd() });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${formatConfigError(err)}\n`);
      process.exit(2);
    }
    throw err;
  }
  const { config, warnings } = loaded;
  // --workers n: this process forks n workers and serves nothing itself (src/cluster/primary.ts).
  if (cluster.isPrimary && (config.workers ?? 1) > 1) {
    const log = createLogger(config, process.stdout.isTTY === true);
    for (const warning of warnings) log.warn(`CONFIGURATION WARNING: ${warning}`);
    // The workers share one forward-auth socket, which the primary creates when the first of them listens:
    // one left by an earlier group that was killed is removed here, once, before any of them starts.
    const forwardAuth = config.forwardAuthListen;
    if (forwardAuth !== undefined && isSocketAddress(forwardAuth)) {
      try {
        await clearStaleSocket(forwardAuth.path);
      } catch (err) {
        log.fatal({ err }, `--forward_auth_listen_addr: ${(err as Error).message}`);
        process.exit(1);
      }
    }
    runPrimary({ workers: config.workers ?? 1, log, shutdownGraceMs: SHUTDOWN_GRACE_MS });
    return;
  }
  // Only with an OTLP endpoint in the environment (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT): the SDK is not loaded otherwise.
  const tracing = await startTracing(process.env);
  const worker = WorkerLink.connect();
  const { app, reconfigure } = await buildApp(config, { worker });
  tracing?.logTo(app.log);
  exitOnFatalError(app.log);
  // A worker's warnings are the primary's, logged there once.
  if (worker === undefined) for (const warning of warnings) app.log.warn(`CONFIGURATION WARNING: ${warning}`);

  // Clients and targets change without a restart: on SIGHUP and when the config file changes
  // (src/ops/reload.ts). Each process watches the files itself; with --workers, the primary passes a SIGHUP
  // on to every worker (src/cluster/primary.ts), whose own handler below calls reloader.reload().
  const reloader = startConfigReloader({ input: { argv, env: process.env, cwd: process.cwd() }, files: loaded.files, watch: config.configWatch !== false, apply: reconfigure, log: app.log });
  process.on('SIGHUP', () => void reloader.reload('SIGHUP'));
  app.addHook('onClose', async () => reloader.close());

  let closing = false;
  const shutdown = (signal: string): void => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'shutting down: finishing in-flight requests');
    const force = setTimeout(() => {
      app.log.error('in-flight requests did not finish in time; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        app.log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  await app.listen({ host: config.listen.host, port: config.listen.port });
  worker?.ready();
}

/**
 * The process-level net. What a request's late work throws (onResponse hooks, the request's log line) is
 * caught and logged with its request id where it happens (Fastify's hook runner, src/ops/requestLog.ts),
 * so whatever reaches this point belongs to no request we can answer: the process state is unknown. It
 * is logged as one clear `fatal` line (not swallowed) and the process exits 1 for its supervisor
 * (systemd, Kubernetes, docker `restart:`) to start a fresh one.
 */
function exitOnFatalError(log: FastifyBaseLogger): void {
  process.on('uncaughtException', (err, origin) => {
    try {
      log.fatal({ err, origin }, 'uncaught error: exiting so that the supervisor restarts the service');
    } catch {
      process.stderr.write(`token-handler: uncaught error (${origin}): ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    }
    // The logger writes on the next turn at the latest; its exit listener flushes what is pending.
    process.exit(1);
  });
}

main().catch((err: unknown) => {
  console.error(`token-handler failed to start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
