import { createRemoteJWKSet, errors } from 'jose';

/** Asymmetric JWS algorithms accepted for tokens an IdP signs (never `none`, never HMAC with a public key). */
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

export type RemoteKeySet = ReturnType<typeof createRemoteJWKSet>;

/**
 * One jose remote key set per `jwks_uri`, shared by every check that verifies tokens of that issuer.
 * jose caches the keys and refetches (at most every `cooldownMs`) when a token names an unknown `kid`,
 * so key rotation at the IdP needs nothing from us.
 */
export class JwksCache {
  readonly #sets = new Map<string, RemoteKeySet>();
  readonly #timeoutMs: number;

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  get(jwksUri: string): RemoteKeySet {
    let set = this.#sets.get(jwksUri);
    if (!set) {
      set = createRemoteJWKSet(new URL(jwksUri), { timeoutDuration: this.#timeoutMs, cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 });
      this.#sets.set(jwksUri, set);
    }
    return set;
  }
}

/**
 * Whether a verification failure is ours to retry (the key set could not be fetched) rather than the
 * token's fault: the caller then answers 503, not 401.
 */
export function isKeySetUnavailable(err: unknown): boolean {
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) return true;
  // jose reports a non-200 JWKS response with a plain JOSEError (code ERR_JOSE_GENERIC).
  if (err instanceof errors.JOSEError) return err.code === 'ERR_JOSE_GENERIC' && /JSON Web Key Set/.test(err.message);
  // fetch failures (connection refused, DNS) and non-2xx JWKS responses surface as plain errors.
  return err instanceof Error;
}
