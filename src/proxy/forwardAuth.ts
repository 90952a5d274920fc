/**
 * Forward-auth: the data plane stays nginx, Traefik or Envoy, and asks us per request whether to let it
 * through and with which bearer token (nginx `auth_request`, Traefik `ForwardAuth`, Envoy `ext_authz` with
 * an HTTP service). The gateway sends a check request carrying the original request's headers (its Cookie
 * among them) and its method and URI; the answer is
 *
 * - 200, `Authorization: Bearer <access token>` (absent for a target or a request that needs none) and
 *   `Cookie: <the original cookies without ours>`, for the gateway to put on the upstream request
 *   (nginx `auth_request_set`, Traefik `authResponseHeaders`, Envoy `allowed_upstream_headers`);
 * - 401 problem+json (`login_required`) without a live session;
 * - 403 problem+json for every other refusal (unknown target, method the target does not accept, CSRF,
 *   bad path or tenant): nginx turns any status but 401 and 403 into a 500;
 * - 503 when the store or the IdP cannot answer.
 *
 * The same decisions as the proxy (src/proxy/http.ts), from the same code: the target from the original
 * URI by mount path (plan.ts), the method allow-list, the CSRF check (security/csrf.ts) and the credential
 * (plan.resolveCredential: refresh first when due, single-flight). Every answer is `Cache-Control: no-store`.
 *
 * The 200 answer holds an access token, so it is never served to a browser: only on its own listener
 * (--forward_auth_listen_addr: a port, or a Unix socket that only local users its mode admits can reach),
 * which the gateway reaches and the browser does not, and with
 * --forward_auth_allow only to the gateways' addresses; the main listener has no such route. Not done here (the proxy does them, the gateway must): resealing a session cookie after
 * a key rotation and clearing an ended session's cookie (the check answer cannot set cookies), CORS
 * preflight answers (passed on to the upstream, without a token) and body size limits.
 */
import cookie from '@fastify/cookie';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import type { AddressInfo } from 'node:net';
import type { AppContext } from '../context.ts';
import { sendProblem } from '../http/problem.ts';
import { compileTrust, lastEntry } from '../http/origin.ts';
import { internalListenerAddress, serveInternalListener } from '../ops/internalListener.ts';
import { checkCsrf, isSafeMethod } from '../security/csrf.ts';
import { METHOD_OVERRIDE_HEADERS, stripOwnCookies } from './headers.ts';
import { methodOverride, single, type TargetRoute } from './http.ts';
import { joinUpstreamPath, rawSubPath } from './paths.ts';
import { resolveCredential, type Credential, type TargetPlan } from './plan.ts';
import type { Mounted, TargetTable } from './table.ts';

/** The request the gateway asks about. */
export interface OriginalRequest {
  method: string;
  /** The raw request-target: path and query as the browser sent them. */
  uri: string;
}

type Headers = FastifyRequest['headers'];

const METHOD = /^[A-Z]{1,16}$/;

/**
 * The original request of a check, from the headers the gateway sets: X-Original-Method/-URI (nginx, by
 * its configuration), X-Forwarded-Method/-Uri (Traefik, always); without either, the check request's
 * own method and URI (Envoy ext_authz sends the original method and path). A URI header without its
 * method header, or both pairs naming different requests (a browser's own header passed through beside
 * the gateway's), is refused: guessing could check a GET while the upstream receives a POST.
 */
export function originalRequest(headers: Headers, ownMethod: string, ownUri: string): OriginalRequest | { error: string } {
  const pairs: OriginalRequest[] = [];
  for (const [methodHeader, uriHeader] of [
    ['x-original-method', 'x-original-uri'],
    ['x-forwarded-method', 'x-forwarded-uri'],
  ] as const) {
    const uri = headers[uriHeader];
    const method = headers[methodHeader];
    if (uri === undefined && method === undefined) continue;
    if (typeof uri !== 'string' || typeof method !== 'string') return { error: `${uriHeader} and ${methodHeader} must both be given, once each` };
    const upper = method.trim().toUpperCase();
    if (!METHOD.test(upper)) return { error: `${methodHeader} is not an HTTP method` };
    if (!uri.startsWith('/')) return { error: `${uriHeader} must be a path starting with /` };
    pairs.push({ method: upper, uri });
  }
  if (pairs.length === 2 && (pairs[0]!.method !== pairs[1]!.method || pairs[0]!.uri !== pairs[1]!.uri)) {
    return { error: 'X-Original-* and X-Forwarded-Method/-Uri name different requests' };
  }
  return pairs[0] ?? { method: ownMethod, uri: ownUri };
}

/**
 * The target in force whose mount path is the longest prefix of the URI's path, as the proxy's dispatcher
 * picks it (the table is ordered longest mount first), with the path below its mount.
 */
export function targetOf(mounted: readonly Mounted<TargetRoute>[], uri: string): { mounted: Mounted<TargetRoute>; subPath: string } | undefined {
  for (const candidate of mounted) {
    const subPath = rawSubPath(uri, candidate.mountPath);
    if (subPath !== undefined) return { mounted: candidate, subPath };
  }
  return undefined;
}

/** Statuses passed on as they are; every other refusal is a 403 (nginx auth_request knows only 401 and 403). */
function gatewayStatus(status: number): number {
  return status === 401 || status >= 500 ? status : 403;
}

/** The forward-auth routes on the internal listener's Fastify instance. */
export async function forwardAuthRoutes(app: FastifyInstance, opts: { ctx: AppContext; table: TargetTable<TargetRoute> }): Promise<void> {
  // The proxy's table of targets: a configuration reload or a directory change reaches the checks at once.
  const { ctx, table } = opts;
  const fixedOrigin = ctx.config.publicUrl === undefined ? undefined : new URL(ctx.config.publicUrl);

  // --forward_auth_allow: only the gateways may ask (the answers carry tokens), whatever else reaches the port.
  const allowList = ctx.config.forwardAuthAllow;
  if (allowList !== undefined) {
    const allowed = compileTrust(allowList);
    app.addHook('onRequest', (request, reply, done) => {
      const peer = request.raw.socket?.remoteAddress;
      if (allowed(peer, 0)) return done();
      request.log.warn({ peer }, 'forward-auth check from a peer not in --forward_auth_allow refused');
      void sendProblem(reply.header('connection', 'close'), 403, 'forbidden_peer', 'this address may not ask for forward-auth checks');
    });
  }

  // In the service's request metrics under the route label `forward-auth` (by check method and answer status).
  app.addHook('onResponse', (request, reply, done) => {
    ctx.metrics.observeHttp('forward-auth', request.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  // The body of a check (Envoy may send one) is never looked at: read and dropped, whatever its type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => {
    payload.on('end', () => done(null));
    payload.on('error', done);
    payload.resume();
  });

  function refuse(request: FastifyRequest, reply: FastifyReply, status: number, error: string, detail: string, target?: string): FastifyReply {
    request.log.info({ target, error, reason: detail }, 'forward-auth check refused');
    return sendProblem(reply, gatewayStatus(status), error, detail);
  }

  function answer(request: FastifyRequest, reply: FastifyReply, plan: TargetPlan, credential: Credential): FastifyReply {
    if (!credential.ok) {
      if (credential.status === 503) reply.header('retry-after', '5');
      return refuse(request, reply, credential.status, credential.error, credential.detail, plan.target.id);
    }
    return allow(request, reply, credential.token);
  }

  function allow(request: FastifyRequest, reply: FastifyReply, token: string | undefined): FastifyReply {
    reply.code(200).header('cache-control', 'no-store');
    if (token !== undefined) reply.header('authorization', `Bearer ${token}`);
    // Always present, empty when only our cookies were sent: the gateway replaces the upstream's Cookie with it.
    const cookies = request.headers.cookie;
    reply.header('cookie', cookies === undefined ? '' : (stripOwnCookies(cookies, (name) => ctx.cookies.isOwnCookie(name)) ?? ''));
    return reply.send();
  }

  function check(request: FastifyRequest, reply: FastifyReply): FastifyReply | Promise<FastifyReply> {
    const headers = request.headers;
    const original = originalRequest(headers, request.method, request.raw.url ?? '/');
    if ('error' in original) return refuse(request, reply, 400, 'invalid_forward_auth_request', original.error);
    const found = targetOf(table.mounted, original.uri);
    if (!found) return refuse(request, reply, 404, 'unknown_target', 'no target is mounted at the original request path');
    const { mounted, subPath } = found;
    if (!mounted.route) {
      request.log.warn({ target: mounted.target.id, reason: mounted.unresolved }, 'target unresolved');
      return refuse(request, reply.header('retry-after', '5'), 503, 'target_unresolved', `target "${mounted.target.id}" has no upstream: ${mounted.unresolved ?? 'unknown'}`, mounted.target.id);
    }
    const plan = mounted.route.plan;
    const target = plan.target;
    const joined = joinUpstreamPath(plan.base, subPath);
    if (!joined.ok) return refuse(request, reply, 400, 'invalid_path', `the request path was refused: ${joined.reason}`, target.id);

    const method = original.method;
    // A CORS preflight carries no credentials: let it through to whoever answers CORS, without a token.
    if (method === 'OPTIONS' && headers.origin !== undefined && headers['access-control-request-method'] !== undefined) {
      return allow(request, reply, undefined);
    }
    if (!plan.methods.has(method)) return refuse(request, reply, 405, 'method_not_allowed', `target "${target.id}" does not accept ${method}`, target.id);
    // The gateway passes a method-override header on to the upstream (we cannot remove it): only for a
    // target that allows overrides, and then the method it names is checked too.
    let effective = method;
    const override = methodOverride(headers);
    if (override === null) return refuse(request, reply, 400, 'invalid_method_override', 'the method-override headers must name one HTTP method', target.id);
    if (override !== undefined) {
      if (!target.allowMethodOverride) {
        return refuse(request, reply, 400, 'method_override_not_allowed', `target "${target.id}" does not allow ${METHOD_OVERRIDE_HEADERS.join(', ')}`, target.id);
      }
      if (!plan.methods.has(override)) return refuse(request, reply, 405, 'method_not_allowed', `target "${target.id}" does not accept ${override} (from a method-override header)`, target.id);
      effective = override;
    }

    // Our origin as the browser sees it: --public_url, else what the gateway states (it is trusted: only it reaches this listener).
    const proto = fixedOrigin ? fixedOrigin.protocol.slice(0, -1) : (lastEntry(headers['x-forwarded-proto']) ?? 'http');
    if (proto !== 'http' && proto !== 'https') return refuse(request, reply, 400, 'invalid_forwarded_proto', 'X-Forwarded-Proto must be "http" or "https"', target.id);
    const ownOrigin = fixedOrigin ? fixedOrigin.origin : `${proto}://${lastEntry(headers['x-forwarded-host']) ?? single(headers.host) ?? ''}`;

    const tenant = plan.tenantOf(single(headers[plan.tenantHeader]));
    if (effective !== 'GET' && effective !== 'HEAD' && effective !== 'OPTIONS') {
      const csrf = checkCsrf({
        method: isSafeMethod(effective) ? 'POST' : effective,
        origin: single(headers.origin),
        secFetchSite: single(headers['sec-fetch-site']),
        headerToken: single(headers[plan.upstreamHeaders.xsrfHeader]),
        cookieToken: request.cookies[ctx.cookies.xsrfCookieName],
        allowedOrigins: plan.csrfOrigins(tenant.ok ? tenant.tenant : null, ownOrigin),
      });
      if (!csrf.ok) {
        ctx.metrics.csrfRejections.inc({ reason: 'forward_auth' });
        return refuse(request, reply, 403, 'csrf_failed', csrf.reason, target.id);
      }
    }

    const cookieName = ctx.cookies.secure(proto === 'https') ? plan.sessionCookie.secure : plan.sessionCookie.insecure;
    const credential = resolveCredential(ctx, plan, request.cookies[cookieName], tenant);
    if (credential instanceof Promise) return credential.then((resolved) => answer(request, reply, plan, resolved));
    return answer(request, reply, plan, credential);
  }

  app.route({
    method: app.supportedMethods as HTTPMethods[],
    url: '/*',
    exposeHeadRoute: false,
    handler: check,
  });
}

/** Where the forward-auth listener of an app listens, once started. */
export function forwardAuthAddress(app: FastifyInstance): AddressInfo | undefined {
  return internalListenerAddress(app, 'forward-auth');
}

/**
 * Serves forward-auth checks on `config.forwardAuthListen`: an internal listener (ops/internalListener.ts)
 * sharing the app's context. Refusals are logged (without tokens); a line per allowed check would double
 * the gateway's access log, so there is none.
 */
export function serveForwardAuth(app: FastifyInstance, ctx: AppContext, table: TargetTable<TargetRoute>, logger: FastifyBaseLogger): void {
  const listen = ctx.config.forwardAuthListen;
  if (!listen) throw new Error('serveForwardAuth needs config.forwardAuthListen');
  serveInternalListener(app, logger, {
    name: 'forward-auth',
    listen,
    ...(ctx.config.forwardAuthSocketMode !== undefined && { socketMode: ctx.config.forwardAuthSocketMode }),
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 512 },
    setup: async (server) => {
      server.setErrorHandler((err, request, reply) => {
        const status = (err as { statusCode?: number }).statusCode;
        if (status !== undefined && status >= 400 && status < 500) return sendProblem(reply, 403, 'invalid_forward_auth_request', (err as Error).message);
        // The gateway went away mid-check (e.g. while its body was being read): nothing failed here.
        if (request.raw.destroyed) request.log.info({ reason: (err as Error).message }, 'forward-auth check abandoned: the gateway closed the connection');
        else request.log.error({ err }, 'forward-auth check failed');
        return sendProblem(reply.header('retry-after', '5'), 503, 'unavailable', 'the check could not be completed; try again shortly');
      });
      await server.register(cookie);
      await server.register(forwardAuthRoutes, { ctx, table });
    },
  });
}
