import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** What we accept as a caller's request id: short and free of anything that could forge a log line. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * Fastify `genReqId`: the caller's `X-Request-Id` (from a load balancer, the SPA or another service) when
 * it is a plain token, else a fresh UUID. Fastify's own `requestIdHeader` would take any value verbatim,
 * so a header with a newline, ANSI escapes or a megabyte of text would land in every log line (and the
 * echoed response header) of the request.
 */
export function requestIdFrom(req: IncomingMessage): string {
  const raw = req.headers['x-request-id'];
  const value = Array.isArray(raw) ? raw[0] : raw;
  return value !== undefined && REQUEST_ID_PATTERN.test(value) ? value : randomUUID();
}
