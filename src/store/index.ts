/**
 * Picks the session store backend from the configuration. The caller runs `migrate()` (once, at
 * startup), so building a store never touches the schema.
 *
 * Each backend's module, and with it its driver (better-sqlite3, pg, ioredis), is imported only when
 * configured: the drivers are optional dependencies, and a deployment needs only its own (docs/deployment.md).
 */
import type { Config } from '../config/types.ts';
import type { SessionStore } from './types.ts';

export interface CreateStoreOptions {
  /** Background failures (invalidation listener reconnects, idle connection errors); default console.warn. */
  onError?: (err: unknown) => void;
}

/** The configured store's driver is not installed, or its native part cannot load in this Node. */
export class StoreDriverError extends Error {
  override readonly name = 'StoreDriverError';
}

/** The npm package each store needs. */
export const STORE_DRIVERS: Record<Config['db']['type'], string> = {
  sqlite: 'better-sqlite3',
  postgresql: 'pg',
  redis: 'ioredis',
};

export async function createStore(db: Config['db'], options: CreateStoreOptions = {}): Promise<SessionStore> {
  switch (db.type) {
    case 'sqlite': {
      const { createSqliteStore } = await loadBackend(db.type, () => import('./sqlite.ts'));
      return usingDriver(db.type, () => createSqliteStore({ path: db.path, onError: options.onError }));
    }
    case 'postgresql': {
      const { createPostgresStore } = await loadBackend(db.type, () => import('./postgres.ts'));
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
    }
    case 'redis': {
      const { createRedisStore } = await loadBackend(db.type, () => import('./redis.ts'));
      if (db.redisUrl === undefined) throw new Error('db.redisUrl is required for the redis store');
      return createRedisStore({ url: db.redisUrl, keyPrefix: db.redisKeyPrefix, onError: options.onError });
    }
    default: {
      const unknown: never = db.type;
      throw new Error(`unknown db.type ${String(unknown)}`);
    }
  }
}

/** Imports a backend module; a missing driver package becomes one line saying what to install. */
async function loadBackend<T>(type: Config['db']['type'], load: () => Promise<T>): Promise<T> {
  const driver = STORE_DRIVERS[type];
  try {
    return await load();
  } catch (err) {
    const { code, message } = err as { code?: unknown; message?: unknown };
    if (code === 'ERR_MODULE_NOT_FOUND' && String(message).includes(`'${driver}'`)) {
      throw new StoreDriverError(
        `the ${type} store (--db_type ${type}) needs the npm package ${driver}, which is not installed: run \`npm install ${driver}\` ` +
          `(an optional dependency: an install with --omit=optional, or one that removed it, leaves it out)`,
      );
    }
    throw err;
  }
}

/**
 * better-sqlite3 loads its native addon on first use: one built for another Node version (node_modules
 * installed under another Node, say, before `nvm use`) fails here with NODE_MODULE_VERSION or a missing
 * bindings file. Say how to fix it.
 */
function usingDriver<T>(type: Config['db']['type'], create: () => T): T {
  try {
    return create();
  } catch (err) {
    const { code, message } = err as { code?: unknown; message?: unknown };
    const text = String(message);
    if (code === 'ERR_DLOPEN_FAILED' || /NODE_MODULE_VERSION|Could not locate the bindings file|invalid ELF header/.test(text)) {
      const driver = STORE_DRIVERS[type];
      throw new StoreDriverError(
        `the ${type} store's driver ${driver} is installed but its native module does not load in Node.js ${process.versions.node} ` +
          `(installed under another Node version?): run \`npm rebuild ${driver}\` (${text.split('\n')[0]})`,
      );
    }
    throw err;
  }
}

export type { SessionRecord, SessionStore, PayloadUpdate } from './types.ts';
export { StoreUnavailableError } from './types.ts';
