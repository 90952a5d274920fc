/**
 * Where the browser reaches a client's routes: the path token-handler puts in every URL of a client route
 * it hands to the browser (the derived callback URL, a JSON logout's `redirectTo`, the logout
 * confirmation's form action, the `logoutUrl` of GET /sessions), so that URL goes through the reverse
 * proxy that serves the app, whatever path layout the proxy uses.
 *
 * The ADSP layout maps `/auth/...` to `{base}/clients/my-client/...`: URLs built as
 * `{base}/clients/my-client/end-session` are not routed by such a proxy. In order:
 *
 * 1. On the client's own routes, a trusted proxy's `X-Forwarded-Prefix` (as ASP.NET's PathBase and Spring's
 *    ForwardedHeaderFilter honour it: the path at which the browser reaches what the location forwards
 *    to, here the client's routes `{base}/clients/{id}`).
 * 2. The client's configured callback URL, when it ends in `/callback`: the client's routes are where its
 *    callback is (`https://app.example.com/auth/callback` → `/auth`). Also on other routes (GET /sessions).
 * 3. Else token-handler's own path, `{base}/clients/{id}`.
 */
import type { FastifyRequest } from 'fastify';
import type { ClientConfig } from '../config/types.ts';
import type { AppContext } from '../context.ts';

/**
 * The browser's path of client `client`'s routes, without a trailing slash. `remembered`: the path the
 * session's browser used when it logged in (SessionPayload.publicPath), second only to the request's own.
 */
export function clientPublicPath(
  ctx: AppContext,
  request: FastifyRequest,
  client: Pick<ClientConfig, 'id' | 'redirectUrl'>,
  remembered?: string,
): string {
  return forwardedClientPath(ctx, request, client.id) ?? remembered ?? callbackMount(client.redirectUrl) ?? `${ctx.config.basePath}/clients/${client.id}`;
}

/** The trusted proxy's X-Forwarded-Prefix of a request to one of client `clientId`'s routes, else undefined. */
export function forwardedClientPath(ctx: AppContext, request: FastifyRequest, clientId: string): string | undefined {
  const prefix = ctx.origins.prefixOf(request);
  return prefix !== undefined && onClientRoutes(request, `${ctx.config.basePath}/clients/${clientId}`) ? prefix : undefined;
}

/** Whether the request reached one of the routes under `own` (the client's route group). */
function onClientRoutes(request: FastifyRequest, own: string): boolean {
  const path = request.url.split('?', 1)[0] ?? '';
  return path === own || path.startsWith(`${own}/`);
}

/** The path of a configured callback URL without its last `/callback` segment, or undefined. */
function callbackMount(redirectUrl: string | undefined): string | undefined {
  if (!redirectUrl) return undefined;
  let path: string;
  try {
    path = new URL(redirectUrl).pathname;
  } catch {
    return undefined;
  }
  return path.endsWith('/callback') ? path.slice(0, -'/callback'.length) : undefined;
}

/**
 * The origin relative URLs of a client's configuration (post-logout, failure) are resolved against: with
 * --public_url, that; else the configured callback URL's origin (the app's, whatever Host the proxy
 * sends: `Host $host` drops the port); else the request's.
 */
export function appOrigin(ctx: AppContext, request: FastifyRequest, client: Pick<ClientConfig, 'redirectUrl'>): string {
  if (!ctx.origins.isFixed && client.redirectUrl) {
    try {
      return new URL(client.redirectUrl).origin;
    } catch {
      // Validated at load: never here.
    }
  }
  return ctx.origins.originOf(request);
}

/**
 * Origins the app of `client` runs on by its configuration: its callback URL's (the session cookie is set
 * there), and its post-login and post-logout URLs' when absolute. CSRF Origin checks accept them besides
 * our own: behind a proxy that sends `Host $host` (the port dropped) or none at all (a dev server with
 * changeOrigin), our own origin as derived from the request is not the browser's.
 */
export function configuredAppOrigins(client: Pick<ClientConfig, 'redirectUrl' | 'postLoginRedirectUrl' | 'postLogoutRedirectUrl'>): string[] {
  const origins: string[] = [];
  for (const url of [client.redirectUrl, client.postLoginRedirectUrl, client.postLogoutRedirectUrl]) {
    if (url && /^https?:\/\//.test(url)) {
      try {
        origins.push(new URL(url).origin);
      } catch {
        // Not a URL: validated at load, never here.
      }
    }
  }
  return origins;
}
