import { describe, expect, it } from 'vitest';
import type { LoadResult, ProxyCaseResult } from '../../bench/run.ts';
import { isAllCores, targetChecks, targetsTable, tokenHandlerCase, workerList, type CaseName } from '../../bench/targets.ts';
import { caseResult, loadResult } from './support.ts';

const load = (rps: number, cpuUsPerRequest?: number): LoadResult => loadResult(rps, cpuUsPerRequest === undefined ? {} : { cpuUsPerRequest });

/** A case as the proxy benchmark summarises it, from its rounds (req/s and CPU µs per request, round by round). */
function row(name: CaseName, rounds: [number, number?][], addedP99AtRate: number | null = null): ProxyCaseResult {
  return caseResult(
    name,
    rounds.map(([rps, cpu]) => load(rps, cpu)),
    addedP99AtRate === null
      ? null
      : { rate: 1000, p50Ms: 1, p99Ms: 2, p999Ms: 3, addedP50Ms: 0, addedP99Ms: addedP99AtRate, scavengeMeanMs: null, scavengeMaxMs: null, promotedMbPer10k: null, loopDelayP99Ms: null, rounds: [] },
  );
}

describe('bench targets (issue 24.3)', () => {
  const rows = [
    row('bare', [[1000], [1000], [1000]]),
    row('apache+mod_auth_openidc', [[900, 100], [900, 100], [900, 100]]),
    row('apache+mod_auth_openidc all-cores', [[100, 200], [200, 200], [100, 200]]),
    row('nginx+forward-auth', [[1500, 100], [2000, 100], [1200, 100]]),
    row('token-handler/sqlite', [[950, 150], [1000, 150], [800, 150]], 0.4),
    row('token-handler/sqlite workers=auto', [[300, 100], [400, 200], [500, 120]]),
  ];

  it('pairs all-cores with all-cores and pinned with pinned, as the median of per-round ratios', () => {
    const checks = targetChecks(rows, ['sqlite'], ['1', 'auto'], true);
    const by = (start: string) => checks.find((c) => c.target.startsWith(start))!;
    // Round by round 3×, 2×, 5×: the median is 3× (the ratio of the medians would say 4×).
    expect(by('workers=auto req/s')).toMatchObject({ subject: 'token-handler/sqlite workers=auto', against: 'apache+mod_auth_openidc all-cores', placement: 'all-cores', value: 3, met: true });
    expect(by('workers=auto CPU/req')).toMatchObject({ placement: 'all-cores', value: 0.6, met: true });
    expect(by('nginx+forward-auth req/s')).toMatchObject({ subject: 'nginx+forward-auth', against: 'token-handler/sqlite', placement: 'pinned', value: 1.579, met: true });
    expect(by('1 worker req/s')).toMatchObject({ against: 'bare', placement: 'pinned', value: 0.95, met: true });
    expect(by('1 worker added p99')).toMatchObject({ value: 0.4, goal: { op: '<=', value: 1, unit: 'ms' }, met: true });
    expect(checks).toHaveLength(5);
  });

  it('says when a target is missed, and leaves out what was not measured', () => {
    const slowGroup = rows.map((r) => {
      if (r.case === 'token-handler/sqlite workers=auto') return row(r.case, [[75, 400], [150, 400], [75, 400]]);
      // Exactly on the goals: met.
      if (r.case === 'token-handler/sqlite') return row(r.case, [[900, 150], [900, 150], [900, 150]], 1);
      return r;
    });
    const checks = targetChecks(slowGroup, ['sqlite', 'redis'], ['1', 'auto'], false);
    const sqlite = checks.filter((c) => c.store === 'sqlite');
    expect(sqlite.find((c) => c.target.startsWith('workers=auto req/s'))).toMatchObject({ value: 0.75, met: false, placement: 'unpinned' });
    expect(sqlite.find((c) => c.target.startsWith('workers=auto CPU/req'))).toMatchObject({ value: 2, met: false });
    expect(sqlite.find((c) => c.target.startsWith('1 worker req/s'))).toMatchObject({ value: 0.9, met: true });
    expect(sqlite.find((c) => c.target.startsWith('1 worker added p99'))).toMatchObject({ value: 1, met: true });
    for (const c of checks.filter((c) => c.store === 'redis')) expect(c).toMatchObject({ value: null, met: null });
    const table = targetsTable(checks);
    expect(table).toContain('| workers=auto req/s ÷ Apache all-cores req/s | sqlite | unpinned | 0.75× | ≥ 1.5× | NO |');
    expect(table).toContain('| 1 worker req/s ÷ bare req/s | redis | unpinned | not measured | ≥ 0.9× | – |');
  });

  it('meets or misses nothing with a case whose answers were not all 2xx: a peer answering redirects is not measured', () => {
    // Apache on all cores whose session ran out in its third round: 302s to the IdP, answered fast.
    const expired = rows.map((r) => {
      if (r.case !== 'apache+mod_auth_openidc all-cores') return r;
      const failed = row(r.case, [[100, 200], [200, 200], [5000, 20]]);
      failed.rounds[2] = { ...failed.rounds[2]!, non2xx: 25_000 };
      // The case's result carries its rounds' sums, as bench/run.ts summarises them.
      failed.non2xx = 25_000;
      return failed;
    });
    const checks = targetChecks(expired, ['sqlite'], ['1', 'auto'], true);
    const group = checks.filter((c) => c.against === 'apache+mod_auth_openidc all-cores');
    expect(group).toHaveLength(2);
    for (const c of group) expect(c).toMatchObject({ met: null, failed: 'apache+mod_auth_openidc all-cores: 25000 non-2xx, 0 errors' });
    // The pairs without Apache are judged as before.
    expect(checks.find((c) => c.target.startsWith('1 worker req/s'))).toMatchObject({ value: 0.95, met: true });
    expect(checks.find((c) => c.target.startsWith('1 worker req/s'))!.failed).toBeUndefined();
    expect(targetsTable(checks)).toContain('| not valid (apache+mod_auth_openidc all-cores: 25000 non-2xx, 0 errors) |');
    // Failed requests in the fixed-rate phase count too, on either side of a pair.
    const refused = rows.map((r) => {
      if (r.case !== 'token-handler/sqlite') return r;
      const one = row(r.case, [[950, 150], [1000, 150], [800, 150]], 0.4);
      one.atRate!.rounds = [{ ...load(1000), errors: 3 }];
      return one;
    });
    const pinned = targetChecks(refused, ['sqlite'], ['1', 'auto'], true).filter((c) => c.subject === 'token-handler/sqlite' || c.against === 'token-handler/sqlite');
    expect(pinned).toHaveLength(3);
    for (const c of pinned) expect(c).toMatchObject({ met: null, failed: 'token-handler/sqlite: 0 non-2xx, 3 errors' });
  });

  it('takes the worker group of `auto`, or else the first other than 1', () => {
    const three = rows.map((r) => (r.case === 'token-handler/sqlite workers=auto' ? { ...r, case: tokenHandlerCase('sqlite', '3') } : r));
    expect(targetChecks(three, ['sqlite'], ['1', '3'], true)[0]).toMatchObject({ subject: 'token-handler/sqlite workers=3', value: 3 });
    expect(targetChecks(rows, ['sqlite'], ['1'], true).map((c) => c.target)).not.toContain('workers=auto req/s ÷ Apache all-cores req/s');
  });

  it('reads --workers as a list of 1, <n> and auto', () => {
    expect(workerList('1,auto')).toEqual(['1', 'auto']);
    expect(workerList(' auto , 2, auto ')).toEqual(['auto', '2']);
    expect(() => workerList('0')).toThrow(/--workers: 0/);
    expect(() => workerList('1,all')).toThrow(/--workers: all/);
    expect(() => workerList(',')).toThrow(/at least one/);
    expect(isAllCores(tokenHandlerCase('redis', 'auto'))).toBe(true);
    expect(isAllCores(tokenHandlerCase('redis', '1'))).toBe(false);
    expect(isAllCores('apache+mod_auth_openidc')).toBe(false);
  });
});
