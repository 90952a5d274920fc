/**
 * What the CPU figures allow: the req/s ratio two cases can reach on this machine, computed from what every
 * process of a round spent per request, beside the ratio measured.
 *
 * On a machine whose cores the load generator (autocannon, in the bench process) and the upstream (the
 * fixtures child) share with the proxy, as the all-cores cases do, a round is over when the machine is busy:
 * req/s is about (cores × busy share) / (proxy + load generator + upstream CPU per request). The load
 * generator and the upstream cost the same per request whichever proxy is in front, so they dilute any
 * difference between proxies: a proxy at 0.66× another's CPU per request does not serve 1.5× its req/s when
 * as much again is spent per request outside either. `predicted` is that ratio from the round's own
 * figures; `overGoal` is by how much the proxy's CPU per request exceeded what the goal allowed in that round
 * (the figure at which the prediction reaches the goal with the round's load generator and upstream costs).
 *
 * On the pinned core (nginx + forward-auth against token-handler's own proxy) only the subject's own CPU
 * counts, and the no-op check's case is the floor of forward-auth: nginx, its round trip to a check, and a
 * check that does nothing. `floor` is token-handler's CPU per request over that case's: the req/s ratio a
 * check costing nothing at all would reach.
 */
import { readFileSync } from 'node:fs';
import type { LoadResult, ProxyCaseResult } from './run.ts';
import type { StoreKind } from './subject.ts';
import { APACHE_ALL_CORES, median, NGINX_NOOP, NGINX_UNIX, tokenHandlerCase, type CaseName } from './targets.ts';

/** The machine's CPU time so far (/proc/stat's first line, in clock ticks), or undefined off Linux. */
export interface CpuTimes {
  total: number;
  idle: number;
  steal: number;
}

export function readCpuTimes(text?: string): CpuTimes | undefined {
  let stat = text;
  if (stat === undefined) {
    try {
      stat = readFileSync('/proc/stat', 'utf8');
    } catch {
      return undefined;
    }
  }
  const line = stat.split('\n', 1)[0] ?? '';
  if (!line.startsWith('cpu ')) return undefined;
  // user nice system idle iowait irq softirq steal guest guest_nice: guest time is counted in user already.
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  const times = { total: user + nice + system + idle + iowait + irq + softirq + steal, idle: idle + iowait, steal };
  return Number.isFinite(times.total) ? times : undefined;
}

/** Shares of the machine's CPU time between two readings: busy (neither idle nor stolen) and stolen by the hypervisor. */
export function machineShare(before: CpuTimes | undefined, after: CpuTimes | undefined): { busy: number; steal: number } | undefined {
  if (!before || !after) return undefined;
  const total = after.total - before.total;
  if (!(total > 0)) return undefined;
  const steal = after.steal - before.steal;
  return { busy: round((total - (after.idle - before.idle) - steal) / total, 3), steal: round(steal / total, 3) };
}

/** One comparison between two cases: req/s measured, and what the CPU figures allow. */
export interface CeilingCheck {
  store: StoreKind;
  subject: CaseName;
  against: CaseName;
  /** Median of per-round req/s ratios, as the targets take it. */
  measured: number | null;
  /**
   * All-cores: median over rounds of (against's proxy + load generator + upstream CPU per request) /
   * (subject's); pinned: median of against's proxy CPU per request / subject's.
   */
  predicted: number | null;
  goal: number;
  /** The subject's CPU per request (µs, median over rounds). */
  proxyCpu: number | null;
  /**
   * All-cores only: median over rounds of the subject's proxy CPU per request minus the most at which
   * `predicted` would reach `goal` (µs; positive: over what the goal allows).
   */
  overGoal: number | null;
  /** Pinned forward-auth only: token-handler 1 worker's CPU per request / the no-op check case's (what a free check would reach). */
  floor: number | null;
  /** All-cores only: median share of the machine busy, and stolen by the hypervisor, in the subject's rounds. */
  busy: number | null;
  steal: number | null;
}

const round = (n: number, digits = 3): number => Math.round(n * 10 ** digits) / 10 ** digits;
const finite = (n: number, digits = 3): number | null => (Number.isFinite(n) ? round(n, digits) : null);

/** CPU per request of everything a round ran (proxy + load generator + upstream), NaN when a part is missing. */
export const machineCpu = (x: LoadResult): number => (x.cpuUsPerRequest ?? Number.NaN) + (x.loadCpuUsPerRequest ?? Number.NaN) + (x.upstreamCpuUsPerRequest ?? Number.NaN);

function paired(a: ProxyCaseResult | undefined, b: ProxyCaseResult | undefined, pick: (x: LoadResult, y: LoadResult) => number): number {
  if (!a || !b || a.rounds.length === 0 || a.rounds.length !== b.rounds.length) return Number.NaN;
  return median(a.rounds.map((x, i) => pick(x, b.rounds[i]!)));
}

/**
 * For each store: the worker group (`group`) against Apache on all cores with `goal` (1.5×), and nginx +
 * forward-auth (port and Unix socket) against token-handler's own proxy with one worker, with the floor.
 */
export function ceilingChecks(rows: ProxyCaseResult[], stores: StoreKind[], group: string | undefined, goal = 1.5): CeilingCheck[] {
  const byName = new Map(rows.map((r) => [r.case, r]));
  const checks: CeilingCheck[] = [];
  const noop = byName.get(NGINX_NOOP);
  for (const store of stores) {
    if (group !== undefined) {
      const subject = tokenHandlerCase(store, group);
      const th = byName.get(subject);
      const apache = byName.get(APACHE_ALL_CORES);
      if (th && apache) {
        checks.push({
          store,
          subject,
          against: APACHE_ALL_CORES,
          measured: finite(paired(th, apache, (x, y) => x.rps / y.rps)),
          predicted: finite(paired(th, apache, (x, y) => machineCpu(y) / machineCpu(x))),
          goal,
          proxyCpu: finite(median(th.rounds.map((x) => x.cpuUsPerRequest ?? Number.NaN)), 1),
          overGoal: finite(paired(th, apache, (x, y) => machineCpu(x) - machineCpu(y) / goal), 1),
          floor: null,
          busy: finite(median(th.rounds.map((x) => x.machineBusy ?? Number.NaN))),
          steal: finite(median(th.rounds.map((x) => x.machineSteal ?? Number.NaN))),
        });
      }
    }
    const one = byName.get(tokenHandlerCase(store, '1'));
    for (const name of ['nginx+forward-auth', NGINX_UNIX] as const) {
      const nginx = byName.get(name);
      if (!nginx || !one) continue;
      const cpu = (x: LoadResult): number => x.cpuUsPerRequest ?? Number.NaN;
      checks.push({
        store,
        subject: name,
        against: tokenHandlerCase(store, '1'),
        measured: finite(paired(nginx, one, (x, y) => x.rps / y.rps)),
        predicted: finite(paired(nginx, one, (x, y) => cpu(y) / cpu(x))),
        goal,
        proxyCpu: finite(median(nginx.rounds.map(cpu)), 1),
        overGoal: null,
        floor: noop ? finite(paired(noop, one, (x, y) => cpu(y) / cpu(x))) : null,
        busy: null,
        steal: null,
      });
    }
  }
  return checks;
}

export function ceilingTable(checks: CeilingCheck[]): string {
  const x = (n: number | null): string => (n === null ? '–' : `${n}×`);
  const pct = (n: number | null): string => (n === null ? '–' : `${Math.round(n * 1000) / 10} %`);
  const lines = [
    '| what the CPU figures allow | store | req/s ratio measured | ratio the CPU per request predicts | goal | proxy CPU µs/req / over the goal\'s allowance | a free check would reach | machine busy / stolen |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const c of checks) {
    const over = c.overGoal === null ? '–' : `${c.overGoal > 0 ? '+' : ''}${c.overGoal}`;
    const cpu = `${c.proxyCpu ?? '–'} / ${over}`;
    lines.push(`| ${c.subject} ÷ ${c.against} | ${c.store} | ${x(c.measured)} | ${x(c.predicted)} | ≥ ${c.goal}× | ${cpu} | ${x(c.floor)} | ${c.busy === null ? '–' : `${pct(c.busy)} / ${pct(c.steal)}`} |`);
  }
  return lines.join('\n');
}
