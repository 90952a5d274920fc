/** The last part of an entry's life in which `refreshDue` says so: a fifth of the TTL (1 s of the default 5 s). */
const REFRESH_AHEAD_FRACTION = 0.2;

/**
 * A bounded map whose entries expire after `ttlMs`: the in-process cache of resolved sessions.
 * Insertion order doubles as age order, so eviction drops the oldest entries first.
 */
export class TtlCache<V> {
  readonly #entries = new Map<string, { value: V; until: number }>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;

  constructor(ttlMs: number, maxEntries: number) {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
  }

  get enabled(): boolean {
    return this.#ttlMs > 0;
  }

  get(key: string, now: number): V | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.until <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  /**
   * True while `key` is cached but within the last fifth of its TTL: time to reload it in the background,
   * so that requests keep being answered from memory and none waits for the store when it expires.
   */
  refreshDue(key: string, now: number): boolean {
    const entry = this.#entries.get(key);
    return entry !== undefined && entry.until - now <= this.#ttlMs * REFRESH_AHEAD_FRACTION;
  }

  set(key: string, value: V, now: number): void {
    if (!this.enabled) return;
    this.#entries.delete(key);
    this.#entries.set(key, { value, until: now + this.#ttlMs });
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
