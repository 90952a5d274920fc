/**
 * A minimal relying party built from openid-client v6, used to prove the dev IdP works end to end
 * independently of the token handler (and to obtain real tokens in other tests).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as client from 'openid-client';
import type { Browser } from './http.ts';
import { loginAtDevIdp } from './login.ts';
import type { FlowResult, LoginOptions } from './login.ts';

export interface CallbackServer {
  /** e.g. http://127.0.0.1:54321/callback */
  readonly redirectUri: string;
  /** Full URLs (with query) received on the callback path, in order. */
  readonly received: string[];
  close(): Promise<void>;
}

/** A loopback server that just answers 200 on /callback (the test reads the code from the URL). */
export async function startCallbackServer(path = '/callback'): Promise<CallbackServer> {
  const received: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`);
    if (url.pathname === path) received.push(url.href);
    res.writeHead(url.pathname === path ? 200 : 404, { 'content-type': 'text/plain' }).end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    redirectUri: `http://127.0.0.1:${port}${path}`,
    received,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

export interface RpOptions {
  issuer: string;
  clientId?: string;
  clientSecret?: string;
  authMethod?: 'client_secret_basic' | 'client_secret_post';
}

/** openid-client Configuration for the default dev client (http issuer allowed). */
export async function discoverDevIdp(options: RpOptions): Promise<client.Configuration> {
  const secret = options.clientSecret ?? 'token-handler-secret';
  const auth = options.authMethod === 'client_secret_post' ? client.ClientSecretPost(secret) : client.ClientSecretBasic(secret);
  return client.discovery(new URL(options.issuer), options.clientId ?? 'token-handler', secret, auth, {
    execute: [client.allowInsecureRequests],
  });
}

export interface CodeFlowOptions extends LoginOptions {
  scope?: string;
  prompt?: string;
  extraParams?: Record<string, string>;
}

export interface CodeFlowResult {
  tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
  flow: FlowResult;
  authorizationUrl: URL;
}

/** Authorization code + PKCE + state through the HTML login, then the code exchange. */
export async function runCodeFlow(
  config: client.Configuration,
  browser: Browser,
  callback: CallbackServer,
  options: CodeFlowOptions = {},
): Promise<CodeFlowResult> {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: callback.redirectUri,
    scope: options.scope ?? 'openid profile email roles offline_access',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    ...(options.prompt ? { prompt: options.prompt } : { prompt: 'consent' }),
    ...options.extraParams,
  });
  const flow = await loginAtDevIdp(browser, authorizationUrl, options);
  await flow.response.body?.cancel();
  const tokens = await client.authorizationCodeGrant(config, new URL(flow.url), {
    pkceCodeVerifier: verifier,
    expectedState: state,
  });
  return { tokens, flow, authorizationUrl };
}
