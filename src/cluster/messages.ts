/**
 * The IPC messages between the primary process and its workers (--workers > 1). Every message carries
 * `th` (its kind), so that nothing else on the channel (prom-client, Node's own cluster traffic) is taken
 * for one of ours.
 */
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { RateDecision } from '../security/rateLimit.ts';

/** The environment variable that tells a forked process which worker slot (0 … n-1) it fills. */
export const WORKER_INDEX_ENV = 'TOKEN_HANDLER_WORKER_INDEX';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** Worker → primary. */
export type FromWorker =
  /** The worker listens: it takes connections from now on. */
  | { th: 'ready' }
  /** Sessions (or client registrations) changed here: evict them on every other worker, then answer `relayed`. */
  | { th: 'invalidate'; id: number; hashes: string[] }
  /** An answer to `invalidate` from the primary: this worker evicted them. */
  | { th: 'evicted'; id: number }
  /** GET /metrics arrived here: the primary collects from every worker and answers `metrics`. */
  | { th: 'metrics'; id: number }
  /** This worker's metrics, for the primary's `collect`. */
  | { th: 'collected'; id: number; metrics: MetricsJson }
  /** Count one login request of `key` against the group's limit (src/security/rateLimit.ts). */
  | { th: 'rate'; id: number; key: string; limit: number; windowMs: number };

/** Primary → worker. */
export type FromPrimary =
  /** Another worker's invalidation: evict, then answer `evicted`. */
  | { th: 'invalidate'; id: number; hashes: string[] }
  /** Every other worker evicted what this one asked for (or left). */
  | { th: 'relayed'; id: number }
  /** Send this worker's metrics (`collected`). */
  | { th: 'collect'; id: number }
  /** The whole group's metrics, in the Prometheus text format. */
  | { th: 'metrics'; id: number; body: string; contentType: string }
  | { th: 'metrics'; id: number; error: string }
  | { th: 'rate'; id: number; decision: RateDecision };

function isMessage(message: unknown): message is { th: string; id?: unknown } {
  return typeof message === 'object' && message !== null && typeof (message as { th?: unknown }).th === 'string';
}

export function fromWorker(message: unknown): FromWorker | undefined {
  return isMessage(message) ? (message as FromWorker) : undefined;
}

export function fromPrimary(message: unknown): FromPrimary | undefined {
  return isMessage(message) ? (message as FromPrimary) : undefined;
}
