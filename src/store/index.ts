/**
 * Picks the session store backend from the configuration. The caller runs `migrate()` (once, at
 * startup), so building a store never touches the schema.
 */
import type { Config } from '../config/types.ts';
import { createPostgresStore } from './postgres.ts';
import { createRedisStore } from './redis.ts';
import { createSqliteStore } from './sqlite.ts';
import type { SessionStore } from './types.ts';

export interface CreateStoreOptions {
  /** Background failures (invalidation listener reconnects, idle connection errors); default console.warn. */
  onError?: (err: unknown) => void;
}

export function createStore(db: Config['db'], options: CreateStoreOptions = {}): SessionStore {
  switch (db.type) {
    case 'sqlite':
      return createSqliteStore({ path: db.path, onError: options.onError });
    case 'postgresql':
      if (db.url !== undefined) return createPostgresStore({ connectionString: db.url, schema: db.schema, onError: options.onError });
      return createPostgresStore({
        schema: db.schema,
        host: db.host,
        port: db.port,
        database: db.name,
        user: db.username,
        password: db.password,
        onError: options.onError,
      });
    case 'redis':
      if (db.redisUrl === undefined) throw new Error('db.redisUrl is required for the redis store');
      return createRedisStore({ url: db.redisUrl, keyPrefix: db.redisKeyPrefix, onError: options.onError });
    default: {
      const unknown: never = db.type;
      throw new Error(`unknown db.type ${String(unknown)}`);
    }
  }
}

export type { SessionRecord, SessionStore, PayloadUpdate } from './types.ts';
export { StoreUnavailableError } from './types.ts';
