/**
 * Helpers of the security and fault suite: raw sockets (bytes exactly as written, for smuggling and
 * header-injection attempts), a server that only counts what reaches it (the "other host" nothing may
 * reach), and a small but real OpenID Provider whose token endpoint can be told to misbehave.
 */
import { createHash, createHmac, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { exportJWK, SignJWT, type JWTPayload } from 'jose';
import { parseForms } from '../support/html.ts';
import type { Browser, RequestOptions } from '../support/http.ts';

/**
 * Sends `text` on a fresh connection and collects everything until the server closes it, or until `waitMs`
 * pass without a byte once the answer has begun (a kept-alive or upgraded connection). A slow server is
 * waited for up to `firstByteMs` before its answer begins, so a loaded machine cannot cut an answer short.
 */
export function rawExchange(port: number, text: string | Buffer, waitMs = 2000, firstByteMs = 30_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(text));
    let out = '';
    let timer = setTimeout(() => socket.destroy(), firstByteMs);
    socket.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      clearTimeout(timer);
      timer = setTimeout(() => socket.destroy(), waitMs);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on('error', () => undefined);
  });
}

/** Status codes of every response in a raw exchange, in order (pipelined answers included). */
export function statuses(raw: string): number[] {
  return [...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

export function portOf(base: string): number {
  return Number(new URL(base).port);
}

/** A server that answers 200 to anything and counts it: whatever reaches it escaped. */
export interface CountingServer {
  readonly url: string;
  readonly host: string;
  readonly requests: number;
  close(): Promise<void>;
}

export async function startCountingServer(): Promise<CountingServer> {
  let requests = 0;
  const server = createServer((req, res) => {
    requests += 1;
    req.resume();
    res.end('reached');
  });
  server.on('connection', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    close: () => closeServer(server),
  };
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/**
 * How the rogue IdP's token endpoint signs (or forges) the ID token it returns.
 * - `valid`: RS256 with the key in its JWKS, every claim right (the control case);
 * - `bad-signature`: same header and kid, signed by another key (an attacker answering as the issuer);
 * - `alg-none`: unsigned (`alg: none`); `hs256`: HMAC with the client secret (algorithm confusion);
 * - `wrong-aud`, `expired`, `wrong-nonce`, `no-nonce`, `wrong-iss`: one claim wrong.
 */
export type IdTokenMode = 'valid' | 'bad-signature' | 'alg-none' | 'hs256' | 'wrong-aud' | 'expired' | 'wrong-nonce' | 'no-nonce' | 'wrong-iss';

export interface RogueIdp {
  readonly issuer: string;
  /** What the next ID tokens look like. */
  mode: IdTokenMode;
  /** The `iss` the authorization response carries (RFC 9207); default: the issuer. `null`: none. */
  authorizationIss: string | null;
  readonly tokenRequests: number;
  close(): Promise<void>;
}

interface PendingCode {
  nonce: string | undefined;
  challenge: string;
  redirectUri: string;
}

const b64url = (value: Buffer | string): string => Buffer.from(value).toString('base64url');

/**
 * A minimal, honest-looking OpenID Provider (discovery, authorize, token with PKCE and client
 * authentication, JWKS) that the token handler talks to exactly as to a real one: only the ID token it
 * returns is chosen by the test. Authorization is immediate (no login page).
 */
export async function startRogueIdp(options: { clientId: string; clientSecret: string }): Promise<RogueIdp> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const { privateKey: otherKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = randomBytes(8).toString('hex');
  const publicJwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  // Only the public members go into the JWKS.
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...jwk } = publicJwk;
  const codes = new Map<string, PendingCode>();
  let tokenRequests = 0;

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const state = { mode: 'valid' as IdTokenMode, authorizationIss: issuer as string | null };

  function json(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
  }

  async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  }

  async function idToken(nonce: string | undefined): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const claims: JWTPayload = { iss: issuer, sub: 'mallory', aud: options.clientId, iat: now, exp: now + 300, name: 'Mallory' };
    if (nonce !== undefined) claims.nonce = nonce;
    switch (state.mode) {
      case 'wrong-aud':
        claims.aud = 'another-client';
        break;
      case 'expired':
        claims.iat = now - 7200;
        claims.exp = now - 3600;
        break;
      case 'wrong-nonce':
        claims.nonce = randomBytes(16).toString('base64url');
        break;
      case 'no-nonce':
        delete claims.nonce;
        break;
      case 'wrong-iss':
        claims.iss = 'http://127.0.0.1:9/another-issuer';
        break;
      default:
        break;
    }
    if (state.mode === 'alg-none') return `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}.`;
    if (state.mode === 'hs256') {
      const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid }))}.${b64url(JSON.stringify(claims))}`;
      return `${input}.${createHmac('sha256', options.clientSecret).update(input).digest('base64url')}`;
    }
    const key: KeyObject = state.mode === 'bad-signature' ? otherKey : privateKey;
    return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).sign(key);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', issuer);
    if (url.pathname === '/.well-known/openid-configuration') {
      return json(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
        authorization_response_iss_parameter_supported: true,
      });
    }
    if (url.pathname === '/jwks') return json(res, 200, { keys: [jwk] });
    if (url.pathname === '/authorize') {
      const q = url.searchParams;
      const code = randomBytes(16).toString('base64url');
      codes.set(code, { nonce: q.get('nonce') ?? undefined, challenge: q.get('code_challenge') ?? '', redirectUri: q.get('redirect_uri') ?? '' });
      const back = new URL(q.get('redirect_uri') ?? '');
      back.searchParams.set('code', code);
      back.searchParams.set('state', q.get('state') ?? '');
      if (state.authorizationIss !== null) back.searchParams.set('iss', state.authorizationIss);
      res.writeHead(302, { location: back.href }).end();
      return;
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      tokenRequests += 1;
      const form = await readForm(req);
      const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const [id, secret] = basic ? Buffer.from(basic, 'base64').toString('utf8').split(':').map(decodeURIComponent) : [form.get('client_id'), form.get('client_secret')];
      if (id !== options.clientId || secret !== options.clientSecret) return json(res, 401, { error: 'invalid_client' });
      const pending = codes.get(form.get('code') ?? '');
      codes.delete(form.get('code') ?? '');
      const verifier = form.get('code_verifier') ?? '';
      if (!pending || pending.redirectUri !== form.get('redirect_uri') || createHash('sha256').update(verifier).digest('base64url') !== pending.challenge) {
        return json(res, 400, { error: 'invalid_grant' });
      }
      return json(res, 200, {
        access_token: randomBytes(24).toString('base64url'),
        token_type: 'Bearer',
        expires_in: 300,
        id_token: await idToken(pending.nonce),
      });
    }
    res.writeHead(404).end();
  }

  return {
    issuer,
    get mode() {
      return state.mode;
    },
    set mode(mode: IdTokenMode) {
      state.mode = mode;
    },
    get authorizationIss() {
      return state.authorizationIss;
    },
    set authorizationIss(value: string | null) {
      state.authorizationIss = value;
    },
    get tokenRequests() {
      return tokenRequests;
    },
    close: () => closeServer(server),
  };
}

/** Starts a login at `authUrl` and follows it through an IdP that authorizes at once; returns the callback's response. */
export async function loginWithoutPrompt(browser: Browser, authUrl: string): Promise<Response> {
  const start = await browser.get(authUrl);
  if (start.status !== 302) throw new Error(`login start answered ${start.status}: ${await start.text()}`);
  const authorize = await browser.get(start.headers.get('location')!);
  if (authorize.status !== 302) throw new Error(`authorize answered ${authorize.status}`);
  return browser.get(new URL(authorize.headers.get('location')!, authUrl));
}

/** Starts a login and signs in at the dev IdP, stopping at its redirect back: the callback URL (code, state, iss), not yet visited. */
export async function callbackUrlFromDevIdp(browser: Browser, base: string, authPath = '/token-handler/v1/clients/default/auth'): Promise<URL> {
  const start = await browser.get(`${base}${authPath}`);
  let url = new URL(start.headers.get('location')!);
  const idpOrigin = url.origin;
  let opts: RequestOptions = {};
  for (let step = 0; step < 20; step += 1) {
    const res = await browser.request(url, opts);
    const location = res.headers.get('location');
    if (location) {
      await res.body?.cancel();
      const next = new URL(location, url);
      if (next.origin !== idpOrigin) return next;
      url = next;
      opts = {};
      continue;
    }
    const form = parseForms(await res.text()).find((f) => 'username' in f.fields && 'password' in f.fields);
    if (!form) throw new Error(`stuck at ${url.href}`);
    url = new URL(form.action, url);
    opts = { method: form.method, body: { ...form.fields, username: 'demo', password: 'demo' } };
  }
  throw new Error('no callback URL');
}
