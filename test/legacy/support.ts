/**
 * Shared setup of the go-token-handler compatibility tests: a dev IdP and the demo upstream around a free
 * port, Go's configuration files (proxy.yaml, token_handler.env) in a working directory, and the real
 * token-handler binary started there. The port is in the env file (OIDC_REDIRECT_URL), so it is chosen
 * before the binary starts: `startGoBinary` moves the setup to another port when another process took it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream, type DemoUpstream } from '../../src/demo/upstream.ts';
import { tempDir } from '../support/config.ts';
import type { Browser } from '../support/http.ts';
import { loginAtDevIdp, type FlowResult } from '../support/login.ts';
import { freePort, isAddressInUse, PORT_ATTEMPTS } from '../support/ports.ts';
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

/**
 * Starts the real token-handler binary in `dir` with `args` and the environment `env` (wait for LISTENING).
 * On a port chosen in advance, prefer `startGoBinary`, which survives the port being taken meanwhile.
 */
export function startBinary(dir: string, args: string[], env: NodeJS.ProcessEnv): Running {
  return start(NODE, [MAIN, ...args], { cwd: dir, env });
}

/** What the binary prints once it listens. */
export const LISTENING = /Server listening at/;

export interface GoStart {
  /** proxy.yaml and token_handler.env for the side as it is now (its port may have moved): see writeGoFiles. */
  files(): { proxy: string[]; env: string[] };
  /** The binary's flags for the side as it is now (`--listen-addr 127.0.0.1:${side.port}`). */
  args(): string[];
  env: NodeJS.ProcessEnv;
}

/**
 * Writes the Go files in `side.dir` and starts the binary there, resolving once it listens on `side.port`.
 * That port was free when startGoSide chose it, but another process can take it before the binary binds
 * it: when the binary exits with EADDRINUSE, the side moves to another free port (`side.port`, `side.base`
 * and the IdP client's redirect URIs), the files and flags are made again and the binary started again,
 * PORT_ATTEMPTS times in all. Read `side.base` once this has resolved.
 */
export async function startGoBinary(side: GoSide, start: GoStart): Promise<Running> {
  for (let attempt = 1; ; attempt += 1) {
    writeGoFiles(side.dir, start.files());
    const proc = startBinary(side.dir, start.args(), start.env);
    try {
      await proc.waitFor(LISTENING);
      return proc;
    } catch (err) {
      await proc.stop();
      if (attempt >= PORT_ATTEMPTS || !isAddressInUse(err)) throw err;
    }
    const port = await freePort();
    side.port = port;
    side.base = `http://127.0.0.1:${port}`;
    await side.idp.updateClient('token-handler', { redirect_uris: [`${side.base}/callback`], post_logout_redirect_uris: [`${side.base}/`] });
  }
}

/** Logs the demo user in through the legacy /login route of the token handler at `base`. */
export function legacyLogin(browser: Browser, base: string): Promise<FlowResult> {
  return loginAtDevIdp(browser, `${base}/login`, { username: 'demo', password: 'demo' });
}
