import { discoveredIssuerMatches } from '../oidc/issuer.ts';
import { hasCredentials } from '../oidc/registry.ts';
import type { AppContext } from '../context.ts';

export interface ReadinessOptions {
  /** Bound on the store ping, milliseconds (default 2000). */
  storeTimeoutMs?: number;
  /** Bound on each issuer check (discovery + live probe), milliseconds (default: oidc timeout, at most 5000). */
  issuerTimeoutMs?: number;
}

export type CheckStatus = 'ok' | 'fail';

export interface StoreCheck {
  status: CheckStatus;
  kind: string;
  durationMs: number;
  error?: string;
}

export interface IssuerCheck {
  /** `unregistered`: a client waiting for dynamic registration; it does not make the service unready. */
  status: CheckStatus | 'unregistered';
  clientId: string;
  issuer: string;
  durationMs: number;
  error?: string;
}

/**
 * `ok`: every check passed. `degraded`: the store answers but an issuer does not; the instance still
 * serves (sessions, the proxy with valid tokens), only logins and refreshes wait for the IdP, so it stays
 * in the load balancer: with every replica failing at once on an IdP outage, nothing would be served.
 * `fail`: the store does not answer (or, with --readyz_strict, an issuer does not either).
 */
export type ReadinessStatus = 'ok' | 'degraded' | 'fail';

export interface ReadinessReport {
  status: ReadinessStatus;
  checks: { store: StoreCheck; issuers: IssuerCheck[] };
}

class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** An error message fit for a probe body: one line, bounded. */
function describe(err: unknown): string {
  const message = err instanceof Error ? err.message || err.name : String(err);
  return message.replace(/\s+/g, ' ').slice(0, 200);
}

/**
 * Whether the issuer answers right now. The registry caches a successful discovery for the life of the
 * process, so its status alone would keep saying "ready" through an IdP outage: fetch the discovery
 * document again (cheap, cacheable at the IdP) and check it names the issuer.
 */
async function probeIssuer(issuer: string, timeoutMs: number): Promise<void> {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error', headers: { accept: 'application/json' } });
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`discovery document answered HTTP ${res.status}`);
  }
  const doc = (await res.json()) as { issuer?: unknown };
  // As discovery compares them (Auth0's trailing slash; Entra ID's multi-tenant template).
  if (typeof doc.issuer !== 'string' || !discoveredIssuerMatches(doc.issuer, issuer)) throw new Error('discovery document names another issuer');
}

/**
 * /readyz's checks: the session store answers a ping, and every configured client's issuer has been
 * discovered and still answers (see ReadinessStatus for what a failure of each means). Concurrent callers share one run, so a burst of probes (several kubelets,
 * a load balancer) costs one ping and one discovery fetch per issuer.
 */
export class ReadinessChecker {
  readonly #ctx: AppContext;
  readonly #storeTimeoutMs: number;
  readonly #issuerTimeoutMs: number;
  #running: Promise<ReadinessReport> | undefined;

  constructor(ctx: AppContext, options: ReadinessOptions = {}) {
    this.#ctx = ctx;
    this.#storeTimeoutMs = options.storeTimeoutMs ?? 2000;
    this.#issuerTimeoutMs = options.issuerTimeoutMs ?? Math.min(ctx.config.oidc.timeoutMs, 5000);
  }

  check(): Promise<ReadinessReport> {
    this.#running ??= this.#run().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #run(): Promise<ReadinessReport> {
    const [store, issuers] = await Promise.all([this.#checkStore(), this.#checkIssuers()]);
    const { readiness } = this.#ctx.metrics;
    readiness.set({ check: 'store' }, store.status === 'ok' ? 1 : 0);
    for (const issuer of issuers) readiness.set({ check: `issuer:${issuer.clientId}` }, issuer.status === 'fail' ? 0 : 1);
    const issuersOk = issuers.every((i) => i.status !== 'fail');
    const status: ReadinessStatus =
      store.status !== 'ok' ? 'fail' : issuersOk ? 'ok' : this.#ctx.config.readyzStrict === true ? 'fail' : 'degraded';
    return { status, checks: { store, issuers } };
  }

  async #checkStore(): Promise<StoreCheck> {
    const { store } = this.#ctx;
    const started = performance.now();
    try {
      await withTimeout(store.ping(), this.#storeTimeoutMs, 'the session store');
      return { status: 'ok', kind: store.kind, durationMs: elapsed(started) };
    } catch (err) {
      return { status: 'fail', kind: store.kind, durationMs: elapsed(started), error: describe(err) };
    }
  }

  async #checkIssuers(): Promise<IssuerCheck[]> {
    const { registry } = this.#ctx;
    const started = performance.now();
    const probes = new Map<string, Promise<string | undefined>>();
    const probe = (issuer: string) => {
      let running = probes.get(issuer);
      if (!running) {
        running = probeIssuer(issuer, this.#issuerTimeoutMs).then(
          () => undefined,
          (err: unknown) => describe(err),
        );
        probes.set(issuer, running);
      }
      return running;
    };
    let statuses;
    try {
      statuses = await withTimeout(registry.status(), this.#issuerTimeoutMs, 'issuer discovery');
    } catch (err) {
      const error = describe(err);
      return registry.clients().map((c) => ({ status: 'fail', clientId: c.id, issuer: c.issuer, durationMs: elapsed(started), error }));
    }
    return Promise.all(
      statuses.map(async (s): Promise<IssuerCheck> => {
        const base = { clientId: s.clientId, issuer: s.issuer };
        const client = registry.client(s.clientId);
        if (client === undefined || !hasCredentials(client)) {
          return { ...base, status: 'unregistered', durationMs: elapsed(started) };
        }
        if (!s.ready) return { ...base, status: 'fail', durationMs: elapsed(started), error: describe(s.error ?? 'discovery failed') };
        const error = await probe(s.issuer);
        return error === undefined
          ? { ...base, status: 'ok', durationMs: elapsed(started) }
          : { ...base, status: 'fail', durationMs: elapsed(started), error };
      }),
    );
  }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}
