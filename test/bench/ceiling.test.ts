import { describe, expect, it } from 'vitest';
import { ceilingChecks, ceilingTable, machineCpu, machineShare, readCpuTimes } from '../../bench/ceiling.ts';
import type { ProxyCaseResult } from '../../bench/run.ts';
import type { CaseName } from '../../bench/targets.ts';
import { caseResult, loadResult } from './support.ts';

/** A round: req/s, and CPU µs per request of the proxy, the load generator and the upstream; the machine's busy share. */
type Round = [rps: number, proxy: number, loadGen: number, upstream: number, busy?: number];

function row(name: CaseName, rounds: Round[]): ProxyCaseResult {
  return caseResult(
    name,
    rounds.map(([rps, proxy, loadGen, upstream, busy]) =>
      loadResult(rps, { cpuUsPerRequest: proxy, loadCpuUsPerRequest: loadGen, upstreamCpuUsPerRequest: upstream, ...(busy === undefined ? {} : { machineBusy: busy, machineSteal: 0.01 }) }),
    ),
  );
}

describe('what the CPU figures allow (bench/ceiling.ts)', () => {
  it("reads the machine's busy and stolen shares from two /proc/stat readings", () => {
    // user nice system idle iowait irq softirq steal guest guest_nice
    const before = readCpuTimes('cpu  100 0 50 800 20 0 10 20 7 0\ncpu0 1 2 3\n');
    const after = readCpuTimes('cpu  400 0 150 1000 30 0 50 70 9 0\n');
    expect(before).toEqual({ total: 1000, idle: 820, steal: 20 });
    // 700 ticks in all: 210 idle (200 idle + 10 iowait), 50 stolen, 440 busy.
    expect(machineShare(before, after)).toEqual({ busy: 0.629, steal: 0.071 });
    expect(readCpuTimes('intr 1 2 3\n')).toBeUndefined();
    expect(readCpuTimes('cpu  1 2 x 4\n')).toBeUndefined();
    expect(machineShare(undefined, after)).toBeUndefined();
    expect(machineShare(after, after)).toBeUndefined();
    // This machine's own file, where there is one.
    const own = readCpuTimes();
    if (own) expect(own.total).toBeGreaterThan(own.idle);
  });

  it('predicts the all-cores req/s ratio from what every process spent per request, with the proxy CPU the goal needs', () => {
    const rows = [
      // Apache: 200 µs in the proxy, 100 µs outside it (load generator 40, upstream 60) → 300 per request.
      row('apache+mod_auth_openidc all-cores', [
        [1000, 200, 40, 60, 0.96],
        [900, 200, 40, 60, 0.95],
        [1100, 200, 40, 60, 0.97],
      ]),
      // token-handler at 0.6× Apache's proxy CPU: 120 + 100 = 220 per request → 300 / 220 = 1.364×, not 1.5×.
      row('token-handler/redis workers=auto', [
        [1350, 120, 40, 60, 0.95],
        [1250, 120, 40, 60, 0.96],
        [1500, 120, 40, 60, 0.94],
      ]),
    ];
    const [check] = ceilingChecks(rows, ['redis'], 'auto');
    expect(check).toMatchObject({ subject: 'token-handler/redis workers=auto', against: 'apache+mod_auth_openidc all-cores', measured: 1.364, predicted: 1.364, goal: 1.5, proxyCpu: 120, busy: 0.95, steal: 0.01, floor: null });
    // 1.5× needs 300 / 1.5 = 200 µs in all: 100 in the proxy, half of Apache's; it spent 20 more.
    expect(check!.overGoal).toBe(20);
    expect(machineCpu(rows[0]!.rounds[0]!)).toBe(300);
    // Paired round by round, not median against median: here the machine is slower in round 2 for both cases.
    // Per round 220 − 300/1.5 = +20, 300 − 450/1.5 = 0, 230 − 200 = +30 → +20 (median against median: +30);
    // predicted 300/220, 450/300, 300/230 → 1.364× (median against median: 1.304×).
    const slowRound = [
      row('apache+mod_auth_openidc all-cores', [[1000, 200, 40, 60], [700, 350, 40, 60], [1000, 200, 40, 60]]),
      row('token-handler/redis workers=auto', [[1360, 120, 40, 60], [1050, 200, 40, 60], [1300, 130, 40, 60]]),
    ];
    expect(ceilingChecks(slowRound, ['redis'], 'auto')[0]).toMatchObject({ predicted: 1.364, overGoal: 20, measured: 1.36, proxyCpu: 130 });
    // At 90 µs the goal is within reach: 300 / 190 = 1.579×, 10 µs under the allowance.
    const cheaper = [rows[0]!, row('token-handler/redis workers=auto', [[1600, 90, 40, 60], [1500, 90, 40, 60], [1700, 90, 40, 60]])];
    expect(ceilingChecks(cheaper, ['redis'], 'auto')[0]).toMatchObject({ predicted: 1.579, overGoal: -10 });
    expect(ceilingTable([check!])).toContain('| token-handler/redis workers=auto ÷ apache+mod_auth_openidc all-cores | redis | 1.364× | 1.364× | ≥ 1.5× | 120 / +20 | – | 95 % / 1 % |');
  });

  it("gives forward-auth's floor: token-handler's CPU per request over the no-op check's", () => {
    const rows = [
      row('token-handler/sqlite', [
        [7000, 130, 40, 50],
        [7200, 126, 40, 50],
      ]),
      row('nginx+forward-auth', [
        [7100, 130, 40, 50],
        [7300, 120, 40, 50],
      ]),
      row('nginx+no-op check', [
        [9000, 100, 40, 50],
        [9400, 90, 40, 50],
      ]),
    ];
    const checks = ceilingChecks(rows, ['sqlite'], undefined);
    // No worker group measured: only the pinned comparison.
    expect(checks).toHaveLength(1);
    // Per round 130/130 = 1 and 126/120 = 1.05 → 1.025; a free check: 1.3 and 1.4 → 1.35.
    expect(checks[0]).toMatchObject({ subject: 'nginx+forward-auth', against: 'token-handler/sqlite', predicted: 1.025, floor: 1.35, overGoal: null, busy: null });
    expect(checks[0]!.measured).toBeCloseTo(1.0141, 3);
    expect(ceilingTable(checks)).toContain('| nginx+forward-auth ÷ token-handler/sqlite | sqlite | 1.014× | 1.025× | ≥ 1.5× | 125 / – | 1.35× | – |');
  });

  it('predicts nothing from rounds without the load generator and upstream figures, or unpaired', () => {
    const apache = row('apache+mod_auth_openidc all-cores', [[1000, 200, 40, 60]]);
    const bare = { ...row('token-handler/sqlite workers=auto', [[1200, 120, 40, 60]]) };
    delete bare.rounds[0]!.upstreamCpuUsPerRequest;
    expect(ceilingChecks([apache, bare], ['sqlite'], 'auto')[0]).toMatchObject({ measured: 1.2, predicted: null, overGoal: null, busy: null });
    const twoRounds = row('token-handler/sqlite workers=auto', [
      [1200, 120, 40, 60],
      [1300, 120, 40, 60],
    ]);
    expect(ceilingChecks([apache, twoRounds], ['sqlite'], 'auto')[0]).toMatchObject({ measured: null, predicted: null });
  });
});
