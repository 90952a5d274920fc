/**
 * The SessionStore contract, run against every backend by its *.test.ts file. Times are put a day
 * into the future and tests pass their own `now`, so Redis TTLs never remove records under a test and
 * the SQL backends see the same times; tests that sweep or count use a fresh namespace of their own.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError, type SessionRecord, type SessionStore } from '../../src/store/types.ts';

export interface Namespace {
  /** A new, unmigrated store instance on this namespace (same file / schema / key prefix). */
  open(): SessionStore;
  /** Removes the namespace (file, schema, keys). Stores opened on it are closed by the suite. */
  drop(): Promise<void>;
}

export interface StoreHarness {
  /** Why the backend cannot be reached, or undefined when it can. */
  unavailable: string | undefined;
  /** A new empty namespace. */
  namespace(): Promise<Namespace>;
}

const DAY = 24 * 60 * 60 * 1000;
const HOUR = 60 * 60 * 1000;

export function randomId(): string {
  return randomBytes(32).toString('hex');
}

export function makeRecord(overrides: Partial<SessionRecord> = {}): SessionRecord {
  const t = Date.now() + DAY;
  const n = randomBytes(4).toString('hex');
  return {
    idHash: randomId(),
    clientId: 'web',
    tenant: 'acme',
    issuer: 'https://idp.example.com',
    sub: `user-${n}`,
    sid: `sid-${n}`,
    payload: `sealed.${randomBytes(48).toString('base64url')}`,
    accessExpiresAt: t + 5 * 60 * 1000,
    createdAt: t,
    lastUsedAt: t,
    expiresAt: t + 8 * HOUR,
    idleExpiresAt: t + HOUR,
    version: 1,
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64)',
    ...overrides,
  };
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, stepMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}

/**
 * The outage behaviour both networked stores share: `store` reaches its backend through `proxy`; while the
 * proxy is cut, calls fail fast with StoreUnavailableError; once restored, calls and invalidation listening
 * (which `direct`, connected without the proxy, publishes to) come back by themselves.
 */
export async function checkOutageRecovery(
  store: SessionStore,
  direct: SessionStore,
  proxy: { cut(): Promise<void>; restore(): Promise<void> },
  listenerRecoveryMs: number,
): Promise<void> {
  await store.migrate();
  const record = makeRecord();
  await store.create(record);
  const heard: string[] = [];
  store.onInvalidation((ids) => heard.push(...ids));

  await proxy.cut();
  const started = Date.now();
  await expect(store.get(record.idHash)).rejects.toBeInstanceOf(StoreUnavailableError);
  expect(Date.now() - started).toBeLessThan(3000);

  await proxy.restore();
  await eventually(async () => (await store.get(record.idHash).catch(() => undefined)) !== undefined, 10_000, 100);
  // The listening connection was cut too; it must come back and hear invalidations again.
  const id = randomId();
  await eventually(async () => {
    await direct.publishInvalidation([id]);
    return heard.includes(id);
  }, listenerRecoveryMs, 250);
}

/**
 * `store` points at a port where nothing listens: get, migrate and ping fail fast (none waits much longer than
 * the 2 s connect timeout; none queues until the store comes back) with StoreUnavailableError. Closes the store.
 */
export async function checkFailsFastWhenClosed(store: SessionStore): Promise<void> {
  try {
    for (const call of [() => store.get(randomId()), () => store.migrate(), () => store.ping()]) {
      const started = Date.now();
      await expect(call()).rejects.toBeInstanceOf(StoreUnavailableError);
      // Redis's very first call may wait its 2 s connect timeout; a call that queues or retries until the
      // store comes back never ends. The bound leaves a loaded machine's late timers room.
      expect(Date.now() - started).toBeLessThan(6000);
    }
  } finally {
    await store.close();
  }
}

/** Registers the contract suite, or (backend unreachable) a failing test in CI and a skipped one elsewhere. */
export function runStoreContract(name: string, harness: StoreHarness): void {
  const { unavailable } = harness;
  if (unavailable !== undefined) {
    if (process.env.CI === 'true') {
      describe(`${name} store contract`, () => {
        it('backend is reachable (required in CI)', () => {
          throw new Error(`${name} is not reachable: ${unavailable}`);
        });
      });
    } else {
      console.warn(`[store contract] skipping ${name}: ${unavailable} (set CI=true to make this a failure)`);
      describe.skip(`${name} store contract (skipped: ${unavailable})`, () => {
        it('backend is reachable', () => {});
      });
    }
    return;
  }

  describe(`${name} store contract`, () => {
    const namespaces: Namespace[] = [];
    const opened: SessionStore[] = [];
    let shared: Namespace;
    let store: SessionStore;

    const freshNamespace = async () => {
      const ns = await harness.namespace();
      namespaces.push(ns);
      return ns;
    };
    const openOn = (ns: Namespace) => {
      const s = ns.open();
      opened.push(s);
      return s;
    };
    const migratedStoreOnFreshNamespace = async () => {
      const s = openOn(await freshNamespace());
      await s.migrate();
      return s;
    };

    beforeAll(async () => {
      shared = await freshNamespace();
      store = openOn(shared);
      await store.migrate();
    });

    afterAll(async () => {
      await Promise.allSettled(opened.map((s) => s.close()));
      await Promise.allSettled(namespaces.map((ns) => ns.drop()));
    });

    describe('create / get', () => {
      it('round-trips every field, numbers as numbers', async () => {
        const record = makeRecord();
        await store.create(record);
        const got = await store.get(record.idHash);
        expect(got).toStrictEqual(record);
        for (const field of ['accessExpiresAt', 'createdAt', 'lastUsedAt', 'expiresAt', 'idleExpiresAt', 'version'] as const) {
          expect(typeof got?.[field], field).toBe('number');
        }
      });

      it('round-trips nulls and awkward strings', async () => {
        const record = makeRecord({
          tenant: null,
          sid: null,
          accessExpiresAt: null,
          userAgent: null,
          issuer: 'https://idp.example.com:8443/realms/a%20b',
          sub: 'ünïcödé:sub%3A💥',
          payload: '',
        });
        await store.create(record);
        expect(await store.get(record.idHash)).toStrictEqual(record);
        expect(await store.listBySubject(record.issuer, record.sub)).toStrictEqual([record]);
      });

      it('returns undefined for an absent id', async () => {
        expect(await store.get(randomId())).toBeUndefined();
      });
    });

    describe('updatePayload', () => {
      it('replaces the payload and bumps the version when the version matches', async () => {
        const record = makeRecord({ version: 3 });
        await store.create(record);
        const next = await store.updatePayload(record.idHash, 3, { payload: 'p2', accessExpiresAt: record.createdAt + 999 });
        expect(next).toBe(4);
        const got = await store.get(record.idHash);
        expect(got).toStrictEqual({ ...record, payload: 'p2', accessExpiresAt: record.createdAt + 999, version: 4 });

        // Clearing the access expiry works too.
        expect(await store.updatePayload(record.idHash, 4, { payload: 'p3', accessExpiresAt: null })).toBe(5);
        expect((await store.get(record.idHash))?.accessExpiresAt).toBeNull();
      });

      it('returns null and changes nothing when the version moved', async () => {
        const record = makeRecord();
        await store.create(record);
        expect(await store.updatePayload(record.idHash, 1, { payload: 'winner', accessExpiresAt: null })).toBe(2);
        expect(await store.updatePayload(record.idHash, 1, { payload: 'loser', accessExpiresAt: 1 })).toBeNull();
        const got = await store.get(record.idHash);
        expect(got?.payload).toBe('winner');
        expect(got?.version).toBe(2);
      });

      it('returns null for an absent record (and does not create one)', async () => {
        const id = randomId();
        expect(await store.updatePayload(id, 1, { payload: 'x', accessExpiresAt: null })).toBeNull();
        expect(await store.get(id)).toBeUndefined();
      });

      it('lets exactly one of several concurrent updates of the same version win', async () => {
        const record = makeRecord();
        await store.create(record);
        const results = await Promise.all(
          Array.from({ length: 5 }, (_, i) => store.updatePayload(record.idHash, 1, { payload: `p${i}`, accessExpiresAt: null })),
        );
        expect(results.filter((r) => r === 2)).toHaveLength(1);
        expect(results.filter((r) => r === null)).toHaveLength(4);
      });
    });

    describe('touch', () => {
      it('sets lastUsedAt and idleExpiresAt without bumping the version', async () => {
        const record = makeRecord();
        await store.create(record);
        await store.touch(record.idHash, record.createdAt + 1000, record.createdAt + 2 * HOUR);
        expect(await store.get(record.idHash)).toStrictEqual({
          ...record,
          lastUsedAt: record.createdAt + 1000,
          idleExpiresAt: record.createdAt + 2 * HOUR,
        });
      });

      it('never extends idleExpiresAt beyond expiresAt', async () => {
        const record = makeRecord();
        await store.create(record);
        await store.touch(record.idHash, record.createdAt + 1000, record.expiresAt + HOUR);
        expect((await store.get(record.idHash))?.idleExpiresAt).toBe(record.expiresAt);
      });

      it('is a no-op for an absent record', async () => {
        const id = randomId();
        await store.touch(id, Date.now(), Date.now() + HOUR);
        expect(await store.get(id)).toBeUndefined();
      });
    });

    describe('delete', () => {
      it('deletes once and reports whether it did', async () => {
        const record = makeRecord();
        await store.create(record);
        expect(await store.delete(record.idHash)).toBe(true);
        expect(await store.get(record.idHash)).toBeUndefined();
        expect(await store.delete(record.idHash)).toBe(false);
        expect(await store.listBySubject(record.issuer, record.sub)).toStrictEqual([]);
      });
    });

    describe('by subject / sid', () => {
      it('deleteBySubject deletes the subject at that issuer only', async () => {
        const a1 = makeRecord({ issuer: 'https://a.example' });
        const a2 = makeRecord({ issuer: a1.issuer, sub: a1.sub, sid: 'other-sid' });
        const b = makeRecord({ issuer: 'https://b.example', sub: a1.sub, sid: a1.sid });
        const otherSub = makeRecord({ issuer: a1.issuer });
        for (const r of [a1, a2, b, otherSub]) await store.create(r);

        expect((await store.deleteBySubject(a1.issuer, a1.sub)).sort()).toStrictEqual([a1.idHash, a2.idHash].sort());
        expect(await store.get(a1.idHash)).toBeUndefined();
        expect(await store.get(a2.idHash)).toBeUndefined();
        expect(await store.get(b.idHash)).toStrictEqual(b);
        expect(await store.get(otherSub.idHash)).toStrictEqual(otherSub);
        expect(await store.deleteBySubject(a1.issuer, a1.sub)).toStrictEqual([]);
        // The deleted sessions are gone from the sid lookup as well.
        expect(await store.deleteBySid(a1.issuer, 'other-sid')).toStrictEqual([]);
      });

      it('keeps issuer and subject apart even when they contain separators', async () => {
        const x = makeRecord({ issuer: 'https://a', sub: 'b:c', sid: 's' });
        const y = makeRecord({ issuer: 'https://a:b', sub: 'c', sid: 's' });
        await store.create(x);
        await store.create(y);
        expect(await store.deleteBySubject('https://a', 'b:c')).toStrictEqual([x.idHash]);
        expect(await store.deleteBySid('https://a:b', 's')).toStrictEqual([y.idHash]);
      });

      it('deleteBySid deletes the sid at that issuer only', async () => {
        const a1 = makeRecord({ issuer: 'https://a.example', sid: `sid-${randomId().slice(0, 8)}` });
        const a2 = makeRecord({ issuer: a1.issuer, sid: a1.sid });
        const b = makeRecord({ issuer: 'https://b.example', sid: a1.sid });
        const noSid = makeRecord({ issuer: a1.issuer, sub: a1.sub, sid: null });
        for (const r of [a1, a2, b, noSid]) await store.create(r);

        expect((await store.deleteBySid(a1.issuer, a1.sid as string)).sort()).toStrictEqual([a1.idHash, a2.idHash].sort());
        expect(await store.get(b.idHash)).toStrictEqual(b);
        expect(await store.get(noSid.idHash)).toStrictEqual(noSid);
        expect(await store.deleteBySid(a1.issuer, a1.sid as string)).toStrictEqual([]);
        expect(await store.listBySubject(a1.issuer, a1.sub)).toStrictEqual([noSid]);
      });

      it('listBySubject lists that issuer’s sessions of the subject, oldest first', async () => {
        const first = makeRecord({ issuer: 'https://a.example' });
        const second = makeRecord({ issuer: first.issuer, sub: first.sub, createdAt: first.createdAt + 10 });
        const otherIssuer = makeRecord({ issuer: 'https://b.example', sub: first.sub });
        for (const r of [second, first, otherIssuer]) await store.create(r);
        expect(await store.listBySubject(first.issuer, first.sub)).toStrictEqual([first, second]);
        expect(await store.listBySubject(first.issuer, 'nobody')).toStrictEqual([]);
      });
    });

    describe('listByIssuer', () => {
      it("lists the live sessions of a tenant at an issuer, oldest first, at most limit (an administrator's GET /sessions)", async () => {
        const issuer = `https://admin-${randomBytes(4).toString('hex')}.example`;
        const first = makeRecord({ issuer, tenant: 't1' });
        const second = makeRecord({ issuer, tenant: 't1', createdAt: first.createdAt + 10 });
        const otherTenant = makeRecord({ issuer, tenant: 't2' });
        const noTenant = makeRecord({ issuer, tenant: null });
        const otherIssuer = makeRecord({ issuer: `${issuer}/other`, tenant: 't1' });
        const idle = makeRecord({ issuer, tenant: 't1', idleExpiresAt: first.createdAt - 1000 });
        for (const r of [second, first, otherTenant, noTenant, otherIssuer, idle]) await store.create(r);
        const now = first.createdAt;
        expect(await store.listByIssuer(issuer, 't1', now, 10)).toStrictEqual([first, second]);
        expect(await store.listByIssuer(issuer, 't1', now, 1)).toStrictEqual([first]);
        expect(await store.listByIssuer(issuer, null, now, 10)).toStrictEqual([noTenant]);
        expect(await store.listByIssuer(issuer, 't3', now, 10)).toStrictEqual([]);
      });
    });

    describe('deleteExpired', () => {
      it('deletes absolutely and idle-expired sessions in bounded batches', async () => {
        const s = await migratedStoreOnFreshNamespace();
        const now = Date.now() + 2 * DAY;
        const absolute = makeRecord({ createdAt: now - 9 * HOUR, expiresAt: now - 1, idleExpiresAt: now - 1 });
        const idle = makeRecord({ createdAt: now - 2 * HOUR, expiresAt: now + 6 * HOUR, idleExpiresAt: now - 1 });
        const active = makeRecord({ createdAt: now - HOUR, expiresAt: now + 7 * HOUR, idleExpiresAt: now + HOUR });
        const boundary = makeRecord({ createdAt: now - HOUR, expiresAt: now + HOUR, idleExpiresAt: now });
        for (const r of [absolute, idle, active, boundary]) await s.create(r);

        expect(await s.deleteExpired(now, 1)).toBe(1);
        expect(await s.deleteExpired(now, 1)).toBe(1);
        expect(await s.deleteExpired(now, 1)).toBe(0);
        expect(await s.get(absolute.idHash)).toBeUndefined();
        expect(await s.get(idle.idHash)).toBeUndefined();
        expect(await s.get(active.idHash)).toStrictEqual(active);
        // "Before now" is strict: a session whose idle end is exactly now stays.
        expect(await s.get(boundary.idHash)).toStrictEqual(boundary);
        expect(await s.listBySubject(idle.issuer, idle.sub)).toStrictEqual([]);
      });

      it('respects the limit and the caller loops until 0', async () => {
        const s = await migratedStoreOnFreshNamespace();
        const now = Date.now() + 2 * DAY;
        for (let i = 0; i < 25; i++) await s.create(makeRecord({ createdAt: now - HOUR, idleExpiresAt: now - 1 - i }));
        const keep = makeRecord({ createdAt: now - HOUR, expiresAt: now + HOUR, idleExpiresAt: now + HOUR });
        await s.create(keep);

        const batches: number[] = [];
        for (let n = -1; n !== 0; ) batches.push((n = await s.deleteExpired(now, 10)));
        expect(batches).toStrictEqual([10, 10, 5, 0]);
        expect(await s.countActive(now)).toBe(1);
      });

      it('does not remove a session touched back to life', async () => {
        const s = await migratedStoreOnFreshNamespace();
        const now = Date.now() + 2 * DAY;
        const r = makeRecord({ createdAt: now - HOUR, expiresAt: now + HOUR, idleExpiresAt: now - 1 });
        await s.create(r);
        await s.touch(r.idHash, now, now + 30 * 60 * 1000);
        expect(await s.deleteExpired(now, 10)).toBe(0);
        expect((await s.get(r.idHash))?.idleExpiresAt).toBe(now + 30 * 60 * 1000);
      });
    });

    describe('refresh lease', () => {
      it('is exclusive until released by its owner', async () => {
        const record = makeRecord();
        await store.create(record);
        expect(await store.acquireRefreshLease(record.idHash, 'owner-1', 10_000)).toEqual({ state: 'acquired' });
        const held = await store.acquireRefreshLease(record.idHash, 'owner-2', 10_000);
        expect(held).toMatchObject({ state: 'held', holder: { owner: 'owner-1' }, expired: false });
        // Not even its owner acquires it twice: a lease is renewed, never re-taken.
        expect(await store.acquireRefreshLease(record.idHash, 'owner-1', 10_000)).toMatchObject({ state: 'held' });
        // A release by a non-owner is ignored.
        await store.releaseRefreshLease(record.idHash, 'owner-2');
        expect(await store.acquireRefreshLease(record.idHash, 'owner-2', 10_000)).toMatchObject({ state: 'held' });
        await store.releaseRefreshLease(record.idHash, 'owner-1');
        expect(await store.acquireRefreshLease(record.idHash, 'owner-2', 10_000)).toEqual({ state: 'acquired' });
        // The lease does not touch the session's data.
        expect(await store.get(record.idHash)).toStrictEqual(record);
      });

      it('reports its expiry on the store clock, and is taken over only by naming the expired holder', async () => {
        // A live lease (long enough that no machine is slow enough to see it expire here).
        const live = makeRecord();
        await store.create(live);
        const before = Date.now();
        expect(await store.acquireRefreshLease(live.idHash, 'owner-1', 10_000)).toEqual({ state: 'acquired' });
        const held = await store.acquireRefreshLease(live.idHash, 'owner-2', 10_000);
        if (held.state !== 'held') throw new Error(`expected a held lease, got ${held.state}`);
        expect(held.expired).toBe(false);
        // The store's clock is this machine's here: the expiry is about 10 s from the acquisition.
        expect(held.holder.expiresAt).toBeGreaterThanOrEqual(before + 10_000 - 50);
        expect(held.holder.expiresAt).toBeLessThanOrEqual(Date.now() + 10_000 + 50);
        // Naming the holder does not take a live lease.
        expect(await store.acquireRefreshLease(live.idHash, 'owner-2', 10_000, held.holder)).toMatchObject({ state: 'held', expired: false });

        // A lease that has expired (a slow machine only makes it more so).
        const record = makeRecord();
        await store.create(record);
        expect(await store.acquireRefreshLease(record.idHash, 'owner-1', 100)).toEqual({ state: 'acquired' });
        await sleep(200);
        // Expired, but its holder may be alive with tokens it could not write: never taken without naming it.
        const expired = await store.acquireRefreshLease(record.idHash, 'owner-2', 10_000);
        if (expired.state !== 'held') throw new Error(`expected a held lease, got ${expired.state}`);
        expect(expired.expired).toBe(true);
        expect(expired.holder.owner).toBe('owner-1');
        expect(expired.holder.expiresAt).toBeLessThanOrEqual(Date.now());
        // Naming another expiry (the holder renewed since) takes nothing.
        expect(await store.acquireRefreshLease(record.idHash, 'owner-2', 10_000, { ...expired.holder, expiresAt: expired.holder.expiresAt - 1 })).toMatchObject({ state: 'held' });
        expect(await store.acquireRefreshLease(record.idHash, 'owner-2', 10_000, expired.holder)).toEqual({ state: 'acquired' });
        // The old holder has lost it: it can neither renew nor write.
        expect(await store.renewRefreshLease(record.idHash, 'owner-1', 10_000)).toBe(false);
        expect(await store.completeRefresh(record.idHash, 'owner-1', { payload: 'late', accessExpiresAt: null })).toBeNull();
        expect((await store.get(record.idHash))?.payload).toBe(record.payload);
      });

      it('is extended by its owner only', async () => {
        const record = makeRecord();
        await store.create(record);
        await store.acquireRefreshLease(record.idHash, 'owner-1', 100);
        expect(await store.renewRefreshLease(record.idHash, 'owner-2', 10_000)).toBe(false);
        expect(await store.renewRefreshLease(record.idHash, 'owner-1', 10_000)).toBe(true);
        await sleep(200);
        const held = await store.acquireRefreshLease(record.idHash, 'owner-2', 10_000);
        expect(held).toMatchObject({ state: 'held', expired: false });
        // An expired lease nobody took over is still its owner's to renew.
        await store.releaseRefreshLease(record.idHash, 'owner-1');
        await store.acquireRefreshLease(record.idHash, 'owner-1', 50);
        await sleep(100);
        expect(await store.renewRefreshLease(record.idHash, 'owner-1', 10_000)).toBe(true);
        expect(await store.acquireRefreshLease(record.idHash, 'owner-2', 10_000)).toMatchObject({ state: 'held', expired: false });
      });

      it('lets only one of several concurrent acquirers win', async () => {
        const record = makeRecord();
        await store.create(record);
        const results = await Promise.all(Array.from({ length: 5 }, (_, i) => store.acquireRefreshLease(record.idHash, `owner-${i}`, 10_000)));
        expect(results.filter((r) => r.state === 'acquired')).toHaveLength(1);
      });

      it('is not granted for an absent session', async () => {
        const id = randomId();
        expect(await store.acquireRefreshLease(id, 'owner-1', 10_000)).toEqual({ state: 'gone' });
        expect(await store.renewRefreshLease(id, 'owner-1', 10_000)).toBe(false);
        expect(await store.completeRefresh(id, 'owner-1', { payload: 'x', accessExpiresAt: null })).toBeNull();
        expect(await store.get(id)).toBeUndefined();
      });
    });

    describe('completeRefresh', () => {
      it('writes the tokens, bumps the version and releases the lease, whatever the version', async () => {
        const record = makeRecord({ version: 3 });
        await store.create(record);
        await store.acquireRefreshLease(record.idHash, 'owner-1', 10_000);
        // A re-encryption of the same tokens moves the version meanwhile: the refresh write still lands.
        expect(await store.updatePayload(record.idHash, 3, { payload: 'reencrypted', accessExpiresAt: record.accessExpiresAt })).toBe(4);
        expect(await store.completeRefresh(record.idHash, 'owner-1', { payload: 'refreshed', accessExpiresAt: record.createdAt + 999 })).toBe(5);
        expect(await store.get(record.idHash)).toStrictEqual({ ...record, payload: 'refreshed', accessExpiresAt: record.createdAt + 999, version: 5 });
        // Released: the next refresh can take the lease, the writer cannot write twice.
        expect(await store.completeRefresh(record.idHash, 'owner-1', { payload: 'again', accessExpiresAt: null })).toBeNull();
        expect(await store.acquireRefreshLease(record.idHash, 'owner-2', 10_000)).toEqual({ state: 'acquired' });
        expect(await store.completeRefresh(record.idHash, 'owner-2', { payload: 'p3', accessExpiresAt: null })).toBe(6);
        expect((await store.get(record.idHash))?.accessExpiresAt).toBeNull();
      });

      it('writes nothing without the lease', async () => {
        const record = makeRecord();
        await store.create(record);
        expect(await store.completeRefresh(record.idHash, 'owner-1', { payload: 'x', accessExpiresAt: null })).toBeNull();
        await store.acquireRefreshLease(record.idHash, 'owner-2', 10_000);
        expect(await store.completeRefresh(record.idHash, 'owner-1', { payload: 'x', accessExpiresAt: null })).toBeNull();
        expect(await store.get(record.idHash)).toStrictEqual(record);
      });
    });

    describe('countActive', () => {
      it('counts sessions with neither expiry before now', async () => {
        const s = await migratedStoreOnFreshNamespace();
        const now = Date.now() + 2 * DAY;
        expect(await s.countActive(now)).toBe(0);
        await s.create(makeRecord({ createdAt: now - HOUR, expiresAt: now + HOUR, idleExpiresAt: now + HOUR }));
        await s.create(makeRecord({ createdAt: now - HOUR, expiresAt: now + HOUR, idleExpiresAt: now }));
        await s.create(makeRecord({ createdAt: now - HOUR, expiresAt: now - 1, idleExpiresAt: now - 1 }));
        await s.create(makeRecord({ createdAt: now - HOUR, expiresAt: now + HOUR, idleExpiresAt: now - 1 }));
        expect(await s.countActive(now)).toBe(2);
        expect(await s.countActive(now + HOUR + 1)).toBe(0);
      });
    });

    describe('invalidation', () => {
      it('reaches listeners on this and on a second instance of the same store', async () => {
        const other = openOn(shared);
        const seenHere: string[][] = [];
        const seenThere: string[][] = [];
        store.onInvalidation((ids) => seenHere.push(ids));
        other.onInvalidation((ids) => seenThere.push(ids));
        const ids = [randomId(), randomId()];
        // The listening connection comes up asynchronously: publish until it has been heard.
        await eventually(async () => {
          await store.publishInvalidation(ids);
          return seenThere.length > 0 && seenHere.length > 0;
        }, 10_000, 200);
        expect(seenThere[0]).toStrictEqual(ids);
        expect(seenHere[0]).toStrictEqual(ids);
      });

      it('carries large batches', async () => {
        const other = openOn(shared);
        const ids = Array.from({ length: 250 }, randomId);
        const seen = new Set<string>();
        other.onInvalidation((batch) => batch.forEach((id) => seen.add(id)));
        await eventually(async () => {
          await store.publishInvalidation(ids);
          return ids.every((id) => seen.has(id));
        }, 10_000, 200);
      });
    });

    describe('one-time token uses (back-channel logout jti)', () => {
      it('is recorded once: a second use is a replay, on this and on another instance', async () => {
        const key = randomId();
        const now = Date.now();
        expect(await store.recordTokenUse(key, now + HOUR, now)).toBe(true);
        expect(await store.recordTokenUse(key, now + HOUR, now)).toBe(false);
        const other = openOn(shared);
        expect(await other.recordTokenUse(key, now + HOUR, now)).toBe(false);
        expect(await store.recordTokenUse(randomId(), now + HOUR, now)).toBe(true);
      });

      it('lets exactly one of several concurrent instances record a key', async () => {
        const key = randomId();
        const now = Date.now();
        const instances = [store, openOn(shared), openOn(shared)];
        const results = await Promise.all([...instances, ...instances].map((s) => s.recordTokenUse(key, now + HOUR, now)));
        expect(results.filter(Boolean)).toHaveLength(1);
      });

      it('is forgotten on request, and no longer counts once expired', async () => {
        const key = randomId();
        const now = Date.now();
        expect(await store.recordTokenUse(key, now + HOUR, now)).toBe(true);
        await store.forgetTokenUse(key);
        expect(await store.recordTokenUse(key, now + 300, now)).toBe(true);
        // Past its expiry (on the store's clock for Redis, on `now` for SQL): usable again.
        await sleep(400);
        expect(await store.recordTokenUse(key, Date.now() + HOUR, Date.now())).toBe(true);
        expect(await store.recordTokenUse(key, Date.now() + HOUR, Date.now())).toBe(false);
      });
    });

    describe('client registrations', () => {
      it('puts, gets and overwrites', async () => {
        const id = `client-${randomId().slice(0, 8)}`;
        expect(await store.getClientRegistration(id)).toBeUndefined();
        await store.putClientRegistration(id, 'sealed-1');
        expect(await store.getClientRegistration(id)).toBe('sealed-1');
        await store.putClientRegistration(id, 'sealed-2');
        expect(await store.getClientRegistration(id)).toBe('sealed-2');
      });
    });

    describe('migrate', () => {
      it('is harmless when run again', async () => {
        const record = makeRecord();
        await store.create(record);
        await store.migrate();
        await openOn(shared).migrate();
        expect(await store.get(record.idHash)).toStrictEqual(record);
      });

      it('is safe when two instances migrate a fresh namespace at once', async () => {
        const ns = await freshNamespace();
        const [a, b, c] = [openOn(ns), openOn(ns), openOn(ns)];
        await Promise.all([a.migrate(), b.migrate(), c.migrate()]);
        const record = makeRecord();
        await a.create(record);
        expect(await b.get(record.idHash)).toStrictEqual(record);
      });

      it('ping succeeds', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });
    });
  });
}
