/** When tracing turns on, how it samples, and that a collector that cannot be reached costs a warning, not a request. */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { errorType, samplerFromEnv, createOtelTracing } from '../../src/ops/otel.ts';
import { tracingRequested } from '../../src/ops/tracing.ts';
import { OidcError } from '../../src/oidc/errors.ts';

describe('tracingRequested', () => {
  it('is on with a traces or a general OTLP endpoint', () => {
    expect(tracingRequested({})).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: ' ' })).toBe(false);
    expect(tracingRequested({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' })).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(true);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' })).toBe(true);
  });

  it('is off with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none', () => {
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' })).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' })).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'false' })).toBe(true);
  });
});

describe('samplerFromEnv', () => {
  const warnings: string[] = [];
  const of = (env: NodeJS.ProcessEnv): string => samplerFromEnv(env, (m) => warnings.push(m)).toString();
  it('follows OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG', () => {
    expect(of({})).toMatch(/^ParentBased\{root=AlwaysOnSampler/);
    expect(of({ OTEL_TRACES_SAMPLER: 'always_off' })).toBe('AlwaysOffSampler');
    expect(of({ OTEL_TRACES_SAMPLER: 'always_on' })).toBe('AlwaysOnSampler');
    expect(of({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' })).toBe('TraceIdRatioBased{0.25}');
    expect(of({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.5' })).toMatch(/^ParentBased\{root=TraceIdRatioBased\{0.5\}/);
    expect(of({ OTEL_TRACES_SAMPLER: 'parentbased_always_off' })).toMatch(/^ParentBased\{root=AlwaysOffSampler/);
    expect(warnings).toEqual([]);
    expect(of({ OTEL_TRACES_SAMPLER: 'jaeger_remote' })).toMatch(/^ParentBased\{root=AlwaysOnSampler/);
    expect(warnings).toEqual(['OTEL_TRACES_SAMPLER=jaeger_remote is not supported; using parentbased_always_on']);
  });
});

describe('errorType', () => {
  it('is a code or a name, never the message', () => {
    expect(errorType(new OidcError('unavailable', 'the IdP said: secret-looking text'))).toBe('unavailable');
    expect(errorType(Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:5432'), { code: 'ECONNREFUSED' }))).toBe('ECONNREFUSED');
    expect(errorType(new TypeError('token abc'))).toBe('TypeError');
    expect(errorType('thrown text')).toBe('error');
  });
});

describe('a collector that cannot be reached', () => {
  it('is a logged warning; the traced call still returns; an unsupported protocol is reported', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    // The exporter reads its endpoint from the process environment (this file runs in a process of its own).
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${port}`;
    process.env.OTEL_EXPORTER_OTLP_TIMEOUT = '500';
    const stderr: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr.push(String(chunk));
      return true;
    });
    let tracing;
    try {
      tracing = createOtelTracing({ ...process.env, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_BSP_SCHEDULE_DELAY: '20' });
    } finally {
      spy.mockRestore();
    }
    // Before the service's logger exists, warnings are JSON lines on stderr.
    expect(stderr.map((line) => JSON.parse(line) as unknown)).toEqual([
      { level: 40, component: 'tracing', msg: 'OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported; spans are sent as http/json' },
    ]);
    const warnings: { obj: object; msg: string }[] = [];
    tracing.logTo({ warn: (obj, msg) => warnings.push({ obj, msg }) });
    expect(await tracing.inSpan('work', 'internal', {}, async () => 42)).toBe(42);
    const deadline = Date.now() + 20_000;
    while (warnings.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await tracing.shutdown().catch(() => undefined);
    expect(warnings.length).toBeGreaterThan(0);
    expect(warnings[0]!.obj).toEqual({ component: 'tracing' });
    expect(warnings[0]!.msg).toMatch(/ECONNREFUSED|export|connect/i);
  });
});
