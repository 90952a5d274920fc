/**
 * Shared setup of the go-token-handler compatibility tests: a dev IdP and the demo upstream around a free
 * port, Go's configuration files (proxy.yaml, token_handler.env) in a working directory, and the real
 * token-handler binary started there.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.ts';
import { tempDir } from '../support/config.ts';
import type { Browser } from '../support/http.ts';
import { loginAtDevIdp, type FlowResult } from '../support/login.ts';
import { freePort } from '../support/nginx.ts';
import { NODE, ROOT, start, type Running } from '../support/process.ts';

const MAIN = join(ROOT, 'src/main.ts');

export interface GoSide {
  port: number;
  /** http://127.0.0.1:{port}, where the binary will listen. */
  base: string;
  idp: DevIdp;
  upstream: DemoUpstream;
  /** The binary's working directory. */
  dir: string;
}

/**
 * The IdP (its client's redirect URIs at the base URL of a free port) and the upstream of a go-token-handler
 * setup, and a fresh working directory named with `dirPrefix`.
 */
export async function startGoSide(dirPrefix: string): Promise<GoSide> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  // Opaque access tokens: the IdP's userinfo endpoint accepts those (it refuses audience-bound JWTs).
  const idp = await startDevIdp({ redirectUris: [`${base}/callback`], postLogoutRedirectUris: [`${base}/`], jwtAccessTokens: false });
  const upstream = await startDemoUpstream();
  return { port, base, idp, upstream, dir: tempDir(dirPrefix) };
}

/**
 * token_handler.env lines for the OIDC client of `side` and the proxy file; `clientSecret` is the value as
 * written (quoted or not).
 */
export function goOidcEnv(side: GoSide, clientSecret: string): string[] {
  return [
    `OIDC_ISSUER=${side.idp.issuer}`,
    'OIDC_CLIENT_ID=token-handler',
    `OIDC_CLIENT_SECRET=${clientSecret}`,
    `OIDC_REDIRECT_URL=${side.base}/callback`,
    `OIDC_POST_LOGIN_REDIRECT_URL=${side.base}/`,
    `OIDC_POST_LOGOUT_REDIRECT_URL=${side.base}/`,
    'PROXY_CONFIG=proxy.yaml',
  ];
}

/** token_handler.env's session keys, with go-token-handler's key sizes (auth 32 bytes, enc 16, db 32). */
export const GO_SESSION_KEYS_ENV = [
  'SESSION_AUTH_SECRET=0123456789abcdef0123456789abcdef',
  'SESSION_ENC_SECRET=0123456789abcdef',
  'SESSION_DB_KEY=abcdef0123456789abcdef0123456789',
];

/** Writes proxy.yaml and token_handler.env (one line an entry, each file ending in a newline) in `dir`. */
export function writeGoFiles(dir: string, files: { proxy: string[]; env: string[] }): void {
  writeFileSync(join(dir, 'proxy.yaml'), [...files.proxy, ''].join('\n'));
  writeFileSync(join(dir, 'token_handler.env'), [...files.env, ''].join('\n'));
}

/** Starts the real token-handler binary in `dir` with `args` and the environment `env` (wait for LISTENING). */
export function startBinary(dir: string, args: string[], env: NodeJS.ProcessEnv): Running {
  return start(NODE, [MAIN, ...args], { cwd: dir, env });
}

/** What the binary prints once it listens. */
export const LISTENING = /Server listening at/;

/** Logs the demo user in through the legacy /login route of the token handler at `base`. */
export function legacyLogin(browser: Browser, base: string): Promise<FlowResult> {
  return loginAtDevIdp(browser, `${base}/login`, { username: 'demo', password: 'demo' });
}
