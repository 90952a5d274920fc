/**
 * Versioned schema migrations for the SQL backends, served to Kysely's `Migrator` by an in-code provider
 * (no migration files to ship or locate at run time). The same migrations run on SQLite and PostgreSQL,
 * so they only use portable column types. Never edit a migration that has shipped: add a new one.
 */
import { sql, type Kysely } from 'kysely';
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

/** Our table names, and the unprefixed names releases before 0004 used. */
export const TABLES = {
  sessions: 'token_handler_sessions',
  clientRegistrations: 'token_handler_client_registrations',
  usedTokens: 'token_handler_used_tokens',
} as const;

/**
 * The tables of releases before migration 0004, with a column only ours has: go-token-handler's `sessions`
 * (session_id, subject, access_token, ...) shares the name, never the shape, and is never touched.
 */
const UNPREFIXED: readonly { from: string; to: string; ourColumn: string; indexes: readonly string[] }[] = [
  {
    from: 'sessions',
    to: TABLES.sessions,
    ourColumn: 'id_hash',
    indexes: ['sessions_issuer_sub_idx', 'sessions_issuer_sid_idx', 'sessions_expires_at_idx', 'sessions_idle_expires_expires_idx'],
  },
  { from: 'client_registrations', to: TABLES.clientRegistrations, ourColumn: 'sealed', indexes: [] },
  { from: 'used_tokens', to: TABLES.usedTokens, ourColumn: 'key', indexes: ['used_tokens_expires_at_idx'] },
];

export interface MigrationOptions {
  /** PostgreSQL schema to create the tables in; undefined for SQLite. */
  schema?: string;
  /**
   * Our migration table already recorded 0001_initial before this run: the tables were created by an
   * earlier release, under unprefixed names, and 0004 renames them. A fresh install (beside
   * go-token-handler's tables or not) creates prefixed tables from the start and renames nothing.
   */
  renameUnprefixed?: boolean;
}

/**
 * The migrations. Tables and indexes are created with the `token_handler_` prefix: an install that ran
 * 0001-0003 under an earlier release (unprefixed names) has them recorded and never runs them again; 0004
 * renames its tables. Migration names are what Kysely records, so they stay as they were.
 */
export function storeMigrations(options: MigrationOptions | string = {}): Record<string, Migration> {
  const { schema, renameUnprefixed = false } = typeof options === 'string' ? { schema: options } : options;
  const T = TABLES;
  return {
    '0001_initial': {
      async up(db: AnyDb) {
        const s = schemaOf(db, schema);
        await s
          .createTable(T.sessions)
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
        await s.createIndex(`${T.sessions}_issuer_sub_idx`).on(T.sessions).columns(['issuer', 'sub']).execute();
        await s.createIndex(`${T.sessions}_issuer_sid_idx`).on(T.sessions).columns(['issuer', 'sid']).execute();
        await s.createIndex(`${T.sessions}_expires_at_idx`).on(T.sessions).column('expires_at').execute();
        await s.createIndex(`${T.sessions}_idle_expires_at_idx`).on(T.sessions).column('idle_expires_at').execute();

        await s
          .createTable(T.clientRegistrations)
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('sealed', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'bigint', (c) => c.notNull())
          .execute();
      },
      async down(db: AnyDb) {
        const s = schemaOf(db, schema);
        await s.dropTable(T.clientRegistrations).execute();
        await s.dropTable(T.sessions).execute();
      },
    },
    '0002_active_sessions_index': {
      // countActive (the active-sessions gauge) filters on both expiries: with both in one index it reads
      // only the index, and SQLite can count it in slices (see sqlite.ts). The composite also serves the
      // sweeper's idle_expires_at range, so it replaces the single-column index.
      async up(db: AnyDb) {
        const s = schemaOf(db, schema);
        await s.createIndex(`${T.sessions}_idle_expires_expires_idx`).on(T.sessions).columns(['idle_expires_at', 'expires_at']).execute();
        await s.dropIndex(`${T.sessions}_idle_expires_at_idx`).execute();
      },
      async down(db: AnyDb) {
        const s = schemaOf(db, schema);
        await s.createIndex(`${T.sessions}_idle_expires_at_idx`).on(T.sessions).column('idle_expires_at').execute();
        await s.dropIndex(`${T.sessions}_idle_expires_expires_idx`).execute();
      },
    },
    '0003_used_tokens': {
      // Back-channel logout tokens seen, by a hash of (iss, jti): a replay is refused by every instance.
      async up(db: AnyDb) {
        const s = schemaOf(db, schema);
        await s
          .createTable(T.usedTokens)
          .addColumn('key', 'text', (c) => c.primaryKey())
          .addColumn('expires_at', 'bigint', (c) => c.notNull())
          .execute();
        await s.createIndex(`${T.usedTokens}_expires_at_idx`).on(T.usedTokens).column('expires_at').execute();
      },
      async down(db: AnyDb) {
        await schemaOf(db, schema).dropTable(T.usedTokens).execute();
      },
    },
    '0004_prefixed_table_names': {
      // Earlier releases named their tables `sessions`, `client_registrations`, `used_tokens`; the first
      // collides with go-token-handler's `sessions`, beside which token-handler is meant to start. Only an
      // install whose migration table recorded 0001 before this run has such tables, and only a table of
      // our shape is renamed (with its indexes, and on PostgreSQL its primary key constraint).
      async up(db: AnyDb) {
        if (!renameUnprefixed) return;
        for (const table of UNPREFIXED) {
          if (!(await hasColumn(db, schema, table.from, table.ourColumn))) continue;
          if (await tableExists(db, schema, table.to)) continue;
          const s = schemaOf(db, schema);
          await s.alterTable(table.from).renameTo(table.to).execute();
          if (schema === undefined) continue;
          // PostgreSQL keeps index and constraint names across a rename: free go-token-handler's `sessions_pkey` too.
          await sql`alter table ${sql.id(schema, table.to)} rename constraint ${sql.id(`${table.from}_pkey`)} to ${sql.id(`${table.to}_pkey`)}`.execute(db);
          for (const index of table.indexes) {
            await sql`alter index if exists ${sql.id(schema, index)} rename to ${sql.id(`token_handler_${index}`)}`.execute(db);
          }
        }
      },
      async down() {
        // Renaming back would collide with go-token-handler's table again: not undone.
      },
    },
  };
}

async function tableExists(db: AnyDb, schema: string | undefined, table: string): Promise<boolean> {
  if (schema === undefined) {
    const { rows } = await sql<{ n: number }>`select count(*) as n from sqlite_master where type = 'table' and name = ${table}`.execute(db);
    return Number(rows[0]?.n ?? 0) > 0;
  }
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from information_schema.tables where table_schema = ${schema} and table_name = ${table}`.execute(db);
  return Number(rows[0]?.n ?? 0) > 0;
}

async function hasColumn(db: AnyDb, schema: string | undefined, table: string, column: string): Promise<boolean> {
  if (schema === undefined) {
    const { rows } = await sql<{ name: string }>`select name from pragma_table_info(${table})`.execute(db);
    return rows.some((row) => row.name === column);
  }
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from information_schema.columns where table_schema = ${schema} and table_name = ${table} and column_name = ${column}`.execute(db);
  return Number(rows[0]?.n ?? 0) > 0;
}

export function storeMigrationProvider(options: MigrationOptions = {}): MigrationProvider {
  const migrations = storeMigrations(options);
  return { getMigrations: async () => migrations };
}

/** Kysely's migrator reports failures in its result instead of throwing; we want a throw. */
export function throwIfMigrationFailed(result: { error?: unknown }): void {
  if (result.error !== undefined) {
    throw result.error instanceof Error ? result.error : new Error(`migration failed: ${String(result.error)}`);
  }
}
