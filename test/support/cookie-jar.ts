/**
 * A small RFC 6265bis cookie jar for tests. It behaves like a browser where it matters for a
 * Backend-for-Frontend: Domain/Path matching, Expires/Max-Age, deletion, cookie-name prefixes
 * (__Secure-/__Host-) and replacement by (name, domain, path). Ports are ignored, as in browsers:
 * every server on 127.0.0.1 sees every 127.0.0.1 cookie whose path matches.
 *
 * Deliberate deviation: Secure cookies are stored and sent over http:// for loopback hosts
 * (127.0.0.1, localhost, ::1), which browsers treat as potentially trustworthy origins. Tests run on
 * http, so this is what lets them exercise `Secure` cookies at all.
 */

export type SameSite = 'Strict' | 'Lax' | 'None';

export interface Cookie {
  name: string;
  value: string;
  /** Lower-case host (host-only cookie) or Domain attribute without a leading dot. */
  domain: string;
  hostOnly: boolean;
  path: string;
  /** Epoch ms; undefined for session cookies. */
  expires: number | undefined;
  secure: boolean;
  httpOnly: boolean;
  /** As sent by the server; undefined when the attribute was absent (browsers then default to Lax). */
  sameSite: SameSite | undefined;
  partitioned: boolean;
  /** The raw Set-Cookie header, for assertions on exact wording. */
  raw: string;
  createdAt: number;
}

export interface RejectedCookie {
  raw: string;
  url: string;
  reason: string;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function isIp(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':') || host.startsWith('[');
}

function isTrustworthy(url: URL): boolean {
  return url.protocol === 'https:' || LOOPBACK.has(url.hostname) || url.hostname.endsWith('.localhost');
}

function domainMatches(host: string, domain: string): boolean {
  if (host === domain) return true;
  return !isIp(host) && host.endsWith(`.${domain}`);
}

/** RFC 6265 5.1.4 path-match. */
export function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath.charAt(cookiePath.length) === '/';
}

function defaultPath(url: URL): string {
  const p = url.pathname;
  if (!p.startsWith('/')) return '/';
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

export class CookieJar {
  private store: Cookie[] = [];
  /** Set-Cookie headers a browser would have ignored, with the reason (helps debugging). */
  readonly rejected: RejectedCookie[] = [];

  /** Apply one Set-Cookie header received in a response for `requestUrl`. */
  setCookie(header: string, requestUrl: string | URL, now = Date.now()): Cookie | undefined {
    const url = new URL(requestUrl);
    const reject = (reason: string): undefined => {
      this.rejected.push({ raw: header, url: url.href, reason });
      return undefined;
    };
    const [pair = '', ...attrs] = header.split(';');
    const eq = pair.indexOf('=');
    const name = (eq === -1 ? '' : pair.slice(0, eq)).trim();
    const value = (eq === -1 ? pair : pair.slice(eq + 1)).trim();
    if (!name) return reject('cookie without a name');

    const host = url.hostname.toLowerCase();
    let domain: string | undefined;
    let path: string | undefined;
    let expires: number | undefined;
    let maxAge: number | undefined;
    let secure = false;
    let httpOnly = false;
    let sameSite: SameSite | undefined;
    let partitioned = false;

    for (const attr of attrs) {
      const i = attr.indexOf('=');
      const key = (i === -1 ? attr : attr.slice(0, i)).trim().toLowerCase();
      const val = i === -1 ? '' : attr.slice(i + 1).trim();
      switch (key) {
        case 'domain':
          if (val) domain = val.replace(/^\./, '').toLowerCase();
          break;
        case 'path':
          path = val.startsWith('/') ? val : undefined;
          break;
        case 'expires': {
          const t = Date.parse(val);
          if (!Number.isNaN(t)) expires = t;
          break;
        }
        case 'max-age':
          if (/^-?\d+$/.test(val)) maxAge = Number(val);
          break;
        case 'secure':
          secure = true;
          break;
        case 'httponly':
          httpOnly = true;
          break;
        case 'samesite': {
          const v = val.toLowerCase();
          sameSite = v === 'strict' ? 'Strict' : v === 'lax' ? 'Lax' : v === 'none' ? 'None' : undefined;
          break;
        }
        case 'partitioned':
          partitioned = true;
          break;
        default:
          break;
      }
    }

    if (domain !== undefined && !domainMatches(host, domain)) return reject(`Domain=${domain} does not match host ${host}`);
    if (secure && !isTrustworthy(url)) return reject('Secure cookie set from an insecure origin');
    if (name.startsWith('__Secure-') && !secure) return reject('__Secure- prefix requires Secure');
    if (name.startsWith('__Host-') && (!secure || domain !== undefined || path !== '/')) {
      return reject('__Host- prefix requires Secure, Path=/ and no Domain');
    }
    if (sameSite === 'None' && !secure) return reject('SameSite=None requires Secure');

    // Max-Age wins over Expires (RFC 6265 5.3 step 3).
    const expiry = maxAge !== undefined ? now + maxAge * 1000 : expires;
    const cookie: Cookie = {
      name,
      value,
      domain: domain ?? host,
      hostOnly: domain === undefined,
      path: path ?? defaultPath(url),
      expires: expiry,
      secure,
      httpOnly,
      sameSite,
      partitioned,
      raw: header,
      createdAt: now,
    };

    const idx = this.store.findIndex((c) => c.name === name && c.domain === cookie.domain && c.path === cookie.path);
    if (idx !== -1) {
      cookie.createdAt = this.store[idx]?.createdAt ?? now;
      this.store.splice(idx, 1);
    }
    if (expiry !== undefined && expiry <= now) return undefined; // deletion
    this.store.push(cookie);
    return cookie;
  }

  /** Apply every Set-Cookie header of a response. */
  storeFromResponse(headers: { getSetCookie(): string[] }, requestUrl: string | URL): void {
    for (const h of headers.getSetCookie()) this.setCookie(h, requestUrl);
  }

  private purge(now: number): void {
    this.store = this.store.filter((c) => c.expires === undefined || c.expires > now);
  }

  /** Cookies a browser would send to `url`, in browser order (longest path first, then oldest). */
  cookiesFor(requestUrl: string | URL, now = Date.now()): Cookie[] {
    this.purge(now);
    const url = new URL(requestUrl);
    const host = url.hostname.toLowerCase();
    return this.store
      .filter((c) => (c.hostOnly ? c.domain === host : domainMatches(host, c.domain)))
      .filter((c) => pathMatches(url.pathname || '/', c.path))
      .filter((c) => !c.secure || isTrustworthy(url))
      .sort((a, b) => b.path.length - a.path.length || a.createdAt - b.createdAt);
  }

  /** Value for a `Cookie:` request header, or undefined when no cookie applies. */
  cookieHeader(requestUrl: string | URL): string | undefined {
    const list = this.cookiesFor(requestUrl);
    return list.length ? list.map((c) => `${c.name}=${c.value}`).join('; ') : undefined;
  }

  /** Every stored cookie for a host (any path), e.g. `all('127.0.0.1')`. */
  all(host?: string): Cookie[] {
    this.purge(Date.now());
    return host ? this.store.filter((c) => domainMatches(host.toLowerCase(), c.domain)) : [...this.store];
  }

  clear(): void {
    this.store = [];
  }
}
