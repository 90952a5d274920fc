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
 * (and every name Connection lists) dropped, X-Forwarded-* set, the target's headers added and the
 * access token (if any) injected last so nothing overrides it. `dropContentLength`: for GET and HEAD,
 * whose bodies are not read, so neither is their length forwarded.
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
        forwardedFor = value;
        continue;
      case 'content-length':
        if (dropContentLength) continue;
        break;
      case 'cookie': {
        const kept = stripOwnCookies(Array.isArray(value) ? value.join('; ') : String(value), policy.isOwnCookie);
        if (kept !== undefined) out.cookie = kept;
        continue;
      }
    }
    if (name === policy.xsrfHeader) continue;
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
