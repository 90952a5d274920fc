import type { FastifyInstance } from 'fastify';
import { readFileSync } from 'node:fs';
import type { Config } from '../config/types.ts';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Doc = { [key: string]: Json };

const problem = (description: string): Doc => ({
  description,
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
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
        '302': redirect('To the return_to URL (or the failure redirect URL with `?error=`).'),
        '400': problem('`invalid_state`, `invalid_grant`, `invalid_response` (a response or ID token that failed validation), or the identity provider error code (`access_denied`, ...).'),
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
      summary: 'Log out with a link: needs the `sid` guard from the `logoutUrl` of /sessions (or a same-origin navigation).',
      parameters: [clientIdParam, { name: 'sid', in: 'query', schema: { type: 'string' } }],
      responses: {
        '302': redirect("To the identity provider's end-session endpoint, or the post-logout URL."),
        '403': problem('`csrf_failed`: no valid `sid` guard.'),
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
              schema: { type: 'object', required: ['loggedOut', 'redirectTo'], properties: { loggedOut: { const: true }, redirectTo: { type: 'string' } } },
            },
          },
        },
        '303': redirect("To the identity provider's end-session endpoint, or the post-logout URL."),
        '403': problem('`csrf_failed`: missing or wrong XSRF header, or a foreign Origin.'),
      },
    },
  };
  paths[`${base}/sessions`] = {
    get: {
      tags: tags.sessions,
      operationId: 'sessions',
      summary: 'The sessions of this browser (an empty array when logged out). Never a token.',
      security: [{}, { sessionCookie: [] }],
      responses: {
        '200': {
          description: 'One entry per client the browser is logged in to.',
          content: { 'application/json': { schema: { type: 'array', items: { $ref: '#/components/schemas/Session' } } } },
        },
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
        '200': { description: 'Registered.', content: { 'application/json': { schema: { type: 'object', properties: { registered: { const: true }, clientId: { type: 'string' } } } } } },
        '400': problem('Malformed body.'),
        '401': problem('Missing, invalid or expired bearer token.'),
        '403': problem('The bearer token lacks the admin role.'),
        '409': problem('The client has a configured secret.'),
        '502': problem("The IdP refused the registration (its `error` is passed on)."),
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

  const targetOperation = (summary: string): Doc => ({
    tags: tags.targets,
    summary,
    security: [{ sessionCookie: [] }, {}],
    parameters: [{ name: 'path', in: 'path', required: true, description: 'The rest of the path, appended below the target URL.', schema: { type: 'string' } }],
    responses: {
      default: { description: "The upstream's response, streamed (hop-by-hop headers and, unless allowed, Set-Cookie removed)." },
      '401': problem('`login_required`: the target needs a user session and there is none (or it ended).'),
      '403': problem('`csrf_failed`: a state-changing request without the XSRF header.'),
      '502': problem('The upstream could not be reached or failed.'),
      '504': problem('The upstream did not answer in time.'),
    },
  });
  const proxied = (summary: string): Doc => {
    const op: Doc = {};
    for (const method of ['get', 'post', 'put', 'patch', 'delete', 'options', 'head']) op[method] = targetOperation(summary);
    return op;
  };
  paths[`${base}/targets/{targetId}/{path}`] = {
    parameters: [{ name: 'targetId', in: 'path', required: true, schema: { type: 'string' } }],
    ...proxied('Proxy to a configured upstream API, with the session\'s access token as `Authorization: Bearer`.'),
  };
  for (const target of config.targets) {
    if (target.mountPath === `${base}/targets/${target.id}`) continue;
    paths[`${target.mountPath}/{path}`] = proxied(`Proxy to target \`${target.id}\`.`);
  }

  if (config.legacyRoutes) {
    const legacy = (summary: string, responses: Doc): Doc => ({ get: { tags: tags.auth, summary, deprecated: true, responses } });
    paths['/login'] = legacy('go-token-handler compatible login of the `default` client.', { '302': redirect('To the identity provider.') });
    paths['/callback'] = legacy('go-token-handler compatible callback.', { '302': redirect('To the post-login URL.') });
    paths['/logout'] = legacy('go-token-handler compatible logout.', { '302': redirect('To the end-session endpoint or post-logout URL.') });
    paths['/userinfo'] = legacy("The identity provider's userinfo for the session.", {
      '200': { description: 'Userinfo claims.', content: { 'application/json': { schema: { type: 'object' } } } },
      '401': problem('`login_required`.'),
    });
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
      summary: 'Readiness: the session store answers and every issuer is reachable.',
      responses: {
        '200': { description: 'Ready.', content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } } },
        '503': { description: 'A check failed (or the service is shutting down).', content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } } },
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
        adminBearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: "An access token of the client's issuer carrying the admin role." },
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
            logoutUrl: { type: 'string', description: 'GET logout URL carrying the CSRF guard.' },
          },
        },
        Readiness: {
          type: 'object',
          required: ['status', 'checks'],
          properties: {
            status: { enum: ['ok', 'fail'] },
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
export async function openApiRoute(app: FastifyInstance, opts: { config: Config }): Promise<void> {
  const body = JSON.stringify(openApiDocument(opts.config, packageVersion()));
  app.get('/openapi.json', async (_request, reply) => reply.header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-cache').send(body));
}
