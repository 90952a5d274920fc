/**
 * token-handler's browser client (`import { createClient } from 'token-handler/client'`): the few things
 * every single-page app behind token-handler writes by hand. No dependencies; the page never sees a token.
 *
 * - `session()`: who is logged in (GET /sessions), or null.
 * - `login({ returnTo })`, `logout()`: the navigations and the CSRF-protected POST.
 * - `fetch()`: the platform's fetch plus the XSRF header on state-changing calls to token-handler, and a
 *   `loginrequired` event (or a redirect to the login) when the session is gone (401 `login_required`).
 * - `expiring` before the session ends, `expired` when it has, `session` whenever the known session
 *   changes, and `logout` in every tab when one of them logs out (BroadcastChannel).
 *
 * Written against the platform only (fetch, EventTarget, BroadcastChannel, document.cookie, location), in
 * erasable TypeScript, so the same source compiles for a bundler and for the demo page.
 */

/** One entry of GET /sessions: what the app may know about the session. Never a token. */
export interface Session {
  authenticated: true;
  clientId: string;
  tenant: string | null;
  sub: string;
  name: string | null;
  email: string | null;
  preferredUsername: string | null;
  roles: string[];
  createdAt: string;
  /** The absolute end of the session, however active the user is. */
  expiresAt: string;
  /** The end if unused (each request through token-handler moves it). */
  idleExpiresAt: string;
  /** Seconds until the earlier of the two, counted by the server when it answered. */
  expiresIn: number;
  /** A GET URL that logs this session out (carries the CSRF guard). */
  logoutUrl: string;
  handle: string;
}

export interface ClientOptions {
  /** token-handler's API base: a path on this origin (default `/token-handler/v1`) or a URL on another one. */
  baseUrl?: string;
  /** The token-handler client (`/clients/{clientId}/...`); default `default`. */
  clientId?: string;
  /** The cookie token-handler puts the CSRF token in (`--csrf_cookie_name`); default `XSRF-TOKEN`. */
  xsrfCookieName?: string;
  /** The header it expects the token back in (`--csrf_header_name`); default `X-XSRF-TOKEN`. */
  xsrfHeaderName?: string;
  /** How many seconds before the session ends `expiring` fires; default 60. */
  expiringBefore?: number;
  /**
   * What `fetch()` does on `401 login_required` besides the `loginrequired` event: `'event'` (default)
   * nothing more; `'redirect'` navigates to the login and back here, unless a listener called preventDefault().
   */
  onLoginRequired?: 'event' | 'redirect';
  /** The BroadcastChannel the app's tabs share; default `token-handler:<clientId>`; false: this tab alone. */
  channel?: string | false;
}

/** The `detail` of each event. */
export interface TokenHandlerEventDetails {
  /** The known session changed: logged in, out, expired, or ended elsewhere (null). */
  session: Session | null;
  /** The session ends in `expiresIn` seconds (once per session end, `expiringBefore` ahead). */
  expiring: { session: Session; expiresIn: number };
  /** The session reached its end and token-handler confirmed it is gone. */
  expired: { session: Session };
  /** A call through `fetch()` was refused because there is no session (401 `login_required`). Cancelable. */
  loginrequired: { url: string; response: Response };
  /** This tab or another one logged out. */
  logout: { from: 'this-tab' | 'other-tab' };
}

export type TokenHandlerEvent<K extends keyof TokenHandlerEventDetails> = CustomEvent<TokenHandlerEventDetails[K]>;

/** token-handler answered something the client cannot use (a status it does not expect, or not JSON). */
export class TokenHandlerError extends Error {
  override readonly name = 'TokenHandlerError';
  readonly status: number;
  /** The problem+json `error` code, when there is one. */
  readonly error: string | undefined;
  constructor(message: string, status: number, error?: string) {
    super(message);
    this.status = status;
    this.error = error;
  }
}

/** What the client uses of the page's globals, named here so it compiles without the DOM library too. */
interface Page {
  document?: { cookie: string };
  location: { href: string; origin: string; pathname: string; search: string; hash: string; assign(url: string): void };
}

type Message = { type: 'logout' } | { type: 'login' } | { type: 'activity' };

type Listener = Parameters<EventTarget['addEventListener']>[1];
type AddListenerOptions = Parameters<EventTarget['addEventListener']>[2];

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** setTimeout's limit (2^31 - 1 ms, about 24.8 days); longer delays fire at once. */
const MAX_DELAY_MS = 2 ** 31 - 1;
/** How soon the end-of-session check is repeated when token-handler could not be asked. */
const END_RETRY_MS = 30_000;
/** Other tabs hear of this tab's API calls at most this often (they move the idle end of the shared session). */
const ACTIVITY_BROADCAST_MS = 5_000;

/** A token-handler client: call `session()` once at start, then listen. */
export class TokenHandlerClient extends EventTarget {
  readonly #page: Page;
  readonly #base: URL;
  readonly #clientId: string;
  readonly #xsrfCookieName: string;
  readonly #xsrfHeaderName: string;
  readonly #expiringBeforeMs: number;
  readonly #onLoginRequired: 'event' | 'redirect';
  readonly #channel: InstanceType<typeof BroadcastChannel> | undefined;
  #session: Session | null = null;
  /** Date.now() when the known session's end was computed. */
  #readAt = 0;
  /** When the known session ends (Date.now() clock), from the server's `expiresIn`. */
  #endsAt = 0;
  /** The last request through token-handler (this tab or, as broadcast, another). */
  #lastActivity = 0;
  #lastActivityBroadcast = 0;
  #expiringTimer: ReturnType<typeof setTimeout> | undefined;
  #endTimer: ReturnType<typeof setTimeout> | undefined;
  /** The end for which `expiring` already fired. */
  #warnedFor = 0;

  constructor(options: ClientOptions = {}) {
    super();
    this.#page = globalThis as unknown as Page;
    const base = new URL(options.baseUrl ?? '/token-handler/v1', this.#page.location.href);
    this.#base = new URL(base.href.endsWith('/') ? base.href : `${base.href}/`);
    this.#clientId = options.clientId ?? 'default';
    this.#xsrfCookieName = options.xsrfCookieName ?? 'XSRF-TOKEN';
    this.#xsrfHeaderName = options.xsrfHeaderName ?? 'X-XSRF-TOKEN';
    this.#expiringBeforeMs = (options.expiringBefore ?? 60) * 1000;
    this.#onLoginRequired = options.onLoginRequired ?? 'event';
    const channel = options.channel ?? `token-handler:${this.#clientId}`;
    if (channel !== false && typeof BroadcastChannel === 'function') {
      this.#channel = new BroadcastChannel(channel);
      this.#channel.onmessage = (event: { data: unknown }) => this.#onMessage(event.data as Message);
    }
  }

  /** The session as last seen by this client (no request). */
  get current(): Session | null {
    return this.#session;
  }

  /** Asks token-handler who is logged in: the session of this client, or null. */
  async session(): Promise<Session | null> {
    const response = await globalThis.fetch(this.#url('sessions'), { credentials: this.#credentials(this.#base), headers: { accept: 'application/json' } });
    if (!response.ok) throw await problemOf(response, 'GET /sessions');
    const sessions = (await response.json()) as Session[];
    const session = sessions.find((s) => s.clientId === this.#clientId) ?? null;
    const before = this.#session;
    this.#setSession(session);
    if (session && !before) this.#post({ type: 'login' });
    return session;
  }

  /** Navigates to token-handler's login, and after it to `returnTo` (default: this page). */
  login(options: { returnTo?: string; prompt?: string; loginHint?: string } = {}): void {
    const { location } = this.#page;
    const url = this.#url(`clients/${encodeURIComponent(this.#clientId)}/auth`);
    url.searchParams.set('return_to', options.returnTo ?? `${location.pathname}${location.search}${location.hash}`);
    if (options.prompt !== undefined) url.searchParams.set('prompt', options.prompt);
    if (options.loginHint !== undefined) url.searchParams.set('login_hint', options.loginHint);
    location.assign(url.href);
  }

  /**
   * Logs out: token-handler revokes the tokens and deletes the session; every tab hears of it. Then, unless
   * `redirect: false`, the browser continues to the identity provider's logout (its single sign-on session).
   */
  async logout(options: { redirect?: boolean } = {}): Promise<void> {
    const response = await globalThis.fetch(this.#url(`clients/${encodeURIComponent(this.#clientId)}/logout`), {
      method: 'POST',
      credentials: this.#credentials(this.#base),
      headers: { accept: 'application/json', ...this.#xsrfHeader() },
    });
    if (!response.ok) throw await problemOf(response, 'logout');
    const { redirectTo } = (await response.json()) as { loggedOut: boolean; redirectTo?: string };
    this.#post({ type: 'logout' });
    this.#loggedOut('this-tab');
    if (options.redirect !== false && redirectTo) this.#page.location.assign(new URL(redirectTo, this.#base).href);
  }

  /**
   * The platform's fetch for calls through token-handler (its proxy, a target's mount path, the v1 API):
   * cookies sent, the XSRF header added to state-changing requests to token-handler's origin (never to
   * another site), and a `401 login_required` turned into the `loginrequired` event.
   */
  async fetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
    const url = new URL(input instanceof Request ? input.url : String(input), this.#page.location.href);
    const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    if (url.origin === this.#base.origin && !SAFE_METHODS.has(method) && !headers.has(this.#xsrfHeaderName)) {
      for (const [name, value] of Object.entries(this.#xsrfHeader())) headers.set(name, value);
    }
    const response = await globalThis.fetch(input, { credentials: this.#credentials(url), ...init, headers });
    if (url.origin === this.#base.origin) this.#activity();
    if (response.status === 401 && (await isLoginRequired(response))) this.#loginRequired(url.href, response);
    return response;
  }

  /** addEventListener, returning the function that removes the listener (for React effects and the like). */
  on<K extends keyof TokenHandlerEventDetails>(type: K, listener: (event: TokenHandlerEvent<K>) => void, options?: AddListenerOptions): () => void {
    const wrapped = listener as unknown as Listener;
    this.addEventListener(type, wrapped, options);
    return () => this.removeEventListener(type, wrapped, options);
  }

  /** Stops the timers and leaves the tabs' channel. */
  close(): void {
    clearTimeout(this.#expiringTimer);
    clearTimeout(this.#endTimer);
    this.#channel?.close();
  }

  #url(path: string): URL {
    return new URL(path, this.#base);
  }

  /** Cookies go to token-handler's origin; across origins the request must ask for them. */
  #credentials(url: URL): NonNullable<RequestInit['credentials']> {
    return url.origin === this.#page.location.origin ? 'same-origin' : 'include';
  }

  #xsrfHeader(): Record<string, string> {
    const cookie = this.#page.document?.cookie ?? '';
    for (const part of cookie.split(';')) {
      const at = part.indexOf('=');
      if (at > 0 && part.slice(0, at).trim() === this.#xsrfCookieName) return { [this.#xsrfHeaderName]: decodeURIComponent(part.slice(at + 1).trim()) };
    }
    return {};
  }

  #emit<K extends keyof TokenHandlerEventDetails>(type: K, detail: TokenHandlerEventDetails[K], cancelable = false): boolean {
    return this.dispatchEvent(new CustomEvent(type, { detail, cancelable }));
  }

  #setSession(session: Session | null): void {
    const before = this.#session;
    this.#session = session;
    clearTimeout(this.#expiringTimer);
    clearTimeout(this.#endTimer);
    if (session) {
      this.#readAt = Date.now();
      this.#endsAt = this.#readAt + session.expiresIn * 1000;
      this.#schedule();
    }
    if (before?.handle !== session?.handle) this.#emit('session', session);
  }

  /**
   * `expiring` at the end minus `expiringBefore`, then a check at the end. The idle end moves with every
   * request; the client knows when there were some (its own and, by broadcast, other tabs'), and only
   * then asks the server again before warning: asking would itself move the idle end, so a tab left open
   * never keeps its session alive by checking on it.
   */
  #schedule(): void {
    const now = Date.now();
    // The same end read again (the server counts whole seconds) is not warned about twice.
    if (Math.abs(this.#warnedFor - this.#endsAt) > 2000) {
      this.#expiringTimer = setTimeout(() => this.#onExpiring(), Math.min(MAX_DELAY_MS, Math.max(0, this.#endsAt - this.#expiringBeforeMs - now)));
    }
    // A second after the end, so the server's clock is past it too.
    this.#endTimer = setTimeout(() => void this.#onEnd(), Math.min(MAX_DELAY_MS, Math.max(0, this.#endsAt + 1000 - now)));
  }

  #onExpiring(): void {
    const session = this.#session;
    if (!session) return;
    if (this.#lastActivity > this.#readAt) {
      void this.session().catch(() => {});
      return;
    }
    this.#warnedFor = this.#endsAt;
    this.#emit('expiring', { session, expiresIn: Math.max(0, Math.round((this.#endsAt - Date.now()) / 1000)) });
  }

  async #onEnd(): Promise<void> {
    const session = this.#session;
    if (!session) return;
    // Past its end a session cannot be extended: asking is safe now, and catches activity this tab missed.
    let now: Session | null;
    try {
      now = await this.session();
    } catch {
      // token-handler unreachable: ask again later rather than guess.
      this.#endTimer = setTimeout(() => void this.#onEnd(), END_RETRY_MS);
      return;
    }
    if (now === null) this.#emit('expired', { session });
  }

  #activity(): void {
    this.#lastActivity = Date.now();
    if (this.#lastActivity - this.#lastActivityBroadcast >= ACTIVITY_BROADCAST_MS) {
      this.#lastActivityBroadcast = this.#lastActivity;
      this.#post({ type: 'activity' });
    }
  }

  #loginRequired(url: string, response: Response): void {
    if (this.#session) this.#setSession(null);
    const proceed = this.#emit('loginrequired', { url, response }, true);
    if (proceed && this.#onLoginRequired === 'redirect') this.login();
  }

  #loggedOut(from: 'this-tab' | 'other-tab'): void {
    this.#setSession(null);
    this.#emit('logout', { from });
  }

  #post(message: Message): void {
    this.#channel?.postMessage(message);
  }

  #onMessage(message: Message): void {
    if (message.type === 'logout') this.#loggedOut('other-tab');
    else if (message.type === 'login') void this.session().catch(() => {});
    else if (message.type === 'activity') this.#lastActivity = Date.now();
  }
}

/** A client for this page. One per page (and token-handler client) is enough. */
export function createClient(options: ClientOptions = {}): TokenHandlerClient {
  return new TokenHandlerClient(options);
}

/** Whether a 401 is token-handler's "no session" (problem+json `error: login_required`). */
async function isLoginRequired(response: Response): Promise<boolean> {
  if (!(response.headers.get('content-type') ?? '').includes('json')) return false;
  try {
    const body = (await response.clone().json()) as { error?: unknown };
    return body.error === 'login_required';
  } catch {
    return false;
  }
}

async function problemOf(response: Response, what: string): Promise<TokenHandlerError> {
  let error: string | undefined;
  let detail = '';
  try {
    const body = (await response.json()) as { error?: unknown; detail?: unknown };
    if (typeof body.error === 'string') error = body.error;
    if (typeof body.detail === 'string') detail = `: ${body.detail}`;
  } catch {
    // not problem+json: the status says enough
  }
  return new TokenHandlerError(`token-handler refused ${what} with ${response.status}${error ? ` ${error}` : ''}${detail}`, response.status, error);
}
