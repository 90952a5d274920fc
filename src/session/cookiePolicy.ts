import type { Config } from '../config/types.ts';

export interface CookieAttributes {
  path: string;
  domain?: string;
  secure: boolean;
  httpOnly: boolean;
  sameSite: 'lax' | 'strict' | 'none';
  expires?: Date;
  maxAge?: number;
}

export const DEFAULT_CLIENT_ID = 'default';

/**
 * Names and attributes of the cookies this service sets. Secure cookies get the `__Host-` prefix when no
 * Domain is configured (the browser then refuses the cookie from subdomains or over http) and `__Secure-`
 * otherwise. Each client has its own session cookie, so sessions of several clients coexist in one browser.
 */
export class CookiePolicy {
  readonly #cookie: Config['cookie'];
  readonly #csrf: Config['csrf'];
  readonly #isProduction: boolean;

  constructor(config: Pick<Config, 'cookie' | 'csrf' | 'isProduction'>) {
    this.#cookie = config.cookie;
    this.#csrf = config.csrf;
    this.#isProduction = config.isProduction;
  }

  /** Whether cookies set on a request over `https` (or not) carry Secure. */
  secure(requestIsHttps: boolean): boolean {
    const setting = this.#cookie.secure;
    if (setting === 'auto') return this.#isProduction || requestIsHttps;
    return setting;
  }

  #prefix(secure: boolean): string {
    if (!secure) return '';
    return this.#cookie.domain ? '__Secure-' : '__Host-';
  }

  sessionCookieName(clientId: string, secure: boolean): string {
    const suffix = clientId === DEFAULT_CLIENT_ID ? '' : `-${clientId}`;
    return `${this.#prefix(secure)}${this.#cookie.name}${suffix}`;
  }

  /** One login-state cookie per login attempt (keyed by a prefix of its state), so parallel tabs do not clash. */
  loginStateCookieName(state: string, secure: boolean): string {
    return `${this.#prefix(secure)}th-login-${state.slice(0, 16)}`;
  }

  /** Carries the IdP end-session URL (with id_token_hint) from a JSON logout to the browser's next navigation. */
  endSessionCookieName(clientId: string, secure: boolean): string {
    return `${this.#prefix(secure)}th-end-session-${clientId}`;
  }

  /** The XSRF cookie keeps its well-known name: Angular and axios read it by name. */
  get xsrfCookieName(): string {
    return this.#csrf.cookieName;
  }

  get xsrfHeaderName(): string {
    return this.#csrf.headerName;
  }

  /** Every cookie name this service owns for a request, for stripping before proxying. */
  isOwnCookie(name: string): boolean {
    const bare = name.replace(/^__(Host|Secure)-/, '');
    return (
      name === this.#csrf.cookieName ||
      bare === this.#cookie.name ||
      bare.startsWith(`${this.#cookie.name}-`) ||
      bare.startsWith('th-login-') ||
      bare.startsWith('th-end-session-')
    );
  }

  attributes(secure: boolean, opts: { httpOnly: boolean; expires?: Date; maxAgeSec?: number }): CookieAttributes {
    const attrs: CookieAttributes = {
      path: '/',
      secure,
      httpOnly: opts.httpOnly,
      sameSite: this.#cookie.sameSite,
    };
    // Host-only unless a domain is configured (then the name carries __Secure-, never __Host-).
    if (this.#cookie.domain) attrs.domain = this.#cookie.domain;
    if (opts.expires) attrs.expires = opts.expires;
    if (opts.maxAgeSec !== undefined) attrs.maxAge = opts.maxAgeSec;
    return attrs;
  }
}
