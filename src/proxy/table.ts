/**
 * The targets in force: looked up per request (longest mount path first), replaced as a whole when the
 * configuration is reloaded or the service directory changes an upstream URL. A request keeps the target
 * it was matched to (and its connection pool) to its end, whatever is swapped in meanwhile.
 *
 * Connection pools are kept per (upstream origin, pool settings, timeout): a target that is unchanged by a
 * swap keeps its warm connections. A pool no target uses any more is closed once its requests are done
 * (undici's close() waits for them), after a delay that lets requests already matched to it start.
 */
import { Dispatcher, Pool } from 'undici';
import type { TargetConfig } from '../config/types.ts';
import { BrowserLink, kBrowser } from './browserGone.ts';
import { withDeadline } from './deadline.ts';
import { isUrn, type ServiceDirectory } from './directory.ts';
import { parseUpstreamBase } from './paths.ts';
import { markingResets, withStaleRetry, type RetryListener } from './staleRetry.ts';

/** How much later than a target's timeout undici's own (coarse) timers are set: they only back ours up. */
const UNDICI_BACKSTOP_MS = 1_000;
/** A pool no target uses is closed this long after the swap (then once its requests are done). */
const RETIRE_AFTER_MS = 60_000;

/** Names the dispatcher (the target's pool) a proxied request goes to, on the request's header object. */
export const kUpstream = Symbol('token-handler.upstream');

/**
 * reply-from's one dispatcher: hands each request to the pool its headers name (rewriteRequestHeaders
 * puts it there; a symbol key is copied with the headers and never sent), tied to its browser's connection
 * when they carry that link too.
 */
export class RoutingDispatcher extends Dispatcher {
  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const headers = options.headers as Record<symbol, unknown> | undefined;
    const target = headers?.[kUpstream];
    if (!(target instanceof Dispatcher)) throw new Error('no upstream pool was chosen for this request');
    // Outside the pool's deadline and retry: a browser that leaves aborts both tries (src/proxy/browserGone.ts).
    const browser = headers?.[kBrowser];
    return target.dispatch(options, browser instanceof BrowserLink ? browser.attach(handler) : handler);
  }

  // The pools are the table's to close (TargetTable.close).
  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    if (callback) return void callback();
    return Promise.resolve();
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const callback = typeof a === 'function' ? a : b;
    if (callback) return void callback();
    return Promise.resolve();
  }
}

/** A target as mounted now: with its upstream when known, or why it has none. */
export interface Mounted<R> {
  target: TargetConfig;
  /** The mount path without a trailing slash (`''` for the root). */
  mountPath: string;
  /** The upstream URL (the target's, or its URN's from the directory). */
  url: string | undefined;
  route: R | undefined;
  /** Why the target has no upstream (an unresolved URN). */
  unresolved: string | undefined;
  /** Its route names in metrics: the mount path itself, and below it. */
  labels: { exact: string; below: string };
}

/** What the proxy builds for a target with a known upstream URL (the plan and handler of src/proxy/http.ts). */
export type RouteBuilder<R> = (target: TargetConfig, url: string, pool: Dispatcher) => R;

interface PoolEntry {
  pool: Pool;
  dispatcher: Dispatcher;
}

export class TargetTable<R> {
  #mounted: readonly Mounted<R>[] = [];
  readonly #pools = new Map<string, PoolEntry>();
  readonly #retiring = new Map<NodeJS.Timeout, Pool>();
  readonly #build: RouteBuilder<R>;
  readonly #listeners: (() => void)[] = [];
  readonly #onRetry: RetryListener | undefined;

  /** `onRetry` is told of every request sent again after a kept-alive connection was lost (src/proxy/staleRetry.ts). */
  constructor(build: RouteBuilder<R>, onRetry?: RetryListener) {
    this.#build = build;
    this.#onRetry = onRetry;
  }

  get mounted(): readonly Mounted<R>[] {
    return this.#mounted;
  }

  /** Called after every swap. */
  onSwap(listener: () => void): void {
    this.#listeners.push(listener);
  }

  /**
   * Builds the routes of `targets` (URNs resolved through `directory`) and swaps them in. Throws, with
   * nothing swapped, when a route cannot be built (the configuration is refused).
   */
  set(targets: readonly TargetConfig[], directory: ServiceDirectory | undefined): void {
    const used = new Set<string>();
    const created: PoolEntry[] = [];
    const mounted: Mounted<R>[] = [];
    try {
      for (const target of targets) {
        let mountPath = target.mountPath;
        while (mountPath.endsWith('/')) mountPath = mountPath.slice(0, -1);
        let url: string | undefined = target.url;
        let unresolved: string | undefined;
        if (isUrn(target.url)) {
          url = directory?.resolve(target.url);
          if (!directory) unresolved = `no service directory is in use to resolve ${target.url} (directory_url takes effect at a restart)`;
          else if (url === undefined) unresolved = `the service directory has no entry for ${target.url}`;
          else {
            try {
              parseUpstreamBase(url);
            } catch (err) {
              unresolved = `the service directory's URL for ${target.url} cannot be proxied to: ${(err as Error).message}`;
              url = undefined;
            }
          }
        }
        let route: R | undefined;
        if (url !== undefined) {
          const key = poolKey(target, url);
          let entry = this.#pools.get(key);
          if (!entry) {
            entry = newPool(target, url, this.#onRetry);
            created.push(entry);
            this.#pools.set(key, entry);
          }
          used.add(key);
          route = this.#build(target, url, entry.dispatcher);
        }
        mounted.push({ target, mountPath, url, route, unresolved, labels: { exact: mountPath === '' ? '/' : mountPath, below: `${mountPath}/*` } });
      }
    } catch (err) {
      for (const entry of created) {
        for (const [key, live] of this.#pools) if (live === entry) this.#pools.delete(key);
        void entry.pool.destroy();
      }
      throw err;
    }
    // Longest mount path first, so `/api/orders` wins over `/api`.
    mounted.sort((a, b) => b.mountPath.length - a.mountPath.length);
    this.#mounted = mounted;
    for (const listener of this.#listeners) listener();
    for (const [key, entry] of this.#pools) {
      if (used.has(key)) continue;
      this.#pools.delete(key);
      const timer = setTimeout(() => {
        this.#retiring.delete(timer);
        void entry.pool.close();
      }, RETIRE_AFTER_MS);
      timer.unref();
      this.#retiring.set(timer, entry.pool);
    }
  }

  /**
   * The target a request path is for, matched on the path as a router decodes it (reserved characters
   * such as `%2F` stay encoded): a percent-encoded spelling of a mount path goes to that target, whose
   * path check refuses it with 400, never to a shorter mount (the root) that would forward it.
   */
  match(rawUrl: string): Mounted<R> | undefined {
    const q = rawUrl.indexOf('?');
    let path = q < 0 ? rawUrl : rawUrl.slice(0, q);
    if (path.includes('%')) {
      try {
        path = decodeURI(path);
      } catch {
        // Not UTF-8: the router refuses it before this (400); matched as written otherwise.
      }
    }
    return this.#find(path);
  }

  #find(path: string): Mounted<R> | undefined {
    for (const mounted of this.#mounted) {
      const mount = mounted.mountPath;
      if (path === mount || (path.startsWith(mount) && path.charCodeAt(mount.length) === 0x2f) || (mount === '' && path === '/')) return mounted;
    }
    return undefined;
  }

  /** Destroys every pool (the app is closing). */
  async close(): Promise<void> {
    const pools = [...this.#pools.values()].map((entry) => entry.pool);
    for (const [timer, pool] of this.#retiring) {
      clearTimeout(timer);
      pools.push(pool);
    }
    this.#retiring.clear();
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.destroy()));
  }
}

/**
 * Every upstream request's deadline and its one retry of a lost kept-alive connection, in one interceptor:
 * undici puts a wrapper of its own between composed interceptors. The deadline is outside the retry, so
 * both tries count against one timeout.
 */
export function upstreamExchange(timeoutMs: number, onRetry?: (reason: string) => void): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (options, handler) => dispatch(options, withStaleRetry(dispatch, options, withDeadline(handler as Dispatcher.DispatchHandler, timeoutMs), onRetry));
}

function poolKey(target: TargetConfig, url: string): string {
  return JSON.stringify([new URL(url).origin, target.pool, target.timeoutMs]);
}

function newPool(target: TargetConfig, url: string, onRetry: RetryListener | undefined): PoolEntry {
  const origin = new URL(url).origin;
  const pool = new Pool(origin, {
    connections: target.pool.connections,
    keepAliveTimeout: target.pool.keepAliveTimeoutMs,
    keepAliveMaxTimeout: target.pool.keepAliveMaxTimeoutMs,
    pipelining: 1,
    // undici's connector, telling a reset of a kept-alive connection from one of a new one (src/proxy/staleRetry.ts).
    connect: markingResets(),
    // Time to the response headers; then the longest silence within a response body (SSE upstreams
    // must send something, e.g. a comment line, more often than this). Enforced on time by
    // withDeadline; undici's own timers stay as a backstop, a second later: they count 499 ms ticks
    // and can fire up to a tick early as well as late.
    headersTimeout: target.timeoutMs + UNDICI_BACKSTOP_MS,
    bodyTimeout: target.timeoutMs + UNDICI_BACKSTOP_MS,
  });
  return { pool, dispatcher: pool.compose(upstreamExchange(target.timeoutMs, onRetry && ((reason) => onRetry(origin, reason)))) };
}
