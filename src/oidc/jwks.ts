import { createRemoteJWKSet, errors, type CryptoKey, type FlattenedJWSInput, type JWSHeaderParameters, type RemoteJWKSet } from 'jose';

/** Asymmetric JWS algorithms accepted for tokens an IdP signs (never `none`, never HMAC with a public key). */
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

/** What jwtVerify takes: a key resolver over an issuer's remote key set. */
export type RemoteKeySet = (protectedHeader?: JWSHeaderParameters, token?: FlattenedJWSInput) => Promise<CryptoKey>;

/** An unknown `kid` fetches the key set again at once, then not again for this long (tokens naming random keys). */
const REFETCH_INTERVAL_MS = 1000;

/**
 * One jose remote key set per `jwks_uri`, shared by every check that verifies tokens of that issuer. jose
 * caches the keys; a token naming a key the cache lacks (the IdP rotated its signing key) makes it fetch
 * the set again at once, at most once a second (jose's own cooldown, 30 s, would refuse the rotated
 * tokens of those 30 s).
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
      set = refetchingOnUnknownKey(createRemoteJWKSet(new URL(jwksUri), { timeoutDuration: this.#timeoutMs, cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 }));
      this.#sets.set(jwksUri, set);
    }
    return set;
  }
}

function refetchingOnUnknownKey(remote: RemoteJWKSet): RemoteKeySet {
  let lastRefetch = 0;
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey) || Date.now() - lastRefetch < REFETCH_INTERVAL_MS) throw err;
      lastRefetch = Date.now();
      await remote.reload();
      return remote(header, token);
    }
  };
}

/**
 * Whether a verification failure is ours to retry (the key set could not be fetched) rather than the
 * token's or the key's fault: the caller then answers 503, not 401. Only the failures of fetching the key
 * set count: a timeout, an unreachable issuer, a non-200 or unparsable answer. Anything else (a key jose
 * refuses, such as a 1024-bit RSA key, or a bug of ours) is not an outage, and retrying would not help.
 */
export function isKeySetUnavailable(err: unknown): boolean {
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) return true;
  // jose reports a non-200 or unparsable JWKS response with a plain JOSEError (code ERR_JOSE_GENERIC).
  if (err instanceof errors.JOSEError) return err.code === 'ERR_JOSE_GENERIC' && /JSON Web Key Set/.test(err.message);
  // fetch() itself failed (connection refused or reset, DNS): undici's TypeError, the socket error as its cause.
  return err instanceof TypeError && err.message === 'fetch failed';
}
