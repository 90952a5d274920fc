/**
 * SQLite backend: one better-sqlite3 connection per store (SQLite serialises writers anyway), WAL so
 * readers never wait for the writer, and in-process invalidation (a SQLite file is one process's store).
 */
import { mkdirSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { Migrator } from 'kysely/migration';
import { mapUnavailable } from './errors.ts';
import { ListenerSet, defaultOnError } from './invalidation.ts';
import type { InvalidationListener } from './invalidation.ts';
import { MIGRATION_LOCK_TABLE, MIGRATION_TABLE, storeMigrationProvider, throwIfMigrationFailed } from './migrations.ts';
import { createSqlCore, sqliteTraits } from './sqlCommon.ts';
import { SESSION_COLUMNS, rowToRecord } from './tables.ts';
import type { SessionRow, StoreDatabase } from './tables.ts';
import type { SessionRecord, SessionStore } from './types.ts';

export interface SqliteStoreOptions {
  /** Database file; created (with its directory) on first start. `:memory:` for a throwaway store. */
  path: string;
  /** How long a statement waits for another process's write lock before failing. */
  busyTimeoutMs?: number;
  /** How long migrate() waits for another process that is migrating the same file. */
  migrateLockTimeoutMs?: number;
  /**
   * How often a worker thread checkpoints the WAL (default 1000 ms); 0 leaves it to SQLite's automatic
   * checkpoint, which runs on the event loop (see sqliteCheckpointer.ts). Files only, not `:memory:`.
   */
  checkpointIntervalMs?: number;
  /** Index entries countActive reads per synchronous step (default 20 000); tests make it small. */
  countSliceSize?: number;
  onError?: (err: unknown) => void;
}

/**
 * Stores of the same file in this process share invalidations, so "every instance on this store"
 * holds for SQLite too (other processes on the same file are not reached: SQLite has no pub/sub).
 */
const busesByFile = new Map<string, Set<ListenerSet>>();

/** SQLite result codes that mean "cannot get at the file right now" rather than a bug. */
function isSqliteUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null || !('code' in err) || typeof err.code !== 'string') return false;
  return /^SQLITE_(BUSY|LOCKED|IOERR|CANTOPEN|FULL|READONLY|PROTOCOL)/.test(err.code);
}

export function createSqliteStore(options: SqliteStoreOptions): SessionStore {
  const onError = options.onError ?? defaultOnError('sqlite');
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  const inMemory = options.path === ':memory:' || options.path === '';
  if (!inMemory) mkdirSync(dirname(resolve(options.path)), { recursive: true });

  const database = new Database(options.path);
  if (!inMemory) enableWal(database, busyTimeoutMs);
  // NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the last commits.
  database.pragma('synchronous = NORMAL');
  database.pragma(`busy_timeout = ${busyTimeoutMs}`);
  // SQLite's default page cache is 2 MB: at a million sessions every index lookup of a sweep batch or a
  // login then reads pages through the OS (measured 11k deletes/s instead of 70k). 64 MB holds the hot
  // index pages; it is an upper bound, allocated as used.
  database.pragma('cache_size = -65536');

  const db = new Kysely<StoreDatabase>({ dialect: new SqliteDialect({ database }) });
  const core = createSqlCore(db, sqliteTraits);

  const checkpointIntervalMs = options.checkpointIntervalMs ?? 1000;
  const checkpointer = inMemory || checkpointIntervalMs <= 0 ? undefined : startCheckpointer(resolve(options.path), checkpointIntervalMs, database, onError);

  // `get` and `touch` run on every proxied request: direct prepared statements skip Kysely's per-call
  // query compilation, connection mutex and better-sqlite3 prepare. Measured on 10k sessions with 2 KB
  // payloads: get 7.5 µs vs 80 µs through Kysely, touch 27 µs vs 69 µs. They bypass Kysely's mutex,
  // which is safe because every Kysely query here is a single statement (no transaction spans an
  // await) except migrate(), which runs before traffic. Prepared lazily: the table exists after migrate().
  let getStatement: Database.Statement<[string], SessionRow> | undefined;
  let activeStatements: ActiveCountStatements | undefined;
  let touchStatement: Database.Statement<[number, number, string]> | undefined;
  const prepareGet = () =>
    (getStatement ??= database.prepare<[string], SessionRow>(
      `select ${SESSION_COLUMNS.join(', ')} from token_handler_sessions where id_hash = ?`,
    ));
  const prepareTouch = () =>
    (touchStatement ??= database.prepare<[number, number, string]>(
      'update token_handler_sessions set last_used_at = ?, idle_expires_at = min(?, expires_at) where id_hash = ?',
    ));

  const fileKey = inMemory ? undefined : resolve(options.path);
  const listeners = new ListenerSet(onError);
  if (fileKey !== undefined) {
    let bus = busesByFile.get(fileKey);
    if (bus === undefined) busesByFile.set(fileKey, (bus = new Set()));
    bus.add(listeners);
  }

  const store = {
    kind: 'sqlite' as const,
    ...core,

    async get(idHash: string): Promise<SessionRecord | undefined> {
      const row = prepareGet().get(idHash);
      return row === undefined ? undefined : rowToRecord(row);
    },

    async touch(idHash: string, lastUsedAt: number, idleExpiresAt: number): Promise<void> {
      prepareTouch().run(lastUsedAt, idleExpiresAt, idHash);
    },

    async migrate(): Promise<void> {
      await db.connection().execute(async (conn) => {
        // Kysely's SQLite migration lock is a no-op (it assumes one connection), so two processes
        // starting on the same file would both migrate. BEGIN IMMEDIATE takes SQLite's write lock for
        // the whole migration: the second process waits, then finds nothing to do; and a failed
        // migration rolls back instead of leaving a half-built schema.
        await beginImmediate(database, options.migrateLockTimeoutMs ?? 30_000, busyTimeoutMs);
        try {
          // Tables of a release before 0004 are renamed only when our own bookkeeping says we made them.
          const renameUnprefixed =
            database.prepare(`select 1 from sqlite_master where type = 'table' and name = ?`).get(MIGRATION_TABLE) !== undefined &&
            database.prepare(`select 1 from "${MIGRATION_TABLE}" where name = '0001_initial'`).get() !== undefined;
          const migrator = new Migrator({
            db: conn,
            provider: storeMigrationProvider({ renameUnprefixed }),
            migrationTableName: MIGRATION_TABLE,
            migrationLockTableName: MIGRATION_LOCK_TABLE,
          });
          throwIfMigrationFailed(await migrator.migrateToLatest());
          database.exec('COMMIT');
        } catch (err) {
          if (database.inTransaction) database.exec('ROLLBACK');
          throw err;
        }
      });
    },

    async countActive(now: number): Promise<number> {
      return countActiveInSlices((activeStatements ??= prepareActiveCount(database)), now, options.countSliceSize ?? ACTIVE_COUNT_SLICE);
    },

    async ping(): Promise<void> {
      database.prepare('select 1').get();
    },

    async close(): Promise<void> {
      await checkpointer?.close();
      if (fileKey !== undefined) {
        const bus = busesByFile.get(fileKey);
        bus?.delete(listeners);
        if (bus?.size === 0) busesByFile.delete(fileKey);
      }
      await db.destroy();
    },

    async publishInvalidation(idHashes: string[]): Promise<void> {
      if (idHashes.length === 0) return;
      const targets = fileKey === undefined ? [listeners] : [...(busesByFile.get(fileKey) ?? [listeners])];
      // Delivered asynchronously like the networked backends, so callers cannot come to rely on
      // listeners having run before publishInvalidation resolves.
      queueMicrotask(() => {
        for (const target of targets) target.emit([...idHashes]);
      });
    },

    onInvalidation(listener: InvalidationListener): void {
      listeners.add(listener);
    },
  } satisfies SessionStore;

  return mapUnavailable(store, 'sqlite', isSqliteUnavailable);
}

interface ActiveCountStatements {
  boundary: Database.Statement<[number, number], number>;
  slice: Database.Statement<[number, number, number], number>;
  rest: Database.Statement<[number, number], number>;
}

/** Entries of the (idle_expires_at, expires_at) index counted per synchronous step (~2-5 ms). */
const ACTIVE_COUNT_SLICE = 20_000;

function prepareActiveCount(database: Database.Database): ActiveCountStatements {
  return {
    boundary: database.prepare<[number, number], number>('select idle_expires_at from token_handler_sessions where idle_expires_at > ? order by idle_expires_at limit 1 offset ?').pluck(),
    slice: database.prepare<[number, number, number], number>('select count(*) from token_handler_sessions where idle_expires_at > ? and idle_expires_at <= ? and expires_at >= ?').pluck(),
    rest: database.prepare<[number, number], number>('select count(*) from token_handler_sessions where idle_expires_at > ? and expires_at >= ?').pluck(),
  };
}

/**
 * countActive without stalling the event loop: a count over a million rows is one synchronous call of
 * ~0.3-1 s in better-sqlite3, so it walks the covering (idle_expires_at, expires_at) index in slices of
 * ACTIVE_COUNT_SLICE entries, yielding between them. Slices end on an idle_expires_at value and the next
 * starts after it, so ties are counted once. The result is not a snapshot (rows may change between
 * slices), which is fine for a gauge.
 */
async function countActiveInSlices(statements: ActiveCountStatements, now: number, sliceSize: number): Promise<number> {
  // Times are integer milliseconds: idle_expires_at >= now is idle_expires_at > now - 1.
  let after = now - 1;
  let total = 0;
  for (;;) {
    const boundary = statements.boundary.get(after, Math.max(1, sliceSize) - 1);
    if (boundary === undefined) return total + (statements.rest.get(after, now) ?? 0);
    total += statements.slice.get(after, boundary, now) ?? 0;
    after = boundary;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

interface Checkpointer {
  close(): Promise<void>;
}

/**
 * Moves WAL checkpoints to a worker thread (sqliteCheckpointer.ts). If the worker cannot run, SQLite's
 * automatic checkpoint is switched back on: stalls are better than a WAL that grows without bound.
 */
function startCheckpointer(file: string, intervalMs: number, database: Database.Database, onError: (err: unknown) => void): Checkpointer {
  // The sibling file of this module: `.ts` from source, `.js` when compiled to dist/.
  const script = new URL(`./sqliteCheckpointer${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
  let closing = false;
  const worker = new Worker(script, { workerData: { file, intervalMs } });
  worker.unref();
  database.pragma('wal_autocheckpoint = 0');
  const fallBack = (err: unknown) => {
    if (closing) return;
    onError(err);
    if (database.open) database.pragma('wal_autocheckpoint = 1000');
  };
  worker.on('error', fallBack);
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  void exited.then(() => fallBack(new Error('the SQLite checkpoint worker stopped; checkpointing on the main thread again')));
  return {
    async close() {
      closing = true;
      worker.postMessage('close');
      const timer = setTimeout(() => void worker.terminate(), 2000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * PRAGMA journal_mode = WAL. Turning a new file to WAL takes it for a moment alone, and SQLite does not wait
 * for that through the busy handler: a second process opening the same fresh file at that instant (the
 * workers of a --workers group all start together) got SQLITE_BUSY at once, and the worker failed to start
 * ("database is locked"; 46 of 100 starts of two processes lined up on a fresh file). Retried here until
 * `timeoutMs`; at start-up only, so the synchronous pause holds up nothing else.
 */
function enableWal(database: Database.Database, timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    let mode: unknown;
    try {
      mode = database.pragma('journal_mode = WAL', { simple: true });
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'SQLITE_BUSY' || Date.now() >= deadline) throw err;
    }
    if (mode === 'wal') return;
    if (Date.now() >= deadline) throw new Error(`could not put the SQLite database in WAL mode (it stayed in ${String(mode)} mode)`);
    Atomics.wait(pause, 0, 0, 10 + Math.floor(Math.random() * 20));
  }
}

/**
 * BEGIN IMMEDIATE without blocking the event loop: better-sqlite3 waits for a busy lock synchronously,
 * which inside one process would also stall the holder, so we poll with busy_timeout 0 and async sleeps.
 */
async function beginImmediate(database: Database.Database, timeoutMs: number, busyTimeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  database.pragma('busy_timeout = 0');
  try {
    for (;;) {
      try {
        database.exec('BEGIN IMMEDIATE');
        return;
      } catch (err) {
        if (!isSqliteUnavailable(err) || Date.now() >= deadline) throw err;
      }
      await sleep(25);
    }
  } finally {
    database.pragma(`busy_timeout = ${busyTimeoutMs}`);
  }
}
