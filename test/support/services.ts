/**
 * The machine's PostgreSQL and Redis, as the suites that need them reach them. A suite whose service is
 * missing is skipped with the probe's message locally, and fails when CI=true (see `requireService`).
 */
import { Redis } from 'ioredis';
import pg from 'pg';

export const PG_URL = process.env.TH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.TH_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Why PostgreSQL cannot be used, or undefined when it can. */
export async function probePostgres(url = PG_URL): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('select 1');
    return undefined;
  } catch (err) {
    return `cannot connect to ${url} (${err instanceof Error ? err.message || err.name : String(err)}); set TH_TEST_POSTGRES_URL`;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Why Redis cannot be used, or undefined when it can. */
export async function probeRedis(url = REDIS_URL): Promise<string | undefined> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  // connect() rejects with a generic "Connection is closed."; the socket error says why.
  let cause: unknown;
  client.on('error', (err) => (cause ??= err));
  try {
    await client.connect();
    await client.ping();
    return undefined;
  } catch (err) {
    const reason = cause ?? err;
    return `cannot connect to ${url} (${reason instanceof Error ? reason.message : String(reason)}); set TH_TEST_REDIS_URL`;
  } finally {
    client.disconnect();
  }
}

/** Fails under CI=true when a service is missing; elsewhere warns, so the caller can skip. */
export function requireService(name: string, unavailable: string | undefined): boolean {
  if (unavailable === undefined) return true;
  if (process.env.CI === 'true') throw new Error(`${name} is required in CI: ${unavailable}`);
  console.warn(`[${name}] SKIPPING: ${unavailable}`);
  return false;
}
