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
  /** Every cookie name this service sets, for every configured client, in both spellings (Secure or not). */
  #ownNames: ReadonlySet<string>;

  constructor(config: Pick<Config, 'cookie' | 'csrf' | 'isProduction' | 'clients'>) {
    this.#cookie = config.cookie;
    this.#csrf = config.csrf;
    this.#isProduction = config.isProduction;
    this.#ownNames = this.#namesFor(config.clients);
  }

  /** After a configuration reload: the cookies of the clients configured now are ours (never forwarded). */
  setClients(clients: readonly { id: string }[]): void {
    this.#ownNames = this.#namesFor(clients);
  }

  #namesFor(clients: readonly { id: string }[]): ReadonlySet<string> {
    const names = new Set<string>([this.#csrf.cookieName]);
    for (const { id } of clients) {
      for (const secure of [true, false]) {
        names.add(this.sessionCookieName(id, secure));
        names.add(this.loginStateCookieName(id, secure));
        names.add(this.endSessionCookieName(id, secure));
      }
    }
    return names;
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

  /**
   * One login-state cookie per client, holding its few most recent login attempts (src/routes/loginState.ts):
   * however many logins a browser starts, it carries one bounded cookie, never one per attempt.
   */
  loginStateCookieName(clientId: string, secure: boolean): string {
    return `${this.loginStateCookiePrefix(secure)}${clientId}`;
  }

  /** What every client's login-state cookie name starts with. */
  loginStateCookiePrefix(secure: boolean): string {
    return `${this.#prefix(secure)}th-login-`;
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

  /**
   * Whether a cookie name is one this service sets: exactly the session, login-state and end-session
   * cookies of a configured client, and the XSRF cookie. Ours are stripped before proxying and refused
   * from upstream Set-Cookie; every other cookie (an app's `session-prefs`) is the app's and passes.
   */
  isOwnCookie(name: string): boolean {
    return this.#ownNames.has(name);
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
