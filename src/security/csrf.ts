import { timingSafeEqual } from 'node:crypto';
import type { TargetCsrfPolicy } from '../config/types.ts';

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

/** What checkTargetCsrf needs to know of a request: the method the upstream acts on and a few headers. */
export interface TargetCsrfInput extends CsrfInput {
  /** The method the upstream will act on (a method-override header's, when the target allows those). */
  method: string;
  policy: TargetCsrfPolicy;
}

/**
 * The CSRF decision for a request to a target (the proxy, and anything else that forwards with the user's
 * token, such as a forward-auth endpoint). Pure: method, headers and the target's policy in, a verdict out.
 *
 * - Safe methods (GET, HEAD, OPTIONS) pass, except a cross-site one (`Sec-Fetch-Site: cross-site`) whose
 *   `Origin` is not an allowed origin: a link or an `<img>` on another site would otherwise reach the
 *   upstream with the user's token (issue 18 finding 12). `allowCrossSiteGet` lets them through for
 *   APIs that serve links.
 * - Other methods, and every method with `allMethods` (Duende BFF's rule), pass the target's mode:
 *   `token` (checkCsrf: allowed Origin and the XSRF header echoing the cookie) or `origin` (checkOrigin).
 */
export function checkTargetCsrf(input: TargetCsrfInput): CsrfResult {
  const { policy } = input;
  if (isSafeMethod(input.method) && !policy.allMethods) {
    if (safeRequestPasses(input.method, input.secFetchSite, policy)) return OK;
    if (input.origin !== undefined && input.origin !== 'null' && input.allowedOrigins.has(input.origin)) return OK;
    return { ok: false, reason: `cross-site ${input.method.toUpperCase()} (Sec-Fetch-Site: cross-site) from a page that is not an allowed origin` };
  }
  // checkCsrf treats safe methods as passing: with allMethods they are checked as the state-changing ones.
  const method = isSafeMethod(input.method) ? 'POST' : input.method;
  if (policy.mode === 'origin') return checkOrigin({ ...input, method });
  return checkCsrf({ ...input, method });
}

const OK: CsrfResult = { ok: true };

/**
 * Whether `checkTargetCsrf` lets the request through on its method and `Sec-Fetch-Site` alone (a same-site
 * or unlabelled GET, HEAD or OPTIONS): then the allowed origins need not be worked out at all, which the
 * proxy skips on every such request.
 */
export function safeRequestPasses(method: string, secFetchSite: string | undefined, policy: TargetCsrfPolicy): boolean {
  return isSafeMethod(method) && !policy.allMethods && (policy.allowCrossSiteGet || secFetchSite !== 'cross-site');
}

/**
 * Origin verification, which needs no cooperation from the page's script (Go 1.25's
 * http.CrossOriginProtection, OWASP's "Verifying Origin with standard headers"): a browser says where a
 * request comes from in `Sec-Fetch-Site` (all current browsers) and `Origin`.
 *
 * - `Sec-Fetch-Site: same-origin` or `none` (the user typed or bookmarked it) pass;
 * - `same-site` and `cross-site` pass only with an `Origin` that is an allowed origin;
 * - without `Sec-Fetch-Site` (older browsers), an `Origin` must be an allowed origin (our own included);
 * - with neither header, the request was not made by a browser (curl, a server, a mobile app): it
 *   cannot be a forgery riding on a browser's cookies, and passes.
 */
export function checkOrigin(input: Pick<TargetCsrfInput, 'method' | 'origin' | 'secFetchSite' | 'allowedOrigins'>): CsrfResult {
  if (isSafeMethod(input.method)) return OK;
  const { origin, secFetchSite } = input;
  const allowedOrigin = origin !== undefined && origin !== 'null' && input.allowedOrigins.has(origin);
  if (secFetchSite !== undefined) {
    // The browser's own word (a page cannot set Sec-Fetch-*), as Go's CrossOriginProtection takes it: our
    // idea of our own origin (behind a proxy that terminates TLS) is not needed to believe it.
    if (secFetchSite === 'same-origin' || secFetchSite === 'none') return OK;
    if (allowedOrigin) return OK;
    return { ok: false, reason: `${secFetchSite} request (Sec-Fetch-Site) from ${origin === undefined ? 'an unknown origin' : `origin ${origin}`}, which is not allowed` };
  }
  if (origin === undefined) return OK;
  if (allowedOrigin) return OK;
  return { ok: false, reason: `origin ${origin} is not allowed` };
}
