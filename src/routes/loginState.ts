/**
 * The login-state cookie: what travels from /auth to /callback (PKCE verifier, state, nonce, where to go
 * afterwards), sealed. One cookie per client holds the browser's few most recent login attempts, newest
 * first, so several tabs can log in at once, and however many logins a page makes a browser start (a
 * cross-site popup navigated a hundred times) it carries one cookie of bounded size: the oldest attempts
 * give way, the newest always fits. A cookie per attempt, as before, piled up until the Cookie header
 * passed the server's header limit and every request of that browser got 431 (oauth2-proxy's
 * `cookie_csrf_per_request` has the same failure, oauth2-proxy issues #2163 and #2383).
 */
import type { LoginChecks } from '../oidc/flows.ts';
import type { CookieSealer } from '../session/cookieSealer.ts';

/** One login attempt of a client. */
export interface LoginAttempt extends LoginChecks {
  tenant: string | null;
  returnTo: string;
  redirectUri: string;
  /** ms since epoch; an attempt is refused after this. */
  expiresAt: number;
}

export const LOGIN_STATE_TTL_SEC = 600;
/** Attempts kept per client: parallel tabs, a retried login; beyond this the oldest gives way. */
export const MAX_LOGIN_ATTEMPTS = 5;
/**
 * Longest sealed cookie value. Browsers keep a cookie of up to 4096 bytes of name and value; a
 * `return_to` of 2048 characters (the most checkReturnTo accepts) still fits as the only attempt.
 */
export const MAX_LOGIN_STATE_CHARS = 3800;
/**
 * What all login-state cookies of a browser may hold together, across every client: two full cookies. Each
 * client has its own cookie, so a page that starts logins for many clients (ADSP serves dozens) would
 * otherwise pile them up into the same 431 lockout, one 3.8 KB cookie per client.
 */
export const LOGIN_STATE_BUDGET_CHARS = 2 * MAX_LOGIN_STATE_CHARS;

/** Bytes a sealed value adds to its data (src/session/cookieSealer.ts): IV, expiry, GCM tag, then `.` and the MAC. */
const SEAL_OVERHEAD_BYTES = 12 + 8 + 16;
const MAC_CHARS = 43;

const purpose = (clientId: string): string => `login:${clientId}`;

/** The live attempts in a login-state cookie (none when it is missing, forged, expired or another client's). */
export function readLoginAttempts(sealer: CookieSealer, clientId: string, value: string | undefined, now = Date.now()): LoginAttempt[] {
  if (!value) return [];
  const unsealed = sealer.unseal(purpose(clientId), value, now);
  if (!unsealed) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(unsealed.data.toString('utf8'));
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  return parsed.filter((attempt): attempt is LoginAttempt => isAttempt(attempt) && attempt.expiresAt > now).slice(0, MAX_LOGIN_ATTEMPTS);
}

/**
 * The cookie value holding `attempt` first and as many of the `earlier` ones as fit, or undefined when
 * `attempt` alone would not fit in a cookie (a `return_to` that percent-encodes far beyond its length).
 */
export function sealLoginAttempts(sealer: CookieSealer, clientId: string, attempt: LoginAttempt, earlier: readonly LoginAttempt[]): string | undefined {
  const kept: string[] = [JSON.stringify(attempt)];
  // `[` + `]` + the commas between entries.
  let bytes = 2 + Buffer.byteLength(kept[0]!);
  if (sealedChars(bytes) > MAX_LOGIN_STATE_CHARS) return undefined;
  for (const other of earlier) {
    if (kept.length >= MAX_LOGIN_ATTEMPTS) break;
    if (other.state === attempt.state) continue;
    const json = JSON.stringify(other);
    const next = bytes + 1 + Buffer.byteLength(json);
    if (sealedChars(next) > MAX_LOGIN_STATE_CHARS) break;
    kept.push(json);
    bytes = next;
  }
  return sealer.seal(purpose(clientId), Buffer.from(`[${kept.join(',')}]`), attempt.expiresAt);
}

/** The cookie value after an attempt was used: the others, or undefined when none is left (clear the cookie). */
export function sealRemainingAttempts(sealer: CookieSealer, clientId: string, remaining: readonly LoginAttempt[]): string | undefined {
  const [newest, ...older] = remaining;
  return newest === undefined ? undefined : sealLoginAttempts(sealer, clientId, newest, older);
}

/**
 * The other clients' login-state cookies to clear so that every login-state cookie the browser sends, the
 * new one of `ownLength` characters included, stays within LOGIN_STATE_BUDGET_CHARS: the largest first.
 * A login those held fails its callback with `invalid_state` and is started again; the one being started
 * always fits.
 */
export function loginCookiesOverBudget(cookies: Readonly<Record<string, string | undefined>>, namePrefix: string, ownName: string, ownLength: number): string[] {
  const others = Object.entries(cookies)
    .filter((entry): entry is [string, string] => entry[0].startsWith(namePrefix) && entry[0] !== ownName && entry[1] !== undefined)
    .map(([name, value]) => ({ name, chars: name.length + value.length }))
    .sort((a, b) => b.chars - a.chars);
  let total = ownName.length + ownLength + others.reduce((sum, other) => sum + other.chars, 0);
  const dropped: string[] = [];
  for (const other of others) {
    if (total <= LOGIN_STATE_BUDGET_CHARS) break;
    dropped.push(other.name);
    total -= other.chars;
  }
  return dropped;
}

function sealedChars(dataBytes: number): number {
  return Math.ceil(((dataBytes + SEAL_OVERHEAD_BYTES) * 4) / 3) + 1 + MAC_CHARS;
}

function isAttempt(value: unknown): value is LoginAttempt {
  if (typeof value !== 'object' || value === null) return false;
  const a = value as Record<string, unknown>;
  return (
    typeof a.state === 'string' &&
    typeof a.nonce === 'string' &&
    typeof a.verifier === 'string' &&
    (a.tenant === null || typeof a.tenant === 'string') &&
    typeof a.returnTo === 'string' &&
    typeof a.redirectUri === 'string' &&
    typeof a.expiresAt === 'number'
  );
}
