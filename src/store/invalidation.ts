/**
 * Invalidation listeners and the wire format shared by the backends that carry invalidations between
 * instances (PostgreSQL NOTIFY, Redis PUBLISH): a JSON array of id hashes.
 */

export type InvalidationListener = (idHashes: string[]) => void;

/** A set of listeners where one throwing listener neither stops the others nor the transport. */
export class ListenerSet {
  readonly #listeners = new Set<InvalidationListener>();
  readonly #onError: (err: unknown) => void;

  constructor(onError: (err: unknown) => void) {
    this.#onError = onError;
  }

  get size(): number {
    return this.#listeners.size;
  }

  add(listener: InvalidationListener): void {
    this.#listeners.add(listener);
  }

  emit(idHashes: string[]): void {
    if (idHashes.length === 0) return;
    for (const listener of this.#listeners) {
      try {
        listener(idHashes);
      } catch (err) {
        this.#onError(err);
      }
    }
  }
}

export function encodeInvalidation(idHashes: string[]): string {
  return JSON.stringify(idHashes);
}

/** Parses a message from another instance; anything malformed is dropped rather than thrown at the transport. */
export function decodeInvalidation(message: string): string[] {
  try {
    const parsed: unknown = JSON.parse(message);
    return Array.isArray(parsed) ? parsed.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

/** Splits `items` into chunks of at most `size` (PostgreSQL NOTIFY payloads are limited to 8000 bytes). */
export function chunk<T>(items: T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

/** The default for a store's `onError`: background failures (listener reconnects) must not go unseen. */
export function defaultOnError(backend: string): (err: unknown) => void {
  return (err) => console.warn(`[store:${backend}]`, err instanceof Error ? err.message : err);
}
