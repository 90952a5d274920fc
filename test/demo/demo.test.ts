/**
 * `npm run demo` as the README promises it (issue 22.2, 22.3): the go-token-handler routes /login and
 * /userinfo work in the demo, every demo port can be moved (a taken one is named in one line), and the
 * user's environment is honoured (`REDIS_URL=... npm run demo -- --db_type redis`), a wrong one refused in
 * a few clear lines, never a stack trace.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DemoPortInUseError, startDemo, type Demo } from '../../src/demo/demo.ts';
import { createBrowser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { cleanEnv, NODE, run, start } from '../support/process.ts';
import { probeRedis, REDIS_URL, requireService } from '../support/services.ts';

const API = '/token-handler/v1';
const DEMO = ['bin/demo.js'];
const ANY_PORTS = { DEMO_PORT: '0', DEMO_IDP_PORT: '0', DEMO_UPSTREAM_PORT: '0' };

describe('the demo serves the go-token-handler routes', () => {
  let demo: Demo;
  beforeAll(async () => {
    demo = await startDemo({ port: 0, idpPort: 0, upstreamPort: 0, logLevel: 'error' });
  });
  afterAll(async () => demo?.close());

  it('logs in through /login and /callback, and /userinfo answers with the IdP userinfo of the session', async () => {
    const browser = createBrowser();
    const flow = await loginAtDevIdp(browser, new URL('/login', demo.url), { idpOrigin: demo.idp.issuer });
    expect(new URL(flow.url).pathname).toBe('/callback');
    expect(flow.response.status).toBe(302);
    await flow.response.body?.cancel();

    const info = await browser.get(new URL('/userinfo', demo.url));
    expect(info.status).toBe(200);
    expect(await info.json()).toMatchObject({ sub: 'demo', name: 'Demo User', email: 'demo@example.com', roles: ['user'] });
    // The same session through the v1 API and the proxy.
    const sessions = (await (await browser.get(new URL(`${API}/sessions`, demo.url))).json()) as { sub: string }[];
    expect(sessions.map((s) => s.sub)).toEqual(['demo']);
    expect((await browser.get(new URL(`${API}/targets/api/api/hello`, demo.url))).status).toBe(200);
  });

  it('answers /userinfo with 401 login_required without a session', async () => {
    const res = await fetch(new URL('/userinfo', demo.url));
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: 'login_required' });
  });
});

/** A port some other process holds for the duration of a test. */
async function takenPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { port: (server.address() as { port: number }).port, server };
}

describe('demo ports', () => {
  it.each([
    ['token-handler', 'port'],
    ['idp', 'idpPort'],
    ['upstream', 'upstreamPort'],
  ] as const)('a taken %s port fails with DemoPortInUseError naming that server', async (server, option) => {
    const taken = await takenPort();
    try {
      const error = await startDemo({ port: 0, idpPort: 0, upstreamPort: 0, logLevel: 'error', [option]: taken.port }).then(
        (demo) => demo.close().then(() => undefined),
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(DemoPortInUseError);
      expect(error).toMatchObject({ server, port: taken.port });
    } finally {
      taken.server.close();
    }
  });
});

// Each run loads the whole service in a fresh process: seconds on a loaded machine.
describe('npm run demo (bin/demo.js)', { timeout: 90_000 }, () => {
  it('names the variable to set in one line when a port is taken', async () => {
    const { port, server } = await takenPort();
    try {
      const result = await run(NODE, DEMO, { env: cleanEnv({ ...ANY_PORTS, DEMO_UPSTREAM_PORT: String(port) }) });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(
        `token-handler demo: port ${port} (the demo upstream API) is already in use: set DEMO_UPSTREAM_PORT to a free port, or to 0 to pick one (the URLs are printed)\n`,
      );
    } finally {
      server.close();
    }
  });

  it('refuses a port that is not one, naming the variable', async () => {
    const result = await run(NODE, DEMO, { env: cleanEnv({ ...ANY_PORTS, DEMO_IDP_PORT: 'ninety' }) });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('token-handler demo: DEMO_IDP_PORT="ninety" is not a port: use 1-65535, or 0 for any free port\n');
  });

  it('reports a configuration the demo cannot start with as configuration problems, not a stack trace', async () => {
    const result = await run(NODE, [...DEMO, '--db_type', 'redis'], { env: cleanEnv(ANY_PORTS) });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('token-handler: invalid configuration (1 problem):');
    expect(result.stderr).toContain('--db_type "redis" (from flag --db_type): needs --redis_url (REDIS_URL)');
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });
});

const redisUnavailable = await probeRedis();
describe.skipIf(!requireService('redis', redisUnavailable))('npm run demo honours the environment', { timeout: 90_000 }, () => {
  const prefix = `th-demo-test-${randomUUID()}:`;
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it('REDIS_URL=... npm run demo -- --db_type redis keeps the sessions in that Redis, under REDIS_KEY_PREFIX', async () => {
    const demo = start(NODE, [...DEMO, '--db_type', 'redis', '--log_level', 'warn'], {
      env: cleanEnv({ ...ANY_PORTS, REDIS_URL, REDIS_KEY_PREFIX: prefix }),
    });
    try {
      const [, url] = await demo.waitFor(/Open (http:\/\/\S+) and log in/);
      const [, issuer] = await demo.waitFor(/IdP \(oidc-provider\):\s+(\S+)/);
      const browser = createBrowser();
      const flow = await loginAtDevIdp(browser, new URL(`${API}/clients/default/auth`, url), { idpOrigin: issuer });
      expect(flow.response.status).toBe(302);
      await flow.response.body?.cancel();
      expect((await (await browser.get(new URL(`${API}/sessions`, url))).json()) as unknown[]).toHaveLength(1);
      expect(await redis.keys(`${prefix}*`)).not.toEqual([]);
    } finally {
      const { code } = await demo.stop();
      expect(code).toBe(0);
    }
  });
});
