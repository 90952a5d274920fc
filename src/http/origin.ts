/**
 * Where the browser believes it is: the one place token-handler decides its own origin. Every origin it
 * builds (the OIDC redirect_uri, CSRF and return_to checks, failure and logout redirects, the
 * X-Forwarded-Proto/-Host it tells targets) comes from here.
 *
 * With --public_url, that URL. Without it, the request's scheme and host: from the connection, or from
 * `X-Forwarded-Proto` / `X-Forwarded-Host` when the peer is a trusted proxy (--trust_proxy), decided
 * exactly as Fastify decides `request.protocol` and `request.host` (the same proxy-addr trust function,
 * the last entry of a list), also for WebSocket upgrades, which never reach Fastify. A forwarded scheme
 * other than `http` or `https` is refused (`forwardedProtoProblem`): taken as given, `https://evil/?`
 * became part of redirect URLs.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import proxyAddr from '@fastify/proxy-addr';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../config/types.ts';

export interface Origin {
  /** `http` or `https`. */
  proto: string;
  /** `host[:port]` as the browser addressed it. */
  host: string;
  /** `${proto}://${host}`. */
  origin: string;
}

/** Whether a peer address is a trusted proxy: Fastify's own rule for --trust_proxy. */
export type TrustFunction = (address: string | undefined, hop: number) => boolean;

export function compileTrust(setting: Config['trustProxy']): TrustFunction {
  if (setting === true) return () => true;
  if (setting === false || setting.length === 0) return () => false;
  const compiled = proxyAddr.compile(setting);
  return (address, hop) => address !== undefined && compiled(address, hop);
}

/** The last entry of a comma-separated header value (what the nearest proxy appended). */
export function lastEntry(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) return undefined;
  const comma = text.lastIndexOf(',');
  return (comma < 0 ? text : text.slice(comma + 1)).trim();
}

export class OriginResolver {
  /** --public_url's origin, parsed once. */
  readonly #fixed: Origin | undefined;
  readonly #trust: TrustFunction;

  constructor(config: Pick<Config, 'publicUrl' | 'trustProxy'>) {
    if (config.publicUrl) {
      const url = new URL(config.publicUrl);
      this.#fixed = { proto: url.protocol.slice(0, -1), host: url.host, origin: url.origin };
    }
    this.#trust = compileTrust(config.trustProxy);
  }

  /** Whether the peer at `address` is a trusted proxy (--trust_proxy), whose forwarding headers count. */
  trustsPeer(address: string | undefined): boolean {
    return this.#trust(address, 0);
  }

  /** Whether --public_url fixes the origin (the request's Host then decides nothing). */
  get isFixed(): boolean {
    return this.#fixed !== undefined;
  }

  /** Our origin for a request Fastify parsed. */
  of(request: FastifyRequest): Origin {
    return this.#fixed ?? make(request.protocol, request.host);
  }

  /** Our origin's string form for a request Fastify parsed. */
  originOf(request: FastifyRequest): string {
    return this.#fixed?.origin ?? `${request.protocol}://${request.host}`;
  }

  /** The scheme and host of a raw request (a WebSocket upgrade), as the request itself states them. */
  requested(req: IncomingMessage): Origin {
    const socket = req.socket as TLSSocket | null;
    let proto = socket?.encrypted ? 'https' : 'http';
    let host = (Array.isArray(req.headers.host) ? req.headers.host[0] : req.headers.host) ?? '';
    if (socket && this.#trust(socket.remoteAddress, 0)) {
      proto = lastEntry(req.headers['x-forwarded-proto']) || proto;
      host = lastEntry(req.headers['x-forwarded-host']) || host;
    }
    return make(proto, host);
  }

  /**
   * The trusted proxy's `X-Forwarded-Prefix` (its last entry), without a trailing slash: the path at which
   * the browser reaches the route group this request was forwarded to (see src/http/publicPath.ts).
   * Undefined when the peer is not a trusted proxy, the header is absent, or it is not a plain path
   * prefix (`forwardedPrefixProblem` refuses such a request before any route runs).
   */
  prefixOf(request: FastifyRequest): string | undefined {
    if (!this.#trust(request.raw.socket?.remoteAddress, 0)) return undefined;
    const value = lastEntry(request.headers['x-forwarded-prefix']);
    if (value === undefined || forwardedPrefixProblem(value) !== undefined) return undefined;
    return value.replace(/\/+$/, '');
  }

  /** Why the trusted proxy's X-Forwarded-Prefix of a request is refused, or undefined (absent, untrusted or fine). */
  prefixProblem(request: FastifyRequest): string | undefined {
    if (!this.#trust(request.raw.socket?.remoteAddress, 0)) return undefined;
    const value = lastEntry(request.headers['x-forwarded-prefix']);
    return value === undefined ? undefined : forwardedPrefixProblem(value);
  }

  /** Our origin for a raw request: --public_url, else `requested`. */
  ofRaw(req: IncomingMessage): Origin {
    return this.#fixed ?? this.requested(req);
  }
}

function make(proto: string, host: string): Origin {
  return { proto, host, origin: `${proto}://${host}` };
}

/** Why a request's (trusted) scheme is refused, or undefined when it is `http` or `https`. */
export function forwardedProtoProblem(proto: string | undefined): string | undefined {
  if (proto === 'http' || proto === 'https' || proto === undefined) return undefined;
  return 'X-Forwarded-Proto from the trusted proxy must be "http" or "https"';
}

/**
 * Why a (trusted) X-Forwarded-Prefix is refused, or undefined when it is a plain path prefix: it starts with
 * `/`, has no `//` (a scheme-relative URL), no `.` or `..` segment, no scheme, query, fragment, backslash,
 * percent sign, control character or space, and is at most 256 characters. It becomes the start of URLs
 * the browser is sent to, so anything else could point the browser elsewhere.
 */
export function forwardedPrefixProblem(prefix: string): string | undefined {
  const bad = 'X-Forwarded-Prefix from the trusted proxy must be a path prefix such as "/auth"';
  if (prefix === '') return undefined;
  if (prefix.length > 256 || !prefix.startsWith('/') || prefix.includes('//')) return bad;
  if (!/^[A-Za-z0-9\-._~!$&'()*+,;=:@/]+$/.test(prefix)) return bad;
  if (prefix.split('/').some((segment) => segment === '.' || segment === '..')) return bad;
  return undefined;
}
