/**
 * Lua scripts that make each multi-key session operation atomic in one round trip. Numbers travel as
 * strings and are only compared in Lua (tonumber is exact below 2^53), never re-formatted: Lua would
 * print 1.7e+12. The index keys of a session are stored in its hash (`_subKey`, `_sidKey`) so delete
 * scripts need not rebuild them; this (like reading them at all) assumes a single Redis, not Cluster.
 */
import type { ChainableCommander, Redis } from 'ioredis';

/**
 * KEYS: session, subject index, sid index ('' when no sid), deadlines
 * ARGV: keyExpireAt, deadline, idHash, field1, value1, ...
 */
const CREATE = `
redis.call('del', KEYS[1])
redis.call('hset', KEYS[1], unpack(ARGV, 4))
redis.call('pexpireat', KEYS[1], ARGV[1])
local expireAt = tonumber(ARGV[1])
local function index(key)
  redis.call('sadd', key, ARGV[3])
  -- The set lives as long as its longest-lived member (-1: no TTL yet).
  if redis.call('pexpiretime', key) < expireAt then redis.call('pexpireat', key, ARGV[1]) end
end
index(KEYS[2])
if KEYS[3] ~= '' then index(KEYS[3]) end
redis.call('zadd', KEYS[4], ARGV[2], ARGV[3])
return 1`;

/** KEYS: session. ARGV: expectedVersion, payload, accessExpiresAt ('' for null). Returns the new version or nil. */
const UPDATE_PAYLOAD = `
local v = redis.call('hget', KEYS[1], 'version')
if not v or tonumber(v) ~= tonumber(ARGV[1]) then return false end
redis.call('hset', KEYS[1], 'payload', ARGV[2])
if ARGV[3] == '' then
  redis.call('hdel', KEYS[1], 'accessExpiresAt')
else
  redis.call('hset', KEYS[1], 'accessExpiresAt', ARGV[3])
end
return redis.call('hincrby', KEYS[1], 'version', 1)`;

/** KEYS: session, deadlines. ARGV: lastUsedAt, idleExpiresAt, idHash. Never creates a missing session. */
const TOUCH = `
local e = redis.call('hget', KEYS[1], 'expiresAt')
if not e then return 0 end
local idle = ARGV[2]
if tonumber(e) < tonumber(idle) then idle = e end
redis.call('hset', KEYS[1], 'lastUsedAt', ARGV[1], 'idleExpiresAt', idle)
redis.call('zadd', KEYS[2], idle, ARGV[3])
return 1`;

/**
 * KEYS: session, deadlines, index ('' or the index set the caller found the id in)
 * ARGV: idHash, mode, now
 *   mode 'any':     delete
 *   mode 'expired': delete only if min(expiresAt, idleExpiresAt) < now (a concurrent touch may have saved it)
 *   mode 'sub'/'sid': delete only if the session's own subject/sid index is KEYS[3] (stale members are dropped)
 * Returns 1 deleted, 2 already gone (its leftovers removed), 0 kept.
 */
const DELETE = `
local s, id, mode = KEYS[1], ARGV[1], ARGV[2]
if redis.call('exists', s) == 0 then
  redis.call('zrem', KEYS[2], id)
  if KEYS[3] ~= '' then redis.call('srem', KEYS[3], id) end
  return 2
end
local f = redis.call('hmget', s, '_subKey', '_sidKey', 'expiresAt', 'idleExpiresAt')
if mode == 'expired' then
  local deadline = f[3]
  if tonumber(f[4]) < tonumber(f[3]) then deadline = f[4] end
  if tonumber(deadline) >= tonumber(ARGV[3]) then
    redis.call('zadd', KEYS[2], deadline, id)
    return 0
  end
elseif (mode == 'sub' and f[1] ~= KEYS[3]) or (mode == 'sid' and f[2] ~= KEYS[3]) then
  redis.call('srem', KEYS[3], id)
  return 0
end
if f[1] then redis.call('srem', f[1], id) end
if f[2] then redis.call('srem', f[2], id) end
redis.call('del', s)
redis.call('zrem', KEYS[2], id)
return 1`;

/**
 * The sweep's batch in one script (one round trip, one reply), instead of a DELETE per id.
 * KEYS: deadlines. ARGV: now, limit, session key prefix (`P s:`).
 * Each id is handled as DELETE's 'expired' mode does; the session key is derived from the prefix (like _subKey/_sidKey, this assumes a single Redis, not Cluster).
 * Returns how many deadlines entries were settled (deleted, or already gone by TTL).
 */
const DELETE_EXPIRED = `
local now = tonumber(ARGV[1])
local ids = redis.call('zrangebyscore', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local removed = 0
for _, id in ipairs(ids) do
  local s = ARGV[3] .. id
  if redis.call('exists', s) == 0 then
    redis.call('zrem', KEYS[1], id)
    removed = removed + 1
  else
    local f = redis.call('hmget', s, '_subKey', '_sidKey', 'expiresAt', 'idleExpiresAt')
    local deadline = f[3]
    if tonumber(f[4]) < tonumber(f[3]) then deadline = f[4] end
    if tonumber(deadline) >= now then
      redis.call('zadd', KEYS[1], deadline, id)
    else
      if f[1] then redis.call('srem', f[1], id) end
      if f[2] then redis.call('srem', f[2], id) end
      redis.call('del', s)
      redis.call('zrem', KEYS[1], id)
      removed = removed + 1
    end
  end
end
return removed`;

/**
 * The refresh lease lives in the session hash (`leaseOwner`, `leaseExpiresAt`), so it goes with the
 * session, and is measured on Redis' clock (TIME; allowed in scripts since Redis 5's effect replication).
 * Times are formatted with %.0f: Lua's tostring would print 1.7e+12 past 14 digits.
 */
const LEASE_NOW = `
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * KEYS: session. ARGV: owner, ttlMs, takeOverOwner ('' for none), takeOverExpiresAt.
 * Returns {1} acquired, {0} no session, {2, holder, expiresAt, now} held by someone else.
 */
const ACQUIRE_LEASE = `
if redis.call('exists', KEYS[1]) == 0 then return {0} end
${LEASE_NOW}
local f = redis.call('hmget', KEYS[1], 'leaseOwner', 'leaseExpiresAt')
if (not f[1]) or (ARGV[3] ~= '' and f[1] == ARGV[3] and f[2] == ARGV[4] and tonumber(f[2]) <= now) then
  redis.call('hset', KEYS[1], 'leaseOwner', ARGV[1], 'leaseExpiresAt', string.format('%.0f', now + tonumber(ARGV[2])))
  return {1}
end
return {2, f[1], f[2], string.format('%.0f', now)}`;

/** KEYS: session. ARGV: owner, ttlMs. Returns 1 when `owner` held the lease (now extended), else 0. */
const RENEW_LEASE = `
if redis.call('hget', KEYS[1], 'leaseOwner') ~= ARGV[1] then return 0 end
${LEASE_NOW}
redis.call('hset', KEYS[1], 'leaseExpiresAt', string.format('%.0f', now + tonumber(ARGV[2])))
return 1`;

/** KEYS: session. ARGV: owner. Compare-and-delete, so a late releaser never frees someone else's lease. */
const RELEASE_LEASE = `
if redis.call('hget', KEYS[1], 'leaseOwner') == ARGV[1] then redis.call('hdel', KEYS[1], 'leaseOwner', 'leaseExpiresAt') end
return 0`;

/**
 * KEYS: session. ARGV: owner, payload, accessExpiresAt ('' for null). Writes the refreshed tokens and
 * releases the lease if `owner` holds it; returns the new version, or nil.
 */
const COMPLETE_REFRESH = `
if redis.call('hget', KEYS[1], 'leaseOwner') ~= ARGV[1] then return false end
redis.call('hset', KEYS[1], 'payload', ARGV[2])
if ARGV[3] == '' then
  redis.call('hdel', KEYS[1], 'accessExpiresAt', 'leaseOwner', 'leaseExpiresAt')
else
  redis.call('hset', KEYS[1], 'accessExpiresAt', ARGV[3])
  redis.call('hdel', KEYS[1], 'leaseOwner', 'leaseExpiresAt')
end
return redis.call('hincrby', KEYS[1], 'version', 1)`;

export const SCRIPTS = {
  thCreate: { lua: CREATE, numberOfKeys: 4 },
  thUpdatePayload: { lua: UPDATE_PAYLOAD, numberOfKeys: 1 },
  thTouch: { lua: TOUCH, numberOfKeys: 2 },
  thDelete: { lua: DELETE, numberOfKeys: 3 },
  thDeleteExpired: { lua: DELETE_EXPIRED, numberOfKeys: 1 },
  thAcquireLease: { lua: ACQUIRE_LEASE, numberOfKeys: 1 },
  thRenewLease: { lua: RENEW_LEASE, numberOfKeys: 1 },
  thReleaseLease: { lua: RELEASE_LEASE, numberOfKeys: 1 },
  thCompleteRefresh: { lua: COMPLETE_REFRESH, numberOfKeys: 1 },
} as const;

export type DeleteMode = 'any' | 'expired' | 'sub' | 'sid';

type Arg = string | number;

/** The commands `defineCommand` adds; ioredis cannot type them, so they are declared here once. */
export interface ScriptCommands<R> {
  thCreate(session: string, subIndex: string, sidIndex: string, deadlines: string, ...argv: Arg[]): R;
  thUpdatePayload(session: string, expectedVersion: number, payload: string, accessExpiresAt: string): R;
  thTouch(session: string, deadlines: string, lastUsedAt: number, idleExpiresAt: number, idHash: string): R;
  thDelete(session: string, deadlines: string, index: string, idHash: string, mode: DeleteMode, now: number): R;
  thDeleteExpired(deadlines: string, now: number, limit: number, sessionPrefix: string): R;
  thAcquireLease(session: string, owner: string, ttlMs: number, takeOverOwner: string, takeOverExpiresAt: string): R;
  thRenewLease(session: string, owner: string, ttlMs: number): R;
  thReleaseLease(session: string, owner: string): R;
  thCompleteRefresh(session: string, owner: string, payload: string, accessExpiresAt: string): R;
}

export type ScriptedRedis = Redis & ScriptCommands<Promise<unknown>>;
export type ScriptedPipeline = ChainableCommander & ScriptCommands<ScriptedPipeline>;

/** Registers the scripts (ioredis then uses EVALSHA, falling back to EVAL after a server restart). */
export function withScripts(redis: Redis): ScriptedRedis {
  for (const [name, definition] of Object.entries(SCRIPTS)) redis.defineCommand(name, definition);
  return redis as ScriptedRedis;
}
