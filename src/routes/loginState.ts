import type { LoginChecks } from '../oidc/flows.ts';
import type { CookieSealer } from '../session/cookieSealer.ts';

/** What travels from /auth to /callback in the sealed login-state cookie. */
export interface LoginState extends LoginChecks {
  clientId: string;
  tenant: string | null;
  returnTo: string;
  redirectUri: string;
}

export const LOGIN_STATE_TTL_SEC = 600;

const purpose = (clientId: string): string => `login:${clientId}`;

export function sealLoginState(sealer: CookieSealer, state: LoginState, now = Date.now()): string {
  return sealer.seal(purpose(state.clientId), Buffer.from(JSON.stringify(state)), now + LOGIN_STATE_TTL_SEC * 1000);
}

/** The login state, or undefined when the cookie is missing, forged, expired or for another client. */
export function unsealLoginState(sealer: CookieSealer, clientId: string, value: string | undefined): LoginState | undefined {
  if (!value) return undefined;
  const unsealed = sealer.unseal(purpose(clientId), value);
  if (!unsealed) return undefined;
  try {
    const state = JSON.parse(unsealed.data.toString('utf8')) as LoginState;
    return state.clientId === clientId ? state : undefined;
  } catch {
    return undefined;
  }
}
