/**
 * Roles and profile claims as each product places them (oidc/claims.ts), the claim path syntax, the
 * refresh-token lifetime of a token response and the end-session URL template.
 */
import { SignJWT } from 'jose';
import * as oidc from 'openid-client';
import { describe, expect, it } from 'vitest';
import { parseClaimPath, parseClaimPathList, parseAuthParams, parseEndSessionTemplate, parseTidList } from '../../src/config/oidcParsers.ts';
import { InvalidValue } from '../../src/config/parsers.ts';
import { accessTokenClaims, computeRoles, sessionClaims } from '../../src/oidc/claims.ts';
import { endSessionUrl, refreshExpiry } from '../../src/oidc/flows.ts';

const keycloakAccessToken = {
  realm_access: { roles: ['app-user', 'offline_access'] },
  resource_access: { 'urn:ads:platform:tenant-service': { roles: ['platform-service'] }, account: { roles: ['manage-account'] } },
};

describe('computeRoles: the defaults', () => {
  it('Keycloak: realm roles, then client roles as client:role (ADSP session roles)', () => {
    expect(computeRoles([keycloakAccessToken])).toEqual(['app-user', 'offline_access', 'urn:ads:platform:tenant-service:platform-service', 'account:manage-account']);
  });
  it('Entra ID app roles (roles) and Okta groups (groups)', () => {
    expect(computeRoles([{ roles: ['Orders.Read'] }])).toEqual(['Orders.Read']);
    expect(computeRoles([{ groups: ['Everyone', 'Order Approvers'] }])).toEqual(['Everyone', 'Order Approvers']);
  });
  it('Auth0 namespaced roles only when configured', () => {
    const claims = { 'https://example.com/roles': ['admin'] };
    expect(computeRoles([claims])).toEqual([]);
    expect(computeRoles([claims], parseClaimPathList('https://example.com/roles'))).toEqual(['admin']);
  });
  it('merges the sources without duplicates, takes a single name, ignores what is not a role', () => {
    expect(computeRoles([{ roles: ['a', 'b'] }, undefined, { roles: 'b' }, { roles: [1, null, '', 'c'] }, { roles: { a: 1 } }])).toEqual(['a', 'b', 'c']);
  });
  it('never follows inherited properties', () => {
    expect(computeRoles([{}], [['constructor', 'name']])).toEqual([]);
  });
});

describe('sessionClaims', () => {
  it('profile from the ID token, userinfo winning; roles from all three sources', () => {
    const claims = sessionClaims({
      idToken: { sub: 'a', name: 'Old Name', email: 'a@example.com' },
      userinfo: { sub: 'a', name: 'New Name', groups: ['g'] },
      accessToken: keycloakAccessToken,
    });
    expect(claims).toEqual({ name: 'New Name', email: 'a@example.com', roles: ['g', 'app-user', 'offline_access', 'urn:ads:platform:tenant-service:platform-service', 'account:manage-account'] });
  });
  it('reads a JWT access token, not an opaque or encrypted one', async () => {
    const jwt = await new SignJWT({ roles: ['r'] }).setProtectedHeader({ alg: 'HS256' }).sign(new Uint8Array(32));
    expect(accessTokenClaims(jwt)).toMatchObject({ roles: ['r'] });
    expect(accessTokenClaims('opaque-token')).toBeUndefined();
    expect(accessTokenClaims('eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..iv.ciphertext.tag')).toBeUndefined();
    expect(accessTokenClaims('a.b.c')).toBeUndefined();
  });
});

describe('claim paths and other client settings', () => {
  it('parses dotted, bracketed, wildcard and URL paths', () => {
    expect(parseClaimPath('resource_access.*.roles')).toEqual(['resource_access', '*', 'roles']);
    expect(parseClaimPath('https://example.com/roles')).toEqual(['https://example.com/roles']);
    expect(parseClaimPathList('realm_access.roles, resource_access["a,b"].roles')).toEqual([['realm_access', 'roles'], ['resource_access', 'a,b', 'roles']]);
    for (const bad of ['', 'a.', 'a b', 'a*b', ',']) expect(() => parseClaimPathList(bad), bad).toThrow(InvalidValue);
  });
  it('refuses authorization parameters the handler sets itself, and bad templates and tenant lists', () => {
    expect(parseAuthParams('audience=https%3A%2F%2Fapi&resource=urn:x')).toEqual({ audience: 'https://api', resource: 'urn:x' });
    for (const bad of ['redirect_uri=https://evil', 'state=x', 'request_uri=urn:x', 'a=1&a=2']) expect(() => parseAuthParams(bad), bad).toThrow(InvalidValue);
    expect(() => parseEndSessionTemplate('https://t.auth0.com/v2/logout?returnTo={return_to}')).toThrow(/unknown placeholder/);
    expect(() => parseEndSessionTemplate('ftp://t/logout')).toThrow(InvalidValue);
    expect(parseTidList('*')).toEqual(['*']);
    expect(() => parseTidList('*, 72f988bf-86f1-41af-91ab-2d7cd011db47')).toThrow(InvalidValue);
  });
});

describe('refreshExpiry', () => {
  const now = 1_700_000_000_000;
  it('refresh_expires_in (Keycloak), refresh_token_expires_in, a JWT refresh token exp', async () => {
    expect(refreshExpiry({ refresh_expires_in: 1800 }, now)).toBe(now + 1800_000);
    expect(refreshExpiry({ refresh_token_expires_in: 86400 }, now)).toBe(now + 86400_000);
    const jwt = await new SignJWT({ typ: 'Refresh' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(1_700_000_900).sign(new Uint8Array(32));
    expect(refreshExpiry({ refresh_token: jwt }, now)).toBe(1_700_000_900_000);
  });
  it('Keycloak offline tokens (0), opaque tokens and nonsense: unknown', () => {
    expect(refreshExpiry({ refresh_expires_in: 0, refresh_token: 'x.y.z' }, now)).toBeNull();
    expect(refreshExpiry({ refresh_token: 'opaque' }, now)).toBeNull();
    expect(refreshExpiry({ refresh_expires_in: 'soon' }, now)).toBeNull();
  });
});

describe('endSessionUrl', () => {
  const configuration = new oidc.Configuration({ issuer: 'https://tenant.auth0.com/' }, 'client-1');
  it('fills the template URL-encoded (Auth0 /v2/logout), even without end_session_endpoint', () => {
    const url = endSessionUrl(configuration, {
      template: 'https://tenant.auth0.com/v2/logout?client_id={client_id}&returnTo={post_logout_redirect_uri}',
      postLogoutRedirectUri: 'https://app.example.com/bye?x=1&y=2',
    });
    expect(url?.searchParams.get('client_id')).toBe('client-1');
    expect(url?.searchParams.get('returnTo')).toBe('https://app.example.com/bye?x=1&y=2');
  });
  it('is undefined without a template or an end_session_endpoint (logout stays local)', () => {
    expect(endSessionUrl(configuration, { postLogoutRedirectUri: 'https://app.example.com/' })).toBeUndefined();
  });
});
