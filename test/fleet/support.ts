/**
 * Helpers of the fleet tests: real `node src/main.ts` processes (as deployed: flags, env, a config file)
 * sharing one PostgreSQL or Redis store, a dev IdP that rotates refresh tokens, and a demo upstream
 * that validates the bearer tokens it receives.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream, type EchoResponse } from '../../src/demo/upstream.ts';
import { tempDir } from '../support/config.ts';
import type { Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { devIdpClientFlags } from '../support/process.ts';

export const API = '/token-handler/v1';
const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

export { PG_URL, REDIS_URL, probePostgres, probeRedis } from '../support/services.ts';
import { PG_URL, REDIS_URL } from '../support/services.ts';

/** Secrets shared by every instance of a fleet: a cookie sealed by one must open on the others. */
const SHARED_SECRETS = {
  SESSION_AUTH_SECRET: 'fleet-auth-secret-0123456789abcdef',
  SESSION_ENC_SECRET: 'fleet-enc-secret-0123456789abcdefg',
  SESSION_DB_KEY: 'fleet-db-key-0123456789abcdef01234',
};

/**
 * Why the backend cannot be used, or undefined when it can. In CI a missing backend is a failure
 * (the caller throws); elsewhere the suite is skipped with this message.
 */


/** Throws in CI (a missing backend must fail there), else logs why the suite is skipped. */
export function requireInCi(name: string, unavailable: string | undefined): void {
  if (unavailable === undefined) return;
  if (process.env.CI === 'true') throw new Error(`${name} is required in CI: ${unavailable}`);
  console.warn(`[fleet] skipping the ${name} fleet tests: ${unavailable}`);
}

/** A namespace of its own in the shared backend, and the flags that point an instance at it. */
export interface StoreNamespace {
  /** `--db_type ...` and the connection flags; `via` replaces the backend's port (a TCP proxy). */
  flags(via?: { port: number }): string[];
  drop(): Promise<void>;
}

/** A fresh PostgreSQL schema (`--db_schema`), created by the first instance's migration, dropped after. */
export function postgresNamespace(): StoreNamespace {
  const schema = `th_fleet_${randomBytes(5).toString('hex')}`;
  return {
    flags(via) {
      const url = new URL(PG_URL);
      if (via) {
        url.hostname = '127.0.0.1';
        url.port = String(via.port);
      }
      return ['--db_type=postgresql', `--db_url=${url.href}`, `--db_schema=${schema}`];
    },
    async drop() {
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      try {
        await admin.query(`drop schema if exists "${schema}" cascade`);
      } finally {
        await admin.end();
      }
    },
  };
}

/** A fresh Redis key prefix (`--redis_key_prefix`); its keys are deleted after. */
export function redisNamespace(): StoreNamespace {
  const prefix = `th-fleet:${randomBytes(5).toString('hex')}:`;
  return {
    flags(via) {
      const url = new URL(REDIS_URL);
      if (via) {
        url.hostname = '127.0.0.1';
        url.port = String(via.port);
      }
      return ['--db_type=redis', `--redis_url=${url.href}`, `--redis_key_prefix=${prefix}`];
    },
    async drop() {
      const admin = new Redis(REDIS_URL);
      try {
        const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
        for await (const keys of admin.scanStream({ match: pattern, count: 1000 }) as AsyncIterable<string[]>) {
          if (keys.length > 0) await admin.unlink(...keys);
        }
      } finally {
        admin.disconnect();
      }
    },
  };
}

/** A shared store a suite runs on, once per backend. */
export interface StoreBackend {
  name: string;
  unavailable: string | undefined;
  namespace(): StoreNamespace;
}

export interface FleetBackend extends StoreBackend {
  /** Where the real backend listens, for the outage test's TCP proxy. */
  target: { host: string; port: number };
}

/**
 * Access tokens live long (nothing refreshes behind a test's back), except where a test asks the IdP for
 * short ones: a 2 s token is due for refresh 1 s after it was issued (half its lifetime), and the tokens
 * it is refreshed into live long again, so what a test sends after that is not racing any clock.
 */
export const ACCESS_TOKEN_TTL_SEC = 300;
export const SHORT_TTL_SEC = 2;
/** The instances' --refresh_skew (the default): a token is due when less than min(skew, half its lifetime) is left. */
export const REFRESH_SKEW_SEC = 30;

/**
 * A real OP that rotates refresh tokens (reuse of a rotated one is counted and fails), issuing access tokens
 * of `accessTokenTtlSec`, and the demo upstream that validates them.
 */
export async function startIdpAndUpstream(accessTokenTtlSec = ACCESS_TOKEN_TTL_SEC): Promise<{ idp: DevIdp; upstream: DemoUpstream }> {
  const idp = await startDevIdp({ accessTokenTtlSec, rotateRefreshToken: true, refreshTokens: 'always' });
  try {
    return { idp, upstream: await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer }) };
  } catch (err) {
    await idp.close();
    throw err;
  }
}

/**
 * Logs a browser in through `base` while the IdP issues `ttlSec` access tokens (long ones again after);
 * returns the session cookie and when its token is due for refresh at the latest: the instances (default
 * --refresh_skew) refresh a token when less than min(REFRESH_SKEW_SEC, half its lifetime) is left, and it
 * was issued before the login returned (100 ms more for good measure). Waiting for refreshDueAt cannot
 * race: a late timer only finds the token more surely due. Using the session before refreshDueAt can: a
 * request that lands after the real due time (earlier than refreshDueAt) refreshes. The default 2 s token
 * (due 1 s after it was issued) is for callers that send nothing before refreshDueAt; a caller that does
 * asks for a `ttlSec` long enough that a slow machine cannot reach the due time meanwhile.
 */
export async function loginShortLived(
  idp: DevIdp,
  base: string,
  browser: Browser,
  ttlSec = SHORT_TTL_SEC,
): Promise<{ cookie: string; refreshDueAt: number }> {
  idp.setAccessTokenTtl(ttlSec);
  let cookie: string;
  try {
    cookie = await login(browser, base);
  } finally {
    idp.setAccessTokenTtl(ACCESS_TOKEN_TTL_SEC);
  }
  const dueAfterMs = ttlSec * 1000 - Math.min(REFRESH_SKEW_SEC * 1000, (ttlSec * 1000) / 2);
  return { cookie, refreshDueAt: Date.now() + dueAfterMs + 100 };
}

/** Headers of a state-changing call with the session `cookie` from our own page: the XSRF cookie echoed, our Origin. */
export async function csrfHeaders(base: string, cookie: string): Promise<Record<string, string>> {
  // GET /sessions hands out the XSRF cookie; a state-changing call echoes it and comes from our origin.
  const res = await withCookie(`${base}${API}/sessions`, cookie);
  await res.arrayBuffer();
  const xsrf = /XSRF-TOKEN=([^;]+)/.exec(res.headers.getSetCookie().join('\n'))?.[1];
  if (!xsrf) throw new Error('no XSRF cookie from GET /sessions');
  return { cookie: `session=${cookie}; XSRF-TOKEN=${xsrf}`, 'x-xsrf-token': xsrf, origin: base, accept: 'application/json' };
}

export interface Instance {
  readonly base: string;
  readonly child: ChildProcess;
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  stop(): Promise<void>;
}

/** Writes the config file every instance of a fleet shares: one target to the upstream. */
export function fleetConfigFile(upstreamUrl: string): string {
  const dir = tempDir('th-fleet-');
  const file = join(dir, 'token-handler.json');
  writeFileSync(file, JSON.stringify({ targets: [{ id: 'api', url: upstreamUrl }] }));
  return file;
}

/** Spawns `node src/main.ts` with the default client at `issuer` and resolves once it listens. */
export async function startInstance(args: { issuer: string; configFile: string; extra: string[] }): Promise<Instance> {
  const cwd = tempDir('th-fleet-run-');
  const argv = [
    MAIN,
    '--listen_addr=127.0.0.1:0',
    ...devIdpClientFlags(args.issuer),
    `--config=${args.configFile}`,
    '--session_sweep_interval=1h',
    '--log_level=info',
    ...args.extra,
  ];
  // process.execPath: the Node 24 running the tests, never a system node.
  const child = spawn(process.execPath, argv, {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: cwd, ...SHARED_SECRETS },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`token-handler did not start within 20 s:\n${out}`)), 20_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`token-handler exited (${child.exitCode}) before listening:\n${out}`));
    });
  });
  return {
    base,
    child,
    output: () => out,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Logs a browser in through `base` (the dev IdP's form), returns the session cookie value. */
export async function login(browser: Browser, base: string): Promise<string> {
  const flow = await loginAtDevIdp(browser, `${base}${API}/clients/default/auth`, { username: 'demo', password: 'demo' });
  await flow.response.body?.cancel();
  if (flow.response.status !== 302) throw new Error(`login failed: ${flow.response.status}`);
  const cookie = browser.cookie('session', base)?.value;
  if (!cookie) throw new Error('no session cookie after login');
  return cookie;
}

/**
 * Requests carrying a given session cookie, without a jar: the cookie stays what it was even after an
 * instance answered with a Set-Cookie clearing it, so "the session ended" is judged by the server alone.
 */
export async function withCookie(url: string, cookie: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('cookie', `session=${cookie}`);
  return fetch(url, { ...init, headers, redirect: 'manual' });
}

export async function statusOf(url: string, cookie: string): Promise<number> {
  const res = await withCookie(url, cookie);
  await res.arrayBuffer();
  return res.status;
}

/** Number of sessions `GET /sessions` on `base` sees for this cookie (-status when not 200). */
export async function sessionCount(base: string, cookie: string): Promise<number> {
  const res = await withCookie(`${base}${API}/sessions`, cookie);
  if (res.status !== 200) {
    await res.arrayBuffer();
    return -res.status;
  }
  return ((await res.json()) as unknown[]).length;
}

/** Polls `check` every 20 ms until it returns true or `timeoutMs` passes; returns how long it took. */
export async function within(timeoutMs: number, check: () => Promise<boolean>, what: string): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface Echo {
  status: number;
  /** The Authorization header the upstream received. */
  token: string | undefined;
  /** Whether the upstream found the bearer token valid (signature, issuer, expiry). */
  valid: boolean;
}

/** One proxied call to the demo upstream's echo through `base` with the session `cookie`. */
export async function echo(base: string, cookie: string): Promise<Echo> {
  const res = await withCookie(`${base}${API}/targets/api/echo`, cookie);
  if (res.status !== 200) {
    await res.arrayBuffer();
    return { status: res.status, token: undefined, valid: false };
  }
  const body = (await res.json()) as EchoResponse;
  const auth = body.headers.authorization;
  return { status: 200, token: typeof auth === 'string' ? auth : undefined, valid: body.token.valid };
}
