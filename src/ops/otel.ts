/**
 * The OpenTelemetry SDK behind src/ops/tracing.ts, loaded only when tracing is on. Spans go to the OTLP
 * endpoint of the standard environment (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT,
 * _COMPRESSION, _CERTIFICATE... are read by the exporter itself) as OTLP/HTTP JSON, in batches
 * (OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_EXPORT_TIMEOUT),
 * sampled as OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG say (default parentbased_always_on), with the
 * resource of OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES (default service.name token-handler).
 * The current span follows the request through promises with AsyncLocalStorage.
 */
import { readFileSync } from 'node:fs';
import {
  context,
  diag,
  DiagLogLevel,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
} from '@opentelemetry/sdk-trace';
import type { ClientSpan, ServerSpan, SpanAttributes, Tracing } from './tracing.ts';

type Carrier = { traceparent?: string; tracestate?: string };
const getter: TextMapGetter<Carrier> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => (key === 'traceparent' ? carrier.traceparent : key === 'tracestate' ? carrier.tracestate : undefined),
};
const setter: TextMapSetter<Carrier> = {
  set: (carrier, key, value) => {
    if (key === 'traceparent') carrier.traceparent = value;
    else if (key === 'tracestate') carrier.tracestate = value;
  },
};

/** OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, as the OpenTelemetry specification defines them. */
export function samplerFromEnv(env: NodeJS.ProcessEnv, warn: (message: string) => void): Sampler {
  const name = (env.OTEL_TRACES_SAMPLER ?? '').trim().toLowerCase() || 'parentbased_always_on';
  const arg = Number((env.OTEL_TRACES_SAMPLER_ARG ?? '').trim() || '1');
  const ratio = Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : 1;
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
    default:
      warn(`OTEL_TRACES_SAMPLER=${name} is not supported; using parentbased_always_on`);
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

function positiveInt(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const value = Number((env[name] ?? '').trim());
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** What both span wrappers do with their OpenTelemetry span. */
abstract class OtelSpan {
  readonly span: Span;
  constructor(span: Span) {
    this.span = span;
  }
  setAttribute(key: string, value: string | number | boolean): void {
    this.span.setAttribute(key, value);
  }
  fail(type: string): void {
    this.span.setAttribute('error.type', type);
    this.span.setStatus({ code: SpanStatusCode.ERROR });
  }
  end(): void {
    this.span.end();
  }
}

class OtelServerSpan extends OtelSpan implements ServerSpan {
  readonly context: Context;
  constructor(span: Span, parent: Context) {
    super(span);
    this.context = trace.setSpan(parent, span);
  }
  run(fn: () => void): void {
    context.with(this.context, fn);
  }
  rename(name: string): void {
    this.span.updateName(name);
  }
}

class OtelClientSpan extends OtelSpan implements ClientSpan {
  readonly traceparent: string;
  readonly tracestate: string | undefined;
  constructor(span: Span, parent: Context, propagator: W3CTraceContextPropagator) {
    super(span);
    const carrier: Carrier = {};
    propagator.inject(trace.setSpan(parent, span), carrier, setter);
    this.traceparent = carrier.traceparent ?? '';
    this.tracestate = carrier.tracestate;
  }
}

/** A short class of error for `error.type`: its code or its name, never its message (which may quote an IdP). */
export function errorType(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown; kind?: unknown }).kind ?? (err as { code?: unknown }).code;
    if (typeof code === 'string' && /^[\w.-]{1,64}$/.test(code)) return code;
    return err.name;
  }
  return 'error';
}

export function createOtelTracing(env: NodeJS.ProcessEnv): Tracing {
  let warnLog: (obj: object, msg: string) => void = (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 40, ...obj, msg })}\n`);
  const warn = (message: string): void => warnLog({ component: 'tracing' }, message);
  diag.setLogger(
    {
      error: (message) => warn(message),
      warn: (message) => warn(message),
      info: () => undefined,
      debug: () => undefined,
      verbose: () => undefined,
    },
    DiagLogLevel.WARN,
  );
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/json').trim();
  if (protocol !== 'http/json') warn(`OTEL_EXPORTER_OTLP_PROTOCOL=${protocol} is not supported; spans are sent as http/json`);

  const resource = resourceFromAttributes({
    ...defaultResource().attributes,
    'service.name': 'token-handler',
    'service.version': packageVersion(),
    ...envDetector.detect().attributes,
  });
  const exporter = new OTLPTraceExporter();
  const processor = new BatchSpanProcessor({
    exporter,
    scheduledDelayMillis: positiveInt(env, 'OTEL_BSP_SCHEDULE_DELAY'),
    maxQueueSize: positiveInt(env, 'OTEL_BSP_MAX_QUEUE_SIZE'),
    maxExportBatchSize: positiveInt(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE'),
    exportTimeoutMillis: positiveInt(env, 'OTEL_BSP_EXPORT_TIMEOUT'),
  });
  const provider = new TracerProvider({ resource, sampler: samplerFromEnv(env, warn), spanProcessors: [processor] });
  const contextManager = new AsyncLocalStorageContextManager();
  context.setGlobalContextManager(contextManager.enable());
  const tracer = provider.getTracer('token-handler', packageVersion());
  const propagator = new W3CTraceContextPropagator();

  return {
    startServer(name, traceparent, tracestate, attributes) {
      const carrier: Carrier = { traceparent, tracestate };
      // An invalid traceparent extracts as nothing: the request starts a trace of its own.
      const parent = traceparent === undefined ? ROOT_CONTEXT : propagator.extract(ROOT_CONTEXT, carrier, getter);
      const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
      return new OtelServerSpan(span, parent);
    },
    startClient(parent, name, attributes) {
      const parentContext = parent instanceof OtelServerSpan ? parent.context : context.active();
      const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, parentContext);
      return new OtelClientSpan(span, parentContext, propagator);
    },
    inSpan<T>(name: string, kind: 'client' | 'internal', attributes: SpanAttributes, fn: () => Promise<T>): Promise<T> {
      return tracer.startActiveSpan(name, { kind: kind === 'client' ? SpanKind.CLIENT : SpanKind.INTERNAL, attributes }, async (span) => {
        try {
          return await fn();
        } catch (err) {
          span.setAttribute('error.type', errorType(err));
          span.setStatus({ code: SpanStatusCode.ERROR });
          throw err;
        } finally {
          span.end();
        }
      });
    },
    logTo(log) {
      warnLog = (obj, msg) => log.warn(obj, msg);
    },
    flush: () => provider.forceFlush(),
    shutdown: async () => {
      await provider.shutdown();
      contextManager.disable();
    },
  };
}
