/** Shared helpers of the multi-client / multi-tenant integration tests. */
import type { ClientMetadata } from 'oidc-provider';
import { buildApp, type BuildOptions, type TokenHandlerApp } from '../../src/app.ts';
import type { Config } from '../../src/config/types.ts';
import type { Browser } from '../support/http.ts';
import { loginAtDevIdp } from '../support/login.ts';

export const API = '/token-handler/v1';
export const TENANT_HEADER = 'x-adsp-tenant';

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
