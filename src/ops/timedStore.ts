import type { Histogram } from 'prom-client';
import type { SessionStore } from '../store/types.ts';

export type StoreOperation = Exclude<keyof SessionStore, 'kind' | 'onInvalidation'>;

/**
 * A SessionStore that observes the latency of every call in `durations{operation}` and counts failures
 * in `errors{operation}`. Written out method by method (no Proxy) so that a method added to the
 * interface is a compile error here until it is timed.
 */
export function timedStore(
  store: SessionStore,
  metrics: { storeDuration: Histogram<'operation'>; storeErrors?: { inc(labels: { operation: string }): void } },
): SessionStore {
  const time = async <T>(operation: StoreOperation, call: () => Promise<T>): Promise<T> => {
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
    deleteExpired: (now, limit) => time('deleteExpired', () => store.deleteExpired(now, limit)),
    acquireRefreshLease: (idHash, owner, ttlMs, now) => time('acquireRefreshLease', () => store.acquireRefreshLease(idHash, owner, ttlMs, now)),
    releaseRefreshLease: (idHash, owner) => time('releaseRefreshLease', () => store.releaseRefreshLease(idHash, owner)),
    countActive: (now) => time('countActive', () => store.countActive(now)),
    ping: () => time('ping', () => store.ping()),
    close: () => time('close', () => store.close()),
    publishInvalidation: (idHashes) => time('publishInvalidation', () => store.publishInvalidation(idHashes)),
    onInvalidation: (listener) => store.onInvalidation(listener),
    putClientRegistration: (id, sealed) => time('putClientRegistration', () => store.putClientRegistration(id, sealed)),
    getClientRegistration: (id) => time('getClientRegistration', () => store.getClientRegistration(id)),
  };
}
