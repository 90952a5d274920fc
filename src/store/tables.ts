/**
 * Table shapes shared by the SQL backends (SQLite, PostgreSQL) and the mapping between a row and a
 * `SessionRecord`. Columns are snake_case; times are BIGINT milliseconds since the epoch, which both
 * drivers return as JS numbers (PostgreSQL through the int8 parser installed in postgres.ts).
 */
import type { SessionRecord } from './types.ts';

export interface SessionsTable {
  id_hash: string;
  client_id: string;
  tenant: string | null;
  issuer: string;
  sub: string;
  sid: string | null;
  payload: string;
  access_expires_at: number | null;
  created_at: number;
  last_used_at: number;
  expires_at: number;
  idle_expires_at: number;
  version: number;
  user_agent: string | null;
  /** Refresh lease, kept on the session row so it disappears with the session and needs no sweep. */
  lease_owner: string | null;
  lease_expires_at: number | null;
}

export interface ClientRegistrationsTable {
  id: string;
  sealed: string;
  updated_at: number;
}

/** One-time tokens already used (back-channel logout `jti`s), until they could no longer be accepted anyway. */
export interface UsedTokensTable {
  key: string;
  expires_at: number;
}

/**
 * Our tables carry the service's name, so they never meet another application's in a shared database or
 * SQLite file: go-token-handler's `sessions` table in particular, beside which token-handler starts in
 * place (migration 0004 renames the unprefixed tables of earlier releases).
 */
export interface StoreDatabase {
  token_handler_sessions: SessionsTable;
  token_handler_client_registrations: ClientRegistrationsTable;
  token_handler_used_tokens: UsedTokensTable;
}

/** The session columns a read returns (the lease columns are internal). */
export const SESSION_COLUMNS = [
  'id_hash',
  'client_id',
  'tenant',
  'issuer',
  'sub',
  'sid',
  'payload',
  'access_expires_at',
  'created_at',
  'last_used_at',
  'expires_at',
  'idle_expires_at',
  'version',
  'user_agent',
] as const;

export type SessionRow = Pick<SessionsTable, (typeof SESSION_COLUMNS)[number]>;

export function rowToRecord(row: SessionRow): SessionRecord {
  return {
    idHash: row.id_hash,
    clientId: row.client_id,
    tenant: row.tenant,
    issuer: row.issuer,
    sub: row.sub,
    sid: row.sid,
    payload: row.payload,
    accessExpiresAt: row.access_expires_at,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    expiresAt: row.expires_at,
    idleExpiresAt: row.idle_expires_at,
    version: row.version,
    userAgent: row.user_agent,
  };
}

export function recordToRow(record: SessionRecord): SessionRow {
  return {
    id_hash: record.idHash,
    client_id: record.clientId,
    tenant: record.tenant,
    issuer: record.issuer,
    sub: record.sub,
    sid: record.sid,
    payload: record.payload,
    access_expires_at: record.accessExpiresAt,
    created_at: record.createdAt,
    last_used_at: record.lastUsedAt,
    expires_at: record.expiresAt,
    idle_expires_at: record.idleExpiresAt,
    version: record.version,
    user_agent: record.userAgent,
  };
}
