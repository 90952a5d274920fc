import type { SessionRecord } from '../store/types.ts';

/** User facts kept with a session for /sessions (see oidc/claims.ts). */
export interface SessionClaims {
  name?: string;
  email?: string;
  preferredUsername?: string;
  roles: string[];
}

/** What is encrypted at rest in `SessionRecord.payload`. Never leaves the process unencrypted. */
export interface SessionPayload {
  accessToken: string;
  refreshToken?: string;
  idToken?: string;
  scope?: string;
  /** The access token's lifetime as issued (`expires_in`), for the refresh threshold; absent when unknown. */
  accessLifetimeMs?: number;
  /**
   * When the refresh token stops working (ms since epoch), when the IdP said so (`refresh_expires_in`, or
   * the `exp` of a JWT refresh token): the session cannot outlive it. Absent: unknown.
   */
  refreshExpiresAt?: number;
  claims: SessionClaims;
  /**
   * Where the browser reached the client's routes when it logged in (the trusted proxy's X-Forwarded-Prefix
   * on the callback): URLs of those routes handed out elsewhere (GET /sessions' logoutUrl) use it.
   */
  publicPath?: string;
}

/** A session resolved from a valid cookie for one request. */
export interface ActiveSession {
  /** The raw session id (from the cookie): needed to re-seal the cookie; never stored or logged. */
  id: Buffer;
  idHash: string;
  record: SessionRecord;
  payload: SessionPayload;
  /** The cookie was sealed with an old secret and should be re-sealed with the current ones. */
  resealCookie: boolean;
}

/**
 * When a session ends: its absolute end, or earlier when the IdP bounds the refresh token's life (Keycloak's
 * SSO idle and max). The idle end (`record.idleExpiresAt`) is separate: use extends it.
 */
export function sessionEndsAt(record: Pick<SessionRecord, 'expiresAt'>, payload: Pick<SessionPayload, 'refreshExpiresAt'>): number {
  return payload.refreshExpiresAt === undefined ? record.expiresAt : Math.min(record.expiresAt, payload.refreshExpiresAt);
}
