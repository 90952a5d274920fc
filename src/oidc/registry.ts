import * as oidc from 'openid-client';
import type { ClientConfig } from '../config/types.ts';
import { OidcError, toOidcError } from './errors.ts';

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
    for (const client of clients) {
      const variants = new Map<string | null, Variant>();
      const add = (tenant: string | null, configured: ClientConfig) =>
        variants.set(tenant, { id: client.id, tenant, configured, client: configured, generation: 0 });
      if (client.tenants) for (const [tenant, configured] of Object.entries(client.tenants)) add(tenant, configured);
      else add(client.tenant ?? null, client);
      this.#entries.set(client.id, { base: client, variants });
    }
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
    if (!variant || variant.configured.clientSecret !== undefined) return;
    variant.client = variant.configured;
    this.#reset(variant);
  }

  /** Reads the registered credentials of every `registered: true` client; returns how many were found. */
  async loadRegistrations(): Promise<number> {
    let found = 0;
    for (const entry of this.#entries.values()) {
      for (const variant of entry.variants.values()) {
        if (variant.client.clientSecret !== undefined) continue;
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
    return {
      execute: this.#options.allowInsecureIssuer ? [oidc.allowInsecureRequests] : [],
      timeout: Math.max(1, Math.ceil(this.#options.timeoutMs / 1000)),
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
          return { ...base, ready: false, registered: variant.client.clientSecret !== undefined, error: (err as Error).message };
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
    variant.pending = undefined;
    variant.lastError = undefined;
  }

  /** Applies stored registered credentials when there are some for the client's current issuer. */
  async #applyRegistration(variant: Variant): Promise<boolean> {
    const source = this.#options.credentials;
    if (!source) return false;
    const generation = variant.generation;
    const registered = await source.load(variant.id, variant.tenant);
    // A registration at another issuer (the configuration changed since) is of no use.
    if (!registered || registered.issuer !== variant.configured.issuer) return false;
    if (variant.generation !== generation || variant.client.clientSecret !== undefined) return variant.client.clientSecret !== undefined;
    variant.client = { ...variant.configured, clientId: registered.clientId, clientSecret: registered.clientSecret };
    return true;
  }

  async #discover(variant: Variant): Promise<oidc.Configuration> {
    if (variant.client.clientSecret === undefined) {
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
    const clientSecret = client.clientSecret!;
    try {
      const { execute, timeout } = this.requestOptions;
      // Discover once without client authentication chosen, then pick the method the IdP supports.
      const configuration = await oidc.discovery(new URL(client.issuer), client.clientId, clientSecret, undefined, {
        execute,
        timeout,
      });
      const supported = configuration.serverMetadata().token_endpoint_auth_methods_supported;
      const auth = !supported || supported.includes('client_secret_basic') ? oidc.ClientSecretBasic(clientSecret) : oidc.ClientSecretPost(clientSecret);
      const configured = new oidc.Configuration(configuration.serverMetadata(), client.clientId, clientSecret, auth);
      for (const fn of execute) fn(configured);
      // openid-client trusts TLS for ID tokens from the token endpoint (OIDC Core 3.1.3.7 step 6) and skips
      // their signature; we check it against the issuer's JWKS as well, so neither a token endpoint answering
      // in the issuer's name (DNS, a mis-set http issuer, a TLS-terminating middlebox) nor a bug there can
      // hand us an identity the issuer never signed.
      oidc.enableNonRepudiationChecks(configured);
      configured.timeout = timeout;
      // Credentials changed while discovering: hand this caller the result, but do not keep it.
      if (variant.generation === generation) {
        variant.configuration = configured;
        variant.lastError = undefined;
      }
      return configured;
    } catch (err) {
      const error = toOidcError(err, `discovery of ${client.issuer}`);
      variant.lastError = error.message;
      throw error.kind === 'unavailable' || error.kind === 'invalid_response' ? new OidcError('unavailable', error.message, { cause: err }) : error;
    }
  }

  async #discoverIssuer(issuer: string): Promise<oidc.ServerMetadata> {
    const { execute, timeout } = this.requestOptions;
    try {
      const configuration = await oidc.discovery(new URL(issuer), 'token-handler', undefined, oidc.None(), { execute, timeout });
      return configuration.serverMetadata();
    } catch (err) {
      const error = toOidcError(err, `discovery of ${issuer}`);
      throw new OidcError('unavailable', error.message, { cause: err });
    }
  }
}
