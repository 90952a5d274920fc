/**
 * The API proxy: every configured target is mounted at its mount path and forwarded with
 * @fastify/reply-from over an undici pool of its own, the browser's session turned into
 * `Authorization: Bearer <access token>` on the way. Headers are rewritten in one pass each way
 * (src/security/headers.ts). No retries, ever: a proxy must not multiply requests.
 *
 * One encapsulated scope per target holds its reply-from instance (reply-from decorates `reply.from`
 * once per scope) and its body handling: no content-type parsers, only a catch-all that hands the raw
 * request stream on, so bodies stream in both directions and are never buffered.
 *
 * Per request, in order (cheapest and most decisive first, nothing forwarded on any refusal):
 * path check → CORS (preflights answered here) → method → body size → CSRF → session/token → forward.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import type { Readable } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import replyFrom, { type FastifyReplyFromHooks } from '@fastify/reply-from';
import { Pool } from 'undici';
import type { AppContext } from '../context.ts';
import { planTarget, resolveCredential, type Credential, type TargetPlan } from '../proxy/plan.ts';
import { checkCsrf, isSafeMethod } from '../security/csrf.ts';
import { prepareResponseHeaders, prepareUpstreamHeaders, type Headers } from '../security/headers.ts';
import { joinUpstreamPath, rawSubPath } from '../security/paths.ts';
import { sendProblem } from './problem.ts';
import { websocketProxy } from './websocket.ts';

/** Per-request proxy state, on a request decoration (stable object shape, no WeakMap). */
interface ProxyState {
  token: string | undefined;
  startedAt: number;
  bodyTooLarge: boolean;
}
const kProxy = Symbol('token-handler.proxy');
type ProxiedRequest = FastifyRequest & { [kProxy]: ProxyState | null };

/** Upstream bodies of a declared length up to this are collected and sent as one Buffer. */
const BUFFER_BELOW_BYTES = 16 * 1024;

/** CORS request headers allowed besides whatever the preflight asks for. */
const BASE_ALLOW_HEADERS = ['accept', 'accept-language', 'content-language', 'content-type', 'cache-control', 'last-event-id', 'x-requested-with'];
const PREFLIGHT_MAX_AGE_SEC = '600';
const COMMON_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

export async function targetRoutes(app: FastifyInstance, opts: { ctx: AppContext }): Promise<void> {
  const { ctx } = opts;
  if (ctx.config.targets.length === 0) return;
  app.decorateRequest(kProxy, null);
  const plans = ctx.config.targets.map((target) => planTarget(ctx, target));
  for (const plan of plans) {
    await app.register(async (scope) => registerTarget(scope, ctx, plan));
  }
  websocketProxy(app, ctx, plans.filter((plan) => plan.target.websocket));
}

async function registerTarget(scope: FastifyInstance, ctx: AppContext, plan: TargetPlan): Promise<void> {
  const { target } = plan;
  const maxBodyBytes = ctx.config.limits.maxBodyBytes;
  const baseAllowHeaders = [...BASE_ALLOW_HEADERS, ctx.cookies.xsrfHeaderName.toLowerCase(), plan.tenantHeader].join(', ');
  const metrics = ctx.metrics;
  // As requestInfo.requestOrigin, without parsing --public_url on every request.
  const publicOrigin = ctx.config.publicUrl ? new URL(ctx.config.publicUrl).origin : undefined;
  // With --public_url, X-Forwarded-Host/Proto tell the upstream that, never what a client put in Host.
  const publicForwarded = ctx.config.publicUrl ? { proto: new URL(ctx.config.publicUrl).protocol.slice(0, -1), host: new URL(ctx.config.publicUrl).host } : undefined;
  const duration = metrics.proxyDuration.labels(target.id);
  const countByStatus = new Map<number, { inc(): void }>();
  const countResponse = (status: number): void => {
    let counter = countByStatus.get(status);
    if (!counter) {
      counter = metrics.proxyRequests.labels(target.id, String(status));
      countByStatus.set(status, counter);
    }
    counter.inc();
  };

  const pool = new Pool(plan.base.origin, {
    connections: target.pool.connections,
    keepAliveTimeout: target.pool.keepAliveTimeoutMs,
    keepAliveMaxTimeout: target.pool.keepAliveMaxTimeoutMs,
    pipelining: 1,
    // Time to the response headers; then the longest silence within a response body (SSE upstreams
    // must send something, e.g. a comment line, more often than this).
    headersTimeout: target.timeoutMs,
    bodyTimeout: target.timeoutMs,
  });
  scope.addHook('onClose', async () => {
    await pool.destroy();
  });

  // reply-from's own default would turn off TLS certificate checks: it gets our pool instead. undici
  // stays on 7.x: 8.x's request() API leaves every proxied response's objects alive through young-
  // generation collections (measured: ~25 % of what a request allocates survives, against ~1 % on 7.x,
  // and the scavenges that copy it pause the event loop for 60-100 ms at 1,000 req/s; bench/RESULTS.md).
  await scope.register(replyFrom, { base: plan.base.origin, undici: pool, disableRequestLogging: true });

  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

  /**
   * Reads a small upstream body of declared `length` and sends it as one Buffer. An upstream that fails
   * before the body is complete gets the browser a 502, never a truncated 200.
   */
  function relayBuffered(request: FastifyRequest, reply: FastifyReply, body: Readable, length: number): void {
    const chunks: Buffer[] = [];
    let received = 0;
    body.on('data', (chunk: Buffer) => {
      received += chunk.length;
      chunks.push(chunk);
    });
    body.once('end', () => {
      void reply.send(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received));
    });
    body.once('error', (err: Error) => {
      request.log.warn({ target: target.id, reason: describe(err), expected: length, received }, 'upstream response body failed');
      if (reply.sent || reply.raw.headersSent) return;
      // Headers copied from the upstream (its Content-Length among them) do not describe this answer.
      reply.removeHeader('content-length').removeHeader('content-type').removeHeader('content-encoding');
      void sendProblem(reply.header('connection', 'close'), 502, 'upstream_unavailable', `target "${target.id}" failed while sending its response`);
    });
  }

  const fromOptions: FastifyReplyFromHooks = {
    // A proxy must not multiply requests: no retries, also not reply-from's GET-on-503 ones.
    retryDelay: () => null,
    rewriteRequestHeaders(request, headers) {
      const method = request.method;
      return prepareUpstreamHeaders(
        headers as Headers,
        plan.upstreamHeaders,
        (request as ProxiedRequest)[kProxy]?.token,
        {
          clientAddress: request.raw.socket.remoteAddress,
          proto: publicForwarded?.proto ?? request.protocol,
          host: publicForwarded?.host ?? request.host,
        },
        // Fastify does not read a GET/HEAD body, so none is forwarded: neither may its length be.
        method === 'GET' || method === 'HEAD',
      ) as typeof headers;
    },
    rewriteHeaders(upstream) {
      const headers = prepareResponseHeaders(upstream as Headers, plan.responseHeaders) as typeof upstream;
      // Our Vary: Origin (set in the handler) must survive the upstream's Vary, copied over it after this.
      if (plan.hasCors) headers.vary = headers.vary ? `${String(headers.vary)}, Origin` : 'Origin';
      return headers;
    },
    onResponse(request, reply, res) {
      const state = (request as ProxiedRequest)[kProxy];
      if (state) duration.observe((performance.now() - state.startedAt) / 1000);
      countResponse(res.statusCode);
      // reply-from types the upstream response for HTTP/2 too; with undici it carries the headers it got.
      const status = res.statusCode;
      if (status === 304 || status === 204) {
        // No content, whatever a Content-Length says (RFC 9110 §8.6 lets a 304 state the length of the
        // representation it does not send): undici 7 reports the missing bytes as a body error, not ours.
        const stream = res.stream as Readable;
        stream.on('error', ignoreNoContentBodyError).resume();
        void reply.send();
        return;
      }
      const length = Number((res as unknown as { headers: Record<string, unknown> }).headers['content-length']);
      if (request.method !== 'HEAD' && length > 0 && length <= BUFFER_BELOW_BYTES) {
        // A small body of known size goes out as one Buffer: streamed through Fastify, undici's body
        // stream left several times the garbage (bench/RESULTS.md).
        relayBuffered(request as unknown as FastifyRequest, reply as unknown as FastifyReply, res.stream as Readable, length);
        return;
      }
      void reply.send(res.stream);
    },
    onError(fromReply, { error }) {
      // reply-from types its hooks for HTTP/2 servers too; this server is HTTP/1.1.
      const reply = fromReply as unknown as FastifyReply;
      const request = reply.request;
      const state = (request as ProxiedRequest)[kProxy];
      if (state) duration.observe((performance.now() - state.startedAt) / 1000);
      if (state?.bodyTooLarge && !reply.sent) {
        countResponse(413);
        void sendProblem(reply.header('connection', 'close'), 413, 'payload_too_large', `the request body is larger than ${maxBodyBytes} bytes`);
        return;
      }
      const timedOut = isTimeout(error);
      countResponse(timedOut ? 504 : 502);
      request.log.warn({ target: target.id, reason: describe(error) }, timedOut ? 'upstream timed out' : 'upstream unavailable');
      if (reply.sent) return;
      if (!request.raw.complete) reply.header('connection', 'close');
      void (timedOut
        ? sendProblem(reply, 504, 'upstream_timeout', `target "${target.id}" did not answer within ${target.timeoutMs} ms`)
        : sendProblem(reply, 502, 'upstream_unavailable', `target "${target.id}" could not be reached`));
    },
  };

  /** Synchronous unless the session or its token needs the store or the IdP: then a promise of the reply. */
  function handler(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> | undefined {
    const result = handle(request, reply);
    // A sync handler that returns nothing has answered or will answer through `reply` (no promise per request).
    return result instanceof Promise ? result : undefined;
  }

  function handle(request: FastifyRequest, reply: FastifyReply): FastifyReply | Promise<FastifyReply> {
    const headers = request.headers;
    const subPath = rawSubPath(request.raw.url ?? '', plan.mountPath);
    if (subPath === undefined) return refuse(request, reply, 400, 'invalid_path', 'the request path is not a plain spelling of the target mount path');
    const joined = joinUpstreamPath(plan.base, subPath);
    if (!joined.ok) return refuse(request, reply, 400, 'invalid_path', `the request path was refused: ${joined.reason}`);

    const method = request.method;
    const origin = headers.origin;
    // Tenant-scoped clients: CORS and CSRF origins are the tenant's; a bad tenant is refused further down.
    const tenant = plan.tenantOf(single(headers[plan.tenantHeader]));
    const tenantId = tenant.ok ? tenant.tenant : null;
    if (plan.hasCors) {
      const allowed = origin !== undefined && tenant.ok && plan.corsOrigins(tenantId).has(origin);
      if (method === 'OPTIONS' && origin !== undefined && headers['access-control-request-method'] !== undefined) {
        return preflight(reply, allowed ? origin : undefined, headers['access-control-request-headers']);
      }
      reply.header('vary', 'Origin');
      if (allowed) reply.header('access-control-allow-origin', origin).header('access-control-allow-credentials', 'true');
    } else if (method === 'OPTIONS' && origin !== undefined && headers['access-control-request-method'] !== undefined) {
      // Preflights are ours to answer, never an upstream's: without configured origins, no consent.
      return preflight(reply, undefined, undefined);
    }
    if (!plan.methods.has(method)) {
      reply.header('allow', plan.allowMethods);
      return refuse(request, reply, 405, 'method_not_allowed', `target "${target.id}" does not accept ${method}`);
    }

    const contentLength = headers['content-length'];
    if (contentLength !== undefined && Number(contentLength) > maxBodyBytes) {
      return refuse(request, reply, 413, 'payload_too_large', `the request body is larger than ${maxBodyBytes} bytes`);
    }

    if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') {
      const csrf = checkCsrf({
        // Anything but GET/HEAD/OPTIONS is checked, whatever csrf.ts counts as safe.
        method: isSafeMethod(method) ? 'POST' : method,
        origin,
        secFetchSite: single(headers['sec-fetch-site']),
        headerToken: single(headers[plan.upstreamHeaders.xsrfHeader]),
        cookieToken: request.cookies[ctx.cookies.xsrfCookieName],
        allowedOrigins: plan.csrfOrigins(tenantId, publicOrigin ?? `${request.protocol}://${request.host}`),
      });
      if (!csrf.ok) {
        metrics.csrfRejections.inc({ reason: 'proxy' });
        request.log.info({ target: target.id, reason: csrf.reason }, 'proxy request refused by the CSRF check');
        return refuse(request, reply, 403, 'csrf_failed', csrf.reason);
      }
    }

    const secure = ctx.cookies.secure(request.protocol === 'https');
    const cookieName = secure ? plan.sessionCookie.secure : plan.sessionCookie.insecure;
    const credential = resolveCredential(ctx, plan, request.cookies[cookieName], tenant);
    const path = joined.path;
    if (credential instanceof Promise) return credential.then((resolved) => proceed(request, reply, resolved, path, cookieName, secure));
    return proceed(request, reply, credential, path, cookieName, secure);
  }

  /** Answers a refused credential, or forwards with it. */
  function proceed(request: FastifyRequest, reply: FastifyReply, credential: Credential, path: string, cookieName: string, secure: boolean): FastifyReply {
    if (credential.clearCookie) reply.clearCookie(cookieName, ctx.cookies.attributes(secure, { httpOnly: true }));
    if (!credential.ok) {
      if (credential.status === 503) reply.header('retry-after', '5');
      return refuse(request, reply, credential.status, credential.error, credential.detail);
    }
    const session = credential.session;
    if (session?.resealCookie) {
      reply.setCookie(cookieName, ctx.sessions.sealCookie(session), ctx.cookies.attributes(secure, { httpOnly: true, expires: new Date(session.record.expiresAt) }));
    }

    const state: ProxyState = { token: credential.token, startedAt: performance.now(), bodyTooLarge: false };
    (request as ProxiedRequest)[kProxy] = state;
    if (request.headers['content-length'] === undefined && request.body !== undefined) {
      // A chunked body has no declared size: count it as it streams and stop at the limit.
      request.body = limitBody(request.raw, request.body as Readable, maxBodyBytes, state);
    }
    return reply.from(path, fromOptions);
  }

  function preflight(reply: FastifyReply, origin: string | undefined, requested: string | string[] | undefined): FastifyReply {
    reply.header('vary', 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers').header('cache-control', 'no-store');
    if (origin !== undefined) {
      const asked = single(requested);
      reply
        .header('access-control-allow-origin', origin)
        .header('access-control-allow-credentials', 'true')
        .header('access-control-allow-methods', plan.allowMethods)
        .header('access-control-allow-headers', asked !== undefined && isHeaderList(asked) ? `${baseAllowHeaders}, ${asked}` : baseAllowHeaders)
        .header('access-control-max-age', PREFLIGHT_MAX_AGE_SEC);
    }
    return reply.code(204).send();
  }

  // Routes for the common methods too, so a method the target does not accept gets a 405, not a 404.
  const methods = new Set<string>([...COMMON_METHODS, ...target.methods]);
  const supported = new Set(scope.supportedMethods);
  const routeMethods = [...methods].filter((method) => {
    if (supported.has(method)) return true;
    scope.log.warn({ target: target.id, method }, 'HTTP method not supported by the server; not proxied');
    return false;
  }) as HTTPMethods[];
  const routeOptions = { method: routeMethods, exposeHeadRoute: false, handler };
  scope.route({ ...routeOptions, url: plan.mountPath === '' ? '/' : plan.mountPath });
  scope.route({ ...routeOptions, url: `${plan.mountPath}/*` });
}

/** Answers a refused request; a body the browser is still sending is not read (the connection closes). */
function refuse(request: FastifyRequest, reply: FastifyReply, status: number, error: string, detail: string): FastifyReply {
  const headers = request.headers;
  if ((headers['content-length'] !== undefined && headers['content-length'] !== '0') || headers['transfer-encoding'] !== undefined) {
    reply.header('connection', 'close');
  }
  return sendProblem(reply, status, error, detail);
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** A comma-separated list of header names (token characters only). */
function isHeaderList(value: string): boolean {
  if (value.length === 0 || value.length > 1024) return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    const ok =
      (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || c === 0x2c || c === 0x20;
    if (!ok) return false;
  }
  return true;
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);

/** The body of a 204 or 304 is nothing; undici's complaint that a stated length went unsent is not an upstream failure. */
function ignoreNoContentBodyError(): void {}

/** reply-from wraps undici's error; the code that tells a timeout from a refusal is on the cause. */
function isTimeout(error: Error): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TIMEOUT_CODES.has(code)) return true;
    if ((e as { statusCode?: unknown }).statusCode === 504) return true;
  }
  return false;
}

/** The error's message and code, or its cause's when it wraps one (a connection refused under undici's socket error). */
function describe(error: Error): string {
  const e = error.cause instanceof Error ? error.cause : error;
  const code = (e as { code?: unknown }).code;
  return `${e.message}${typeof code === 'string' ? ` (${code})` : ''}`;
}

/** Counts a chunked request body as it streams; past the limit it fails the upstream request (→ 413). */
class BodyLimit extends Transform {
  readonly #limit: number;
  readonly #state: ProxyState;
  #seen = 0;

  constructor(limit: number, state: ProxyState) {
    super();
    this.#limit = limit;
    this.#state = state;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.#limit) {
      this.#state.bodyTooLarge = true;
      callback(new Error(`request body larger than ${this.#limit} bytes`));
      return;
    }
    callback(null, chunk);
  }
}

function limitBody(raw: FastifyRequest['raw'], body: Readable, limit: number, state: ProxyState): Readable {
  const limiter = new BodyLimit(limit, state);
  // pipe, not pipeline: destroying the request stream would destroy the socket, and the 413 with it.
  body.pipe(limiter);
  limiter.once('error', () => body.unpipe(limiter));
  raw.once('close', () => {
    if (!raw.complete) limiter.destroy(new Error('the browser aborted the request body'));
  });
  return limiter;
}
