/**
 * Turning "the backend is unreachable" into `StoreUnavailableError` (which the HTTP layer maps to 503),
 * while letting every other error (a bug, a constraint violation) through unchanged.
 */
import { StoreUnavailableError } from './types.ts';

/** Socket-level error codes that mean "cannot talk to the server right now". */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
]);

function codeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  return typeof err.code === 'string' ? err.code : undefined;
}

export function messageOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(messageOf).join('; ');
  return err instanceof Error ? err.message : String(err);
}

/** True for socket errors, also when wrapped in the AggregateError Node raises for dual-stack connects. */
export function isNetworkError(err: unknown): boolean {
  const code = codeOf(err);
  if (code !== undefined && NETWORK_CODES.has(code)) return true;
  if (err instanceof AggregateError) return err.errors.some(isNetworkError);
  return false;
}

/** Methods of a store that are synchronous and so are passed through unwrapped. */
const SYNC_METHODS = new Set(['onInvalidation']);

/**
 * Wraps every async method of `target` (a plain object) so errors that `isUnavailable` accepts become
 * StoreUnavailableError.
 */
export function mapUnavailable<T extends object>(
  target: T,
  backend: string,
  isUnavailable: (err: unknown) => boolean,
): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(target)) {
    if (typeof value !== 'function' || SYNC_METHODS.has(name)) {
      wrapped[name] = value;
      continue;
    }
    const method = value as (...args: unknown[]) => unknown;
    wrapped[name] = async (...args: unknown[]) => {
      try {
        return await method.apply(target, args);
      } catch (err) {
        if (err instanceof StoreUnavailableError || !isUnavailable(err)) throw err;
        throw new StoreUnavailableError(`${backend} unavailable: ${messageOf(err)}`, { cause: err });
      }
    };
  }
  return wrapped as T;
}
