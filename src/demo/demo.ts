import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { stringify } from 'yaml';
import { buildApp, type TokenHandlerApp } from '../app.ts';
import { loadConfig } from '../config/load.ts';
import type { Config } from '../config/types.ts';
import { startDevIdp, type DevIdp } from './idp.ts';
import { demoPage } from './page.ts';
import { startDemoUpstream, type DemoUpstream } from './upstream.ts';

export interface DemoOptions {
  /** token-handler's port (0: any free port). Default 9080. */
  port?: number;
  /** The embedded IdP's port (0: any free port). Default 9090. */
  idpPort?: number;
  /** The demo upstream's port (0: any free port). Default 9081. */
  upstreamPort?: number;
  /** Host name the browser uses for the app; the IdP lives on 127.0.0.1 so their cookies never mix. */
  appHost?: string;
  /** SQLite file; default a fresh temporary one. */
  dbPath?: string;
  /** Extra command-line flags for token-handler (e.g. `--log_level debug`); they override the demo's settings. */
  extraArgs?: string[];
  /**
   * The user's environment (`npm run demo` passes process.env): read as token-handler reads it, over the
   * demo's own settings, so `REDIS_URL=... npm run demo -- --db_type redis` works. Default: none.
   */
  env?: Readonly<Record<string, string | undefined>>;
  /** Where a `token_handler.env` file is looked for (`npm run demo`: the working directory). Default: none is read. */
  cwd?: string;
  /** Access token lifetime at the demo IdP (short values show refresh at work). */
  accessTokenTtlSec?: number;
  logLevel?: string;
}

/** Which of the demo's three servers could not listen (`DemoPortInUseError.server`). */
export type DemoServer = 'token-handler' | 'idp' | 'upstream';

/** A demo server's port is taken by another process. */
export class DemoPortInUseError extends Error {
  override readonly name = 'DemoPortInUseError';
  readonly server: DemoServer;
  readonly port: number;
  constructor(server: DemoServer, port: number) {
    super(`port ${port} (${server === 'idp' ? 'the demo IdP' : server === 'upstream' ? 'the demo upstream API' : 'token-handler'}) is already in use`);
    this.server = server;
    this.port = port;
  }
}

export interface Demo {
  url: string;
  idp: DevIdp;
  upstream: DemoUpstream;
  th: TokenHandlerApp;
  app: FastifyInstance;
  close(): Promise<void>;
}

/** Demo secrets: fixed, so a restarted demo keeps its sessions; long enough for development mode. */
const DEMO_SECRETS = {
  oidc_client_secret: 'token-handler-secret',
  session_auth_secret: 'demo-auth-secret-not-for-production-000',
  session_enc_secret: 'demo-enc-secret-not-for-production',
  session_db_key: 'demo-db-key-not-for-production-000000',
};

/**
 * The whole product on one machine: the embedded development IdP (oidc-provider, user demo/demo), a demo
 * upstream API, and token-handler on SQLite with two targets and the demo page. Configured the way a
 * user configures token-handler: the demo's settings are a config file, the lowest layer, so the user's
 * environment, token_handler.env and flags each override them (docs/configuration.md's precedence).
 */
export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const appHost = options.appHost ?? 'localhost';
  const idp = await listening('idp', options.idpPort ?? 9090, (port) =>
    startDevIdp({
      port,
      accessTokenTtlSec: options.accessTokenTtlSec ?? 300,
      // Like Keycloak, so the go-token-handler route /userinfo works with the JWT access tokens the demo API needs.
      userinfoForJwtAccessTokens: true,
      loopbackAnyPort: true,
    }),
  );
  let upstream: DemoUpstream | undefined;
  let th: TokenHandlerApp | undefined;
  try {
    upstream = await listening('upstream', options.upstreamPort ?? 9081, (port) =>
      startDemoUpstream({ port, jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource }),
    );
    const dir = mkdtempSync(join(tmpdir(), 'token-handler-demo-'));
    const configFile = join(dir, 'demo.yaml');
    writeFileSync(configFile, stringify({
      listen_addr: `127.0.0.1:${options.port ?? 9080}`,
      db_path: options.dbPath ?? join(dir, 'token-handler.db'),
      oidc_issuer: idp.issuer,
      oidc_client_id: 'token-handler',
      oidc_allow_insecure_issuer: true,
      oidc_scopes: 'openid profile email offline_access roles',
      oidc_post_login_redirect_url: '/',
      oidc_post_logout_redirect_url: '/',
      log_level: options.logLevel ?? 'info',
      ...DEMO_SECRETS,
      targets: [
        { id: 'api', url: upstream.url },
        { id: 'echo', url: `${upstream.url}/echo`, websocket: false },
      ],
    }));
    const argv = ['--config', configFile, ...(options.extraArgs ?? [])];
    const { config, warnings } = loadConfig({ argv, env: options.env ?? {}, cwd: options.cwd ?? dir });
    // Ask for consent so the demo IdP issues a refresh token with offline_access.
    for (const client of config.clients) client.extraAuthParams = { prompt: 'consent', ...client.extraAuthParams };
    const app = (th = await buildApp(config)).app;
    for (const warning of warnings) app.log.warn(`CONFIGURATION WARNING: ${warning}`);
    await app.register(demoPage);
    await listening('token-handler', config.listen.port, () => app.listen({ host: config.listen.host, port: config.listen.port }));
    const { port } = app.server.address() as { port: number };
    const origin = `${config.tls ? 'https' : 'http'}://${appHost}:${port}`;
    await registerAtIdp(idp, config, [origin, `${config.tls ? 'https' : 'http'}://127.0.0.1:${port}`]);
    const started = { idp, upstream, th };
    return {
      url: `${origin}/`,
      ...started,
      app,
      async close() {
        await app.close();
        await started.upstream.close();
        await idp.close();
      },
    };
  } catch (err) {
    await th?.app.close().catch(() => {});
    await upstream?.close().catch(() => {});
    await idp.close().catch(() => {});
    throw err;
  }
}

/**
 * The redirect URIs of every callback route token-handler serves for the demo client (the v1 callback,
 * go-token-handler's /callback, a --oidc_redirect_url path) and its post-logout URL, on each origin the
 * browser may use. Over http the client is `native` (RFC 8252: any loopback port matches); over https it
 * is a web client with exact URIs, known only once token-handler listens.
 */
async function registerAtIdp(idp: DevIdp, config: Config, origins: string[]): Promise<void> {
  const client = config.clients.find((c) => c.id === 'default');
  // Unless the user pointed the demo at an IdP or client of their own.
  if (client?.issuer !== idp.issuer || idp.getClient(client.clientId) === undefined) return;
  const callbacks = [`${config.basePath}/clients/default/callback`, ...(config.legacyRoutes ? ['/callback'] : [])];
  const redirectUris = origins.flatMap((origin) => callbacks.map((path) => `${origin}${path}`));
  if (client.redirectUrl) redirectUris.push(client.redirectUrl);
  const postLogout = origins.map((origin) => `${origin}/`);
  if (client.postLogoutRedirectUrl && /^https?:/.test(client.postLogoutRedirectUrl)) postLogout.push(client.postLogoutRedirectUrl);
  await idp.updateClient(client.clientId, {
    application_type: config.tls ? 'web' : 'native',
    redirect_uris: [...new Set(redirectUris)],
    post_logout_redirect_uris: [...new Set(postLogout)],
  });
}

/** Starts one of the demo's servers; a taken port becomes a DemoPortInUseError naming the server. */
async function listening<T>(server: DemoServer, port: number, start: (port: number) => Promise<T>): Promise<T> {
  try {
    return await start(port);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'EADDRINUSE') throw new DemoPortInUseError(server, port);
    throw err;
  }
}
