import type { FastifyRequest } from 'fastify';
import type { Config } from '../config/types.ts';

/** Whether the browser reached us over HTTPS (honouring --trust_proxy for X-Forwarded-Proto). */
export function isHttps(request: FastifyRequest): boolean {
  return request.protocol === 'https';
}

/** Our origin as the browser sees it: --public_url when set, else from the request (trusted proxy aware). */
export function requestOrigin(request: FastifyRequest, config: Pick<Config, 'publicUrl'>): string {
  if (config.publicUrl) return new URL(config.publicUrl).origin;
  return `${request.protocol}://${request.host}`;
}

/** A single header value (the first, when repeated). */
export function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}
