/**
 * A tiny "browser" for integration tests: fetch with `redirect: 'manual'` plus a cookie jar, so every
 * hop of an OIDC redirect chain is observable and cookies behave as in a browser.
 *
 * Uses Node's global fetch (undici bundled with Node) rather than the undici package so responses are
 * the global `Response` type everywhere in tests (the package's `json()` is typed `unknown`, and
 * mixing two undici copies means two connection pools).
 */
import { CookieJar } from './cookie-jar.ts';
import type { Cookie } from './cookie-jar.ts';

export type { Cookie } from './cookie-jar.ts';
export { CookieJar } from './cookie-jar.ts';

export type FormBody = Record<string, string | number | boolean>;

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** Plain objects are sent as an HTML form (application/x-www-form-urlencoded). */
  body?: FormBody | URLSearchParams | string | Uint8Array | NonNullable<RequestInit['body']>;
  /** Send this value as JSON (sets content-type). */
  json?: unknown;
  signal?: AbortSignal;
}

export interface Hop {
  method: string;
  url: string;
  status: number;
  location: string | undefined;
}

export interface FollowResult {
  /** The first non-redirect response (body not consumed). */
  response: Response;
  /** URL that produced `response`. */
  url: string;
  hops: Hop[];
}

export interface Browser {
  readonly jar: CookieJar;
  /** Every request made, in order (method, url, status, location). */
  readonly history: Hop[];
  request(url: string | URL, opts?: RequestOptions): Promise<Response>;
  get(url: string | URL, opts?: Omit<RequestOptions, 'method' | 'body' | 'json'>): Promise<Response>;
  post(url: string | URL, body?: RequestOptions['body'], opts?: Omit<RequestOptions, 'method' | 'body'>): Promise<Response>;
  /** Request `url` and follow up to `maxRedirects` (default 20) redirects, updating the jar. */
  follow(url: string | URL, opts?: RequestOptions & { maxRedirects?: number }): Promise<FollowResult>;
  /** Cookies that would be sent to a URL, or all cookies of a host when given a bare host name. */
  cookies(urlOrHost: string | URL): Cookie[];
  cookie(name: string, urlOrHost: string | URL): Cookie | undefined;
}

export interface BrowserOptions {
  /** Headers sent with every request (e.g. user-agent, accept-language). */
  headers?: Record<string, string>;
}

const REDIRECT = new Set([301, 302, 303, 307, 308]);

export function isRedirect(status: number): boolean {
  return REDIRECT.has(status);
}

function isFormBody(body: unknown): body is FormBody {
  return typeof body === 'object' && body !== null && Object.getPrototypeOf(body) === Object.prototype;
}

function encodeBody(opts: RequestOptions, headers: Record<string, string>): RequestInit['body'] | undefined {
  const has = (name: string) => Object.keys(headers).some((k) => k.toLowerCase() === name);
  if (opts.json !== undefined) {
    if (!has('content-type')) headers['content-type'] = 'application/json';
    return JSON.stringify(opts.json);
  }
  const { body } = opts;
  if (isFormBody(body)) {
    if (!has('content-type')) headers['content-type'] = 'application/x-www-form-urlencoded';
    return new URLSearchParams(Object.entries(body).map(([k, v]): [string, string] => [k, String(v)])).toString();
  }
  return body;
}

export function createBrowser(options: BrowserOptions = {}): Browser {
  const jar = new CookieJar();
  const history: Hop[] = [];

  async function request(target: string | URL, opts: RequestOptions = {}): Promise<Response> {
    const url = new URL(target);
    const method = (opts.method ?? (opts.body !== undefined || opts.json !== undefined ? 'POST' : 'GET')).toUpperCase();
    const headers: Record<string, string> = { ...options.headers, ...opts.headers };
    const body = encodeBody(opts, headers);
    const cookie = jar.cookieHeader(url);
    if (cookie && !Object.keys(headers).some((k) => k.toLowerCase() === 'cookie')) headers.cookie = cookie;
    const response = await fetch(url, {
      method,
      headers,
      body,
      redirect: 'manual',
      signal: opts.signal,
      // Streams need half-duplex; harmless for other bodies.
      ...(body && typeof body === 'object' && 'getReader' in body ? { duplex: 'half' as const } : {}),
    });
    jar.storeFromResponse(response.headers, url);
    history.push({ method, url: url.href, status: response.status, location: response.headers.get('location') ?? undefined });
    return response;
  }

  async function follow(target: string | URL, opts: RequestOptions & { maxRedirects?: number } = {}): Promise<FollowResult> {
    const max = opts.maxRedirects ?? 20;
    const hops: Hop[] = [];
    let url = new URL(target);
    let current: RequestOptions = opts;
    for (let i = 0; ; i += 1) {
      const response = await request(url, current);
      const location = response.headers.get('location') ?? undefined;
      hops.push({ method: current.method ?? 'GET', url: url.href, status: response.status, location });
      if (!isRedirect(response.status) || !location) return { response, url: url.href, hops };
      if (i >= max) throw new Error(`too many redirects (${max}): ${hops.map((h) => h.url).join(' -> ')}`);
      await response.body?.cancel();
      const keepMethod = response.status === 307 || response.status === 308;
      current = keepMethod ? current : { headers: opts.headers, signal: opts.signal };
      url = new URL(location, url);
    }
  }

  function cookies(urlOrHost: string | URL): Cookie[] {
    const s = String(urlOrHost);
    return /^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? jar.cookiesFor(s) : jar.all(s);
  }

  return {
    jar,
    history,
    request,
    get: (url, opts = {}) => request(url, { ...opts, method: 'GET' }),
    post: (url, body, opts = {}) => request(url, { ...opts, method: 'POST', body }),
    follow,
    cookies,
    cookie: (name, urlOrHost) => cookies(urlOrHost).find((c) => c.name === name),
  };
}
