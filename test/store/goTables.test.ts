/**
 * token-handler starts in place beside go-token-handler's data (issue 21.2): Go's `sessions` table in the
 * same SQLite file or PostgreSQL schema is neither an obstacle nor touched, and an install of an earlier
 * token-handler release (unprefixed tables) has its tables renamed, its sessions kept.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresStore } from '../../src/store/postgres.ts';
import { createSqliteStore } from '../../src/store/sqlite.ts';
import { tempDir } from '../support/config.ts';
import { createGoPostgresTables, createGoSqliteTables, goPostgresSnapshot, goSqliteSnapshot, postgresTables, sqliteTables } from '../support/goTables.ts';
import { PG_URL as url, probePostgres, requireService } from '../support/services.ts';
import { makeRecord } from './contract.ts';

const quiet = () => {};
const OURS = ['token_handler_client_registrations', 'token_handler_migration', 'token_handler_migration_lock', 'token_handler_sessions', 'token_handler_used_tokens'];

describe('SQLite: beside go-token-handler, and after an earlier release', () => {
  it("starts in Go's sessions.db, creates prefixed tables, leaves Go's table, indexes and rows as they were", async () => {
    const path = join(tempDir('th-go-sqlite-'), 'sessions.db');
    const before = createGoSqliteTables(path);
    const store = createSqliteStore({ path, onError: quiet });
    try {
      await store.migrate();
      const record = makeRecord();
      await store.create(record);
      expect((await store.get(record.idHash))?.sub).toBe(record.sub);
    } finally {
      await store.close();
    }
    expect(goSqliteSnapshot(path)).toBe(before);
    expect(sqliteTables(path)).toStrictEqual(['sessions', ...OURS].sort());
    // The one change to the file itself: SQLite keeps the WAL journal mode in it.
    const raw = new Database(path, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.close();
  });

  it('leaves nothing behind in the file when a first migration fails', async () => {
    const path = join(tempDir('th-go-sqlite-'), 'sessions.db');
    const before = createGoSqliteTables(path);
    const raw = new Database(path);
    raw.exec('create table token_handler_used_tokens (other text)');
    raw.close();
    const store = createSqliteStore({ path, onError: quiet });
    try {
      await expect(store.migrate()).rejects.toThrow(/already exists/);
    } finally {
      await store.close();
    }
    expect(sqliteTables(path)).toStrictEqual(['sessions', 'token_handler_used_tokens']);
    expect(goSqliteSnapshot(path)).toBe(before);
  });

  it('renames the unprefixed tables of an earlier release (recorded in our migration table) and keeps their sessions', async () => {
    const path = join(tempDir('th-old-sqlite-'), 'sessions.db');
    const record = makeRecord();
    const first = createSqliteStore({ path, onError: quiet });
    await first.migrate();
    await first.create(record);
    await first.close();
    // Back to how a release before 0004 left the file: unprefixed tables, 0001-0003 recorded.
    const raw = new Database(path);
    for (const name of ['sessions', 'client_registrations', 'used_tokens']) raw.exec(`alter table token_handler_${name} rename to ${name}`);
    raw.exec(`delete from token_handler_migration where name = '0004_prefixed_table_names'`);
    raw.close();

    const store = createSqliteStore({ path, onError: quiet });
    try {
      await store.migrate();
      expect((await store.get(record.idHash))?.sub).toBe(record.sub);
    } finally {
      await store.close();
    }
    expect(sqliteTables(path)).toStrictEqual(OURS);
  });
});

const unavailable = await probePostgres();
const admin = unavailable === undefined ? new pg.Pool({ connectionString: url, max: 2 }) : undefined;
afterAll(() => admin?.end());
const newSchema = () => `th_go_${randomBytes(6).toString('hex')}`;
const drop = (schema: string) => admin!.query(`drop schema if exists "${schema}" cascade`);

describe.runIf(requireService('postgresql', unavailable))('PostgreSQL: beside go-token-handler, and after an earlier release', () => {
  it("starts in Go's schema beside its sessions table (and sessions_pkey) and leaves them as they were", async () => {
    const schema = newSchema();
    const before = await createGoPostgresTables(admin!, schema);
    const store = createPostgresStore({ connectionString: url, schema, onError: quiet });
    try {
      await store.migrate();
      const record = makeRecord();
      await store.create(record);
      expect((await store.get(record.idHash))?.sub).toBe(record.sub);
      expect(await goPostgresSnapshot(admin!, schema)).toBe(before);
      expect(await postgresTables(admin!, schema)).toStrictEqual(['sessions', ...OURS].sort());
    } finally {
      await store.close();
      await drop(schema);
    }
  });

  it('leaves no bookkeeping table behind when a first migration fails', async () => {
    const schema = newSchema();
    await createGoPostgresTables(admin!, schema);
    // Something else already holds one of our names: migration 0003 fails and everything rolls back.
    await admin!.query(`create table "${schema}".token_handler_used_tokens (other text)`);
    const store = createPostgresStore({ connectionString: url, schema, onError: quiet });
    try {
      await expect(store.migrate()).rejects.toThrow(/already exists/);
      expect(await postgresTables(admin!, schema)).toStrictEqual(['sessions', 'token_handler_used_tokens']);
    } finally {
      await store.close();
      await drop(schema);
    }
  });

  it('renames the unprefixed tables of an earlier release, with their primary keys, and keeps their sessions', async () => {
    const schema = newSchema();
    const record = makeRecord();
    const first = createPostgresStore({ connectionString: url, schema, onError: quiet });
    await first.migrate();
    await first.create(record);
    await first.close();
    for (const name of ['sessions', 'client_registrations', 'used_tokens']) {
      await admin!.query(`alter table "${schema}".token_handler_${name} rename to ${name}`);
      await admin!.query(`alter table "${schema}".${name} rename constraint token_handler_${name}_pkey to ${name}_pkey`);
    }
    await admin!.query(`delete from "${schema}".token_handler_migration where name = '0004_prefixed_table_names'`);

    const store = createPostgresStore({ connectionString: url, schema, onError: quiet });
    try {
      await store.migrate();
      expect((await store.get(record.idHash))?.sub).toBe(record.sub);
      expect(await postgresTables(admin!, schema)).toStrictEqual(OURS);
      const { rows } = await admin!.query(`select conname from pg_constraint where connamespace = $1::regnamespace and contype = 'p' order by 1`, [schema]);
      expect(rows.map((row: { conname: string }) => row.conname)).toStrictEqual([
        'token_handler_client_registrations_pkey',
        'token_handler_migration_lock_pkey',
        'token_handler_migration_pkey',
        'token_handler_sessions_pkey',
        'token_handler_used_tokens_pkey',
      ]);
    } finally {
      await store.close();
      await drop(schema);
    }
  });
});
