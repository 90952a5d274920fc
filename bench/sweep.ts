/**
 * Sweep benchmark: does deleting expired sessions at scale hurt request latency?
 *
 * For each store (SQLite, PostgreSQL, Redis): fill it with N sessions (default 2,000,000, half of them
 * idle-expired, interleaved: a backlog of 1,000,000 expired sessions among as many live ones), start token-handler in this process on that store with one logged-in
 * session (a real login at the dev IdP) and a target to a local upstream (in a worker thread, as it
 * would be on another machine), then drive proxied requests
 * at a fixed rate from a worker thread (open loop: latency counts from the scheduled send time, so a
 * stalled server cannot hide its stall by slowing the load down). Measured: latency for 10 s without a
 * sweep, then while `ctx.sessions.sweep()` works through the backlog in 3 s periods alternating with 3 s
 * quiet periods (A/B under the same load, so a busy machine skews both alike; the p99 ratio compares
 * them), the sweep's time, rows/s and batch times, the event loop's delay during the sweep periods, and
 * `countActive` (the active-sessions gauge) on the full store.
 *
 *   node bench/sweep.ts [--sessions 2000000] [--stores sqlite,postgresql,redis] [--rate 300] [--json out.json]
 *
 * `runSweepBenchmark(opts)` is the same as a function (bench/run.ts calls it). Not part of `npm test`.
 * It creates its own SQLite file, PostgreSQL schema and Redis key prefix, and removes them afterwards.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Agent, request } from 'undici';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config/load.ts';
import { startDevIdp } from '../src/demo/idp.ts';
import { startDemoUpstream } from '../src/demo/upstream.ts';
import { createPostgresStore } from '../src/store/postgres.ts';
import { createRedisStore } from '../src/store/redis.ts';
import { createSqliteStore } from '../src/store/sqlite.ts';
import type { SessionRecord, SessionStore } from '../src/store/types.ts';
import { createBrowser } from '../test/support/http.ts';
import { loginAtDevIdp } from '../test/support/login.ts';
import { cliFlag, cliNumber, storeUrls } from './cli.ts';
import { dropPostgresSchema, unlinkRedisPrefix } from './namespaces.ts';

export type SweepStoreKind = 'sqlite' | 'postgresql' | 'redis';

export interface SweepBenchmarkOptions {
  /** Stores to measure, in this order; default all three. */
  stores?: SweepStoreKind[];
  /** Sessions put in each store; default 2,000,000 (1,000,000 of them expired). */
  sessions?: number;
  /** Fraction of them already (idle-)expired; default 0.5. */
  expiredFraction?: number;
  /** Size of each session's (random) payload in bytes; default 1024, about a sealed token set. */
  payloadBytes?: number;
  /** Proxied requests per second during both measurements; default 300. */
  rate?: number;
  /** Length of the measurement without a sweep, seconds; default 10. */
  baselineSec?: number;
  /** Sessions deleted per batch (the --session_sweep_batch_size); default the configured default. */
  batchSize?: number;
  postgresUrl?: string;
  redisUrl?: string;
  /** Progress lines; default to stderr. */
  log?: (line: string) => void;
}

export interface LatencySummary {
  requests: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface SweepStoreResult {
  store: SweepStoreKind;
  sessions: number;
  expired: number;
  fillSec: number;
  /** countActive on the full store (before the sweep) and after it. */
  countActiveMs: { full: number; afterSweep: number };
  sweepSec: number;
  deleted: number;
  rowsPerSec: number;
  batches: { count: number; size: number; p50Ms: number; p99Ms: number; maxMs: number };
  /** 10 s of load before any sweep. */
  baseline: LatencySummary;
  /** The periods without sweep interleaved with the sweep periods (the comparison the ratio uses). */
  quietBetweenSweeps: LatencySummary;
  /** Requests scheduled while the sweep ran. */
  duringSweep: LatencySummary;
  /** p99 during sweep periods / p99 in the quiet periods between them. */
  p99Ratio: number;
  /** p99 during sweep periods / p99 of the baseline before (more exposed to the machine's other load). */
  p99RatioToBaseline: number;
  /** Event-loop delay of the token-handler process while the sweep ran (p99: the worst period's). */
  eventLoopDelayMs: { p99: number; max: number };
  /** The machine's 1-minute load average after each measurement: other work on the machine skews both. */
  loadAverage: { baseline: number; duringSweep: number };
}

export interface SweepBenchmarkResult {
  machine: { cpus: number; node: string };
  options: Required<Omit<SweepBenchmarkOptions, 'log' | 'stores' | 'batchSize'>> & { stores: SweepStoreKind[]; batchSize: number | 'default' };
  results: SweepStoreResult[];
}

const API = '/token-handler/v1';
const HOUR = 3600_000;
/** Length of each sweep period and of each quiet period between them. */
const SWEEP_PHASE_MS = 3000;
/** Batches per sweep() call inside a period (the backlog check happens between calls). */
const SWEEP_CALL_BATCHES = 20;

// ---------------------------------------------------------------------------------------------------
// Load generator (worker thread): open loop at a fixed rate, one latency per scheduled request.
// ---------------------------------------------------------------------------------------------------

interface LoadWorkerData {
  kind: 'sweep-load';
  url: string;
  cookie: string;
  rate: number;
}

/** Samples: [scheduledAt (epoch ms), latency ms, ok (1/0)] triples. */
type LoadReport = Float64Array<ArrayBuffer>;

async function runLoadWorker(data: LoadWorkerData): Promise<void> {
  const agent = new Agent({ connections: 64, pipelining: 1, keepAliveTimeout: 30_000 });
  const samples: number[] = [];
  const now = () => performance.timeOrigin + performance.now();
  const started = now();
  let sent = 0;
  let inFlight = 0;
  let stopping = false;
  const fire = (scheduledAt: number) => {
    inFlight += 1;
    request(data.url, { dispatcher: agent, headers: { cookie: `session=${data.cookie}` } })
      .then(async (res) => {
        await res.body.dump();
        samples.push(scheduledAt, now() - scheduledAt, res.statusCode === 200 ? 1 : 0);
      })
      .catch(() => samples.push(scheduledAt, now() - scheduledAt, 0))
      .finally(() => {
        inFlight -= 1;
      });
  };
  const interval = 1000 / data.rate;
  const timer = setInterval(() => {
    const due = Math.floor((now() - started) / interval);
    // Requests that could not even be sent (over 1000 in flight) still count, as errors of their schedule.
    for (; sent < due; sent += 1) {
      const scheduledAt = started + sent * interval;
      if (inFlight >= 1000) samples.push(scheduledAt, now() - scheduledAt, 0);
      else fire(scheduledAt);
    }
  }, 2);
  parentPort!.on('message', async (message: unknown) => {
    if (message !== 'stop' || stopping) return;
    stopping = true;
    clearInterval(timer);
    while (inFlight > 0) await new Promise((r) => setTimeout(r, 5));
    const report: LoadReport = new Float64Array(samples);
    parentPort!.postMessage(report, [report.buffer]);
    await agent.close();
  });
}

if (!isMainThread && (workerData as LoadWorkerData | undefined)?.kind === 'sweep-load') {
  void runLoadWorker(workerData as LoadWorkerData);
}

/** The upstream API runs in a thread of its own, as it would run elsewhere: only token-handler shares the sweep's event loop. */
if (!isMainThread && (workerData as { kind?: string } | undefined)?.kind === 'sweep-upstream') {
  const upstream = await startDemoUpstream();
  parentPort!.postMessage(upstream.url);
}

async function startUpstreamThread(): Promise<{ url: string; close(): Promise<void> }> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { kind: 'sweep-upstream' } });
  const url = await new Promise<string>((resolve, reject) => {
    worker.once('message', (message: string) => resolve(message));
    worker.once('error', reject);
  });
  return { url, close: async () => void (await worker.terminate()) };
}

interface RunningLoad {
  stop(): Promise<LoadReport>;
}

function startLoad(data: Omit<LoadWorkerData, 'kind'>): RunningLoad {
  const worker = new Worker(new URL(import.meta.url), { workerData: { kind: 'sweep-load', ...data } satisfies LoadWorkerData });
  return {
    stop: () =>
      new Promise<LoadReport>((resolve, reject) => {
        worker.once('message', (report: LoadReport) => {
          void worker.terminate();
          resolve(report);
        });
        worker.once('error', reject);
        worker.postMessage('stop');
      }),
  };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Latency of the requests scheduled within [from, to]. */
function summarize(report: LoadReport, from: number, to: number): LatencySummary {
  return summarizeWindows(report, [[from, to]]);
}

/** Latency of the requests scheduled within any of the windows. */
function summarizeWindows(report: LoadReport, windows: [number, number][]): LatencySummary {
  const latencies: number[] = [];
  let errors = 0;
  for (let i = 0; i < report.length; i += 3) {
    const at = report[i]!;
    if (!windows.some(([from, to]) => at >= from && at <= to)) continue;
    latencies.push(report[i + 1]!);
    if (report[i + 2] !== 1) errors += 1;
  }
  latencies.sort((x, y) => x - y);
  return {
    requests: latencies.length,
    errors,
    p50Ms: round(percentile(latencies, 50), 2),
    p99Ms: round(percentile(latencies, 99), 2),
    maxMs: round(latencies.at(-1) ?? Number.NaN, 2),
  };
}

// ---------------------------------------------------------------------------------------------------
// Filling the stores fast: their native bulk paths, not one round trip per session.
// ---------------------------------------------------------------------------------------------------

interface FillPlan {
  sessions: number;
  expiredFraction: number;
  payloadBytes: number;
  now: number;
}

/** The i-th synthetic session: every 1/expiredFraction-th one idle-expired, interleaved with active ones. */
function syntheticSession(i: number, plan: FillPlan, payload: string): SessionRecord {
  // A multiplicative hash spreads the expired ones evenly but irregularly over the key and insert order.
  const expired = (Math.imul(i + 1, 0x9e3779b1) >>> 0) / 2 ** 32 < plan.expiredFraction;
  const createdAt = plan.now - 2 * HOUR;
  return {
    idHash: `${i.toString(16).padStart(8, '0')}${'0'.repeat(56)}`,
    clientId: 'default',
    tenant: null,
    issuer: 'https://bench-idp.invalid',
    sub: `user-${i % 400_000}`,
    sid: `sid-${i}`,
    payload,
    accessExpiresAt: plan.now + HOUR,
    createdAt,
    lastUsedAt: createdAt,
    // Idle-expired sessions still exist in every backend (Redis drops a key only at max(expires, idle)).
    expiresAt: plan.now + 6 * HOUR,
    idleExpiresAt: expired ? plan.now - 60_000 - (i % 3_600_000) : plan.now + HOUR,
    version: 1,
    userAgent: 'bench',
  };
}

function countExpired(plan: FillPlan): number {
  let n = 0;
  for (let i = 0; i < plan.sessions; i += 1) if (syntheticSession(i, plan, '').idleExpiresAt < plan.now) n += 1;
  return n;
}

function fillSqlite(file: string, plan: FillPlan, payload: string): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  const insert = db.prepare(
    `insert into token_handler_sessions (id_hash, client_id, tenant, issuer, sub, sid, payload, access_expires_at, created_at, last_used_at,
       expires_at, idle_expires_at, version, user_agent) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const chunk = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i += 1) {
      const s = syntheticSession(i, plan, payload);
      insert.run(s.idHash, s.clientId, s.tenant, s.issuer, s.sub, s.sid, s.payload, s.accessExpiresAt, s.createdAt, s.lastUsedAt, s.expiresAt, s.idleExpiresAt, s.version, s.userAgent);
    }
  });
  for (let from = 0; from < plan.sessions; from += 100_000) chunk(from, Math.min(plan.sessions, from + 100_000));
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.exec('analyze');
  db.close();
}

async function fillPostgres(url: string, schema: string, plan: FillPlan, payload: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const columns = ['id_hash', 'client_id', 'tenant', 'issuer', 'sub', 'sid', 'payload', 'access_expires_at', 'created_at', 'last_used_at', 'expires_at', 'idle_expires_at', 'version', 'user_agent'];
    const types = ['text', 'text', 'text', 'text', 'text', 'text', 'text', 'int8', 'int8', 'int8', 'int8', 'int8', 'int4', 'text'];
    const sqlText = `insert into "${schema}".sessions (${columns.join(', ')}) select * from unnest(${types.map((t, i) => `$${i + 1}::${t}[]`).join(', ')})`;
    for (let from = 0; from < plan.sessions; from += 10_000) {
      const arrays: unknown[][] = columns.map(() => []);
      for (let i = from; i < Math.min(plan.sessions, from + 10_000); i += 1) {
        const s = syntheticSession(i, plan, payload);
        const row = [s.idHash, s.clientId, s.tenant, s.issuer, s.sub, s.sid, s.payload, s.accessExpiresAt, s.createdAt, s.lastUsedAt, s.expiresAt, s.idleExpiresAt, s.version, s.userAgent];
        row.forEach((v, c) => arrays[c]!.push(v));
      }
      await client.query(sqlText, arrays);
    }
    await client.query(`vacuum analyze "${schema}".sessions`);
  } finally {
    await client.end();
  }
}

/** Through the store's own create (its Lua script keeps indexes and deadlines right), pipelined by concurrency. */
async function fillRedis(store: SessionStore, plan: FillPlan, payload: string): Promise<void> {
  const window = 2000;
  for (let from = 0; from < plan.sessions; from += window) {
    const batch: Promise<void>[] = [];
    for (let i = from; i < Math.min(plan.sessions, from + window); i += 1) batch.push(store.create(syntheticSession(i, plan, payload)));
    await Promise.all(batch);
  }
}

// ---------------------------------------------------------------------------------------------------
// One store
// ---------------------------------------------------------------------------------------------------

interface PreparedStore {
  store: SessionStore;
  cleanup(): Promise<void>;
}

async function prepareStore(kind: SweepStoreKind, opts: Required<Pick<SweepBenchmarkOptions, 'postgresUrl' | 'redisUrl'>>, plan: FillPlan, payload: string): Promise<PreparedStore> {
  const quiet = () => {};
  switch (kind) {
    case 'sqlite': {
      const dir = mkdtempSync(join(tmpdir(), 'th-sweep-'));
      const file = join(dir, 'sessions.db');
      const migrator = createSqliteStore({ path: file, onError: quiet });
      await migrator.migrate();
      await migrator.close();
      fillSqlite(file, plan, payload);
      return { store: createSqliteStore({ path: file, onError: quiet }), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
    }
    case 'postgresql': {
      const schema = `th_sweep_${randomBytes(4).toString('hex')}`;
      const store = createPostgresStore({ connectionString: opts.postgresUrl, schema, onError: quiet });
      await store.migrate();
      await fillPostgres(opts.postgresUrl, schema, plan, payload);
      return {
        store,
        cleanup: () => dropPostgresSchema(opts.postgresUrl, schema),
      };
    }
    case 'redis': {
      const keyPrefix = `th-sweep:${randomBytes(4).toString('hex')}:`;
      const store = createRedisStore({ url: opts.redisUrl, keyPrefix, onError: quiet, commandTimeoutMs: 30_000 });
      await store.migrate();
      await fillRedis(store, plan, payload);
      return {
        store,
        cleanup: () => unlinkRedisPrefix(opts.redisUrl, keyPrefix),
      };
    }
  }
}

async function timeMs<T>(work: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await work();
  return [value, round(performance.now() - started, 1)];
}

async function benchmarkStore(kind: SweepStoreKind, options: ResolvedOptions, log: (line: string) => void): Promise<SweepStoreResult> {
  const plan: FillPlan = { sessions: options.sessions, expiredFraction: options.expiredFraction, payloadBytes: options.payloadBytes, now: Date.now() };
  const payload = randomBytes(Math.ceil((options.payloadBytes * 3) / 4)).toString('base64').slice(0, options.payloadBytes);
  const expired = countExpired(plan);
  log(`[${kind}] filling ${plan.sessions} sessions (${expired} expired)...`);
  const fillStarted = performance.now();
  const prepared = await prepareStore(kind, options, plan, payload);
  const fillSec = round((performance.now() - fillStarted) / 1000, 1);
  log(`[${kind}] filled in ${fillSec} s`);

  // Batch times, seen from the service (what a request waiting behind a batch experiences at most).
  const batchMs: number[] = [];
  const backend = prepared.store;
  let backlogDone = false;
  const store: SessionStore = {
    ...backend,
    async deleteExpired(now, limit) {
      const started = performance.now();
      try {
        const deleted = await backend.deleteExpired(now, limit);
        if (deleted < limit) backlogDone = true;
        return deleted;
      } finally {
        batchMs.push(performance.now() - started);
      }
    },
  };

  const idp = await startDevIdp({ accessTokenTtlSec: 3600 });
  const upstream = await startUpstreamThread();
  const dir = mkdtempSync(join(tmpdir(), 'th-sweep-app-'));
  const configFile = join(dir, 'token-handler.json');
  writeFileSync(configFile, JSON.stringify({ targets: [{ id: 'api', url: upstream.url }] }));
  const argv = [
    '--listen_addr=127.0.0.1:0',
    `--oidc_issuer=${idp.issuer}`,
    '--oidc_client_id=token-handler',
    '--oidc_client_secret=token-handler-secret',
    '--oidc_allow_insecure_issuer',
    `--config=${configFile}`,
    '--log_level=silent',
    `--db_path=${join(dir, 'unused.db')}`,
    ...(options.batchSize === 'default' ? [] : [`--session_sweep_batch_size=${options.batchSize}`]),
  ];
  const { config } = loadConfig({ argv, env: {}, cwd: dir });
  const { app, ctx } = await buildApp(config, { store, sweeper: false });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const browser = createBrowser();
    const flow = await loginAtDevIdp(browser, `${base}${API}/clients/default/auth`, { username: 'demo', password: 'demo' });
    await flow.response.body?.cancel();
    const cookie = browser.cookie('session', base)?.value;
    if (!cookie) throw new Error('login failed: no session cookie');
    const url = `${base}${API}/targets/api/echo`;

    const [activeBefore, countFull] = await timeMs(() => ctx.store.countActive(Date.now()));
    log(`[${kind}] countActive on the full store: ${activeBefore} in ${countFull} ms`);

    const wallNow = () => performance.timeOrigin + performance.now();
    // Without a sweep: warm up 2 s, then measure.
    let load = startLoad({ url, cookie, rate: options.rate });
    await sleep(2000);
    const baseFrom = wallNow();
    await sleep(options.baselineSec * 1000);
    const baseTo = wallNow();
    const baseline = summarize(await load.stop(), baseFrom, baseTo);
    const loadBaseline = round(loadavg()[0]!, 2);
    log(`[${kind}] baseline: p50 ${baseline.p50Ms} ms, p99 ${baseline.p99Ms} ms (${baseline.requests} requests)`);

    // During the sweep, A/B: the sweep runs in periods of SWEEP_PHASE_MS alternating with equally long
    // periods without it, under the same load. Latency of requests scheduled in sweep periods is compared
    // with that of the interleaved quiet periods, so both see the same background noise of the machine.
    load = startLoad({ url, cookie, rate: options.rate });
    await sleep(2000);
    // One event-loop histogram per sweep period (a histogram re-enabled after a pause counts the pause).
    const delays: { p99: number; max: number }[] = [];
    const on: [number, number][] = [];
    const off: [number, number][] = [];
    let deleted = 0;
    let sweepMs = 0;
    while (!backlogDone) {
      const phaseEnd = performance.now() + SWEEP_PHASE_MS;
      const from = wallNow();
      const delay = monitorEventLoopDelay({ resolution: 5 });
      delay.enable();
      while (!backlogDone && performance.now() < phaseEnd) {
        const started = performance.now();
        deleted += await ctx.sessions.sweep(SWEEP_CALL_BATCHES);
        sweepMs += performance.now() - started;
      }
      delay.disable();
      delays.push({ p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 });
      on.push([from, wallNow()]);
      const quietFrom = wallNow();
      await sleep(SWEEP_PHASE_MS);
      off.push([quietFrom, wallNow()]);
    }
    const report = await load.stop();
    const duringSweep = summarizeWindows(report, on);
    const quiet = summarizeWindows(report, off);
    const loadSweep = round(loadavg()[0]!, 2);
    log(`[${kind}] swept ${deleted} in ${round(sweepMs / 1000, 2)} s of sweeping; p99 ${duringSweep.p99Ms} ms in sweep periods vs ${quiet.p99Ms} ms in the quiet periods between (p50 ${duringSweep.p50Ms} vs ${quiet.p50Ms})`);

    const [, countAfter] = await timeMs(() => ctx.store.countActive(Date.now()));
    const sortedBatches = [...batchMs].sort((x, y) => x - y);
    return {
      store: kind,
      sessions: plan.sessions,
      expired,
      fillSec,
      countActiveMs: { full: countFull, afterSweep: countAfter },
      sweepSec: round(sweepMs / 1000, 2),
      deleted,
      rowsPerSec: Math.round(deleted / (sweepMs / 1000)),
      batches: {
        count: batchMs.length,
        size: config.session.sweepBatchSize,
        p50Ms: round(percentile(sortedBatches, 50), 2),
        p99Ms: round(percentile(sortedBatches, 99), 2),
        maxMs: round(sortedBatches.at(-1) ?? Number.NaN, 2),
      },
      baseline,
      quietBetweenSweeps: quiet,
      duringSweep,
      p99Ratio: round(duringSweep.p99Ms / quiet.p99Ms, 2),
      p99RatioToBaseline: round(duringSweep.p99Ms / baseline.p99Ms, 2),
      eventLoopDelayMs: { p99: round(Math.max(...delays.map((d) => d.p99)), 1), max: round(Math.max(...delays.map((d) => d.max)), 1) },
      loadAverage: { baseline: loadBaseline, duringSweep: loadSweep },
    };
  } finally {
    await app.close();
    await upstream.close();
    await idp.close();
    rmSync(dir, { recursive: true, force: true });
    await prepared.cleanup();
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

type ResolvedOptions = Required<Omit<SweepBenchmarkOptions, 'log' | 'batchSize'>> & { batchSize: number | 'default' };

export async function runSweepBenchmark(opts: SweepBenchmarkOptions = {}): Promise<SweepBenchmarkResult> {
  const options: ResolvedOptions = {
    stores: opts.stores ?? ['sqlite', 'postgresql', 'redis'],
    sessions: opts.sessions ?? 2_000_000,
    expiredFraction: opts.expiredFraction ?? 0.5,
    payloadBytes: opts.payloadBytes ?? 1024,
    rate: opts.rate ?? 300,
    baselineSec: opts.baselineSec ?? 10,
    batchSize: opts.batchSize ?? 'default',
    postgresUrl: opts.postgresUrl ?? storeUrls().postgresUrl,
    redisUrl: opts.redisUrl ?? storeUrls().redisUrl,
  };
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const results: SweepStoreResult[] = [];
  for (const kind of options.stores) results.push(await benchmarkStore(kind, options, log));
  return { machine: { cpus: cpus().length, node: process.version }, options, results };
}

/** The results as a Markdown table. */
export function sweepTable(result: SweepBenchmarkResult): string {
  const header = '| store | sessions (expired) | sweep s | rows/s | batch p50 / p99 / max ms | p50 quiet → sweep ms | p99 quiet → sweep ms | p99 ratio | p99 baseline ms | loop delay p99 / max ms | countActive full → after ms | load avg |';
  const rows = result.results.map(
    (r) =>
      `| ${r.store} | ${r.sessions} (${r.expired}) | ${r.sweepSec} | ${r.rowsPerSec} | ${r.batches.p50Ms} / ${r.batches.p99Ms} / ${r.batches.maxMs} | ${r.quietBetweenSweeps.p50Ms} → ${r.duringSweep.p50Ms} | ${r.quietBetweenSweeps.p99Ms} → ${r.duringSweep.p99Ms} | ${r.p99Ratio}× | ${r.baseline.p99Ms} | ${r.eventLoopDelayMs.p99} / ${r.eventLoopDelayMs.max} | ${r.countActiveMs.full} → ${r.countActiveMs.afterSweep} | ${r.loadAverage.baseline} / ${r.loadAverage.duringSweep} |`,
  );
  return [header, `|${'---|'.repeat(12)}`, ...rows].join('\n');
}

if (isMainThread && import.meta.main) {
  const args = process.argv.slice(2);
  const arg = (name: string) => cliFlag(args, name);
  const number = (name: string) => cliNumber(args, name);
  const result = await runSweepBenchmark({
    sessions: number('sessions'),
    stores: arg('stores')?.split(',') as SweepStoreKind[] | undefined,
    rate: number('rate'),
    baselineSec: number('baseline'),
    batchSize: number('batch'),
    payloadBytes: number('payload'),
  });
  const json = JSON.stringify(result, null, 2);
  const out = arg('json');
  if (out) writeFileSync(out, `${json}\n`);
  process.stdout.write(`${json}\n\n${sweepTable(result)}\n`);
  process.exit(0);
}
