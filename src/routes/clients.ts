/**
 * Client registration: POST {base}/clients/{clientId} with an administrator's bearer token and the
 * IdP's registration token registers the client at its IdP (dynamic client registration) and keeps
 * the credentials, encrypted, in the session store, where every instance (and every restart) finds them.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ClientConfig } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { OidcError } from '../oidc/errors.ts';
import type { JwksCache } from '../oidc/jwks.ts';
import { registerClient, registrationMetadata, type Registration } from '../oidc/registration.ts';
import type { CredentialSource, RegisteredCredentials } from '../oidc/registry.ts';
import { DEFAULT_CLIENT_ID } from '../session/cookiePolicy.ts';
import type { PayloadCipher } from '../session/payloadCipher.ts';
import type { SessionStore } from '../store/types.ts';
import { sendProblem } from '../http/problem.ts';
import { authorizeAdmin } from './adminAuth.ts';

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

type ClientRequest = { Params: { clientId: string }; Body: unknown };

export async function clientRoutes(app: FastifyInstance, opts: { ctx: AppContext; jwks: JwksCache; vault: RegistrationVault }): Promise<void> {
  const { ctx, jwks, vault } = opts;
  const { registry } = ctx;

  app.post<ClientRequest>('/clients/:clientId', { bodyLimit: 64 * 1024 }, async (request, reply) => {
    reply.header('cache-control', 'no-store');
    const admin = await authorizeAdmin(ctx, jwks, request, reply, request.params.clientId, 'client registration');
    if (!admin) return reply;
    const { client, tenant, claims } = admin;
    if (client.registered !== true) {
      return sendProblem(reply, 409, 'not_registrable', `client "${client.id}" has a configured secret; mark it registered: true in the config file to register it at run time`);
    }
    const registrationToken = (request.body as { registrationToken?: unknown } | undefined)?.registrationToken;
    if (typeof registrationToken !== 'string' || registrationToken.trim() === '' || registrationToken.length > MAX_REGISTRATION_TOKEN_LENGTH) {
      return sendProblem(reply, 400, 'invalid_request', 'the body must be JSON with a registrationToken string (the initial access token from the identity provider)');
    }

    // Every URI the IdP will send users and logout tokens to comes from configuration: a Host header is
    // the caller's to choose, and would register the attacker's site as the client's callback.
    const origin = configuredOrigin(ctx, client);
    if (origin === undefined) {
      request.log.warn({ clientId: client.id, tenant }, 'client registration refused: neither --public_url nor the client callback URL is set');
      return sendProblem(reply, 409, 'public_url_required', `set --public_url (or authCallbackUrl of client "${client.id}") so the URIs registered at the identity provider do not come from the request`);
    }
    let metadata;
    try {
      metadata = await registry.serverMetadata(client.id, tenant);
    } catch {
      return sendProblem(reply, 503, 'idp_unavailable', 'the identity provider cannot be reached; try again shortly');
    }
    const clientMetadata = registrationMetadata({
      clientName: `token-handler ${client.id}${tenant === null ? '' : ` (${tenant})`}`,
      redirectUris: redirectUris(ctx, client, origin),
      postLogoutRedirectUris: client.postLogoutRedirectUrl ? [new URL(client.postLogoutRedirectUrl, origin).href] : [],
      backchannelLogoutUri: backchannelLogoutUri(ctx, client, origin),
      authMethodsSupported: metadata.token_endpoint_auth_methods_supported,
    });
    // The registration this one replaces, to delete at the IdP once the new one is in place.
    const previous = await vault.load(client.id, tenant);
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
    request.log.info({ clientId: client.id, tenant, registeredClientId: registration.clientId, by: claims.sub }, 'client registered');
    if (previous !== undefined && previous.clientId !== registration.clientId) {
      await deleteRegistration(previous, registry.timeoutMs, ctx.config.oidc.allowInsecureIssuer, request.log, { clientId: client.id, tenant });
    }
    return reply.send({ registered: true, clientId: registration.clientId });
  });

  // ADSP's GET /clients/{id}: the client as an administrator sees it (never its secret).
  app.get<ClientRequest>('/clients/:clientId', async (request, reply) => {
    reply.header('cache-control', 'no-store');
    const admin = await authorizeAdmin(ctx, jwks, request, reply, request.params.clientId, 'client lookup');
    if (!admin) return reply;
    const { client, tenant } = admin;
    let clientId: string | null = client.clientId === '' ? null : client.clientId;
    if (client.registered === true) clientId = (await vault.load(client.id, tenant))?.clientId ?? null;
    const origin = configuredOrigin(ctx, client);
    return reply.send({
      id: client.id,
      authCallbackUrl: client.redirectUrl ?? (origin === undefined ? null : redirectUris(ctx, client, origin)[0]),
      successRedirectUrl: client.postLoginRedirectUrl,
      failureRedirectUrl: client.failureRedirectUrl ?? '/',
      clientId,
      ...(tenant !== null && { tenant }),
    });
  });
}

/**
 * Deletes a replaced registration at the IdP (RFC 7592: DELETE its registration_client_uri with its
 * registration access token), as ADSP does. A failure is logged, not fatal: the new registration is in place.
 */
async function deleteRegistration(
  previous: Partial<Registration>,
  timeoutMs: number,
  allowHttp: boolean,
  log: Pick<Logger, 'info' | 'warn'>,
  about: { clientId: string; tenant: string | null },
): Promise<void> {
  const uri = previous.registrationClientUri;
  const token = previous.registrationAccessToken;
  const facts = { ...about, previousClientId: previous.clientId };
  if (uri === undefined || token === undefined) {
    log.warn(facts, 'the replaced registration cannot be deleted at the identity provider (it returned no registration_client_uri)');
    return;
  }
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    log.warn(facts, 'the replaced registration was not deleted: its registration_client_uri is not a URL');
    return;
  }
  if (url.protocol !== 'https:' && !(allowHttp && url.protocol === 'http:')) {
    log.warn(facts, 'the replaced registration was not deleted: its registration_client_uri is not https');
    return;
  }
  try {
    const res = await fetch(url, { method: 'DELETE', headers: { authorization: `Bearer ${token}` }, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    if (res.ok) log.info({ ...facts, status: res.status }, 'deleted the replaced registration at the identity provider');
    else log.warn({ ...facts, status: res.status }, 'the identity provider refused to delete the replaced registration');
  } catch (err) {
    log.warn({ ...facts, reason: (err as Error).message }, 'the replaced registration could not be deleted at the identity provider');
  }
}

/** Our public origin by configuration: --public_url, else the origin of the client's callback URL. */
export function configuredOrigin(ctx: AppContext, client: ClientConfig): string | undefined {
  if (ctx.config.publicUrl) return new URL(ctx.config.publicUrl).origin;
  return client.redirectUrl ? new URL(client.redirectUrl).origin : undefined;
}

/** The callback URLs the IdP must accept for this client: configured, else ours on the configured origin. */
function redirectUris(ctx: AppContext, client: ClientConfig, origin: string): string[] {
  if (client.redirectUrl) return [client.redirectUrl];
  const uris = [`${origin}${ctx.config.basePath}/clients/${client.id}/callback`];
  // The go-token-handler routes log the default client in with /callback.
  if (client.id === DEFAULT_CLIENT_ID && ctx.config.legacyRoutes) uris.push(`${origin}/callback`);
  return uris;
}

/** Our back-channel logout URL on the configured public origin. */
export function backchannelLogoutUri(ctx: AppContext, client: ClientConfig, origin: string): string {
  return `${origin}${ctx.config.basePath}/clients/${client.id}/backchannel-logout`;
}
