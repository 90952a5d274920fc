import * as oidc from 'openid-client';
import type { ClientConfig } from '../config/types.ts';
import { OidcError, toOidcError } from './errors.ts';

export interface RegistryOptions {
  timeoutMs: number;
  /** Development only: the embedded demo IdP and tests serve http. */
  allowInsecureIssuer: boolean;
}

export interface IssuerStatus {
  clientId: string;
  issuer: string;
  ready: boolean;
  error?: string;
}

interface Entry {
  client: ClientConfig;
  configuration?: oidc.Configuration;
  pending?: Promise<oidc.Configuration>;
  lastError?: string;
}

/**
 * Holds each configured client and its openid-client Configuration, discovered lazily and once
 * (concurrent callers share the discovery); a failed discovery is not cached, so the next request retries.
 */
export class OidcRegistry {
  readonly #entries = new Map<string, Entry>();
  readonly #options: RegistryOptions;

  constructor(clients: ClientConfig[], options: RegistryOptions) {
    this.#options = options;
    for (const client of clients) this.#entries.set(client.id, { client });
  }

  client(id: string): ClientConfig | undefined {
    return this.#entries.get(id)?.client;
  }

  clients(): ClientConfig[] {
    return [...this.#entries.values()].map((e) => e.client);
  }

  /** Replaces a client's credentials (after dynamic registration); forces a new discovery. */
  setCredentials(id: string, clientId: string, clientSecret: string): void {
    const entry = this.#entries.get(id);
    if (!entry) throw new Error(`unknown client ${id}`);
    this.#entries.set(id, { client: { ...entry.client, clientId, clientSecret } });
  }

  async configuration(id: string): Promise<oidc.Configuration> {
    const entry = this.#entries.get(id);
    if (!entry) throw new Error(`unknown client ${id}`);
    if (entry.configuration) return entry.configuration;
    entry.pending ??= this.#discover(entry).finally(() => {
      entry.pending = undefined;
    });
    return entry.pending;
  }

  /** Discovers every client's issuer; used by /readyz. Never throws. */
  async status(): Promise<IssuerStatus[]> {
    return Promise.all(
      [...this.#entries.values()].map(async (entry) => {
        try {
          await this.configuration(entry.client.id);
          return { clientId: entry.client.id, issuer: entry.client.issuer, ready: true };
        } catch (err) {
          return { clientId: entry.client.id, issuer: entry.client.issuer, ready: false, error: (err as Error).message };
        }
      }),
    );
  }

  async #discover(entry: Entry): Promise<oidc.Configuration> {
    const { client } = entry;
    if (client.clientSecret === undefined) {
      throw new OidcError('rejected', `client "${client.id}" is not registered yet (POST /clients/${client.id})`);
    }
    try {
      const execute = this.#options.allowInsecureIssuer ? [oidc.allowInsecureRequests] : [];
      const timeout = Math.max(1, Math.ceil(this.#options.timeoutMs / 1000));
      // Discover once without client authentication chosen, then pick the method the IdP supports.
      const configuration = await oidc.discovery(new URL(client.issuer), client.clientId, client.clientSecret, undefined, {
        execute,
        timeout,
      });
      const supported = configuration.serverMetadata().token_endpoint_auth_methods_supported;
      const auth =
        !supported || supported.includes('client_secret_basic')
          ? oidc.ClientSecretBasic(client.clientSecret)
          : oidc.ClientSecretPost(client.clientSecret);
      const configured = new oidc.Configuration(configuration.serverMetadata(), client.clientId, client.clientSecret, auth);
      for (const fn of execute) fn(configured);
      configured.timeout = timeout;
      entry.configuration = configured;
      entry.lastError = undefined;
      return configured;
    } catch (err) {
      const error = toOidcError(err, `discovery of ${client.issuer}`);
      entry.lastError = error.message;
      throw error.kind === 'unavailable' || error.kind === 'invalid_response'
        ? new OidcError('unavailable', error.message, { cause: err })
        : error;
    }
  }
}
