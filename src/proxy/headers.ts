/**
 * Header filtering between the browser and an upstream target, in both directions. Pure functions
 * (no I/O) that rewrite a headers object in place: the proxy hands them a fresh copy per request.
 * Keys are the lower-case names Node's HTTP parser produces.
 */

export type HeaderValue = string | string[] | number | undefined;
export type Headers = Record<string, HeaderValue>;

/**
 * Hop-by-hop headers, never passed on in either direction: RFC 9110 §7.6.1's connection-specific ones and
 * the legacy Proxy-Connection; every name the Connection header lists goes too.
 */
const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/**
 * Headers that tell a server where a request came from or what it originally was (client address, scheme,
 * host, port, path prefix, original URL). An upstream may act on them (access lists by address, links built
 * from a host or prefix, a URL rewritten by X-Original-URL), so only a trusted proxy (--trust_proxy) may
 * state them: from any other peer they are removed. X-Forwarded-For, -Proto and -Host are always ours
 * to set (see prepareUpstreamHeaders).
 */
const FORWARDING_HEADERS: ReadonlySet<string> = new Set([
  'forwarded',
  'x-real-ip',
  'true-client-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-original-forwarded-for',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-server',
  'x-forwarded-scheme',
  'x-forwarded-ssl',
  'x-forwarded-protocol',
  'x-url-scheme',
  'front-end-https',
  'x-original-host',
  'x-host',
  'x-original-url',
  'x-rewrite-url',
]);

/**
 * Method-override headers: frameworks (Express method-override, Laravel, Symfony, ASP.NET) take the method
 * from them, so a GET could act as a DELETE behind the target's method allow-list and the CSRF check.
 * Removed unless the target opts in (`allowMethodOverride`), and then checked like the method itself.
 */
export const METHOD_OVERRIDE_HEADERS: readonly string[] = ['x-http-method-override', 'x-http-method', 'x-method-override'];

/** What a target's upstream requests get, decided once at startup. */
export interface UpstreamHeaderPolicy {
  /** Our own cookies (sessions of every client, XSRF, login state) never reach an upstream. */
  isOwnCookie: (name: string) => boolean;
  /** The XSRF header name, lower-case (`x-xsrf-token`). */
  xsrfHeader: string;
  /** Headers added to every upstream request (`target.headers`), names lower-case. */
  extra: readonly (readonly [string, string])[];
  /** The upstream's host[:port], for the Host header. */
  upstreamHost: string;
  /** Pass X-HTTP-Method-Override and its variants (the proxy has checked the method they name). */
  allowMethodOverride: boolean;
}

/** Per-request facts about how the browser reached us (trusted-proxy aware). */
export interface ForwardedFacts {
  /** The peer address of the connection (the browser or the trusted proxy in front of us). */
  clientAddress: string | undefined;
  /** Whether that peer is a trusted proxy (--trust_proxy): only then do its forwarding headers pass. */
  peerTrusted: boolean;
  proto: string;
  host: string;
}

/**
 * Whether a traceparent header is one W3C Trace Context (§3.2) accepts: `00-<32 hex>-<16 hex>-<2 hex>`,
 * lower-case, trace and parent ids not all zeros; a later version (not ff) may append `-...`.
 */
export function isValidTraceparent(value: HeaderValue): boolean {
  if (typeof value !== 'string' || value.length < 55 || value.length > 512) return false;
  if (value.charCodeAt(2) !== 0x2d || value.charCodeAt(35) !== 0x2d || value.charCodeAt(52) !== 0x2d) return false;
  // Version and flags: hex; trace id (3-34) and parent id (36-51): hex and not all zeros. No allocation.
  if (hexRun(value, 0, 2) < 0 || hexRun(value, 53, 55) < 0 || hexRun(value, 3, 35) < 1 || hexRun(value, 36, 52) < 1) return false;
  const version = value.slice(0, 2);
  if (version === 'ff') return false;
  if (value.length === 55) return true;
  return version !== '00' && value.charCodeAt(55) === 0x2d;
}

/** -1 when value[from, to) is not all lower-case hex; else 1 when some digit is not 0, 0 when all are. */
function hexRun(value: string, from: number, to: number): number {
  let nonZero = 0;
  for (let i = from; i < to; i++) {
    const c = value.charCodeAt(i);
    if (c > 0x30 && c <= 0x39) nonZero = 1;
    else if (c >= 0x61 && c <= 0x66) nonZero = 1;
    else if (c !== 0x30) return -1;
  }
  return nonZero;
}

/** The value of the Cookie header with our own cookies removed; undefined when nothing is left. */
export function stripOwnCookies(header: string, isOwnCookie: (name: string) => boolean): string | undefined {
  if (header.length === 0) return undefined;
  let kept: string | undefined;
  let removed = false;
  let start = 0;
  while (start <= header.length) {
    let end = header.indexOf(';', start);
    if (end < 0) end = header.length;
    const pair = header.slice(start, end).trim();
    start = end + 1;
    if (pair.length === 0) continue;
    const eq = pair.indexOf('=');
    const name = (eq < 0 ? pair : pair.slice(0, eq)).trim();
    if (isOwnCookie(name)) {
      removed = true;
      continue;
    }
    kept = kept === undefined ? pair : `${kept}; ${pair}`;
  }
  // Untouched headers are passed on byte for byte.
  if (!removed) return header;
  return kept;
}

/** Lower-case header names listed in a Connection header value (RFC 9110 §7.6.1); undefined for none worth removing. */
function connectionListed(value: HeaderValue): string[] | undefined {
  if (value === undefined) return undefined;
  // The usual values name no header that could be present (Keep-Alive goes anyway): no split per message.
  if (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Close') return undefined;
  const text = Array.isArray(value) ? value.join(',') : String(value);
  const names: string[] = [];
  for (const part of text.split(',')) {
    const name = part.trim().toLowerCase();
    if (name.length > 0) names.push(name);
  }
  return names;
}

/**
 * Turns the browser's request headers into the upstream's, as a new object in one pass: the browser's
 * credentials for us (our cookies, its Authorization, the XSRF header) are removed, hop-by-hop headers
 * (and every name Connection lists) dropped, forwarding headers kept only from a trusted proxy,
 * method-override headers only for a target that allows them, X-Forwarded-For/-Proto/-Host set, the
 * target's headers added and the access token (if any) injected last so nothing overrides it.
 * `dropContentLength`: for GET and HEAD, whose bodies are not read, so neither is their length forwarded.
 *
 * Trace context (W3C): a valid traceparent passes unchanged, with its tracestate; an invalid one is
 * dropped, and its tracestate with it (tracing on, the proxy sets both to its own span's afterwards).
 *
 * What an upstream can rely on: X-Forwarded-Proto and -Host are our origin as the browser sees it
 * (--public_url, or the request as validated); X-Forwarded-For ends with the address of the peer that
 * connected to us, and holds earlier entries only when that peer is a trusted proxy.
 */
export function prepareUpstreamHeaders(
  headers: Readonly<Headers>,
  policy: UpstreamHeaderPolicy,
  accessToken: string | undefined,
  forwarded: ForwardedFacts,
  dropContentLength = false,
): Headers {
  const listed = connectionListed(headers.connection);
  const out: Headers = {};
  let forwardedFor: HeaderValue;
  let tracestate: HeaderValue;
  let traceValid = false;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || (listed !== undefined && listed.includes(name))) continue;
    switch (name) {
      case 'proxy-authorization':
      case 'authorization':
      case 'expect': // undici refuses it; Node already answered any 100-continue towards the browser.
      case 'host':
      case 'x-forwarded-proto':
      case 'x-forwarded-host':
        continue;
      case 'x-forwarded-for':
        if (forwarded.peerTrusted) forwardedFor = value;
        continue;
      case 'x-http-method-override':
      case 'x-http-method':
      case 'x-method-override':
        if (!policy.allowMethodOverride) continue;
        break;
      case 'content-length':
        if (dropContentLength) continue;
        break;
      case 'cookie': {
        const kept = stripOwnCookies(Array.isArray(value) ? value.join('; ') : String(value), policy.isOwnCookie);
        if (kept !== undefined) out.cookie = kept;
        continue;
      }
      case 'traceparent':
        traceValid = isValidTraceparent(value);
        if (!traceValid) continue;
        break;
      case 'tracestate':
        tracestate = value;
        continue;
    }
    if (name === policy.xsrfHeader) continue;
    if (!forwarded.peerTrusted && FORWARDING_HEADERS.has(name)) continue;
    out[name] = value;
  }

  if (forwarded.clientAddress !== undefined) {
    out['x-forwarded-for'] =
      forwardedFor === undefined || forwardedFor === '' ? forwarded.clientAddress : `${Array.isArray(forwardedFor) ? forwardedFor.join(', ') : String(forwardedFor)}, ${forwarded.clientAddress}`;
  } else if (forwardedFor !== undefined) {
    out['x-forwarded-for'] = forwardedFor;
  }
  out['x-forwarded-proto'] = forwarded.proto;
  out['x-forwarded-host'] = forwarded.host;
  out.host = policy.upstreamHost;
  if (traceValid && tracestate !== undefined) out.tracestate = tracestate;

  for (const [name, value] of policy.extra) out[name] = value;
  if (accessToken !== undefined) out.authorization = `Bearer ${accessToken}`;
  return out;
}

/** What a target's responses may carry back to the browser. */
export interface ResponseHeaderPolicy {
  passSetCookie: boolean;
  isOwnCookie: (name: string) => boolean;
}

function setCookieName(line: string): string {
  const eq = line.indexOf('=');
  const semi = line.indexOf(';');
  const end = eq < 0 ? (semi < 0 ? line.length : semi) : semi >= 0 && semi < eq ? semi : eq;
  return line.slice(0, end).trim();
}

/**
 * An upstream response's headers that may go on to the browser, as a new object in one pass: hop-by-hop
 * headers (and every name Connection lists) go; Set-Cookie goes unless the target passes it (and even then
 * a cookie named like ours is dropped, so an upstream cannot overwrite a session); the upstream's CORS
 * headers go, because the browser's CORS partner is this service.
 */
export function prepareResponseHeaders(headers: Readonly<Headers>, policy: ResponseHeaderPolicy): Headers {
  const listed = connectionListed(headers.connection);
  const out: Headers = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || (listed !== undefined && listed.includes(name))) continue;
    if (name === 'set-cookie') {
      if (!policy.passSetCookie) continue;
      const lines = Array.isArray(value) ? value : [String(value)];
      const kept = lines.filter((line) => !policy.isOwnCookie(setCookieName(line)));
      if (kept.length > 0) out[name] = kept.length === lines.length ? value : kept;
      continue;
    }
    if (name.length > 15 && name.charCodeAt(0) === 0x61 && name.startsWith('access-control-')) continue;
    out[name] = value;
  }
  return out;
}
