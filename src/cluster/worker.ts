/**
 * A worker's side of --workers (src/cluster/primary.ts forks it): what is per process and must hold for
 * the whole group goes through the primary over IPC.
 *
 * - Invalidations: a logout, revocation or refresh on this worker evicts the session from every other
 *   worker's cache before the request that caused it is answered. PostgreSQL and Redis also carry them
 *   between instances, but asynchronously; SQLite has no cross-process channel at all. So every store's
 *   `publishInvalidation` is relayed through the primary too, and waits until every other worker has
 *   evicted (they do it synchronously on receipt).
 * - Metrics: one /metrics for the group. The worker that receives the scrape asks the primary, which
 *   collects every worker's registry and aggregates them (prom-client's AggregatorRegistry.aggregate).
 * - The login rate limit: counted in the primary, so the group admits --login_rate_limit per client, not
 *   that many per worker.
 */
import cluster from 'node:cluster';
import type { Registry } from 'prom-client';
import { ListenerSet, defaultOnError, type InvalidationListener } from '../store/invalidation.ts';
import type { RateDecision } from '../security/rateLimit.ts';
import type { SessionStore } from '../store/types.ts';
import { WORKER_INDEX_ENV, fromPrimary, type FromPrimary, type FromWorker } from './messages.ts';

/** How long a worker waits for the primary: the others' evictions, the group's metrics. */
const RELAY_TIMEOUT_MS = 5_000;

export class WorkerLink {
  /** This worker's slot, 0 … n-1 (a replacement takes the slot of the worker it replaces). */
  readonly index: number;
  readonly #listeners: ListenerSet;
  readonly #pending = new Map<number, (message: FromPrimary) => void>();
  #nextId = 0;
  #registry: Registry | undefined;
  readonly #onError: (err: unknown) => void;

  private constructor(index: number, onError: (err: unknown) => void) {
    this.index = index;
    this.#onError = onError;
    this.#listeners = new ListenerSet(onError);
    process.on('message', (raw: unknown) => this.#receive(raw));
    // The primary forwards SIGHUP (configuration reload) to every worker. A signal without a listener
    // would end the process: this one keeps a worker alive whether or not a reload listens for it.
    process.on('SIGHUP', () => undefined);
  }

  /** The link of a process forked by the primary, else undefined (a single process: no cluster). */
  static connect(onError: (err: unknown) => void = defaultOnError('cluster')): WorkerLink | undefined {
    const index = Number(process.env[WORKER_INDEX_ENV]);
    if (!cluster.isWorker || !Number.isInteger(index) || process.send === undefined) return undefined;
    return new WorkerLink(index, onError);
  }

  /** The worker that runs the group's periodic work (the sweep of expired sessions, the active-sessions count). */
  get runsGroupWork(): boolean {
    return this.index === 0;
  }

  /** Tells the primary this worker listens. */
  ready(): void {
    this.#send({ th: 'ready' });
  }

  /**
   * `store` whose invalidations also reach the other workers (before `publishInvalidation` resolves), and
   * whose `onInvalidation` listeners also hear theirs. A store built by createStore: plain own methods.
   */
  withInvalidationRelay(store: SessionStore): SessionStore {
    return {
      ...store,
      kind: store.kind,
      publishInvalidation: async (idHashes) => {
        await store.publishInvalidation(idHashes);
        if (idHashes.length > 0) await this.#request({ th: 'invalidate', id: this.#id(), hashes: idHashes }, 'relayed');
      },
      onInvalidation: (listener: InvalidationListener) => {
        store.onInvalidation(listener);
        this.#listeners.add(listener);
      },
    };
  }

  /** Answers the primary's collection rounds with this registry's metrics. */
  serveMetrics(registry: Registry): void {
    this.#registry = registry;
  }

  /** The whole group's metrics (every worker's, aggregated by the primary). */
  async groupMetrics(): Promise<{ body: string; contentType: string }> {
    const answer = await this.#request({ th: 'metrics', id: this.#id() }, 'metrics');
    if (answer?.th !== 'metrics') throw new Error('the primary process did not answer with the metrics in time');
    if ('error' in answer) throw new Error(`the primary process could not collect the metrics: ${answer.error}`);
    return { body: answer.body, contentType: answer.contentType };
  }

  /** One login request of `key` counted against the group's limit, in the primary; undefined when it does not answer. */
  async takeRate(key: string, limit: number, windowMs: number): Promise<RateDecision | undefined> {
    const answer = await this.#request({ th: 'rate', id: this.#id(), key, limit, windowMs }, 'rate');
    return answer?.th === 'rate' ? answer.decision : undefined;
  }

  #id(): number {
    this.#nextId = (this.#nextId + 1) % Number.MAX_SAFE_INTEGER;
    return this.#nextId;
  }

  #send(message: FromWorker): void {
    try {
      process.send?.(message);
    } catch (err) {
      // The channel closed: the primary is gone and this worker is on its way out.
      this.#onError(err);
    }
  }

  /** Sends `message` and resolves with the primary's answer of the same id, or undefined after the timeout. */
  #request(message: FromWorker & { id: number }, answer: FromPrimary['th']): Promise<FromPrimary | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(message.id);
        this.#onError(new Error(`no ${answer} from the primary process within ${RELAY_TIMEOUT_MS} ms`));
        resolve(undefined);
      }, RELAY_TIMEOUT_MS);
      timer.unref();
      this.#pending.set(message.id, (reply) => {
        clearTimeout(timer);
        this.#pending.delete(message.id);
        resolve(reply);
      });
      this.#send(message);
    });
  }

  #receive(raw: unknown): void {
    const message = fromPrimary(raw);
    if (message === undefined) return;
    switch (message.th) {
      case 'invalidate':
        // Synchronous: when the primary hears `evicted`, this cache no longer holds them.
        this.#listeners.emit(message.hashes);
        this.#send({ th: 'evicted', id: message.id });
        return;
      case 'collect': {
        const registry = this.#registry;
        if (registry === undefined) return this.#send({ th: 'collected', id: message.id, metrics: [] });
        registry.getMetricsAsJSON().then(
          (metrics) => this.#send({ th: 'collected', id: message.id, metrics }),
          (err: unknown) => {
            this.#onError(err);
            this.#send({ th: 'collected', id: message.id, metrics: [] });
          },
        );
        return;
      }
      case 'relayed':
      case 'metrics':
      case 'rate':
        this.#pending.get(message.id)?.(message);
        return;
    }
  }
}
