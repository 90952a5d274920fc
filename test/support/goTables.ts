/**
 * go-token-handler's session table, created exactly as it creates it (database/sqlite.go and
 * database/postgresql.go, `CREATE TABLE IF NOT EXISTS`), with one row of its data: the suites that start
 * token-handler beside a go-token-handler database use these to check that it starts there and leaves
 * Go's data untouched.
 */
import Database from 'better-sqlite3';
import type pg from 'pg';

export const GO_SQLITE_CREATE = `CREATE TABLE IF NOT EXISTS sessions (
		session_id TEXT NOT NULL PRIMARY KEY,
		subject TEXT NOT NULL CHECK(subject != ''),
		access_token TEXT NOT NULL CHECK(access_token != ''),
		refresh_token TEXT NOT NULL CHECK(refresh_token != ''),
		id_token TEXT NOT NULL CHECK(id_token != ''),
		expires_at INTEGER NOT NULL);
		CREATE INDEX IF NOT EXISTS session_subject ON sessions (subject);
		CREATE INDEX IF NOT EXISTS session_expires_at ON sessions (expires_at);`;

/** Go's PostgreSQL DDL; it always used `public`, a test names its own schema instead. */
export function goPostgresCreate(schema: string): string {
  return `CREATE TABLE IF NOT EXISTS "${schema}".sessions (
		session_id varchar(36) NOT NULL,
		subject varchar NOT NULL,
		access_token varchar NOT NULL,
		refresh_token varchar NOT NULL,
		id_token varchar NOT NULL,
		expires_at integer NOT NULL,
		CONSTRAINT sessions_pkey PRIMARY KEY (session_id),
		CONSTRAINT sessions_subject_check CHECK (subject != ''),
		CONSTRAINT sessions_access_token_check CHECK (access_token != ''),
		CONSTRAINT sessions_refresh_token_check CHECK (refresh_token != ''),
		CONSTRAINT sessions_id_token CHECK (id_token != ''));`;
}

/** A row as Go writes it (its values are hex ciphertexts; any non-empty text does here). */
export const GO_ROW = ['6f1c2d9e-0b7a-4c1e-9d55-2a8f3e6b7c10', 'c3ViamVjdA', 'YWNjZXNz', 'cmVmcmVzaA', 'aWQ', 1_900_000_000] as const;
const INSERT = 'INSERT INTO sessions (session_id, subject, access_token, refresh_token, id_token, expires_at) VALUES (?, ?, ?, ?, ?, ?)';

/** Creates Go's table and row in the SQLite file `path`; returns a snapshot to compare with later. */
export function createGoSqliteTables(path: string): string {
  const db = new Database(path);
  try {
    db.exec(GO_SQLITE_CREATE);
    db.prepare(INSERT).run(...GO_ROW);
  } finally {
    db.close();
  }
  return goSqliteSnapshot(path);
}

/** Go's table definition, indexes and rows, as text. */
export function goSqliteSnapshot(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    const schema = db.prepare(`select type, name, sql from sqlite_master where tbl_name = 'sessions' order by name`).all();
    const rows = db.prepare('select * from sessions order by session_id').all();
    return JSON.stringify({ schema, rows });
  } finally {
    db.close();
  }
}

/** The SQLite tables of the file. */
export function sqliteTables(path: string): string[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare(`select name from sqlite_master where type = 'table' order by name`).all() as { name: string }[]).map((row) => row.name);
  } finally {
    db.close();
  }
}

export async function createGoPostgresTables(client: pg.Pool | pg.Client, schema: string): Promise<string> {
  await client.query(`create schema if not exists "${schema}"`);
  await client.query(goPostgresCreate(schema));
  await client.query(`INSERT INTO "${schema}".sessions (session_id, subject, access_token, refresh_token, id_token, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`, [...GO_ROW]);
  return goPostgresSnapshot(client, schema);
}

export async function goPostgresSnapshot(client: pg.Pool | pg.Client, schema: string): Promise<string> {
  const columns = await client.query(
    `select column_name, data_type, is_nullable from information_schema.columns where table_schema = $1 and table_name = 'sessions' order by ordinal_position`,
    [schema],
  );
  const constraints = await client.query(`select conname from pg_constraint where conrelid = to_regclass($1) order by 1`, [`"${schema}".sessions`]);
  const rows = await client.query(`select * from "${schema}".sessions order by session_id`);
  return JSON.stringify({ columns: columns.rows, constraints: constraints.rows, rows: rows.rows });
}

export async function postgresTables(client: pg.Pool | pg.Client, schema: string): Promise<string[]> {
  const { rows } = await client.query(`select table_name from information_schema.tables where table_schema = $1 order by 1`, [schema]);
  return rows.map((row: { table_name: string }) => row.table_name);
}
