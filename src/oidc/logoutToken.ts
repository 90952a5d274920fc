/**
 * Logout Token validation, OpenID Connect Back-Channel Logout 1.0 section 2.6: a JWT signed by the
 * client's issuer (its JWKS), `iss` the issuer, `aud` containing our client_id, `iat` present and recent,
 * `exp` (when present) not passed, `events` holding the back-channel logout event, no `nonce` (so an ID
 * token can never pass for one), `sid` and/or `sub`, a `jti` (so a replay can be recognised), and
 * `typ`, when given, `logout+jwt` (or plain `JWT`, as Keycloak before 25).
 */
import { decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { ASYMMETRIC_ALGORITHMS, isKeySetUnavailable, type RemoteKeySet } from './jwks.ts';

export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
/** A logout token older than this is refused: the OP sends it at once. */
export const LOGOUT_TOKEN_MAX_AGE_SEC = 300;
const CLOCK_TOLERANCE_SEC = 60;

export interface LogoutClaims {
  iss: string;
  sub: string | undefined;
  sid: string | undefined;
  jti: string;
  iat: number;
  /** Until when (ms since epoch) this token would be accepted: how long its use must be remembered. */
  acceptableUntil: number;
}

export class LogoutTokenError extends Error {
  override readonly name = 'LogoutTokenError';
  /** The keys could not be fetched: not the token's fault. */
  readonly unavailable: boolean;
  constructor(message: string, unavailable = false) {
    super(message);
    this.unavailable = unavailable;
  }
}

export async function validateLogoutToken(
  token: string,
  opts: { issuer: string; clientId: string; keys: RemoteKeySet; now?: number; maxAgeSec?: number },
): Promise<LogoutClaims> {
  let typ: string | undefined;
  try {
    typ = decodeProtectedHeader(token).typ;
  } catch {
    throw new LogoutTokenError('the logout token is not a JWT');
  }
  // Keycloak before 25 types its logout tokens plain `JWT`: accepted, since what tells a logout token from
  // an ID token here is the events claim and the absence of a nonce (spec section 4.1), both required below.
  if (typ !== undefined && !['logout+jwt', 'application/logout+jwt', 'jwt'].includes(typ.toLowerCase())) {
    throw new LogoutTokenError(`typ ${JSON.stringify(typ)} is not logout+jwt`);
  }
  const now = opts.now ?? Date.now();
  let claims: JWTPayload;
  try {
    ({ payload: claims } = await jwtVerify(token, opts.keys, {
      issuer: opts.issuer,
      audience: opts.clientId,
      algorithms: ASYMMETRIC_ALGORITHMS,
      clockTolerance: CLOCK_TOLERANCE_SEC,
      requiredClaims: ['iat'],
      currentDate: new Date(now),
    }));
  } catch (err) {
    if (isKeySetUnavailable(err)) throw new LogoutTokenError("the issuer's signing keys could not be fetched", true);
    const code = (err as { code?: unknown }).code;
    throw new LogoutTokenError(`${typeof code === 'string' ? `${code}: ` : ''}${err instanceof Error ? err.message : String(err)}`);
  }
  const iat = claims.iat!;
  const nowSec = Math.floor(now / 1000);
  if (iat > nowSec + CLOCK_TOLERANCE_SEC) throw new LogoutTokenError('iat is in the future');
  if (nowSec - iat > (opts.maxAgeSec ?? LOGOUT_TOKEN_MAX_AGE_SEC) + CLOCK_TOLERANCE_SEC) throw new LogoutTokenError('the logout token is too old');
  const events = claims.events;
  if (typeof events !== 'object' || events === null || Array.isArray(events)) throw new LogoutTokenError('no events claim');
  const event = (events as Record<string, unknown>)[BACKCHANNEL_LOGOUT_EVENT];
  if (typeof event !== 'object' || event === null || Array.isArray(event)) throw new LogoutTokenError('events does not hold the back-channel logout event');
  if (claims.nonce !== undefined) throw new LogoutTokenError('a logout token must not carry a nonce');
  const sub = nonEmptyString(claims.sub);
  const sid = nonEmptyString(claims.sid);
  if (sub === undefined && sid === undefined) throw new LogoutTokenError('neither sub nor sid');
  const jti = nonEmptyString(claims.jti);
  if (jti === undefined) throw new LogoutTokenError('no jti (a logout token must carry one, so that a replay can be refused)');
  const acceptableUntil = (iat + (opts.maxAgeSec ?? LOGOUT_TOKEN_MAX_AGE_SEC) + CLOCK_TOLERANCE_SEC + 1) * 1000;
  return { iss: claims.iss!, sub, sid, jti, iat, acceptableUntil };
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}
