import type { FastifyRequest } from 'fastify';

/** Whether the browser reached us over HTTPS (honouring --trust_proxy for X-Forwarded-Proto). */
export function isHttps(request: FastifyRequest): boolean {
  return request.protocol === 'https';
}

/** A single header value (the first, when repeated). */
export function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}
