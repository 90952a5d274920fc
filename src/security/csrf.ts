import { timingSafeEqual } from 'node:crypto';

/**
 * Methods a browser may send cross-site without consequence (RFC 9110 §9.2.1 safe methods that we route).
 * TRACE is not among them: it is never routed, and a proxied TRACE would echo the injected token.
 */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function isSafeMethod(method: string): boolean {
  return SAFE_METHODS.has(method.toUpperCase());
}

export interface CsrfInput {
  method: string;
  /** The request's `Origin` header, if any. */
  origin: string | undefined;
  /** The request's `Sec-Fetch-Site` header, if any. */
  secFetchSite: string | undefined;
  /** The XSRF header value (X-XSRF-TOKEN by default). */
  headerToken: string | undefined;
  /** The XSRF cookie value (XSRF-TOKEN by default). */
  cookieToken: string | undefined;
  /** Our own origin as the browser sees it, and any configured app origins. */
  allowedOrigins: ReadonlySet<string>;
}

export type CsrfResult = { ok: true } | { ok: false; reason: string };

/**
 * CSRF defence for state-changing requests, in depth: a browser-declared cross-site request
 * (`Sec-Fetch-Site: cross-site`) or a foreign `Origin` is refused outright, and the cookie-to-header
 * token (XSRF-TOKEN cookie echoed as X-XSRF-TOKEN, the Angular/axios convention) must match, compared in
 * constant time. A cross-site page can neither read the cookie nor set the header without CORS consent.
 */
export function checkCsrf(input: CsrfInput): CsrfResult {
  if (isSafeMethod(input.method)) return { ok: true };
  if (input.secFetchSite === 'cross-site') return { ok: false, reason: 'cross-site request (Sec-Fetch-Site)' };
  if (input.origin !== undefined) {
    if (input.origin === 'null' || !input.allowedOrigins.has(input.origin)) {
      return { ok: false, reason: `origin ${input.origin} is not allowed` };
    }
  } else if (input.secFetchSite === 'same-site') {
    // Same-site but no Origin to confirm which sibling site: not trusted.
    return { ok: false, reason: 'same-site request without an allowed Origin' };
  }
  if (!input.headerToken || !input.cookieToken) return { ok: false, reason: 'missing XSRF token header or cookie' };
  const a = Buffer.from(input.headerToken);
  const b = Buffer.from(input.cookieToken);
  if (a.length !== b.length || !timingSafeEqual(a, b)) return { ok: false, reason: 'XSRF token header does not match the cookie' };
  return { ok: true };
}
