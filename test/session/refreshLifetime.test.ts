/**
 * A refresh token's lifetime bounds its session (Keycloak's SSO idle and max, announced as
 * `refresh_expires_in`): the session ends when its refresh token does, and a refresh that brings a new
 * lifetime moves the end. The clock is the test's; the store a real SQLite file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TokenSet } from '../../src/oidc/flows.ts';
import { sessionEndsAt } from '../../src/session/model.ts';
import type { Refresher, SessionService } from '../../src/session/service.ts';
import { createSqliteStore } from '../../src/store/sqlite.ts';
import type { SessionStore } from '../../src/store/types.ts';
import { testSessionService } from '../support/sessions.ts';

const CLIENT = { clientId: 'default', tenant: null };
let dir: string;
let store: SessionStore;
const clock = { now: 1_000_000_000 };

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'th-refresh-lifetime-'));
  store = createSqliteStore({ path: join(dir, 'sessions.db'), onError: () => {} });
  await store.migrate();
  clock.now = 1_000_000_000;
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function tokens(overrides: Partial<TokenSet>): TokenSet {
  return { accessToken: 'at-1', refreshToken: 'rt-1', idToken: undefined, accessExpiresAt: clock.now + 300_000, refreshExpiresAt: null, scope: undefined, ...overrides };
}

function service(refresher?: Refresher): SessionService {
  return testSessionService({ store, ...(refresher && { refresher }), now: () => clock.now });
}

const newSession = (t: TokenSet) => ({ ...CLIENT, issuer: 'https://idp.invalid/realms/demo', sub: 'alice', sid: null, tokens: t, claims: { roles: [] }, userAgent: null });

describe('refresh-token lifetime', () => {
  it('ends the session when its refresh token expires, long before the absolute lifetime', async () => {
    const sessions = service();
    const { cookieValue, session } = await sessions.create(newSession(tokens({ refreshExpiresAt: clock.now + 1800_000 })));
    expect(sessionEndsAt(session.record, session.payload)).toBe(clock.now + 1800_000);
    clock.now += 1799_000;
    expect(await sessions.resolve(cookieValue, CLIENT)).toBeDefined();
    clock.now += 1_000;
    expect(await sessions.resolve(cookieValue, CLIENT)).toBeUndefined();
  });

  it('a session without a known refresh-token lifetime keeps its absolute end', async () => {
    const sessions = service();
    const { session } = await sessions.create(newSession(tokens({})));
    expect(session.payload.refreshExpiresAt).toBeUndefined();
    expect(sessionEndsAt(session.record, session.payload)).toBe(session.record.expiresAt);
  });

  it('a refresh that announces a new refresh-token lifetime moves the end; one without a new refresh token keeps it', async () => {
    let next: TokenSet = tokens({ accessToken: 'at-2', refreshToken: 'rt-2', refreshExpiresAt: clock.now + 3000_000 });
    const sessions = service(async (_client, _refreshToken, context) => ({ tokens: next, claims: context.claims }));
    const { cookieValue } = await sessions.create(newSession(tokens({ accessExpiresAt: clock.now - 1, refreshExpiresAt: clock.now + 1800_000 })));
    const session = (await sessions.resolve(cookieValue, CLIENT))!;
    expect(await sessions.accessToken(session)).toBe('at-2');
    expect(session.payload.refreshExpiresAt).toBe(clock.now + 3000_000);

    next = tokens({ accessToken: 'at-3', refreshToken: undefined, refreshExpiresAt: null });
    const record = (await store.get(session.idHash))!;
    await store.updatePayload(record.idHash, record.version, { payload: record.payload, accessExpiresAt: clock.now - 1 });
    const again = (await sessions.resolve(cookieValue, CLIENT))!;
    expect(await sessions.accessToken(again)).toBe('at-3');
    expect(again.payload.refreshToken).toBe('rt-2');
    expect(again.payload.refreshExpiresAt).toBe(clock.now + 3000_000);
  });
});
