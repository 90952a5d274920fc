/** Shared helpers of the multi-client / multi-tenant integration tests. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClientMetadata } from 'oidc-provider';
import { buildApp, type BuildOptions, type TokenHandlerApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/types.ts';
import { startDevIdp, type DevIdp, type DevUser } from '../../src/demo/idp.ts';
import type { Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';

export const API = '/token-handler/v1';
export const TENANT_HEADER = 'x-adsp-tenant';
export const TENANT_A = 'urn:ads:platform:tenant-service:v2:/tenants/aaaa';
export const TENANT_B = 'urn:ads:platform:tenant-service:v2:/tenants/bbbb';

export interface Running {
  th: TokenHandlerApp;
  base: string;
  close(): Promise<void>;
}

export async function startTokenHandler(config: Config, options: BuildOptions & { port?: number } = {}): Promise<Running> {
  const { port: wanted = 0, ...buildOptions } = options;
  const th = await buildApp(config, { sweeper: false, ...buildOptions });
  await th.app.listen({ host: '127.0.0.1', port: wanted });
  const { port } = th.app.server.address() as { port: number };
  return { th, base: `http://127.0.0.1:${port}`, close: () => th.app.close() };
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
