/** W3C Trace Context headers on the way to an upstream (tracing off): valid ones pass, invalid ones go. */
import { describe, expect, it } from 'vitest';
import { isValidTraceparent, prepareUpstreamHeaders, type UpstreamHeaderPolicy } from '../../src/proxy/headers.ts';
import { redactedQuery } from '../../src/ops/tracing.ts';

const policy: UpstreamHeaderPolicy = { isOwnCookie: () => false, xsrfHeader: 'x-xsrf-token', extra: [], upstreamHost: 'api.internal', allowMethodOverride: false };
const forwarded = { clientAddress: '203.0.113.7', peerTrusted: false, proto: 'https', host: 'app.example.com' };
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const VALID = `00-${TRACE_ID}-${SPAN_ID}-01`;

describe('isValidTraceparent', () => {
  it('accepts version 00 exactly, and later versions with more fields', () => {
    expect(isValidTraceparent(VALID)).toBe(true);
    expect(isValidTraceparent(`00-${TRACE_ID}-${SPAN_ID}-00`)).toBe(true);
    expect(isValidTraceparent(`01-${TRACE_ID}-${SPAN_ID}-01`)).toBe(true);
    expect(isValidTraceparent(`01-${TRACE_ID}-${SPAN_ID}-01-more`)).toBe(true);
  });

  it.each([
    ['upper-case hex', `00-${TRACE_ID.toUpperCase()}-${SPAN_ID}-01`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${SPAN_ID}-01`],
    ['all-zero parent id', `00-${TRACE_ID}-${'0'.repeat(16)}-01`],
    ['version ff', `ff-${TRACE_ID}-${SPAN_ID}-01`],
    ['version 00 with more fields', `${VALID}-x`],
    ['a later version with garbage after the flags', `01-${TRACE_ID}-${SPAN_ID}-01x`],
    ['short trace id', `00-${TRACE_ID.slice(1)}-${SPAN_ID}-01`],
    ['two headers joined', `${VALID}, ${VALID}`],
    ['an array', [VALID, VALID]],
    ['empty', ''],
  ])('refuses %s', (_what, value) => {
    expect(isValidTraceparent(value)).toBe(false);
  });
});

describe('prepareUpstreamHeaders and trace context', () => {
  it('passes a valid traceparent and its tracestate unchanged', () => {
    const out = prepareUpstreamHeaders({ traceparent: VALID, tracestate: 'rojo=1,congo=2' }, policy, undefined, forwarded);
    expect(out.traceparent).toBe(VALID);
    expect(out.tracestate).toBe('rojo=1,congo=2');
  });

  it('drops an invalid traceparent and its tracestate', () => {
    const out = prepareUpstreamHeaders({ tracestate: 'rojo=1', traceparent: `00-${TRACE_ID}-${SPAN_ID}-1` }, policy, undefined, forwarded);
    expect('traceparent' in out).toBe(false);
    expect('tracestate' in out).toBe(false);
  });

  it('drops a tracestate without a traceparent', () => {
    const out = prepareUpstreamHeaders({ tracestate: 'rojo=1' }, policy, undefined, forwarded);
    expect('tracestate' in out).toBe(false);
  });
});

describe('redactedQuery', () => {
  it('keeps the names, never the values', () => {
    expect(redactedQuery('?code=abc&state=def&flag&=x')).toBe('code=REDACTED&state=REDACTED&flag&=REDACTED');
    expect(redactedQuery('?')).toBe('');
    expect(redactedQuery('')).toBe('');
  });
});
