import { AuthorizationResponseError, ResponseBodyError, WWWAuthenticateChallengeError } from 'openid-client';

/**
 * What went wrong talking to an IdP, reduced to what the HTTP layer acts on:
 * - `idp_error`: the IdP answered the authorization request with an error (`access_denied`, ...);
 * - `invalid_grant`: the code or refresh token is no longer good (replayed, revoked, expired);
 * - `rejected`: another OAuth error response from the IdP (`invalid_client`, ...);
 * - `invalid_response`: the response failed validation (state, nonce, ID token signature, iss, aud, ...);
 * - `unavailable`: network failure, timeout or a 5xx: transient, worth retrying later.
 */
export type OidcErrorKind = 'idp_error' | 'invalid_grant' | 'rejected' | 'invalid_response' | 'unavailable';

export class OidcError extends Error {
  override readonly name = 'OidcError';
  readonly kind: OidcErrorKind;
  /** The OAuth `error` code when the IdP sent one. */
  readonly error: string | undefined;
  readonly errorDescription: string | undefined;
  /** The IdP's HTTP status when it answered with an error. */
  readonly status: number | undefined;

  constructor(kind: OidcErrorKind, message: string, opts: { error?: string; errorDescription?: string; status?: number; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.kind = kind;
    this.error = opts.error;
    this.errorDescription = opts.errorDescription;
    this.status = opts.status;
  }
}

/** Classifies anything thrown by openid-client (or fetch underneath it). Never copies tokens into messages. */
export function toOidcError(err: unknown, during: string): OidcError {
  if (err instanceof OidcError) return err;
  if (err instanceof AuthorizationResponseError) {
    return new OidcError('idp_error', `${during}: the IdP returned ${err.error}`, {
      error: err.error,
      errorDescription: err.error_description,
      cause: err,
    });
  }
  if (err instanceof WWWAuthenticateChallengeError) {
    const challenge = err.cause[0];
    const error = challenge?.parameters.error;
    const opts = { status: err.response.status, cause: err, ...(error ? { error } : {}) };
    if (err.response.status >= 500) return new OidcError('unavailable', `${during}: the IdP answered ${err.response.status}`, opts);
    return new OidcError('rejected', `${during}: the IdP answered ${err.response.status}${error ? ` ${error}` : ''}`, opts);
  }
  if (err instanceof ResponseBodyError) {
    const opts = { error: err.error, errorDescription: err.error_description, status: err.status, cause: err };
    if (err.status >= 500) return new OidcError('unavailable', `${during}: the IdP answered ${err.status} ${err.error}`, opts);
    if (err.error === 'invalid_grant') return new OidcError('invalid_grant', `${during}: invalid_grant`, opts);
    return new OidcError('rejected', `${during}: the IdP answered ${err.status} ${err.error}`, opts);
  }
  if (isTransient(err)) {
    return new OidcError('unavailable', `${during}: the IdP is unreachable (${describe(err)})`, { cause: err });
  }
  const code = (err as { code?: unknown } | null)?.code;
  // openid-client turns its own timeout and abort (the configured OIDC timeout) into OAUTH_* codes too:
  // a slow IdP is unavailable, not a bad response.
  if (code === 'OAUTH_TIMEOUT' || code === 'OAUTH_ABORT') {
    return new OidcError('unavailable', `${during}: the IdP did not answer in time (${describe(err)})`, { cause: err });
  }
  // openid-client / oauth4webapi signal bad responses with OAUTH_* codes (state, nonce, signature, claims).
  if (typeof code === 'string' && code.startsWith('OAUTH_')) {
    if (code === 'OAUTH_RESPONSE_IS_NOT_JSON' || code === 'OAUTH_RESPONSE_IS_NOT_CONFORM') {
      const status = (err as { cause?: { status?: unknown } }).cause?.status;
      if (typeof status === 'number' && status >= 500) {
        return new OidcError('unavailable', `${during}: the IdP answered ${status}`, { cause: err });
      }
    }
    return new OidcError('invalid_response', `${during}: ${describe(err)}`, { cause: err });
  }
  if (err instanceof Error && /JWS|JWT|signature|claim/i.test(err.message)) {
    return new OidcError('invalid_response', `${during}: ${describe(err)}`, { cause: err });
  }
  return new OidcError('unavailable', `${during}: ${describe(err)}`, { cause: err });
}

function isTransient(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return true;
  if (err instanceof TypeError && /fetch failed/i.test(err.message)) return true;
  const cause = (err as { cause?: { code?: unknown } }).cause;
  return typeof cause?.code === 'string' && /^(ECONN|ENOTFOUND|EAI_|ETIMEDOUT|UND_ERR|EPIPE|ECONNRESET)/.test(cause.code);
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  const causeText = typeof cause?.code === 'string' ? ` [${cause.code}]` : '';
  return `${err.name}: ${err.message}${causeText}`;
}
