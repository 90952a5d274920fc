/**
 * Rate limiting of the login endpoints (`/auth`, `/callback` and their go-token-handler spellings), per
 * client IP. Each login start costs an IdP round trip for discovery, a sealed cookie and an entry in the
 * IdP's own state; each callback a token request with client authentication and an ID-token validation.
 * Unlimited, both are a cheap way to load the IdP in our name or to grind through codes and states.
 *
 * The client IP is Fastify's `request.ip`, which honours --trust_proxy: with a list of proxy addresses
 * (recommended) it is the first untrusted address from the right of X-Forwarded-For; with a bare
 * `--trust_proxy` every hop is trusted and the left-most (client-chosen) address is used, so a client
 * could pick its own key. IPv6 clients are counted per /64, the smallest block a host usually gets.
 *
 * Fixed one-minute windows per key, in memory, per instance (a fleet of N instances admits up to N times
 * the limit; the workers of one --workers group count in their primary process, so a group is one instance). The table is bounded: past `maxKeys` distinct clients in a window, new clients are not
 * counted (a flood from that many addresses is not something a per-IP limit can stop anyway).
 */
import { isIPv6 } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/types.ts';
import { clientAddress } from '../ops/clientAddress.ts';
import { sendProblem } from '../http/problem.ts';

export interface RateLimiterOptions {
  /** Requests admitted per key and window. */
  limit: number;
  windowMs: number;
  /** Most keys tracked in one window. */
  maxKeys?: number;
  now?: () => number;
}

export type RateDecision = { ok: true; remaining: number } | { ok: false; retryAfterSec: number };

export class FixedWindowRateLimiter {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  #windowStart = Number.NEGATIVE_INFINITY;
  #counts = new Map<string, number>();

  constructor(options: RateLimiterOptions) {
    if (!(options.limit >= 1) || !(options.windowMs >= 1)) throw new Error('a rate limit needs a positive limit and window');
    this.#limit = options.limit;
    this.#windowMs = options.windowMs;
    this.#maxKeys = options.maxKeys ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  /** Counts one request for `key` and says whether it is admitted. */
  take(key: string): RateDecision {
    const now = this.#now();
    if (now >= this.#windowStart + this.#windowMs) {
      // One window for all keys, opened by the first request after the last one closed: a Map swap
      // forgets every key at once, so memory never outlives a window.
      this.#windowStart = now;
      this.#counts = new Map();
    }
    const seen = this.#counts.get(key);
    if (seen === undefined) {
      if (this.#counts.size >= this.#maxKeys) return { ok: true, remaining: this.#limit - 1 };
      this.#counts.set(key, 1);
      return { ok: true, remaining: this.#limit - 1 };
    }
    if (seen >= this.#limit) {
      return { ok: false, retryAfterSec: Math.max(1, Math.ceil((this.#windowStart + this.#windowMs - now) / 1000)) };
    }
    this.#counts.set(key, seen + 1);
    return { ok: true, remaining: this.#limit - seen - 1 };
  }

  /** Keys counted in the current window (tests, metrics). */
  get size(): number {
    return this.#counts.size;
  }
}

/** The rate-limit key of a client address: IPv4 as is (also when IPv4-mapped), IPv6 by its /64 prefix. */
export function clientKey(ip: string | undefined): string {
  if (ip === undefined || ip === '') return 'unknown';
  if (ip.startsWith('::ffff:') && ip.includes('.')) return ip.slice(7);
  if (!isIPv6(ip)) return ip;
  const [head = '', tail] = ip.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(Math.max(0, 8 - headGroups.length - tailGroups.length)).fill('0'), ...tailGroups];
  return `${groups.slice(0, 4).map((g) => (g.replace(/^0+(?=.)/, '') || '0').toLowerCase()).join(':')}::/64`;
}

/** The route URLs (as Fastify names them) whose requests count as logins or callbacks. */
export function loginRouteKinds(config: Pick<Config, 'basePath' | 'legacyRoutes' | 'clients'>): Map<string, 'auth' | 'callback'> {
  const kinds = new Map<string, 'auth' | 'callback'>([
    [`${config.basePath}/clients/:clientId/auth`, 'auth'],
    [`${config.basePath}/clients/:clientId/callback`, 'callback'],
  ]);
  if (config.legacyRoutes) {
    kinds.set('/login', 'auth');
    kinds.set('/callback', 'callback');
  }
  // The callback mounted at the path of --oidc_redirect_url (routes/legacy.ts redirectUrlRoute).
  for (const client of config.clients) {
    if (client.redirectUrl && !kinds.has(new URL(client.redirectUrl).pathname)) kinds.set(new URL(client.redirectUrl).pathname, 'callback');
  }
  return kinds;
}

export const LOGIN_RATE_WINDOW_MS = 60_000;

/**
 * A limiter shared by several processes (the workers of a --workers group count in their primary):
 * undefined when it cannot answer, and the process counts on its own meanwhile.
 */
export type SharedRateLimit = (key: string, limit: number, windowMs: number) => Promise<RateDecision | undefined>;

/**
 * Limits login starts and callbacks to `config.rateLimit.loginPerMinute` each, per client IP; beyond it
 * the answer is 429 problem+json with Retry-After, before any work (no IdP call, no cookie, no store).
 * 0 turns the limit off.
 */
export function registerLoginRateLimit(
  app: FastifyInstance,
  config: Pick<Config, 'basePath' | 'legacyRoutes' | 'clients' | 'rateLimit'>,
  shared?: SharedRateLimit,
): FixedWindowRateLimiter | undefined {
  const limit = config.rateLimit.loginPerMinute;
  if (limit <= 0) return undefined;
  const limiter = new FixedWindowRateLimiter({ limit, windowMs: LOGIN_RATE_WINDOW_MS });
  const kinds = loginRouteKinds(config);
  // Callback style: it runs on every request (proxied ones too), where an async hook costs a promise.
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const url = request.routeOptions.url;
    const kind = url === undefined ? undefined : kinds.get(url);
    if (kind === undefined) return done();
    const ip = clientAddress(request);
    const key = `${kind} ${clientKey(ip)}`;
    const decide = (decision: RateDecision): void => {
      if (decision.ok) return done();
      request.log.warn({ kind, ip }, 'login rate limit exceeded');
      void sendProblem(
        reply.header('retry-after', String(decision.retryAfterSec)),
        429,
        'rate_limited',
        `too many ${kind === 'auth' ? 'login attempts' : 'login callbacks'} from this address; retry in ${decision.retryAfterSec} s`,
      );
    };
    if (shared === undefined) return decide(limiter.take(key));
    shared(key, limit, LOGIN_RATE_WINDOW_MS).then(
      (decision) => decide(decision ?? limiter.take(key)),
      () => decide(limiter.take(key)),
    );
  });
  return limiter;
}
