/**
 * Session resolution cost with 10,000 and with N (default 1,000,000) sessions in the store, and the process
 * memory 10,000 live sessions take. In-process (no HTTP): `SessionService.resolve` with the resolved-session
 * cache off, so every lookup reaches the store, timed one at a time over a fixed set of probe sessions (real
 * ids, sealed cookies, encrypted payloads); the filler sessions have random id hashes too, so the probes sit
 * among them as real sessions would. The two sizes are two stores side by side (SQLite files, PostgreSQL
 * schemas, Redis databases 1 and 0), timed in alternating passes.
 *
 * The lookups run on the probes' own clock (the moment they were created), so none of them extends its
 * session's idle expiry: that write (`touch`, at most once a minute per session in use, fire-and-forget)
 * is timed on its own afterwards. Before session 4 the lookups ran on the wall clock, minutes after the
 * probes were made, so every first lookup of a probe also fired a touch, and the next lookup was timed while
 * that UPDATE and its commit ran: on PostgreSQL half of the "lookup" time and most of its growth was the write.
 *
 *   node bench/sessions.ts [--sessions 1000000] [--stores sqlite,postgresql,redis]   (or via bench/run.ts)
 */
import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Redis } from 'ioredis';
import pg from 'pg';
import { CookieSealer } from '../src/session/cookieSealer.ts';
import { PayloadCipher } from '../src/session/payloadCipher.ts';
import { SessionService } from '../src/session/service.ts';
import type { SessionPayload } from '../src/session/model.ts';
import { createPostgresStore } from '../src/store/postgres.ts';
import { createRedisStore } from '../src/store/redis.ts';
import { createSqliteStore } from '../src/store/sqlite.ts';
import type { SessionRecord, SessionStore } from '../src/store/types.ts';
import { cliFlag, storeUrls } from './cli.ts';
import { dropPostgresSchema, unlinkRedisPrefix } from './namespaces.ts';

export type StoreKind = 'sqlite' | 'postgresql' | 'redis';

export interface SessionsOptions {
  stores: StoreKind[];
  sessions: number;
  postgresUrl: string;
  redisUrl: string;
  log: (line: string) => void;
  /** Probe sessions (also the live sessions of the memory measurement); default 10,000. */
  probes?: number;
  /** Lookups timed per size; default 3,000. */
  lookups?: number;
}

export interface LookupCost {
  sessions: number;
  /** Median µs of SessionService.resolve (unseal + hash + store get + decrypt), resolved-session cache off. */
  resolveP50Us: number;
  resolveP99Us: number;
  /** Median µs of the store's get alone. */
  getP50Us: number;
  getP99Us: number;
  /** Median µs of the store's touch (the idle-expiry extension a session in use writes at most once a minute). */
  touchP50Us: number;
}

export interface SessionsStoreResult {
  store: StoreKind;
  fillSec: number;
  small: LookupCost;
  large: LookupCost;
  /** large.resolveP50Us / small.resolveP50Us. */
  growth: number;
  /** Bytes the store holds per 10,000 sessions (SQLite file, PostgreSQL relation, Redis used_memory), at the large size. */
  storeMbPer10k: number;
}

export interface SessionsResult {
  sessions: number;
  /** Process memory (heap + external) held by 10,000 resolved, cached live sessions. */
  processMbPer10kLive: number;
  stores: SessionsStoreResult[];
}

const HOUR = 3600_000;
const CLIENT = 'default';
const round = (n: number, digits = 1): number => Math.round(n * 10 ** digits) / 10 ** digits;
const quiet = { info() {}, warn() {}, error() {}, debug() {} };

const collectGarbage: () => void = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

interface Probe {
  cookie: string;
  idHash: string;
}

/** A token-set-sized payload, as a real login leaves (JWT access and ID tokens, an opaque refresh token). */
function realisticPayload(i: number): SessionPayload {
  const jwt = (n: number) => `eyJhbGciOiJSUzI1NiJ9.${randomBytes(n).toString('base64url')}.${randomBytes(256).toString('base64url')}`;
  return { accessToken: jwt(300), refreshToken: randomBytes(32).toString('base64url'), idToken: jwt(400), scope: 'openid profile email offline_access', claims: { name: `User ${i}`, email: `user${i}@example.test`, roles: ['user'] } };
}

function newRecord(idHash: string, payload: string, now: number, i: number): SessionRecord {
  return {
    idHash,
    clientId: CLIENT,
    tenant: null,
    issuer: 'https://bench-idp.invalid',
    sub: `user-${i}`,
    sid: `sid-${i}`,
    payload,
    accessExpiresAt: now + 2 * HOUR,
    createdAt: now,
    lastUsedAt: now,
    expiresAt: now + 8 * HOUR,
    idleExpiresAt: now + HOUR,
    version: 1,
    userAgent: 'bench',
  };
}

const crypto = () => {
  const authSecrets = [Buffer.from('bench-auth-secret-0123456789abcdef')];
  return { sealer: new CookieSealer(authSecrets, [Buffer.from('bench-enc-secret-0123456789abcdef')]), cipher: new PayloadCipher([Buffer.from('bench-db-key-0123456789abcdef01234')]) };
};

function service(store: SessionStore, cacheTtlMs: number, now?: () => number): SessionService {
  const { sealer, cipher } = crypto();
  return new SessionService({
    now,
    store,
    sealer,
    cipher,
    lifetimes: { absoluteLifetimeSec: 8 * 3600, idleLifetimeSec: 3600, refreshSkewSec: 30, sweepBatchSize: 1000 },
    cacheTtlMs,
    log: quiet,
    refresher: () => Promise.reject(new Error('no refresh in the benchmark')),
  });
}

async function createProbes(store: SessionStore, count: number, now: number): Promise<Probe[]> {
  const { sealer, cipher } = crypto();
  const probes: Probe[] = [];
  const records: SessionRecord[] = [];
  for (let i = 0; i < count; i += 1) {
    const id = randomBytes(32);
    const idHash = SessionService.hashId(id);
    records.push(newRecord(idHash, cipher.encrypt(Buffer.from(JSON.stringify(realisticPayload(i))), idHash), now, i));
    probes.push({ idHash, cookie: sealer.seal(SessionService.cookiePurpose(CLIENT), id, now + 8 * HOUR) });
  }
  for (let from = 0; from < records.length; from += 200) await Promise.all(records.slice(from, from + 200).map((r) => store.create(r)));
  return probes;
}

/** Filler sessions from..to (random-looking id hashes, one shared ~1.3 KB payload). */
function filler(i: number, salt: string, payload: string, now: number): SessionRecord {
  return newRecord(createHash('sha256').update(`${salt}:${i}`).digest('hex'), payload, now, i);
}

async function fill(kind: StoreKind, target: { file?: string; pgUrl?: string; schema?: string; store: SessionStore }, from: number, to: number, salt: string, now: number): Promise<void> {
  const payload = randomBytes(1000).toString('base64url');
  if (kind === 'sqlite') {
    const db = new Database(target.file!);
    db.pragma('journal_mode = WAL');
    const insert = db.prepare(
      `insert into token_handler_sessions (id_hash, client_id, tenant, issuer, sub, sid, payload, access_expires_at, created_at, last_used_at,
         expires_at, idle_expires_at, version, user_agent) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const chunk = db.transaction((a: number, b: number) => {
      for (let i = a; i < b; i += 1) {
        const s = filler(i, salt, payload, now);
        insert.run(s.idHash, s.clientId, s.tenant, s.issuer, s.sub, s.sid, s.payload, s.accessExpiresAt, s.createdAt, s.lastUsedAt, s.expiresAt, s.idleExpiresAt, s.version, s.userAgent);
      }
    });
    for (let a = from; a < to; a += 50_000) chunk(a, Math.min(to, a + 50_000));
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.exec('analyze');
    db.close();
  } else if (kind === 'postgresql') {
    const client = new pg.Client({ connectionString: target.pgUrl });
    await client.connect();
    try {
      const columns = ['id_hash', 'client_id', 'tenant', 'issuer', 'sub', 'sid', 'payload', 'access_expires_at', 'created_at', 'last_used_at', 'expires_at', 'idle_expires_at', 'version', 'user_agent'];
      const types = ['text', 'text', 'text', 'text', 'text', 'text', 'text', 'int8', 'int8', 'int8', 'int8', 'int8', 'int4', 'text'];
      const sqlText = `insert into "${target.schema}".sessions (${columns.join(', ')}) select * from unnest(${types.map((t, i) => `$${i + 1}::${t}[]`).join(', ')})`;
      for (let a = from; a < to; a += 10_000) {
        const arrays: unknown[][] = columns.map(() => []);
        for (let i = a; i < Math.min(to, a + 10_000); i += 1) {
          const s = filler(i, salt, payload, now);
          [s.idHash, s.clientId, s.tenant, s.issuer, s.sub, s.sid, s.payload, s.accessExpiresAt, s.createdAt, s.lastUsedAt, s.expiresAt, s.idleExpiresAt, s.version, s.userAgent].forEach((v, c) => arrays[c]!.push(v));
        }
        await client.query(sqlText, arrays);
      }
      await client.query(`vacuum analyze "${target.schema}".sessions`);
    } finally {
      await client.end();
    }
  } else {
    for (let a = from; a < to; a += 2000) {
      const batch: Promise<void>[] = [];
      for (let i = a; i < Math.min(to, a + 2000); i += 1) batch.push(target.store.create(filler(i, salt, payload, now)));
      await Promise.all(batch);
    }
  }
}

interface LookupSamples {
  resolveUs: number[];
  getUs: number[];
  touchUs: number[];
}

/**
 * A service over `store` with its resolved-session cache off, warmed up on a few of the probes, on the
 * probes' clock (`now`, when they were made): a lookup then never extends a probe's idle expiry.
 */
async function lookupService(store: SessionStore, probes: Probe[], now: number): Promise<SessionService> {
  const sessionsService = service(store, 0, () => now);
  for (const p of probes.slice(0, 200)) await sessionsService.resolve(p.cookie, { clientId: CLIENT, tenant: null });
  return sessionsService;
}

/** Times `sample` lookups, in the order given, into `into`: the full resolve, then the store's get alone. */
async function timeLookups(sessionsService: SessionService, store: SessionStore, sample: Probe[], into: LookupSamples): Promise<void> {
  for (const p of sample) {
    const t0 = performance.now();
    const s = await sessionsService.resolve(p.cookie, { clientId: CLIENT, tenant: null });
    into.resolveUs.push((performance.now() - t0) * 1000);
    if (!s) throw new Error('a probe session did not resolve');
    const t1 = performance.now();
    await store.get(p.idHash);
    into.getUs.push((performance.now() - t1) * 1000);
  }
}

/** Times a touch of each probe in `sample` (as a session in use does once a minute) into `into`. */
async function timeTouches(store: SessionStore, sample: Probe[], now: number, into: LookupSamples): Promise<void> {
  for (const p of sample) {
    const t0 = performance.now();
    await store.touch(p.idHash, now + 60_000, now + HOUR + 60_000);
    into.touchUs.push((performance.now() - t0) * 1000);
  }
}

function lookupCost(samples: LookupSamples, sessions: number): LookupCost {
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const [resolveUs, getUs, touchUs] = [sorted(samples.resolveUs), sorted(samples.getUs), sorted(samples.touchUs)];
  return {
    sessions,
    resolveP50Us: round(percentile(resolveUs, 50)),
    resolveP99Us: round(percentile(resolveUs, 99)),
    getP50Us: round(percentile(getUs, 50)),
    getP99Us: round(percentile(getUs, 99)),
    touchP50Us: round(percentile(touchUs, 50)),
  };
}

const shuffled = <T>(xs: T[]): T[] => {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
};

async function storeBytes(kind: StoreKind, target: { file?: string; pgUrl?: string; schema?: string; redisUrl?: string }): Promise<number> {
  if (kind === 'sqlite') {
    const size = (f: string) => {
      try {
        return statSync(f).size;
      } catch {
        return 0;
      }
    };
    return size(target.file!) + size(`${target.file!}-wal`);
  }
  if (kind === 'postgresql') {
    const client = new pg.Client({ connectionString: target.pgUrl });
    await client.connect();
    try {
      const { rows } = await client.query<{ bytes: string }>(`select pg_total_relation_size('"${target.schema}".sessions') as bytes`);
      return Number(rows[0]?.bytes ?? 0);
    } finally {
      await client.end();
    }
  }
  const admin = new Redis(target.redisUrl!);
  const info = await admin.info('memory');
  admin.disconnect();
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
}

interface OpenedStore {
  store: SessionStore;
  target: { file: string; pgUrl: string; schema: string; redisUrl: string; store: SessionStore };
  namespace: string;
  cleanup: () => Promise<void>;
}

/**
 * A store in a namespace of its own: a SQLite file, a PostgreSQL schema, or for Redis a key prefix in the
 * given logical database (a Redis database is one hash table whatever the prefixes: the small store gets a
 * database of its own so that its lookups do not run in the large one's table).
 */
async function openStore(kind: StoreKind, options: SessionsOptions, redisDb: number): Promise<OpenedStore> {
  const namespace = randomBytes(4).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'th-bench-sessions-'));
  const file = join(dir, 'sessions.db');
  const schema = `th_bench_sessions_${namespace}`;
  const keyPrefix = `th-bench-sessions:${namespace}:`;
  const redisUrl = new URL(options.redisUrl);
  redisUrl.pathname = `/${redisDb}`;
  const store =
    kind === 'sqlite'
      ? createSqliteStore({ path: file, onError: () => {} })
      : kind === 'postgresql'
        ? createPostgresStore({ connectionString: options.postgresUrl, schema, onError: () => {} })
        : createRedisStore({ url: redisUrl.href, keyPrefix, onError: () => {}, commandTimeoutMs: 30_000 });
  await store.migrate();
  const cleanup = async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    if (kind === 'postgresql') await dropPostgresSchema(options.postgresUrl, schema);
    else if (kind === 'redis') await unlinkRedisPrefix(redisUrl.href, keyPrefix);
  };
  return { store, target: { file, pgUrl: options.postgresUrl, schema, redisUrl: redisUrl.href, store }, namespace, cleanup };
}

/**
 * Two stores side by side, one holding 10,000 sessions and one holding `options.sessions`, and their lookups
 * timed in alternating passes (small, large, large, small, ...): whatever else the machine does at one moment
 * then weighs on both sizes alike, where one measurement before the fill and one after it would each catch
 * a different moment of a noisy machine (and the large one the store still busy after the bulk insert).
 */
async function measureStore(kind: StoreKind, options: SessionsOptions): Promise<{ result: SessionsStoreResult; store: SessionStore; probes: Probe[]; cleanup: () => Promise<void> }> {
  const now = Date.now();
  const probesCount = options.probes ?? 10_000;
  const lookups = options.lookups ?? 3000;
  const passes = 6;
  const small = await openStore(kind, options, 1);
  let large: OpenedStore | undefined;
  const cleanup = async () => {
    await Promise.all([small.cleanup(), large?.cleanup()]);
  };
  try {
    const smallSize = Math.max(probesCount, 10_000);
    const smallProbes = await createProbes(small.store, probesCount, now);
    await fill(kind, small.target, 0, smallSize - probesCount, small.namespace, now);
    large = await openStore(kind, options, 0);
    const redisBefore = kind === 'redis' ? await storeBytes(kind, large.target) : 0;
    const started = performance.now();
    const largeProbes = await createProbes(large.store, probesCount, now);
    await fill(kind, large.target, 0, options.sessions - probesCount, large.namespace, now);
    const fillSec = round((performance.now() - started) / 1000);
    options.log(`[sessions] ${kind}: ${options.sessions} sessions filled in ${fillSec} s`);
    const bytes = (await storeBytes(kind, large.target)) - redisBefore;

    const sides = [
      { opened: small, probes: smallProbes, samples: { resolveUs: [], getUs: [], touchUs: [] } as LookupSamples },
      { opened: large, probes: largeProbes, samples: { resolveUs: [], getUs: [], touchUs: [] } as LookupSamples },
    ];
    const services = await Promise.all(sides.map((side) => lookupService(side.opened.store, side.probes, now)));
    const perPass = Math.ceil(lookups / passes);
    const sampleOf = (side: (typeof sides)[number], n: number) => shuffled(side.probes.slice(0, Math.min(side.probes.length, lookups))).slice(0, n);
    for (let pass = 0; pass < passes; pass += 1) {
      const order = pass % 2 === 0 ? [0, 1] : [1, 0];
      for (const i of order) await timeLookups(services[i]!, sides[i]!.opened.store, sampleOf(sides[i]!, perPass), sides[i]!.samples);
    }
    // The writes last, so that no lookup above ran beside one (or on pages they left to clean up).
    for (let pass = 0; pass < 2; pass += 1) {
      for (const i of pass === 0 ? [0, 1] : [1, 0]) await timeTouches(sides[i]!.opened.store, sampleOf(sides[i]!, Math.ceil(perPass / 2)), now, sides[i]!.samples);
    }
    const smallCost = lookupCost(sides[0]!.samples, smallSize);
    const largeCost = lookupCost(sides[1]!.samples, options.sessions);
    options.log(`[sessions] ${kind} ${smallSize}: resolve p50 ${smallCost.resolveP50Us} µs (get ${smallCost.getP50Us} µs); ${options.sessions}: resolve p50 ${largeCost.resolveP50Us} µs (get ${largeCost.getP50Us} µs)`);
    return {
      result: { store: kind, fillSec, small: smallCost, large: largeCost, growth: round(largeCost.resolveP50Us / smallCost.resolveP50Us, 2), storeMbPer10k: round(((bytes / options.sessions) * 10_000) / 2 ** 20, 2) },
      store: small.store,
      probes: smallProbes,
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Heap + external memory held by `probes.length` resolved sessions in the in-process caches, per 10,000. */
async function processMemoryPer10k(store: SessionStore, probes: Probe[]): Promise<number> {
  const cached = service(store, 10 * 60_000);
  const held: unknown[] = [];
  const measure = () => {
    collectGarbage();
    collectGarbage();
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  const before = measure();
  for (const p of probes) held.push(await cached.resolve(p.cookie, { clientId: CLIENT, tenant: null }));
  held.length = 0;
  const after = measure();
  // Keep the service (and its caches) alive until after the second sample.
  if (!cached) throw new Error('unreachable');
  return round((((after - before) / probes.length) * 10_000) / 2 ** 20, 2);
}

export async function measureSessions(options: SessionsOptions): Promise<SessionsResult> {
  const stores: SessionsStoreResult[] = [];
  let processMbPer10kLive = Number.NaN;
  for (const kind of options.stores) {
    options.log(`[sessions] ${kind}: filling ${options.sessions} sessions...`);
    const { result, store, probes, cleanup } = await measureStore(kind, options);
    try {
      if (Number.isNaN(processMbPer10kLive)) processMbPer10kLive = await processMemoryPer10k(store, probes);
    } finally {
      await cleanup();
    }
    stores.push(result);
  }
  return { sessions: options.sessions, processMbPer10kLive, stores };
}

export function sessionsTable(r: SessionsResult): string {
  const lines = [
    `| session lookup (resolve, cache off) | resolve p50 µs at 10k | at ${r.sessions.toLocaleString('en')} | growth | resolve p99 µs 10k / large | store get p50 µs 10k / large | touch p50 µs 10k / large | store MB per 10k sessions |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const s of r.stores) {
    lines.push(`| ${s.store} | ${s.small.resolveP50Us} | ${s.large.resolveP50Us} | ${Math.round((s.growth - 1) * 100)}% | ${s.small.resolveP99Us} / ${s.large.resolveP99Us} | ${s.small.getP50Us} / ${s.large.getP50Us} | ${s.small.touchP50Us} / ${s.large.touchP50Us} | ${s.storeMbPer10k} |`);
  }
  lines.push('', `Process memory per 10,000 live (resolved, cached) sessions: ${r.processMbPer10kLive} MB.`);
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const flag = (name: string) => cliFlag(args, name);
  const result = await measureSessions({
    stores: (flag('stores') ?? 'sqlite,postgresql,redis').split(',') as StoreKind[],
    sessions: Number(flag('sessions') ?? 1_000_000),
    ...storeUrls(),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`${sessionsTable(result)}\n`);
}
