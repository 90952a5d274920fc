/**
 * `npm run bench`: the proxy, login, session-lookup and sweep benchmarks of issue #9. Not part of `npm test`.
 *
 *   node bench/run.ts [--quick] [--duration 5] [--warmup 2] [--prewarm 15] [--rounds 5] [--connections 50]
 *                     [--stores sqlite,postgresql,redis] [--sessions 1000000] [--sweep-sessions 2000000]
 *                     [--login-duration 10] [--login-concurrency 4] [--only proxy,login,instructions,sessions,sweep]
 *                     [--instructions-requests 3000] [--instructions-warmup 15000] [--instructions-windows 3]
 *                     [--profile] [--log-level info] [--route /static] [--pin true|false] [--latency-rate 1000]
 *                     [--settle-ms 1500] [--freeze true|false] [--peers apache,nginx,nginx-unix,nginx-floor] [--workers 1,auto]
 *                     [--json bench/results/latest.json]
 *
 * Every flag also reads an environment variable: BENCH_DURATION, BENCH_WARMUP, BENCH_ROUNDS, BENCH_CONNECTIONS,
 * BENCH_STORES, BENCH_SESSIONS, BENCH_SWEEP_SESSIONS, BENCH_LOGIN_DURATION, BENCH_LOGIN_CONCURRENCY, BENCH_ONLY,
 * BENCH_QUICK=1, BENCH_PROFILE=1, BENCH_LOG_LEVEL; TH_TEST_POSTGRES_URL and TH_TEST_REDIS_URL pick the servers.
 *
 * Process layout (all on 127.0.0.1):
 *   bench process      autocannon (load generator), the login driver, the session-lookup measurement
 *                      and the sweep benchmark (bench/sweep.ts, which runs its own app in-process)
 *   fixtures child     the dev IdP and the demo upstream (bench/fixtures.ts)
 *   subject children   one per proxy under test (bench/subject.ts): the bare proxy, token-handler on
 *                      each store, and the real peers (bench/peers.ts, `--peers`): Apache + mod_auth_openidc,
 *                      nginx + token-handler forward-auth (its check on a port and, `nginx-unix`, on a Unix
 *                      socket), and `nginx-floor`, nginx asking a check service that does nothing (the floor
 *                      of forward-auth); all started up front, idle while another is measured
 *   worker groups      token-handler with `--workers` (`--workers 1,auto`, the default: each store as one process
 *                      and as a worker group of one worker per core), a primary and its workers; measured with all
 *                      CPUs (unpinned), beside Apache on all CPUs (`apache+mod_auth_openidc all-cores`), and the
 *                      issue's target ratios are printed pairing like with like (see `targetChecks`)
 * So the upstream, the subject and the load generator each have an event loop (and, on 2 cores, a fair
 * share of the CPU) of their own. Cases are interleaved: every round measures direct, bare, then each
 * store, and ratios are taken within a round (subject / bare of the same round), medians over rounds.
 */
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { createHistogram, performance } from 'node:perf_hooks';
import { storeUrls } from './cli.ts';
import { ceilingChecks, ceilingTable, machineShare, readCpuTimes, type CeilingCheck } from './ceiling.ts';
import { APACHE_ALL_CORES, NGINX_NOOP, NGINX_UNIX, isAllCores, median, targetChecks, targetsTable, tokenHandlerCase, workerGroup, workerList, type CaseName, type TargetCheck } from './targets.ts';
import { ensureApache, loginApache, processTree } from './peers.ts';
import { probeNginx } from '../test/support/nginx.ts';
import { canSetAffinity, HERE, login, setAffinity, startChild, TARGET_PATH, type Child } from './children.ts';
import type { FixturesReady } from './fixtures.ts';
import { measureSessions, sessionsTable, type SessionsResult } from './sessions.ts';
import type { GcStats, StoreKind, SubjectReady, SubjectSpec } from './subject.ts';
import { runSweepBenchmark, sweepTable, type SweepBenchmarkResult } from './sweep.ts';
import { instructionsTable, measureInstructions, valgrindAvailable, type InstructionsResult } from './instructions.ts';


// ---------------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------------

type Part = 'proxy' | 'login' | 'instructions' | 'sessions' | 'sweep';
type PeerName = 'apache' | 'nginx' | 'nginx-unix' | 'nginx-floor';
const PARTS = ['proxy', 'login', 'instructions', 'sessions', 'sweep'] as const;

interface Options {
  quick: boolean;
  durationSec: number;
  warmupSec: number;
  /** Unmeasured load on every proxy before the first round (JIT, heap growth), seconds; 0 for none. */
  prewarmSec: number;
  rounds: number;
  connections: number;
  stores: StoreKind[];
  /** Real peers measured beside token-handler (bench/peers.ts): Apache + mod_auth_openidc, nginx + forward-auth. */
  peers: PeerName[];
  sessions: number;
  sweepSessions: number;
  loginDurationSec: number;
  loginConcurrency: number;
  only: Part[];
  /** Instructions per request under callgrind (bench/instructions.ts): requests per window, warm-up, windows. */
  instructionsRequests: number;
  instructionsWarmup: number;
  instructionsWindows: number;
  profile: boolean;
  logLevel: string;
  /**
   * During the proxy benchmark, the proxies under test run on the last CPU and the load generator and
   * upstream on the others (taskset): each proxy gets the same core to itself instead of whatever the
   * scheduler leaves it beside the load generator. Default: on with 2+ CPUs and taskset present. The all-cores
   * cases (worker groups, Apache with a child per core) are not pinned, and while one of them is measured the
   * load generator and upstream are unpinned too (`placeLoad`).
   */
  pin: boolean;
  /** Idle time before each case's warm-up, ms. */
  settleMs: number;
  /**
   * The other proxies are stopped (SIGSTOP) while one is measured and continued (SIGCONT) after it: all share
   * the pinned core, and an idle proxy is not idle to V8, which runs its memory-reducing full collections
   * seconds after a load has ended, i.e. during the next case. Default on. Every process of the subject is
   * stopped: a worker group's primary and workers, the peers' nginx and Apache processes.
   */
  freeze: boolean;
  /** Requests per second of the fixed-rate latency measurement (0: none). */
  latencyRate: number;
  /** The upstream route every proxy case requests (below the target): `/static` answers the same bytes whatever the request. */
  route: string;
  json: string;
  /** Another checkout (e.g. the code before an optimisation) measured beside this one, store by store. */
  compareRoot: string | undefined;
  /**
   * token-handler's `--workers` values measured, each on every store (`1`: one process, pinned like the others;
   * `auto` or `<n>`: a worker group on all CPUs, beside Apache on all CPUs). Default `1,auto`.
   */
  workers: string[];
  postgresUrl: string;
  redisUrl: string;
}

function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Options {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const eq = arg.indexOf('=');
    if (eq > 0) flags.set(arg.slice(2, eq), arg.slice(eq + 1));
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) flags.set(arg.slice(2), argv[++i]!);
    else flags.set(arg.slice(2), 'true');
  }
  const get = (flag: string): string | undefined => flags.get(flag) ?? env[`BENCH_${flag.toUpperCase().replaceAll('-', '_')}`];
  const bool = (flag: string): boolean => ['1', 'true', 'yes'].includes(get(flag) ?? '');
  const quick = bool('quick');
  const num = (flag: string, full: number, fast: number): number => {
    const value = get(flag);
    if (value === undefined) return quick ? fast : full;
    const n = Number(value.replaceAll('_', ''));
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${flag} must be a positive number`);
    return n;
  };
  const list = <T extends string>(flag: string, all: readonly T[]): T[] => {
    const value = get(flag);
    if (value === undefined) return [...all];
    const items = value.split(',').map((s) => s.trim()).filter(Boolean) as T[];
    for (const item of items) if (!all.includes(item)) throw new Error(`--${flag}: unknown ${item} (one of ${all.join(', ')})`);
    return items;
  };
  // The instruction count needs valgrind and ~10 minutes: part of the default full run where valgrind is
  // installed (not of --quick), an error to ask for where it is not.
  let only: Part[];
  if (get('only') !== undefined) {
    only = list('only', PARTS);
    if (only.includes('instructions') && !valgrindAvailable()) throw new Error('--only instructions needs valgrind (with callgrind_control): apt-get install valgrind');
  } else {
    only = quick || !valgrindAvailable() ? PARTS.filter((p) => p !== 'instructions') : [...PARTS];
  }
  return {
    quick,
    // Many short interleaved rounds: on a shared machine the load changes from second to second, and the
    // median of per-round ratios holds up better than a few long runs.
    durationSec: num('duration', 5, 3),
    warmupSec: num('warmup', 2, 1),
    prewarmSec: get('prewarm') === '0' ? 0 : num('prewarm', 15, 3),
    rounds: num('rounds', 5, 2),
    connections: num('connections', 50, 50),
    stores: list('stores', ['sqlite', 'postgresql', 'redis'] as const),
    peers: get('peers') === 'none' || get('peers') === '' ? [] : list('peers', ['apache', 'nginx', 'nginx-unix', 'nginx-floor'] as const),
    sessions: num('sessions', 1_000_000, 100_000),
    sweepSessions: num('sweep-sessions', 2_000_000, 100_000),
    loginDurationSec: num('login-duration', 10, 3),
    loginConcurrency: num('login-concurrency', 4, 4),
    only,
    instructionsRequests: num('instructions-requests', 3000, 1000),
    instructionsWarmup: num('instructions-warmup', 15_000, 2000),
    instructionsWindows: num('instructions-windows', 3, 2),
    profile: bool('profile'),
    logLevel: get('log-level') ?? 'info',
    route: get('route') ?? '/static',
    latencyRate: get('latency-rate') === '0' ? 0 : num('latency-rate', 1000, 1000),
    settleMs: num('settle-ms', 1500, 1000),
    freeze: get('freeze') === undefined ? process.platform !== 'win32' : bool('freeze'),
    pin: get('pin') === undefined ? cpus().length >= 2 && canSetAffinity() : bool('pin'),
    json: get('json') ?? join(HERE, 'results', 'latest.json'),
    compareRoot: get('compare-root'),
    workers: workerList(get('workers') ?? '1,auto'),
    ...storeUrls(env),
  };
}

// ---------------------------------------------------------------------------------------------------
// Load (autocannon, with latencies recorded in microseconds: autocannon's own histogram has 1 ms steps)
// ---------------------------------------------------------------------------------------------------

export interface LoadResult {
  rps: number;
  requests: number;
  non2xx: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  /** CPU time the subject process spent per request, µs (robust to other load on the machine). */
  cpuUsPerRequest?: number;
  /** CPU time the load generator (this process) and the upstream (the fixtures child) spent per request, µs (bench/ceiling.ts). */
  loadCpuUsPerRequest?: number;
  upstreamCpuUsPerRequest?: number;
  /** Shares of the whole machine's CPU time busy, and stolen by the hypervisor, during the load (Linux only). */
  machineBusy?: number;
  machineSteal?: number;
  /** The subject's garbage collections during the load (fixed-rate phase only). */
  gc?: GcStats;
}

const round = (n: number, digits = 2): number => Math.round(n * 10 ** digits) / 10 ** digits;

async function load(url: string, headers: Record<string, string>, connections: number, durationSec: number, record: boolean): Promise<LoadResult> {
  const histogram = createHistogram();
  const instance = autocannon({ url, connections, duration: durationSec, headers, pipelining: 1 });
  if (record) {
    instance.on('response', (_client: unknown, status: number, _bytes: number, responseTimeMs: number) => {
      if (status >= 200 && status < 300) histogram.record(Math.max(1, Math.round(responseTimeMs * 1000)));
    });
  }
  const result = await instance;
  return {
    rps: round(result.requests.total / durationSec, 0),
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    p50Ms: round(histogram.percentile(50) / 1000),
    p99Ms: round(histogram.percentile(99) / 1000),
    p999Ms: round(histogram.percentile(99.9) / 1000),
  };
}

/**
 * Latency at a steady `rate` (requests/s), evenly spaced: autocannon's `overallRate` releases each
 * second's requests at the start of the second, so its latencies are those of a burst queue. Here a
 * request is due every 1/rate s whatever came back before (open loop, over a keep-alive pool of
 * `connections`); a response's latency runs from when its request was due.
 */
async function fixedRateLoad(url: string, headers: Record<string, string>, connections: number, durationSec: number, rate: number): Promise<LoadResult> {
  const target = new URL(url);
  const pool = new Pool(target.origin, { connections, pipelining: 1 });
  const histogram = createHistogram();
  const path = target.pathname + target.search;
  let requests = 0;
  let non2xx = 0;
  let errors = 0;
  const inFlight = new Set<Promise<void>>();
  const started = performance.now();
  const total = Math.round(rate * durationSec);
  let issued = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
      for (; issued < due; issued += 1) {
        const dueAt = started + (issued / rate) * 1000;
        const p = pool
          .request({ method: 'GET', path, headers })
          .then(async (res) => {
            await res.body.dump();
            requests += 1;
            if (res.statusCode >= 200 && res.statusCode < 300) histogram.record(Math.max(1, Math.round((performance.now() - dueAt) * 1000)));
            else non2xx += 1;
          })
          .catch(() => {
            errors += 1;
          })
          .finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      if (issued >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(inFlight);
  await pool.close();
  return {
    rps: round(requests / durationSec, 0),
    requests,
    non2xx,
    errors,
    p50Ms: round(histogram.percentile(50) / 1000, 3),
    p99Ms: round(histogram.percentile(99) / 1000, 3),
    p999Ms: round(histogram.percentile(99.9) / 1000, 3),
  };
}

// ---------------------------------------------------------------------------------------------------
// Parts
// ---------------------------------------------------------------------------------------------------

export interface ProxyCaseResult extends LoadResult {
  case: CaseName;
  /** Measured unpinned, on every CPU (worker groups, Apache all-cores); otherwise on the proxies' pinned CPU when `--pin`. */
  allCores: boolean;
  /**
   * Median over rounds of (this case's rps / the bare proxy's rps in the same round). The ratios to bare are
   * null for an all-cores case when bare was pinned (`--pin`): not like with like.
   */
  ratioToBare: number | null;
  /** This case's median rps / the bare proxy's median rps (less sensitive to one noisy pairing). */
  ratioOfMedians: number | null;
  /**
   * Bare proxy CPU µs per request / this case's: the throughput ratio the two would reach on a core of
   * their own, measured without the noise of whatever else runs on the machine.
   */
  cpuRatioToBare: number | null;
  /**
   * The best round against the best round: this case's highest rps / bare's highest, and bare's lowest CPU
   * µs per request / this case's lowest. Noise on a shared machine only ever slows a round down, so the best
   * rounds are the ones least disturbed by it (the way a benchmark takes the minimum of repeated timings).
   */
  bestRatioToBare: number | null;
  bestCpuRatioToBare: number | null;
  /** Median over rounds of (this case's p99 − the bare proxy's p99 in the same round), ms. */
  addedP99Ms: number | null;
  rssMb: number | null;
  rounds: LoadResult[];
  /**
   * Latency at a fixed request rate below every case's capacity (`--latency-rate`): the time a request
   * spends in the proxy, not in a queue; medians over rounds, added = median of per-round differences
   * from the bare proxy.
   */
  atRate: {
    rate: number;
    p50Ms: number;
    p99Ms: number;
    p999Ms: number;
    addedP50Ms: number | null;
    addedP99Ms: number | null;
    /** Medians over rounds of the subject's scavenge pauses (mean, longest) and MB promoted per 10,000 requests. */
    scavengeMeanMs: number | null;
    scavengeMaxMs: number | null;
    promotedMbPer10k: number | null;
    /** Median over rounds of the subject's own event-loop delay p99 (its stalls, whatever the network adds). */
    loopDelayP99Ms: number | null;
    rounds: LoadResult[];
  } | null;
}

/**
 * Sends `signal` to every proxy under test but `current` (SIGSTOP / SIGCONT: see Options.freeze), with every
 * process it started: a worker group's workers (Node.js processes whose idle-time collections would land in
 * another case), the peers' nginx and Apache processes.
 */
function signalOthers(cases: { name: CaseName; child?: Child<SubjectReady> }[], current: { name: CaseName }, signal: 'SIGSTOP' | 'SIGCONT'): void {
  for (const other of cases) {
    if (other.name === current.name || other.child?.process.pid === undefined) continue;
    for (const pid of processTree(other.child.process.pid)) {
      try {
        process.kill(pid, signal);
      } catch {
        // exited meanwhile
      }
    }
  }
}

/**
 * CPU placement of the load generator and upstream while a case runs (with `--pin`): a pinned case's proxy is on the last CPU (set once, at the
 * start) and the load generator and upstream on the others; for an all-cores case the load generator and the
 * upstream are unpinned too, so that the case runs as on an unpinned machine (its own processes are unpinned).
 */
function placeLoad(pin: Placement | undefined, allCores: boolean): void {
  if (!pin) return;
  const want = allCores ? pin.allCpus : pin.loadCpus;
  if (pin.current === want) return;
  for (const pid of pin.loadPids) setAffinity(pid, want);
  pin.current = want;
}

interface Placement {
  loadPids: number[];
  loadCpus: string;
  allCpus: string;
  current: string;
}

async function proxyBenchmark(
  options: Options,
  fixturesChild: Child<FixturesReady>,
  subjects: Map<CaseName, Child<SubjectReady>>,
  log: (line: string) => void,
  placement?: Placement,
): Promise<ProxyCaseResult[]> {
  const fixtures = fixturesChild.ready;
  const cases: { name: CaseName; url: string; headers: Record<string, string>; child?: Child<SubjectReady>; allCores: boolean }[] = [];
  // Every case sends the same request headers. On /static the upstream answers the same bytes to every
  // case; on /echo/* its answer grows with what a proxy adds (the bearer token, twice: headers and rawHeaders).
  // Each case logs in through the same dev IdP: token-handler (and nginx + forward-auth, through nginx) with its
  // session cookie, Apache with mod_auth_openidc's.
  const cookies = new Map<CaseName, string>();
  for (const [name, child] of subjects) {
    const base = `http://127.0.0.1:${child.ready.port}`;
    if (name.startsWith('token-handler/') || name.startsWith('before/') || name.startsWith('nginx+forward-auth')) cookies.set(name, `session=${await login(base)}`);
    if (name.startsWith('apache+mod_auth_openidc')) cookies.set(name, `mod_auth_openidc_session=${await loginApache(`${base}${TARGET_PATH}${options.route}`)}`);
  }
  const anyCookie = [...cookies.values()][0] ?? `session=${'x'.repeat(120)}`;
  cases.push({ name: 'direct', url: `${fixtures.upstream}${options.route}`, headers: { cookie: anyCookie }, allCores: false });
  for (const [name, child] of subjects) {
    cases.push({ name, url: `http://127.0.0.1:${child.ready.port}${TARGET_PATH}${options.route}`, headers: { cookie: cookies.get(name) ?? anyCookie }, child, allCores: isAllCores(name) });
  }
  // Every authenticating case must hand the upstream a bearer token (a peer misconfigured into passing requests
  // through without one would look fast): the echo route reports what the upstream received.
  for (const c of cases) {
    if (c.name === 'direct' || c.name === 'bare') continue;
    const res = await fetch(`${c.url.slice(0, c.url.length - options.route.length)}/echo/bench-check`, { headers: c.headers });
    const body = (await res.json().catch(() => ({}))) as { headers?: Record<string, string> };
    const authorization = body.headers?.authorization ?? '';
    if (res.status !== 200 || !authorization.startsWith('Bearer ey')) throw new Error(`${c.name}: the upstream got no bearer token (status ${res.status})`);
    if (/(^|;\s*)(session|mod_auth_openidc_session)=/.test(body.headers?.cookie ?? '')) throw new Error(`${c.name}: the session cookie reached the upstream`);
  }
  log(`[proxy] every authenticating case hands the upstream a bearer token and keeps its session cookie from it`);
  const perRound = new Map<CaseName, LoadResult[]>(cases.map((c) => [c.name, []]));
  const atRate = new Map<CaseName, LoadResult[]>(cases.map((c) => [c.name, []]));
  const rss = new Map<CaseName, number>();
  // Before the first round, every proxy is loaded once for a while, unmeasured: a fresh process spends its
  // first tens of seconds under load compiling hot code and growing its heap (full collections, long
  // scavenges), and without this the first rounds' fixed-rate p99 was decided by those one-off pauses.
  for (const c of cases) {
    if (!c.child || options.prewarmSec === 0) continue;
    if (options.freeze) signalOthers(cases, c, 'SIGSTOP');
    placeLoad(placement, c.allCores);
    await load(c.url, c.headers, options.connections, options.prewarmSec, false);
    if (options.freeze) signalOthers(cases, c, 'SIGCONT');
  }
  if (options.prewarmSec > 0) log(`[proxy] every proxy warmed up for ${options.prewarmSec} s`);
  for (let r = 0; r < options.rounds; r += 1) {
    // Each round starts one case further on: a process still cleaning up after its load (GC of what the
    // load left, closing sockets) slows whichever case runs next on the same CPU, so no case may always
    // follow the same one. A pause between cases lets that cleanup finish.
    for (let k = 0; k < cases.length; k += 1) {
      const c = cases[(r + k) % cases.length]!;
      if (options.freeze) signalOthers(cases, c, 'SIGSTOP');
      placeLoad(placement, c.allCores);
      await sleep(options.settleMs);
      await load(c.url, c.headers, options.connections, options.warmupSec, false);
      const cpuBefore = c.child ? await c.child.cpu() : 0;
      const upstreamBefore = await fixturesChild.cpu();
      const loadBefore = process.cpuUsage();
      const machineBefore = readCpuTimes();
      const result = await load(c.url, c.headers, options.connections, options.durationSec, true);
      const machine = machineShare(machineBefore, readCpuTimes());
      const loadCpu = process.cpuUsage(loadBefore);
      const perRequest = (micros: number): number => round(micros / Math.max(1, result.requests), 1);
      result.loadCpuUsPerRequest = perRequest(loadCpu.user + loadCpu.system);
      result.upstreamCpuUsPerRequest = perRequest((await fixturesChild.cpu()) - upstreamBefore);
      if (machine) Object.assign(result, { machineBusy: machine.busy, machineSteal: machine.steal });
      if (c.child) result.cpuUsPerRequest = perRequest((await c.child.cpu()) - cpuBefore);
      if (c.child) rss.set(c.name, Math.max(rss.get(c.name) ?? 0, await c.child.rss()));
      perRound.get(c.name)!.push(result);
      log(`[proxy] round ${r + 1}/${options.rounds} ${c.name}: ${result.rps} req/s, ${result.cpuUsPerRequest ?? '–'} CPU µs/req (load generator ${result.loadCpuUsPerRequest}, upstream ${result.upstreamCpuUsPerRequest}${machine ? `, machine ${Math.round(machine.busy * 100)} % busy, ${Math.round(machine.steal * 100)} % stolen` : ''}), p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, non-2xx ${result.non2xx}, errors ${result.errors}`);
      warnIfFailed(log, c.name, r, result);
      if (options.latencyRate > 0) {
        if (c.child) await c.child.gcStart();
        const fixed = await fixedRateLoad(c.url, c.headers, options.connections, options.durationSec, options.latencyRate);
        const gcStats = c.child ? await c.child.gcStop() : undefined;
        if (gcStats) fixed.gc = gcStats;
        atRate.get(c.name)!.push(fixed);
        const gc = fixed.gc ? `, scavenges ${fixed.gc.scavenges} (mean ${fixed.gc.scavengeMeanMs} ms, max ${fixed.gc.scavengeMaxMs} ms), promoted ${fixed.gc.promotedMb} MB, mark-compacts ${fixed.gc.markCompacts} (${fixed.gc.markCompactMs} ms), loop delay p99 ${fixed.gc.loopDelayP99Ms} ms, max ${fixed.gc.loopDelayMaxMs} ms` : '';
        log(`[proxy] round ${r + 1}/${options.rounds} ${c.name} at ${options.latencyRate} req/s: p50 ${fixed.p50Ms} ms, p99 ${fixed.p99Ms} ms, p99.9 ${fixed.p999Ms} ms, non-2xx ${fixed.non2xx}, errors ${fixed.errors}${gc}`);
        warnIfFailed(log, c.name, r, fixed);
      }
      if (options.freeze) signalOthers(cases, c, 'SIGCONT');
    }
  }
  const bareRounds = perRound.get('bare') ?? [];
  const bareAtRate = atRate.get('bare') ?? [];
  const bareMedian = median(bareRounds.map((x) => x.rps));
  const bareCpu = median(bareRounds.map((x) => x.cpuUsPerRequest ?? Number.NaN));
  const best = (xs: number[]): number => Math.max(...xs.filter((x) => Number.isFinite(x)));
  const least = (xs: number[]): number => Math.min(...xs.filter((x) => Number.isFinite(x)));
  const bareBest = bareRounds.length > 0 ? best(bareRounds.map((x) => x.rps)) : Number.NaN;
  const bareLeastCpu = bareRounds.length > 0 ? least(bareRounds.map((x) => x.cpuUsPerRequest ?? Number.NaN)) : Number.NaN;
  return cases.map((c) => {
    const rounds = perRound.get(c.name)!;
    // An all-cores case against the pinned bare proxy would not be like with like: no ratios to bare.
    const bare = c.allCores && options.pin ? [] : bareRounds;
    const ratios = bare.length > 0 ? rounds.map((res, i) => res.rps / bare[i]!.rps) : [];
    const added = bare.length > 0 ? rounds.map((res, i) => res.p99Ms - bare[i]!.p99Ms) : [];
    return {
      case: c.name,
      allCores: c.allCores,
      rps: round(median(rounds.map((x) => x.rps)), 0),
      requests: rounds.reduce((n, x) => n + x.requests, 0),
      non2xx: rounds.reduce((n, x) => n + x.non2xx, 0),
      errors: rounds.reduce((n, x) => n + x.errors, 0),
      p50Ms: round(median(rounds.map((x) => x.p50Ms))),
      p99Ms: round(median(rounds.map((x) => x.p99Ms))),
      p999Ms: round(median(rounds.map((x) => x.p999Ms))),
      ratioToBare: ratios.length > 0 ? round(median(ratios), 3) : null,
      ratioOfMedians: bare.length > 0 ? round(median(rounds.map((x) => x.rps)) / bareMedian, 3) : null,
      cpuUsPerRequest: c.child ? round(median(rounds.map((x) => x.cpuUsPerRequest ?? Number.NaN)), 1) : undefined,
      loadCpuUsPerRequest: round(median(rounds.map((x) => x.loadCpuUsPerRequest ?? Number.NaN)), 1),
      upstreamCpuUsPerRequest: round(median(rounds.map((x) => x.upstreamCpuUsPerRequest ?? Number.NaN)), 1),
      cpuRatioToBare: c.child && bare.length > 0 && bareCpu > 0 ? round(bareCpu / median(rounds.map((x) => x.cpuUsPerRequest ?? Number.NaN)), 3) : null,
      bestRatioToBare: bare.length > 0 ? round(best(rounds.map((x) => x.rps)) / bareBest, 3) : null,
      bestCpuRatioToBare: c.child && bare.length > 0 && Number.isFinite(bareLeastCpu) ? round(bareLeastCpu / least(rounds.map((x) => x.cpuUsPerRequest ?? Number.NaN)), 3) : null,
      addedP99Ms: added.length > 0 ? round(median(added)) : null,
      rssMb: rss.has(c.name) ? round(rss.get(c.name)! / 2 ** 20, 0) : null,
      rounds,
      atRate: summariseAtRate(options.latencyRate, atRate.get(c.name)!, bare.length > 0 ? bareAtRate : []),
    };
  });
}

function gcSummary(rounds: LoadResult[]): { scavengeMeanMs: number | null; scavengeMaxMs: number | null; promotedMbPer10k: number | null; loopDelayP99Ms: number | null } {
  const withGc = rounds.filter((x) => x.gc !== undefined);
  if (withGc.length === 0) return { scavengeMeanMs: null, scavengeMaxMs: null, promotedMbPer10k: null, loopDelayP99Ms: null };
  return {
    loopDelayP99Ms: round(median(withGc.map((x) => x.gc!.loopDelayP99Ms)), 2),
    scavengeMeanMs: round(median(withGc.map((x) => x.gc!.scavengeMeanMs)), 2),
    scavengeMaxMs: round(median(withGc.map((x) => x.gc!.scavengeMaxMs)), 2),
    promotedMbPer10k: round(median(withGc.map((x) => (x.gc!.promotedMb / Math.max(1, x.requests)) * 10_000)), 2),
  };
}

/**
 * A round whose requests were not all answered 2xx measured something other than the proxy (a peer whose
 * session expired answers its IdP redirect far faster than it proxies): say so as it happens; the targets
 * table marks every ratio of that case not valid (bench/targets.ts).
 */
function warnIfFailed(log: (line: string) => void, name: CaseName, round: number, result: LoadResult): void {
  if (result.non2xx === 0 && result.errors === 0) return;
  log(`[proxy] WARNING round ${round + 1} ${name}: ${result.non2xx} of ${result.requests} answers were not 2xx, and ${result.errors} requests failed: this round's figures are not a proxy's`);
}

function summariseAtRate(rate: number, rounds: LoadResult[], bare: LoadResult[]): ProxyCaseResult['atRate'] {
  if (rate <= 0 || rounds.length === 0) return null;
  const paired = bare.length === rounds.length;
  return {
    rate,
    p50Ms: round(median(rounds.map((x) => x.p50Ms)), 3),
    p99Ms: round(median(rounds.map((x) => x.p99Ms)), 3),
    p999Ms: round(median(rounds.map((x) => x.p999Ms)), 3),
    addedP50Ms: paired ? round(median(rounds.map((x, i) => x.p50Ms - bare[i]!.p50Ms)), 3) : null,
    addedP99Ms: paired ? round(median(rounds.map((x, i) => x.p99Ms - bare[i]!.p99Ms)), 3) : null,
    ...gcSummary(rounds),
    rounds,
  };
}

export interface LoginResult {
  store: StoreKind;
  concurrency: number;
  durationSec: number;
  logins: number;
  failures: number;
  perSec: number;
  p50Ms: number;
  p99Ms: number;
  firstFailure?: string;
}

/** Complete logins (auth redirect, IdP login form and consent, callback) per second, `concurrency` at a time. */
async function loginBenchmark(options: Options, store: StoreKind, base: string): Promise<LoginResult> {
  const histogram = createHistogram();
  let failures = 0;
  let firstFailure: string | undefined;
  const until = performance.now() + options.loginDurationSec * 1000;
  // Warm-up: one login (discovery, JIT).
  await login(base);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.loginConcurrency }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        try {
          await login(base);
          histogram.record(Math.max(1, Math.round((performance.now() - t0) * 1000)));
        } catch (err) {
          failures += 1;
          firstFailure ??= (err as Error).message;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return {
    store,
    concurrency: options.loginConcurrency,
    durationSec: round(elapsed, 1),
    logins: histogram.count,
    failures,
    perSec: round(histogram.count / elapsed, 1),
    p50Ms: round(histogram.percentile(50) / 1000, 1),
    p99Ms: round(histogram.percentile(99) / 1000, 1),
    ...(firstFailure ? { firstFailure } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------------

interface BenchResult {
  startedAt: string;
  machine: { cpus: number; cpuModel: string; memoryGb: number; node: string; platform: string };
  options: Omit<Options, 'postgresUrl' | 'redisUrl'>;
  proxy?: ProxyCaseResult[];
  /** Issue 24.3's target ratios from the proxy benchmark (`targetChecks`). */
  targets?: TargetCheck[];
  /** The req/s ratios of those targets that the run's CPU figures allow (`ceilingChecks`). */
  ceilings?: CeilingCheck[];
  login?: LoginResult;
  sessions?: SessionsResult;
  sweep?: SweepBenchmarkResult;
  instructions?: InstructionsResult;
  elapsedSec?: number;
}

function proxyTable(rows: ProxyCaseResult[], connections: number, pin: boolean): string {
  const name = (r: ProxyCaseResult): string => `${r.case}${r.allCores && pin ? ' *' : ''}`;
  const lines = [
    `| case (${connections} connections) | req/s | ratio to bare (per round / of medians) | CPU µs/req | CPU ratio to bare | best rounds' ratio (req/s / CPU) | p50 ms | p99 ms | p99.9 ms | added p99 ms | RSS MB | non-2xx / errors |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${name(r)} | ${r.rps} | ${r.ratioToBare === null ? '–' : `${Math.round(r.ratioToBare * 1000) / 10}% / ${Math.round((r.ratioOfMedians ?? Number.NaN) * 1000) / 10}%`} | ${r.cpuUsPerRequest ?? '–'} | ${r.cpuRatioToBare === null ? '–' : `${Math.round(r.cpuRatioToBare * 1000) / 10}%`} | ${r.bestRatioToBare === null ? '–' : `${Math.round(r.bestRatioToBare * 1000) / 10}% / ${r.bestCpuRatioToBare === null ? '–' : `${Math.round(r.bestCpuRatioToBare * 1000) / 10}%`}`} | ${r.p50Ms} | ${r.p99Ms} | ${r.p999Ms} | ${r.addedP99Ms ?? '–'} | ${r.rssMb ?? '–'} | ${r.non2xx} / ${r.errors} |`,
    );
  }
  const fixed = rows.filter((r) => r.atRate !== null);
  if (fixed.length > 0) {
    lines.push(
      '',
      `| case at a fixed ${fixed[0]!.atRate!.rate} req/s (${connections} connections) | p50 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms | proxy's loop delay p99 ms | scavenge pause mean / max ms | MB promoted per 10k requests | non-2xx / errors |`,
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const r of fixed) {
      const a = r.atRate!;
      const non2xx = a.rounds.reduce((n, x) => n + x.non2xx, 0);
      const errors = a.rounds.reduce((n, x) => n + x.errors, 0);
      const gc = a.scavengeMeanMs === null ? '–' : `${a.scavengeMeanMs} / ${a.scavengeMaxMs}`;
      lines.push(`| ${name(r)} | ${a.p50Ms} | ${a.p99Ms} | ${a.p999Ms} | ${a.addedP50Ms ?? '–'} | ${a.addedP99Ms ?? '–'} | ${a.loopDelayP99Ms ?? '–'} | ${gc} | ${a.promotedMbPer10k ?? '–'} | ${non2xx} / ${errors} |`);
    }
  }
  return lines.join('\n');
}

function loginTable(r: LoginResult): string {
  return [
    '| login round trip (token-handler + dev IdP) | logins/s | p50 ms | p99 ms | failures |',
    '|---|---:|---:|---:|---:|',
    `| ${r.store}, ${r.concurrency} concurrent browsers, ${r.durationSec} s | ${r.perSec} | ${r.p50Ms} | ${r.p99Ms} | ${r.failures} |`,
  ].join('\n');
}

export function renderReport(result: BenchResult): string {
  const parts = [
    `Machine: ${result.machine.cpus} cores (${result.machine.cpuModel}), ${result.machine.memoryGb} GB, Node ${result.machine.node}, ${result.machine.platform}; ${result.startedAt}.`,
    `Options: ${result.options.rounds} rounds × ${result.options.durationSec} s (+${result.options.warmupSec} s warm-up) per case${result.options.prewarmSec ? ` after ${result.options.prewarmSec} s of unmeasured load on each proxy` : ''}, ${result.options.connections} connections, upstream route \`${result.options.route}\`, ${result.options.pin ? 'proxies pinned to a CPU of their own (all-cores cases, marked *, unpinned with the load generator)' : 'no CPU pinning'}, log level ${result.options.logLevel}; whole run ${result.elapsedSec ?? '?'} s.`,
  ];
  if (result.proxy) parts.push(proxyTable(result.proxy, result.options.connections, result.options.pin));
  if (result.targets && result.targets.length > 0) parts.push(targetsTable(result.targets));
  if (result.ceilings && result.ceilings.length > 0) parts.push(ceilingTable(result.ceilings));
  if (result.login) parts.push(loginTable(result.login));
  if (result.instructions) parts.push(instructionsTable(result.instructions));
  if (result.sessions) parts.push(sessionsTable(result.sessions));
  if (result.sweep) parts.push(sweepTable(result.sweep));
  return parts.join('\n\n');
}

// ---------------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = performance.now();
  const options = parseOptions(process.argv.slice(2), process.env);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const { postgresUrl, redisUrl, ...shown } = options;
  const result: BenchResult = {
    startedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryGb: Math.round(totalmem() / 2 ** 30), node: process.versions.node, platform: `${process.platform}-${process.arch}` },
    options: shown,
  };
  log(`[bench] ${JSON.stringify(shown)}`);

  if (options.only.includes('proxy') || options.only.includes('login')) {
    const fixtures = await startChild<FixturesReady>('fixtures.ts', []);
    const subjects = new Map<CaseName, Child<SubjectReady>>();
    const profileArgs = options.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(HERE, 'results', 'profiles')}`] : [];
    try {
      const spec = (store: StoreKind, workers = '1'): SubjectSpec => ({ mode: 'token-handler', upstream: fixtures.ready.upstream, issuer: fixtures.ready.issuer, store, postgresUrl, redisUrl, logLevel: options.logLevel, workers });
      // Worker groups only for the proxy benchmark; one process always for the login benchmark.
      const workerGroups = options.only.includes('proxy') ? options.workers.filter((w) => w !== '1') : [];
      const oneWorker = options.workers.includes('1') || options.only.includes('login');
      if (options.only.includes('proxy')) {
        subjects.set('bare', await startChild<SubjectReady>('subject.ts', [JSON.stringify({ mode: 'bare', upstream: fixtures.ready.upstream } satisfies SubjectSpec)], profileArgs));
        if (options.peers.includes('apache')) {
          const unavailable = ensureApache(log);
          if (unavailable) log(`[proxy] apache+mod_auth_openidc skipped: ${unavailable}`);
          else {
            const apache = (children?: number): string => JSON.stringify({ mode: 'apache', upstream: fixtures.ready.upstream, issuer: fixtures.ready.issuer, ...(children ? { children } : {}) } satisfies SubjectSpec);
            if (oneWorker) subjects.set('apache+mod_auth_openidc', await startChild<SubjectReady>('subject.ts', [apache()]));
            // Beside the worker groups, Apache on all cores too: one child process per core (bench/peers.ts).
            if (workerGroups.length > 0) subjects.set(APACHE_ALL_CORES, await startChild<SubjectReady>('subject.ts', [apache(cpus().length)]));
          }
        }
        const forwardAuth = (transport: 'tcp' | 'unix'): SubjectSpec => ({ mode: 'nginx-forward-auth', upstream: fixtures.ready.upstream, issuer: fixtures.ready.issuer, logLevel: options.logLevel, transport });
        const nginxCases: [PeerName, CaseName, SubjectSpec][] = [
          ['nginx', 'nginx+forward-auth', forwardAuth('tcp')],
          ['nginx-unix', NGINX_UNIX, forwardAuth('unix')],
          ['nginx-floor', NGINX_NOOP, { mode: 'nginx-noop-check', upstream: fixtures.ready.upstream }],
        ];
        const wanted = nginxCases.filter(([peer]) => options.peers.includes(peer));
        const nginxMissing = wanted.length > 0 ? probeNginx() : undefined;
        for (const [, name, nginxSpec] of wanted) {
          if (nginxMissing) log(`[proxy] ${name} skipped: ${nginxMissing}`);
          else subjects.set(name, await startChild<SubjectReady>('subject.ts', [JSON.stringify(nginxSpec)], profileArgs));
        }
      }
      for (const store of options.stores) {
        if (oneWorker) subjects.set(tokenHandlerCase(store, '1'), await startChild<SubjectReady>('subject.ts', [JSON.stringify(spec(store))], profileArgs));
        for (const workers of workerGroups) {
          subjects.set(tokenHandlerCase(store, workers), await startChild<SubjectReady>('subject.ts', [JSON.stringify(spec(store, workers))], profileArgs));
        }
        if (options.compareRoot && options.only.includes('proxy')) {
          subjects.set(`before/${store}`, await startChild<SubjectReady>('subject.ts', [JSON.stringify(spec(store))], profileArgs, join(options.compareRoot, 'bench')));
        }
      }
      if (options.only.includes('proxy')) {
        const last = cpus().length - 1;
        const loadCpus = last === 1 ? '0' : `0-${last - 1}`;
        let placement: Placement | undefined;
        if (options.pin) {
          placement = { loadPids: [process.pid, fixtures.process.pid!], loadCpus, allCpus: `0-${last}`, current: '' };
          placeLoad(placement, false);
          // With the processes they started (the peers' nginx and Apache masters and workers). All-cores cases
          // (worker groups, Apache with a child per core) stay on every CPU.
          for (const [name, child] of subjects) for (const pid of processTree(child.process.pid!)) setAffinity(pid, isAllCores(name) ? `0-${last}` : String(last));
          const allCores = [...subjects.keys()].filter(isAllCores);
          log(`[proxy] pinned: proxies on CPU ${last}, load generator and upstream on CPU ${loadCpus}${allCores.length > 0 ? `; unpinned, with the load generator and upstream, while measured: ${allCores.join(', ')}` : ''}`);
        }
        try {
          result.proxy = await proxyBenchmark(options, fixtures, subjects, log, placement);
          result.targets = targetChecks(result.proxy, options.stores, options.workers, options.pin);
          result.ceilings = ceilingChecks(result.proxy, options.stores, workerGroup(options.workers));
        } finally {
          if (options.pin) {
            for (const pid of [process.pid, fixtures.process.pid!, ...[...subjects.values()].flatMap((c) => processTree(c.process.pid!))]) setAffinity(pid, `0-${last}`);
          }
        }
      }
      if (options.only.includes('login')) {
        const store = options.stores[0] ?? 'sqlite';
        const child = subjects.get(tokenHandlerCase(store, '1'))!;
        result.login = await loginBenchmark(options, store, `http://127.0.0.1:${child.ready.port}`);
        log(`[login] ${result.login.perSec} logins/s (p50 ${result.login.p50Ms} ms, p99 ${result.login.p99Ms} ms, ${result.login.failures} failures)`);
      }
    } finally {
      for (const child of subjects.values()) await child.stop();
      await fixtures.stop();
    }
  }
  if (options.only.includes('instructions')) {
    const fixtures = await startChild<FixturesReady>('fixtures.ts', []);
    try {
      result.instructions = await measureInstructions(
        {
          stores: options.stores,
          requests: options.instructionsRequests,
          warmup: options.instructionsWarmup,
          windows: options.instructionsWindows,
          route: options.route,
          logLevel: options.logLevel,
          postgresUrl,
          redisUrl,
          log,
        },
        fixtures.ready,
      );
    } finally {
      await fixtures.stop();
    }
  }
  if (options.only.includes('sessions')) {
    result.sessions = await measureSessions({ stores: options.stores, sessions: options.sessions, postgresUrl, redisUrl, log });
  }
  if (options.only.includes('sweep')) {
    result.sweep = await runSweepBenchmark({
      stores: options.stores,
      sessions: options.sweepSessions,
      baselineSec: options.quick ? 3 : 10,
      postgresUrl,
      redisUrl,
      log,
    });
  }

  result.elapsedSec = Math.round((performance.now() - started) / 1000);
  const report = renderReport(result);
  mkdirSync(dirname(options.json), { recursive: true });
  writeFileSync(options.json, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(options.json.replace(/\.json$/, '.md'), `${report}\n`);
  process.stdout.write(`\n${report}\n\nJSON: ${options.json}\n`);
}

await main();
