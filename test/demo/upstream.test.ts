import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetch } from 'undici';
import { WebSocket } from 'ws';
import { startDevIdp } from '../../src/demo/idp.ts';
import type { DevIdp } from '../../src/demo/idp.ts';
import { startDemoUpstream } from '../../src/demo/upstream.ts';
import type { DemoUpstream, EchoResponse } from '../../src/demo/upstream.ts';
import { createBrowser } from '../support/http.ts';
import { discoverDevIdp, runCodeFlow, startCallbackServer } from '../support/oidc-rp.ts';

describe('demo upstream', () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let accessToken: string;

  beforeAll(async () => {
    idp = await startDevIdp();
    upstream = await startDemoUpstream({ jwksUrl: idp.jwksUrl, issuer: idp.issuer, audience: idp.apiResource });
    const cb = await startCallbackServer();
    try {
      const config = await discoverDevIdp({ issuer: idp.issuer });
      accessToken = (await runCodeFlow(config, createBrowser(), cb)).tokens.access_token;
    } finally {
      await cb.close();
    }
  });
  afterAll(async () => {
    await upstream?.close();
    await idp?.close();
  });

  it('/echo validates the IdP-issued JWT access token and reports what arrived', async () => {
    const before = upstream.requests;
    const res = await fetch(`${upstream.url}/echo/a/b?x=1&x=2&y=z`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${accessToken}`, cookie: 'c=1', 'x-custom': 'v' },
      body: 'hello',
    });
    expect(res.status).toBe(200);
    const echo = (await res.json()) as EchoResponse;
    expect(echo).toMatchObject({
      method: 'PUT',
      path: '/echo/a/b',
      query: { x: ['1', '2'], y: 'z' },
      bodyLength: 5,
      bodySha256: createHash('sha256').update('hello').digest('hex'),
    });
    expect(echo.headers).toMatchObject({ cookie: 'c=1', 'x-custom': 'v', authorization: `Bearer ${accessToken}` });
    expect(echo.token).toMatchObject({ valid: true, claims: { sub: 'demo', iss: idp.issuer, aud: idp.apiResource } });
    expect(upstream.requests).toBe(before + 1);
  });

  it('/echo reports invalid and missing tokens', async () => {
    const forged = await idp.issueToken({ sub: 'demo', aud: 'http://127.0.0.1/other' });
    const wrongAud = (await (await fetch(`${upstream.url}/echo`, { headers: { authorization: `Bearer ${forged}` } })).json()) as EchoResponse;
    expect(wrongAud.token).toMatchObject({ present: true, valid: false, error: expect.stringMatching(/aud/) });
    const none = (await (await fetch(`${upstream.url}/echo`)).json()) as EchoResponse;
    expect(none.token).toMatchObject({ present: false, valid: false });
  });

  it('/echo hashes a large streamed upload without buffering it', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const chunks = 64;
    const expected = createHash('sha256');
    for (let i = 0; i < chunks; i += 1) expected.update(chunk);
    const body = Readable.from((function* gen() { for (let i = 0; i < chunks; i += 1) yield chunk; })());
    const res = await fetch(`${upstream.url}/echo/upload`, { method: 'POST', body, duplex: 'half' });
    const echo = (await res.json()) as EchoResponse;
    expect(echo.bodyLength).toBe(chunks * chunk.length);
    expect(echo.bodySha256).toBe(expected.digest('hex'));
    expect(echo.headers['transfer-encoding']).toBe('chunked');
  });

  it('/api/hello greets the token subject and requires a valid token', async () => {
    const ok = await fetch(`${upstream.url}/api/hello`, { headers: { authorization: `Bearer ${accessToken}` } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ message: 'Hello, Demo User', sub: 'demo' });
    const denied = await fetch(`${upstream.url}/api/hello`);
    expect(denied.status).toBe(401);
    expect(denied.headers.get('www-authenticate')).toBe('Bearer');
  });

  it('/sse delivers n events', async () => {
    const res = await fetch(`${upstream.url}/sse?n=3&delay=5`);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const text = await res.text();
    const events = text.trim().split('\n\n');
    expect(events).toHaveLength(3);
    expect(events[2]).toMatch(/^id: 3\nevent: tick\ndata: \{"i":3,"n":3/);
  });

  it('/slow waits, /set-cookie sets a cookie', async () => {
    const t0 = performance.now();
    expect(await (await fetch(`${upstream.url}/slow?ms=100`)).json()).toEqual({ waitedMs: 100 });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    const res = await fetch(`${upstream.url}/set-cookie`);
    expect(res.headers.getSetCookie()).toEqual(['upstream_session=from-upstream; Path=/; HttpOnly; SameSite=Lax']);
  });

  it('/reset sends headers and part of the body, then resets the connection', async () => {
    const res = await fetch(`${upstream.url}/reset`);
    expect(res.status).toBe(200);
    await expect(res.text()).rejects.toThrow();
  });

  it('/ws reports the authorization and origin, then echoes', async () => {
    const ws = new WebSocket(`${upstream.url.replace('http', 'ws')}/ws`, {
      headers: { authorization: `Bearer ${accessToken}` },
      origin: 'http://127.0.0.1:1234',
    });
    const messages: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      ws.on('message', (data) => {
        messages.push(String(data));
        if (messages.length === 1) ws.send('ping');
        else { ws.close(); resolve(); }
      });
      ws.on('error', reject);
    });
    await done;
    expect(JSON.parse(messages[0] ?? '{}')).toMatchObject({ authorization: { present: true, valid: true, sub: 'demo' }, origin: 'http://127.0.0.1:1234' });
    expect(messages[1]).toBe('ping');
  });
});
