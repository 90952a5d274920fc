/**
 * The bearer token of a client registration request (POST /clients/{id}): a JWT access token from the
 * client's own issuer, meant for the token handler (`aud`), carrying the administrator role. Signature
 * (the issuer's JWKS), `iss`, `exp` and `aud` are always checked; an ID token (or any token issued to one
 * of our own OIDC clients, which pass through browsers and upstreams) is refused; then the role is looked
 * for at the configured claim paths.
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
/** ADSP's audience of the token handler's admin API: the `aud` required when `adminTokenAudience` is not set. */
export const DEFAULT_ADMIN_AUDIENCE = 'urn:ads:platform:token-handler';
const CLOCK_TOLERANCE_SEC = 30;
/** RFC 9068 `typ` of a JWT access token: such a token is an access token by its issuer's word. */
const ACCESS_TOKEN_TYPES = new Set(['at+jwt', 'application/at+jwt']);
/** Untyped JWTs (most IdPs' access tokens, and ID tokens): told apart by their claims. */
const GENERIC_TYPES = new Set(['jwt', 'application/jwt']);
/** Claims only an ID token carries (OIDC Core 2, 3.1.3.6, 3.3.2.11; FAPI's s_hash). */
const ID_TOKEN_CLAIMS = ['nonce', 'at_hash', 'c_hash', 's_hash'] as const;

export type AdminTokenCheck =
  | { ok: true; claims: JWTPayload }
  | { ok: false; status: 401; error: 'invalid_token'; detail: string }
  | { ok: false; status: 403; error: 'insufficient_role'; detail: string }
  | { ok: false; status: 503; error: 'idp_unavailable'; detail: string };

export async function verifyAdminToken(
  token: string,
  opts: {
    issuer: string;
    keys: RemoteKeySet;
    policy: AdminTokenPolicy | undefined;
    /** The client ids of our own OIDC clients at the IdP (configured and registered). */
    ourClientIds: ReadonlySet<string>;
  },
): Promise<AdminTokenCheck> {
  const invalid = (detail: string): AdminTokenCheck => ({ ok: false, status: 401, error: 'invalid_token', detail });
  let typ: string | undefined;
  try {
    typ = decodeProtectedHeader(token).typ;
  } catch {
    return invalid('the bearer token is not a JWT');
  }
  const typed = typ === undefined ? undefined : typ.toLowerCase();
  // An ID token (id_token+jwt), a logout or security event token, a DPoP proof...: never an admin credential.
  if (typed !== undefined && !ACCESS_TOKEN_TYPES.has(typed) && !GENERIC_TYPES.has(typed)) return invalid(`a ${typ} token is not an access token`);
  const audience = opts.policy?.audience ?? DEFAULT_ADMIN_AUDIENCE;
  let claims: JWTPayload;
  try {
    ({ payload: claims } = await jwtVerify(token, opts.keys, {
      issuer: opts.issuer,
      audience,
      algorithms: ASYMMETRIC_ALGORITHMS,
      clockTolerance: CLOCK_TOLERANCE_SEC,
      requiredClaims: ['exp'],
    }));
  } catch (err) {
    if (isKeySetUnavailable(err)) return { ok: false, status: 503, error: 'idp_unavailable', detail: "the issuer's signing keys could not be fetched; try again shortly" };
    return invalid(`the bearer token was refused (${describe(err)})`);
  }
  if (claims.events !== undefined) return invalid('a security event token is not an access token');
  const notAccess = notAnAccessToken(claims, typed !== undefined && ACCESS_TOKEN_TYPES.has(typed));
  if (notAccess !== undefined) return invalid(notAccess);
  // A token issued to (or for) one of our own clients: an ID token of a login (it travels through the
  // browser as id_token_hint), or a user's access token we forward to upstreams. Neither is the admin's.
  const ours = [...audiences(claims.aud), claims.azp, claims.client_id].find((id): id is string => typeof id === 'string' && opts.ourClientIds.has(id));
  if (ours !== undefined) return invalid(`the token was issued to ${JSON.stringify(ours)}, an OIDC client of the token handler; send an administrator's access token for ${audience}`);
  const role = opts.policy?.role ?? DEFAULT_ADMIN_ROLE;
  const paths = opts.policy?.roleClaimPaths ?? DEFAULT_ROLE_CLAIM_PATHS;
  if (!paths.some((path) => holdsRole(claimAt(claims, path), role))) {
    return { ok: false, status: 403, error: 'insufficient_role', detail: `the token does not carry the ${role} role` };
  }
  return { ok: true, claims };
}

/**
 * Why a verified token is not an access token, or undefined. Keycloak types its tokens in the payload
 * (`typ`: `Bearer` for access tokens, `ID`, `Refresh`, `Logout`); an RFC 9068 `at+jwt` header or Keycloak's
 * `Bearer` is the issuer's word for it (older Keycloak copies `nonce` into access tokens). An untyped token
 * carrying a claim only ID tokens carry is an ID token.
 */
function notAnAccessToken(claims: JWTPayload, typedAccessToken: boolean): string | undefined {
  const payloadTyp = typeof claims.typ === 'string' ? claims.typ : undefined;
  if (payloadTyp !== undefined && payloadTyp.toLowerCase() !== 'bearer') return `a token of type ${JSON.stringify(payloadTyp.slice(0, 40))} is not an access token`;
  if (typedAccessToken || payloadTyp !== undefined) return undefined;
  const marker = ID_TOKEN_CLAIMS.find((name) => claims[name] !== undefined);
  return marker === undefined ? undefined : `an ID token (it carries ${marker}) is not an access token`;
}

function audiences(aud: JWTPayload['aud']): string[] {
  return aud === undefined ? [] : Array.isArray(aud) ? aud : [aud];
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
