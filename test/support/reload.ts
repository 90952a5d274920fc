/**
 * Helpers of the reload and directory tests: a real upstream with a request that waits, polling for an
 * observable change, replacing a file as editors do, the service started as a child process.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { renameSync, writeFileSync } from 'node:fs';
import { cleanEnv, NODE, start, type Running } from './process.ts';

export interface Upstream {
  name: string;
  url: string;
  /** Requests to `/slow` wait until this is called. */
  releaseSlow(): void;
  /** Resolves when a `/slow` request has arrived. */
  slowArrived: Promise<void>;
  close(): Promise<void>;
}

/** An upstream answering `{ upstream: name, path }` (after `releaseSlow()` for `/slow`). */
export async function startUpstream(name: string): Promise<Upstream> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let arrived!: () => void;
  const slowArrived = new Promise<void>((resolve) => (arrived = resolve));
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const answer = (): void => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ upstream: name, path: req.url }));
    };
    if (req.url?.endsWith('/slow')) {
      arrived();
      void released.then(answer);
    } else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    releaseSlow: release,
    slowArrived,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Polls `check` until it returns true (the change is observable), or fails after a generous timeout. */
export async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * `promise`, or a failure saying `what` did not happen within `ms`: a generous bound that turns a hang
 * into a clear failure, not a measurement of how fast the machine is.
 */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting ${ms} ms for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Which upstream answered a GET through the service (`{ upstream }` of these upstreams), or the status when not 200. */
export async function upstreamOf(base: string, path: string): Promise<string | number> {
  const res = await fetch(`${base}${path}`);
  if (res.status !== 200) {
    await res.body?.cancel();
    return res.status;
  }
  return ((await res.json()) as { upstream: string }).upstream;
}

/** Replaces a file as editors and Kubernetes do (write aside, rename over). */
export function replaceFile(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/**
 * Starts the service with a config file; resolves with its base URL once it listens, on a port of its
 * choosing (port 0). With `forwardAuth`, it also serves forward-auth checks on a port of its own
 * (`--forward_auth_listen_addr=127.0.0.1:0`), whose number comes back as `forwardAuthPort`.
 */
export async function startService(configFile: string, extraArgs: string[] = [], options: { forwardAuth?: boolean } = {}): Promise<{ th: Running; base: string; forwardAuthPort: number | undefined }> {
  const forwardAuthArgs = options.forwardAuth ? ['--forward_auth_listen_addr=127.0.0.1:0'] : [];
  const th = start(NODE, ['bin/token-handler.js', '--config', configFile, '--listen_addr', '127.0.0.1:0', '--db_path', ':memory:', '--log_level', 'info', ...forwardAuthArgs, ...extraArgs], {
    env: cleanEnv({ SECRET_ONE: 'secret-one', SECRET_TWO: 'secret-two' }),
  });
  // The main listener's line (an internal listener's, e.g. forward-auth's, names its `listener`).
  const match = await th.waitFor(/^(?![^\n]*"listener":)[^\n]*Server listening at (http:\/\/127\.0\.0\.1:\d+)/m);
  const forwardAuth = options.forwardAuth ? await th.waitFor(/"listener":"forward-auth"[^\n]*Server listening at http:\/\/127\.0\.0\.1:(\d+)/) : undefined;
  return { th, base: match[1]!, forwardAuthPort: forwardAuth ? Number(forwardAuth[1]) : undefined };
}

/** A gateway's forward-auth check of `GET <uri>` without a session: `200`, or the status and error code. */
export async function forwardAuthCheck(checkPort: number, uri: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${checkPort}/`, { headers: { 'x-original-method': 'GET', 'x-original-uri': uri } });
  const body = res.status === 200 ? '' : ((await res.json()) as { error: string }).error;
  return `${res.status} ${body}`.trim();
}

/**
 * Holds a dev IdP's requests: pass `intercept` to startDevIdp. While holding, every request that arrives
 * waits unanswered until the test lets it through (`release`: handled as usual) or drops it (`drop`: its
 * connection destroyed, never handled). Nothing is timed: a held request waits as long as the test needs,
 * keeps no timer (a test process is never kept alive by it), and one that is dropped leaves no late grant.
 */
export interface IdpHold {
  intercept: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>;
  /** Requests waiting now (whether or not their client is still there). */
  readonly waiting: number;
  /** Requests arriving from now on wait. */
  hold(): void;
  /** Lets the waiting requests through and stops holding. */
  release(): void;
  /** Ends the waiting requests without an answer and stops holding. */
  drop(): void;
}

export function idpHold(): IdpHold {
  let holding = false;
  const waiting = new Map<IncomingMessage, (through: boolean) => void>();
  const settle = (through: boolean): void => {
    holding = false;
    for (const done of [...waiting.values()]) done(through);
  };
  return {
    intercept: (req) => {
      if (!holding) return Promise.resolve(false);
      return new Promise<boolean>((resolve) => {
        waiting.set(req, (through) => {
          waiting.delete(req);
          if (!through) req.socket.destroy();
          // false: the IdP handles it as usual; true: answered here (by the destroyed connection).
          resolve(!through);
        });
      });
    },
    get waiting() {
      return waiting.size;
    },
    hold() {
      holding = true;
    },
    release: () => settle(true),
    drop: () => settle(false),
  };
}
