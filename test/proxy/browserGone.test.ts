/**
 * A browser that leaves before the upstream has answered cancels the upstream request (src/proxy/browserGone.ts),
 * as Go's ReverseProxy and nginx do: the upstream sees its connection close instead of working on for
 * nobody, the pooled connection is freed, and the request is counted as 499 with an info line. A browser
 * that leaves once the response has begun changes nothing of that: the stream ends as before, no 499.
 *
 * The upstream is a real node:http server that holds each request until the test lets it go. Every target
 * timeout is far longer than the test's own: only the cancellation can end a held request in time.
 */
import { request as httpRequest, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { memoryLogger, startTokenHandler, type Running } from '../ops/support.ts';
import { testConfig, testTarget } from '../support/config.ts';
import { rawRequest } from './support.ts';

const T = '/token-handler/v1/targets';
/** Far beyond the test timeout (30 s): a held request that ends did not end by the deadline. */
const LONG_TIMEOUT_MS = 600_000;
/** vi.waitFor polls until the assertion holds, as long as the test's own timeout allows. */
const POLL = { timeout: 30_000, interval: 10 };

interface Held {
  path: string;
  request: IncomingMessage;
  response: ServerResponse;
  /** Resolves when the upstream's side of the exchange closed. */
  closed: Promise<void>;
  isClosed(): boolean;
}

describe('a browser that leaves before the upstream answers', () => {
  let upstream: Server;
  let th: Running;
  const logs = memoryLogger('info');
  let held: Held[] = [];
  /** The upstream connections that answered /now requests. */
  let answeredOn: Socket[] = [];
  /** The paths of the requests token-handler's server has received (its own 'request' event). */
  let arrived: string[] = [];

  beforeAll(async () => {
    upstream = createServer((request, response) => {
      if (request.url?.startsWith('/now')) {
        answeredOn.push(request.socket);
        return void response.end('{"ok":true}');
      }
      let isClosed = false;
      const closed = new Promise<void>((resolve) =>
        response.once('close', () => {
          isClosed = true;
          resolve();
        }),
      );
      held.push({ path: request.url ?? '', request, response, closed, isClosed: () => isClosed });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const port = (upstream.address() as AddressInfo).port;
    th = await startTokenHandler(
      testConfig({
        logLevel: 'info',
        targets: [
          testTarget({ id: 'api', url: `http://127.0.0.1:${port}`, tokenRequirement: 'none', timeoutMs: LONG_TIMEOUT_MS }),
          // One connection: a second request waits in the pool's queue while the first is held.
          testTarget({ id: 'single', url: `http://127.0.0.1:${port}`, tokenRequirement: 'none', timeoutMs: LONG_TIMEOUT_MS, pool: { connections: 1, keepAliveTimeoutMs: 60_000, keepAliveMaxTimeoutMs: 600_000 } }),
        ],
      }),
      { logger: logs.logger },
    );
    th.app.server.on('request', (request: IncomingMessage) => arrived.push(request.url ?? ''));
  });

  afterEach(() => {
    for (const h of held) if (!h.isClosed()) h.response.destroy();
    held = [];
    answeredOn = [];
    arrived = [];
  });

  afterAll(async () => {
    await th?.app.close();
    upstream?.closeAllConnections();
    await new Promise((resolve) => upstream?.close(resolve));
  });

  async function cancelled(target: string): Promise<number> {
    const text = (await rawRequest(th.base, '/metrics')).body;
    return Number(new RegExp(`^token_handler_upstream_responses_total\\{target="${target}",status="499"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  }

  /** A browser's request, left hanging: `leave()` closes its connection. */
  function browser(path: string): { leave(): void; response: Promise<IncomingMessage | undefined> } {
    const req = httpRequest(`${th.base}${path}`, { agent: false });
    const response = new Promise<IncomingMessage | undefined>((resolve) => {
      req.once('response', resolve);
      req.once('error', () => resolve(undefined));
    });
    req.end();
    return { leave: () => req.destroy(), response };
  }

  it('the upstream request is aborted: the upstream sees its connection close, and it counts as 499', async () => {
    const before = await cancelled('api');
    const b = browser(`${T}/api/slow-report`);
    await vi.waitFor(() => expect(held.map((h) => h.path)).toEqual(['/slow-report']), POLL);
    b.leave();
    // Without the cancellation this waits for the 10-minute target timeout, and the test times out.
    await held[0]!.closed;
    expect(held[0]!.request.destroyed).toBe(true);
    await vi.waitFor(async () => expect(await cancelled('api')).toBe(before + 1), POLL);
    const line = logs.lines().find((l) => l.msg === 'the browser left before the upstream answered: upstream request cancelled');
    expect(line).toMatchObject({ level: 30, target: 'api' });
    // Nothing worse than that was logged for it.
    expect(logs.lines().filter((l) => typeof l.msg === 'string' && /upstream (unavailable|timed out)|response errored/.test(l.msg))).toEqual([]);
  });

  it('a request waiting for a pooled connection is dropped when its browser leaves: never sent, and the connection is kept', async () => {
    const first = browser(`${T}/single/first`);
    await vi.waitFor(() => expect(held.map((h) => h.path)).toEqual(['/first']), POLL);
    const before = await cancelled('single');
    // The pool's one connection is taken: this one waits in its queue.
    const queued = browser(`${T}/single/queued`);
    // Received by the service (its handler, synchronous without a session, has put it in the pool's queue
    // then; had it not yet, it is dropped in the handler, and counted all the same).
    await vi.waitFor(() => expect(arrived).toContain(`${T}/single/queued`), POLL);
    expect(await cancelled('single')).toBe(before);
    queued.leave();
    await vi.waitFor(async () => expect(await cancelled('single')).toBe(before + 1), POLL);
    // The first is answered: the connection is free, and the dropped request is not sent on it.
    held[0]!.response.end('{"first":true}');
    const res = await first.response;
    expect(res?.statusCode).toBe(200);
    const next = await rawRequest(th.base, `${T}/single/now`);
    expect(next.status).toBe(200);
    expect(held.map((h) => h.path)).toEqual(['/first']);
    // On the connection that carried the first: dropping the queued request did not cost it.
    expect(answeredOn).toEqual([held[0]!.request.socket]);
  });

  it('an interim 103 Early Hints is not the answer: a browser that leaves after it still cancels', async () => {
    const before = await cancelled('api');
    const b = browser(`${T}/api/hinted`);
    await vi.waitFor(() => expect(held.map((h) => h.path)).toEqual(['/hinted']), POLL);
    held[0]!.response.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
    // The 103 has left the upstream; whether token-handler has read it yet or not, the answer is still to come.
    b.leave();
    await held[0]!.closed;
    await vi.waitFor(async () => expect(await cancelled('api')).toBe(before + 1), POLL);
  });

  it('pipelined requests on one connection each reach the upstream, and are each cancelled when the browser leaves', async () => {
    const before = await cancelled('api');
    const socket = connect(Number(new URL(th.base).port), '127.0.0.1');
    socket.on('error', () => {});
    socket.write(`GET ${T}/api/first HTTP/1.1\r\nHost: x\r\n\r\nGET ${T}/api/second HTTP/1.1\r\nHost: x\r\n\r\n`);
    // The second one's response waits behind the first's (it has no socket yet): it is not taken for gone.
    await vi.waitFor(() => expect(held.map((h) => h.path).sort()).toEqual(['/first', '/second']), POLL);
    expect(await cancelled('api')).toBe(before);
    socket.destroy();
    await Promise.all(held.map((h) => h.closed));
    await vi.waitFor(async () => expect(await cancelled('api')).toBe(before + 2), POLL);
  });

  it('a browser that leaves once the response has begun ends the stream as before, and is no 499', async () => {
    const before = await cancelled('api');
    const b = browser(`${T}/api/stream`);
    await vi.waitFor(() => expect(held.map((h) => h.path)).toEqual(['/stream']), POLL);
    // Headers and a first chunk, then the upstream keeps the stream open.
    held[0]!.response.writeHead(200, { 'content-type': 'text/event-stream' });
    held[0]!.response.write('data: one\n\n');
    const res = await b.response;
    expect(res?.statusCode).toBe(200);
    b.leave();
    await held[0]!.closed;
    expect(await cancelled('api')).toBe(before);
  });

  it('a browser that waits gets its answer, and the service keeps serving', async () => {
    const before = await cancelled('api');
    const b = browser(`${T}/api/patient`);
    await vi.waitFor(() => expect(held.map((h) => h.path)).toEqual(['/patient']), POLL);
    held[0]!.response.end('{"patient":true}');
    const res = await b.response;
    expect(res?.statusCode).toBe(200);
    const body = await new Promise<string>((resolve) => {
      let text = '';
      res!.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res!.once('end', () => resolve(text));
    });
    expect(JSON.parse(body)).toEqual({ patient: true });
    expect(await cancelled('api')).toBe(before);
  });
});

