/**
 * Distributed tracing, off unless the standard OpenTelemetry exporter environment says where to send
 * spans (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). This module is the only
 * part the rest of the service imports: a small interface and the process's one instance, if any. The
 * OpenTelemetry SDK behind it (src/ops/otel.ts) is loaded with import() when tracing is on, so without
 * those variables no OpenTelemetry code is loaded and nothing on the request path calls into it: the
 * places that trace check `activeTracing()` once, when they are set up, not per request.
 *
 * What spans may carry: methods, routes, paths, status codes, host names, operation names. Never a
 * token, a cookie, a session id (or its hash), a query value or an error message from an IdP.
 */

export type SpanAttributes = Record<string, string | number | boolean>;

export interface TraceSpan {
  setAttribute(key: string, value: string | number | boolean): void;
  /** Marks the span failed; `type` is a short class of error (a code, an error's name), never a message. */
  fail(type: string): void;
  end(): void;
}

/** The span of one incoming request. */
export interface ServerSpan extends TraceSpan {
  /** Calls `fn` with this span as the current one: spans started inside (store, IdP) are its children. */
  run(fn: () => void): void;
  /** Names the span once the route is known (a target's route is found by the dispatcher, after onRequest). */
  rename(name: string): void;
}

/** A span of an outgoing request, and the W3C Trace Context that tells the callee about it. */
export interface ClientSpan extends TraceSpan {
  readonly traceparent: string;
  readonly tracestate: string | undefined;
}

export interface Tracing {
  /** Starts a request's span, continuing the caller's trace when `traceparent` is valid, else a new one. */
  startServer(name: string, traceparent: string | undefined, tracestate: string | undefined, attributes: SpanAttributes): ServerSpan;
  /** Starts a client span under `parent` (or the current span). */
  startClient(parent: ServerSpan | undefined, name: string, attributes: SpanAttributes): ClientSpan;
  /** Runs `fn` in a span under the current one; the span ends when the promise settles. */
  inSpan<T>(name: string, kind: 'client' | 'internal', attributes: SpanAttributes, fn: () => Promise<T>): Promise<T>;
  /** Where the SDK's own warnings (an export that failed) go. */
  logTo(log: { warn(obj: object, msg: string): void }): void;
  /** Exports what has ended so far. */
  flush(): Promise<void>;
  /** Exports what is left and stops. */
  shutdown(): Promise<void>;
}

let active: Tracing | undefined;

/** The process's tracing, when on. */
export function activeTracing(): Tracing | undefined {
  return active;
}

/**
 * Whether the environment turns tracing on: an OTLP endpoint for traces is set, and neither
 * OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none says otherwise.
 */
export function tracingRequested(env: NodeJS.ProcessEnv): boolean {
  const endpoint = (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? '').trim() || (env.OTEL_EXPORTER_OTLP_ENDPOINT ?? '').trim();
  if (endpoint === '') return false;
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') return false;
  if ((env.OTEL_TRACES_EXPORTER ?? '').trim().toLowerCase() === 'none') return false;
  return true;
}

/** Starts tracing when the environment asks for it (see tracingRequested); undefined otherwise. */
export async function startTracing(env: NodeJS.ProcessEnv): Promise<Tracing | undefined> {
  if (!tracingRequested(env)) return undefined;
  const { createOtelTracing } = await import('./otel.ts');
  active = createOtelTracing(env);
  return active;
}

/** Runs `fn` in a span when tracing is on; otherwise just runs it (the attributes are not even computed). */
export function traced<T>(name: string, attributes: () => SpanAttributes, fn: () => Promise<T>): Promise<T> {
  return active === undefined ? fn() : active.inSpan(name, 'client', attributes(), fn);
}

/** A URL's query with every value replaced by REDACTED (names kept): codes, states and tokens travel there. */
export function redactedQuery(search: string): string {
  if (search.length <= 1) return '';
  const parts: string[] = [];
  for (const pair of search.slice(1).split('&')) {
    if (pair.length === 0) continue;
    const eq = pair.indexOf('=');
    parts.push(eq < 0 ? pair : `${pair.slice(0, eq)}=REDACTED`);
  }
  return parts.join('&');
}
