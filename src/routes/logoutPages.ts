/**
 * The two HTML pages of the logout flow, both token-handler's own:
 *
 * - the **end-session form**: the browser continues to the IdP's end_session_endpoint with an
 *   auto-submitted form POST (OpenID Connect RP-Initiated Logout 1.0 §2 requires OPs to accept POST), so
 *   the ID token it carries as `id_token_hint` stays out of URLs, browser history, and the IdP's and
 *   proxies' access logs. The page holds that ID token, so it is only served to a top-level navigation
 *   (a script's fetch gets the redirect instead), cannot be framed, severs its opener (COOP) and runs no
 *   script but its own one-line submit, allowed by a per-response CSP nonce;
 * - the **logout confirmation**: a GET logout the user did not evidently make (from another site) ends
 *   nothing by itself; the user gets a page with one button that POSTs the logout.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { header } from '../http/request.ts';

/** How the browser goes on to the IdP after a logout (sealed in the continuation cookie of a JSON logout). */
export type EndSessionStep =
  | { method: 'redirect'; url: string }
  /** `action`: the end_session_endpoint as published (its own query kept); `fields`: what we add to it. */
  | { method: 'post'; action: string; fields: [string, string][] };

/**
 * The step to the end-session URL `url`: a form POST to `endpoint` when `method` is post and the URL is
 * that endpoint with parameters added (anything else, such as a provider's own logout URL, is a redirect).
 */
export function endSessionStep(url: URL, endpoint: string | undefined, method: 'post' | 'get'): EndSessionStep {
  if (method === 'get' || endpoint === undefined) return { method: 'redirect', url: url.href };
  let published: URL;
  try {
    published = new URL(endpoint);
  } catch {
    return { method: 'redirect', url: url.href };
  }
  if (published.origin !== url.origin || published.pathname !== url.pathname) return { method: 'redirect', url: url.href };
  const own = new Set([...published.searchParams].map(([name, value]) => `${name}\n${value}`));
  const fields = [...url.searchParams].filter(([name, value]) => !own.has(`${name}\n${value}`));
  return { method: 'post', action: published.href, fields };
}

/** A step read back from the continuation cookie, or undefined when it is not one. */
export function parseEndSessionStep(text: string): EndSessionStep | undefined {
  try {
    const step = JSON.parse(text) as Partial<EndSessionStep>;
    if (step.method === 'redirect' && typeof step.url === 'string') return { method: 'redirect', url: step.url };
    if (step.method === 'post' && typeof step.action === 'string' && Array.isArray(step.fields)) {
      const fields = step.fields.filter((f): f is [string, string] => Array.isArray(f) && typeof f[0] === 'string' && typeof f[1] === 'string');
      return { method: 'post', action: step.action, fields };
    }
  } catch {
    // Not JSON: not ours.
  }
  return undefined;
}

/**
 * Whether the response becomes a top-level document: Fetch Metadata's destination is `document` (a
 * script's fetch is `empty`, a frame `iframe`, an object `object`); browsers without Fetch Metadata, and
 * non-browser clients, send none.
 */
function isTopLevelNavigation(request: FastifyRequest): boolean {
  const dest = header(request, 'sec-fetch-dest');
  return dest === undefined || dest === 'document';
}

/** Sends the browser on to the IdP: the end-session form page for a navigation, else a redirect. */
export function continueToEndSession(request: FastifyRequest, reply: FastifyReply, step: EndSessionStep, redirectStatus: 302 | 303): FastifyReply {
  reply.header('cache-control', 'no-store');
  if (step.method === 'post' && isTopLevelNavigation(request)) return sendEndSessionForm(reply, step);
  const url = step.method === 'redirect' ? step.url : withFields(step.action, step.fields);
  return reply.redirect(url, redirectStatus);
}

function withFields(action: string, fields: readonly [string, string][]): string {
  const url = new URL(action);
  for (const [name, value] of fields) url.searchParams.append(name, value);
  return url.href;
}

function sendEndSessionForm(reply: FastifyReply, step: Extract<EndSessionStep, { method: 'post' }>): FastifyReply {
  const nonce = randomBytes(16).toString('base64');
  const inputs = step.fields.map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`).join('');
  const body = page(
    'Signing out',
    nonce,
    `<form method="post" action="${escapeHtml(step.action)}">${inputs}<p>Signing you out…</p><noscript><button type="submit">Continue</button></noscript></form>` +
      `<script nonce="${nonce}">document.forms[0].submit();</script>`,
  );
  return sendPage(reply, body, nonce, true);
}

/**
 * The confirmation page of a GET logout that came from another site: one button, a form POST (from our
 * own origin, with the session's sid guard) to `action`.
 */
export function sendLogoutConfirmation(reply: FastifyReply, action: string, site: string): FastifyReply {
  const nonce = randomBytes(16).toString('base64');
  const body = page(
    'Sign out?',
    nonce,
    `<h1>Sign out of ${escapeHtml(site)}?</h1><p>Another page asked to sign you out. Only continue if you meant to.</p>` +
      `<form method="post" action="${escapeHtml(action)}"><button type="submit">Sign out</button></form>`,
  );
  reply.header('cache-control', 'no-store');
  return sendPage(reply, body, nonce, false);
}

function page(title: string, nonce: string, content: string): string {
  return (
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>${escapeHtml(title)}</title><style nonce="${nonce}">body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}</style>` +
    `</head><body>${content}</body></html>`
  );
}

function sendPage(reply: FastifyReply, body: string, nonce: string, withScript: boolean): FastifyReply {
  // No form-action: browsers that apply it to the redirects after a submit would block the IdP's redirect
  // back to the post-logout URL; the page posts to one fixed action and loads nothing else.
  const csp = [`default-src 'none'`, withScript ? `script-src 'nonce-${nonce}'` : '', `style-src 'nonce-${nonce}'`, `base-uri 'none'`, `frame-ancestors 'none'`]
    .filter((directive) => directive !== '')
    .join('; ');
  return reply
    .code(200)
    .header('content-type', 'text/html; charset=utf-8')
    .header('content-security-policy', csp)
    .header('x-frame-options', 'DENY')
    .header('cross-origin-opener-policy', 'same-origin')
    // The end-session form posts to the IdP: nothing of ours goes with it. The confirmation posts to us, and
    // must carry its Origin (confirmedOnOurPage): under no-referrer, browsers send `Origin: null`.
    .header('referrer-policy', withScript ? 'no-referrer' : 'same-origin')
    .header('x-content-type-options', 'nosniff')
    .send(body);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
