/**
 * The bearer token of a client registration request (POST /clients/{id}): a JWT access token from the
 * client's own issuer carrying the administrator role. Signature (the issuer's JWKS), `iss` and `exp` are
 * always checked, `aud` when configured; then the role is looked for at the configured claim paths.
 */
import { decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import type { AdminTokenPolicy } from '../config/types.ts';
import { ASYMMETRIC_ALGORITHMS, isKeySetUnavailable, type RemoteKeySet } from './jwks.ts';

/** ADSP's client role `urn:ads:platform:token-handler:token-handler-admin`. */
export const DEFAULT_ADMIN_ROLE = 'token-handler-admin';
/**
 * Where the role is looked for by default: a Keycloak client role of the ADSP token handler client, a
 * Keycloak realm role, or a plain `roles` claim (oidc-provider, Auth0-style rules, Entra app roles).
 */
export const DEFAULT_ROLE_CLAIM_PATHS: readonly (readonly string[])[] = [
  ['resource_access', 'urn:ads:platform:token-handler', 'roles'],
  ['realm_access', 'roles'],
  ['roles'],
];
const CLOCK_TOLERANCE_SEC = 30;
/** `typ` values of tokens that are not access tokens: a logout token or an ID token is never an admin credential. */
const REFUSED_TYPES = new Set(['logout+jwt', 'application/logout+jwt', 'secevent+jwt', 'application/secevent+jwt']);

export type AdminTokenCheck =
  | { ok: true; claims: JWTPayload }
  | { ok: false; status: 401; error: 'invalid_token'; detail: string }
  | { ok: false; status: 403; error: 'insufficient_role'; detail: string }
  | { ok: false; status: 503; error: 'idp_unavailable'; detail: string };

export async function verifyAdminToken(
  token: string,
  opts: { issuer: string; keys: RemoteKeySet; policy: AdminTokenPolicy | undefined },
): Promise<AdminTokenCheck> {
  const invalid = (detail: string): AdminTokenCheck => ({ ok: false, status: 401, error: 'invalid_token', detail });
  let typ: string | undefined;
  try {
    typ = decodeProtectedHeader(token).typ;
  } catch {
    return invalid('the bearer token is not a JWT');
  }
  if (typ !== undefined && REFUSED_TYPES.has(typ.toLowerCase())) return invalid(`a ${typ} token is not an access token`);
  let claims: JWTPayload;
  try {
    ({ payload: claims } = await jwtVerify(token, opts.keys, {
      issuer: opts.issuer,
      ...(opts.policy?.audience !== undefined && { audience: opts.policy.audience }),
      algorithms: ASYMMETRIC_ALGORITHMS,
      clockTolerance: CLOCK_TOLERANCE_SEC,
      requiredClaims: ['exp'],
    }));
  } catch (err) {
    if (isKeySetUnavailable(err)) return { ok: false, status: 503, error: 'idp_unavailable', detail: "the issuer's signing keys could not be fetched; try again shortly" };
    return invalid(`the bearer token was refused (${describe(err)})`);
  }
  if (claims.events !== undefined) return invalid('a security event token is not an access token');
  const role = opts.policy?.role ?? DEFAULT_ADMIN_ROLE;
  const paths = opts.policy?.roleClaimPaths ?? DEFAULT_ROLE_CLAIM_PATHS;
  if (!paths.some((path) => holdsRole(claimAt(claims, path), role))) {
    return { ok: false, status: 403, error: 'insufficient_role', detail: `the token does not carry the ${role} role` };
  }
  return { ok: true, claims };
}

/** The value at a claim path, or undefined (never follows inherited properties). */
export function claimAt(claims: Record<string, unknown>, path: readonly string[]): unknown {
  let value: unknown = claims;
  for (const name of path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, name)) return undefined;
    value = (value as Record<string, unknown>)[name];
  }
  return value;
}

/** A list of roles containing `role`, or a string equal to it (or a space-separated list holding it). */
function holdsRole(value: unknown, role: string): boolean {
  if (Array.isArray(value)) return value.includes(role);
  if (typeof value === 'string') return value.split(' ').includes(role);
  return false;
}

/** jose's error code and message: never the token. */
function describe(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  return typeof code === 'string' ? `${code}: ${message}` : message;
}
