/** The session cannot supply a token any more (refresh refused, no refresh token): the user must log in. */
export class SessionEndedError extends Error {
  override readonly name = 'SessionEndedError';
}

/** The IdP could not be reached to refresh a token: transient, the session is kept. */
export class RefreshUnavailableError extends Error {
  override readonly name = 'RefreshUnavailableError';
}
