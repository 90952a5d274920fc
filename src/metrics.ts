import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { HotCounter, HotHistogram } from './ops/hotMetrics.ts';

/** Prometheus metrics of one app instance (its own registry, so tests can build several apps). */
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
  readonly storeDuration: Histogram<'operation'>;
  readonly storeErrors: Counter<'operation'>;
  /** 1 when the last /readyz check of a dependency passed, 0 when it failed (`check`: store, issuer:<client>). */
  readonly readiness: Gauge<'check'>;
  readonly activeSessions: Gauge;

  /** Label children of httpRequests/httpDuration by route, method and status (prom-client hashes labels per call otherwise). */
  readonly #httpChildren = new Map<string, { count: { inc(): void }; duration: { observe(value: number): void } }>();

  /**
   * Counts a handled request and observes its duration. Routes are route patterns (or 'unmatched'), methods
   * the few Node parses and statuses three digits, so the children stay few; still capped.
   */
  observeHttp(route: string, method: string, status: number, seconds: number): void {
    const key = `${status} ${method} ${route}`;
    let children = this.#httpChildren.get(key);
    if (!children) {
      children = { count: this.httpRequests.labels(route, method, String(status)), duration: this.httpDuration.labels(route, method) };
      if (this.#httpChildren.size < 10_000) this.#httpChildren.set(key, children);
    }
    children.count.inc();
    children.duration.observe(seconds);
  }

  constructor(activeSessions: () => Promise<number>) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'token_handler_' });
    this.httpRequests = new HotCounter('token_handler_http_requests_total', 'HTTP requests handled, by route, method and status.', ['route', 'method', 'status'], registers);
    this.httpDuration = new HotHistogram('token_handler_http_request_duration_seconds', 'HTTP request latency by route.', ['route', 'method'], [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers);
    this.proxyRequests = new HotCounter('token_handler_upstream_responses_total', 'Responses from upstream targets, by target and status (502/504 for failures).', ['target', 'status'], registers);
    this.proxyDuration = new HotHistogram('token_handler_upstream_duration_seconds', 'Upstream latency by target.', ['target'], [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers);
    this.logins = new Counter({ name: 'token_handler_logins_total', help: 'Login callbacks by client and outcome.', labelNames: ['client', 'outcome'], registers });
    this.logouts = new Counter({ name: 'token_handler_logouts_total', help: 'Logouts by client and kind (rp, backchannel, revoke).', labelNames: ['client', 'kind'], registers });
    this.refreshes = new Counter({ name: 'token_handler_refreshes_total', help: 'Token refreshes by client and outcome.', labelNames: ['client', 'outcome'], registers });
    this.csrfRejections = new Counter({ name: 'token_handler_csrf_rejections_total', help: 'Requests refused by the CSRF defence.', labelNames: ['reason'], registers });
    this.storeDuration = new Histogram({ name: 'token_handler_store_duration_seconds', help: 'Session store operation latency.', labelNames: ['operation'], buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1], registers });
    this.storeErrors = new Counter({ name: 'token_handler_store_errors_total', help: 'Session store operations that failed, by operation.', labelNames: ['operation'], registers });
    this.readiness = new Gauge({ name: 'token_handler_readiness_check', help: 'Result of the last /readyz check per dependency (1 ok, 0 failed).', labelNames: ['check'], registers });
    this.activeSessions = new Gauge({
      name: 'token_handler_active_sessions',
      help: 'Sessions in the store that have not expired.',
      registers,
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
