/**
 * Keeps the token endpoint's answer to a grant, so that an answer openid-client could not accept (its ID
 * token signed by a key not fetched yet, or issued by one tenant of a multi-tenant issuer) can be validated
 * again without asking the IdP twice: a code is single-use and a rotated refresh token is consumed, so a
 * second request would fail, or look like a replay and end the user's session at the IdP.
 *
 * openid-client's `customFetch` hook is the only way in: every configuration the registry builds fetches
 * through `captureFetch`, which, inside `captureTokenResponse`, keeps a copy of the token endpoint's response
 * and, inside `replayTokenResponse`, answers the token request with that copy instead of calling the IdP.
 * openid-client then does all the validation again, as on the first try. Calls are told apart with
 * AsyncLocalStorage, so concurrent grants never see each other's responses.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type * as oidc from 'openid-client';

/** A token endpoint response as received: status, headers, body text. Holds tokens: never log it. */
export interface CapturedResponse {
  status: number;
  headers: [string, string][];
  body: string;
}

interface Slot {
  /** The token endpoint to watch (only its POSTs are captured or replayed). */
  tokenEndpoint: string;
  captured?: CapturedResponse;
  replay?: CapturedResponse;
}

const slots = new AsyncLocalStorage<Slot>();

/** The fetch every registry configuration uses (`configuration[oidc.customFetch]`). */
export const captureFetch: oidc.CustomFetch = async (url, options) => {
  const slot = slots.getStore();
  if (!slot || options.method !== 'POST' || url !== slot.tokenEndpoint) return fetch(url, options);
  if (slot.replay) return toResponse(slot.replay);
  const response = await fetch(url, options);
  // Read a copy now: by the time validation fails, openid-client has consumed the original.
  slot.captured = { status: response.status, headers: [...response.headers], body: await response.clone().text() };
  return response;
};

export type Captured<T> = { ok: true; value: T } | { ok: false; error: unknown; response: CapturedResponse | undefined };

/** Runs a grant, keeping what the token endpoint answered in case the grant throws. */
export async function captureTokenResponse<T>(tokenEndpoint: string, grant: () => Promise<T>): Promise<Captured<T>> {
  const slot: Slot = { tokenEndpoint };
  try {
    return { ok: true, value: await slots.run(slot, grant) };
  } catch (error) {
    return { ok: false, error, response: slot.captured };
  }
}

/** Runs a grant whose token request is answered with `response` (the IdP is not called). */
export function replayTokenResponse<T>(tokenEndpoint: string, response: CapturedResponse, grant: () => Promise<T>): Promise<T> {
  return slots.run({ tokenEndpoint, replay: response }, grant);
}

/** The captured response without its ID token, for openid-client to process as a plain OAuth response. */
export function withoutIdToken(response: CapturedResponse): CapturedResponse | undefined {
  const body = jsonObject(response.body);
  if (!body || !('id_token' in body)) return undefined;
  delete body.id_token;
  return { ...response, body: JSON.stringify(body) };
}

/** The ID token of a captured successful response, if it has one. */
export function capturedIdToken(response: CapturedResponse): string | undefined {
  const idToken = jsonObject(response.body)?.id_token;
  return typeof idToken === 'string' ? idToken : undefined;
}

function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function toResponse(captured: CapturedResponse): Response {
  return new Response(captured.body, { status: captured.status, headers: captured.headers });
}
