/**
 * The storage contract every backend (SQLite, PostgreSQL, Redis) implements. It knows nothing of HTTP
 * or OIDC: it stores opaque, already-encrypted token blobs keyed by the SHA-256 hash of a session id.
 */

export interface SessionRecord {
  /** Hex SHA-256 of the session id; the id itself is never stored. */
  idHash: string;
  /** Our client id (the `{clientId}` of the URLs). */
  clientId: string;
  /** Tenant the session belongs to, or null for a client that is not tenant-scoped. */
  tenant: string | null;
  /** The IdP's issuer, so logout by `sub`/`sid` never crosses issuers. */
  issuer: string;
  /** The user's subject at the issuer. */
  sub: string;
  /** The OIDC session id (`sid` claim) when the IdP sends one, for back-channel logout. */
  sid: string | null;
  /** AES-256-GCM sealed JSON of tokens and user claims (see session/tokenCrypto.ts). */
  payload: string;
  /** When the access token expires (ms since epoch), null when unknown; kept in clear for refresh decisions. */
  accessExpiresAt: number | null;
  createdAt: number;
  lastUsedAt: number;
  /** Absolute end of the session (ms since epoch). */
  expiresAt: number;
  /** Idle end of the session (ms since epoch); extended on use. */
  idleExpiresAt: number;
  /** Bumped by every payload update; optimistic concurrency for refresh. */
  version: number;
  userAgent: string | null;
}

export interface PayloadUpdate {
  payload: string;
  accessExpiresAt: number | null;
}

/** Who holds a refresh lease, and until when on the store's clock (ms since the epoch). */
export interface LeaseHolder {
  owner: string;
  expiresAt: number;
}

/** What `acquireRefreshLease` found: the lease is ours, someone else's (expired or not), or the session is gone. */
export type LeaseAttempt =
  | { state: 'acquired' }
  | { state: 'held'; holder: LeaseHolder; expired: boolean }
  | { state: 'gone' };

export interface SessionStore {
  /** Which backend this is, for logs, metrics and /readyz. */
  readonly kind: 'sqlite' | 'postgresql' | 'redis';
  /** Creates or upgrades the schema; safe when several instances call it at once. */
  migrate(): Promise<void>;
  create(record: SessionRecord): Promise<void>;
  /** The record, or undefined when absent. Expired records may be returned: callers check the times. */
  get(idHash: string): Promise<SessionRecord | undefined>;
  /**
   * Replaces the payload if the stored version still equals `expectedVersion`, bumping the version.
   * Returns the new version, or null when the version moved (someone else updated) or the record is gone.
   * For rewriting the same tokens (re-encryption under a new key): new tokens go through `completeRefresh`.
   */
  updatePayload(idHash: string, expectedVersion: number, update: PayloadUpdate): Promise<number | null>;
  /** Records use: sets lastUsedAt and idleExpiresAt (never beyond expiresAt). No version bump. */
  touch(idHash: string, lastUsedAt: number, idleExpiresAt: number): Promise<void>;
  /** Returns whether a record was deleted. */
  delete(idHash: string): Promise<boolean>;
  /** Deletes all sessions of a subject at an issuer; returns the deleted id hashes. */
  deleteBySubject(issuer: string, sub: string): Promise<string[]>;
  /** Deletes all sessions carrying an OIDC `sid` at an issuer; returns the deleted id hashes. */
  deleteBySid(issuer: string, sid: string): Promise<string[]>;
  listBySubject(issuer: string, sub: string): Promise<SessionRecord[]>;
  /**
   * The sessions made at an issuer in a tenant (null: not tenant-scoped) that are live at `now`, oldest
   * first, at most `limit` (an administrator's GET /sessions). Reads every live session on Redis.
   */
  listByIssuer(issuer: string, tenant: string | null, now: number, limit: number): Promise<SessionRecord[]>;
  /** Deletes at most `limit` sessions whose expiresAt or idleExpiresAt is before `now`; returns how many. */
  deleteExpired(now: number, limit: number): Promise<number>;
  /**
   * Takes the cross-instance refresh lease of a session for `ttlMs`, measured on the store's own clock
   * (the database's or Redis' time, never an instance's), when nobody holds it, or when `takeOver` names
   * the holder and expiry the caller saw and that lease has expired. An expired lease is never taken
   * without `takeOver`: its holder may be alive with new tokens it could not write yet (a store outage
   * expires every lease), so the caller first watches it for a while (see SessionService).
   */
  acquireRefreshLease(idHash: string, owner: string, ttlMs: number, takeOver?: LeaseHolder): Promise<LeaseAttempt>;
  /** Extends `owner`'s lease to `ttlMs` from now (store clock); false when `owner` no longer holds it. */
  renewRefreshLease(idHash: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Releases the lease if `owner` holds it. */
  releaseRefreshLease(idHash: string, owner: string): Promise<void>;
  /**
   * Writes refreshed tokens and releases the lease in one step, if `owner` still holds the lease (expired
   * or not: nobody took it over). Bumps the version. Returns the new version, or null when the lease was
   * taken over or the session is gone. Not guarded by the version: a re-encryption of the same tokens
   * (`updatePayload`) may have bumped it meanwhile, and only a lease holder ever writes new tokens.
   */
  completeRefresh(idHash: string, owner: string, update: PayloadUpdate): Promise<number | null>;
  /** Number of sessions not yet expired at `now` (for the active-sessions gauge). */
  countActive(now: number): Promise<number>;
  /** Throws when the backend is unreachable. */
  ping(): Promise<void>;
  close(): Promise<void>;

  /**
   * Cross-instance cache invalidation: tells every instance on this store (including this one) that these
   * sessions changed or were deleted. PostgreSQL uses LISTEN/NOTIFY, Redis pub/sub; SQLite, being one
   * process's file, delivers in-process only.
   */
  publishInvalidation(idHashes: string[]): Promise<void>;
  /** Registers a listener for invalidations published by any instance. */
  onInvalidation(listener: (idHashes: string[]) => void): void;

  /**
   * Records the use of a one-time token (a back-channel logout token: a hash of its issuer and `jti`)
   * until `expiresAt`, so that no instance on this store accepts it again. Returns true when this is its
   * first use (the key is unknown, or its record expired before `now`), false for a replay. Atomic: of
   * several instances recording the same key at once, exactly one gets true.
   */
  recordTokenUse(key: string, expiresAt: number, now: number): Promise<boolean>;
  /** Forgets a recorded use (what the token asked for could not be done: the issuer may send it again). */
  forgetTokenUse(key: string): Promise<void>;

  /** Key/value storage for dynamically registered clients (encrypted by the caller). */
  putClientRegistration(id: string, sealed: string): Promise<void>;
  getClientRegistration(id: string): Promise<string | undefined>;
}

/** Thrown by a store when its backend is unreachable: the HTTP layer maps it to 503. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
