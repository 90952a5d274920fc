/** Shared helpers of the multi-client / multi-tenant integration tests. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyListenOptions } from 'fastify';
import type { ClientMetadata } from 'oidc-provider';
import { buildApp, type BuildOptions, type TokenHandlerApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/types.ts';
import { startDevIdp, type DevIdp, type DevUser } from '../../src/demo/idp.ts';
import type { Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';
import { onFreePort } from '../support/ports.ts';

export const API = '/token-handler/v1';
export const TENANT_HEADER = 'x-adsp-tenant';
export const TENANT_A = 'urn:ads:platform:tenant-service:v2:/tenants/aaaa';
export const TENANT_B = 'urn:ads:platform:tenant-service:v2:/tenants/bbbb';

export interface Running {
  th: TokenHandlerApp;
  base: string;
  close(): Promise<void>;
}

export interface StartOptions extends BuildOptions {
  /** Default 0: any free port. A configuration that names its port needs `startOnOwnPort` instead. */
  port?: number;
  /**
   * SO_REUSEPORT: a second instance may then start on the same port while this one still listens (a
   * restart at the same address without a moment in which another process could take the port).
   */
  reusePort?: boolean;
}

export async function startTokenHandler(config: Config, options: StartOptions = {}): Promise<Running> {
  const { port: wanted = 0, reusePort = false, ...buildOptions } = options;
  const th = await buildApp(config, { sweeper: false, ...buildOptions });
  try {
    // Node's listen() takes reusePort (Node 22.12+); Fastify passes its options on but does not type it.
    const listen: FastifyListenOptions & { reusePort?: boolean } = { host: '127.0.0.1', port: wanted, ...(reusePort && { reusePort }) };
    await th.app.listen(listen);
  } catch (err) {
    await th.app.close();
    throw err;
  }
  const { port } = th.app.server.address() as { port: number };
  return { th, base: `http://127.0.0.1:${port}`, close: () => th.app.close() };
}

/**
 * The token handler on a port chosen before it starts, for a configuration that names it (public_url, the
 * redirect URIs it registers at the IdP): `configFor(port)` makes the configuration for the port. When
 * another process took the port between the choice and the bind, the configuration is made again for
 * another port (test/support/ports.ts). The port and the configuration used come back with the instance.
 */
export async function startOnOwnPort(
  configFor: (port: number) => Config,
  options: Omit<StartOptions, 'port'> = {},
): Promise<Running & { port: number; config: Config }> {
  return onFreePort(async (port) => {
    const config = configFor(port);
    return { ...(await startTokenHandler(config, { ...options, port })), port, config };
  });
}

/** A confidential client of the dev IdP whose loopback redirect URIs match any port (application_type native). */
export function idpClient(clientId: string, ourClientId: string, extra: Partial<ClientMetadata> = {}): ClientMetadata {
  return {
    client_id: clientId,
    client_secret: `${clientId}-secret`,
    application_type: 'native',
    redirect_uris: [`http://127.0.0.1${API}/clients/${ourClientId}/callback`],
    post_logout_redirect_uris: ['http://127.0.0.1/'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...extra,
  };
}

const TENANT_USERS: Record<'a' | 'b', DevUser> = {
  a: { username: 'alice', password: 'alice', name: 'Alice A', email: 'alice@a.example', roles: ['user'] },
  b: { username: 'bob', password: 'bob', name: 'Bob B', email: 'bob@b.example', roles: ['user'] },
};

/** The IdP of tenant A (issuer path /tenant-a, client portal-a, user alice) or B (/tenant-b, portal-b, bob) of our client `portal`. */
export function startTenantIdp(tenant: 'a' | 'b'): Promise<DevIdp> {
  return startDevIdp({ issuerPathPrefix: `/tenant-${tenant}`, clients: [idpClient(`portal-${tenant}`, 'portal')], users: [TENANT_USERS[tenant]] });
}

/**
 * YAML of our client `portal` of two tenants (scopes with offline_access, prompt=consent, back to /portal);
 * `tenants` is the entries of its tenants map, indented by six spaces.
 */
export function portalClientYaml(tenants: string): string {
  return `  - id: portal
    scopes: [openid, profile, email, offline_access, roles]
    postLoginRedirectUrl: /portal
    extraAuthParams: { prompt: consent }
    tenants:
${tenants}`;
}

/** Logs the browser in to one of our clients; returns the callback response (302 on success). */
export async function login(browser: Browser, base: string, clientId: string, username = 'demo'): Promise<Response> {
  const flow = await loginAtDevIdp(browser, `${base}${API}/clients/${clientId}/auth`, { username, password: username });
  await flow.response.body?.cancel();
  return flow.response;
}

export async function getJson<T = unknown>(browser: Browser, url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: T; headers: Headers }> {
  const res = await browser.get(url, { headers });
  const text = await res.text();
  return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as T, headers: res.headers };
}

/** Headers of a state-changing call from our own page: the XSRF cookie echoed, our Origin. */
export function csrfHeaders(browser: Browser, base: string): Record<string, string> {
  const xsrf = browser.cookie('XSRF-TOKEN', base)?.value;
  if (!xsrf) throw new Error('the browser has no XSRF cookie');
  return { 'x-xsrf-token': xsrf, origin: base, accept: 'application/json' };
}

export interface YamlConfigOptions {
  /** Sets public_url to http://127.0.0.1:{publicPort} (the port the token handler will listen on). */
  publicPort?: number;
  /** Flags after `--config token-handler.yaml`. */
  argv?: string[];
  env?: Record<string, string>;
}

/**
 * Writes token-handler.yaml in `dir`, as an operator would, and loads it: silent log, insecure (http)
 * issuers allowed, the session database in `dir`, then `rest` (clients, targets, ...).
 */
export function yamlConfig(dir: string, rest: string, options: YamlConfigOptions = {}): Config {
  const file = join(dir, 'token-handler.yaml');
  writeFileSync(
    file,
    `log_level: silent
oidc_allow_insecure_issuer: true
${options.publicPort === undefined ? '' : `public_url: http://127.0.0.1:${options.publicPort}\n`}db_path: ${join(dir, 'sessions.db')}
${rest}`,
  );
  return loadConfig({ argv: ['--config', file, ...(options.argv ?? [])], env: options.env ?? {}, cwd: dir }).config;
}

/** A call with an optional bearer token and JSON body; the answer's body parsed as JSON ({} when empty). */
export async function callJson(method: 'GET' | 'POST', url: string, bearer: string | undefined, headers: Record<string, string> = {}, body?: unknown): Promise<{ status: number; body: Record<string, unknown> & unknown[]; headers: Headers; text: string }> {
  const res = await fetch(url, {
    method,
    headers: { ...(bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: (text === '' ? {} : JSON.parse(text)) as Record<string, unknown> & unknown[], headers: res.headers, text };
}
