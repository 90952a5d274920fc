import type { SessionRecord } from '../store/types.ts';

/** User facts kept with a session for /sessions; taken from the validated ID token. */
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
  claims: SessionClaims;
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

/** Picks the claims worth keeping from an ID token (or userinfo) claim set. */
export function pickClaims(claims: Record<string, unknown>): SessionClaims {
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
  const roles = new Set<string>();
  const addRoles = (v: unknown): void => {
    if (Array.isArray(v)) for (const r of v) if (typeof r === 'string') roles.add(r);
  };
  addRoles(claims.roles);
  // Keycloak puts realm roles under realm_access.roles.
  addRoles((claims.realm_access as { roles?: unknown } | undefined)?.roles);
  const picked: SessionClaims = { roles: [...roles] };
  const name = str(claims.name);
  const email = str(claims.email);
  const preferredUsername = str(claims.preferred_username);
  if (name) picked.name = name;
  if (email) picked.email = email;
  if (preferredUsername) picked.preferredUsername = preferredUsername;
  return picked;
}
