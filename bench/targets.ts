/**
 * The proxy benchmark's case names, and issue 24.3's targets checked on one run (bench/run.ts): which cases
 * run on all CPUs, and the ratios between cases measured the same way, pinned with pinned, all-cores with
 * all-cores.
 */
import type { LoadResult, ProxyCaseResult } from './run.ts';
import type { StoreKind } from './subject.ts';

export type CaseName =
  | 'direct'
  | 'bare'
  | `token-handler/${StoreKind}`
  | `token-handler/${StoreKind} workers=${string}`
  | `before/${StoreKind}`
  | 'apache+mod_auth_openidc'
  | 'apache+mod_auth_openidc all-cores'
  | 'nginx+forward-auth'
  | 'nginx+forward-auth unix-socket'
  | 'nginx+no-op check';

/** The case of token-handler on `store` with `--workers <workers>` (`1`: the plain name, as before workers existed). */
export const tokenHandlerCase = (store: StoreKind, workers: string): CaseName => (workers === '1' ? `token-handler/${store}` : `token-handler/${store} workers=${workers}`);
export const APACHE_ALL_CORES = 'apache+mod_auth_openidc all-cores' satisfies CaseName;
/** nginx + forward-auth with the check on a Unix socket instead of a port of 127.0.0.1. */
export const NGINX_UNIX = 'nginx+forward-auth unix-socket' satisfies CaseName;
/** nginx asking a check service that does nothing (bench/subject.ts `nginx-noop-check`): forward-auth's floor. */
export const NGINX_NOOP = 'nginx+no-op check' satisfies CaseName;
/** Cases that run on every CPU (unpinned): worker groups and Apache with one child per core. */
export const isAllCores = (name: CaseName): boolean => name === APACHE_ALL_CORES || / workers=/.test(name);

/** `--workers 1,auto`: each value once, `auto` or a positive integer. */
export function workerList(value: string): string[] {
  const items = [...new Set(value.split(',').map((s) => s.trim()).filter(Boolean))];
  for (const item of items) if (item !== 'auto' && !/^[1-9]\d*$/.test(item)) throw new Error(`--workers: ${item} is neither auto nor a positive integer`);
  if (items.length === 0) throw new Error('--workers: give at least one value (1, <n> or auto)');
  return items;
}

const round = (n: number, digits: number): number => Math.round(n * 10 ** digits) / 10 ** digits;
/** The median of the finite values (NaN when there are none), shared by the bench's summaries. */
export const median = (values: number[]): number => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/**
 * One of issue 24.3's targets, checked on one run: a ratio (or, for the added latency, ms) between two cases
 * measured the same way, pinned with pinned (the proxies' CPU) or all-cores with all-cores.
 */
export interface TargetCheck {
  target: string;
  store: StoreKind;
  /** The case measured, and the one it is compared with. */
  subject: CaseName;
  against: CaseName;
  /** `pinned`: both on the proxies' pinned CPU; `all-cores`: both unpinned; `unpinned`: the run had no pinning. */
  placement: 'pinned' | 'all-cores' | 'unpinned';
  /** The median over rounds of the per-round ratio (or difference, for the added p99), null when not measured. */
  value: number | null;
  goal: { op: '>=' | '<='; value: number; unit: 'x' | 'ms' };
  /** null when not measured, or when a case of it failed requests (`failed`): its figures measured something else. */
  met: boolean | null;
  /**
   * The case of the pair that answered requests other than with 2xx, or failed them, during its measured
   * rounds (say, a peer whose session had expired answering 302s to its IdP): the ratio is kept for the record,
   * but it compares a proxy with a redirect, so nothing is met or missed.
   */
  failed?: string;
}

/**
 * The targets from one run, for each store: token-handler's worker group (`auto`, or the first other
 * than 1) against Apache on all cores in req/s and in CPU per request; nginx + forward-auth (on a port, and on
 * a Unix socket when measured) against
 * token-handler's own proxy with one worker; one worker against the bare proxy; the p99 that one worker adds
 * at the fixed rate. Cases that were not measured give `value: null`.
 */
/** The worker group the targets compare with Apache all-cores: `auto`, or else the first other than 1. */
export function workerGroup(workers: readonly string[]): string | undefined {
  return workers.includes('auto') ? 'auto' : workers.find((w) => w !== '1');
}

export function targetChecks(rows: ProxyCaseResult[], stores: StoreKind[], workers: string[], pin: boolean): TargetCheck[] {
  const byName = new Map(rows.map((r) => [r.case, r]));
  const group = workerGroup(workers);
  const checks: TargetCheck[] = [];
  const perRound = (a: ProxyCaseResult | undefined, b: ProxyCaseResult | undefined, pick: (x: LoadResult) => number | undefined): number | null => {
    if (!a || !b || a.rounds.length === 0 || a.rounds.length !== b.rounds.length) return null;
    const value = median(a.rounds.map((x, i) => (pick(x) ?? Number.NaN) / (pick(b.rounds[i]!) ?? Number.NaN)));
    return Number.isFinite(value) ? round(value, 3) : null;
  };
  /**
   * What went wrong with a case's measured requests, if anything ("<case>: <n> non-2xx, <m> errors"), for
   * `failed`: its loaded rounds' counts (summed in the case's result) and its fixed-rate rounds'.
   */
  const failures = (name: CaseName): string | undefined => {
    const r = byName.get(name);
    if (!r) return undefined;
    const fixedRate = r.atRate?.rounds ?? [];
    const non2xx = r.non2xx + fixedRate.reduce((n, x) => n + x.non2xx, 0);
    const errors = r.errors + fixedRate.reduce((n, x) => n + x.errors, 0);
    if (non2xx === 0 && errors === 0) return undefined;
    return `${name}: ${non2xx} non-2xx, ${errors} errors`;
  };
  const add = (store: StoreKind, target: string, subject: CaseName, against: CaseName, allCores: boolean, value: number | null, goal: TargetCheck['goal']): void => {
    const failed = [failures(subject), failures(against)].filter((f) => f !== undefined).join('; ') || undefined;
    const met = value === null || failed !== undefined ? null : goal.op === '>=' ? value >= goal.value : value <= goal.value;
    checks.push({ target, store, subject, against, placement: !pin ? 'unpinned' : allCores ? 'all-cores' : 'pinned', value, goal, met, ...(failed ? { failed } : {}) });
  };
  const apache = APACHE_ALL_CORES;
  for (const store of stores) {
    const one = tokenHandlerCase(store, '1');
    if (group !== undefined) {
      const th = tokenHandlerCase(store, group);
      add(store, `workers=${group} req/s ÷ Apache all-cores req/s`, th, apache, true, perRound(byName.get(th), byName.get(apache), (x) => x.rps), { op: '>=', value: 1.5, unit: 'x' });
      add(store, `workers=${group} CPU/req ÷ Apache all-cores CPU/req`, th, apache, true, perRound(byName.get(th), byName.get(apache), (x) => x.cpuUsPerRequest), { op: '<=', value: 0.8, unit: 'x' });
    }
    for (const nginx of ['nginx+forward-auth', NGINX_UNIX] as const) {
      if (nginx === NGINX_UNIX && !byName.has(NGINX_UNIX)) continue;
      add(store, `${nginx} req/s ÷ 1 worker req/s`, nginx, one, false, perRound(byName.get(nginx), byName.get(one), (x) => x.rps), { op: '>=', value: 1.5, unit: 'x' });
    }
    add(store, '1 worker req/s ÷ bare req/s', one, 'bare', false, perRound(byName.get(one), byName.get('bare'), (x) => x.rps), { op: '>=', value: 0.9, unit: 'x' });
    const addedP99 = byName.get(one)?.atRate?.addedP99Ms ?? null;
    const rate = byName.get(one)?.atRate?.rate ?? 1000;
    add(store, `1 worker added p99 at ${rate} req/s (ms)`, one, 'bare', false, addedP99, { op: '<=', value: 1, unit: 'ms' });
  }
  return checks;
}

export function targetsTable(checks: TargetCheck[]): string {
  const lines = ['| target (issue 24.3) | store | placement | measured | goal | met |', '|---|---|---|---:|---:|---|'];
  for (const c of checks) {
    const value = c.value === null ? 'not measured' : c.goal.unit === 'ms' ? `${c.value} ms` : `${c.value}×`;
    const goal = `${c.goal.op === '>=' ? '≥' : '≤'} ${c.goal.value}${c.goal.unit === 'ms' ? ' ms' : '×'}`;
    const met = c.failed ? `not valid (${c.failed})` : c.met === null ? '–' : c.met ? 'yes' : 'NO';
    lines.push(`| ${c.target} | ${c.store} | ${c.placement} | ${value} | ${goal} | ${met} |`);
  }
  return lines.join('\n');
}
