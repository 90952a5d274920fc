/**
 * Versioned schema migrations for the SQL backends, served to Kysely's `Migrator` by an in-code provider
 * (no migration files to ship or locate at run time). The same migrations run on SQLite and PostgreSQL,
 * so they only use portable column types. Never edit a migration that has shipped: add a new one.
 */
import type { Kysely } from 'kysely';
import type { Migration, MigrationProvider } from 'kysely/migration';

/**
 * Kysely's migration API is typed over `Kysely<any>`: a migration runs against whatever schema exists
 * at that point in history, not against today's `StoreDatabase`.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

/** The migration bookkeeping tables, named for this service so they never mix with another app's. */
export const MIGRATION_TABLE = 'token_handler_migration';
export const MIGRATION_LOCK_TABLE = 'token_handler_migration_lock';

function schemaOf(db: AnyDb, schema: string | undefined) {
  return schema === undefined ? db.schema : db.schema.withSchema(schema);
}

/** @param schema PostgreSQL schema to create the tables in; undefined for SQLite. */
export function storeMigrations(schema?: string): Record<string, Migration> {
  return {
    '0001_initial': {
      async up(db: AnyDb) {
        const s = schemaOf(db, schema);
        await s
          .createTable('sessions')
          .addColumn('id_hash', 'text', (c) => c.primaryKey())
          .addColumn('client_id', 'text', (c) => c.notNull())
          .addColumn('tenant', 'text')
          .addColumn('issuer', 'text', (c) => c.notNull())
          .addColumn('sub', 'text', (c) => c.notNull())
          .addColumn('sid', 'text')
          .addColumn('payload', 'text', (c) => c.notNull())
          .addColumn('access_expires_at', 'bigint')
          .addColumn('created_at', 'bigint', (c) => c.notNull())
          .addColumn('last_used_at', 'bigint', (c) => c.notNull())
          .addColumn('expires_at', 'bigint', (c) => c.notNull())
          .addColumn('idle_expires_at', 'bigint', (c) => c.notNull())
          .addColumn('version', 'integer', (c) => c.notNull())
          .addColumn('user_agent', 'text')
          .addColumn('lease_owner', 'text')
          .addColumn('lease_expires_at', 'bigint')
          .execute();
        // Back-channel logout looks sessions up by (issuer, sub) and (issuer, sid); the sweeper by the two expiries.
        await s.createIndex('sessions_issuer_sub_idx').on('sessions').columns(['issuer', 'sub']).execute();
        await s.createIndex('sessions_issuer_sid_idx').on('sessions').columns(['issuer', 'sid']).execute();
        await s.createIndex('sessions_expires_at_idx').on('sessions').column('expires_at').execute();
        await s.createIndex('sessions_idle_expires_at_idx').on('sessions').column('idle_expires_at').execute();

        await s
          .createTable('client_registrations')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('sealed', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'bigint', (c) => c.notNull())
          .execute();
      },
      async down(db: AnyDb) {
        const s = schemaOf(db, schema);
        await s.dropTable('client_registrations').execute();
        await s.dropTable('sessions').execute();
      },
    },
    '0002_active_sessions_index': {
      // countActive (the active-sessions gauge) filters on both expiries: with both in one index it reads
      // only the index, and SQLite can count it in slices (see sqlite.ts). The composite also serves the
      // sweeper's idle_expires_at range, so it replaces the single-column index.
      async up(db: AnyDb) {
        const s = schemaOf(db, schema);
        await s.createIndex('sessions_idle_expires_expires_idx').on('sessions').columns(['idle_expires_at', 'expires_at']).execute();
        await s.dropIndex('sessions_idle_expires_at_idx').execute();
      },
      async down(db: AnyDb) {
        const s = schemaOf(db, schema);
        await s.createIndex('sessions_idle_expires_at_idx').on('sessions').column('idle_expires_at').execute();
        await s.dropIndex('sessions_idle_expires_expires_idx').execute();
      },
    },
  };
}

export function storeMigrationProvider(schema?: string): MigrationProvider {
  const migrations = storeMigrations(schema);
  return { getMigrations: async () => migrations };
}

/** Kysely's migrator reports failures in its result instead of throwing; we want a throw. */
export function throwIfMigrationFailed(result: { error?: unknown }): void {
  if (result.error !== undefined) {
    throw result.error instanceof Error ? result.error : new Error(`migration failed: ${String(result.error)}`);
  }
}
