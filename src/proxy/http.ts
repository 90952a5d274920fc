/**
 * The API proxy: every configured target is mounted at its mount path and forwarded with
 * @fastify/reply-from over an undici pool of its own, the browser's session turned into
 * `Authorization: Bearer <access token>` on the way. Headers are rewritten in one pass each way
 * (src/proxy/headers.ts). No retries (a proxy must not multiply requests), but for the one RFC 9112 allows:
 * a safe request that a kept-alive connection lost unanswered (src/proxy/staleRetry.ts).
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
import type { Dispatcher } from 'undici';
import { BrowserLink, kBrowser } from './browserGone.ts';
import { kUpstream, RoutingDispatcher, type RouteBuilder, type TargetTable } from './table.ts';
import type { AppContext } from '../context.ts';
import { statusLabel } from '../metrics.ts';
import { planTarget, resolveCredential, type Credential, type TargetPlan } from './plan.ts';
import { checkTargetCsrf, safeRequestPasses } from '../security/csrf.ts';
import { goErrorShape } from '../http/goError.ts';
import { METHOD_OVERRIDE_HEADERS, prepareResponseHeaders, prepareUpstreamHeaders, type Headers } from './headers.ts';
import { joinUpstreamPath, rawSubPath } from './paths.ts';
import { sendProblem } from '../http/problem.ts';
import { websocketProxy } from './websocket.ts';
import { activeTracing, redactedQuery, type ClientSpan } from '../ops/tracing.ts';
import { requestSpan } from '../ops/traceRequests.ts';

/** Per-request proxy state, on a request decoration (stable object shape, no WeakMap). */
interface ProxyState {
  token: string | undefined;
  startedAt: number;
  bodyTooLarge: boolean;
  /** The upstream call's span (tracing on): its traceparent goes upstream. */
  span: ClientSpan | null;
  /** The upstream exchange tied to the browser's connection (src/proxy/browserGone.ts). */
  browser: BrowserLink | null;
}
const kProxy = Symbol('token-handler.proxy');
type ProxiedRequest = FastifyRequest & { [kProxy]: ProxyState | null };

/** Upstream bodies of a declared length up to this are collected and sent as one Buffer. */
const BUFFER_BELOW_BYTES = 16 * 1024;

/** CORS request headers allowed besides whatever the preflight asks for. */
const BASE_ALLOW_HEADERS = ['accept', 'accept-language', 'content-language', 'content-type', 'cache-control', 'last-event-id', 'x-requested-with'];
const PREFLIGHT_MAX_AGE_SEC = '600';

/** A target's request handler: synchronous unless the session or its token needs the store or the IdP. */
export type TargetHandler = (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply> | undefined;
export interface TargetRoute {
  plan: TargetPlan;
  handler: TargetHandler;
}

/** The route label of the target routes in metrics and logs, as the routes of each target were named. */
const kRouteLabel = Symbol('token-handler.routeLabel');
type LabelledRequest = FastifyRequest & { [kRouteLabel]: string | null };
/** Set on requests to a go-format (`proxies:`) target: our own errors take Go's JSON shape. */
const kGoErrors = Symbol('token-handler.goErrors');
type GoShapedRequest = FastifyRequest & { [kGoErrors]?: boolean };

/** The metrics route of a request the target dispatcher answered: `<mount>/*`, or `unmatched`. */
export function targetRouteLabel(request: FastifyRequest): string | undefined {
  return (request as LabelledRequest)[kRouteLabel] ?? undefined;
}

/** Builds the routes of targets for the table (src/proxy/table.ts): plan and handler, per target. */
export function targetRouteBuilder(ctx: AppContext): RouteBuilder<TargetRoute> {
  return (target, url, pool) => {
    const plan = planTarget(ctx, url === target.url ? target : { ...target, url });
    return { plan, handler: targetHandler(ctx, plan, pool) };
  };
}

/**
 * One catch-all route for every target: the target is looked up per request in the table in force
 * (`ctx`'s configuration can be reloaded, src/ops/reload.ts), so targets come and go without a restart.
 * Our own routes are more specific than the catch-all and win; what no target mounts answers 404.
 */
export async function targetRoutes(app: FastifyInstance, opts: { ctx: AppContext; table: TargetTable<TargetRoute> }): Promise<void> {
  const { ctx, table } = opts;
  app.decorateRequest(kProxy, null);
  app.decorateRequest(kRouteLabel, null);
  app.decorateRequest(kGoErrors, false);
  app.addHook('onClose', async () => table.close());
  await app.register(async (scope) => {
    // reply-from's own default would turn off TLS certificate checks: it gets our pools instead (one per
    // target, chosen per request by the routing dispatcher). undici stays on 7.x: 8.x's request() API
    // leaves every proxied response's objects alive through young-generation collections (measured:
    // ~25 % of what a request allocates survives, against ~1 % on 7.x, and the scavenges that copy it pause
    // the event loop for 60-100 ms at 1,000 req/s; bench/RESULTS.md).
    await scope.register(replyFrom, { undici: new RoutingDispatcher(), disableRequestLogging: true });
    // No content-type parsers, only a catch-all that hands the raw request stream on: bodies stream in
    // both directions and are never buffered.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.addHook('onSend', (request, reply, payload, done) => {
      if ((request as GoShapedRequest)[kGoErrors] === true) goErrorShape(request, reply, payload, done);
      else done(null, payload);
    });
    const dispatch = (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> | FastifyReply | undefined => {
      const rawUrl = request.raw.url ?? '';
      const labelled = request as LabelledRequest;
      // An absolute-form request target (`GET http://host/path`) names no path of ours to match.
      if (rawUrl.charCodeAt(0) !== 0x2f) {
        labelled[kRouteLabel] = 'unmatched';
        return refuse(request, reply, 400, 'invalid_path', 'the request target must be a path (origin-form), not an absolute URL');
      }
      const mounted = table.match(rawUrl);
      if (!mounted) {
        labelled[kRouteLabel] = 'unmatched';
        return sendProblem(reply, 404, 'not_found', `no route for ${request.method} ${rawUrl.split('?')[0]}`);
      }
      const bareMount = rawSubPath(rawUrl, mounted.mountPath) === '';
      labelled[kRouteLabel] = bareMount ? mounted.labels.exact : mounted.labels.below;
      // go-token-handler `proxies:`: our own error answers in its JSON shape (the upstream's are untouched).
      if (mounted.target.goErrors) (request as GoShapedRequest)[kGoErrors] = true;
      // Go ServeMux answered the bare path of a subtree pattern (`/api` for `/api/`) with a 301 to the slash.
      if (bareMount && mounted.target.redirectBareMount) return redirectToSubtree(request, reply);
      if (!mounted.route) {
        request.log.warn({ target: mounted.target.id, reason: mounted.unresolved }, 'target unresolved');
        return refuse(request, reply.header('retry-after', '5'), 503, 'target_unresolved', `target "${mounted.target.id}" has no upstream: ${mounted.unresolved ?? 'unknown'}`);
      }
      return mounted.route.handler(request, reply);
    };
    const routeOptions = { method: scope.supportedMethods.filter((method) => method !== 'CONNECT') as HTTPMethods[], exposeHeadRoute: false, handler: dispatch };
    // `/*` matches `/` too (a target mounted at the root), unless another route serves `/` (the demo's page).
    scope.route({ ...routeOptions, url: '/*' });
  });
  websocketProxy(app, ctx, table);
}

function targetHandler(ctx: AppContext, plan: TargetPlan, pool: Dispatcher): TargetHandler {
  const { target } = plan;
  const maxBodyBytes = ctx.config.limits.maxBodyBytes;
  const baseAllowHeaders = [...BASE_ALLOW_HEADERS, ctx.cookies.xsrfHeaderName.toLowerCase(), plan.tenantHeader].join(', ');
  const metrics = ctx.metrics;
  // With --public_url, X-Forwarded-Host/Proto tell the upstream that, never what a client put in Host.
  const origins = ctx.origins;
  const tracing = activeTracing();
  const upstreamUrl = new URL(plan.base.origin);
  const upstreamPort = upstreamUrl.port === '' ? (upstreamUrl.protocol === 'https:' ? 443 : 80) : Number(upstreamUrl.port);
  const duration = metrics.proxyDuration.labels(target.id);
  const countByStatus = new Map<number, { inc(): void }>();
  const countResponse = (status: number): void => {
    let counter = countByStatus.get(status);
    if (!counter) {
      counter = metrics.proxyRequests.labels(target.id, statusLabel(status));
      countByStatus.set(status, counter);
    }
    counter.inc();
  };
  const upstreamOrigin = plan.base.origin;

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
    getUpstream: () => upstreamOrigin,
    rewriteRequestHeaders(request, headers) {
      const method = request.method;
      const origin = origins.of(request as unknown as FastifyRequest);
      const clientAddress = request.raw.socket?.remoteAddress;
      const span = (request as ProxiedRequest)[kProxy]?.span;
      const upstream = prepareUpstreamHeaders(
        headers as Headers,
        plan.upstreamHeaders,
        (request as ProxiedRequest)[kProxy]?.token,
        {
          clientAddress,
          peerTrusted: origins.trustsPeer(clientAddress),
          proto: origin.proto,
          host: origin.host,
        },
        // Fastify does not read a GET/HEAD body, so none is forwarded: neither may its length be.
        method === 'GET' || method === 'HEAD',
      ) as typeof headers & { [kUpstream]?: Dispatcher; [kBrowser]?: BrowserLink };
      if (span) {
        // The upstream's parent is this call's span, in the trace the browser's traceparent named (if valid).
        upstream.traceparent = span.traceparent;
        if (span.tracestate === undefined) delete upstream.tracestate;
        else upstream.tracestate = span.tracestate;
      }
      // The routing dispatcher sends the request to this target's pool, tied to the browser's connection.
      upstream[kUpstream] = pool;
      const browser = (request as ProxiedRequest)[kProxy]?.browser;
      if (browser) upstream[kBrowser] = browser;
      return upstream;
    },
    rewriteHeaders(upstream) {
      const headers = prepareResponseHeaders(upstream as Headers, plan.responseHeaders) as typeof upstream;
      // Our Vary: Origin (set in the handler) must survive the upstream's Vary, copied over it after this.
      if (plan.hasCors) headers.vary = headers.vary ? `${String(headers.vary)}, Origin` : 'Origin';
      return headers;
    },
    onResponse(request, reply, res) {
      const state = (request as ProxiedRequest)[kProxy];
      if (state) {
        duration.observe((performance.now() - state.startedAt) / 1000);
        if (state.span) endSpan(state, res.statusCode, undefined);
      }
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
      if (state?.span) endSpan(state, undefined, state.bodyTooLarge ? 'payload_too_large' : isTimeout(error) ? 'timeout' : 'unavailable');
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
    // With method overrides allowed, the method the upstream will act on is the one the header names:
    // it must be allowed too, and pass the CSRF check as that method.
    let effective = method;
    if (target.allowMethodOverride) {
      const override = methodOverride(headers);
      if (override === null) return refuse(request, reply, 400, 'invalid_method_override', 'the method-override headers must name one HTTP method');
      if (override !== undefined && !plan.methods.has(override)) {
        reply.header('allow', plan.allowMethods);
        return refuse(request, reply, 405, 'method_not_allowed', `target "${target.id}" does not accept ${override} (from a method-override header)`);
      }
      effective = override ?? method;
    }

    const contentLength = headers['content-length'];
    if (contentLength !== undefined && Number(contentLength) > maxBodyBytes) {
      return refuse(request, reply, 413, 'payload_too_large', `the request body is larger than ${maxBodyBytes} bytes`);
    }

    // Without the tenant header, the tenant (and so the origins CSRF accepts) is the session's: checked once known.
    const csrfLater = plan.tenantFromSession(tenant) ? effective : undefined;
    if (csrfLater === undefined) {
      const reason = csrfProblem(request, effective, tenantId);
      if (reason !== undefined) return refuse(request, reply, 403, 'csrf_failed', reason);
    }

    const secure = ctx.cookies.secure(request.protocol === 'https');
    const cookieName = secure ? plan.sessionCookie.secure : plan.sessionCookie.insecure;
    const credential = resolveCredential(ctx, plan, request.cookies[cookieName], tenant);
    const path = joined.path;
    if (credential instanceof Promise) return credential.then((resolved) => proceed(request, reply, resolved, path, cookieName, secure, csrfLater));
    return proceed(request, reply, credential, path, cookieName, secure, csrfLater);
  }

  /** Why the CSRF check refuses a state-changing request in `tenant`, or undefined when it passes. */
  function csrfProblem(request: FastifyRequest, method: string, tenant: string | null): string | undefined {
    const headers = request.headers;
    const secFetchSite = single(headers['sec-fetch-site']);
    // Most API calls: a same-site GET, which passes without the allowed origins being worked out.
    if (safeRequestPasses(method, secFetchSite, target.csrf)) return undefined;
    const csrf = checkTargetCsrf({
      method,
      origin: headers.origin,
      secFetchSite,
      headerToken: single(headers[plan.upstreamHeaders.xsrfHeader]),
      cookieToken: request.cookies[ctx.cookies.xsrfCookieName],
      allowedOrigins: plan.csrfOrigins(tenant, origins.originOf(request)),
      policy: target.csrf,
    });
    if (csrf.ok) return undefined;
    metrics.csrfRejections.inc({ reason: 'proxy' });
    request.log.info({ target: target.id, reason: csrf.reason }, 'proxy request refused by the CSRF check');
    return csrf.reason;
  }

  /** Answers a refused credential, or forwards with it (after the CSRF check `csrfLater` names, in the session's tenant). */
  function proceed(
    request: FastifyRequest,
    reply: FastifyReply,
    credential: Credential,
    path: string,
    cookieName: string,
    secure: boolean,
    csrfLater: string | undefined,
  ): FastifyReply {
    if (csrfLater !== undefined) {
      const reason = csrfProblem(request, csrfLater, credential.ok ? (credential.session?.record.tenant ?? null) : null);
      if (reason !== undefined) return refuse(request, reply, 403, 'csrf_failed', reason);
    }
    if (credential.clearCookie) reply.clearCookie(cookieName, ctx.cookies.attributes(secure, { httpOnly: true }));
    if (!credential.ok) {
      if (credential.status === 503) reply.header('retry-after', '5');
      return refuse(request, reply, credential.status, credential.error, credential.detail);
    }
    const session = credential.session;
    if (session?.resealCookie) {
      reply.setCookie(cookieName, ctx.sessions.sealCookie(session), ctx.cookies.attributes(secure, { httpOnly: true, expires: new Date(session.record.expiresAt) }));
    }

    const state: ProxyState = { token: credential.token, startedAt: performance.now(), bodyTooLarge: false, span: null, browser: null };
    if (tracing) state.span = upstreamSpan(request, path);
    state.browser = new BrowserLink(reply.raw, () => browserGone(request, state));
    // It left while the session was looked up: nothing to send, nobody to answer (it is counted already).
    if (state.browser.gone) return reply;
    (request as ProxiedRequest)[kProxy] = state;
    if (request.headers['content-length'] === undefined && request.body !== undefined) {
      // A chunked body has no declared size: count it as it streams and stop at the limit.
      request.body = limitBody(request.raw, request.body as Readable, maxBodyBytes, state);
    }
    return reply.from(path, fromOptions);
  }

  /**
   * The browser closed its connection before the upstream answered: the upstream request is aborted
   * (BrowserLink), and counted as nginx counts it, 499.
   */
  function browserGone(request: FastifyRequest, state: ProxyState): void {
    // Runs in the response's 'close' listener: nothing may escape it.
    try {
      duration.observe((performance.now() - state.startedAt) / 1000);
      if (state.span) endSpan(state, undefined, 'browser_gone');
      countResponse(499);
      request.log.info({ target: target.id }, 'the browser left before the upstream answered: upstream request cancelled');
    } catch (err) {
      request.log.error({ err }, 'could not account for a request whose browser left');
    }
  }

  /** The upstream call's client span: `GET`, with the upstream URL (query values redacted) and the target. */
  function upstreamSpan(request: FastifyRequest, path: string): ClientSpan {
    // reply-from adds the request's query to the path: the span shows its names, not its values.
    const raw = request.raw.url ?? '';
    const q = raw.indexOf('?');
    const url = `${plan.base.origin}${path}${q < 0 ? '' : `?${redactedQuery(raw.slice(q))}`}`;
    return tracing!.startClient(requestSpan(request), request.method, {
      'http.request.method': request.method,
      'server.address': upstreamUrl.hostname,
      'server.port': upstreamPort,
      'url.full': url,
      'token_handler.target': target.id,
    });
  }

  function endSpan(state: ProxyState, status: number | undefined, failure: string | undefined): void {
    const span = state.span!;
    state.span = null;
    if (status !== undefined) span.setAttribute('http.response.status_code', status);
    if (failure !== undefined) span.fail(failure);
    else if (status !== undefined && status >= 500) span.fail(String(status));
    span.end();
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

  return handler;
}

/** `/api?x=1` → 301 `/api/?x=1`, as Go's ServeMux answers a subtree pattern's bare path. */
function redirectToSubtree(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const url = request.raw.url ?? '/';
  const q = url.indexOf('?');
  const location = q < 0 ? `${url}/` : `${url.slice(0, q)}/${url.slice(q)}`;
  return reply.code(301).header('location', location).header('cache-control', 'no-store').send();
}

/** Answers a refused request; a body the browser is still sending is not read (the connection closes). */
function refuse(request: FastifyRequest, reply: FastifyReply, status: number, error: string, detail: string): FastifyReply {
  const headers = request.headers;
  if ((headers['content-length'] !== undefined && headers['content-length'] !== '0') || headers['transfer-encoding'] !== undefined) {
    reply.header('connection', 'close');
  }
  return sendProblem(reply, status, error, detail);
}

export function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The method named by the request's method-override headers: undefined when there are none, null when
 * they are not one plain method (two different ones, a list, something that is not a method token).
 */
export function methodOverride(headers: FastifyRequest['headers']): string | undefined | null {
  let named: string | undefined;
  for (const name of METHOD_OVERRIDE_HEADERS) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) return null;
    const method = value.trim().toUpperCase();
    if (!/^[A-Z]{1,16}$/.test(method) || (named !== undefined && named !== method)) return null;
    named = method;
  }
  return named;
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
