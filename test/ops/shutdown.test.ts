/**
 * Graceful shutdown of the real process: `node src/main.ts` (Node 24 type stripping, as in the Docker
 * image) with flags and a config file, a slow upstream request in flight through the proxy, SIGTERM.
 * The in-flight request must complete with 200, new connections must be refused, and the exit code is 0.
 *
 * Nothing here races the clock: the upstream (and the IdP) hold the in-flight request until the test has
 * seen the listener closed, so "refuses new connections while draining" is an order, not a window.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevIdp } from '../../src/demo/idp.ts';
import { startDevIdp } from '../../src/demo/idp.ts';
import { tempDir } from '../support/config.ts';
import { devIdpClientFlags } from '../support/process.ts';
import { eventually, idpHold, startUpstream, type Upstream } from '../support/reload.ts';
import { API, CALLBACK_URI } from './support.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
const HEALTHCHECK = fileURLToPath(new URL('../../src/ops/healthcheck.ts', import.meta.url));

interface Started {
  child: ChildProcess;
  base: string;
  metricsPort: number | undefined;
  output: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Every process started, killed after the tests if still running (a failed test leaves it draining). */
const children = new Set<ChildProcess>();

/** Spawns the service and resolves once it logged where it listens. */
async function startProcess(args: string[], cwd: string): Promise<Started> {
  // process.execPath: the Node 24 running the tests (the PATH one); never a system node.
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', HOME: cwd },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const listening = new Promise<{ base: string; metricsPort: number | undefined }>((resolve, reject) => {
    let base: string | undefined;
    let metricsPort: number | undefined;
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        const entry = JSON.parse(line) as { msg?: string; listener?: string };
        const m = /Server listening at (http:\/\/127\.0\.0\.1:(\d+))/.exec(entry.msg ?? '');
        if (!m) continue;
        if (entry.listener === 'metrics') metricsPort = Number(m[2]);
        else base = m[1];
      }
      if (base && (metricsPort !== undefined || !args.includes('--metrics_listen_addr'))) resolve({ base, metricsPort });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    void exit.then(({ code }) => reject(new Error(`token-handler exited (${code}) before listening:\n${out}`)));
  });
  const { base, metricsPort } = await listening;
  return { child, base, metricsPort, output: () => out, exit };
}

function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/**
 * Polls until new connections to `port` are refused. Generous: the child has 25 s of grace before it gives
 * up on the in-flight request, and a listener that is never closed fails here, not later.
 */
async function refusedEventually(port: number): Promise<void> {
  let last = '';
  await eventually(async () => (last = await connectOutcome(port)) === 'ECONNREFUSED', `port ${port} to refuse connections`, 15_000).catch((err: Error) => {
    throw new Error(`${err.message}; last outcome: ${last}`);
  });
}

describe('graceful shutdown of the real process on SIGTERM', () => {
  const hold = idpHold();
  let idp: DevIdp;
  let upstream: Upstream | undefined;
  let running: Started;

  beforeAll(async () => {
    idp = await startDevIdp({ redirectUris: [CALLBACK_URI], intercept: hold.intercept });
  });
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    // A request still held (a failed test) must not keep the upstream's close waiting.
    upstream?.releaseSlow();
    await upstream?.close();
    hold.drop();
    await idp?.close();
  });

  it('finishes the in-flight proxied request with 200, refuses new connections, exits 0', async () => {
    const dir = tempDir('th-shutdown-');
    // Answers `/slow` only when the test calls releaseSlow(), however long that takes.
    upstream = await startUpstream('slow');
    const configFile = join(dir, 'token-handler.json');
    writeFileSync(configFile, JSON.stringify({ targets: [{ id: 'slow', url: upstream.url, tokenRequirement: 'none' }] }));
    running = await startProcess(
      [
        '--listen_addr=127.0.0.1:0',
        '--metrics_listen_addr=127.0.0.1:0',
        ...devIdpClientFlags(idp.issuer),
        `--db_path=${join(dir, 'sessions.db')}`,
        `--config=${configFile}`,
        '--log_level=info',
      ],
      dir,
    );
    const { base } = running;
    const port = Number(new URL(base).port);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${running.metricsPort}/metrics`)).status).toBe(200);
    // The Docker HEALTHCHECK script finds the service from LISTEN_ADDR.
    const check = (addr: string) => spawnSync(process.execPath, [HEALTHCHECK], { env: { LISTEN_ADDR: addr }, encoding: 'utf8' }).status;
    expect(check(`127.0.0.1:${port}`)).toBe(0);

    const proxied = await fetch(`${base}${API}/targets/slow/echo`);
    expect(proxied.status).toBe(200);
    await proxied.arrayBuffer();

    const inFlight = fetch(`${base}${API}/targets/slow/slow`);
    inFlight.catch(() => undefined); // awaited below; a test failing before that leaves no unhandled rejection
    // Wait until the request has reached the upstream (which holds it), then ask the process to stop.
    await upstream.slowArrived;
    running.child.kill('SIGTERM');

    // While the request is still held: the listener closes, and the process waits for the request.
    await refusedEventually(port);
    // The metrics listener stays up while requests drain (a last scrape sees them) and closes with the app.
    expect((await fetch(`http://127.0.0.1:${running.metricsPort}/metrics`)).status).toBe(200);
    expect({ code: running.child.exitCode, signal: running.child.signalCode }, running.output()).toEqual({ code: null, signal: null });

    upstream.releaseSlow();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ upstream: 'slow', path: '/slow' });

    const { code, signal } = await running.exit;
    expect({ code, signal }, running.output()).toEqual({ code: 0, signal: null });
    expect(running.output()).toContain('shutting down');
    expect(await connectOutcome(running.metricsPort!)).toBe('ECONNREFUSED');
    expect(check(`127.0.0.1:${port}`)).toBe(1);
  });

  it('finishes an in-flight login start (IdP discovery delayed) on SIGINT and exits 0', async () => {
    const dir = tempDir('th-shutdown-');
    running = await startProcess(
      [
        '--listen_addr=127.0.0.1:0',
        ...devIdpClientFlags(idp.issuer),
        `--db_path=${join(dir, 'sessions.db')}`,
        // Longer than this test holds the discovery (the 25 s grace bounds it anyway): the login is
        // not cut for the IdP's silence on a slow machine.
        '--oidc_timeout=20s',
        '--log_level=info',
      ],
      dir,
    );
    const port = Number(new URL(running.base).port);
    // The IdP holds every request (the login's discovery) until released.
    hold.hold();
    try {
      const before = idp.requestCount;
      const inFlight = fetch(`${running.base}${API}/clients/default/auth`, { redirect: 'manual' });
      inFlight.catch(() => undefined); // awaited below; a test failing before that leaves no unhandled rejection
      // The login has reached the IdP (and waits there): now ask the process to stop.
      await eventually(async () => idp.requestCount > before, 'the login start to reach the IdP');
      running.child.kill('SIGINT');
      await refusedEventually(port);
      expect(hold.waiting).toBe(1);
      expect({ code: running.child.exitCode, signal: running.child.signalCode }, running.output()).toEqual({ code: null, signal: null });
      hold.release();
      const res = await inFlight;
      expect(res.status).toBe(302);
      expect(res.headers.get('location')).toContain(new URL(idp.issuer).origin);
    } finally {
      hold.release();
    }
    const { code } = await running.exit;
    expect(code, running.output()).toBe(0);
  });
});
