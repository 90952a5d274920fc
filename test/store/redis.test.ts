import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createRedisStore } from '../../src/store/redis.ts';
import { checkFailsFastWhenClosed, checkOutageRecovery, eventually, makeRecord, runStoreContract } from './contract.ts';
import { closedPort, startTcpProxy } from './net.ts';

import { REDIS_URL as url, probeRedis as probe } from '../support/services.ts';
const quiet = () => {};
/** Every key of this run lives under this prefix; each namespace adds its own part. */
const runPrefix = `th-test:${randomBytes(6).toString('hex')}:`;


const unavailable = await probe();
const admin = unavailable === undefined ? new Redis(url) : undefined;

async function deleteKeys(prefix: string): Promise<void> {
  if (admin === undefined) return;
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  for await (const keys of admin.scanStream({ match: pattern, count: 1000 }) as AsyncIterable<string[]>) {
    if (keys.length > 0) await admin.unlink(...keys);
  }
}

afterAll(async () => {
  await deleteKeys(runPrefix);
  admin?.disconnect();
});

let namespaces = 0;
const newPrefix = () => `${runPrefix}${++namespaces}:`;

runStoreContract('redis', {
  unavailable,
  async namespace() {
    const keyPrefix = newPrefix();
    return {
      open: () => createRedisStore({ url, keyPrefix, onError: quiet }),
      drop: () => deleteKeys(keyPrefix),
    };
  },
});

describe.skipIf(unavailable !== undefined)('redis store specifics', () => {
  it('stores a session as a hash expiring at max(expiresAt, idleExpiresAt), with index sets', async () => {
    const keyPrefix = newPrefix();
    const store = createRedisStore({ url, keyPrefix, onError: quiet });
    try {
      const record = makeRecord({ issuer: 'https://idp:1', sub: 'a%b' });
      await store.create(record);
      const expireAt = await admin!.pexpiretime(`${keyPrefix}s:${record.idHash}`);
      expect(expireAt).toBe(Math.max(record.expiresAt, record.idleExpiresAt));
      expect(await admin!.smembers(`${keyPrefix}i:sub:https%3A//idp%3A1:a%25b`)).toStrictEqual([record.idHash]);
      expect(await admin!.smembers(`${keyPrefix}i:sid:https%3A//idp%3A1:${record.sid}`)).toStrictEqual([record.idHash]);
      expect(await admin!.pexpiretime(`${keyPrefix}i:sub:https%3A//idp%3A1:a%25b`)).toBe(expireAt);
      await store.delete(record.idHash);
      expect(await admin!.exists(`${keyPrefix}i:sub:https%3A//idp%3A1:a%25b`, `${keyPrefix}deadlines`)).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('tolerates index members whose session expired by TTL, and sweeps them', async () => {
    const keyPrefix = newPrefix();
    const store = createRedisStore({ url, keyPrefix, onError: quiet });
    try {
      const live = makeRecord();
      const gone = makeRecord({ issuer: live.issuer, sub: live.sub, sid: live.sid });
      const orphan = makeRecord();
      for (const r of [live, gone, orphan]) await store.create(r);
      // Simulate Redis expiring the hashes by TTL: the index sets and deadlines still name them.
      await admin!.del(`${keyPrefix}s:${gone.idHash}`, `${keyPrefix}s:${orphan.idHash}`);

      expect(await store.listBySubject(live.issuer, live.sub)).toStrictEqual([live]);
      expect(await store.deleteBySid(live.issuer, live.sid as string)).toStrictEqual([live.idHash]);

      // The orphan's index sets are only reachable by the SCAN sweep in deleteExpired.
      const orphanSub = `${keyPrefix}i:sub:${orphan.issuer.replaceAll(':', '%3A')}:${orphan.sub}`;
      expect(await admin!.sismember(orphanSub, orphan.idHash)).toBe(1);
      await eventually(async () => {
        await store.deleteExpired(Date.now(), 100);
        return (await admin!.exists(orphanSub)) === 0;
      }, 5000, 10);
    } finally {
      await store.close();
    }
  });

  it('fails fast with StoreUnavailableError when nothing listens on the port', async () => {
    const port = await closedPort();
    await checkFailsFastWhenClosed(createRedisStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: newPrefix(), onError: quiet }));
  });

  it('fails fast while Redis is cut off and recovers by itself, subscriber included', async () => {
    const target = new URL(url);
    const proxy = await startTcpProxy(Number(target.port || 6379), target.hostname);
    const viaProxy = new URL(url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const keyPrefix = newPrefix();
    const store = createRedisStore({ url: viaProxy.toString(), keyPrefix, onError: quiet });
    const direct = createRedisStore({ url, keyPrefix, onError: quiet });
    try {
      await checkOutageRecovery(store, direct, proxy, 10_000);
    } finally {
      await Promise.all([store.close(), direct.close()]);
      await proxy.close();
    }
  });
});
