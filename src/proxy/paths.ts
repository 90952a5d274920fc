/**
 * Joining a request's sub-path below a target's base path without ever leaving it.
 *
 * Works on the RAW request path (as it arrived on the wire, before any decoding), because that is what
 * the upstream will see and what URL normalisation downstream (ours, reply-from's, the upstream's) acts
 * on. Anything that a decoder or normaliser could turn into a different path is refused rather than
 * repaired: dot segments (also percent-encoded, `.%2e`, `%2E%2e`, `..;x`), encoded slashes and
 * backslashes, raw backslashes, control characters (raw or encoded), empty segments (`//evil.com`) and
 * malformed percent escapes. One pass over the characters, no regular expressions, no allocation
 * besides the result.
 */

/** A target's upstream URL split once at startup. */
export interface UpstreamBase {
  /** `http://api.internal:8080` */
  origin: string;
  /** The target URL's path without a trailing slash: `/v1` for `http://x/v1/`, `''` for `http://x/`. */
  basePath: string;
}

export type JoinResult = { ok: true; path: string } | { ok: false; reason: string };

/** Splits a target URL (validated by the config loader) into origin and base path; throws on forms we cannot proxy to. */
export function parseUpstreamBase(targetUrl: string): UpstreamBase {
  const url = new URL(targetUrl);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`target URL ${targetUrl} must be http or https`);
  if (url.username || url.password) throw new Error(`target URL ${targetUrl} must not carry credentials; use target headers`);
  if (url.search || url.hash) throw new Error(`target URL ${targetUrl} must not have a query or fragment`);
  let basePath = url.pathname;
  while (basePath.endsWith('/')) basePath = basePath.slice(0, -1);
  return { origin: url.origin, basePath };
}

/**
 * The part of a raw request URL below `mountPath`, without the query: `''`, `'/'` or `'/a/b'`.
 * Undefined when the raw URL does not literally start with the mount path (the router may have
 * matched a percent-encoded spelling of it; such requests are refused, not guessed at).
 */
export function rawSubPath(rawUrl: string, mountPath: string): string | undefined {
  const q = rawUrl.indexOf('?');
  const end = q < 0 ? rawUrl.length : q;
  if (end < mountPath.length || !rawUrl.startsWith(mountPath)) return undefined;
  if (end > mountPath.length && rawUrl.charCodeAt(mountPath.length) !== SLASH) return undefined;
  return rawUrl.slice(mountPath.length, end);
}

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const PERCENT = 0x25;
const SEMICOLON = 0x3b;
const QUESTION = 0x3f;
const HASH = 0x23;

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x37;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

/**
 * Checks a raw sub-path (`''` or starting with `/`, no query) and joins it below `base.basePath`.
 * Never throws. The result is re-parsed as a URL against the target's origin and refused unless that
 * URL keeps the origin and stays below the base path.
 */
export function joinUpstreamPath(base: UpstreamBase, subPath: string): JoinResult {
  const length = subPath.length;
  if (length === 0) return { ok: true, path: base.basePath === '' ? '/' : base.basePath };
  if (subPath.charCodeAt(0) !== SLASH) return { ok: false, reason: 'the path must start with /' };

  // Per segment: how many dots it starts with, how many it ends with (decoded), its decoded length
  // before any `;` parameter, and whether that name part is exactly one dot.
  let segmentLength = 0;
  let leadingDots = 0;
  let trailingDots = 0;
  let nameLength = 0;
  let inParams = false;
  let encodedNonAscii = false;
  let unusual = false;

  for (let i = 1; i <= length; i++) {
    let code = i === length ? SLASH : subPath.charCodeAt(i);
    if (code === SLASH) {
      if (segmentLength === 0) {
        // An empty segment: only a trailing slash is fine (`/a/`); `//` could become a host.
        if (i !== length) return { ok: false, reason: 'empty path segment (//)' };
      } else {
        if (leadingDots >= 2 || trailingDots >= 2) return { ok: false, reason: 'dot-dot path segment' };
        if (nameLength === 1 && leadingDots === 1) return { ok: false, reason: 'dot path segment' };
      }
      segmentLength = 0;
      leadingDots = 0;
      trailingDots = 0;
      nameLength = 0;
      inParams = false;
      continue;
    }
    if (code === PERCENT) {
      // charCodeAt past the end is NaN, which hexValue refuses.
      const hi = hexValue(subPath.charCodeAt(i + 1));
      const lo = hexValue(subPath.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return { ok: false, reason: 'malformed percent-encoding' };
      code = hi * 16 + lo;
      if (code === SLASH || code === BACKSLASH) return { ok: false, reason: 'encoded slash or backslash' };
      if (code < 0x20 || code === 0x7f) return { ok: false, reason: 'encoded control character' };
      if (code >= 0x80) encodedNonAscii = true;
      i += 2;
    } else if (code < 0x20 || code === 0x7f) {
      return { ok: false, reason: 'control character' };
    } else if (code === BACKSLASH) {
      return { ok: false, reason: 'backslash' };
    } else if (code === QUESTION || code === HASH) {
      return { ok: false, reason: 'query or fragment delimiter in the path' };
    } else if (code === 0x20 || code === 0x22 || code === 0x3c || code === 0x3e || code === 0x5e || code === 0x60 || code === 0x7b || code === 0x7d || code >= 0x80) {
      // Characters a URL parser percent-encodes in a path: the re-parse below must see them.
      unusual = true;
    }
    if (code === DOT) {
      if (segmentLength === leadingDots) leadingDots++;
      trailingDots++;
    } else {
      trailingDots = 0;
      if (code === SEMICOLON) inParams = true;
    }
    segmentLength++;
    if (!inParams) nameLength++;
  }

  if (encodedNonAscii) {
    // Percent-encoded bytes must form UTF-8: decoders (reply-from's among them) throw on anything else.
    try {
      decodeURIComponent(subPath);
    } catch {
      return { ok: false, reason: 'percent-encoding that is not UTF-8' };
    }
  }

  const path = base.basePath + subPath;
  // Only printable ASCII a URL parser leaves alone, no dot segments, no empty segments, no backslash, no
  // `?`/`#`: parsing it as a URL would give back exactly this path, below the base. The re-parse is then
  // skipped (it ran on every proxied request); a property test holds the two to the same answer.
  if (!unusual) return { ok: true, path };
  // Belt and braces: the URL an HTTP client would build from this path keeps the origin and the base.
  let url: URL;
  try {
    url = new URL(path, `${base.origin}/`);
  } catch {
    return { ok: false, reason: 'not a valid URL path' };
  }
  if (url.origin !== base.origin) return { ok: false, reason: 'the path would change the origin' };
  const pathname = url.pathname;
  if (base.basePath !== '' && pathname !== base.basePath && !(pathname.startsWith(base.basePath) && pathname.charCodeAt(base.basePath.length) === SLASH)) {
    return { ok: false, reason: 'the path would leave the target base path' };
  }
  return { ok: true, path };
}
