/**
 * Client registration: POST {base}/clients/{clientId} with an administrator's bearer token and the
 * IdP's registration token registers the client at its IdP (dynamic client registration) and keeps
 * the credentials, encrypted, in the session store, where every instance (and every restart) finds them.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { ClientConfig } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { verifyAdminToken } from '../oidc/adminToken.ts';
import { OidcError } from '../oidc/errors.ts';
import type { JwksCache } from '../oidc/jwks.ts';
import { registerClient, registrationMetadata, type Registration } from '../oidc/registration.ts';
import type { CredentialSource, RegisteredCredentials } from '../oidc/registry.ts';
import { DEFAULT_CLIENT_ID } from '../session/cookiePolicy.ts';
import type { PayloadCipher } from '../session/payloadCipher.ts';
import type { SessionStore } from '../store/types.ts';
import { lookupClient } from './clientLookup.ts';
import { sendProblem } from './problem.ts';
import { header, requestOrigin } from './requestInfo.ts';

/** Invalidation messages about registrations travel on the session invalidation channel with this prefix. */
const INVALIDATION_PREFIX = 'th-client-registration:';
const MAX_REGISTRATION_TOKEN_LENGTH = 16 * 1024;

/**
 * Registered credentials in the store, sealed with the session database key (AES-256-GCM, the store key
 * as additional data so a sealed registration copied to another client does not open).
 * Store key: the client id, or `<client id>@<tenant>` (client ids never contain `@`).
 */
export class RegistrationVault implements CredentialSource {
  readonly #store: SessionStore;
  readonly #cipher: PayloadCipher;
  readonly #log: Pick<Logger, 'warn'>;

  constructor(store: SessionStore, cipher: PayloadCipher, log: Pick<Logger, 'warn'>) {
    this.#store = store;
    this.#cipher = cipher;
    this.#log = log;
  }

  static key(id: string, tenant: string | null): string {
    return tenant === null ? id : `${id}@${tenant}`;
  }

  async save(id: string, tenant: string | null, registration: Registration): Promise<void> {
    const key = RegistrationVault.key(id, tenant);
    await this.#store.putClientRegistration(key, this.#cipher.encrypt(Buffer.from(JSON.stringify(registration)), aad(key)));
    // Other instances forget the credentials they hold and read these on next use.
    await this.#store.publishInvalidation([`${INVALIDATION_PREFIX}${key}`]).catch((err: unknown) => {
      this.#log.warn({ reason: (err as Error).message }, 'could not tell other instances about a client registration');
    });
  }

  async load(id: string, tenant: string | null): Promise<(RegisteredCredentials & Partial<Registration>) | undefined> {
    const key = RegistrationVault.key(id, tenant);
    const sealed = await this.#store.getClientRegistration(key);
    if (sealed === undefined) return undefined;
    try {
      const registration = JSON.parse(this.#cipher.decrypt(sealed, aad(key)).plaintext.toString('utf8')) as Registration;
      if (typeof registration.clientId !== 'string' || typeof registration.clientSecret !== 'string' || typeof registration.issuer !== 'string') return undefined;
      return registration;
    } catch (err) {
      // Sealed with a key no longer configured (SESSION_DB_KEY changed without SESSION_OLD_DB_KEY): register again.
      this.#log.warn({ clientId: id, tenant, reason: (err as Error).message }, 'a stored client registration could not be decrypted; register the client again');
      return undefined;
    }
  }

  /** The (client, tenant) an invalidation message is about, or undefined for a session invalidation. */
  static parseInvalidation(message: string): { id: string; tenant: string | null } | undefined {
    if (!message.startsWith(INVALIDATION_PREFIX)) return undefined;
    const key = message.slice(INVALIDATION_PREFIX.length);
    const at = key.indexOf('@');
    return at < 0 ? { id: key, tenant: null } : { id: key.slice(0, at), tenant: key.slice(at + 1) };
  }
}

function aad(key: string): string {
  return `client-registration:${key}`;
}

type RegisterRequest = { Params: { clientId: string }; Body: unknown };

export async function clientRoutes(app: FastifyInstance, opts: { ctx: AppContext; jwks: JwksCache; vault: RegistrationVault }): Promise<void> {
  const { ctx, jwks, vault } = opts;
  const { registry, config } = ctx;

  app.post<RegisterRequest>('/clients/:clientId', { bodyLimit: 64 * 1024 }, async (request, reply) => {
    reply.header('cache-control', 'no-store');
    const found = lookupClient(ctx, request, reply, request.params.clientId);
    if (!found) return reply;
    const { client, tenant } = found;

    const token = bearerToken(request);
    if (token === undefined) {
      return unauthorized(reply, 'invalid_request', 'send the administrator access token as Authorization: Bearer <token>');
    }
    let metadata;
    try {
      metadata = await registry.serverMetadata(client.id, tenant);
    } catch (err) {
      request.log.warn({ clientId: client.id, tenant, reason: (err as Error).message }, 'issuer discovery failed at registration');
      return sendProblem(reply, 503, 'idp_unavailable', 'the identity provider cannot be reached; try again shortly');
    }
    if (metadata.jwks_uri === undefined) {
      return sendProblem(reply, 502, 'idp_misconfigured', 'the issuer publishes no jwks_uri, so the bearer token cannot be checked');
    }
    const check = await verifyAdminToken(token, { issuer: client.issuer, keys: jwks.get(metadata.jwks_uri), policy: client.admin });
    if (!check.ok) {
      request.log.warn({ clientId: client.id, tenant, error: check.error, detail: check.detail }, 'client registration refused');
      if (check.status === 401) return unauthorized(reply, 'invalid_token', check.detail);
      if (check.status === 403) {
        reply.header('www-authenticate', 'Bearer error="insufficient_scope"');
        return sendProblem(reply, 403, check.error, check.detail);
      }
      return sendProblem(reply, check.status, check.error, check.detail);
    }
    if (client.registered !== true) {
      return sendProblem(reply, 409, 'not_registrable', `client "${client.id}" has a configured secret; mark it registered: true in the config file to register it at run time`);
    }
    const registrationToken = (request.body as { registrationToken?: unknown } | undefined)?.registrationToken;
    if (typeof registrationToken !== 'string' || registrationToken.trim() === '' || registrationToken.length > MAX_REGISTRATION_TOKEN_LENGTH) {
      return sendProblem(reply, 400, 'invalid_request', 'the body must be JSON with a registrationToken string (the initial access token from the identity provider)');
    }

    const origin = requestOrigin(request, config);
    const clientMetadata = registrationMetadata({
      clientName: `token-handler ${client.id}${tenant === null ? '' : ` (${tenant})`}`,
      redirectUris: redirectUris(ctx, client, origin),
      postLogoutRedirectUris: client.postLogoutRedirectUrl ? [new URL(client.postLogoutRedirectUrl, origin).href] : [],
      backchannelLogoutUri: backchannelLogoutUri(ctx, client, origin),
      authMethodsSupported: metadata.token_endpoint_auth_methods_supported,
    });
    let registration: Registration;
    try {
      registration = await registerClient(client.issuer, clientMetadata, registrationToken.trim(), registry.requestOptions);
    } catch (err) {
      const e = err instanceof OidcError ? err : new OidcError('unavailable', String(err));
      request.log.warn({ clientId: client.id, tenant, kind: e.kind, idpError: e.error, reason: e.message }, 'the identity provider refused the client registration');
      if (e.kind === 'unavailable') return sendProblem(reply, 503, 'idp_unavailable', 'the identity provider cannot be reached; try again shortly');
      const idpError = e.error !== undefined && /^[\w.-]{1,64}$/.test(e.error) ? e.error : 'registration_failed';
      return sendProblem(reply, 502, idpError, `the identity provider refused the registration (${idpError})`, {
        ...(e.errorDescription !== undefined && { idpErrorDescription: e.errorDescription.slice(0, 300) }),
      });
    }
    await vault.save(client.id, tenant, registration);
    registry.setCredentials(client.id, registration.clientId, registration.clientSecret, tenant);
    request.log.info({ clientId: client.id, tenant, registeredClientId: registration.clientId, by: check.claims.sub }, 'client registered');
    return reply.send({ registered: true, clientId: registration.clientId });
  });
}

/** The callback URLs the IdP must accept for this client: configured, else ours from the request origin. */
function redirectUris(ctx: AppContext, client: ClientConfig, origin: string): string[] {
  if (client.redirectUrl) return [client.redirectUrl];
  const uris = [`${origin}${ctx.config.basePath}/clients/${client.id}/callback`];
  // The go-token-handler routes log the default client in with /callback.
  if (client.id === DEFAULT_CLIENT_ID && ctx.config.legacyRoutes) uris.push(`${origin}/callback`);
  return uris;
}

/** Our back-channel logout URL on the public origin (the callback URL's origin when it is configured). */
export function backchannelLogoutUri(ctx: AppContext, client: ClientConfig, requestOriginValue: string): string {
  const origin = ctx.config.publicUrl ? new URL(ctx.config.publicUrl).origin : client.redirectUrl ? new URL(client.redirectUrl).origin : requestOriginValue;
  return `${origin}${ctx.config.basePath}/clients/${client.id}/backchannel-logout`;
}

function bearerToken(request: FastifyRequest): string | undefined {
  const value = header(request, 'authorization');
  const match = value === undefined ? null : /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)$/i.exec(value.trim());
  return match?.[1];
}

function unauthorized(reply: FastifyReply, error: 'invalid_request' | 'invalid_token', detail: string): FastifyReply {
  reply.header('www-authenticate', error === 'invalid_token' ? `Bearer error="invalid_token"` : 'Bearer');
  return sendProblem(reply, 401, error, detail);
}
