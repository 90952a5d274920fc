/**
 * The session and client-registration queries shared by SQLite and PostgreSQL. Each is a single
 * statement (no transactions), so nothing holds locks across round trips and the SQLite connection
 * never sits inside an open transaction between awaits.
 */
import type { Kysely, RawBuilder } from 'kysely';
import { sql } from 'kysely';
import { SESSION_COLUMNS, recordToRow, rowToRecord } from './tables.ts';
import type { StoreDatabase } from './tables.ts';
import type { LeaseAttempt, LeaseHolder, PayloadUpdate, SessionRecord, SessionStore } from './types.ts';

export interface SqlDialectTraits {
  /** Scalar minimum of two numbers: `min(a, b)` in SQLite, `least(a, b)` in PostgreSQL. */
  least(a: number, column: 'expires_at'): RawBuilder<number>;
  /** PostgreSQL: concurrent sweepers skip each other's rows instead of waiting on them. */
  skipLocked: boolean;
  /** The database's own time in ms since the epoch: the one clock refresh leases are measured on. */
  nowMs: RawBuilder<number>;
}

/** The part of SessionStore that is plain SQL; the backend adds migrate/ping/close/invalidation. */
export type SqlCore = Omit<SessionStore, 'kind' | 'migrate' | 'ping' | 'close' | 'publishInvalidation' | 'onInvalidation'>;

export function createSqlCore(db: Kysely<StoreDatabase>, traits: SqlDialectTraits): SqlCore {
  const deleteReturningIds = async (issuer: string, column: 'sub' | 'sid', value: string): Promise<string[]> => {
    const rows = await db
      .deleteFrom('token_handler_sessions')
      .where('issuer', '=', issuer)
      .where(column, '=', value)
      .returning('id_hash')
      .execute();
    return rows.map((r) => r.id_hash);
  };

  return {
    async create(record: SessionRecord): Promise<void> {
      await db.insertInto('token_handler_sessions').values(recordToRow(record)).execute();
    },

    async get(idHash: string): Promise<SessionRecord | undefined> {
      const row = await db.selectFrom('token_handler_sessions').select(SESSION_COLUMNS).where('id_hash', '=', idHash).executeTakeFirst();
      return row === undefined ? undefined : rowToRecord(row);
    },

    async updatePayload(idHash: string, expectedVersion: number, update: PayloadUpdate): Promise<number | null> {
      const row = await db
        .updateTable('token_handler_sessions')
        .set((eb) => ({
          payload: update.payload,
          access_expires_at: update.accessExpiresAt,
          version: eb('version', '+', 1),
        }))
        .where('id_hash', '=', idHash)
        .where('version', '=', expectedVersion)
        .returning('version')
        .executeTakeFirst();
      return row?.version ?? null;
    },

    async touch(idHash: string, lastUsedAt: number, idleExpiresAt: number): Promise<void> {
      await db
        .updateTable('token_handler_sessions')
        .set({ last_used_at: lastUsedAt, idle_expires_at: traits.least(idleExpiresAt, 'expires_at') })
        .where('id_hash', '=', idHash)
        .execute();
    },

    async delete(idHash: string): Promise<boolean> {
      const result = await db.deleteFrom('token_handler_sessions').where('id_hash', '=', idHash).executeTakeFirst();
      return result.numDeletedRows > 0n;
    },

    deleteBySubject: (issuer, sub) => deleteReturningIds(issuer, 'sub', sub),
    deleteBySid: (issuer, sid) => deleteReturningIds(issuer, 'sid', sid),

    async listBySubject(issuer: string, sub: string): Promise<SessionRecord[]> {
      const rows = await db
        .selectFrom('token_handler_sessions')
        .select(SESSION_COLUMNS)
        .where('issuer', '=', issuer)
        .where('sub', '=', sub)
        .orderBy('created_at')
        .orderBy('id_hash')
        .execute();
      return rows.map(rowToRecord);
    },

    async listByIssuer(issuer: string, tenant: string | null, now: number, limit: number): Promise<SessionRecord[]> {
      let query = db.selectFrom('token_handler_sessions').select(SESSION_COLUMNS).where('issuer', '=', issuer);
      query = tenant === null ? query.where('tenant', 'is', null) : query.where('tenant', '=', tenant);
      const rows = await query
        .where('expires_at', '>', now)
        .where('idle_expires_at', '>', now)
        .orderBy('created_at')
        .orderBy('id_hash')
        .limit(limit)
        .execute();
      return rows.map(rowToRecord);
    },

    async deleteExpired(now: number, limit: number): Promise<number> {
      // Bounded batch: the caller loops, so a sweep over a million rows never holds one long lock. One
      // range scan per expiry column, each on its index and in its order, so every batch reads about
      // `limit` index entries: an OR of both would be a bitmap of every expired row (PostgreSQL) or a scan
      // that passes more and more live rows as the sweep goes on. Idle expiry comes first (the service
      // keeps idle_expires_at <= expires_at, so the second statement rarely finds anything).
      const deleteBefore = async (column: 'idle_expires_at' | 'expires_at', n: number): Promise<number> => {
        let victims = db.selectFrom('token_handler_sessions').select('id_hash').where(column, '<', now).orderBy(column).limit(n);
        if (traits.skipLocked) victims = victims.forUpdate().skipLocked();
        const result = await db.deleteFrom('token_handler_sessions').where('id_hash', 'in', victims).executeTakeFirst();
        return Number(result.numDeletedRows);
      };
      const deleted = await deleteBefore('idle_expires_at', limit);
      if (deleted >= limit) return deleted;
      const total = deleted + (await deleteBefore('expires_at', limit - deleted));
      // Expired one-time token records, once the session backlog is done (they are few: one per logout token).
      if (total < limit) {
        const stale = db.selectFrom('token_handler_used_tokens').select('key').where('expires_at', '<', now).limit(limit);
        await db.deleteFrom('token_handler_used_tokens').where('key', 'in', stale).execute();
      }
      return total;
    },

    async acquireRefreshLease(idHash: string, owner: string, ttlMs: number, takeOver?: LeaseHolder): Promise<LeaseAttempt> {
      // The conditional UPDATE is the compare-and-set; times are the database's (traits.nowMs), so
      // instances whose clocks disagree still agree on when a lease expires.
      for (let attempt = 0; attempt < 3; attempt += 1) {
        const result = await db
          .updateTable('token_handler_sessions')
          .set({ lease_owner: owner, lease_expires_at: sql<number>`${traits.nowMs} + ${ttlMs}` })
          .where('id_hash', '=', idHash)
          .where((eb) => {
            const free = eb('lease_owner', 'is', null);
            if (takeOver === undefined) return free;
            return eb.or([
              free,
              eb.and([eb('lease_owner', '=', takeOver.owner), eb('lease_expires_at', '=', takeOver.expiresAt), eb('lease_expires_at', '<=', traits.nowMs)]),
            ]);
          })
          .executeTakeFirst();
        if (result.numUpdatedRows > 0n) return { state: 'acquired' };
        const row = await db
          .selectFrom('token_handler_sessions')
          .select(['lease_owner', 'lease_expires_at', traits.nowMs.as('now')])
          .where('id_hash', '=', idHash)
          .executeTakeFirst();
        if (row === undefined) return { state: 'gone' };
        // Released between the two statements: try again.
        if (row.lease_owner === null || row.lease_expires_at === null) continue;
        const expiresAt = Number(row.lease_expires_at);
        return { state: 'held', holder: { owner: row.lease_owner, expiresAt }, expired: expiresAt <= Number(row.now) };
      }
      // A lease changing hands this fast is as good as held: the caller looks again shortly.
      return { state: 'held', holder: { owner: '', expiresAt: Number.MAX_SAFE_INTEGER }, expired: false };
    },

    async renewRefreshLease(idHash: string, owner: string, ttlMs: number): Promise<boolean> {
      const result = await db
        .updateTable('token_handler_sessions')
        .set({ lease_expires_at: sql<number>`${traits.nowMs} + ${ttlMs}` })
        .where('id_hash', '=', idHash)
        .where('lease_owner', '=', owner)
        .executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },

    async releaseRefreshLease(idHash: string, owner: string): Promise<void> {
      await db
        .updateTable('token_handler_sessions')
        .set({ lease_owner: null, lease_expires_at: null })
        .where('id_hash', '=', idHash)
        .where('lease_owner', '=', owner)
        .execute();
    },

    async completeRefresh(idHash: string, owner: string, update: PayloadUpdate): Promise<number | null> {
      const row = await db
        .updateTable('token_handler_sessions')
        .set((eb) => ({
          payload: update.payload,
          access_expires_at: update.accessExpiresAt,
          version: eb('version', '+', 1),
          lease_owner: null,
          lease_expires_at: null,
        }))
        .where('id_hash', '=', idHash)
        .where('lease_owner', '=', owner)
        .returning('version')
        .executeTakeFirst();
      return row?.version ?? null;
    },

    async countActive(now: number): Promise<number> {
      // Active is the exact complement of what deleteExpired removes (both expiries at or after `now`).
      const row = await db
        .selectFrom('token_handler_sessions')
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        .where('expires_at', '>=', now)
        .where('idle_expires_at', '>=', now)
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },

    async recordTokenUse(key: string, expiresAt: number, now: number): Promise<boolean> {
      // One statement: a new key is inserted, an expired record taken over, a live one left alone (no row back).
      const row = await db
        .insertInto('token_handler_used_tokens')
        .values({ key, expires_at: expiresAt })
        .onConflict((oc) => oc.column('key').doUpdateSet({ expires_at: expiresAt }).where('token_handler_used_tokens.expires_at', '<=', now))
        .returning('key')
        .executeTakeFirst();
      return row !== undefined;
    },

    async forgetTokenUse(key: string): Promise<void> {
      await db.deleteFrom('token_handler_used_tokens').where('key', '=', key).execute();
    },

    async putClientRegistration(id: string, sealed: string): Promise<void> {
      const updatedAt = Date.now();
      await db
        .insertInto('token_handler_client_registrations')
        .values({ id, sealed, updated_at: updatedAt })
        .onConflict((oc) => oc.column('id').doUpdateSet({ sealed, updated_at: updatedAt }))
        .execute();
    },

    async getClientRegistration(id: string): Promise<string | undefined> {
      const row = await db.selectFrom('token_handler_client_registrations').select('sealed').where('id', '=', id).executeTakeFirst();
      return row?.sealed;
    },
  };
}

export const sqliteTraits: SqlDialectTraits = {
  least: (a, column) => sql<number>`min(${a}, ${sql.ref(column)})`,
  skipLocked: false,
  // One process's file: its clock is the only one there is (unixepoch('subsec') needs SQLite 3.42).
  nowMs: sql<number>`cast(unixepoch('subsec') * 1000 as integer)`,
};

export const postgresTraits: SqlDialectTraits = {
  least: (a, column) => sql<number>`least(${a}, ${sql.ref(column)})`,
  skipLocked: true,
  // clock_timestamp(), not now(): the time of this statement, not of its transaction.
  nowMs: sql<number>`(extract(epoch from clock_timestamp()) * 1000)::bigint`,
};
