/** Proxy-benchmark results as bench/run.ts records them, built by hand for the targets' and ceilings' tests. */
import type { LoadResult, ProxyCaseResult } from '../../bench/run.ts';
import { isAllCores, type CaseName } from '../../bench/targets.ts';

/** One measured round: `rps` requests, all 2xx, p50/p99/p99.9 of 1/2/3 ms, with `extra` (CPU figures, ...). */
export function loadResult(rps: number, extra: Partial<LoadResult> = {}): LoadResult {
  return { rps, requests: rps, non2xx: 0, errors: 0, p50Ms: 1, p99Ms: 2, p999Ms: 3, ...extra };
}

/** A case as the proxy benchmark summarises it, from its rounds; the summary figures no check reads are left empty. */
export function caseResult(name: CaseName, rounds: LoadResult[], atRate: ProxyCaseResult['atRate'] = null): ProxyCaseResult {
  return {
    ...loadResult(0),
    case: name,
    allCores: isAllCores(name),
    ratioToBare: null,
    ratioOfMedians: null,
    cpuRatioToBare: null,
    bestRatioToBare: null,
    bestCpuRatioToBare: null,
    addedP99Ms: null,
    rssMb: null,
    rounds,
    atRate,
  };
}
