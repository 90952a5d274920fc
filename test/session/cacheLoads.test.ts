/**
 * The resolved-session cache and the store reads behind it: concurrent misses share one read, a session
 * near the end of its TTL is reloaded in the background (requests keep being answered from memory), and
 * a read that was in flight when the session was evicted never puts the evicted session back.
 * A real SQLite store (temporary file); the clock is the test's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SessionService } from '../../src/session/service.ts';
import { NOT_IN_MEMORY } from '../../src/session/service.ts';
import { createSqliteStore } from '../../src/store/sqlite.ts';
import type { SessionRecord, SessionStore } from '../../src/store/types.ts';
import { testSessionService } from '../support/sessions.ts';

const TTL_MS = 1000;
const CLIENT = { clientId: 'default', tenant: null };

interface Harness {
  sessions: SessionService;
  store: SessionStore;
  /** Store reads so far. */
  gets(): number;
  /** While set, each store read resolves only when the test calls `release` (it has already read). */
  hold(): void;
  release(): void;
  clock: { now: number };
  cookie: string;
  idHash: string;
}

let dir: string;
let store: SessionStore;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'th-cache-loads-'));
  store = createSqliteStore({ path: join(dir, 'sessions.db'), onError: () => {} });
  await store.migrate();
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function harness(): Promise<Harness> {
  let gets = 0;
  let gate: Promise<void> | null = null;
  let open: (() => void) | null = null;
  const counted = new Proxy(store, {
    get(target, property, receiver) {
      if (property === 'get') {
        return async (idHash: string): Promise<SessionRecord | undefined> => {
          gets += 1;
          const record = await target.get(idHash);
          if (gate) await gate;
          return record;
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  const clock = { now: 1_000_000 };
  const sessions = testSessionService({ store: counted, cacheTtlMs: TTL_MS, now: () => clock.now });
  const { cookieValue, session } = await sessions.create({
    ...CLIENT,
    issuer: 'https://idp.invalid',
    sub: 'alice',
    sid: null,
    tokens: { accessToken: 'access-token', refreshToken: undefined, idToken: undefined, scope: undefined, accessExpiresAt: clock.now + 3600_000, refreshExpiresAt: null },
    claims: { name: 'Alice', roles: [] },
    userAgent: null,
  });
  return {
    sessions,
    store,
    gets: () => gets,
    hold() {
      gate = new Promise((resolve) => (open = resolve));
    },
    release() {
      gate = null;
      open?.();
    },
    clock,
    cookie: cookieValue,
    idHash: session.idHash,
  };
}

/** Waits (in real time) until `condition` holds: the store answers on its own schedule. */
async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached within 20 s');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

describe('resolved-session cache', () => {
  it('concurrent requests that miss the cache share one store read', async () => {
    const h = await harness();
    const resolved = await Promise.all(Array.from({ length: 20 }, () => h.sessions.resolve(h.cookie, CLIENT)));
    expect(resolved.every((s) => s?.idHash === h.idHash)).toBe(true);
    expect(h.gets()).toBe(1);
    // Cached now: answered from memory, no further read.
    expect(h.sessions.resolveInMemory(h.cookie, CLIENT)).not.toBe(NOT_IN_MEMORY);
    expect(h.gets()).toBe(1);
  });

  it('reloads a session in the background near the end of its TTL, answering from memory meanwhile', async () => {
    const h = await harness();
    await h.sessions.resolve(h.cookie, CLIENT);
    expect(h.gets()).toBe(1);

    h.clock.now += TTL_MS / 2;
    expect(h.sessions.resolveInMemory(h.cookie, CLIENT)).not.toBe(NOT_IN_MEMORY);
    expect(h.gets()).toBe(1); // not due yet

    h.clock.now += TTL_MS * 0.35; // 85 % of the TTL: due
    h.hold();
    const during = h.sessions.resolveInMemory(h.cookie, CLIENT);
    expect(during).not.toBe(NOT_IN_MEMORY);
    expect(h.gets()).toBe(2); // one background read started
    expect(h.sessions.resolveInMemory(h.cookie, CLIENT)).not.toBe(NOT_IN_MEMORY);
    expect(h.gets()).toBe(2); // and only one
    h.release();

    // Past the first load's expiry, the reloaded entry still answers from memory.
    h.clock.now += TTL_MS * 0.3;
    await until(() => h.sessions.resolveInMemory(h.cookie, CLIENT) !== NOT_IN_MEMORY);
    expect(h.gets()).toBe(2);
    // The TTL still bounds it: once the reloaded entry expires too, the store is asked again.
    h.clock.now += TTL_MS;
    expect(h.sessions.resolveInMemory(h.cookie, CLIENT)).toBe(NOT_IN_MEMORY);
  });

  it('drops a session that a background reload no longer finds', async () => {
    const h = await harness();
    await h.sessions.resolve(h.cookie, CLIENT);
    // Deleted behind this instance's back (no invalidation reaches it).
    expect(await h.store.delete(h.idHash)).toBe(true);
    h.clock.now += TTL_MS * 0.9;
    // Within its TTL the cached session is still served (the documented bound)...
    expect(h.sessions.resolveInMemory(h.cookie, CLIENT)).not.toBe(NOT_IN_MEMORY);
    // ...and the reload it started removes it before the TTL is up.
    await until(() => h.sessions.resolveInMemory(h.cookie, CLIENT) === NOT_IN_MEMORY);
    expect(await h.sessions.resolve(h.cookie, CLIENT)).toBeUndefined();
  });

  it('never caches what a read in flight saw before the session was ended', async () => {
    const h = await harness();
    h.hold();
    // The read happens now, with the session still in the store; its answer is held back.
    const racing = h.sessions.resolve(h.cookie, CLIENT);
    await until(() => h.gets() === 1);
    await h.sessions.destroy(h.idHash); // logout: row deleted, cache evicted
    h.release();
    // The request that raced the logout is answered with what it read...
    expect((await racing)?.idHash).toBe(h.idHash);
    // ...but that answer was not cached: the next request asks the store and finds nothing.
    expect(h.sessions.resolveInMemory(h.cookie, CLIENT)).toBe(NOT_IN_MEMORY);
    expect(await h.sessions.resolve(h.cookie, CLIENT)).toBeUndefined();
  });
});
