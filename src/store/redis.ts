/**
 * Redis backend (Redis >= 7.0, standalone or a primary; not Cluster). Key layout: see redisKeys.ts.
 *
 * Expiry: a session hash carries PEXPIREAT max(expiresAt, idleExpiresAt), so Redis drops it once both
 * times have passed. Idle expiry comes earlier and moves with every touch, so the `deadlines` sorted set
 * (score min(expiresAt, idleExpiresAt), updated by touch) tells deleteExpired what to remove and makes
 * countActive an exact ZCOUNT instead of a SCAN estimate. Index sets whose members vanished through TTL
 * are cleaned lazily (listBySubject/deleteBy*) and by a bounded SCAN step in each deleteExpired call that
 * finds the backlog done (fewer expired sessions than its limit).
 *
 * Availability: no offline queue and a short command timeout, so an outage fails calls at once (or after
 * connectTimeoutMs while the very first connection is still being made) with StoreUnavailableError;
 * ioredis keeps reconnecting in the background and calls succeed again as soon as it is back.
 */
import { Redis } from 'ioredis';
import type { ChainableCommander } from 'ioredis';
import { isNetworkError, mapUnavailable } from './errors.ts';
import { ListenerSet, decodeInvalidation, defaultOnError, encodeInvalidation } from './invalidation.ts';
import type { InvalidationListener } from './invalidation.ts';
import { redisKeys } from './redisKeys.ts';
import { withScripts } from './redisScripts.ts';
import type { DeleteMode, ScriptedPipeline } from './redisScripts.ts';
import { StoreUnavailableError } from './types.ts';
import type { LeaseAttempt, LeaseHolder, PayloadUpdate, SessionRecord, SessionStore } from './types.ts';

export interface RedisStoreOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://` for TLS. */
  url: string;
  /** Prefix of every key and of the pub/sub channel; default `th:`. */
  keyPrefix?: string;
  /** Default 2000 ms: TCP connect timeout and how long calls wait for the very first connection. */
  connectTimeoutMs?: number;
  /** Default 2000 ms: a command without reply after this long fails (and counts as unavailable). */
  commandTimeoutMs?: number;
  onError?: (err: unknown) => void;
}

/** Bumped when the key layout changes incompatibly; migrate() refuses data from a newer layout. */
const SCHEMA_VERSION = 1;

/** Replies that mean the server cannot serve us right now (loading, failover, script stuck). */
const UNAVAILABLE_REPLIES = /^(LOADING|READONLY|MASTERDOWN|BUSY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/;
/** ioredis' own connection-state errors carry no code. */
const UNAVAILABLE_MESSAGES = /Connection is closed|Stream isn't writeable|Command timed out|Socket closed unexpectedly|max retries/i;

export function isRedisUnavailable(err: unknown): boolean {
  if (isNetworkError(err)) return true;
  if (!(err instanceof Error)) return false;
  if (err.name === 'ReplyError') return UNAVAILABLE_REPLIES.test(err.message);
  return err.name === 'MaxRetriesPerRequestError' || UNAVAILABLE_MESSAGES.test(err.message);
}

/** Session fields as stored in the hash; absent means null. */
type SessionHash = Record<string, string>;

function required(hash: SessionHash, field: string): string {
  const value = hash[field];
  if (value === undefined) throw new Error(`corrupt session hash: missing ${field}`);
  return value;
}

function optionalNumber(hash: SessionHash, field: string): number | null {
  const value = hash[field];
  return value === undefined ? null : Number(value);
}

function parseSession(idHash: string, hash: SessionHash): SessionRecord | undefined {
  // HGETALL of a missing key is {}.
  if (hash.payload === undefined) return undefined;
  return {
    idHash,
    clientId: required(hash, 'clientId'),
    tenant: hash.tenant ?? null,
    issuer: required(hash, 'issuer'),
    sub: required(hash, 'sub'),
    sid: hash.sid ?? null,
    payload: hash.payload,
    accessExpiresAt: optionalNumber(hash, 'accessExpiresAt'),
    createdAt: Number(required(hash, 'createdAt')),
    lastUsedAt: Number(required(hash, 'lastUsedAt')),
    expiresAt: Number(required(hash, 'expiresAt')),
    idleExpiresAt: Number(required(hash, 'idleExpiresAt')),
    version: Number(required(hash, 'version')),
    userAgent: hash.userAgent ?? null,
  };
}

/** Flat field/value list for HSET; null fields are left out. */
function sessionFields(record: SessionRecord, subKey: string, sidKey: string | undefined): string[] {
  const fields: string[] = [];
  const put = (name: string, value: string | number | null) => {
    if (value !== null) fields.push(name, String(value));
  };
  put('clientId', record.clientId);
  put('tenant', record.tenant);
  put('issuer', record.issuer);
  put('sub', record.sub);
  put('sid', record.sid);
  put('payload', record.payload);
  put('accessExpiresAt', record.accessExpiresAt);
  put('createdAt', record.createdAt);
  put('lastUsedAt', record.lastUsedAt);
  put('expiresAt', record.expiresAt);
  put('idleExpiresAt', record.idleExpiresAt);
  put('version', record.version);
  put('userAgent', record.userAgent);
  put('_subKey', subKey);
  put('_sidKey', sidKey ?? null);
  return fields;
}

/** Runs a pipeline; the first failed command's error is thrown (pipelines report errors per command). */
async function run(pipeline: ChainableCommander): Promise<unknown[]> {
  const results = (await pipeline.exec()) ?? [];
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

async function shutdown(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    try {
      await client.quit();
      return;
    } catch {
      // Fall through to a hard disconnect.
    }
  }
  client.disconnect();
}

export function createRedisStore(options: RedisStoreOptions): SessionStore {
  const keys = redisKeys(options.keyPrefix ?? 'th:');
  const onError = options.onError ?? defaultOnError('redis');
  const connectTimeoutMs = options.connectTimeoutMs ?? 2000;

  const redis = withScripts(
    new Redis(options.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: connectTimeoutMs,
      commandTimeout: options.commandTimeoutMs ?? 2000,
      // Reconnect forever, backing off to 1 s: the store must recover by itself when Redis returns, and
      // an instance holding refreshed tokens it could not write must be back well within the refresh
      // lease's takeover watch (SessionService) after the others are.
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1000),
    }),
  );

  // Report the first error of an outage only, not every reconnect attempt.
  let outageReported = false;
  redis.on('error', (err: unknown) => {
    if (outageReported) return;
    outageReported = true;
    onError(err);
  });
  redis.on('ready', () => {
    outageReported = false;
  });

  // Without an offline queue, calls made before the first connection completes would fail at once; at
  // startup (migrate() right after creation) we wait for it, but only once and only connectTimeoutMs.
  let startup: Promise<void> | undefined = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new StoreUnavailableError(`redis unavailable: no connection within ${connectTimeoutMs} ms`));
    }, connectTimeoutMs);
    timer.unref();
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  }).finally(() => {
    startup = undefined;
  });
  startup.catch(() => {}); // observed by whoever calls first; never an unhandled rejection
  const connected = async (): Promise<void> => {
    if (startup !== undefined && redis.status !== 'ready') await startup;
  };

  const listeners = new ListenerSet(onError);
  let subscriber: Redis | undefined;

  const deleteMany = async (ids: string[], index: string, mode: DeleteMode, now: number): Promise<number[]> => {
    if (ids.length === 0) return [];
    const pipeline = redis.pipeline() as ScriptedPipeline;
    for (const id of ids) pipeline.thDelete(keys.session(id), keys.deadlines, index, id, mode, now);
    return (await run(pipeline)).map(Number);
  };

  const deleteByIndex = async (index: string, mode: 'sub' | 'sid'): Promise<string[]> => {
    await connected();
    const ids = await redis.smembers(index);
    const results = await deleteMany(ids, index, mode, 0);
    return ids.filter((_, i) => results[i] === 1);
  };

  // Where the stale-index SCAN resumes; '0' starts a new pass over the keyspace.
  let scanCursor = '0';
  const sweepIndexes = async (limit: number): Promise<void> => {
    // About as many keys as the batch deleted: one SCAN step per batch, never a long one.
    const count = Math.min(Math.max(limit, 100), 1000);
    const [next, indexKeys] = await redis.scan(scanCursor, 'MATCH', keys.indexPattern, 'COUNT', count);
    scanCursor = next;
    if (indexKeys.length === 0) return;
    const memberLists = (await run(indexKeys.reduce((p, k) => p.smembers(k), redis.pipeline()))) as string[][];
    const pairs = indexKeys.flatMap((key, i) => (memberLists[i] ?? []).map((id) => ({ key, id })));
    if (pairs.length === 0) return;
    const exists = await run(pairs.reduce((p, { id }) => p.exists(keys.session(id)), redis.pipeline()));
    const stale = pairs.filter((_, i) => exists[i] === 0);
    if (stale.length > 0) await run(stale.reduce((p, { key, id }) => p.srem(key, id), redis.pipeline()));
  };

  const store = {
    kind: 'redis' as const,

    async migrate(): Promise<void> {
      await connected();
      await redis.hsetnx(keys.meta, 'schemaVersion', SCHEMA_VERSION);
      const stored = Number(await redis.hget(keys.meta, 'schemaVersion'));
      if (stored > SCHEMA_VERSION) {
        throw new Error(`redis data under this prefix has layout version ${stored}; this build understands ${SCHEMA_VERSION}`);
      }
    },

    async create(record: SessionRecord): Promise<void> {
      await connected();
      const subKey = keys.bySubject(record.issuer, record.sub);
      const sidKey = record.sid === null ? undefined : keys.bySid(record.issuer, record.sid);
      await redis.thCreate(
        keys.session(record.idHash),
        subKey,
        sidKey ?? '',
        keys.deadlines,
        Math.max(record.expiresAt, record.idleExpiresAt),
        Math.min(record.expiresAt, record.idleExpiresAt),
        record.idHash,
        ...sessionFields(record, subKey, sidKey),
      );
    },

    async get(idHash: string): Promise<SessionRecord | undefined> {
      await connected();
      return parseSession(idHash, await redis.hgetall(keys.session(idHash)));
    },

    async updatePayload(idHash: string, expectedVersion: number, update: PayloadUpdate): Promise<number | null> {
      await connected();
      const result = await redis.thUpdatePayload(
        keys.session(idHash),
        expectedVersion,
        update.payload,
        update.accessExpiresAt === null ? '' : String(update.accessExpiresAt),
      );
      return result === null ? null : Number(result);
    },

    async touch(idHash: string, lastUsedAt: number, idleExpiresAt: number): Promise<void> {
      await connected();
      await redis.thTouch(keys.session(idHash), keys.deadlines, lastUsedAt, idleExpiresAt, idHash);
    },

    async delete(idHash: string): Promise<boolean> {
      await connected();
      const [result] = await deleteMany([idHash], '', 'any', 0);
      return result === 1;
    },

    deleteBySubject: (issuer: string, sub: string) => deleteByIndex(keys.bySubject(issuer, sub), 'sub'),
    deleteBySid: (issuer: string, sid: string) => deleteByIndex(keys.bySid(issuer, sid), 'sid'),

    async listBySubject(issuer: string, sub: string): Promise<SessionRecord[]> {
      await connected();
      const index = keys.bySubject(issuer, sub);
      const ids = await redis.smembers(index);
      if (ids.length === 0) return [];
      const hashes = (await run(ids.reduce((p, id) => p.hgetall(keys.session(id)), redis.pipeline()))) as SessionHash[];
      const records: SessionRecord[] = [];
      const stale: string[] = [];
      ids.forEach((id, i) => {
        const hash = hashes[i] ?? {};
        const record = parseSession(id, hash);
        if (record !== undefined && hash._subKey === index) records.push(record);
        else stale.push(id);
      });
      if (stale.length > 0) await redis.srem(index, ...stale);
      return records.sort((a, b) => a.createdAt - b.createdAt || (a.idHash < b.idHash ? -1 : 1));
    },

    async listByIssuer(issuer: string, tenant: string | null, now: number, limit: number): Promise<SessionRecord[]> {
      await connected();
      // No index by issuer: every live session (the deadlines set above `now`) is read, in pages.
      const records: SessionRecord[] = [];
      const PAGE = 500;
      for (let offset = 0; ; offset += PAGE) {
        const ids = await redis.zrangebyscore(keys.deadlines, `(${now}`, '+inf', 'LIMIT', offset, PAGE);
        if (ids.length === 0) break;
        const hashes = (await run(ids.reduce((p, id) => p.hgetall(keys.session(id)), redis.pipeline()))) as SessionHash[];
        ids.forEach((id, i) => {
          const record = parseSession(id, hashes[i] ?? {});
          if (record !== undefined && record.issuer === issuer && record.tenant === tenant && record.expiresAt > now && record.idleExpiresAt > now) records.push(record);
        });
        if (ids.length < PAGE) break;
      }
      return records.sort((a, b) => a.createdAt - b.createdAt || (a.idHash < b.idHash ? -1 : 1)).slice(0, limit);
    },

    async deleteExpired(now: number, limit: number): Promise<number> {
      await connected();
      // Sessions Redis already dropped by TTL count too: their leftovers were just removed, and counting
      // them keeps the caller looping while the batch was full.
      const removed = Number(await redis.thDeleteExpired(keys.deadlines, now, limit, keys.session('')));
      // Index hygiene (members whose session vanished by TTL; their sets expire by TTL too) only once the
      // backlog is done: while the caller loops over full batches, it would double every batch's cost.
      if (removed < limit) await sweepIndexes(limit);
      return removed;
    },

    async acquireRefreshLease(idHash: string, owner: string, ttlMs: number, takeOver?: LeaseHolder): Promise<LeaseAttempt> {
      await connected();
      const reply = (await redis.thAcquireLease(
        keys.session(idHash),
        owner,
        ttlMs,
        takeOver?.owner ?? '',
        takeOver === undefined ? '' : String(takeOver.expiresAt),
      )) as [number, string?, string?, string?];
      if (reply[0] === 1) return { state: 'acquired' };
      if (reply[0] === 0) return { state: 'gone' };
      const expiresAt = Number(reply[2]);
      return { state: 'held', holder: { owner: String(reply[1]), expiresAt }, expired: expiresAt <= Number(reply[3]) };
    },

    async renewRefreshLease(idHash: string, owner: string, ttlMs: number): Promise<boolean> {
      await connected();
      return (await redis.thRenewLease(keys.session(idHash), owner, ttlMs)) === 1;
    },

    async releaseRefreshLease(idHash: string, owner: string): Promise<void> {
      await connected();
      await redis.thReleaseLease(keys.session(idHash), owner);
    },

    async completeRefresh(idHash: string, owner: string, update: PayloadUpdate): Promise<number | null> {
      await connected();
      const result = await redis.thCompleteRefresh(
        keys.session(idHash),
        owner,
        update.payload,
        update.accessExpiresAt === null ? '' : String(update.accessExpiresAt),
      );
      return result === null ? null : Number(result);
    },

    async countActive(now: number): Promise<number> {
      // Exact: every session has a deadlines entry, and an entry whose hash expired by TTL has a score
      // below any `now` at which that can happen. Keys evicted under memory pressure would be
      // over-counted until the next sweep: run Redis with maxmemory-policy noeviction.
      await connected();
      return redis.zcount(keys.deadlines, now, '+inf');
    },

    async ping(): Promise<void> {
      await connected();
      await redis.ping();
    },

    async close(): Promise<void> {
      await Promise.all([shutdown(redis), subscriber === undefined ? undefined : shutdown(subscriber)]);
    },

    async publishInvalidation(idHashes: string[]): Promise<void> {
      if (idHashes.length === 0) return;
      await connected();
      await redis.publish(keys.channel, encodeInvalidation(idHashes));
    },

    onInvalidation(listener: InvalidationListener): void {
      listeners.add(listener);
      if (subscriber !== undefined) return;
      // A subscribed connection can run nothing else, hence a duplicate. It queues SUBSCRIBE until
      // connected and ioredis re-subscribes after every reconnect.
      subscriber = redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined });
      subscriber.on('error', () => {}); // the main connection reports outages
      subscriber.on('message', (channel: string, message: string) => {
        if (channel === keys.channel) listeners.emit(decodeInvalidation(message));
      });
      subscriber.subscribe(keys.channel).catch(onError);
    },

    async recordTokenUse(key: string, expiresAt: number, _now: number): Promise<boolean> {
      // SET NX: atomic; Redis drops the record itself at expiresAt (its own clock).
      await connected();
      return (await redis.set(keys.usedToken(key), '1', 'PXAT', expiresAt, 'NX')) === 'OK';
    },

    async forgetTokenUse(key: string): Promise<void> {
      await connected();
      await redis.del(keys.usedToken(key));
    },

    async putClientRegistration(id: string, sealed: string): Promise<void> {
      await connected();
      await redis.hset(keys.clientRegistration(id), 'sealed', sealed, 'updatedAt', Date.now());
    },

    async getClientRegistration(id: string): Promise<string | undefined> {
      await connected();
      return (await redis.hget(keys.clientRegistration(id), 'sealed')) ?? undefined;
    },
  } satisfies SessionStore;

  return mapUnavailable(store, 'redis', isRedisUnavailable);
}
