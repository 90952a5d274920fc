/**
 * Sums up node:v8's GCProfiler output for the benchmarks: young-generation collections (count, mean and
 * longest pause), the bytes they promoted to the old generation (old space's growth across each), and the
 * mark-compacts. Used by bench/subject.ts (per proxy, during the fixed-rate load) and bench/gc-client.ts.
 */
import type { GCProfilerResult } from 'node:v8';

export interface GcSummary {
  scavenges: number;
  scavengeMeanMs: number;
  scavengeMaxMs: number;
  markCompacts: number;
  /** Pause time of the mark-compacts (their atomic pauses; incremental steps are not in it), ms. */
  markCompactMs: number;
  /** Bytes the scavenges moved to the old generation (growth of old space across each), MB. */
  promotedMb: number;
}

const ms = (us: number): number => Math.round(us / 10) / 100;

export function summariseGcProfile(result: GCProfilerResult | undefined): GcSummary {
  const stats = result?.statistics ?? [];
  const oldSpaceUsed = (space: { heapSpaceStatistics: { spaceName: string; spaceUsedSize: number }[] }) =>
    space.heapSpaceStatistics.find((s) => s.spaceName === 'old_space')?.spaceUsedSize ?? 0;
  const scavenges = stats.filter((s) => s.gcType === 'Scavenge' || s.gcType === 'MinorMarkSweep');
  const majors = stats.filter((s) => s.gcType === 'MarkSweepCompact');
  const promoted = scavenges.reduce((n, s) => n + Math.max(0, oldSpaceUsed(s.afterGC) - oldSpaceUsed(s.beforeGC)), 0);
  return {
    scavenges: scavenges.length,
    scavengeMeanMs: scavenges.length > 0 ? ms(scavenges.reduce((n, s) => n + s.cost, 0) / scavenges.length) : 0,
    scavengeMaxMs: ms(Math.max(0, ...scavenges.map((s) => s.cost))),
    markCompacts: majors.length,
    markCompactMs: ms(majors.reduce((n, s) => n + s.cost, 0)),
    promotedMb: Math.round((promoted / 2 ** 20) * 100) / 100,
  };
}
