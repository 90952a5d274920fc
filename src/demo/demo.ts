import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp, type TokenHandlerApp } from '../app.ts';
import { loadConfig } from '../config/load.ts';
import { startDevIdp, type DevIdp } from './idp.ts';
import { demoPage } from './page.ts';
import { startDemoUpstream, type DemoUpstream } from './upstream.ts';

export interface DemoOptions {
  /** token-handler's port (0: any free port). */
  port?: number;
  idpPort?: number;
  upstreamPort?: number;
  /** Host name the browser uses for the app; the IdP lives on 127.0.0.1 so their cookies never mix. */
  appHost?: string;
  /** SQLite file; default a fresh temporary one. */
  dbPath?: string;
  /** Extra command-line flags for token-handler (e.g. `--log_level debug`). */
  extraArgs?: string[];
  /** Access token lifetime at the demo IdP (short values show refresh at work). */
  accessTokenTtlSec?: number;
  logLevel?: string;
}

export interface Demo {
  url: string;
  idp: DevIdp;
  upstream: DemoUpstream;
  th: TokenHandlerApp;
  app: FastifyInstance;
  close(): Promise<void>;
}

/**
 * The whole product on one machine: the embedded development IdP (oidc-provider, user demo/demo), a demo
 * upstream API, and token-handler on SQLite with two targets and the demo page. Configured through the
 * same flags a user would pass, so the demo exercises the real configuration path.
 */
export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const appHost = options.appHost ?? 'localhost';
  const port = options.port ?? 9080;
  const idp = await startDevIdp({
    port: options.idpPort ?? 9090,
    accessTokenTtlSec: options.accessTokenTtlSec ?? 300,
    redirectUris: [
      `http://${appHost}:${port}/token-handler/v1/clients/default/callback`,
      'http://127.0.0.1/token-handler/v1/clients/default/callback',
    ],
    postLogoutRedirectUris: [`http://${appHost}:${port}/`, 'http://127.0.0.1/'],
    loopbackAnyPort: true,
  });
  const upstream = await startDemoUpstream({ port: options.upstreamPort ?? 9081, jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource });
  const dir = mkdtempSync(join(tmpdir(), 'token-handler-demo-'));
  const proxyFile = join(dir, 'targets.yaml');
  writeFileSync(
    proxyFile,
    [
      'targets:',
      '  - id: api',
      `    url: ${upstream.url}`,
      '  - id: echo',
      `    url: ${upstream.url}/echo`,
      '    websocket: false',
      '',
    ].join('\n'),
  );
  const argv = [
    '--listen_addr', `127.0.0.1:${port}`,
    '--db_path', options.dbPath ?? join(dir, 'token-handler.db'),
    '--oidc_issuer', idp.issuer,
    '--oidc_client_id', 'token-handler',
    '--oidc_allow_insecure_issuer',
    '--oidc_scopes', 'openid profile email offline_access roles',
    '--oidc_post_login_redirect_url', '/',
    '--oidc_post_logout_redirect_url', '/',
    '--proxy_config', proxyFile,
    '--log_level', options.logLevel ?? 'info',
    ...(options.extraArgs ?? []),
  ];
  // Extra auth parameters: ask for consent so the demo IdP issues a refresh token with offline_access.
  const env = {
    OIDC_CLIENT_SECRET: 'token-handler-secret',
    SESSION_AUTH_SECRET: 'demo-auth-secret-not-for-production-000',
    SESSION_ENC_SECRET: 'demo-enc-secret-not-for-production',
    SESSION_DB_KEY: 'demo-db-key-not-for-production-000000',
  };
  const { config, warnings } = loadConfig({ argv, env, cwd: dir });
  for (const client of config.clients) client.extraAuthParams = { prompt: 'consent', ...client.extraAuthParams };
  const th = await buildApp(config);
  for (const warning of warnings) th.app.log.warn(`CONFIGURATION WARNING: ${warning}`);
  await th.app.register(demoPage);
  await th.app.listen({ host: config.listen.host, port: config.listen.port });
  const { port: actualPort } = th.app.server.address() as { port: number };
  const origin = `${config.tls ? 'https' : 'http'}://${appHost}:${actualPort}`;
  if (config.tls) {
    // Served over HTTPS (--tls_cert/--tls_key): loopback port matching is for http only (RFC 8252), so
    // the client becomes a web client with this exact redirect URI, known only now that we listen.
    await idp.updateClient('token-handler', {
      application_type: 'web',
      redirect_uris: [`${origin}/token-handler/v1/clients/default/callback`],
      post_logout_redirect_uris: [`${origin}/`],
    });
  }
  return {
    url: `${origin}/`,
    idp,
    upstream,
    th,
    app: th.app,
    async close() {
      await th.app.close();
      await upstream.close();
      await idp.close();
    },
  };
}
