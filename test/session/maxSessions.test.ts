/**
 * --max_sessions_per_user (issue 18.13): a user could hold any number of sessions. With a limit, a new
 * login ends the user's oldest sessions of that client beyond it, on every store, in every instance's
 * cache; other users and other clients are not touched. Real logins at the dev IdP, real stores.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { join } from 'node:path';
import { tempDir, testClient, testConfig } from '../support/config.ts';
import { createBrowser, type Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { PG_URL, REDIS_URL, probePostgres, probeRedis, requireService } from '../support/services.ts';
import { idpClient } from '../multi/support.ts';
import { startApp, type RunningApp } from '../proxy/support.ts';

const API = '/token-handler/v1';
const suffix = randomBytes(5).toString('hex');
const pgSchema = `th_maxsessions_${suffix}`;
const redisPrefix = `th-test-maxsessions-${suffix}:`;

const stores: [string, Config['db'] | undefined][] = [
  ['sqlite', { type: 'sqlite', path: join(tempDir(), 'sessions.db') }],
  ['postgresql', requireService('postgresql', await probePostgres()) ? { type: 'postgresql', path: '', url: PG_URL, schema: pgSchema } : undefined],
  ['redis', requireService('redis', await probeRedis()) ? { type: 'redis', path: '', redisUrl: REDIS_URL, redisKeyPrefix: redisPrefix } : undefined],
];

let idp: DevIdp;
beforeAll(async () => {
  idp = await startDevIdp({
    clients: [idpClient('token-handler', 'default'), idpClient('second-app', 'second')],
    users: [
      { username: 'demo', password: 'demo', name: 'Demo User', email: 'demo@example.com', roles: ['user'] },
      { username: 'other', password: 'other', name: 'Other User', email: 'other@example.com', roles: ['user'] },
    ],
  });
});
afterAll(async () => {
  await idp?.close();
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect().then(() => admin.query(`drop schema if exists "${pgSchema}" cascade`)).catch(() => undefined);
  await admin.end().catch(() => undefined);
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    for await (const keys of redis.scanStream({ match: `${redisPrefix}*`, count: 1000 }) as AsyncIterable<string[]>) {
      if (keys.length > 0) await redis.del(...keys);
    }
  } catch {
    // Redis is not there: nothing was written.
  } finally {
    redis.disconnect();
  }
});

describe.each(stores.filter((entry): entry is [string, Config['db']] => entry[1] !== undefined))('--max_sessions_per_user on %s', (_name, db) => {
  let th: RunningApp;
  /** A second instance on the same store: the ended sessions must end in its cache too. */
  let sibling: RunningApp;

  beforeAll(async () => {
    const base = testConfig();
    const config = testConfig({
      clients: [testClient({ issuer: idp.issuer }), testClient({ id: 'second', issuer: idp.issuer, clientId: 'second-app', clientSecret: 'second-app-secret' })],
      session: { ...base.session, maxPerUser: 2 },
      db,
    });
    th = await startApp(config);
    sibling = await startApp(config);
  });
  afterAll(async () => {
    await sibling?.close();
    await th?.close();
  });

  async function loggedIn(username = 'demo', client = 'default'): Promise<Browser> {
    const browser = createBrowser();
    const flow = await loginAtDevIdp(browser, `${th.base}${API}/clients/${client}/auth`, { username, password: username });
    expect(flow.response.status).toBe(302);
    return browser;
  }
  const sessions = async (browser: Browser, base = th.base): Promise<unknown[]> => (await (await browser.get(`${base}${API}/sessions`)).json()) as unknown[];

  it('a third login of the same user ends the oldest session; other users and clients keep theirs', async () => {
    const first = await loggedIn();
    const otherUser = await loggedIn('other');
    const otherClient = await loggedIn('demo', 'second');
    const second = await loggedIn();
    // Both instances have the first session cached before it ends.
    expect(await sessions(first)).toHaveLength(1);
    expect(await sessions(first, sibling.base)).toHaveLength(1);

    const third = await loggedIn();
    expect(await sessions(first)).toEqual([]);
    expect(await sessions(first, sibling.base)).toEqual([]);
    for (const browser of [second, third, otherUser, otherClient]) expect(await sessions(browser)).toHaveLength(1);

    // The next login ends the (now) oldest, the second.
    const fourth = await loggedIn();
    expect(await sessions(second)).toEqual([]);
    expect(await sessions(third)).toHaveLength(1);
    expect(await sessions(fourth)).toHaveLength(1);
  });

  it('logging in again in the same browser replaces its session and ends nobody else', async () => {
    const a = await loggedIn('other');
    const b = createBrowser();
    for (let i = 0; i < 3; i += 1) await loginAtDevIdp(b, `${th.base}${API}/clients/default/auth`, { username: 'other', password: 'other' });
    expect(await sessions(b)).toHaveLength(1);
    // Two sessions of `other` in total (a's and b's last): within the limit.
    expect(await sessions(a)).toHaveLength(1);
  });
});
