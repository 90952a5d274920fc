import type { FastifyInstance } from 'fastify';
import { readFileSync } from 'node:fs';
import type { Config } from '../config/types.ts';
import { redirectUrlPath } from './legacy.ts';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Doc = { [key: string]: Json };

const problem = (description: string): Doc => ({
  description,
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});
/** go-token-handler's error shape: its routes and its `proxies:` targets answer errors so. */
const goError = (description: string): Doc => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/GoError' } } },
});
const redirect = (description: string): Doc => ({
  description,
  headers: { Location: { schema: { type: 'string' }, description: 'Where the browser goes next.' } },
});
const clientIdParam: Doc = {
  name: 'clientId',
  in: 'path',
  required: true,
  description: 'Our id of the OIDC client (`default` for the flag-configured one).',
  schema: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' },
};

/**
 * The OpenAPI 3.1 description of the HTTP API, built from the configuration (base path, targets, which
 * optional routes are on). Hand-written: the routes do not carry JSON schemas, and the proxy's surface is
 * whatever each upstream exposes, so targets are described generically.
 */
export function openApiDocument(config: Config, version: string): Doc {
  const base = config.basePath;
  const paths: Doc = {};
  const tags = { auth: ['auth'], sessions: ['sessions'], targets: ['targets'], ops: ['operations'] };

  paths[`${base}/clients/{clientId}/auth`] = {
    get: {
      tags: tags.auth,
      operationId: 'login',
      summary: 'Start a login: redirect to the identity provider (authorization code flow with PKCE).',
      parameters: [
        clientIdParam,
        { name: 'return_to', in: 'query', description: 'Where to go after the login: a path, or a URL on an allowed origin.', schema: { type: 'string' } },
        { name: 'prompt', in: 'query', description: 'OIDC prompt passed to the identity provider (e.g. `login`).', schema: { type: 'string' } },
        { name: 'login_hint', in: 'query', schema: { type: 'string', maxLength: 256 } },
      ],
      responses: {
        '302': redirect('To the identity provider; sets the short-lived login-state cookie.'),
        '400': problem('`invalid_return_to`, `host_mismatch`, missing tenant header.'),
        '404': problem('Unknown client.'),
        '429': problem('Too many logins from this address.'),
        '502': problem('`idp_error`: the identity provider refused the pushed authorization request (PAR).'),
        '503': problem('`idp_unavailable`: the identity provider cannot be reached.'),
      },
    },
  };
  paths[`${base}/clients/{clientId}/callback`] = {
    get: {
      tags: tags.auth,
      operationId: 'callback',
      summary: 'The redirect URI: completes the login, sets the session and XSRF cookies.',
      parameters: [
        clientIdParam,
        { name: 'code', in: 'query', schema: { type: 'string' } },
        { name: 'state', in: 'query', required: true, schema: { type: 'string' } },
        { name: 'iss', in: 'query', schema: { type: 'string' } },
        { name: 'error', in: 'query', description: 'Set by the identity provider when it refused the login.', schema: { type: 'string' } },
        { name: 'error_description', in: 'query', schema: { type: 'string' } },
      ],
      responses: {
        '302': redirect('To the return_to URL; or the failure redirect URL with `?error=`; a user who cancelled at the IdP (`access_denied`) always goes there, by default `/`.'),
        '400': problem('`invalid_state`, `invalid_grant`, `invalid_response` (a response or ID token that failed validation), or the identity provider error code (`temporarily_unavailable`, ...).'),
        '403': problem('`tenant_not_allowed`: a multi-tenant (Entra ID `/common`) issuer authenticated a user of a directory not in the client\'s `allowedTids`.'),
        '429': problem('Too many login callbacks from this address.'),
        '502': problem('`idp_unavailable`: the identity provider could not be reached, answered too slowly or with a server error during the code exchange.'),
        '503': problem('`idp_unavailable` or `store_unavailable`.'),
      },
    },
  };
  paths[`${base}/clients/{clientId}/logout`] = {
    get: {
      tags: tags.auth,
      operationId: 'logoutByLink',
      summary:
        'Log out with a link or a navigation the user made (typed, bookmarked, a link on this origin or an allowed origin), or with the `sid` guard from the `logoutUrl` of /sessions. From another site: a confirmation page.',
      parameters: [clientIdParam, { name: 'sid', in: 'query', schema: { type: 'string' } }],
      responses: {
        '200': {
          description: "An HTML page: the confirmation page (from another site; its button POSTs the logout), or, with `endSessionMethod: post`, the auto-submitted form POST to the identity provider's end-session endpoint.",
          content: { 'text/html': { schema: { type: 'string' } } },
        },
        '302': redirect("To the identity provider's end-session endpoint, or the post-logout URL."),
      },
    },
    post: {
      tags: tags.auth,
      operationId: 'logout',
      summary: 'Log out: revokes the tokens, deletes the session, clears the cookie.',
      security: [{ sessionCookie: [], xsrfHeader: [] }],
      parameters: [clientIdParam],
      responses: {
        '200': {
          description: 'With `Accept: application/json`: where to send the browser to end the IdP session.',
          content: {
            'application/json': {
              schema: { type: 'object', required: ['loggedOut', 'redirectTo'], properties: { loggedOut: { const: true }, redirectTo: { type: 'string', description: 'Where the browser goes next: this client\'s end-session route as the browser reaches it through the reverse proxy, or the post-logout URL.' } } },
            },
          },
        },
        '303': redirect("To the identity provider's end-session endpoint, or the post-logout URL (with `endSessionMethod: post`, a 200 HTML page posting to that endpoint instead)."),
        '403': problem('`csrf_failed`: missing or wrong XSRF header (or, from the confirmation page, `sid` guard), or a foreign Origin.'),
      },
    },
  };
  paths[`${base}/clients/{clientId}/end-session`] = {
    get: {
      tags: tags.auth,
      operationId: 'endSession',
      summary: "Where a JSON logout's `redirectTo` points: continues to the identity provider's end-session endpoint from a sealed one-minute cookie, so the ID token hint never reaches script.",
      parameters: [clientIdParam],
      responses: {
        '302': redirect("To the identity provider's end-session endpoint, or (without the cookie) the post-logout URL."),
        '404': problem('`unknown_client`.'),
      },
    },
  };
  paths[`${base}/sessions`] = {
    get: {
      tags: tags.sessions,
      operationId: 'sessions',
      summary:
        "The sessions of this browser (an empty array when logged out). With an admin bearer token (ADSP): the live sessions of the administrator's tenant at the token's issuer (at most 1000, oldest first). Never a token.",
      security: [{}, { sessionCookie: [] }, { adminBearer: [] }],
      responses: {
        '200': {
          description: 'One entry per client the browser is logged in to; for an admin bearer token, one `AdminSession` per session of the tenant.',
          content: { 'application/json': { schema: { type: 'array', items: { oneOf: [{ $ref: '#/components/schemas/Session' }, { $ref: '#/components/schemas/AdminSession' }] } } } },
        },
        '400': problem('`tenant_required`: several tenants log in at the admin token\'s issuer.'),
        '401': problem('A refused admin bearer token.'),
        '403': problem('The admin bearer token lacks the admin role.'),
        '503': problem('`store_unavailable`.'),
      },
    },
    delete: {
      tags: tags.sessions,
      operationId: 'logoutEverywhere',
      summary: "Logs the user out everywhere: ends all their sessions at this issuer and revokes their refresh tokens. CSRF-protected.",
      security: [{ sessionCookie: [], xsrfHeader: [] }],
      responses: {
        '200': { description: 'How many sessions ended.', content: { 'application/json': { schema: { type: 'object' } } } },
        '401': problem('`login_required`: no session.'),
        '403': problem('`csrf_failed`.'),
      },
    },
  };
  paths[`${base}/sessions/{handle}`] = {
    delete: {
      tags: tags.sessions,
      operationId: 'revokeSession',
      summary: 'Ends one of the current user\'s sessions, named by the `handle` from `GET /sessions?all=true`. CSRF-protected.',
      security: [{ sessionCookie: [], xsrfHeader: [] }],
      parameters: [{ name: 'handle', in: 'path', required: true, schema: { type: 'string' } }],
      responses: {
        '200': { description: 'The session ended.', content: { 'application/json': { schema: { type: 'object' } } } },
        '401': problem('`login_required`: no session.'),
        '403': problem('`csrf_failed`.'),
        '404': problem('No session of this user has that handle.'),
      },
    },
  };
  paths[`${base}/clients/{clientId}`] = {
    post: {
      tags: tags.auth,
      operationId: 'registerClient',
      summary: 'Registers a `registered: true` client at its IdP (OpenID Dynamic Client Registration) and stores the credentials encrypted.',
      security: [{ adminBearer: [] }],
      parameters: [clientIdParam],
      requestBody: {
        required: true,
        content: { 'application/json': { schema: { type: 'object', required: ['registrationToken'], properties: { registrationToken: { type: 'string', description: "The IdP's initial access token." } } } } },
      },
      responses: {
        '200': { description: 'Registered. A registration it replaces is deleted at the IdP (RFC 7592).', content: { 'application/json': { schema: { type: 'object', properties: { registered: { const: true }, clientId: { type: 'string' } } } } } },
        '400': problem('Malformed body; `tenant_required`: a tenant-scoped client without the tenant header, whose tenant the token\'s issuer does not name.'),
        '401': problem('Missing, invalid or expired bearer token; not an access token for the token handler (an ID token, another audience, a token of one of our clients).'),
        '403': problem('The bearer token lacks the admin role.'),
        '409': problem('`not_registrable`: the client has a configured secret; `public_url_required`: neither --public_url nor the client callback URL is set.'),
        '502': problem("The IdP refused the registration (its `error` is passed on)."),
      },
    },
    get: {
      tags: tags.auth,
      operationId: 'getClient',
      summary: "ADSP's client view for an administrator (never a secret). Without the tenant header, a tenant-scoped client's tenant is the one whose issuer signed the token.",
      security: [{ adminBearer: [] }],
      parameters: [clientIdParam],
      responses: {
        '200': {
          description: 'The client.',
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['id', 'authCallbackUrl', 'successRedirectUrl', 'failureRedirectUrl', 'clientId'],
                properties: {
                  id: { type: 'string' },
                  authCallbackUrl: { type: ['string', 'null'], description: 'The callback URL registered at the IdP; null without --public_url or authCallbackUrl.' },
                  successRedirectUrl: { type: 'string' },
                  failureRedirectUrl: { type: 'string' },
                  clientId: { type: ['string', 'null'], description: 'The client_id at the IdP; null for a `registered: true` client not registered yet.' },
                  tenant: { type: 'string', description: 'The tenant, for a tenant-scoped client.' },
                },
              },
            },
          },
        },
        '400': problem('`tenant_required`.'),
        '401': problem('Missing or refused bearer token.'),
        '403': problem('The bearer token lacks the admin role.'),
        '404': problem('`unknown_client`, `unknown_tenant`.'),
      },
    },
  };
  paths[`${base}/clients/{clientId}/backchannel-logout`] = {
    post: {
      tags: tags.auth,
      operationId: 'backchannelLogout',
      summary: "OpenID Connect Back-Channel Logout: the IdP posts a logout token; the matching sessions end on every instance.",
      parameters: [clientIdParam],
      requestBody: {
        required: true,
        content: { 'application/x-www-form-urlencoded': { schema: { type: 'object', required: ['logout_token'], properties: { logout_token: { type: 'string' } } } } },
      },
      responses: {
        '200': { description: 'The sessions ended.' },
        '400': { description: '`invalid_request`: the logout token is invalid.', content: { 'application/json': { schema: { type: 'object' } } } },
      },
    },
  };

  const pathParam: Doc = { name: 'path', in: 'path', required: true, description: 'The rest of the path, appended below the target URL.', schema: { type: 'string' } };
  const targetOperation = (summary: string, withPath: boolean, go = false): Doc => {
    const error = go ? goError : problem;
    return {
      tags: tags.targets,
      summary,
      security: [{ sessionCookie: [] }, {}],
      parameters: withPath ? [pathParam] : [],
      responses: {
        default: { description: "The upstream's response, streamed (hop-by-hop headers and, unless allowed, Set-Cookie removed)." },
        '401': error('`login_required`: the target needs a user session and there is none (or it ended).'),
        '403': error('`csrf_failed`: a state-changing request that fails the target\'s CSRF check (mode `token`: no XSRF header; mode `origin`: another site), or a cross-site GET/HEAD the target does not allow.'),
        '405': error('`method_not_allowed`: a method the target does not allow.'),
        '502': error('The upstream could not be reached or failed.'),
        '504': error('The upstream did not answer in time.'),
      },
    };
  };
  // Every method is routed to the proxy, which answers 405 for one the target does not allow.
  const proxied = (summary: string, withPath: boolean, go = false): Doc => {
    const op: Doc = {};
    for (const method of ['get', 'post', 'put', 'patch', 'delete', 'options', 'head']) op[method] = targetOperation(summary, withPath, go);
    return op;
  };
  const subtreeRedirect = (target: string): Doc => {
    const op: Doc = {};
    const moved: Doc = { tags: tags.targets, summary: `The bare path of target \`${target}\` (a go-token-handler \`endpoint\` with a trailing slash).`, responses: { '301': redirect('To the same path with a trailing slash (query kept), as Go ServeMux answered.') } };
    for (const method of ['get', 'post', 'put', 'patch', 'delete', 'options', 'head']) op[method] = moved;
    return op;
  };
  const targetIdParam: Doc = { name: 'targetId', in: 'path', required: true, schema: { type: 'string' } };
  const generic = "Proxy to a configured upstream API, with the session's access token as `Authorization: Bearer`.";
  paths[`${base}/targets/{targetId}`] = { parameters: [targetIdParam], ...proxied(`${generic} The target URL itself.`, false) };
  paths[`${base}/targets/{targetId}/{path}`] = { parameters: [targetIdParam], ...proxied(generic, true) };
  for (const target of config.targets) {
    if (target.mountPath === `${base}/targets/${target.id}`) continue;
    paths[target.mountPath] = target.redirectBareMount
      ? subtreeRedirect(target.id)
      : proxied(`Proxy to target \`${target.id}\`: the target URL itself.`, false, target.goErrors);
    paths[`${target.mountPath}/{path}`] = proxied(`Proxy to target \`${target.id}\`.`, true, target.goErrors);
  }

  if (config.legacyRoutes) {
    const legacy = (summary: string, responses: Doc): Doc => ({ get: { tags: tags.auth, summary, deprecated: true, responses } });
    paths['/login'] = legacy('go-token-handler compatible login of the `default` client.', { '302': redirect('To the identity provider.') });
    paths['/callback'] = legacy('go-token-handler compatible callback.', { '302': redirect('To the post-login URL.') });
    paths['/logout'] = legacy('go-token-handler compatible logout (as GET /clients/default/logout).', {
      '200': { description: 'The confirmation page (from another site) or the end-session form POST.', content: { 'text/html': { schema: { type: 'string' } } } },
      '302': redirect('To the end-session endpoint or post-logout URL.'),
    });
    paths['/logout'].post = {
      tags: tags.auth,
      summary: "The confirmation page's button (as POST /clients/default/logout: the `sid` guard or the XSRF header).",
      deprecated: true,
      responses: { '302': redirect('To the end-session endpoint or post-logout URL.'), '403': { description: 'CSRF check failed.' } },
    };
    paths['/userinfo'] = legacy("The identity provider's userinfo for the session. Errors of these routes come in go-token-handler's shape.", {
      '200': { description: 'Userinfo claims.', content: { 'application/json': { schema: { type: 'object' } } } },
      '401': goError('`login_required`.'),
    });
  }

  // --oidc_redirect_url at a path of its own (an IdP registration made for go-token-handler): the callback there too.
  const redirectPath = redirectUrlPath(config);
  if (redirectPath !== undefined) {
    paths[redirectPath] = {
      get: {
        tags: tags.auth,
        operationId: 'callbackAtRedirectUrl',
        summary: 'The callback of the `default` client at the path of `--oidc_redirect_url`.',
        responses: { '302': redirect('To the return_to URL (or the failure redirect URL with `?error=`).'), '400': goError('As the callback, in go-token-handler\'s shape.') },
      },
    };
  }

  const alive: Doc = {
    tags: tags.ops,
    summary: 'Liveness: the process is up. Checks no dependency.',
    responses: { '200': { description: 'Alive.', content: { 'application/json': { schema: { type: 'object', properties: { status: { const: 'ok' } } } } } } },
  };
  paths['/healthz'] = { get: { ...alive, operationId: 'healthz' } };
  paths['/ping'] = { get: { ...alive, operationId: 'ping' } };
  paths['/readyz'] = {
    get: {
      tags: tags.ops,
      operationId: 'readyz',
      summary: 'Readiness: the session store answers (an unreachable issuer is reported as degraded, or fails with --readyz_strict).',
      responses: {
        '200': { description: 'Ready (`ok`), or ready with an issuer unreachable (`degraded`).', content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } } },
        '503': { description: 'The store does not answer, with --readyz_strict an issuer does not either (or the service is shutting down).', content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } } },
      },
    },
  };
  if (!config.metricsListen) {
    paths['/metrics'] = {
      get: {
        tags: tags.ops,
        operationId: 'metrics',
        summary: 'Prometheus metrics (text exposition format).',
        responses: { '200': { description: 'Metrics.', content: { 'text/plain': { schema: { type: 'string' } } } } },
      },
    };
  }
  paths[`${base}/openapi.json`] = {
    get: { tags: tags.ops, operationId: 'openapi', summary: 'This document.', responses: { '200': { description: 'OpenAPI 3.1 document.', content: { 'application/json': { schema: { type: 'object' } } } } } },
  };

  const cookieName = `${config.cookie.domain === undefined && config.cookie.secure !== false ? '__Host-' : config.cookie.secure !== false ? '__Secure-' : ''}${config.cookie.name}`;
  return {
    openapi: '3.1.0',
    info: {
      title: 'token-handler',
      version,
      description:
        'The token handler (Backend-for-Frontend) pattern: OIDC login as a confidential client, tokens kept server-side, an HttpOnly session cookie for the browser and an API proxy that injects bearer tokens. Errors are RFC 9457 problem+json.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    ...(config.publicUrl ? { servers: [{ url: config.publicUrl }] } : {}),
    tags: [
      { name: 'auth', description: 'Login, callback and logout.' },
      { name: 'sessions', description: "The browser's sessions." },
      { name: 'targets', description: 'The API proxy.' },
      { name: 'operations', description: 'Probes, metrics and this document.' },
    ],
    paths,
    components: {
      securitySchemes: {
        sessionCookie: {
          type: 'apiKey',
          in: 'cookie',
          name: cookieName,
          description: 'HttpOnly session cookie (`__Host-` prefixed when Secure and host-only; `-{clientId}` suffixed for clients other than `default`).',
        },
        adminBearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: "An access token of the client's issuer for the token handler (`aud`, default `urn:ads:platform:token-handler`) carrying the admin role; never an ID token." },
        xsrfHeader: {
          type: 'apiKey',
          in: 'header',
          name: config.csrf.headerName,
          description: `Echo of the readable \`${config.csrf.cookieName}\` cookie, required on state-changing requests.`,
        },
      },
      schemas: {
        Problem: {
          type: 'object',
          description: 'RFC 9457 problem details; `error` is a stable machine-readable code.',
          required: ['type', 'title', 'status', 'error', 'detail'],
          properties: {
            type: { type: 'string' },
            title: { type: 'string' },
            status: { type: 'integer' },
            error: { type: 'string', examples: ['login_required', 'csrf_failed', 'invalid_state', 'idp_unavailable'] },
            detail: { type: 'string' },
          },
        },
        GoError: {
          type: 'object',
          description: "go-token-handler's error body, answered by its routes (/login, /callback, /logout, /userinfo) and its `proxies:` targets; `error` is token-handler's stable code.",
          required: ['code', 'status', 'timestamp'],
          properties: {
            code: { type: 'integer' },
            status: { type: 'string', examples: ['Unauthorized'] },
            message: { type: 'string' },
            timestamp: { type: 'string', format: 'date-time' },
            error: { type: 'string', examples: ['login_required', 'csrf_failed'] },
          },
        },
        Session: {
          type: 'object',
          required: ['authenticated', 'clientId', 'sub', 'expiresAt', 'expiresIn', 'logoutUrl'],
          properties: {
            authenticated: { const: true },
            clientId: { type: 'string' },
            tenant: { type: ['string', 'null'] },
            sub: { type: 'string' },
            name: { type: ['string', 'null'] },
            email: { type: ['string', 'null'] },
            preferredUsername: { type: ['string', 'null'] },
            roles: { type: 'array', items: { type: 'string' } },
            createdAt: { type: 'string', format: 'date-time' },
            expiresAt: { type: 'string', format: 'date-time' },
            idleExpiresAt: { type: 'string', format: 'date-time' },
            expiresIn: { type: 'integer', description: 'Seconds until the session ends.' },
            logoutUrl: { type: 'string', description: 'GET logout URL carrying the CSRF guard, as the browser reaches it through the reverse proxy (X-Forwarded-Prefix, else the client redirect URL path).' },
            handle: { type: 'string', description: 'Opaque name of the session for DELETE /sessions/{handle}.' },
            tenantId: { type: ['string', 'null'], description: 'ADSP: the tenant (as `tenant`).' },
            id: { type: 'string', description: 'ADSP: the user id (as `sub`).' },
            expiry: { type: 'string', format: 'date-time', description: 'ADSP: when the session ends (the earlier of absolute and idle end).' },
            authenticatedBy: { type: 'string', description: 'ADSP: the client that logged the user in (as `clientId`).' },
          },
        },
        AdminSession: {
          type: 'object',
          description: "A session as an administrator sees it (GET /sessions with an admin bearer token): ADSP's fields and ours.",
          required: ['tenantId', 'id', 'roles', 'expiry', 'authenticatedBy', 'clientId', 'sub'],
          properties: {
            tenantId: { type: ['string', 'null'] },
            id: { type: 'string' },
            name: { type: ['string', 'null'] },
            email: { type: ['string', 'null'] },
            roles: { type: 'array', items: { type: 'string' } },
            expiry: { type: 'string', format: 'date-time' },
            authenticatedBy: { type: 'string' },
            clientId: { type: 'string' },
            tenant: { type: ['string', 'null'] },
            sub: { type: 'string' },
            createdAt: { type: 'string', format: 'date-time' },
            lastUsedAt: { type: 'string', format: 'date-time' },
          },
        },
        Readiness: {
          type: 'object',
          required: ['status', 'checks'],
          properties: {
            status: { enum: ['ok', 'degraded', 'fail'] },
            checks: {
              type: 'object',
              properties: {
                store: {
                  type: 'object',
                  properties: { status: { enum: ['ok', 'fail'] }, kind: { type: 'string' }, durationMs: { type: 'number' }, error: { type: 'string' } },
                },
                issuers: {
                  type: 'array',
                  items: {
                    type: 'object',
                    properties: {
                      status: { enum: ['ok', 'fail', 'unregistered'] },
                      clientId: { type: 'string' },
                      issuer: { type: 'string' },
                      durationMs: { type: 'number' },
                      error: { type: 'string' },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
  };
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Serves the document at `${prefix}/openapi.json` (registered under the base path). */
export async function openApiRoute(app: FastifyInstance, opts: { config: Config; current?: () => Config }): Promise<void> {
  // Built again when a configuration reload (src/ops/reload.ts) changed the targets it lists.
  let built: { config: Config; body: string } | undefined;
  app.get('/openapi.json', async (_request, reply) => {
    const config = opts.current?.() ?? opts.config;
    if (built?.config !== config) built = { config, body: JSON.stringify(openApiDocument(config, packageVersion())) };
    return reply.header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-cache').send(built.body);
  });
}
