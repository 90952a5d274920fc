/**
 * Drive a login (or logout) at the dev IdP through the redirect chain, the way a user with a browser
 * would, for ANY relying party using that IdP. The chain is followed until it leaves the IdP again;
 * the first response from the relying party after the IdP (normally its callback, which sets the
 * session cookies) is returned unread so the test can assert on it.
 */
import type { Browser, Hop, RequestOptions } from './http.ts';
import { isRedirect } from './http.ts';
import { autoSubmittedForm, parseForms, textById } from './html.ts';

export interface LoginOptions {
  username?: string;
  password?: string;
  /**
   * Origin of the IdP. When omitted it is detected: the first URL that looks like an OAuth
   * authorization request (client_id + response_type query parameters) belongs to the IdP.
   */
  idpOrigin?: string;
  maxSteps?: number;
}

export interface FlowResult {
  /** First response from the relying party after leaving the IdP (body unread). */
  response: Response;
  url: string;
  hops: Hop[];
  /** Origin detected (or given) for the IdP. */
  idpOrigin: string;
  /** Set when the flow ended on an IdP page (e.g. the signed-out page); `response` is then consumed. */
  html?: string;
}

export class LoginFailedError extends Error {
  readonly url: string;
  readonly hops: Hop[];
  constructor(message: string, url: string, hops: Hop[]) {
    super(message);
    this.name = 'LoginFailedError';
    this.url = url;
    this.hops = hops;
  }
}

function looksLikeAuthorizationRequest(url: URL): boolean {
  return url.searchParams.has('client_id') && url.searchParams.has('response_type');
}

type PageHandler = (page: { url: URL; html: string; submitted: number }) => { url: URL; opts: RequestOptions } | 'done' | undefined;

async function drive(browser: Browser, start: string | URL, options: LoginOptions, onIdpPage: PageHandler): Promise<FlowResult> {
  const hops: Hop[] = [];
  let url = new URL(start);
  let idpOrigin = options.idpOrigin ? new URL(options.idpOrigin).origin : undefined;
  if (!idpOrigin && looksLikeAuthorizationRequest(url)) idpOrigin = url.origin;
  let opts: RequestOptions = {};
  let seenIdp = false;
  let submitted = 0;

  for (let step = 0; step < (options.maxSteps ?? 40); step += 1) {
    const response = await browser.request(url, opts);
    const location = response.headers.get('location') ?? undefined;
    hops.push({ method: opts.method ?? 'GET', url: url.href, status: response.status, location });
    const onIdp = url.origin === idpOrigin;
    if (onIdp) seenIdp = true;
    else if (seenIdp) return { response, url: url.href, hops, idpOrigin: idpOrigin ?? '' };

    if (isRedirect(response.status) && location) {
      await response.body?.cancel();
      const next = new URL(location, url);
      if (!idpOrigin && looksLikeAuthorizationRequest(next)) idpOrigin = next.origin;
      // 307/308 would re-send the body; the IdP and RPs only use 302/303 here.
      opts = response.status === 307 || response.status === 308 ? opts : {};
      url = next;
      continue;
    }

    const html = await response.text();
    const autoForm = onIdp ? undefined : autoSubmittedForm(html);
    if (autoForm) {
      // What the page's script does in a browser: post the form (token-handler's end-session continuation).
      url = new URL(autoForm.action, url);
      opts = { method: autoForm.method, body: autoForm.fields };
      continue;
    }
    if (!onIdp) {
      throw new LoginFailedError(`expected a redirect to the IdP, got ${response.status} at ${url.href}: ${html.slice(0, 200)}`, url.href, hops);
    }
    const next = onIdpPage({ url, html, submitted });
    if (next === 'done') return { response, url: url.href, hops, idpOrigin: idpOrigin ?? '', html };
    if (!next) {
      const error = textById(html, 'error') ?? html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').slice(0, 300);
      throw new LoginFailedError(`stuck at IdP page ${url.href} (${response.status}): ${error}`, url.href, hops);
    }
    submitted += 1;
    url = next.url;
    opts = next.opts;
  }
  throw new LoginFailedError(`no way back from the IdP after ${options.maxSteps ?? 40} steps`, url.href, hops);
}

/**
 * Start at `startUrl` (an RP login route that redirects to the IdP, or an authorization URL),
 * sign in with the HTML login form, accept consent and follow redirects back to the RP.
 * Throws LoginFailedError with the IdP's error message on wrong credentials.
 */
export function loginAtDevIdp(browser: Browser, startUrl: string | URL, options: LoginOptions = {}): Promise<FlowResult> {
  return drive(browser, startUrl, options, ({ url, html, submitted }) => {
    const form = parseForms(html).find((f) => 'username' in f.fields && 'password' in f.fields);
    if (!form) return undefined;
    if (submitted > 0) {
      throw new LoginFailedError(`login rejected: ${textById(html, 'error') ?? 'login form shown again'}`, url.href, []);
    }
    return {
      url: new URL(form.action, url),
      opts: {
        method: form.method,
        body: { ...form.fields, username: options.username ?? 'demo', password: options.password ?? 'demo' },
      },
    };
  });
}

/**
 * Start at an RP logout route (or the IdP end_session URL), confirm the IdP's sign-out page and
 * follow redirects back to the RP (post_logout_redirect_uri). `confirm: false` presses "stay signed in".
 */
export function logoutAtDevIdp(
  browser: Browser,
  startUrl: string | URL,
  options: { idpOrigin: string; confirm?: boolean; maxSteps?: number },
): Promise<FlowResult> {
  return drive(browser, startUrl, options, ({ url, html, submitted }) => {
    if (html.includes('id="signed-out"')) return 'done'; // no post_logout_redirect_uri: IdP's own page
    const form = parseForms(html).find((f) => f.id === 'op.logoutForm');
    if (!form || submitted > 0) return undefined;
    return {
      url: new URL(form.action, url),
      opts: { method: 'POST', body: { ...form.fields, ...(options.confirm === false ? {} : { logout: 'yes' }) } },
    };
  });
}
