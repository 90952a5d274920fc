/**
 * Redis key layout (P = keyPrefix, default `th:`):
 *
 *   P s:{idHash}               hash    the session (and its refresh lease: leaseOwner, leaseExpiresAt); null
 *                                      fields are absent; PEXPIREAT max(expiresAt, idleExpiresAt)
 *   P i:sub:{issuer}:{sub}     set     idHashes of a subject at an issuer (expires with its longest-lived member)
 *   P i:sid:{issuer}:{sid}     set     idHashes carrying an OIDC sid at an issuer (same)
 *   P deadlines                zset    idHash scored by min(expiresAt, idleExpiresAt): the sweep and count index
 *   P c:{id}                   hash    client registration {sealed, updatedAt}
 *   P u:{key}                  string  a used one-time token (back-channel logout jti), with PXAT expiry
 *   P meta                     hash    {schemaVersion}
 *   P invalidate               channel pub/sub invalidations (JSON array of idHashes)
 *
 * Issuer, sub, sid and ids are escaped (`%` and `:`) so that `issuer:sub` splits one way only and one
 * issuer's keys can never collide with another's.
 */

/** Injective and total (unlike encodeURIComponent, which throws on lone surrogates). */
export function escapeKeyPart(value: string): string {
  return value.replaceAll('%', '%25').replaceAll(':', '%3A');
}

/** Escapes glob metacharacters so a prefix can be used in SCAN MATCH. */
function escapeGlob(value: string): string {
  return value.replace(/[*?[\]\\]/g, '\\$&');
}

export interface RedisKeys {
  session(idHash: string): string;
  bySubject(issuer: string, sub: string): string;
  bySid(issuer: string, sid: string): string;
  readonly deadlines: string;
  clientRegistration(id: string): string;
  usedToken(key: string): string;
  readonly meta: string;
  readonly channel: string;
  /** SCAN MATCH pattern for all index sets. */
  readonly indexPattern: string;
}

export function redisKeys(prefix: string): RedisKeys {
  return {
    session: (idHash) => `${prefix}s:${idHash}`,
    bySubject: (issuer, sub) => `${prefix}i:sub:${escapeKeyPart(issuer)}:${escapeKeyPart(sub)}`,
    bySid: (issuer, sid) => `${prefix}i:sid:${escapeKeyPart(issuer)}:${escapeKeyPart(sid)}`,
    deadlines: `${prefix}deadlines`,
    clientRegistration: (id) => `${prefix}c:${escapeKeyPart(id)}`,
    usedToken: (key) => `${prefix}u:${escapeKeyPart(key)}`,
    meta: `${prefix}meta`,
    channel: `${prefix}invalidate`,
    indexPattern: `${escapeGlob(prefix)}i:*`,
  };
}
