/**
 * The timing of the cross-instance refresh lease (see SessionService and docs/fleet.md).
 *
 * A lease is short and renewed while its refresh runs, so a holder that dies blocks the others for
 * seconds, not for a fixed long lease. Expiry alone does not let another instance take it over: a store
 * outage expires every lease, while its holders may be alive with new tokens they could not write yet
 * (presenting the old refresh token then would be reuse). So a waiter takes an expired lease over only
 * after it has watched that same lease (same holder, same expiry: not renewed) for TAKEOVER_WATCH_MS
 * with the store reachable all along; a live holder renews or writes well within that once the store
 * is back (its write retries every WRITE_RETRY_MAX_MS at most, Redis reconnects within 1 s).
 */
import type { LeaseHolder } from '../store/types.ts';

/**
 * The most calls to the IdP one refresh makes, each cut at `--oidc_timeout`: discovery (when the cached
 * metadata has expired), the refresh grant, the key set for a new ID token, one refetch of it for an unknown
 * `kid`, and userinfo.
 */
export const REFRESH_IDP_CALLS = 5;

/** The longest a refresh can take: every IdP call at its timeout, plus a second of local work. */
export function longestRefreshMs(oidcTimeoutMs: number): number {
  return REFRESH_IDP_CALLS * oidcTimeoutMs + 1_000;
}

/** How long a lease lasts from its last renewal, on the store's clock. */
export const LEASE_MS = 3_000;
/** How often a holder renews its lease while its refresh runs. */
export const LEASE_RENEW_EVERY_MS = 1_000;
/** How long a waiter watches an expired, unrenewed lease, with the store reachable, before taking it over. */
export const TAKEOVER_WATCH_MS = 3_000;
/** A watch interrupted for longer than this (store errors, a stalled event loop) starts again. */
const WATCH_GAP_MS = 1_500;
/** How often a waiter looks at the store for the holder's result. */
export const LEASE_POLL_MS = 50;
/** Backoff of the retried write of refreshed tokens while the store is unreachable. */
export const WRITE_RETRY_MIN_MS = 100;
export const WRITE_RETRY_MAX_MS = 500;
/** How long a shutdown waits for refreshed tokens that the store has not taken yet (within the 25 s grace). */
export const UNWRITTEN_DRAIN_MS = 5_000;

/**
 * A waiter's continuous observation of one lease. `takeOver()` names the holder once the lease has
 * been seen expired and unchanged for TAKEOVER_WATCH_MS of uninterrupted watching (local monotonic
 * time: a duration, not an instant, so no two clocks are compared).
 */
export class LeaseWatch {
  #holder: LeaseHolder | undefined;
  #since = 0;
  #seen = 0;
  #expired = false;

  observe(holder: LeaseHolder, expired: boolean, at = performance.now()): void {
    const same = this.#holder !== undefined && this.#holder.owner === holder.owner && this.#holder.expiresAt === holder.expiresAt;
    if (!same || at - this.#seen > WATCH_GAP_MS) {
      this.#holder = holder;
      this.#since = at;
    }
    this.#seen = at;
    this.#expired = expired;
  }

  /** The holder to name in a takeover, when the watch allows one. */
  takeOver(at = performance.now()): LeaseHolder | undefined {
    if (this.#holder === undefined || !this.#expired) return undefined;
    if (at - this.#seen > WATCH_GAP_MS || at - this.#since < TAKEOVER_WATCH_MS) return undefined;
    return this.#holder;
  }
}
