/**
 * Small upstream bodies of declared length are collected and sent as one Buffer (src/proxy/http.ts):
 * the browser must get exactly the upstream's bytes and headers, and an upstream that dies before its
 * body is complete must give the browser a 502, never a truncated 200.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig, testTarget } from '../support/config.ts';
import { startApp, type RunningApp } from './support.ts';

/** An upstream that writes raw HTTP responses, chosen by the request path. */
function rawUpstream(): Promise<Server> {
  const server = createServer((socket: Socket) => {
    socket.once('data', (data: Buffer) => {
      const path = data.toString('latin1').split(' ')[1] ?? '/';
      if (path === '/not-modified') {
        // A 304 may state the length of the representation it does not send.
        socket.write('HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 1234\r\n\r\n');
        return;
      }
      if (path === '/short') {
        // Promises 100 bytes, sends 10, then closes.
        socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n0123456789');
        return;
      }
      const body = Buffer.from(JSON.stringify({ ok: true, path, padding: 'x'.repeat(3000) }));
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nx-upstream: yes\r\n\r\n`);
      // In pieces: the proxy must join them.
      socket.write(body.subarray(0, 1000));
      setTimeout(() => socket.end(body.subarray(1000)), 20);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('small upstream bodies', () => {
  let upstream: Server;
  let app: RunningApp;

  beforeAll(async () => {
    upstream = await rawUpstream();
    const { port } = upstream.address() as AddressInfo;
    app = await startApp(testConfig({ targets: [testTarget({ id: 'raw', url: `http://127.0.0.1:${port}/`, tokenRequirement: 'none' })] }));
  });
  afterAll(async () => {
    await app?.close();
    await new Promise<void>((resolve) => upstream?.close(() => resolve()));
  });

  it('arrive whole, with the upstream headers, also when the upstream sends them in pieces', async () => {
    const res = await fetch(`${app.base}/token-handler/v1/targets/raw/pieces`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('x-upstream')).toBe('yes');
    const text = await res.text();
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(text)));
    expect(JSON.parse(text)).toMatchObject({ ok: true, path: '/pieces' });
  });

  it('a 304 that states a length passes as a 304, without waiting for a body', async () => {
    const res = await fetch(`${app.base}/token-handler/v1/targets/raw/not-modified`, { headers: { 'if-none-match': '"v1"' }, signal: AbortSignal.timeout(3000) });
    expect(res.status).toBe(304);
    expect(res.headers.get('etag')).toBe('"v1"');
    expect(await res.text()).toBe('');
  });

  it('cut short by the upstream: 502, not a truncated 200', async () => {
    const res = await fetch(`${app.base}/token-handler/v1/targets/raw/short`);
    expect(res.status).toBe(502);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(await res.json()).toMatchObject({ error: 'upstream_unavailable' });
  });
});
