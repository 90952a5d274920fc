import { STATUS_CODES } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { HotCounter, HotHistogram } from './ops/hotMetrics.ts';

/**
 * Label values come from fixed sets: a value a client or an upstream can choose would create a series
 * per value (every `callback?error=<anything>` a new `logins_total` series) until the scrape, and the
 * memory holding it, gave out. Whatever is not in the set is counted as `other`.
 */
export const OTHER = 'other';

/**
 * Login outcomes: success, our own refusals, and the error codes of OAuth 2.0 (RFC 6749 §4.1.2.1, §5.2)
 * and OpenID Connect Core (§3.1.2.6) an IdP may answer with.
 */
const LOGIN_OUTCOMES: ReadonlySet<string> = new Set([
  'success',
  'invalid_state',
  'invalid_grant',
  'invalid_response',
  'idp_unavailable',
  'idp_error',
  'access_denied',
  'invalid_request',
  'unauthorized_client',
  'unsupported_response_type',
  'invalid_scope',
  'server_error',
  'temporarily_unavailable',
  'invalid_client',
  'unsupported_grant_type',
  'interaction_required',
  'login_required',
  'account_selection_required',
  'consent_required',
  'invalid_request_uri',
  'invalid_request_object',
  'request_not_supported',
  'request_uri_not_supported',
  'registration_not_supported',
]);

export function loginOutcomeLabel(outcome: string): string {
  return LOGIN_OUTCOMES.has(outcome) ? outcome : OTHER;
}

/**
 * HTTP statuses by their registered codes (an upstream may answer 299 or 599), and nginx's 499 (the client
 * closed the request: an upstream request cancelled because its browser left); `other` for the rest.
 */
const STATUS_LABELS: ReadonlyMap<number, string> = new Map([...Object.keys(STATUS_CODES), '499'].map((code) => [Number(code), code]));

export function statusLabel(status: number): string {
  return STATUS_LABELS.get(status) ?? OTHER;
}

/** One worker of a --workers group (src/cluster/): its slot, for the per-worker series. */
export interface MetricsWorker {
  index: number;
}

/**
 * Prometheus metrics of one app instance (its own registry, so tests can build several apps). In a
 * --workers group, each worker keeps its own and /metrics answers with the group's aggregate (summed
 * counters and histograms; see `exposeWith`), plus per-worker series labelled `worker`.
 */
export class Metrics {
  readonly registry = new Registry();
  // Touched by every request: src/ops/hotMetrics.ts.
  readonly httpRequests: HotCounter<'route' | 'method' | 'status'>;
  readonly httpDuration: HotHistogram<'route' | 'method'>;
  readonly proxyRequests: HotCounter<'target' | 'status'>;
  readonly proxyDuration: HotHistogram<'target'>;
  readonly logins: Counter<'client' | 'outcome'>;
  readonly logouts: Counter<'client' | 'kind'>;
  readonly refreshes: Counter<'client' | 'outcome'>;
  readonly csrfRejections: Counter<'reason'>;
  readonly upstreamRetries: Counter<'upstream'>;
  readonly storeDuration: Histogram<'operation'>;
  readonly storeErrors: Counter<'operation'>;
  /** 1 when the last /readyz check of a dependency passed, 0 when it failed (`check`: store, issuer:<client>). */
  readonly readiness: Gauge<'check'>;
  readonly activeSessions: Gauge | undefined;
  /** Requests handled by this worker (only in a --workers group): how the group shares the load. */
  readonly #workerRequests: { inc(): void } | undefined;
  #exposition: () => Promise<{ body: string; contentType: string }> = async () => ({ body: await this.registry.metrics(), contentType: this.registry.contentType });

  /** Label children of httpRequests/httpDuration by route, method and status (prom-client hashes labels per call otherwise). */
  readonly #httpChildren = new Map<string, { count: { inc(): void }; duration: { observe(value: number): void } }>();

  /**
   * Counts a handled request and observes its duration. Routes are route patterns (or 'unmatched'), methods
   * the few Node parses and statuses the registered ones (else `other`), so the children stay few; still capped.
   */
  observeHttp(route: string, method: string, status: number, seconds: number): void {
    const key = `${status} ${method} ${route}`;
    let children = this.#httpChildren.get(key);
    if (!children) {
      children = { count: this.httpRequests.labels(route, method, statusLabel(status)), duration: this.httpDuration.labels(route, method) };
      if (this.#httpChildren.size < 10_000) this.#httpChildren.set(key, children);
    }
    children.count.inc();
    children.duration.observe(seconds);
    this.#workerRequests?.inc();
  }

  /** What GET /metrics answers: this registry, or (in a --workers group) the group's aggregate. */
  exposition(): Promise<{ body: string; contentType: string }> {
    return this.#exposition();
  }

  exposeWith(exposition: () => Promise<{ body: string; contentType: string }>): void {
    this.#exposition = exposition;
  }

  /**
   * `activeSessions` counts the store's live sessions at each scrape; undefined leaves the gauge out (the
   * workers of a group but one: the store's count is the group's, not a sum).
   */
  constructor(activeSessions: (() => Promise<number>) | undefined, worker?: MetricsWorker) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'token_handler_' });
    this.httpRequests = new HotCounter('token_handler_http_requests_total', 'HTTP requests handled, by route, method and status.', ['route', 'method', 'status'], registers);
    this.httpDuration = new HotHistogram('token_handler_http_request_duration_seconds', 'HTTP request latency by route.', ['route', 'method'], [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers);
    this.proxyRequests = new HotCounter('token_handler_upstream_responses_total', 'Responses from upstream targets, by target and status (502/504 for failures, 499 for requests cancelled because the browser left first).', ['target', 'status'], registers);
    this.proxyDuration = new HotHistogram('token_handler_upstream_duration_seconds', 'Upstream latency by target.', ['target'], [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers);
    this.logins = new Counter({ name: 'token_handler_logins_total', help: 'Login callbacks by client and outcome.', labelNames: ['client', 'outcome'], registers });
    this.logouts = new Counter({ name: 'token_handler_logouts_total', help: 'Logouts by client and kind (rp, backchannel, revoke).', labelNames: ['client', 'kind'], registers });
    this.refreshes = new Counter({ name: 'token_handler_refreshes_total', help: 'Token refreshes by client and outcome.', labelNames: ['client', 'outcome'], registers });
    this.upstreamRetries = new Counter({ name: 'token_handler_upstream_retries_total', help: 'Requests sent to an upstream again after its kept-alive connection closed without answering, by upstream origin.', labelNames: ['upstream'], registers });
    this.csrfRejections = new Counter({ name: 'token_handler_csrf_rejections_total', help: 'Requests refused by the CSRF defence.', labelNames: ['reason'], registers });
    this.storeDuration = new Histogram({ name: 'token_handler_store_duration_seconds', help: 'Session store operation latency.', labelNames: ['operation'], buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1], registers });
    this.storeErrors = new Counter({ name: 'token_handler_store_errors_total', help: 'Session store operations that failed, by operation.', labelNames: ['operation'], registers });
    // Aggregated over a --workers group as the worst worker's.
    this.readiness = new Gauge({ name: 'token_handler_readiness_check', help: 'Result of the last /readyz check per dependency (1 ok, 0 failed).', labelNames: ['check'], registers, aggregator: 'min' });
    if (worker !== undefined) {
      new Gauge({ name: 'token_handler_worker_info', help: 'One series per live worker process of a --workers group: its slot and pid.', labelNames: ['worker', 'pid'], registers }).set({ worker: String(worker.index), pid: String(process.pid) }, 1);
      this.#workerRequests = new HotCounter('token_handler_worker_requests_total', 'HTTP requests handled, by worker of a --workers group.', ['worker'], registers).labels(String(worker.index));
    }
    this.activeSessions = activeSessions === undefined ? undefined : new Gauge({
      name: 'token_handler_active_sessions',
      help: 'Sessions in the store that have not expired.',
      registers,
      aggregator: 'max',
      async collect() {
        try {
          this.set(await activeSessions());
        } catch {
          // The store is down: /readyz reports it; keep the last value.
        }
      },
    });
  }
}
