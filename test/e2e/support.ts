/**
 * Helpers of the browser suite: Debian's Chromium driven by playwright-core, screenshots under the
 * git-ignored artifacts/e2e/, a self-signed certificate, an "attacker" site on another origin, and the
 * LeakGuard that looks for tokens and the session cookie wherever page JavaScript could reach them.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page, type Response } from 'playwright-core';
import { expect } from 'vitest';
import type { Demo } from '../../src/demo/demo.ts';
import { hasOpenssl } from '../support/tls.ts';

export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) {
  if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: the browser suite needs Debian's chromium package on CI (.ci/run installs it)`);
  console.warn(`[e2e] SKIPPING the browser suite: ${CHROMIUM} is missing (apt-get install chromium). On CI this is a failure.`);
}

export { selfSigned } from '../support/tls.ts';
export { hasOpenssl };
if (!hasOpenssl) console.warn('[e2e] SKIPPING the HTTPS cases of the browser suite: openssl is missing.');

export const API = '/token-handler/v1';
export const ARTIFACTS = fileURLToPath(new URL('../../artifacts/e2e/', import.meta.url));
export const DEMO_IMAGE = fileURLToPath(new URL('../../docs/images/demo.png', import.meta.url));

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/** Saves a screenshot as artifacts/e2e/<prefix>-<name>.png. */
export async function snap(page: Page, prefix: string, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${prefix}-${name}.png`), fullPage: true });
}


// ---------------------------------------------------------------------------------------------------
// The demo SPA, driven like a user.
// ---------------------------------------------------------------------------------------------------

/** Logs in from the demo page: Log in → the IdP's own form → back on the app, signed in. */
export async function logInThroughUi(page: Page, demo: Demo, onIdpForm?: () => Promise<void>): Promise<void> {
  await page.goto(demo.url);
  await page.locator('#login').click();
  await page.waitForURL(`${demo.idp.issuer}/interaction/**`);
  await page.locator('#username').waitFor();
  if (onIdpForm) await onIdpForm();
  await page.locator('#username').fill('demo');
  await page.locator('#password').fill('demo');
  await page.locator('#submit').click();
  await page.waitForURL(demo.url);
  await poll(() => page.locator('#user-name').textContent()).toBe('Demo User');
}

/** expect.poll with a limit fit for a loaded 2-core CI machine (its default is 1 s). */
export function poll<T>(read: () => Promise<T> | T) {
  return expect.poll(read, { timeout: 10_000, interval: 50 });
}

export interface Reply {
  via: string;
  status?: number;
  body?: unknown;
  upstreamSaw?: { method: string; path: string; bodyLength: number; tokenValid: boolean };
  error?: string;
}

/** Clicks one of the demo's call buttons and returns the reply it shows (a new one: `data-seq` moved). */
export async function clickForReply(page: Page, buttonId: string): Promise<Reply> {
  const result = page.locator('#result');
  const before = Number(await result.getAttribute('data-seq'));
  await page.locator(`#${buttonId}`).click();
  await poll(async () => Number(await result.getAttribute('data-seq'))).toBeGreaterThan(before);
  return JSON.parse((await result.textContent()) ?? '') as Reply;
}

/** The browser's own view of its sessions, as the SPA sees it. */
export function sessionsSeenByPage(page: Page): Promise<unknown[]> {
  return page.evaluate(async (url) => (await fetch(url, { credentials: 'same-origin' })).json() as Promise<unknown[]>, `${API}/sessions`);
}

// ---------------------------------------------------------------------------------------------------
// The attacker: a site on another origin (127.0.0.1 while the app is on localhost: cross-site).
// ---------------------------------------------------------------------------------------------------

export interface Attacker {
  origin: string;
  /** A page that auto-submits a form POST (top-level navigation) to `target`. */
  formUrl(target: string): string;
  /** A page that sends `fetch(target, { method: 'POST', credentials: 'include', mode: 'no-cors' })`. */
  fetchUrl(target: string): string;
  close(): Promise<void>;
}

export async function startAttacker(): Promise<Attacker> {
  const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const target = url.searchParams.get('target') ?? '';
    let body = '<p>nothing here</p>';
    if (url.pathname === '/form') {
      body = `<h1>You won a prize!</h1>
<form id="f" method="post" action="${esc(target)}"><input type="hidden" name="item" value="stolen"><input type="hidden" name="quantity" value="1000"></form>
<script>document.getElementById('f').submit();</script>`;
    } else if (url.pathname === '/fetch') {
      body = `<h1>Nothing to see</h1>
<script>
fetch(${JSON.stringify(target)}, { method: 'POST', credentials: 'include', mode: 'no-cors',
  headers: { 'content-type': 'text/plain' }, body: '{"item":"stolen","quantity":1000}' })
  .then(() => { document.title = 'sent'; }, (error) => { document.title = 'failed: ' + error; });
</script>`;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(`<!doctype html><html><head><meta charset="utf-8"><title>attacker</title></head><body>${body}</body></html>`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    formUrl: (target) => `${origin}/form?target=${encodeURIComponent(target)}`,
    fetchUrl: (target) => `${origin}/fetch?target=${encodeURIComponent(target)}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

// ---------------------------------------------------------------------------------------------------
// LeakGuard
// ---------------------------------------------------------------------------------------------------

/** Anything shaped like a JWT (header.payload.signature, both JSON parts base64url of `{"`). */
const JWT = /eyJ[\w-]{4,}\.eyJ[\w-]{4,}\.[\w-]*/;
/** Names of token-handler's HttpOnly cookies (any client, with or without a __Host-/__Secure- prefix). */
const OWN_HTTPONLY_COOKIE = /^(__Host-|__Secure-)?(session(-.+)?|th-login-.+)$/;

interface SeenBody {
  url: string;
  status: number;
  text: string;
  /** Read through DevTools, or recorded by the page's own fetch/XHR (RECORD_SCRIPT_REPLIES). */
  source: 'devtools' | 'page script';
}

/**
 * Runs in every page before its own scripts: passes the body of every fetch and XMLHttpRequest (axios)
 * reply the page's JavaScript receives to the test. Passive (the page gets its responses untouched); needed
 * because DevTools cannot hand out a body once the page has navigated on (the logout reply, say).
 */
const RECORD_SCRIPT_REPLIES = `(() => {
  const report = (url, status, text) => { try { void window.__leakGuardSaw(String(url), status, text); } catch {} };
  const originalFetch = window.fetch;
  window.fetch = async function (...args) {
    const response = await originalFetch.apply(this, args);
    if (response.type !== 'opaque') response.clone().text().then((text) => report(response.url, response.status, text), () => {});
    return response;
  };
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function (...args) {
    this.addEventListener('loadend', () => {
      const text = this.responseType === '' || this.responseType === 'text' ? this.responseText : JSON.stringify(this.response);
      report(this.responseURL, this.status, text);
    });
    return send.apply(this, args);
  };
})();`;

/**
 * Watches everything page JavaScript could get hold of in one browser context: every response body the
 * pages receive (documents and scripts through DevTools, fetch/XHR replies inside the page as well),
 * `document.cookie`, localStorage and sessionStorage. Secrets it looks for: anything JWT-shaped, and the
 * exact values of the session cookie and of the tokens behind it (read from token-handler's own store, so
 * opaque refresh tokens are covered too).
 *
 * One exception, removed precisely (and counted) before the rest of the body is scanned:
 * - The demo upstream's /echo reflects the request headers it received, so the echo target's reply carries
 *   `Authorization: Bearer <access token>` back to the page. That is the upstream's doing (a debugging
 *   endpoint), not token-handler's; the reflected header must BE a bearer JWT (the injected token).
 * - token-handler's end-session page (`endSessionMethod: post`) carries the ID token as `id_token_hint`
 *   in a hidden field of the form it posts to the IdP. It is a top-level document no other script can
 *   reach (served only for `Sec-Fetch-Dest: document`, CSP frame-ancestors 'none', COOP same-origin), so
 *   only its DevTools copy is excused, and only that field, which must hold the session's ID token.
 *
 * The JSON logout reply is not excused: its `redirectTo` is token-handler's own end-session continuation,
 * so the ID token (id_token_hint) only travels in that page, which the app's script cannot read.
 */
export class LeakGuard {
  readonly #bodies: Promise<SeenBody | undefined>[] = [];
  readonly #secrets = new Set<string>();
  readonly #context: BrowserContext;
  readonly #demo: Demo;
  readonly #appHost: string;
  /** Echo replies whose reflected Authorization header was a bearer JWT (removed before scanning). */
  reflectedBearerTokens = 0;
  /** The ID tokens of the sessions seen, for the end-session page exception. */
  readonly #idTokens = new Set<string>();

  private constructor(context: BrowserContext, demo: Demo) {
    this.#context = context;
    this.#demo = demo;
    this.#appHost = new URL(demo.url).hostname;
    context.on('response', (response) => {
      this.#bodies.push(readBody(response));
    });
  }

  /** Watches `context`; call before its first page opens. */
  static async attach(context: BrowserContext, demo: Demo): Promise<LeakGuard> {
    const guard = new LeakGuard(context, demo);
    await context.exposeBinding('__leakGuardSaw', (_source, url: string, status: number, text: string) => {
      guard.#bodies.push(Promise.resolve({ url, status, text, source: 'page script' }));
    });
    await context.addInitScript({ content: RECORD_SCRIPT_REPLIES });
    return guard;
  }

  /** Bodies read so far (for a sanity check that the guard saw traffic). */
  async bodies(): Promise<SeenBody[]> {
    return (await Promise.all(this.#bodies)).filter((b): b is SeenBody => b !== undefined);
  }

  async #learnSecrets(): Promise<void> {
    for (const cookie of await this.#context.cookies()) {
      if (cookie.domain !== this.#appHost || !OWN_HTTPONLY_COOKIE.test(cookie.name)) continue;
      this.#secrets.add(cookie.value);
      if (/^(__Host-)?session$/.test(cookie.name)) {
        const session = await this.#demo.th.ctx.sessions.resolve(cookie.value, { clientId: 'default', tenant: null });
        const { accessToken, refreshToken, idToken } = session?.payload ?? {};
        for (const token of [accessToken, refreshToken, idToken]) if (token) this.#secrets.add(token);
        if (idToken) this.#idTokens.add(idToken);
      }
    }
  }

  /** The session cookie values and tokens learnt so far. */
  get secretCount(): number {
    return this.#secrets.size;
  }

  #assertClean(where: string, text: string): void {
    expect(JWT.exec(text)?.[0], `a JWT in ${where}`).toBeUndefined();
    for (const secret of this.#secrets) {
      expect(text.includes(secret), `a session cookie value or token in ${where}`).toBe(false);
    }
  }

  /** Everything the page can reach now, and every body received so far, holds no secret. */
  async check(page: Page, step: string): Promise<void> {
    await this.#learnSecrets();
    if (!page.isClosed()) {
      // A string, as it runs in the page (this project compiles without the DOM library).
      const reach = await page.evaluate<{ href: string; cookie: string; local: string; session: string }>(`({
        href: location.href,
        cookie: document.cookie,
        local: JSON.stringify(Object.entries(localStorage)),
        session: JSON.stringify(Object.entries(sessionStorage)),
      })`);
      const names = reach.cookie.split(';').map((c) => c.trim().split('=')[0] ?? '').filter(Boolean);
      expect(names.filter((n) => OWN_HTTPONLY_COOKIE.test(n)), `[${step}] HttpOnly cookie names in document.cookie at ${reach.href}`).toEqual([]);
      this.#assertClean(`[${step}] document.cookie at ${reach.href}`, reach.cookie);
      this.#assertClean(`[${step}] localStorage at ${reach.href}`, reach.local);
      this.#assertClean(`[${step}] sessionStorage at ${reach.href}`, reach.session);
    }
    this.reflectedBearerTokens = 0;
    for (const body of await this.bodies()) {
      this.#assertClean(`[${step}] the body of ${body.status} ${body.url} (${body.source})`, this.#withoutExcusedTokens(body));
    }
  }

  #withoutExcusedTokens(body: SeenBody): string {
    if (body.status !== 200) return body.text;
    const path = new URL(body.url).pathname;
    if (body.source === 'devtools' && /^\/token-handler\/v1\/clients\/[\w.-]+\/(end-session|logout)$|^\/logout$/.test(path)) {
      const field = /<input type="hidden" name="id_token_hint" value="([^"]*)">/.exec(body.text);
      if (field === null) return body.text;
      expect(this.#idTokens.has(field[1]!), `the id_token_hint of ${body.url} is the session's ID token`).toBe(true);
      return body.text.replace(field[0], '');
    }
    if (path.startsWith(`${API}/targets/echo/`)) {
      const echo = JSON.parse(body.text) as { headers: Record<string, unknown>; rawHeaders: string[] };
      const authorization = echo.headers.authorization;
      if (authorization === undefined) return body.text;
      expect(String(authorization), `the echo's reflected Authorization (${body.url})`).toMatch(new RegExp(`^Bearer ${JWT.source}$`));
      delete echo.headers.authorization;
      const at = echo.rawHeaders.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === 'authorization');
      if (at >= 0) echo.rawHeaders.splice(at, 2);
      this.reflectedBearerTokens += 1;
      return JSON.stringify(echo);
    }
    return body.text;
  }
}

async function readBody(response: Response): Promise<SeenBody | undefined> {
  const status = response.status();
  if (status >= 300 && status < 400) return undefined; // redirects have no body for the page
  try {
    return { url: response.url(), status, text: (await response.body()).toString('latin1'), source: 'devtools' };
  } catch {
    // The page navigated on before DevTools handed the body out; fetch/XHR replies are also recorded
    // inside the page (RECORD_SCRIPT_REPLIES), documents are read while they are on screen.
    return undefined;
  }
}
