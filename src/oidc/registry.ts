import { isDeepStrictEqual } from 'node:util';
import { decodeJwt, decodeProtectedHeader, importPKCS8 } from 'jose';
import * as oidc from 'openid-client';
import type { ClientConfig, ClientKey } from '../config/types.ts';
import { isLoopbackHttpUrl } from '../config/production.ts';
import { OidcError, toOidcError } from './errors.ts';
import type { Revalidation } from './flows.ts';
import { discoveredIssuerMatches, sameIssuer, TENANT_ID_PLACEHOLDER } from './issuer.ts';
import { captureFetch } from './tokenResponse.ts';
import { traced } from '../ops/tracing.ts';

/** An unknown signing key makes the registry fetch an issuer's keys again, at most this often per client. */
const KEY_REFETCH_INTERVAL_MS = 1000;
/** Configurations kept per tenant of a multi-tenant issuer (any directory may log in with `*`). */
const MAX_TENANT_CONFIGURATIONS = 1000;
/** Reads of a registration while announcements keep arriving during the read, before giving up. */
const MAX_REGISTRATION_READS = 5;

export interface RegistryOptions {
  timeoutMs: number;
  /** Development only: the embedded demo IdP and tests serve http. */
  allowInsecureIssuer: boolean;
  /**
   * Where credentials obtained by dynamic registration are kept (the session store, encrypted). Asked when
   * a client configured `registered: true` is first used and has no credentials yet, so an instance picks
   * up a registration another instance made.
   */
  credentials?: CredentialSource;
}

/** Credentials a client got from dynamic client registration. */
export interface RegisteredCredentials {
  /** The issuer the client was registered at: a registration at another issuer is ignored. */
  issuer: string;
  clientId: string;
  clientSecret: string;
}

export interface CredentialSource {
  load(id: string, tenant: string | null): Promise<RegisteredCredentials | undefined>;
}

export interface IssuerStatus {
  clientId: string;
  issuer: string;
  ready: boolean;
  error?: string;
  /** The tenant of a tenant-scoped client. */
  tenant?: string;
  /** Whether the client has credentials (configured, or registered at run time). */
  registered?: boolean;
}

/** One (client, tenant) pair: what the IdP knows as one OAuth client. */
interface Variant {
  id: string;
  tenant: string | null;
  /** As configured (no secret for a `registered: true` client). */
  configured: ClientConfig;
  /** As used: with registered credentials applied when there are some. */
  client: ClientConfig;
  configuration?: oidc.Configuration;
  pending?: Promise<oidc.Configuration>;
  /** Bumped when the credentials change, so a discovery started with the old ones is not kept. */
  generation: number;
  lastError?: string;
  /** Builds a configuration for this client from issuer metadata (after discovery). */
  build?: (metadata: oidc.ServerMetadata) => oidc.Configuration;
  /** A multi-tenant issuer's configurations, per concrete issuer (one per directory seen). */
  byIssuer: Map<string, oidc.Configuration>;
  /** When the issuer's keys were last fetched again because a token named an unknown key. */
  lastKeyRefetch: number;
}

interface Entry {
  /** The configured client (for a multi-tenant client: the shared defaults). */
  base: ClientConfig;
  variants: Map<string | null, Variant>;
}

/**
 * Holds each configured client and its openid-client Configuration per tenant, discovered lazily and once
 * (concurrent callers share the discovery); a failed discovery is not cached, so the next request retries.
 *
 * A client is one of: not tenant-scoped (one variant, tenant null); scoped to one `tenant`; or serving
 * several `tenants`, each with its own issuer and credentials. Configurations are keyed by (client, tenant).
 */
export class OidcRegistry {
  readonly #entries = new Map<string, Entry>();
  readonly #options: RegistryOptions;
  /** Issuer metadata discovered without client credentials (admin and logout token validation). */
  readonly #metadata = new Map<string, Promise<oidc.ServerMetadata>>();

  constructor(clients: ClientConfig[], options: RegistryOptions) {
    this.#options = options;
    for (const client of clients) this.#entries.set(client.id, newEntry(client));
  }

  /**
   * Takes a new set of clients (a configuration reload): a client configured exactly as before keeps its
   * discovered configuration and registered credentials; a changed one starts afresh (discovered again on
   * its next use); a removed one is forgotten. Returns the ids of the clients added, changed and removed.
   */
  replaceClients(clients: readonly ClientConfig[]): { added: string[]; changed: string[]; removed: string[] } {
    const added: string[] = [];
    const changed: string[] = [];
    const next = new Map<string, Entry>();
    for (const client of clients) {
      const current = this.#entries.get(client.id);
      if (current && isDeepStrictEqual(current.base, client)) next.set(client.id, current);
      else {
        (current ? changed : added).push(client.id);
        next.set(client.id, newEntry(client));
      }
    }
    const removed = [...this.#entries.keys()].filter((id) => !next.has(id));
    this.#entries.clear();
    for (const [id, entry] of next) this.#entries.set(id, entry);
    return { added, changed, removed };
  }

  /** The client as configured; for a client with one variant, with its registered credentials applied. */
  client(id: string): ClientConfig | undefined {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    if (entry.base.tenants) return entry.base;
    return entry.variants.values().next().value?.client ?? entry.base;
  }

  clients(): ClientConfig[] {
    return [...this.#entries.keys()].map((id) => this.client(id)!);
  }

  /** The tenants a client serves, or null for a client that is not tenant-scoped. */
  tenants(id: string): string[] | null {
    const entry = this.#entries.get(id);
    if (!entry) return null;
    const tenants = [...entry.variants.keys()].filter((t): t is string => t !== null);
    return tenants.length === 0 ? null : tenants;
  }

  /** The effective settings of a client for a tenant (null: a client that is not tenant-scoped). */
  variant(id: string, tenant: string | null): ClientConfig | undefined {
    return this.#entries.get(id)?.variants.get(tenant)?.client;
  }

  /** Every (client, tenant) pair with its effective settings. */
  variants(): { id: string; tenant: string | null; client: ClientConfig }[] {
    return [...this.#entries.values()].flatMap((entry) => [...entry.variants.values()].map((v) => ({ id: v.id, tenant: v.tenant, client: v.client })));
  }

  /** Applies credentials (after dynamic registration); the next use discovers again with them. */
  setCredentials(id: string, clientId: string, clientSecret: string, tenant?: string | null): void {
    const variant = this.#variant(id, tenant);
    variant.client = { ...variant.configured, clientId, clientSecret };
    this.#reset(variant);
  }

  /**
   * Forgets the registered credentials of a `registered: true` client (another instance registered it
   * again): the next use reads them from the credential source. Configured credentials are kept.
   */
  forgetRegistration(id: string, tenant: string | null): void {
    const variant = this.#entries.get(id)?.variants.get(tenant);
    if (!variant || hasCredentials(variant.configured)) return;
    variant.client = variant.configured;
    this.#reset(variant);
  }

  /** Reads the registered credentials of every `registered: true` client; returns how many were found. */
  async loadRegistrations(): Promise<number> {
    let found = 0;
    for (const entry of this.#entries.values()) {
      for (const variant of entry.variants.values()) {
        if (hasCredentials(variant.client)) continue;
        if (await this.#applyRegistration(variant)) found += 1;
      }
    }
    return found;
  }

  /**
   * The openid-client Configuration of a client for a tenant. `tenant` may be left out for a client with
   * a single variant (not tenant-scoped, or scoped to one tenant).
   */
  async configuration(id: string, tenant?: string | null): Promise<oidc.Configuration> {
    const variant = this.#variant(id, tenant);
    if (variant.configuration) return variant.configuration;
    variant.pending ??= this.#discover(variant).finally(() => {
      variant.pending = undefined;
    });
    return variant.pending;
  }

  /**
   * The configuration for a session's refresh and userinfo: the client's, or for a multi-tenant issuer the
   * one expecting the session's own (tenant-specific) issuer, taken from its validated ID token.
   */
  async sessionConfiguration(id: string, tenant: string | null, issuer: string): Promise<oidc.Configuration> {
    const base = await this.configuration(id, tenant);
    const template = base.serverMetadata().issuer;
    if (!template.includes(TENANT_ID_PLACEHOLDER) || issuer === template) return base;
    return this.#tenantConfiguration(this.#variant(id, tenant), issuer) ?? base;
  }

  /**
   * How the grants of a client validate a token response again (see flows.ts `Revalidation`): an unknown
   * signing key fetches the issuer's keys again at once (then at most once a second, so tokens naming random
   * keys cannot make us hammer the IdP), and a multi-tenant issuer's token is checked against its tenant's
   * issuer, its `tid` against the client's `allowedTids`.
   */
  revalidation(id: string, tenant: string | null): Revalidation {
    return {
      configurationFor: async (idToken) => {
        const variant = this.#variant(id, tenant);
        const base = await this.configuration(id, tenant);
        const template = base.serverMetadata().issuer;
        const { kid, tid } = unverifiedFacts(idToken);
        let current = base;
        const keyKnown = (config: oidc.Configuration) => kid !== undefined && oidc.getJwksCache(config)?.jwks?.keys.some((key) => key.kid === kid) === true;
        if (template.includes(TENANT_ID_PLACEHOLDER)) {
          if (tid === undefined) throw new OidcError('invalid_response', 'the ID token of a multi-tenant issuer carries no tid');
          checkTid(variant.client, tid);
          const issuer = template.replaceAll(TENANT_ID_PLACEHOLDER, tid);
          const existing = variant.byIssuer.get(issuer);
          // A tenant seen for the first time gets a configuration of its own, with its keys fetched anew; a
          // known one's configuration is tried as it is while it has the key.
          if (!existing) return this.#tenantConfiguration(variant, issuer);
          if (keyKnown(existing)) return existing;
          current = existing;
        } else if (keyKnown(base)) {
          return undefined;
        }
        const now = Date.now();
        if (now - variant.lastKeyRefetch < KEY_REFETCH_INTERVAL_MS || !variant.build) return current === base ? undefined : current;
        variant.lastKeyRefetch = now;
        // A new configuration has an empty key cache: validating with it fetches the issuer's keys again.
        const fresh = variant.build(current.serverMetadata());
        if (current === base) {
          if (variant.configuration === base) variant.configuration = fresh;
        } else variant.byIssuer.set(fresh.serverMetadata().issuer, fresh);
        return fresh;
      },
      checkClaims: (claims) => {
        const variant = this.#variant(id, tenant);
        const template = variant.configuration?.serverMetadata().issuer;
        if (template === undefined || !template.includes(TENANT_ID_PLACEHOLDER)) return;
        if (typeof claims.tid !== 'string') throw new OidcError('invalid_response', 'the ID token of a multi-tenant issuer carries no tid');
        checkTid(variant.client, claims.tid);
      },
    };
  }

  /**
   * The issuer of a client as its discovery document spells it (a trailing slash and all): what `iss`
   * claims are compared with. For a multi-tenant issuer, the template with `{tenantid}`.
   */
  async discoveredIssuer(id: string, tenant: string | null): Promise<string> {
    return (await this.serverMetadata(id, tenant)).issuer;
  }

  #tenantConfiguration(variant: Variant, issuer: string): oidc.Configuration | undefined {
    const existing = variant.byIssuer.get(issuer);
    if (existing) return existing;
    if (!variant.build || !variant.configuration) return undefined;
    const configuration = variant.build({ ...plain(variant.configuration.serverMetadata()), issuer });
    if (variant.byIssuer.size >= MAX_TENANT_CONFIGURATIONS) variant.byIssuer.delete(variant.byIssuer.keys().next().value!);
    variant.byIssuer.set(issuer, configuration);
    return configuration;
  }

  /**
   * The issuer's metadata for a client and tenant, discovered without client credentials so it is
   * available before the client is registered (to validate admin and logout tokens against its JWKS).
   */
  async serverMetadata(id: string, tenant: string | null): Promise<oidc.ServerMetadata> {
    const variant = this.#variant(id, tenant);
    if (variant.configuration) return variant.configuration.serverMetadata();
    const issuer = variant.client.issuer;
    let pending = this.#metadata.get(issuer);
    if (!pending) {
      pending = this.#discoverIssuer(issuer);
      this.#metadata.set(issuer, pending);
      pending.catch(() => this.#metadata.delete(issuer));
    }
    return pending;
  }

  /** Request options for calls made outside a client Configuration (registration). */
  get requestOptions(): { execute: ((config: oidc.Configuration) => void)[]; timeout: number } {
    return this.requestOptionsFor(undefined);
  }

  /**
   * Request options for one issuer: http is allowed with --oidc_allow_insecure_issuer, and for an issuer on a
   * loopback host (a development IdP; the configuration refused both in production).
   */
  requestOptionsFor(issuer: string | undefined): { execute: ((config: oidc.Configuration) => void)[]; timeout: number } {
    const insecure = this.#options.allowInsecureIssuer || (issuer !== undefined && isLoopbackHttpUrl(issuer));
    return {
      execute: insecure ? [oidc.allowInsecureRequests] : [],
      // openid-client counts seconds but takes fractions (AbortSignal.timeout(timeout * 1000)): exactly --oidc_timeout.
      timeout: this.#options.timeoutMs / 1000,
    };
  }

  get timeoutMs(): number {
    return this.#options.timeoutMs;
  }

  /** Discovers every client's issuer (per tenant); used by /readyz. Never throws. */
  async status(): Promise<IssuerStatus[]> {
    const variants = [...this.#entries.values()].flatMap((entry) => [...entry.variants.values()]);
    return Promise.all(
      variants.map(async (variant): Promise<IssuerStatus> => {
        const base = {
          clientId: variant.id,
          issuer: variant.client.issuer,
          ...(variant.tenant !== null && { tenant: variant.tenant }),
        };
        try {
          await this.configuration(variant.id, variant.tenant);
          return { ...base, ready: true, registered: true };
        } catch (err) {
          return { ...base, ready: false, registered: hasCredentials(variant.client), error: (err as Error).message };
        }
      }),
    );
  }

  #variant(id: string, tenant: string | null | undefined): Variant {
    const entry = this.#entries.get(id);
    if (!entry) throw new Error(`unknown client ${id}`);
    if (tenant === undefined) {
      if (entry.variants.size !== 1) throw new Error(`client ${id} serves several tenants: name the tenant`);
      return entry.variants.values().next().value!;
    }
    const variant = entry.variants.get(tenant);
    if (!variant) throw new Error(tenant === null ? `client ${id} is tenant-scoped` : `client ${id} does not serve tenant ${tenant}`);
    return variant;
  }

  #reset(variant: Variant): void {
    variant.generation += 1;
    variant.configuration = undefined;
    variant.build = undefined;
    variant.byIssuer.clear();
    variant.pending = undefined;
    variant.lastError = undefined;
  }

  /**
   * Applies stored registered credentials when there are some for the client's current issuer. When a
   * registration is announced (or made here) while they are being read, what was read may be the old
   * registration or none: they are read again, so a request that raced the announcement is not answered
   * "not registered" (it was, 1 time in 20, on a second instance).
   */
  async #applyRegistration(variant: Variant): Promise<boolean> {
    const source = this.#options.credentials;
    if (!source) return false;
    for (let attempt = 0; attempt < MAX_REGISTRATION_READS; attempt += 1) {
      const generation = variant.generation;
      const registered = await source.load(variant.id, variant.tenant);
      if (hasCredentials(variant.client)) return true;
      if (variant.generation !== generation) continue;
      // A registration at another issuer (the configuration changed since) is of no use.
      // Compared as openid-client's discovery compares them: the registration stored the issuer as discovery
      // spells it (Auth0's trailing slash), the configuration may not.
      if (!registered || !sameIssuer(registered.issuer, variant.configured.issuer)) return false;
      variant.client = { ...variant.configured, clientId: registered.clientId, clientSecret: registered.clientSecret };
      return true;
    }
    return hasCredentials(variant.client);
  }

  async #discover(variant: Variant): Promise<oidc.Configuration> {
    if (!hasCredentials(variant.client)) {
      let found: boolean;
      try {
        found = await this.#applyRegistration(variant);
      } catch (err) {
        throw new OidcError('unavailable', `the registration of client "${variant.id}" could not be read: ${(err as Error).message}`, { cause: err });
      }
      if (!found) {
        throw new OidcError('rejected', `client "${variant.id}"${variant.tenant === null ? '' : ` (tenant ${variant.tenant})`} is not registered yet (POST /clients/${variant.id})`);
      }
    }
    const generation = variant.generation;
    const { client } = variant;
    try {
      const metadata = await this.#discoverMetadata(client.issuer);
      if (metadata.issuer.includes(TENANT_ID_PLACEHOLDER) && client.allowedTids === undefined) {
        throw new OidcError(
          'invalid_response',
          `${client.issuer} is a multi-tenant issuer (${metadata.issuer}): set allowedTids (--oidc_allowed_tids) to the directory ids whose users may log in, or * for any`,
        );
      }
      const build = await this.#builder(client, metadata);
      const configured = build(metadata);
      // Credentials changed while discovering: hand this caller the result, but do not keep it.
      if (variant.generation === generation) {
        variant.configuration = configured;
        variant.build = build;
        variant.lastError = undefined;
      }
      return configured;
    } catch (err) {
      const error = toOidcError(err, `discovery of ${client.issuer}`);
      variant.lastError = error.message;
      throw error.kind === 'unavailable' || error.kind === 'invalid_response' ? new OidcError('unavailable', error.message, { cause: err }) : error;
    }
  }

  /**
   * How this client's configurations are made: client authentication (private_key_jwt with the configured
   * key, else the secret by the method the IdP supports), http for development issuers, the issuer's
   * signature on ID tokens checked, the OIDC timeout, and the fetch that keeps token responses (tokenResponse.ts).
   */
  async #builder(client: ClientConfig, metadata: oidc.ServerMetadata): Promise<(metadata: oidc.ServerMetadata) => oidc.Configuration> {
    const { execute, timeout } = this.requestOptionsFor(client.issuer);
    const supported = metadata.token_endpoint_auth_methods_supported;
    let auth: oidc.ClientAuth;
    if (client.clientKey) {
      if (supported && !supported.includes('private_key_jwt')) {
        throw new OidcError('invalid_response', `${client.issuer} does not accept private_key_jwt client authentication (it offers ${supported.join(', ')})`);
      }
      // A multi-tenant issuer is a template: no server takes it for its name, the token endpoint is the audience.
      auth = await privateKeyJwt(client.clientKey, metadata.issuer.includes(TENANT_ID_PLACEHOLDER) ? metadata.token_endpoint : undefined);
    } else {
      const secret = client.clientSecret!;
      auth = !supported || supported.includes('client_secret_basic') ? oidc.ClientSecretBasic(secret) : oidc.ClientSecretPost(secret);
    }
    const clientMetadata = client.clientSecret === undefined ? {} : { client_secret: client.clientSecret };
    return (issuerMetadata) => {
      const configuration = new oidc.Configuration(plain(issuerMetadata), client.clientId, clientMetadata, auth);
      for (const fn of execute) fn(configuration);
      // openid-client trusts TLS for ID tokens from the token endpoint (OIDC Core 3.1.3.7 step 6) and skips
      // their signature; we check it against the issuer's JWKS as well, so neither a token endpoint answering
      // in the issuer's name (DNS, a mis-set http issuer, a TLS-terminating middlebox) nor a bug there can
      // hand us an identity the issuer never signed.
      oidc.enableNonRepudiationChecks(configuration);
      configuration.timeout = timeout;
      configuration[oidc.customFetch] = captureFetch;
      return configuration;
    };
  }

  /**
   * Discovery with openid-client's issuer check, except for a multi-tenant issuer (Entra ID's
   * `/common/v2.0`, whose document names the template `.../{tenantid}/v2.0`): its document is read from
   * its well-known URL, and accepted only when it names a template on the configured issuer's origin.
   */
  async #discoverMetadata(issuer: string): Promise<oidc.ServerMetadata> {
    const { execute, timeout } = this.requestOptionsFor(issuer);
    const discover = async (url: URL) =>
      (await traced('oidc discovery', () => ({ 'server.address': url.host }), () => oidc.discovery(url, 'token-handler', undefined, oidc.None(), { execute, timeout }))).serverMetadata();
    try {
      const metadata = await discover(new URL(issuer));
      return metadata;
    } catch (err) {
      const published = (err as { cause?: { body?: { issuer?: unknown } } }).cause?.body?.issuer;
      if (typeof published !== 'string' || !published.includes(TENANT_ID_PLACEHOLDER) || !discoveredIssuerMatches(published, issuer)) throw err;
      const metadata = await discover(new URL(`${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`));
      if (metadata.issuer !== published) throw err;
      return metadata;
    }
  }

  async #discoverIssuer(issuer: string): Promise<oidc.ServerMetadata> {
    try {
      return await this.#discoverMetadata(issuer);
    } catch (err) {
      const error = toOidcError(err, `discovery of ${issuer}`);
      throw new OidcError('unavailable', error.message, { cause: err });
    }
  }
}

/** openid-client's private_key_jwt with the configured key; Entra ID identifies it by certificate thumbprint. */
async function privateKeyJwt(key: ClientKey, audience: string | undefined): Promise<oidc.ClientAuth> {
  const cryptoKey = await importPKCS8(key.pkcs8, key.alg);
  const certificate = key.x5t === undefined ? {} : { x5t: key.x5t, 'x5t#S256': key.x5tS256 };
  return oidc.PrivateKeyJwt(
    { key: cryptoKey, kid: key.kid },
    {
      [oidc.modifyAssertion]: (header, payload) => {
        Object.assign(header, certificate);
        if (audience !== undefined) payload.aud = audience;
      },
    },
  );
}

/** Whether a client has configured credentials (a secret or a private key), or awaits registration. */
export function hasCredentials(client: Pick<ClientConfig, 'clientSecret' | 'clientKey'>): boolean {
  return client.clientSecret !== undefined || client.clientKey !== undefined;
}

/** Metadata without the helper methods `serverMetadata()` adds (a Configuration clones what it is given). */
function plain(metadata: oidc.ServerMetadata): oidc.ServerMetadata {
  return Object.fromEntries(Object.entries(metadata).filter(([, value]) => typeof value !== 'function')) as oidc.ServerMetadata;
}

/** The `kid` and `tid` of a token, unverified: they only pick which keys and issuer verify it. */
function unverifiedFacts(token: string): { kid: string | undefined; tid: string | undefined } {
  try {
    const { kid } = decodeProtectedHeader(token);
    const { tid } = decodeJwt(token);
    return { kid, tid: typeof tid === 'string' && /^[A-Za-z0-9-]{1,64}$/.test(tid) ? tid : undefined };
  } catch {
    return { kid: undefined, tid: undefined };
  }
}

function checkTid(client: ClientConfig, tid: string): void {
  const allowed = client.allowedTids ?? [];
  if (allowed.includes('*') || allowed.includes(tid)) return;
  throw new OidcError('invalid_response', `users of directory ${tid} may not log in to client "${client.id}" (allowedTids)`, { error: 'tenant_not_allowed' });
}

function newEntry(client: ClientConfig): Entry {
  const variants = new Map<string | null, Variant>();
  const add = (tenant: string | null, configured: ClientConfig) =>
    variants.set(tenant, { id: client.id, tenant, configured, client: configured, generation: 0, byIssuer: new Map(), lastKeyRefetch: 0 });
  if (client.tenants) for (const [tenant, configured] of Object.entries(client.tenants)) add(tenant, configured);
  else add(client.tenant ?? null, client);
  return { base: client, variants };
}
