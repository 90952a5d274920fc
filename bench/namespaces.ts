/**
 * Removal of the namespaces the benchmark's stores live in: a PostgreSQL schema, or every key under a
 * Redis prefix. Each benchmark store gets a namespace of its own (random suffix), so removing it never
 * touches another run's or a test's data.
 */
import { Redis } from 'ioredis';
import pg from 'pg';

export async function dropPostgresSchema(postgresUrl: string, schema: string): Promise<void> {
  const admin = new pg.Client({ connectionString: postgresUrl });
  await admin.connect();
  try {
    await admin.query(`drop schema if exists "${schema.replaceAll('"', '""')}" cascade`);
  } finally {
    await admin.end();
  }
}

export async function unlinkRedisPrefix(redisUrl: string, keyPrefix: string): Promise<void> {
  const admin = new Redis(redisUrl);
  try {
    for await (const keys of admin.scanStream({ match: `${keyPrefix}*`, count: 5000 }) as AsyncIterable<string[]>) {
      if (keys.length > 0) await admin.unlink(...keys);
    }
  } finally {
    admin.disconnect();
  }
}
