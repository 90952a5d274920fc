import cookie from '@fastify/cookie';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { readFileSync } from 'node:fs';
import type { Config } from './config/types.ts';
import type { AppContext } from './context.ts';
import type { WorkerLink } from './cluster/worker.ts';
import { createLogger } from './log.ts';
import { Metrics } from './metrics.ts';
import { createRefresher } from './oidc/identity.ts';
import { OidcRegistry } from './oidc/registry.ts';
import { JwksCache } from './oidc/jwks.ts';
import { authRoutes } from './routes/auth.ts';
import { backchannelRoutes } from './routes/backchannel.ts';
import { clientRoutes, RegistrationVault } from './routes/clients.ts';
import { legacyRoutes, redirectUrlRoute } from './routes/legacy.ts';
import { sendProblem } from './http/problem.ts';
import { sessionRoutes } from './routes/sessions.ts';
import { adminSessionList } from './routes/adminSessions.ts';
import { serveForwardAuth } from './proxy/forwardAuth.ts';
import { targetRouteBuilder, targetRouteLabel, targetRoutes } from './proxy/http.ts';
import { ServiceDirectory } from './proxy/directory.ts';
import { TargetTable } from './proxy/table.ts';
import { applyConfig, type ReloadResult } from './ops/reload.ts';
import { healthRoutes } from './routes/health.ts';
import { metricsRoute, serveMetricsSeparately } from './routes/metricsRoute.ts';
import { openApiRoute } from './routes/openapi.ts';
import { requestIdFrom } from './ops/requestId.ts';
import { decorateClientAddress, rememberClientAddress } from './ops/clientAddress.ts';
import { closeConnectionsWhenDraining } from './ops/drain.ts';
import { OneLinePerRequest } from './ops/requestLog.ts';
import { timedStore } from './ops/timedStore.ts';
import { activeTracing } from './ops/tracing.ts';
import { traceRequests } from './ops/traceRequests.ts';
import { checkHost } from './security/host.ts';
import { forwardedProtoProblem, OriginResolver } from './http/origin.ts';
import { clientErrorHandler, clientErrorName } from './security/httpErrors.ts';
import { registerLoginRateLimit } from './security/rateLimit.ts';
import { CookiePolicy } from './session/cookiePolicy.ts';
import { CookieSealer } from './session/cookieSealer.ts';
import { PayloadCipher } from './session/payloadCipher.ts';
import { SessionService } from './session/service.ts';
import { createStore } from './store/index.ts';
import { StoreUnavailableError, type SessionStore } from './store/types.ts';

export interface BuildOptions {
  /** Use this store instead of creating one from `config.db` (tests sharing a store between apps). */
  store?: SessionStore;
  /** A ready logger (tests capture logs); default: pino from the config, pretty on a terminal. */
  logger?: FastifyBaseLogger;
  /** Start the periodic sweep of expired sessions (default true; in a worker group, the group's first worker only). */
  sweeper?: boolean;
  /** This process is a worker of a --workers group (src/cluster/worker.ts). */
  worker?: WorkerLink;
  /**
   * The clock sessions are judged by: creation, idle and absolute lifetimes, refresh due, the sweep (default
   * Date.now). Tests move it instead of sleeping past a lifetime.
   */
  now?: () => number;
}

export interface TokenHandlerApp {
  app: FastifyInstance;
  ctx: AppContext;
  /**
   * Swaps in the clients and targets of a newly loaded (validated) configuration; throws, with the
   * configuration in force kept, when they cannot be served (src/ops/reload.ts).
   */
  reconfigure(next: Config): ReloadResult;
}

/** Builds the whole service from a validated Config: stores, crypto, OIDC, routes. No globals. */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<TokenHandlerApp> {
  const serverOptions: FastifyServerOptions & { http?: { maxHeaderSize?: number }; https?: { cert: Buffer; key: Buffer; maxHeaderSize?: number } } = {
    trustProxy: config.trustProxy,
    bodyLimit: config.limits.maxBodyBytes,
    // X-Request-Id is read (and validated) by requestIdFrom: Fastify's requestIdHeader takes any value verbatim.
    requestIdHeader: false,
    genReqId: requestIdFrom,
    // One line per request (src/ops/requestLog.ts).
    logController: new OneLinePerRequest(),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 512 },
    // Requests Node's parser refuses (smuggling, bad framing, oversized headers → 431) and URLs the router
    // cannot decode answer problem+json too (src/security/httpErrors.ts).
    clientErrorHandler,
    frameworkErrors: (err, _request, reply) => {
      const status = (err as { statusCode?: number }).statusCode ?? 400;
      if (status >= 500) return sendProblem(reply, 500, 'internal_error', 'an unexpected error occurred; see the service logs');
      return sendProblem(reply, status, clientErrorName(status, err.code), err.message);
    },
  };
  // Node reads the header limit from the server options Fastify passes on (`http`, or `https` with TLS).
  const http = config.limits.maxHeaderBytes ? { maxHeaderSize: config.limits.maxHeaderBytes } : {};
  serverOptions.http = http;
  serverOptions.loggerInstance = options.logger ?? (createLogger(config, process.stdout.isTTY === true) as unknown as FastifyBaseLogger);
  if (config.tls) {
    serverOptions.https = { ...http, cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) };
  }
  const app = Fastify(serverOptions) as unknown as FastifyInstance;

  const { worker } = options;
  const created = options.store ?? (await createStore(config.db));
  // In a worker group, invalidations reach the other workers through the primary as well.
  const backend = worker ? worker.withInvalidationRelay(created) : created;
  // The store's count is the group's: one worker reports it (timed like any store call: `countActive`).
  const metrics = new Metrics(!worker || worker.runsGroupWork ? () => store.countActive(Date.now()) : undefined, worker);
  if (worker) {
    worker.serveMetrics(metrics.registry);
    metrics.exposeWith(() => worker.groupMetrics());
  }
  // Tracing is on when main.ts started it from the OTEL_* environment (src/ops/tracing.ts).
  const tracing = activeTracing();
  const store = timedStore(backend, metrics, tracing);
  await store.migrate();
  // Session cookies come with every API call: their successful unseals are remembered by exact value.
  const sealer = new CookieSealer(config.session.authSecrets, config.session.encSecrets, {
    cachePurpose: (purpose) => purpose.startsWith(SessionService.cookiePurpose('')),
  });
  // Without SESSION_DB_KEY (development only; production refuses to start) the auth secret is the input
  // of a distinct derived key.
  const cipher = new PayloadCipher(config.session.dbKeys.length > 0 ? config.session.dbKeys : config.session.authSecrets);
  // Credentials of `registered: true` clients, from POST /clients/{id}: encrypted in the store.
  const vault = new RegistrationVault(store, cipher, app.log);
  const registry = new OidcRegistry(config.clients, {
    timeoutMs: config.oidc.timeoutMs,
    allowInsecureIssuer: config.oidc.allowInsecureIssuer,
    credentials: vault,
  });
  // Another instance registered a client again: forget the credentials held here, read the new ones on next use.
  store.onInvalidation((messages) => {
    for (const message of messages) {
      const about = RegistrationVault.parseInvalidation(message);
      if (about) registry.forgetRegistration(about.id, about.tenant);
    }
  });
  try {
    const loaded = await registry.loadRegistrations();
    if (loaded > 0) app.log.info({ clients: loaded }, 'loaded registered client credentials');
  } catch (err) {
    // Not fatal: each client reads its registration again on first use.
    app.log.warn({ reason: (err as Error).message }, 'could not load registered client credentials');
  }
  const sessions = new SessionService({
    store,
    sealer,
    cipher,
    lifetimes: config.session,
    cacheTtlMs: config.session.cacheTtlMs,
    oidcTimeoutMs: config.oidc.timeoutMs,
    log: app.log,
    refresher: createRefresher(registry, app.log),
    onRefresh: (client, outcome) => metrics.refreshes.inc({ client, outcome }),
    now: options.now,
  });
  const ctx: AppContext = { config, store, registry, sessions, sealer, cookies: new CookiePolicy(config), metrics, origins: new OriginResolver(config) };

  await app.register(cookie);
  if (tracing) traceRequests(app, tracing);
  // Before any route: a Host that is not a plain host[:port], or two of them, or a forwarded scheme other than
  // http(s), would become our origin; a forwarded path prefix that is not a plain path, the start of our URLs.
  // Callback style (as the hooks below): an async hook costs a promise and a microtask turn per request.
  // Answering from a callback hook means not calling done().
  decorateClientAddress(app);
  app.addHook('onRequest', (request, reply, done) => {
    // While the socket is attached: log lines written after the response need it (src/ops/clientAddress.ts).
    rememberClientAddress(request);
    const host = checkHost(request.raw.rawHeaders, request.host);
    if (!host.ok) return void sendProblem(reply.header('connection', 'close'), 400, 'invalid_host', host.reason);
    const proto = forwardedProtoProblem(request.protocol);
    if (proto !== undefined) return void sendProblem(reply.header('connection', 'close'), 400, 'invalid_forwarded_proto', proto);
    const prefix = ctx.origins.prefixProblem(request);
    if (prefix !== undefined) {
      request.log.warn({ reason: prefix }, 'X-Forwarded-Prefix refused');
      return void sendProblem(reply.header('connection', 'close'), 400, 'invalid_forwarded_prefix', prefix);
    }
    done();
  });
  registerLoginRateLimit(app, config, worker && ((key, limit, windowMs) => worker.takeRate(key, limit, windowMs)));
  // Callback-style hooks: on every request, an async hook costs a promise and a microtask turn more.
  app.addHook('onResponse', (request, reply, done) => {
    metrics.observeHttp(targetRouteLabel(request) ?? request.routeOptions.url ?? 'unmatched', request.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    done(null, payload);
  });
  closeConnectionsWhenDraining(app);
  app.setErrorHandler((err, request, reply) => {
    if (err instanceof StoreUnavailableError) {
      request.log.error({ reason: err.message }, 'session store unavailable');
      return sendProblem(reply.header('retry-after', '5'), 503, 'store_unavailable', 'the session store is unavailable; try again shortly');
    }
    const { statusCode: status, code, message } = err as { statusCode?: number; code?: string; message?: string };
    if (status && status >= 400 && status < 500) {
      return sendProblem(reply, status, clientErrorName(status, code), message ?? 'bad request');
    }
    request.log.error({ err }, 'unhandled error');
    return sendProblem(reply, 500, 'internal_error', 'an unexpected error occurred; see the service logs');
  });
  app.setNotFoundHandler((request, reply) => sendProblem(reply, 404, 'not_found', `no route for ${request.method} ${request.url.split('?')[0]}`));

  await app.register(authRoutes, { prefix: config.basePath, ctx });
  const jwks = new JwksCache(config.oidc.timeoutMs);
  await app.register(sessionRoutes, { prefix: config.basePath, ctx, adminList: adminSessionList(ctx, jwks) });
  await app.register(clientRoutes, { prefix: config.basePath, ctx, jwks, vault });
  // Server to server: no cookies, so no CSRF check (and the form parser stays inside this plugin).
  await app.register(backchannelRoutes, { prefix: config.basePath, ctx, jwks });
  // Targets named by a service URN: resolved through the directory, read again every refresh interval.
  const directory = config.directory
    ? new ServiceDirectory({ sources: config.directory.sources, refreshMs: config.directory.refreshMs, timeoutMs: config.oidc.timeoutMs, log: app.log })
    : undefined;
  const table = new TargetTable(targetRouteBuilder(ctx), (upstream, reason) => {
    // Now and then is a race with the upstream's idle timeout; often means the pool keeps connections idle
    // longer than the upstream does (targets' pool.keepAliveTimeout).
    metrics.upstreamRetries.inc({ upstream });
    app.log.info({ upstream, reason }, 'upstream closed a kept-alive connection without answering: request sent again');
  });
  if (directory) {
    await directory.start();
    directory.onChange(() => {
      try {
        table.set(ctx.config.targets, directory);
      } catch (err) {
        app.log.error({ reason: (err as Error).message }, 'service directory change not applied');
      }
    });
    app.addHook('onClose', async () => directory.close());
  }
  table.set(config.targets, directory);
  for (const mounted of table.mounted) {
    if (mounted.unresolved !== undefined) app.log.warn({ target: mounted.target.id, reason: mounted.unresolved }, 'target unresolved: it answers 503 until the directory has its URN');
  }
  await app.register(targetRoutes, { ctx, table });
  if (config.legacyRoutes) await app.register(legacyRoutes, { ctx });
  await app.register(redirectUrlRoute, { ctx });
  await app.register(healthRoutes, { ctx });
  await app.register(openApiRoute, { prefix: config.basePath, config, current: () => ctx.config });
  if (config.metricsListen) serveMetricsSeparately(app, ctx, app.log);
  else await app.register(metricsRoute, { metrics });
  // Forward-auth answers carry access tokens: only on their own internal listener, never on this one.
  if (config.forwardAuthListen) serveForwardAuth(app, ctx, table, app.log);

  if (options.sweeper ?? worker?.runsGroupWork ?? true) startSweeper(app, ctx);
  app.addHook('onClose', async () => {
    await sessions.close();
    await store.close();
    // Last: the spans of the requests that drained (and of closing the store) are exported before exit.
    await tracing?.flush().catch((err: unknown) => app.log.warn({ reason: (err as Error).message }, 'could not export the last spans'));
  });
  return { app, ctx, reconfigure: (next) => applyConfig(ctx, table, directory, next, app.log) };
}

/** Deletes expired sessions every sweep interval, one sweep at a time, off the request path. */
function startSweeper(app: FastifyInstance, ctx: AppContext): void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    ctx.sessions
      .sweep()
      .then((deleted) => {
        if (deleted > 0) app.log.info({ deleted }, 'swept expired sessions');
      })
      .catch((err: unknown) => app.log.warn({ reason: (err as Error).message }, 'session sweep failed'))
      .finally(() => {
        running = false;
      });
  }, ctx.config.session.sweepIntervalSec * 1000);
  timer.unref();
  app.addHook('onClose', async () => clearInterval(timer));
}
