/**
 * OpenID Connect Dynamic Client Registration (RFC 7591) of a confidential client, with the registration
 * token an administrator obtained from the IdP as the initial access token.
 */
import * as oidc from 'openid-client';
import { OidcError, toOidcError } from './errors.ts';

/** What the token handler keeps of a registration (encrypted at rest by the caller). */
export interface Registration {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** ms since epoch. */
  registeredAt: number;
  /** ms since epoch; absent when the secret does not expire. */
  clientSecretExpiresAt?: number;
  /** RFC 7592 client configuration endpoint and its token, when the IdP returns them (for later management). */
  registrationClientUri?: string;
  registrationAccessToken?: string;
}

export interface RegistrationMetadataInput {
  clientName: string;
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  backchannelLogoutUri: string | undefined;
  /** The issuer's token_endpoint_auth_methods_supported. */
  authMethodsSupported: string[] | undefined;
}

/** The metadata of a confidential web client using the code flow with refresh tokens. */
export function registrationMetadata(input: RegistrationMetadataInput): Partial<oidc.ClientMetadata> {
  const supported = input.authMethodsSupported;
  const authMethod = !supported || supported.includes('client_secret_basic') ? 'client_secret_basic' : 'client_secret_post';
  return {
    client_name: input.clientName,
    application_type: 'web',
    redirect_uris: input.redirectUris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: authMethod,
    ...(input.postLogoutRedirectUris.length > 0 && { post_logout_redirect_uris: input.postLogoutRedirectUris }),
    ...(input.backchannelLogoutUri !== undefined && {
      backchannel_logout_uri: input.backchannelLogoutUri,
      // Ask for `sid` in ID and logout tokens, so a back-channel logout ends exactly the OP session's sessions.
      backchannel_logout_session_required: true,
    }),
  };
}

/**
 * Registers the client at the issuer's registration endpoint. Throws OidcError: `rejected` with the
 * IdP's `error` when it refuses (a bad or used initial access token, metadata it does not accept),
 * `unavailable` when it cannot be reached.
 */
export async function registerClient(
  issuer: string,
  metadata: Partial<oidc.ClientMetadata>,
  initialAccessToken: string,
  options: { execute: ((config: oidc.Configuration) => void)[]; timeout: number },
): Promise<Registration> {
  let configuration: oidc.Configuration;
  try {
    configuration = await oidc.dynamicClientRegistration(new URL(issuer), metadata, undefined, {
      initialAccessToken,
      execute: options.execute,
      timeout: options.timeout,
    });
  } catch (err) {
    const error = toOidcError(err, 'client registration');
    // A response that is not a registration (no client_id, HTML error page) is the IdP refusing too.
    if (error.kind !== 'invalid_response') throw error;
    throw new OidcError('rejected', error.message, { cause: err, ...(error.status !== undefined && { status: error.status }) });
  }
  const registered = configuration.clientMetadata();
  const clientSecret = registered.client_secret;
  if (typeof clientSecret !== 'string' || clientSecret === '') {
    throw new OidcError('rejected', 'client registration: the IdP registered the client without a client_secret', { error: 'invalid_client_metadata' });
  }
  const expiresAt = registered.client_secret_expires_at;
  const uri = registered.registration_client_uri;
  const token = registered.registration_access_token;
  return {
    issuer: configuration.serverMetadata().issuer,
    clientId: registered.client_id,
    clientSecret,
    registeredAt: Date.now(),
    ...(typeof expiresAt === 'number' && expiresAt > 0 && { clientSecretExpiresAt: expiresAt * 1000 }),
    ...(typeof uri === 'string' && { registrationClientUri: uri }),
    ...(typeof token === 'string' && { registrationAccessToken: token }),
  };
}
