/**
 * Remembers cookie values that unsealed successfully, by their exact string, so a browser that sends the
 * same session cookie on every API call costs one HMAC + AES-GCM verification, not one per request.
 *
 * Why this does not weaken the seal: unsealing is a pure function of (purpose, value, keys) apart from
 * the expiry check, and the keys of a CookieSealer never change. Only values that passed the full check
 * are stored, keyed by the exact string the browser sent (per purpose), so a value that differs in any
 * character (a tampered or re-encoded one) misses and is verified in full. The sealed expiry is checked
 * again on every hit. Bounded: the oldest entries are dropped first, and none lives longer than `maxAgeMs`.
 */
export interface UnsealCacheEntry {
  purpose: string;
  data: Buffer;
  stale: boolean;
  /** The sealed expiry (ms since epoch). */
  expiresAt: number;
  /** When this entry is forgotten (min of expiresAt and insertion + maxAgeMs). */
  until: number;
}

export class UnsealCache {
  // One map for every purpose: a value is only ever valid for the purpose it was sealed for (the MAC covers
  // the purpose), and an entry is only returned for the purpose it was verified for.
  readonly #entries = new Map<string, UnsealCacheEntry>();
  readonly #maxEntries: number;
  readonly #maxAgeMs: number;

  constructor(maxEntries: number, maxAgeMs: number) {
    this.#maxEntries = maxEntries;
    this.#maxAgeMs = maxAgeMs;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The entry for exactly `value` and `purpose`, if it unsealed before and neither it nor the sealed value has expired. */
  get(purpose: string, value: string, now: number): UnsealCacheEntry | undefined {
    const entry = this.#entries.get(value);
    if (!entry || entry.purpose !== purpose) return undefined;
    if (entry.until <= now) {
      this.#entries.delete(value);
      return undefined;
    }
    return entry;
  }

  set(purpose: string, value: string, data: Buffer, stale: boolean, expiresAt: number, now: number): void {
    if (this.#maxEntries <= 0) return;
    this.#entries.delete(value);
    // A copy: the caller keeps (and may hand on) its own buffer.
    this.#entries.set(value, { purpose, data: Buffer.from(data), stale, expiresAt, until: Math.min(expiresAt, now + this.#maxAgeMs) });
    if (this.#entries.size > this.#maxEntries) {
      // Insertion order is age order: drop the oldest.
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }

  clear(): void {
    this.#entries.clear();
  }
}
