/**
 * What a session knows about its user (/sessions): the profile and the roles, read from the validated ID
 * token, the userinfo response and the access token when it is a JWT. IdPs put roles in different places:
 * Keycloak in the access token's `realm_access.roles` and `resource_access.<client>.roles`, Entra ID in
 * `roles`, Okta in `groups`, Auth0 in a namespaced claim such as `https://example.com/roles`. Each client
 * names its claim paths (`roleClaims`); the defaults cover all but Auth0's namespace, which has no default.
 *
 * `computeRoles` is THE role computation: ADSP's session `roles` (realm roles plus `client:role` for each
 * client role) are exactly the default paths' result.
 */
import { decodeJwt } from 'jose';
import type { SessionClaims } from '../session/model.ts';

/** A claim path: property names from the top of the claim set; a `*` segment matches every property. */
export type ClaimPath = readonly string[];

/**
 * Keycloak realm roles, Keycloak client roles (as `client:role`), Entra ID app roles and oidc-provider's
 * `roles`, Okta groups.
 */
export const DEFAULT_ROLE_CLAIMS: readonly ClaimPath[] = [['realm_access', 'roles'], ['resource_access', '*', 'roles'], ['roles'], ['groups']];

/** Where the roles of a session come from and whether userinfo is asked. */
export interface ClaimSettings {
  roleClaims?: readonly ClaimPath[];
}

/** The claim sets one login (or refresh) produced; any may be missing. */
export interface ClaimSources {
  /** Validated ID token claims. */
  idToken?: Record<string, unknown>;
  /** The userinfo response (its `sub` checked against the ID token's by openid-client). */
  userinfo?: Record<string, unknown>;
  /** The access token's payload when it is a JWT (see `accessTokenClaims`). */
  accessToken?: Record<string, unknown>;
}

/**
 * Every role found at any of `paths` in any of the claim sets, without duplicates, in the order found.
 * A value is a list of role names or a single name; a `*` segment prefixes what is found below it with the
 * property it matched (`resource_access.*.roles` gives `my-client:editor`).
 */
export function computeRoles(claimSets: readonly (Record<string, unknown> | undefined)[], paths: readonly ClaimPath[] = DEFAULT_ROLE_CLAIMS): string[] {
  const roles = new Set<string>();
  for (const claims of claimSets) {
    if (!claims) continue;
    for (const path of paths) collect(claims, path, 0, '', roles);
  }
  return [...roles];
}

function collect(value: unknown, path: ClaimPath, index: number, prefix: string, into: Set<string>): void {
  if (index === path.length) {
    const add = (role: unknown): void => {
      if (typeof role === 'string' && role !== '') into.add(prefix === '' ? role : `${prefix}:${role}`);
    };
    if (Array.isArray(value)) value.forEach(add);
    else add(value);
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
  const object = value as Record<string, unknown>;
  const name = path[index]!;
  if (name === '*') {
    for (const key of Object.keys(object)) collect(object[key], path, index + 1, prefix === '' ? key : `${prefix}:${key}`, into);
  } else if (Object.hasOwn(object, name)) {
    collect(object[name], path, index + 1, prefix, into);
  }
}

/**
 * The payload of an access token that is a JWT, else undefined (opaque tokens, Auth0's encrypted ones).
 * Not verified: the access token is the API's credential, not ours, and it came from the token endpoint in
 * the same TLS response as the ID token, which is the trust OpenID Connect Core gives that ID token. It only
 * feeds /sessions' roles; the upstream APIs verify the token themselves.
 */
export function accessTokenClaims(accessToken: string): Record<string, unknown> | undefined {
  if (accessToken.split('.').length !== 3) return undefined;
  try {
    return decodeJwt(accessToken) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * The session's user facts: name, email and preferred username from the ID token (userinfo wins where it
 * answers, being the fresher), roles from all three sources.
 */
export function sessionClaims(sources: ClaimSources, settings: ClaimSettings = {}): SessionClaims {
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
  const pick = (name: string): string | undefined => str(sources.userinfo?.[name]) ?? str(sources.idToken?.[name]);
  const claims: SessionClaims = {
    roles: computeRoles([sources.idToken, sources.userinfo, sources.accessToken], settings.roleClaims ?? DEFAULT_ROLE_CLAIMS),
  };
  const name = pick('name');
  const email = pick('email');
  const preferredUsername = pick('preferred_username');
  if (name) claims.name = name;
  if (email) claims.email = email;
  if (preferredUsername) claims.preferredUsername = preferredUsername;
  return claims;
}
