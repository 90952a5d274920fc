/**
 * Issue 18.10 / 23: the refresh lease outlasts the longest refresh it guards. A refresh makes up to
 * REFRESH_IDP_CALLS calls to the IdP (discovery, the grant, the key set, a refetch for an unknown kid,
 * userinfo), each cut at `--oidc_timeout`; the holder renewed its lease for only two of them, so a slow
 * IdP let the lease lapse mid-refresh and another instance took it over and presented the refresh token
 * the holder had already used (reuse at the IdP: the grant revoked, the user logged out).
 *
 * Two session services (two instances) on one real SQLite file; the holder's refresh takes 13.5 s with an
 * OIDC timeout of 3 s (four slow calls). Before the fix the lease lapsed at 6 s + 3 s and the other
 * instance took over after its 3 s watch (12 s), or gave up waiting at 13 s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { TokenSet } from '../../src/oidc/flows.ts';
import { longestRefreshMs } from '../../src/session/lease.ts';
import type { Refresher, SessionService } from '../../src/session/service.ts';
import { createSqliteStore } from '../../src/store/sqlite.ts';
import type { SessionStore } from '../../src/store/types.ts';
import { testSessionService } from '../support/sessions.ts';

const CLIENT = { clientId: 'default', tenant: null };
const OIDC_TIMEOUT_MS = 3_000;
const SLOW_REFRESH_MS = 13_500;
let dir: string;
let store: SessionStore;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'th-lease-renewal-'));
  store = createSqliteStore({ path: join(dir, 'sessions.db'), onError: () => {} });
  await store.migrate();
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function tokens(overrides: Partial<TokenSet>): TokenSet {
  return { accessToken: 'at-1', refreshToken: 'rt-1', idToken: undefined, accessExpiresAt: Date.now() + 300_000, refreshExpiresAt: null, scope: undefined, ...overrides };
}

function instance(refresher: Refresher): SessionService {
  return testSessionService({ store, refresher, oidcTimeoutMs: OIDC_TIMEOUT_MS });
}

it('a refresh as slow as four IdP calls at the OIDC timeout keeps its lease: the other instance waits and adopts its tokens', async () => {
  // The refresh this test makes is possible: within what REFRESH_IDP_CALLS calls at the timeout can take.
  expect(SLOW_REFRESH_MS).toBeLessThan(longestRefreshMs(OIDC_TIMEOUT_MS) - 2_000);
  const presented: string[] = [];
  const holder = instance(async (_client, refreshToken, context) => {
    presented.push(refreshToken);
    await sleep(SLOW_REFRESH_MS);
    return { tokens: tokens({ accessToken: 'at-2', refreshToken: 'rt-2' }), claims: context.claims };
  });
  const other = instance(async (_client, refreshToken, context) => {
    presented.push(refreshToken);
    return { tokens: tokens({ accessToken: 'at-other', refreshToken: 'rt-other' }), claims: context.claims };
  });
  const { cookieValue } = await holder.create({ ...CLIENT, issuer: 'https://idp.invalid', sub: 'alice', sid: null, tokens: tokens({ accessExpiresAt: Date.now() - 1 }), claims: { roles: [] }, userAgent: null });

  const first = holder.accessToken((await holder.resolve(cookieValue, CLIENT))!);
  // The holder has taken the lease and is at the IdP.
  while (presented.length === 0) await sleep(20);
  const second = other.accessToken((await other.resolve(cookieValue, CLIENT))!);

  expect(await first).toBe('at-2');
  expect(await second).toBe('at-2');
  // One refresh grant: the used refresh token was never presented again.
  expect(presented).toStrictEqual(['rt-1']);
  await holder.close();
  await other.close();
}, 60_000);
