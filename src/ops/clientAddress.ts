import type { FastifyInstance, FastifyRequest } from 'fastify';

/**
 * The client address a log line names: Fastify's `request.ip` (the socket's peer, or with --trust_proxy
 * the nearest untrusted `X-Forwarded-For` entry). Fastify computes it from `request.raw.socket` on every
 * read, and Node detaches the socket from a request once its response has finished: read then (in an
 * onResponse hook, or the line of an error reported after the response), the trusted-proxy getter threw
 * and took the process down (issue #17). So the address is read once, in the first hook, while the
 * request is alive, and every later reader gets that value.
 */
const kClientAddress = Symbol('token-handler.clientAddress');
type WithAddress = FastifyRequest & { [kClientAddress]: string | null };

/** Gives every request the slot (a stable object shape, no property added per request). */
export function decorateClientAddress(app: FastifyInstance): void {
  app.decorateRequest(kClientAddress, null);
}

/** Reads and keeps the client address; called from the first onRequest hook. */
export function rememberClientAddress(request: FastifyRequest): void {
  (request as WithAddress)[kClientAddress] = liveAddress(request) ?? null;
}

/** The remembered address, else the live one while the socket is attached, else undefined. Never throws. */
export function clientAddress(request: FastifyRequest): string | undefined {
  const remembered = (request as Partial<WithAddress>)[kClientAddress];
  if (typeof remembered === 'string') return remembered;
  try {
    return liveAddress(request);
  } catch {
    return undefined;
  }
}

function liveAddress(request: FastifyRequest): string | undefined {
  // No socket, nothing to read (and Fastify's trusted-proxy getter would dereference null).
  return request.raw.socket == null ? undefined : request.ip;
}
