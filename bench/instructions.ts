/**
 * Instructions per proxied request, counted by valgrind's callgrind: the proxies' CPU cost in a unit the
 * machine's noise does not reach. On a shared VM the same process's CPU time per request varies up to 2×
 * from one minute to the next (bench/RESULTS.md), and that noise is what decides a close throughput ratio;
 * an instruction count is the same for the same code, inputs and environment, whatever else the machine is
 * doing. It is not time (cache misses and branch mispredictions cost differently), so it complements the
 * req/s and CPU-time figures rather than replacing them.
 *
 * Each proxy (the bare proxy, then token-handler on each store) runs alone under
 * `valgrind --tool=callgrind`, ~50× slower than native: a warm-up load, then `windows` windows of
 * `requests` requests each over `connections` keep-alive connections, with callgrind's counters zeroed
 * before and dumped after each window (callgrind_control). The count covers every thread of the process
 * (JavaScript, the garbage collector's helpers, libuv's pool), divided by the requests of the window.
 *
 * V8 runs with `--predictable`: compilation and garbage collection on the main thread, on a schedule that
 * does not depend on time (under valgrind everything takes ~50× longer, and V8's time-based heuristics behave
 * accordingly). The optimising compiler still works through waves of hot functions for the first ~15,000
 * requests (a window then costs up to twice as much), hence the long warm-up; the headline figure is each
 * proxy's least window, as a micro-benchmark takes the least of repeated timings (what is added on top is
 * one-off work), the median beside it. bench/RESULTS.md (session 4) has what else was tried.
 *
 *   node bench/instructions.ts [--requests 3000] [--warmup 15000] [--windows 3] [--stores sqlite,postgresql,redis]
 *   (or `npm run bench -- --only instructions`)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { HERE, login, startChild, TARGET_PATH, type Child, type Wrapper } from './children.ts';
import { cliFlag, cliNumber, storeUrls } from './cli.ts';
import type { FixturesReady } from './fixtures.ts';
import type { StoreKind, SubjectReady, SubjectSpec } from './subject.ts';

export interface InstructionsOptions {
  stores: StoreKind[];
  /** Requests per counted window; default 3,000. */
  requests?: number;
  /** Requests before the first window (JIT warm-up); default 15,000. */
  warmup?: number;
  /** Counted windows per proxy; default 3. */
  windows?: number;
  /** Concurrent keep-alive connections; default 10. */
  connections?: number;
  /** Upstream route, as in the throughput benchmark; default `/static`. */
  route?: string;
  logLevel?: string;
  postgresUrl: string;
  redisUrl: string;
  log: (line: string) => void;
}

export interface InstructionsCase {
  case: string;
  /** Instructions per request in each window. */
  windows: number[];
  /** The least window. */
  perRequest: number;
  median: number;
  /** Bare proxy's perRequest / this one's: the throughput ratio the two would reach at equal cost per instruction. */
  ratioToBare: number | null;
  /** The same for the medians. */
  ratioOfMedians: number | null;
}

export interface InstructionsResult {
  requests: number;
  warmup: number;
  connections: number;
  cases: InstructionsCase[];
}

export function valgrindAvailable(): boolean {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
    execFileSync('which', ['callgrind_control'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** `n` GETs of `path`, `connections` at a time; throws on any non-2xx answer. */
async function load(pool: Pool, path: string, headers: Record<string, string>, n: number, connections: number): Promise<void> {
  let sent = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (sent < n) {
        sent += 1;
        const response = await pool.request({ path, method: 'GET', headers });
        await response.body.dump();
        if (response.statusCode < 200 || response.statusCode > 299) throw new Error(`${path} answered ${response.statusCode}`);
      }
    }),
  );
}

/** Dumps the child's counters as `trigger` and returns the instruction total of that dump. */
async function dumpTotal(pid: number, dir: string, trigger: string): Promise<number> {
  execFileSync('callgrind_control', ['--dump', trigger, String(pid)], { stdio: 'ignore' });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    for (const file of readdirSync(dir)) {
      const text = readFileSync(join(dir, file), 'utf8');
      // callgrind_control --dump X records its trigger as `dump X`.
      if (!text.includes(`desc: Trigger: dump ${trigger}\n`)) continue;
      const total = /^(?:totals|summary): (\d+)/m.exec(text);
      if (total) return Number(total[1]);
    }
    await sleep(200);
  }
  throw new Error(`callgrind dump "${trigger}" of ${pid} did not appear in ${dir}`);
}

async function measureCase(name: string, spec: SubjectSpec, options: Required<Omit<InstructionsOptions, 'log' | 'stores' | 'postgresUrl' | 'redisUrl'>>, log: (line: string) => void): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'th-bench-callgrind-'));
  // --smc-check: V8 writes and rewrites machine code on the heap; valgrind must notice, or it runs stale code.
  const wrapper: Wrapper = { command: 'valgrind', args: ['--tool=callgrind', '--smc-check=all-non-file', '--dump-instr=no', `--callgrind-out-file=${join(dir, 'callgrind.%p')}`, '--quiet'] };
  let child: Child<SubjectReady> | undefined;
  let pool: Pool | undefined;
  try {
    log(`[instructions] ${name}: starting under callgrind...`);
    child = await startChild<SubjectReady>('subject.ts', [JSON.stringify(spec)], ['--predictable'], HERE, wrapper);
    const base = `http://127.0.0.1:${child.ready.port}`;
    const cookie = spec.mode === 'token-handler' ? await login(base) : 'x'.repeat(120);
    const headers = { cookie: `session=${cookie}` };
    pool = new Pool(base, { connections: options.connections, pipelining: 1 });
    const path = `${TARGET_PATH}${options.route}`;
    await load(pool, path, headers, options.warmup, options.connections);
    const perRequest: number[] = [];
    for (let w = 0; w < options.windows; w += 1) {
      execFileSync('callgrind_control', ['--zero', String(child.process.pid)], { stdio: 'ignore' });
      await load(pool, path, headers, options.requests, options.connections);
      const total = await dumpTotal(child.process.pid!, dir, `window-${w}`);
      perRequest.push(Math.round(total / options.requests));
      log(`[instructions] ${name} window ${w + 1}/${options.windows}: ${Math.round(total / options.requests).toLocaleString('en')} instructions/request`);
    }
    return perRequest;
  } finally {
    await pool?.close();
    await child?.stop();
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
}

export async function measureInstructions(options: InstructionsOptions, fixtures: FixturesReady): Promise<InstructionsResult> {
  const resolved = {
    requests: options.requests ?? 3000,
    warmup: options.warmup ?? 15_000,
    windows: options.windows ?? 3,
    connections: options.connections ?? 10,
    route: options.route ?? '/static',
    logLevel: options.logLevel ?? 'info',
  };
  const specs: [string, SubjectSpec][] = [
    ['bare', { mode: 'bare', upstream: fixtures.upstream }],
    ...options.stores.map((store): [string, SubjectSpec] => [
      `token-handler/${store}`,
      { mode: 'token-handler', upstream: fixtures.upstream, issuer: fixtures.issuer, store, postgresUrl: options.postgresUrl, redisUrl: options.redisUrl, logLevel: resolved.logLevel },
    ]),
  ];
  const cases: InstructionsCase[] = [];
  for (const [name, spec] of specs) {
    const windows = await measureCase(name, spec, resolved, options.log);
    cases.push({ case: name, windows, perRequest: Math.min(...windows), median: Math.round(median(windows)), ratioToBare: null, ratioOfMedians: null });
  }
  const bare = cases[0]!;
  for (const c of cases) {
    c.ratioToBare = Math.round((bare.perRequest / c.perRequest) * 1000) / 1000;
    c.ratioOfMedians = Math.round((bare.median / c.median) * 1000) / 1000;
  }
  return { requests: resolved.requests, warmup: resolved.warmup, connections: resolved.connections, cases };
}

export function instructionsTable(r: InstructionsResult): string {
  const lines = [
    `| case (callgrind, ${r.connections} connections, ${r.warmup} requests' warm-up, windows of ${r.requests}) | instructions per request (least window) | median | every window | ratio to bare (least / medians) |`,
    '|---|---:|---:|---|---:|',
  ];
  const pct = (x: number | null) => (x === null ? '–' : `${Math.round(x * 1000) / 10}%`);
  for (const c of r.cases) {
    lines.push(`| ${c.case} | ${c.perRequest.toLocaleString('en')} | ${c.median.toLocaleString('en')} | ${c.windows.map((w) => w.toLocaleString('en')).join(' / ')} | ${pct(c.ratioToBare)} / ${pct(c.ratioOfMedians)} |`);
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const flag = (name: string) => cliFlag(args, name);
  const num = (name: string) => cliNumber(args, name);
  if (!valgrindAvailable()) {
    process.stderr.write('valgrind (with callgrind_control) is not installed: apt-get install valgrind\n');
    process.exit(2);
  }
  const fixtures = await startChild<FixturesReady>('fixtures.ts', []);
  try {
    const result = await measureInstructions(
      {
        stores: (flag('stores') ?? 'sqlite,postgresql,redis').split(',') as StoreKind[],
        requests: num('requests'),
        warmup: num('warmup'),
        windows: num('windows'),
        connections: num('connections'),
        route: flag('route'),
        ...storeUrls(),
        log: (line) => process.stderr.write(`${line}\n`),
      },
      fixtures.ready,
    );
    process.stdout.write(`${instructionsTable(result)}\n`);
  } finally {
    await fixtures.stop();
  }
}
