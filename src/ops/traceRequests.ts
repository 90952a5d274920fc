/**
 * One server span per request (registered only when tracing is on, src/ops/tracing.ts): named
 * `METHOD route` (`GET /api/*`), the caller's trace continued when its traceparent is valid. The span is
 * the current one from the first hook on, and again from preHandler (a body parsed in between runs in the
 * socket's context), so the store and IdP spans of the request are its children.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { targetRouteLabel } from '../proxy/http.ts';
import { redactedQuery, type ServerSpan, type Tracing } from './tracing.ts';

const kSpan = Symbol('token-handler.span');
type TracedRequest = FastifyRequest & { [kSpan]: ServerSpan | null };

/** The request's span, when tracing is on. */
export function requestSpan(request: FastifyRequest): ServerSpan | undefined {
  return (request as TracedRequest)[kSpan] ?? undefined;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
}

export function traceRequests(app: FastifyInstance, tracing: Tracing): void {
  app.decorateRequest(kSpan, null);
  app.addHook('onRequest', (request, _reply, done) => {
    const route = request.routeOptions.url;
    const url = request.raw.url ?? '/';
    const q = url.indexOf('?');
    const attributes: Record<string, string> = {
      'http.request.method': request.method,
      'url.scheme': request.protocol,
      'url.path': q < 0 ? url : url.slice(0, q),
      'token_handler.request_id': request.id,
    };
    if (q >= 0) attributes['url.query'] = redactedQuery(url.slice(q));
    if (route !== undefined) attributes['http.route'] = route;
    const span = tracing.startServer(
      route === undefined ? request.method : `${request.method} ${route}`,
      // Two traceparent headers are no valid one (W3C Trace Context §3.2): a new trace.
      single(request.headers.traceparent),
      single(request.headers.tracestate),
      attributes,
    );
    (request as TracedRequest)[kSpan] = span;
    span.run(done);
  });
  app.addHook('preHandler', (request, _reply, done) => {
    const span = (request as TracedRequest)[kSpan];
    if (span) span.run(done);
    else done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    const span = (request as TracedRequest)[kSpan];
    if (span) {
      (request as TracedRequest)[kSpan] = null;
      // Targets are served by one catch-all route: their route (`<mount>/*`) is the dispatcher's label.
      const target = targetRouteLabel(request);
      if (target !== undefined && target !== 'unmatched') {
        span.rename(`${request.method} ${target}`);
        span.setAttribute('http.route', target);
      }
      span.setAttribute('http.response.status_code', reply.statusCode);
      if (reply.statusCode >= 500) span.fail(String(reply.statusCode));
      span.end();
    }
    done();
  });
  app.addHook('onRequestAbort', (request, done) => {
    const span = (request as TracedRequest)[kSpan];
    if (span) {
      (request as TracedRequest)[kSpan] = null;
      span.fail('aborted');
      span.end();
    }
    done();
  });
}
