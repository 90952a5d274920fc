/**
 * An upstream that closes a kept-alive connection just as a request is written to it (its idle timeout, no
 * Keep-Alive hint) costs the browser nothing for a GET: the request is sent once more, on another
 * connection (src/proxy/staleRetry.ts). Nothing else is sent twice: not a request with a body, not one that
 * got a response header, not one on a connection the upstream refused from the start, and never a third time.
 *
 * The upstream is a real TCP server speaking HTTP/1.1 by hand, so that it can do exactly what a server racing
 * its idle timeout does: read the request and close the connection (FIN) or reset it (RST) without a word.
 */
import { request } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool, type buildConnector } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { upstreamExchange } from '../../src/proxy/table.ts';
import { markingResets } from '../../src/proxy/staleRetry.ts';
import { testConfig, testTarget } from '../support/config.ts';
import { rawRequest, startApp, type RunningApp } from './support.ts';

const T = '/token-handler/v1/targets';
const BRIEF_TIMEOUT_MS = 2_000;
const LATE_CLOSE_MS = 1_200;

/** What the upstream does with the nth request on a connection (n from 0) of its cth connection (c from 0). */
type Behaviour = (connection: number, n: number) => 'answer' | 'close' | 'reset' | 'half-answer' | 'hang' | 'close-late';

interface Seen {
  method: string;
  connection: number;
}

describe('an upstream that closes a kept-alive connection without answering', () => {
  let server: Server;
  let th: RunningApp;
  let behaviour: Behaviour = () => 'answer';
  let connections = 0;
  let seen: Seen[] = [];
  const sockets = new Set<Socket>();
  /** Each upstream connection by its number. */
  const byConnection = new Map<number, Socket>();

  beforeAll(async () => {
    server = createServer((socket) => {
      const connection = connections++;
      sockets.add(socket);
      byConnection.set(connection, socket);
      socket.once('close', () => sockets.delete(socket));
      socket.on('error', () => {});
      let buffered = '';
      let n = 0;
      socket.on('data', (data: Buffer) => {
        buffered += data.toString('latin1');
        for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
          const head = buffered.slice(0, end);
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          if (buffered.length < end + 4 + length) return;
          buffered = buffered.slice(end + 4 + length);
          seen.push({ method: head.slice(0, head.indexOf(' ')), connection });
          const action = behaviour(connection, n++);
          if (action === 'close') return void socket.end();
          if (action === 'reset') return void socket.resetAndDestroy();
          if (action === 'hang') return;
          // Closes unanswered after a while: the lost try has used up part of the timeout.
          if (action === 'close-late') return void setTimeout(() => socket.end(), LATE_CLOSE_MS);
          if (action === 'half-answer') {
            // A response header, then the connection ends 10 bytes into a 20-byte body.
            socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 20\r\n\r\n0123456789');
            return;
          }
          // Keep-alive, and no Keep-Alive: timeout= hint (nginx, gunicorn and Go send none).
          const body = JSON.stringify({ connection });
          const method = head.slice(0, head.indexOf(' '));
          socket.write(`HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${method === 'HEAD' ? '' : body}`);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    th = await startApp(
      testConfig({
        targets: [
          testTarget({ id: 'api', url: `http://127.0.0.1:${port}`, tokenRequirement: 'none' }),
          testTarget({ id: 'brief', url: `http://127.0.0.1:${port}`, tokenRequirement: 'none', timeoutMs: BRIEF_TIMEOUT_MS }),
        ],
      }),
    );
  });

  afterAll(async () => {
    await th?.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server?.close(resolve));
  });

  afterEach(async () => {
    behaviour = () => 'answer';
    // Every test starts with none of the earlier tests' connections in the pool: close the upstream's side
    // of each. (undici may open one more, idle, after a request aborted mid-flight: it is new, so harmless.)
    const open = [...sockets];
    for (const socket of open) socket.destroy();
    await waitFor(() => open.every((socket) => !sockets.has(socket)));
    seen = [];
  });

  async function retries(): Promise<number> {
    const text = (await rawRequest(th.base, '/metrics')).body;
    return [...text.matchAll(/^token_handler_upstream_retries_total\{upstream="[^"]+"\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  }

  /** What passes the CSRF check for a state-changing request. */
  const sameOrigin = (): Record<string, string> => ({ cookie: 'XSRF-TOKEN=t', 'x-xsrf-token': 't', origin: th.base });

  /** The upstream connection that answered (its answer names it). */
  const connectionOf = (res: { body: string }): number => (JSON.parse(res.body) as { connection: number }).connection;

  /** A first GET to `target`, answered, so its pool holds a connection that has carried a response. */
  async function warmConnection(target = 'api'): Promise<number> {
    const first = await rawRequest(th.base, `${T}/${target}/first`);
    expect(first.status).toBe(200);
    return connectionOf(first);
  }

  for (const action of ['close', 'reset'] as const) {
    it(`a GET on a reused connection the upstream ${action === 'close' ? 'closes' : 'resets'} is sent again on a new one: 200`, async () => {
      const warm = await warmConnection();
      behaviour = (connection, n) => (connection === warm && n === 1 ? action : 'answer');
      const before = await retries();
      const res = await rawRequest(th.base, `${T}/api/again`);
      expect(res.status).toBe(200);
      const answeredOn = connectionOf(res);
      expect(answeredOn).not.toBe(warm);
      // The first GET, the lost one, and the retry.
      expect(seen.map((s) => s.connection)).toEqual([warm, warm, answeredOn]);
      expect(await retries()).toBe(before + 1);
    });
  }

  it('HEAD and OPTIONS (not a preflight) are sent again too', async () => {
    await warmConnection();
    // Every connection's second request is lost.
    behaviour = (_connection, n) => (n === 1 ? 'close' : 'answer');
    const head = await rawRequest(th.base, `${T}/api/again`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    // The pool reconnects the lost connection's slot first: a GET there, then OPTIONS as its second request.
    await warmConnection();
    const options = await rawRequest(th.base, `${T}/api/again`, { method: 'OPTIONS' });
    expect(options.status).toBe(200);
    expect(seen.map((s) => s.method)).toEqual(['GET', 'HEAD', 'HEAD', 'GET', 'OPTIONS', 'OPTIONS']);
  });

  it('a POST with a body is never sent twice: 502, the upstream saw it once', async () => {
    const warm = await warmConnection();
    behaviour = (connection, n) => (connection === warm && n === 1 ? 'close' : 'answer');
    const before = await retries();
    const res = await rawRequest(th.base, `${T}/api/write`, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json', ...sameOrigin() } });
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'upstream_unavailable' });
    expect(seen.map((s) => s.method)).toEqual(['GET', 'POST']);
    expect(await retries()).toBe(before);
  });

  it('a DELETE (idempotent, not safe) is not sent twice either', async () => {
    const warm = await warmConnection();
    behaviour = (connection, n) => (connection === warm && n === 1 ? 'reset' : 'answer');
    const res = await rawRequest(th.base, `${T}/api/thing`, { method: 'DELETE', headers: sameOrigin() });
    expect(res.status).toBe(502);
    expect(seen.map((s) => s.method)).toEqual(['GET', 'DELETE']);
  });

  for (const action of ['close', 'reset'] as const) {
    it(`a new connection the upstream ${action === 'close' ? 'closes' : 'resets'} unanswered is the upstream refusing: not sent again`, async () => {
      behaviour = () => action;
      const before = await retries();
      const res = await rawRequest(th.base, `${T}/api/refused`);
      expect(res.status).toBe(502);
      expect(seen).toHaveLength(1);
      expect(await retries()).toBe(before);
    });
  }

  it('sent again once at most: a retry that fails too is the answer (502)', async () => {
    const warm = await warmConnection();
    // Every request after the first is reset, on whatever connection.
    behaviour = (connection, n) => (connection === warm && n === 0 ? 'answer' : 'reset');
    const before = await retries();
    const res = await rawRequest(th.base, `${T}/api/again`);
    expect(res.status).toBe(502);
    expect(seen).toHaveLength(3);
    expect(seen[2]!.connection).not.toBe(warm);
    expect(await retries()).toBe(before + 1);
  });

  it('a response that had begun is never asked for again: the browser gets a 502, the upstream one request', async () => {
    const warm = await warmConnection();
    behaviour = (connection, n) => (connection === warm && n === 1 ? 'half-answer' : 'answer');
    const before = await retries();
    const res = await rawRequest(th.base, `${T}/api/partial`);
    expect(res.status).toBe(502);
    expect(seen).toHaveLength(2);
    expect(await retries()).toBe(before);
  });

  it("the retry answers to the target's timeout: an upstream that then never answers gets a 504", async () => {
    const warm = await warmConnection('brief');
    behaviour = (connection, n) => (connection === warm && n === 1 ? 'close' : 'hang');
    const res = await rawRequest(th.base, `${T}/brief/again`);
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'upstream_timeout' });
    expect(seen).toHaveLength(3);
  });

  it('both tries share one timeout: the retry does not start a new one', async () => {
    const warm = await warmConnection('brief');
    behaviour = (connection, n) => (connection === warm && n === 1 ? 'close-late' : 'hang');
    // A plain timer of the target's timeout, started with the request in this (the proxy's) process: it shows
    // how late this machine runs timers right now (test/proxy/timeouts.test.ts does the same).
    const reference = sleep(BRIEF_TIMEOUT_MS).then(() => performance.now());
    const res = await rawRequest(th.base, `${T}/brief/again`);
    const answeredAt = performance.now();
    expect(res.status).toBe(504);
    expect(seen).toHaveLength(3);
    // With a timeout per try, the answer would come LATE_CLOSE_MS (1.2 s) after the reference.
    expect(answeredAt - (await reference)).toBeLessThan(LATE_CLOSE_MS / 2);
  });

  it('a browser that leaves while the retry waits for its answer cancels the retry, and the process serves on', async () => {
    const warm = await warmConnection();
    behaviour = (connection, n) => (connection === warm && n === 1 ? 'close' : connection === warm ? 'answer' : 'hang');
    const before = await retries();
    const browser = request(`${th.base}${T}/api/abandoned`);
    browser.on('error', () => {});
    browser.end();
    // The lost try and the retry have both reached the upstream: the browser goes.
    await waitFor(() => seen.length === 3);
    const retriedOn = byConnection.get(seen[2]!.connection)!;
    browser.destroy();
    // The retry is aborted with the browser's request (src/proxy/browserGone.ts): its connection closes.
    await waitFor(() => retriedOn.destroyed || retriedOn.readableEnded);
    expect(await retries()).toBe(before + 1);
    behaviour = () => 'answer';
    const res = await rawRequest(th.base, `${T}/api/after`);
    expect(res.status).toBe(200);
  });

  it('the service keeps serving afterwards', async () => {
    const res = await rawRequest(th.base, `${T}/api/fine`);
    expect(res.status).toBe(200);
  });
});

describe('a timeout while the retry waits for a connection', () => {
  it('answers on time: the retry is abandoned, not awaited', async () => {
    // Answers each connection's first request; the second is lost (closed unanswered).
    const server = createServer((socket) => {
      socket.on('error', () => {});
      let n = 0;
      socket.on('data', () => {
        if (n++ === 0) socket.write('HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\n{}');
        else socket.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const connectSlowly = 20_000;
    const base = markingResets();
    let connects = 0;
    // The first connection at once, every later one (the retry's) slowly: a saturated or distant upstream.
    const connect: buildConnector.connector = (options, callback) => {
      connects += 1;
      if (connects === 1) base(options, callback);
      else setTimeout(() => base(options, callback), connectSlowly).unref();
    };
    const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { connections: 1, connect });
    let retried = 0;
    const dispatcher = pool.compose(upstreamExchange(500, () => (retried += 1)));
    try {
      const first = await dispatcher.request({ path: '/', method: 'GET' });
      await first.body.text();
      const reference = sleep(500).then(() => performance.now());
      const failure = await dispatcher.request({ path: '/', method: 'GET' }).then(
        () => undefined,
        (err: Error & { code?: string }) => err,
      );
      const failedAt = performance.now();
      expect(retried).toBe(1);
      expect(failure?.code).toBe('UND_ERR_HEADERS_TIMEOUT');
      // Not when the retry's connection comes, 20 s later: with the machine's timer delay, on time.
      expect(failedAt - (await reference)).toBeLessThan(connectSlowly / 4);
    } finally {
      await pool.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

/** Polls until `condition` holds (no deadline of its own: the test's timeout is the bound). */
async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
}
