/**
 * The session and client-registration queries shared by SQLite and PostgreSQL. Each is a single
 * statement (no transactions), so nothing holds locks across round trips and the SQLite connection
 * never sits inside an open transaction between awaits.
 */
import type { Kysely, RawBuilder } from 'kysely';
import { sql } from 'kysely';
import { SESSION_COLUMNS, recordToRow, rowToRecord } from './tables.ts';
import type { StoreDatabase } from './tables.ts';
import type { PayloadUpdate, SessionRecord, SessionStore } from './types.ts';

export interface SqlDialectTraits {
  /** Scalar minimum of two numbers: `min(a, b)` in SQLite, `least(a, b)` in PostgreSQL. */
  least(a: number, column: 'expires_at'): RawBuilder<number>;
  /** PostgreSQL: concurrent sweepers skip each other's rows instead of waiting on them. */
  skipLocked: boolean;
}

/** The part of SessionStore that is plain SQL; the backend adds migrate/ping/close/invalidation. */
export type SqlCore = Omit<SessionStore, 'kind' | 'migrate' | 'ping' | 'close' | 'publishInvalidation' | 'onInvalidation'>;

export function createSqlCore(db: Kysely<StoreDatabase>, traits: SqlDialectTraits): SqlCore {
  const deleteReturningIds = async (issuer: string, column: 'sub' | 'sid', value: string): Promise<string[]> => {
    const rows = await db
      .deleteFrom('sessions')
      .where('issuer', '=', issuer)
      .where(column, '=', value)
      .returning('id_hash')
      .execute();
    return rows.map((r) => r.id_hash);
  };

  return {
    async create(record: SessionRecord): Promise<void> {
      await db.insertInto('sessions').values(recordToRow(record)).execute();
    },

    async get(idHash: string): Promise<SessionRecord | undefined> {
      const row = await db.selectFrom('sessions').select(SESSION_COLUMNS).where('id_hash', '=', idHash).executeTakeFirst();
      return row === undefined ? undefined : rowToRecord(row);
    },

    async updatePayload(idHash: string, expectedVersion: number, update: PayloadUpdate): Promise<number | null> {
      const row = await db
        .updateTable('sessions')
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
        .updateTable('sessions')
        .set({ last_used_at: lastUsedAt, idle_expires_at: traits.least(idleExpiresAt, 'expires_at') })
        .where('id_hash', '=', idHash)
        .execute();
    },

    async delete(idHash: string): Promise<boolean> {
      const result = await db.deleteFrom('sessions').where('id_hash', '=', idHash).executeTakeFirst();
      return result.numDeletedRows > 0n;
    },

    deleteBySubject: (issuer, sub) => deleteReturningIds(issuer, 'sub', sub),
    deleteBySid: (issuer, sid) => deleteReturningIds(issuer, 'sid', sid),

    async listBySubject(issuer: string, sub: string): Promise<SessionRecord[]> {
      const rows = await db
        .selectFrom('sessions')
        .select(SESSION_COLUMNS)
        .where('issuer', '=', issuer)
        .where('sub', '=', sub)
        .orderBy('created_at')
        .orderBy('id_hash')
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
        let victims = db.selectFrom('sessions').select('id_hash').where(column, '<', now).orderBy(column).limit(n);
        if (traits.skipLocked) victims = victims.forUpdate().skipLocked();
        const result = await db.deleteFrom('sessions').where('id_hash', 'in', victims).executeTakeFirst();
        return Number(result.numDeletedRows);
      };
      const deleted = await deleteBefore('idle_expires_at', limit);
      return deleted < limit ? deleted + (await deleteBefore('expires_at', limit - deleted)) : deleted;
    },

    async acquireRefreshLease(idHash: string, owner: string, ttlMs: number, now: number): Promise<boolean> {
      // One conditional UPDATE is the compare-and-set; re-acquiring a lease one already holds extends it.
      const result = await db
        .updateTable('sessions')
        .set({ lease_owner: owner, lease_expires_at: now + ttlMs })
        .where('id_hash', '=', idHash)
        .where((eb) =>
          eb.or([eb('lease_owner', 'is', null), eb('lease_expires_at', '<=', now), eb('lease_owner', '=', owner)]),
        )
        .executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },

    async releaseRefreshLease(idHash: string, owner: string): Promise<void> {
      await db
        .updateTable('sessions')
        .set({ lease_owner: null, lease_expires_at: null })
        .where('id_hash', '=', idHash)
        .where('lease_owner', '=', owner)
        .execute();
    },

    async countActive(now: number): Promise<number> {
      // Active is the exact complement of what deleteExpired removes (both expiries at or after `now`).
      const row = await db
        .selectFrom('sessions')
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        .where('expires_at', '>=', now)
        .where('idle_expires_at', '>=', now)
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },

    async putClientRegistration(id: string, sealed: string): Promise<void> {
      const updatedAt = Date.now();
      await db
        .insertInto('client_registrations')
        .values({ id, sealed, updated_at: updatedAt })
        .onConflict((oc) => oc.column('id').doUpdateSet({ sealed, updated_at: updatedAt }))
        .execute();
    },

    async getClientRegistration(id: string): Promise<string | undefined> {
      const row = await db.selectFrom('client_registrations').select('sealed').where('id', '=', id).executeTakeFirst();
      return row?.sealed;
    },
  };
}

export const sqliteTraits: SqlDialectTraits = {
  least: (a, column) => sql<number>`min(${a}, ${sql.ref(column)})`,
  skipLocked: false,
};

export const postgresTraits: SqlDialectTraits = {
  least: (a, column) => sql<number>`least(${a}, ${sql.ref(column)})`,
  skipLocked: true,
};
