/**
 * Issue 19: the reverse proxy setups a new user copies, run for real. A Debian nginx serves a small
 * single-page app (a module script) and proxies the ADSP layout (/auth, /sessions, /api) to token-handler;
 * Chromium (playwright-core) goes through login, /sessions, API GET and POST, listing and revoking another
 * session, a GET logout from /sessions' logoutUrl, and the JSON logout through the IdP's end-session, for a
 * tenant-scoped client. Twice:
 *
 * - docs/examples/nginx.conf as documented (only made runnable: port, upstream, paths, no TLS);
 * - the ADSP documentation's own nginx example (test/deploy/fixtures/adsp-seed-nginx.conf), verbatim with
 *   its placeholders filled in, and the token-handler setting it needs (the client's redirect URL, which
 *   the ADSP documentation itself requires as authCallbackUrl): no added nginx line.
 *
 * The app is reached as `localhost:<port>`, the IdP as `127.0.0.1:<port>`: two sites, whose cookies
 * never mix.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream, type EchoResponse } from '../../src/demo/upstream.ts';
import { launchBrowser, hasChromium, poll, snap, startAttacker, type Attacker } from '../e2e/support.ts';
import { tempDir } from '../support/config.ts';
import { probeNginx, startNginx } from '../support/nginx.ts';
import { onFreePort } from '../support/ports.ts';
import { startTokenHandler, type Running } from '../multi/support.ts';

const TENANT = 'urn:ads:platform:tenant-service:v2:/tenants/deploy-test';
const SPA = fileURLToPath(new URL('./spa/', import.meta.url));
const DOCS_EXAMPLE = fileURLToPath(new URL('../../docs/examples/nginx.conf', import.meta.url));
const VITE_EXAMPLE = fileURLToPath(new URL('../../docs/examples/vite.config.ts', import.meta.url));
const SEED_DEV_SERVER = fileURLToPath(new URL('./fixtures/adsp-seed-webpack.json', import.meta.url));
const SEED_EXAMPLE = fileURLToPath(new URL('./fixtures/adsp-seed-nginx.conf', import.meta.url));
const nginxProblem = probeNginx();
if (nginxProblem) {
  // .ci/run installs Debian's nginx: on CI a missing nginx fails the suite instead of skipping it.
  if (process.env.CI === 'true') throw new Error(`nginx is required in CI: ${nginxProblem}`);
  console.warn(`[deploy] SKIPPING the nginx browser suite: ${nginxProblem}`);
}

/** Replaces `from` (which must occur) by `to`: a change of the example that breaks this is noticed. */
function must(text: string, from: string | RegExp, to: string): string {
  const found = typeof from === 'string' ? text.includes(from) : from.test(text);
  if (!found) throw new Error(`the example no longer contains ${String(from)}`);
  return typeof from === 'string' ? text.replaceAll(from, to) : text.replace(from, to);
}

/**
 * docs/examples/nginx.conf made runnable here and nothing else: nginx's own process settings and paths, a
 * plain-http listener on 127.0.0.1 instead of the TLS one (and no port-80 redirect server), the upstream's
 * port, the app's files, the tenant.
 */
function runnableDocsExample(thPort: number): string {
  let text = readFileSync(DOCS_EXAMPLE, 'utf8');
  text = must(text, 'worker_processes auto;', 'worker_processes 1;\ndaemon off;\npid {{PREFIX}}/nginx.pid;\nerror_log {{PREFIX}}/logs/error.log info;');
  text = must(text, 'access_log /var/log/nginx/access.log main_redacted;', [
    'access_log {{PREFIX}}/logs/access.log main_redacted;',
    'client_body_temp_path {{PREFIX}}/tmp/client;', 'proxy_temp_path {{PREFIX}}/tmp/proxy;', 'fastcgi_temp_path {{PREFIX}}/tmp/fastcgi;',
    'uwsgi_temp_path {{PREFIX}}/tmp/uwsgi;', 'scgi_temp_path {{PREFIX}}/tmp/scgi;',
  ].join('\n  '));
  text = must(text, 'server 127.0.0.1:9080;', `server 127.0.0.1:${thPort};`);
  text = must(text, /\n {2}server \{\n {4}listen 80;[\s\S]*?\n {2}\}\n/, '\n');
  text = must(text, /listen 443 ssl http2;.*\n/, 'listen 127.0.0.1:{{PORT}};\n');
  text = must(text, /\n\s*ssl_certificate .*;/, '');
  text = must(text, /\n\s*ssl_certificate_key .*;/, '');
  text = must(text, /\n\s*ssl_protocols .*;/, '');
  text = must(text, 'root /usr/share/nginx/html;', `root ${SPA};`);
  text = must(text, 'urn:ads:platform:tenant-service:v2:/tenants/REPLACE-ME', TENANT);
  return text;
}

/** The ADSP documentation's example, verbatim but for its placeholders, in a server that also serves the app. */
function seedExampleServer(thPort: number): string {
  let text = readFileSync(SEED_EXAMPLE, 'utf8');
  text = must(text, '<token handler URL>', `http://127.0.0.1:${thPort}`);
  text = must(text, /<Tenant URN e\.g\. [^>]*>/, `"${TENANT}"`);
  return `root ${SPA};\nlocation / { try_files $uri /index.html; }\n${text}`;
}

/**
 * docs/examples/vite.config.ts in a real Vite dev server (the one vitest brings), serving the app, with the
 * two values it reads from the environment.
 */
async function startVite(tokenHandler: string, port: number): Promise<{ stop(): Promise<void> }> {
  process.env.TOKEN_HANDLER_URL = tokenHandler;
  process.env.ADSP_TENANT = TENANT;
  const { createServer } = await import('vite');
  const server = await createServer({
    configFile: VITE_EXAMPLE,
    root: SPA,
    logLevel: 'error',
    clearScreen: false,
    server: { port, strictPort: true, host: '127.0.0.1', hmr: false, watch: null },
  });
  await listenOrClose(server);
  return { stop: () => server.close() };
}

/**
 * The ADSP documentation's webpack dev-server proxy (test/deploy/fixtures/adsp-seed-webpack.json), verbatim
 * but for its placeholders, run by Vite's dev server, whose proxy is node-http-proxy as webpack-dev-server's
 * (http-proxy-middleware) is: the same `target`, `changeOrigin`, `secure` and `headers`; `pathRewrite`
 * applied as http-proxy-middleware applies it. No xfwd: token-handler hears nothing of the dev server.
 */
async function startSeedDevServer(tokenHandler: string, port: number): Promise<{ stop(): Promise<void> }> {
  let text = readFileSync(SEED_DEV_SERVER, 'utf8');
  text = must(text, '<token handler URL>', tokenHandler);
  text = must(text, /<Tenant URN e\.g\. [^>]*>/, TENANT);
  type Entry = { target: string; secure: boolean; changeOrigin: boolean; pathRewrite: Record<string, string>; headers?: Record<string, string> };
  const entries = JSON.parse(text) as Record<string, Entry>;
  const proxy = Object.fromEntries(
    Object.entries(entries).map(([context, { pathRewrite, ...entry }]) => [
      context,
      { ...entry, rewrite: (path: string) => Object.entries(pathRewrite).reduce((p, [from, to]) => p.replace(new RegExp(from), to), path) },
    ]),
  );
  const { createServer } = await import('vite');
  const server = await createServer({
    configFile: false,
    root: SPA,
    logLevel: 'error',
    clearScreen: false,
    server: { port, strictPort: true, host: '127.0.0.1', hmr: false, watch: null, proxy },
  });
  await listenOrClose(server);
  return { stop: () => server.close() };
}

/** Starts a Vite dev server; closes it when it cannot listen (its port taken: "Port N is already in use"). */
async function listenOrClose(server: { listen(): Promise<unknown>; close(): Promise<void> }): Promise<void> {
  try {
    await server.listen();
  } catch (err) {
    await server.close();
    throw err;
  }
}

interface Stack {
  idp: DevIdp;
  upstream: DemoUpstream;
  th: Running;
  /** The front's error log (nginx), for failure messages. */
  errorLog(): string;
  /** The app's origin as the browser uses it: http://localhost:<nginx port> */
  app: string;
  close(): Promise<void>;
}

type Kind = 'docs' | 'seed' | 'vite' | 'seed-dev-server';

/**
 * The app's origin names the front's port, in the IdP's redirect URIs and token-handler's configuration, so
 * the port is chosen before the front starts: when another process took it meanwhile, the whole stack is
 * started again around another port.
 */
function startStack(kind: Kind): Promise<Stack> {
  return onFreePort((port) => startStackOn(kind, port));
}

async function startStackOn(kind: Kind, port: number): Promise<Stack> {
  const app = `http://localhost:${port}`;
  const idp = await startDevIdp({
    clients: [
      {
        client_id: 'my-client-app',
        client_secret: 'my-client-app-secret',
        application_type: 'native',
        redirect_uris: [`${app}/auth/callback`],
        post_logout_redirect_uris: [`${app}/`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
  });
  const upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource });
  const dir = tempDir('th-deploy-');
  const file = join(dir, 'token-handler.yaml');
  writeFileSync(
    file,
    `log_level: warn
oidc_allow_insecure_issuer: true
trust_proxy: ${kind === 'seed-dev-server' ? 'false' : '127.0.0.1'}
db_path: ${join(dir, 'sessions.db')}
clients:
  - id: my-client
    tenant: "${TENANT}"
    issuer: ${idp.issuer}
    clientId: my-client-app
    clientSecret: my-client-app-secret
    scopes: [openid, profile, email, offline_access]
    postLoginRedirectUrl: /
    postLogoutRedirectUrl: /
${kind === 'seed' || kind === 'seed-dev-server' ? `    redirectUrl: ${app}/auth/callback\n` : ''}${kind === 'seed-dev-server' ? '    disableVerifyHost: true\n' : ''}targets:
  - id: my-upstream-api
    url: ${upstream.url}/echo
    client: my-client
`,
  );
  const th = await startTokenHandler(loadConfig({ argv: ['--config', file], env: {}, cwd: dir }).config);
  const thPort = Number(new URL(th.base).port);
  let front: { stop(): Promise<void>; errorLog?: () => string };
  try {
    front =
      kind === 'vite' ? await startVite(th.base, port)
      : kind === 'seed-dev-server' ? await startSeedDevServer(th.base, port)
      : await startNginx(kind === 'docs' ? { full: runnableDocsExample(thPort), port } : { server: seedExampleServer(thPort), port });
  } catch (err) {
    await th.close();
    await upstream.close();
    await idp.close();
    throw err;
  }
  return {
    idp, upstream, th, app,
    errorLog: () => front.errorLog?.() ?? '',
    async close() {
      await front.stop();
      await th.close();
      await upstream.close();
      await idp.close();
    },
  };
}

interface AppReply<T = unknown> {
  status: number;
  contentType: string | null;
  body: T;
}
interface SessionView {
  clientId: string;
  tenant: string | null;
  sub: string;
  logoutUrl: string;
  handle: string;
}
interface ListEntry {
  handle: string;
  current: boolean;
}

/** Opens the app and checks its module script ran (nginx served it as JavaScript). */
async function openApp(page: Page, stack: Stack): Promise<void> {
  await page.goto(`${stack.app}/`);
  await poll(() => page.locator('body').getAttribute('data-ready')).toBe('yes');
}

/**
 * Log in → the IdP's form → back on the app. `again`: the browser is still signed in at the IdP, which
 * would answer at once; `prompt=login` (passed on by token-handler) asks for the password anyway.
 */
async function logIn(page: Page, stack: Stack, again = false): Promise<void> {
  await openApp(page, stack);
  if (again) await page.goto(`${stack.app}/auth/auth?prompt=login`);
  else await page.locator('#login').click();
  await page.waitForURL(`${stack.idp.issuer}/interaction/**`).catch(async (err: unknown) => {
    throw new Error(`the login did not reach the IdP: at ${page.url()}: ${(await page.content()).slice(0, 600)}\n${String(err)}`);
  });
  await page.locator('#username').fill('demo');
  await page.locator('#password').fill('demo');
  await page.locator('#submit').click();
  await page.waitForURL(`${stack.app}/`);
  await poll(() => page.locator('body').getAttribute('data-ready')).toBe('yes');
}

function call<T>(page: Page, script: string): Promise<AppReply<T>> {
  return page.evaluate(script) as Promise<AppReply<T>>;
}

let browser: Browser;
let attacker: Attacker;
beforeAll(async () => {
  if (hasChromium && !nginxProblem) [browser, attacker] = await Promise.all([launchBrowser(), startAttacker()]);
});
afterAll(async () => {
  await browser?.close();
  await attacker?.close();
});

describe.skipIf(!hasChromium || nginxProblem !== undefined).each([
  ['docs/examples/nginx.conf, as documented', 'docs'],
  ['the ADSP documentation\'s nginx example, verbatim, with the client\'s redirect URL set', 'seed'],
  ['docs/examples/vite.config.ts in a Vite dev server', 'vite'],
  ['the ADSP documentation\'s webpack dev-server proxy, verbatim (run by Vite\'s node-http-proxy), with disableVerifyHost and the redirect URL, as it says', 'seed-dev-server'],
] as const)('%s, in front of token-handler, with Chromium', (_name, kind) => {
  let stack: Stack;
  const contexts: BrowserContext[] = [];
  beforeAll(async () => {
    stack = await startStack(kind);
  });
  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    await stack?.close();
  });

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
    context.setDefaultTimeout(15_000);
    contexts.push(context);
    return context.newPage();
  }

  it('login, /sessions, API GET and POST, revoking another session, logout through the IdP\'s end-session', async () => {
    const shot = (page: Page, name: string) => snap(page, `deploy-${kind}`, name);
    const failures = `\nerror log of the front:\n${stack.errorLog()}`;
    const page = await newPage();

    // The module script runs: nginx gave app.js a JavaScript type.
    await openApp(page, stack);
    const script = await page.request.get(`${stack.app}/app.js`);
    expect(script.headers()['content-type'], failures).toMatch(/javascript/);

    await logIn(page, stack);
    await shot(page, '01-logged-in');
    const sessions = await call<SessionView[]>(page, 'app.sessions()');
    expect(sessions.status, failures).toBe(200);
    expect(sessions.body).toEqual([expect.objectContaining({ clientId: 'my-client', tenant: TENANT, sub: 'demo' })]);
    // A URL of the app's own layout, which nginx routes to token-handler.
    expect(sessions.body[0]!.logoutUrl).toMatch(/^\/auth\/logout\?sid=/);

    const get = await call<EchoResponse>(page, 'app.api("GET")');
    expect(get.status, failures).toBe(200);
    expect(get.body).toMatchObject({ method: 'GET', path: '/echo/orders/7', token: { valid: true } });
    const upstreamBefore = stack.upstream.requests;
    const post = await call<EchoResponse>(page, 'app.api("POST", { item: 7 })');
    expect(post.status, failures).toBe(200);
    expect(post.body).toMatchObject({ method: 'POST', path: '/echo/orders/7', token: { valid: true } });
    expect(stack.upstream.requests).toBe(upstreamBefore + 1);

    // Another browser of the same user: listed, and revoked from the first one.
    const other = await newPage();
    await logIn(other, stack);
    const listed = await call<ListEntry[]>(page, 'app.sessions(true)');
    expect(listed.status).toBe(200);
    expect(listed.body).toHaveLength(2);
    const foreign = listed.body.find((entry) => !entry.current)!;
    const revoked = await call<{ revoked: number }>(page, `app.revoke(${JSON.stringify(foreign.handle)})`);
    expect(revoked, failures).toMatchObject({ status: 200, body: { revoked: 1 } });
    expect((await call<unknown[]>(other, 'app.sessions()')).body).toEqual([]);
    expect((await call<unknown[]>(page, 'app.sessions()')).body).toHaveLength(1);

    // The other browser logs in again and follows /sessions' logoutUrl (a link): through nginx to
    // token-handler, on to the IdP's end-session page, back to the app.
    await logIn(other, stack, true);
    const endBefore = stack.idp.endSessionCount;
    const [otherView] = (await call<SessionView[]>(other, 'app.sessions()')).body;
    await other.goto(`${stack.app}${otherView!.logoutUrl}`);
    await other.waitForURL(`${stack.idp.issuer}/**`);
    await other.locator('#logout').click(); // the IdP's "Yes, sign me out"
    await other.waitForURL(`${stack.app}/`);
    expect(stack.idp.endSessionCount).toBe(endBefore + 1);
    expect((await call<unknown[]>(other, 'app.sessions()')).body).toEqual([]);

    // A logout link on another site (a script navigation from the attacker's page): token-handler asks
    // first, on its own page, whose button ends the session and goes on to the IdP.
    await logIn(other, stack, true);
    await other.goto(attacker.origin);
    await other.evaluate(`location.href = ${JSON.stringify(`${stack.app}/auth/logout`)}`);
    await other.waitForURL(`${stack.app}/auth/logout`);
    await expect(other.locator('h1').textContent()).resolves.toMatch(/^Sign out of /);
    expect((await call<unknown[]>(other, 'app.sessions()').catch(() => undefined)) === undefined).toBe(true); // not the app's page
    await shot(other, '02-logout-confirmation');
    await other.locator('button[type=submit]').click();
    await other.waitForURL(`${stack.idp.issuer}/**`).catch(async (err: unknown) => {
      throw new Error(`the confirmed logout did not reach the IdP: at ${other.url()}: ${(await other.content()).slice(0, 600)}\n${String(err)}`);
    });
    await other.locator('#logout').click();
    await other.waitForURL(`${stack.app}/`);
    expect(stack.idp.endSessionCount).toBe(endBefore + 2);
    expect((await call<unknown[]>(other, 'app.sessions()')).body).toEqual([]);

    // The JSON logout of the ADSP docs' apps: POST /auth/logout, then to its redirectTo, which nginx routes
    // to token-handler's end-session step, which sends the browser to the IdP.
    const logout = await call<{ loggedOut: boolean; redirectTo: string }>(page, 'app.logout()');
    expect(logout, failures).toMatchObject({ status: 200, body: { loggedOut: true, redirectTo: '/auth/end-session' } });
    await page.waitForURL(`${stack.idp.issuer}/**`);
    await shot(page, '03-idp-logout');
    await page.locator('#logout').click();
    await page.waitForURL(`${stack.app}/`);
    expect(stack.idp.endSessionCount).toBe(endBefore + 3);
    expect((await call<unknown[]>(page, 'app.sessions()')).body).toEqual([]);
    // Signed out at the IdP too: logging in again asks for the password.
    await page.locator('#login').click();
    await page.waitForURL(`${stack.idp.issuer}/interaction/**`);
    await expect(page.locator('#username').isVisible()).resolves.toBe(true);
    await shot(page, '04-idp-login-again');
  });
});

// The suite writes screenshots beside the e2e ones.
mkdirSync(fileURLToPath(new URL('../../artifacts/e2e/', import.meta.url)), { recursive: true });
