/**
 * Header filtering between the browser and an upstream target, in both directions. Pure functions
 * (no I/O) that rewrite a headers object in place: the proxy hands them a fresh copy per request.
 * Keys are the lower-case names Node's HTTP parser produces.
 */

export type HeaderValue = string | string[] | number | undefined;
export type Headers = Record<string, HeaderValue>;

/** RFC 9110 §7.6.1 connection-specific headers, plus the legacy Proxy-Connection. */
export const HOP_BY_HOP_HEADERS: readonly string[] = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

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
}

/** Per-request facts about how the browser reached us (trusted-proxy aware). */
export interface ForwardedFacts {
  /** The peer address of the connection (the browser or the trusted proxy in front of us). */
  clientAddress: string | undefined;
  proto: string;
  host: string;
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

/** Lower-case header names listed in a Connection header value (RFC 9110 §7.6.1). */
function connectionListed(value: HeaderValue): string[] {
  if (value === undefined) return [];
  const text = Array.isArray(value) ? value.join(',') : String(value);
  const names: string[] = [];
  for (const part of text.split(',')) {
    const name = part.trim().toLowerCase();
    if (name.length > 0) names.push(name);
  }
  return names;
}

/** Removes hop-by-hop headers, including every name the Connection header lists. */
export function removeHopByHop(headers: Headers): void {
  const connection = headers.connection;
  if (connection !== undefined) {
    for (const name of connectionListed(connection)) if (headers[name] !== undefined) delete headers[name];
  }
  for (const name of HOP_BY_HOP_HEADERS) {
    // Only delete what exists: deleting absent keys would push the object into dictionary mode for nothing.
    if (headers[name] !== undefined) delete headers[name];
  }
}

/**
 * Turns the browser's request headers into the upstream's: the browser's credentials for us (our
 * cookies, its Authorization, the XSRF header) are removed, hop-by-hop headers dropped, X-Forwarded-*
 * set, the target's headers added and the access token (if any) injected last so nothing overrides it.
 */
export function prepareUpstreamHeaders(
  headers: Headers,
  policy: UpstreamHeaderPolicy,
  accessToken: string | undefined,
  forwarded: ForwardedFacts,
): Headers {
  removeHopByHop(headers);
  if (headers['proxy-authorization'] !== undefined) delete headers['proxy-authorization'];
  if (headers.authorization !== undefined) delete headers.authorization;
  if (headers[policy.xsrfHeader] !== undefined) delete headers[policy.xsrfHeader];
  // undici refuses an Expect header; Node already answered any 100-continue towards the browser.
  if (headers.expect !== undefined) delete headers.expect;

  const cookie = headers.cookie;
  if (cookie !== undefined) {
    const value = Array.isArray(cookie) ? cookie.join('; ') : String(cookie);
    const kept = stripOwnCookies(value, policy.isOwnCookie);
    if (kept === undefined) delete headers.cookie;
    else headers.cookie = kept;
  }

  if (forwarded.clientAddress !== undefined) {
    const previous = headers['x-forwarded-for'];
    headers['x-forwarded-for'] =
      previous === undefined || previous === '' ? forwarded.clientAddress : `${Array.isArray(previous) ? previous.join(', ') : String(previous)}, ${forwarded.clientAddress}`;
  }
  headers['x-forwarded-proto'] = forwarded.proto;
  headers['x-forwarded-host'] = forwarded.host;
  headers.host = policy.upstreamHost;

  for (const [name, value] of policy.extra) headers[name] = value;
  if (accessToken !== undefined) headers.authorization = `Bearer ${accessToken}`;
  return headers;
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
 * Filters an upstream response's headers in place: hop-by-hop headers go; Set-Cookie goes unless the
 * target passes it (and even then a cookie named like ours is dropped, so an upstream cannot overwrite
 * a session); the upstream's CORS headers go, because the browser's CORS partner is this service.
 */
export function prepareResponseHeaders(headers: Headers, policy: ResponseHeaderPolicy): Headers {
  removeHopByHop(headers);
  const setCookie = headers['set-cookie'];
  if (setCookie !== undefined) {
    if (!policy.passSetCookie) delete headers['set-cookie'];
    else {
      const lines = Array.isArray(setCookie) ? setCookie : [String(setCookie)];
      const kept = lines.filter((line) => !policy.isOwnCookie(setCookieName(line)));
      if (kept.length === 0) delete headers['set-cookie'];
      else if (kept.length !== lines.length) headers['set-cookie'] = kept;
    }
  }
  for (const name in headers) {
    if (name.length > 15 && name.charCodeAt(0) === 0x61 && name.startsWith('access-control-')) delete headers[name];
  }
  return headers;
}
