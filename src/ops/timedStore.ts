import type { Histogram } from 'prom-client';
import type { SessionStore } from '../store/types.ts';
import type { Tracing } from './tracing.ts';

export type StoreOperation = Exclude<keyof SessionStore, 'kind' | 'onInvalidation'>;

/**
 * A SessionStore that observes the latency of every call in `durations{operation}` and counts failures
 * in `errors{operation}`. Written out method by method (no Proxy) so that a method added to the
 * interface is a compile error here until it is timed. With tracing on, every call is also a client span
 * `store <operation>` (db.system.name, db.operation.name: never its arguments, which hold session ids).
 */
export function timedStore(
  store: SessionStore,
  metrics: { storeDuration: Histogram<'operation'>; storeErrors?: { inc(labels: { operation: string }): void } },
  tracing?: Tracing,
): SessionStore {
  const timed = async <T>(operation: StoreOperation, call: () => Promise<T>): Promise<T> => {
    const end = metrics.storeDuration.startTimer({ operation });
    try {
      return await call();
    } catch (err) {
      metrics.storeErrors?.inc({ operation });
      throw err;
    } finally {
      end();
    }
  };
  // Chosen once: without tracing, a call costs what it did before.
  const time = tracing
    ? <T>(operation: StoreOperation, call: () => Promise<T>): Promise<T> =>
        tracing.inSpan(`store ${operation}`, 'client', { 'db.system.name': store.kind, 'db.operation.name': operation }, () => timed(operation, call))
    : timed;
  return {
    get kind() {
      return store.kind;
    },
    migrate: () => time('migrate', () => store.migrate()),
    create: (record) => time('create', () => store.create(record)),
    get: (idHash) => time('get', () => store.get(idHash)),
    updatePayload: (idHash, expectedVersion, update) => time('updatePayload', () => store.updatePayload(idHash, expectedVersion, update)),
    touch: (idHash, lastUsedAt, idleExpiresAt) => time('touch', () => store.touch(idHash, lastUsedAt, idleExpiresAt)),
    delete: (idHash) => time('delete', () => store.delete(idHash)),
    deleteBySubject: (issuer, sub) => time('deleteBySubject', () => store.deleteBySubject(issuer, sub)),
    deleteBySid: (issuer, sid) => time('deleteBySid', () => store.deleteBySid(issuer, sid)),
    listBySubject: (issuer, sub) => time('listBySubject', () => store.listBySubject(issuer, sub)),
    listByIssuer: (issuer, tenant, now, limit) => time('listByIssuer', () => store.listByIssuer(issuer, tenant, now, limit)),
    deleteExpired: (now, limit) => time('deleteExpired', () => store.deleteExpired(now, limit)),
    acquireRefreshLease: (idHash, owner, ttlMs, takeOver) => time('acquireRefreshLease', () => store.acquireRefreshLease(idHash, owner, ttlMs, takeOver)),
    renewRefreshLease: (idHash, owner, ttlMs) => time('renewRefreshLease', () => store.renewRefreshLease(idHash, owner, ttlMs)),
    releaseRefreshLease: (idHash, owner) => time('releaseRefreshLease', () => store.releaseRefreshLease(idHash, owner)),
    completeRefresh: (idHash, owner, update) => time('completeRefresh', () => store.completeRefresh(idHash, owner, update)),
    countActive: (now) => time('countActive', () => store.countActive(now)),
    ping: () => time('ping', () => store.ping()),
    close: () => time('close', () => store.close()),
    publishInvalidation: (idHashes) => time('publishInvalidation', () => store.publishInvalidation(idHashes)),
    onInvalidation: (listener) => store.onInvalidation(listener),
    recordTokenUse: (key, expiresAt, now) => time('recordTokenUse', () => store.recordTokenUse(key, expiresAt, now)),
    forgetTokenUse: (key) => time('forgetTokenUse', () => store.forgetTokenUse(key)),
    putClientRegistration: (id, sealed) => time('putClientRegistration', () => store.putClientRegistration(id, sealed)),
    getClientRegistration: (id) => time('getClientRegistration', () => store.getClientRegistration(id)),
  };
}
