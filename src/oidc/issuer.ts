/**
 * How an issuer as configured relates to the issuer a discovery document names. openid-client's discovery
 * compares them as URLs, so `https://tenant.auth0.com` and Auth0's `https://tenant.auth0.com/` are the same
 * issuer; every later comparison (a token's `iss`) is with the discovered spelling. A multi-tenant issuer
 * (Entra ID's `/common/v2.0`) names a template with `{tenantid}` instead, on the same origin.
 */

/** Entra ID's multi-tenant issuers publish this placeholder for the token's `tid`. */
export const TENANT_ID_PLACEHOLDER = '{tenantid}';

/** Whether two issuer spellings are the same issuer as openid-client's discovery check sees it. */
export function sameIssuer(a: string, b: string): boolean {
  try {
    return new URL(a).href === new URL(b).href;
  } catch {
    return a === b;
  }
}

/** Whether `discovered` is what discovery of the configured issuer may name: itself, or a template on its origin. */
export function discoveredIssuerMatches(discovered: string, configured: string): boolean {
  if (sameIssuer(discovered, configured)) return true;
  if (!discovered.includes(TENANT_ID_PLACEHOLDER)) return false;
  try {
    return new URL(discovered.replaceAll(TENANT_ID_PLACEHOLDER, 'tenant')).origin === new URL(configured).origin;
  } catch {
    return false;
  }
}
