/**
 * Value parsers shared by the option table, the config file and the proxy file. Each takes the raw
 * text and returns the typed value or throws `InvalidValue` with a message saying what is allowed.
 * Messages never repeat the value: the caller decides whether it may be shown (secrets may not).
 */
import { isIP, isIPv6 } from 'node:net';
import type { InternalListenAddress, LogLevel, SocketAddress } from './types.ts';

export class InvalidValue extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidValue';
  }
}

export function fail(message: string): never {
  throw new InvalidValue(message);
}

const TRUE_WORDS = ['true', '1', 'yes'];
const FALSE_WORDS = ['false', '0', 'no'];

export function parseBoolean(raw: string): boolean {
  const value = raw.trim().toLowerCase();
  if (TRUE_WORDS.includes(value)) return true;
  if (FALSE_WORDS.includes(value)) return false;
  return fail('must be one of true, false, 1, 0, yes, no');
}

/** An optional free-form string: empty means unset. */
export function parseOptionalString(raw: string): string | undefined {
  const value = raw.trim();
  return value === '' ? undefined : value;
}

export function parseRequiredString(raw: string): string {
  return parseOptionalString(raw) ?? fail('must not be empty');
}

export function oneOf<const T extends string>(allowed: readonly T[], aliases: Record<string, T> = {}) {
  return (raw: string): T => {
    const value = raw.trim().toLowerCase();
    const alias = aliases[value];
    if (alias !== undefined) return alias;
    const found = allowed.find((candidate) => candidate === value);
    return found ?? fail(`must be one of ${allowed.join(', ')}`);
  };
}

export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
export const parseLogLevel = oneOf(LOG_LEVELS, { warning: 'warn' });

export function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (raw: string): number => {
    const value = raw.trim();
    if (!/^\d+$/.test(value)) return fail(`must be a whole number between ${min} and ${max}`);
    const n = Number(value);
    if (n < min || n > max) return fail(`must be a whole number between ${min} and ${max}`);
    return n;
  };
}

const DURATION_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
const DURATION_HINT = 'must be a duration like 90s, 15m, 8h, 1h30m, 500ms or a number of seconds';

/** Go-style duration (`90s`, `1h30m`, `1.5h`, `250ms`) or a plain number of seconds; returns milliseconds. */
export function parseDurationMs(raw: string): number {
  const value = raw.trim();
  if (/^\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000);
  if (value === '' || !/^((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$/.test(value)) return fail(DURATION_HINT);
  let total = 0;
  for (const match of value.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(match[1]) * (DURATION_UNITS_MS[match[2] ?? ''] ?? 0);
  }
  return Math.round(total);
}

export function durationMs(minMs: number, minText: string) {
  return (raw: string): number => {
    const ms = parseDurationMs(raw);
    if (ms < minMs) return fail(`must be at least ${minText}`);
    return ms;
  };
}

export function durationSeconds(minSec: number) {
  return (raw: string): number => {
    const ms = parseDurationMs(raw);
    if (ms % 1000 !== 0) return fail('must be a whole number of seconds (e.g. 90s, 15m, 1h30m)');
    const seconds = ms / 1000;
    if (seconds < minSec) return fail(`must be at least ${minSec}s`);
    return seconds;
  };
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** Sizes as in `bytes`/Fastify: `10mb`, `512kb`, `1gb`, or plain bytes (1 kb = 1024 bytes). */
export function parseSize(raw: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i.exec(raw.trim());
  if (!match) return fail('must be a size like 512kb, 10mb, 1gb or a number of bytes');
  const bytes = Math.floor(Number(match[1]) * (SIZE_UNITS[(match[2] ?? 'b').toLowerCase()] ?? 1));
  if (bytes < 1) return fail('must be at least 1 byte');
  return bytes;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const LISTEN_HINT = 'must be host:port, :port (all interfaces) or [ipv6]:port, e.g. ":9080" or "127.0.0.1:9080"';

/** Go `net.Listen` style address: `host:port`, `:port` (all interfaces → 0.0.0.0), `[::1]:port`. */
export function parseListenAddr(raw: string): { host: string; port: number } {
  const value = raw.trim();
  const bracketed = /^\[([^\]]+)\]:(\d{1,5})$/.exec(value);
  const plain = /^([^:[\]]*):(\d{1,5})$/.exec(value);
  let host: string;
  let portText: string;
  if (bracketed) {
    host = bracketed[1] ?? '';
    portText = bracketed[2] ?? '';
    if (!isIPv6(host)) return fail(LISTEN_HINT);
  } else if (plain) {
    host = plain[1] === '' ? '0.0.0.0' : (plain[1] ?? '');
    portText = plain[2] ?? '';
    if (isIP(host) === 0 && !HOSTNAME.test(host)) return fail(LISTEN_HINT);
  } else {
    return fail(LISTEN_HINT);
  }
  const port = Number(portText);
  if (port > 65535) return fail('port must be between 0 and 65535');
  return { host, port };
}

export function isSocketAddress(address: InternalListenAddress): address is SocketAddress {
  return 'path' in address;
}

/** Linux's limit for a socket path (sun_path is 108 bytes, with its terminating NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/**
 * An internal listener's address: `unix:/absolute/path` (or `unix:///absolute/path`, oauth2-proxy's spelling)
 * for a Unix domain socket, else `parseListenAddr`'s `host:port`.
 */
export function parseInternalListenAddr(raw: string): InternalListenAddress {
  const value = raw.trim();
  if (!value.startsWith('unix:')) return parseListenAddr(value);
  const path = value.startsWith('unix://') ? value.slice('unix://'.length) : value.slice('unix:'.length);
  if (!path.startsWith('/')) return fail('a Unix socket must be an absolute path: unix:/run/token-handler/forward-auth.sock');
  if (path.endsWith('/')) return fail('a Unix socket path must name a file, not a directory');
  if (path.includes('\0')) return fail('a Unix socket path must not contain NUL');
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) return fail(`a Unix socket path may be at most ${MAX_SOCKET_PATH_BYTES} bytes long`);
  return { path };
}

/** A file mode in octal (`0660`, `660`): permission bits only. */
export function parseFileMode(raw: string): number {
  const value = raw.trim();
  if (!/^0?[0-7]{3}$/.test(value)) return fail('must be an octal file mode such as 0660');
  return Number.parseInt(value, 8);
}

function parseUrl(raw: string, what: string): URL {
  try {
    return new URL(raw.trim());
  } catch {
    return fail(`must be an absolute ${what}`);
  }
}

/**
 * Absolute http(s) URL without credentials or fragment; `allowQuery` for redirect targets. Returned
 * as written, not normalized: issuers and redirect URIs are compared as exact strings by the IdP.
 */
export function parseHttpUrl(raw: string, options: { allowQuery?: boolean } = {}): string {
  const url = parseUrl(raw, 'http(s) URL');
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return fail('must be an http(s) URL');
  if (url.username !== '' || url.password !== '') return fail('must not contain credentials');
  if (url.hash !== '' || raw.includes('#')) return fail('must not contain a fragment (#...)');
  if (!options.allowQuery && (url.search !== '' || raw.includes('?'))) return fail('must not contain a query (?...)');
  return raw.trim();
}

/** An absolute http(s) URL or a same-origin path (`/app`); protocol-relative `//host` is refused. */
export function parseRedirectTarget(raw: string): string {
  const value = raw.trim();
  if (value.startsWith('/')) {
    if (value.startsWith('//') || value.startsWith('/\\')) return fail('must be a path like /app or an absolute http(s) URL');
    return value;
  }
  if (!/^https?:\/\//i.test(value)) return fail('must be a path like /app or an absolute http(s) URL');
  return parseHttpUrl(value, { allowQuery: true });
}

/** `scheme://host[:port]`, normalized to the URL origin (default ports dropped). */
export function parseOrigin(raw: string): string {
  const hint = 'must be an origin scheme://host[:port] with no path, query or fragment';
  const value = raw.trim();
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail(hint);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return fail(hint);
  if (url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '') return fail(hint);
  if (/[?#]/.test(value) || /^https?:\/\/[^/]+\/./i.test(value)) return fail(hint);
  return url.origin;
}

export function splitList(raw: string, separator: RegExp = /,/): string[] {
  return raw
    .split(separator)
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

export function parseOriginList(raw: string): string[] {
  const origins: string[] = [];
  for (const item of splitList(raw)) {
    try {
      origins.push(parseOrigin(item));
    } catch (error) {
      if (error instanceof InvalidValue) return fail(`item "${item}" ${error.message}`);
      throw error;
    }
  }
  return [...new Set(origins)];
}

/** Space or comma separated scopes; `openid` is required by OpenID Connect. */
export function parseScopes(raw: string): string[] {
  const scopes = [...new Set(splitList(raw, /[\s,]+/))];
  if (!scopes.includes('openid')) return fail('must include openid');
  if (scopes.some((scope) => !/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(scope))) return fail('scopes must be printable ASCII without quotes or backslashes');
  return scopes;
}

const TRUST_PROXY_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

/** `false`, `true`, or a comma list of IPs, CIDRs and the names loopback, linklocal, uniquelocal. */
export function parseTrustProxy(raw: string): boolean | string[] {
  const value = raw.trim().toLowerCase();
  if (value === '' || FALSE_WORDS.includes(value)) return false;
  if (TRUE_WORDS.includes(value)) return true;
  const items = splitList(raw);
  for (const item of items) {
    if (!isAddressOrRange(item)) return fail(`item "${item}" must be true, false, or a comma list of IP addresses, CIDRs (10.0.0.0/8) and ${TRUST_PROXY_NAMES.join(', ')}`);
  }
  return items;
}

/** An IP address, a CIDR or one of proxy-addr's names (loopback, linklocal, uniquelocal). */
function isAddressOrRange(item: string): boolean {
  if (TRUST_PROXY_NAMES.includes(item) || isIP(item) !== 0) return true;
  const [address = '', prefix, ...rest] = item.split('/');
  const family = isIP(address);
  const bits = family === 4 ? 32 : 128;
  return family !== 0 && prefix !== undefined && rest.length === 0 && /^\d{1,3}$/.test(prefix) && Number(prefix) <= bits;
}

/** A comma list of IP addresses, CIDRs and proxy-addr's names (the peers allowed on a listener). */
export function parseAddressList(raw: string): string[] {
  const items = splitList(raw);
  if (items.length === 0) return fail('must list at least one IP address or CIDR');
  for (const item of items) {
    if (!isAddressOrRange(item)) return fail(`item "${item}" must be an IP address, a CIDR (10.0.0.0/8) or one of ${TRUST_PROXY_NAMES.join(', ')}`);
  }
  return items;
}

export const MIN_SECRET_BYTES = 16;

/**
 * A secret as bytes: utf8, or decoded when prefixed `base64:` / `hex:`. At least 16 bytes (the
 * go-token-handler sizes 16/24/32/64 all qualify); production asks more of the auth secret.
 */
export function parseSecret(raw: string): Buffer | undefined {
  if (raw === '') return undefined;
  let bytes: Buffer;
  if (raw.startsWith('base64:')) {
    const text = raw.slice('base64:'.length).trim();
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return fail('has the base64: prefix but is not valid base64');
    bytes = Buffer.from(text, 'base64');
  } else if (raw.startsWith('hex:')) {
    const text = raw.slice('hex:'.length).trim();
    if (!/^([0-9a-fA-F]{2})+$/.test(text)) return fail('has the hex: prefix but is not an even number of hex digits');
    bytes = Buffer.from(text, 'hex');
  } else {
    bytes = Buffer.from(raw, 'utf8');
  }
  if (bytes.length < MIN_SECRET_BYTES) return fail(`must be at least ${MIN_SECRET_BYTES} bytes, got ${bytes.length}`);
  return bytes;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** RFC 7230 token, as header and cookie names must be. */
export function parseToken(raw: string): string {
  const value = raw.trim();
  if (!TOKEN.test(value)) return fail('must be a non-empty token (letters, digits and !#$%&\'*+-.^_`|~)');
  return value;
}

export function isToken(value: string): boolean {
  return TOKEN.test(value);
}

export function parseCookieName(raw: string): string {
  const value = parseToken(raw);
  if (/^__(host|secure)-/i.test(value)) return fail('must not carry the __Host- or __Secure- prefix: it is added automatically when it applies');
  return value;
}

/** Unset or `localhost` mean host-only (no Domain attribute); a leading dot is dropped as browsers do. */
export function parseCookieDomain(raw: string): string | undefined {
  const value = raw.trim().toLowerCase().replace(/^\./, '');
  if (value === '' || value === 'localhost') return undefined;
  if (!HOSTNAME.test(value) || isIP(value) !== 0) return fail('must be a domain name like example.com (no scheme, port or path)');
  return value;
}

/** A URL path prefix: starts with `/`, no trailing slash, no `..`, empty segment, query or fragment. */
export function parsePathPrefix(raw: string): string {
  const value = raw.trim();
  const hint = 'must be a path like /api/orders: starting with /, without trailing slash, .. segments, query or fragment';
  if (!value.startsWith('/') || value === '/' || value.endsWith('/')) return fail(hint);
  const segments = value.slice(1).split('/');
  if (segments.some((segment) => segment === '' || segment === '.' || segment === '..')) return fail(hint);
  if (!/^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]+$/.test(value)) return fail(hint);
  return value;
}
