/**
 * Issue 23.2, at shutdown: refreshed tokens the store could not take yet are not dropped by a SIGTERM
 * that comes while the store is out. The IdP has already used up the refresh token they replaced, so
 * losing them means the next refresh presents a used token (reuse: the session ends). The shutdown waits,
 * for a bounded time, for their write to go through.
 *
 * A real SQLite file behind a switch that makes the store's writes of refreshed tokens fail, as an
 * unreachable PostgreSQL or Redis does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TokenSet } from '../../src/oidc/flows.ts';
import type { SessionService } from '../../src/session/service.ts';
import { createSqliteStore } from '../../src/store/sqlite.ts';
import type { SessionStore } from '../../src/store/types.ts';
import { quietLog, testSessionService } from '../support/sessions.ts';

const CLIENT = { clientId: 'default', tenant: null };
let dir: string;
let store: SessionStore;
const outage = { on: false };
const warnings: string[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'th-shutdown-writes-'));
  store = createSqliteStore({ path: join(dir, 'sessions.db'), onError: () => {} });
  await store.migrate();
  outage.on = false;
  warnings.length = 0;
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The store, with its refresh writes failing while `outage.on`. */
function unreliable(): SessionStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      const fn = (value as (...args: unknown[]) => unknown).bind(target);
      if (property !== 'completeRefresh') return fn;
      return (...args: unknown[]) => (outage.on ? Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432')) : fn(...args));
    },
  });
}

function tokens(overrides: Partial<TokenSet>): TokenSet {
  return { accessToken: 'at-1', refreshToken: 'rt-1', idToken: undefined, accessExpiresAt: Date.now() + 300_000, refreshExpiresAt: null, scope: undefined, ...overrides };
}

async function refreshedDuringOutage(): Promise<{ sessions: SessionService; idHash: string }> {
  const sessions = testSessionService({
    store: unreliable(),
    refresher: async (_client, _refreshToken, context) => ({ tokens: tokens({ accessToken: 'at-2', refreshToken: 'rt-2' }), claims: context.claims }),
    log: { ...quietLog, warn: (...args: unknown[]) => void warnings.push(String(args.find((arg) => typeof arg === 'string'))) },
  });
  const { cookieValue, session } = await sessions.create({ ...CLIENT, issuer: 'https://idp.invalid', sub: 'alice', sid: null, tokens: tokens({ accessExpiresAt: Date.now() - 1 }), claims: { roles: [] }, userAgent: null });
  outage.on = true;
  // Served at once from memory, while the write waits for the store.
  expect(await sessions.accessToken((await sessions.resolve(cookieValue, CLIENT))!)).toBe('at-2');
  return { sessions, idHash: session.idHash };
}

const storedRefreshToken = async (sessions: SessionService, idHash: string) => sessions.decryptPayload((await store.get(idHash))!).refreshToken;

describe('a shutdown while refreshed tokens wait for the store', () => {
  it('waits for the store to come back and writes them', async () => {
    const { sessions, idHash } = await refreshedDuringOutage();
    const closing = sessions.close(60_000);
    await sleep(300);
    expect(await storedRefreshToken(sessions, idHash)).toBe('rt-1');
    outage.on = false;
    await closing;
    expect(await storedRefreshToken(sessions, idHash)).toBe('rt-2');
    expect(warnings).not.toContain('refreshed tokens of some sessions were never written: the store was unreachable until shutdown');
  });

  it('gives up after its bound when the store stays out, and says so', async () => {
    const { sessions, idHash } = await refreshedDuringOutage();
    await sessions.close(500);
    expect(warnings).toContain('refreshed tokens of some sessions were never written: the store was unreachable until shutdown');
    outage.on = false;
    // Nothing is retried after the shutdown.
    await sleep(1_000);
    expect(await storedRefreshToken(sessions, idHash)).toBe('rt-1');
  });
});
