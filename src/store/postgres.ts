/**
 * PostgreSQL backend: Kysely over a pg Pool, all tables in one schema, invalidation by LISTEN/NOTIFY.
 * Connection trouble surfaces as StoreUnavailableError within ~connectTimeoutMs; the pool replaces
 * broken connections by itself, so the store recovers when the database comes back.
 */
import { createHash } from 'node:crypto';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { Migrator } from 'kysely/migration';
import pg from 'pg';
import { isNetworkError, mapUnavailable } from './errors.ts';
import { ListenerSet, chunk, decodeInvalidation, defaultOnError, encodeInvalidation } from './invalidation.ts';
import type { InvalidationListener } from './invalidation.ts';
import { MIGRATION_LOCK_TABLE, MIGRATION_TABLE, storeMigrationProvider, throwIfMigrationFailed } from './migrations.ts';
import { startPgListener } from './pgListener.ts';
import type { PgListener } from './pgListener.ts';
import { createSqlCore, postgresTraits } from './sqlCommon.ts';
import type { StoreDatabase } from './tables.ts';
import type { SessionStore } from './types.ts';

export interface PostgresStoreOptions {
  /** `postgres://user:pass@host:port/db`; wins over the discrete fields. */
  connectionString?: string;
  host?: string;
  port?: number;
  database?: string;
  user?: string;
  password?: string;
  /** Schema holding the tables (created by migrate()); default `public`. */
  schema?: string;
  /** Maximum pooled connections; default 10. */
  poolSize?: number;
  /** Connect, and wait for a free pooled connection, at most this long; default 2000 ms. */
  connectTimeoutMs?: number;
  /** Server-side statement_timeout for normal queries; default 10 000 ms. Migrations are not limited. */
  statementTimeoutMs?: number;
  onError?: (err: unknown) => void;
}

/** OID of int8/BIGINT: our times are ms since the epoch, far below 2^53, so a JS number is exact. */
const INT8_OID = 20;

/** Per-connection type parsers (not pg's global registry, which other code in the process may own). */
const typeParsers: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format ?? 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

/** A PostgreSQL identifier, double-quoted, for text that to_regclass parses. */
function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Advisory-lock class id for our migrations (ASCII "tH"); the second key is the schema's hash. */
const MIGRATION_LOCK_CLASS = 0x7448;

/** SQLSTATEs meaning the server is unreachable, shutting down, overloaded or cancelled our statement. */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '57014']);

/** pg's own errors for dead or slow connections carry no code, only these messages. */
const UNAVAILABLE_MESSAGES =
  /timeout exceeded when trying to connect|Connection terminated|Query read timeout|not queryable|connection timeout|ended unexpectedly/i;

export function isPgUnavailable(err: unknown): boolean {
  if (isNetworkError(err)) return true;
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') {
    // Class 08: connection exceptions.
    if (err.code.startsWith('08') || UNAVAILABLE_SQLSTATES.has(err.code)) return true;
  }
  return err instanceof Error && UNAVAILABLE_MESSAGES.test(err.message);
}

function clientConfig(options: PostgresStoreOptions): pg.ClientConfig {
  const connectTimeoutMs = options.connectTimeoutMs ?? 2000;
  const base: pg.ClientConfig = {
    connectionTimeoutMillis: connectTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    types: typeParsers,
    application_name: 'token-handler',
  };
  if (options.connectionString !== undefined) return { ...base, connectionString: options.connectionString };
  return {
    ...base,
    host: options.host,
    port: options.port,
    database: options.database,
    user: options.user,
    password: options.password,
  };
}

/** A NOTIFY channel per schema, so test schemas and tenants sharing a database do not cross-talk. */
function channelFor(schema: string): string {
  const name = `th_invalidate_${schema}`;
  // Channel names are identifiers (63 bytes at most).
  return Buffer.byteLength(name) <= 63 ? name : `th_invalidate_${createHash('sha256').update(schema).digest('hex').slice(0, 40)}`;
}

/**
 * pg emits 'error' on a client whose connection dies. The pool listens only while a client is idle; a
 * client checked out at that moment would have no listener and crash the process, although its query
 * already fails (and becomes StoreUnavailableError) and the pool discards it on release. So every
 * client gets a permanent listener, and the pool's own idle-client errors are reported.
 */
function guardPool(pool: pg.Pool, onError: (err: unknown) => void): void {
  pool.on('error', (err) => onError(err));
  pool.on('connect', (client) => client.on('error', () => {}));
}

export function createPostgresStore(options: PostgresStoreOptions): SessionStore {
  const schema = options.schema ?? 'public';
  const onError = options.onError ?? defaultOnError('postgresql');
  const baseConfig = clientConfig(options);

  const pool = new pg.Pool({
    ...baseConfig,
    max: options.poolSize ?? 10,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.statementTimeoutMs ?? 10_000,
  });
  guardPool(pool, onError);

  const db = new Kysely<StoreDatabase>({ dialect: new PostgresDialect({ pool }) }).withSchema(schema);
  const core = createSqlCore(db, postgresTraits);

  const channel = channelFor(schema);
  const listeners = new ListenerSet(onError);
  let listener: PgListener | undefined;

  const store = {
    kind: 'postgresql' as const,
    ...core,

    async migrate(): Promise<void> {
      // A private single-connection Kysely without statement_timeout: migrations may legitimately run
      // long, and holding the lock on a connection outside the pool can never starve the pool.
      const migrationPool = new pg.Pool({ ...baseConfig, max: 1 });
      guardPool(migrationPool, onError);
      const migrationDb = new Kysely<StoreDatabase>({ dialect: new PostgresDialect({ pool: migrationPool }) });
      try {
        await migrationDb.connection().execute(async (conn) => {
          // Kysely takes its own advisory lock, but only around the migrations proper: creating the schema
          // and its bookkeeping tables happens before it, unlocked. Our per-schema lock covers all of it,
          // so instances starting together simply queue here; it is released with the session if we die.
          await sql`select pg_advisory_lock(${MIGRATION_LOCK_CLASS}, hashtext(${schema}))`.execute(conn);
          try {
            await sql`create schema if not exists ${sql.id(schema)}`.execute(conn);
            const bookkeeping = await sql<{ t: string | null }>`select to_regclass(${`${quoteIdent(schema)}.${quoteIdent(MIGRATION_TABLE)}`})::text as t`.execute(conn);
            const hadBookkeeping = bookkeeping.rows[0]?.t != null;
            // Tables of a release before 0004 are renamed only when our own bookkeeping says we made them.
            const renameUnprefixed =
              hadBookkeeping &&
              (await sql`select 1 from ${sql.id(schema, MIGRATION_TABLE)} where name = '0001_initial'`.execute(conn)).rows.length > 0;
            const migrator = new Migrator({
              db: conn,
              provider: storeMigrationProvider({ schema, renameUnprefixed }),
              migrationTableSchema: schema,
              migrationTableName: MIGRATION_TABLE,
              migrationLockTableName: MIGRATION_LOCK_TABLE,
            });
            try {
              throwIfMigrationFailed(await migrator.migrateToLatest());
            } catch (err) {
              // The migrations ran in one transaction and rolled back; Kysely made its bookkeeping tables
              // before that. On a first start they are all we would leave in someone else's database: drop them.
              if (!hadBookkeeping) {
                await sql`drop table if exists ${sql.id(schema, MIGRATION_TABLE)}, ${sql.id(schema, MIGRATION_LOCK_TABLE)}`.execute(conn);
              }
              throw err;
            }
          } finally {
            await sql`select pg_advisory_unlock(${MIGRATION_LOCK_CLASS}, hashtext(${schema}))`.execute(conn);
          }
        });
      } finally {
        await migrationDb.destroy();
      }
    },

    async ping(): Promise<void> {
      await sql`select 1`.execute(db);
    },

    async close(): Promise<void> {
      await listener?.close();
      await db.destroy();
    },

    async publishInvalidation(idHashes: string[]): Promise<void> {
      if (idHashes.length === 0) return;
      // NOTIFY payloads are limited to 8000 bytes: ~100 hex SHA-256 ids per message.
      const payloads = chunk(idHashes, 100).map(encodeInvalidation);
      await sql`select pg_notify(${channel}, p) from unnest(${payloads}::text[]) as p`.execute(db);
    },

    onInvalidation(handler: InvalidationListener): void {
      listeners.add(handler);
      // The LISTEN connection is opened on first use, so stores that never listen (CLI tools) hold none.
      listener ??= startPgListener({
        clientConfig: baseConfig,
        channel,
        onMessage: (payload) => listeners.emit(decodeInvalidation(payload)),
        onError,
      });
    },
  } satisfies SessionStore;

  return mapUnavailable(store, 'postgresql', isPgUnavailable);
}
