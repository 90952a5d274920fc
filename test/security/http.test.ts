/**
 * Attacks at the HTTP layer, with bytes written on raw sockets where a client library would refuse or
 * repair them: request smuggling, header injection, oversized headers and bodies (configured limits →
 * 413/431), Host-header tricks, TRACE, and the framework's own refusals — each answered with problem+json,
 * nothing forwarded, and nothing ever reaching a host other than the target's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTargets } from '../../src/config/targets.ts';
import { startDemoUpstream, type DemoUpstream, type EchoResponse } from '../../src/demo/upstream.ts';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { rawRequest, startApp, type RunningApp } from '../proxy/support.ts';
import { portOf, rawExchange, startCountingServer, statuses, type CountingServer } from './support.ts';

const T = '/token-handler/v1/targets/pub';
const PUBLIC_URL = 'http://app.example.test';
// Our XSRF pair and our public origin: a state-changing request that passes CSRF, so what is tested is the framing.
const CSRF = `Cookie: XSRF-TOKEN=t\r\nX-XSRF-TOKEN: t\r\nOrigin: ${PUBLIC_URL}\r\n`;

function problemOf(raw: string): { status: number; error: string } {
  expect(raw).toMatch(/content-type: application\/problem\+json/i);
  return JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as { status: number; error: string };
}

describe('HTTP-level attacks on the proxy and the service', () => {
  let upstream: DemoUpstream;
  let evil: CountingServer;
  let idp: DevIdp;
  let th: RunningApp;
  let port: number;

  beforeAll(async () => {
    upstream = await startDemoUpstream();
    evil = await startCountingServer();
    idp = await startDevIdp();
    th = await startApp(
      testConfig({
        publicUrl: PUBLIC_URL,
        clients: [testClient({ issuer: idp.issuer, failureRedirectUrl: '/login-failed' })],
        targets: [testTarget({ id: 'pub', url: `${upstream.url}/echo`, tokenRequirement: 'none' })],
        limits: { maxBodyBytes: 1024, maxHeaderBytes: 4096 },
      }),
    );
    port = portOf(th.base);
  });
  afterAll(async () => {
    expect(evil.requests, 'a request reached a host other than the target').toBe(0);
    await th?.close();
    await evil?.close();
    await upstream?.close();
    await idp?.close();
  });

  describe('request smuggling (raw sockets)', () => {
    it('answers two honest pipelined requests on one connection (control: a smuggled request would be seen)', async () => {
      const before = upstream.requests;
      const raw = await rawExchange(port, `GET ${T}/a HTTP/1.1\r\nHost: x\r\n\r\nGET ${T}/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(statuses(raw)).toEqual([200, 200]);
      expect(upstream.requests).toBe(before + 2);
    });

    it.each([
      ['Content-Length and Transfer-Encoding (CL.TE / TE.CL)', `POST ${T}/x HTTP/1.1\r\nHost: x\r\n${CSRF}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
      ['Transfer-Encoding and Content-Length, reversed', `POST ${T}/x HTTP/1.1\r\nHost: x\r\n${CSRF}Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n`],
      ['two different Content-Lengths', `POST ${T}/x HTTP/1.1\r\nHost: x\r\n${CSRF}Content-Length: 4\r\nContent-Length: 40\r\n\r\nabcd`],
      ['a Content-Length list', `POST ${T}/x HTTP/1.1\r\nHost: x\r\n${CSRF}Content-Length: 4, 40\r\n\r\nabcd`],
      ['chunked not last (chunked, identity)', `POST ${T}/x HTTP/1.1\r\nHost: x\r\n${CSRF}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`],
      ['an obfuscated Transfer-Encoding (space before the colon)', `POST ${T}/x HTTP/1.1\r\nHost: x\r\n${CSRF}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`],
      ['Transfer-Encoding folded onto a second line (obs-fold)', `POST ${T}/x HTTP/1.1\r\nHost: x\r\n${CSRF}Transfer-Encoding: identity\r\n chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`],
      ['bare LF line endings', `GET ${T}/x HTTP/1.1\nHost: x\n\n`],
      ['a chunk size with garbage', `POST ${T}/x HTTP/1.1\r\nHost: x\r\n${CSRF}Transfer-Encoding: chunked\r\n\r\n4;\x00\r\nabcd\r\n0\r\n\r\n`],
    ])('refuses %s with 400 problem+json; neither it nor the request hidden behind it is forwarded', async (_name, attack) => {
      const before = upstream.requests;
      const raw = await rawExchange(port, `${attack}GET ${T}/smuggled HTTP/1.1\r\nHost: x\r\n\r\n`);
      expect(statuses(raw)[0]).toBe(400);
      expect(statuses(raw)).toHaveLength(1);
      expect(problemOf(raw).error).toBe('malformed_request');
      // Whatever part was forwarded, the hidden GET never was.
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(upstream.requests).toBe(before);
    });
  });

  describe('header injection', () => {
    it.each([
      ['a bare CR inside a header value', `GET ${T}/x HTTP/1.1\r\nHost: x\r\nX-A: a\rInjected: b\r\n\r\n`],
      ['a bare LF inside a header value', `GET ${T}/x HTTP/1.1\r\nHost: x\r\nX-A: a\nInjected: b\r\n\r\n`],
      ['a NUL in a header value', `GET ${T}/x HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n`],
      ['a header name with a space', `GET ${T}/x HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n`],
    ])('refuses %s (400), forwarding nothing', async (_name, attack) => {
      const before = upstream.requests;
      const raw = await rawExchange(port, attack);
      expect(statuses(raw)[0]).toBe(400);
      expect(upstream.requests).toBe(before);
    });

    it('refuses percent-encoded CR/LF in the proxied path (400 invalid_path); in the query they stay encoded', async () => {
      const before = upstream.requests;
      const res = await rawRequest(th.base, `${T}/x%0d%0aInjected:%20b`);
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_path' });
      expect(upstream.requests).toBe(before);
      const query = await rawRequest(th.base, `${T}/x?a=%0d%0aInjected:%20b`);
      const echo = JSON.parse(query.body) as EchoResponse;
      expect(echo.headers.injected).toBeUndefined();
      expect(echo.query).toEqual({ a: '\r\nInjected: b' });
    });

    it('refuses a return_to that would split the Location header', async () => {
      const res = await rawRequest(th.base, `/token-handler/v1/clients/default/auth?return_to=${encodeURIComponent('/x\r\nSet-Cookie: a=b')}`);
      expect(res.status).toBe(400);
      expect(res.headers['set-cookie']).toBeUndefined();
    });
  });

  describe('size limits (--max_header_size 4kb, --max_body_size 1kb here)', () => {
    it('431 problem+json for a header section above the limit; just below it passes', async () => {
      const before = upstream.requests;
      const ok = await rawRequest(th.base, `${T}/x`, { headers: { 'x-pad': 'a'.repeat(3000) } });
      expect(ok.status).toBe(200);
      const raw = await rawExchange(port, `GET ${T}/x HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(5000)}\r\n\r\n`);
      expect(statuses(raw)).toEqual([431]);
      expect(problemOf(raw)).toMatchObject({ status: 431, error: 'request_header_fields_too_large' });
      const many = await rawExchange(port, `GET ${T}/x HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 1000 }, (_, i) => `X-${i}: v\r\n`).join('')}\r\n`);
      expect(statuses(many)).toEqual([431]);
      expect(upstream.requests).toBe(before + 1);
    });

    it('413 problem+json for a body above the limit (declared or chunked), forwarding nothing', async () => {
      const before = upstream.requests;
      const declared = await rawRequest(th.base, `${T}/x`, { method: 'POST', headers: { cookie: 'XSRF-TOKEN=t', 'x-xsrf-token': 't', origin: PUBLIC_URL, 'content-length': '2000' }, body: 'a'.repeat(2000) });
      expect(declared.status).toBe(413);
      expect(JSON.parse(declared.body)).toMatchObject({ error: 'payload_too_large' });
      expect(upstream.requests).toBe(before);
      const chunk = 'a'.repeat(600);
      const raw = await rawExchange(port, `POST ${T}/x HTTP/1.1\r\nHost: x\r\n${CSRF}Transfer-Encoding: chunked\r\n\r\n258\r\n${chunk}\r\n258\r\n${chunk}\r\n0\r\n\r\n`);
      expect(statuses(raw)[0]).toBe(413);
      // A body within the limit passes.
      const ok = await rawRequest(th.base, `${T}/x`, { method: 'POST', headers: { cookie: 'XSRF-TOKEN=t', 'x-xsrf-token': 't', origin: PUBLIC_URL }, body: 'a'.repeat(1000) });
      expect(ok.status).toBe(200);
      expect((JSON.parse(ok.body) as EchoResponse).bodyLength).toBe(1000);
    });

    it('413 problem+json for an oversized JSON body on a service route, too', async () => {
      const res = await rawRequest(th.base, '/token-handler/v1/clients/default', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pad: 'a'.repeat(70 * 1024) }) });
      expect(res.status).toBe(413);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(JSON.parse(res.body)).toMatchObject({ error: 'payload_too_large' });
    });
  });

  describe('Host header tricks', () => {
    it('a foreign Host never picks the upstream; with --public_url the upstream hears of the public host only', async () => {
      const before = upstream.requests;
      const res = await rawRequest(th.base, `${T}/x`, { headers: { host: evil.host, 'x-forwarded-host': evil.host, 'x-forwarded-proto': 'https' } });
      expect(res.status).toBe(200);
      const echo = JSON.parse(res.body) as EchoResponse;
      expect(echo.headers.host).toBe(new URL(upstream.url).host);
      expect(echo.headers['x-forwarded-host']).toBe(new URL(PUBLIC_URL).host);
      expect(echo.headers['x-forwarded-proto']).toBe('http');
      expect(upstream.requests).toBe(before + 1);
    });

    it.each([
      ['an absolute-form request target naming another host under the mount path', `GET http://EVIL${T}/x HTTP/1.1\r\nHost: x\r\n\r\n`, [400]],
      ['an absolute-form request target for another host', 'GET http://EVIL/ HTTP/1.1\r\nHost: x\r\n\r\n', [400, 404]],
      // Node closes a CONNECT's connection unanswered (no 'connect' listener): no response at all, no tunnel.
      ['CONNECT to another host', 'CONNECT EVIL HTTP/1.1\r\nHost: EVIL\r\n\r\n', 'closed'],
      ['userinfo in Host (x@evil)', `GET ${T}/x HTTP/1.1\r\nHost: user@EVIL\r\n\r\n`, [400]],
      ['a Host with a path', `GET ${T}/x HTTP/1.1\r\nHost: EVIL/x\r\n\r\n`, [400]],
      ['a Host with a space', `GET ${T}/x HTTP/1.1\r\nHost: a b\r\n\r\n`, [400]],
      ['an unterminated IPv6 Host', `GET ${T}/x HTTP/1.1\r\nHost: [::1\r\n\r\n`, [400]],
      ['a Host with an out-of-range port', `GET ${T}/x HTTP/1.1\r\nHost: evil.example:99999\r\n\r\n`, [400]],
      ['two Host headers', `GET ${T}/x HTTP/1.1\r\nHost: x\r\nHost: EVIL\r\n\r\n`, [400]],
      ['an empty Host', `GET ${T}/x HTTP/1.1\r\nHost: \r\n\r\n`, [400]],
    ] as [string, string, number[] | 'closed'][])('refuses %s; nothing is forwarded anywhere', async (_name, attack, expected) => {
      const before = upstream.requests;
      const evilBefore = evil.requests;
      const raw = await rawExchange(port, attack.replaceAll('EVIL', evil.host).replace(/\r\n\r\n$/, '\r\nConnection: close\r\n\r\n'), 1000);
      if (expected === 'closed') expect(raw).toBe('');
      else expect(expected).toContain(statuses(raw)[0]);
      expect(upstream.requests).toBe(before);
      expect(evil.requests).toBe(evilBefore);
    });

    it('a malformed Host on the login routes is a 400 invalid_host, never a 500 or a redirect built from it', async () => {
      for (const path of ['/token-handler/v1/clients/default/auth', `/token-handler/v1/clients/default/callback?state=${'a'.repeat(43)}&code=x`]) {
        for (const host of ['[::1', 'a b', 'user@evil.example', 'evil.example:99999']) {
          const raw = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, 1000);
          expect(statuses(raw), `${host} ${path}`).toEqual([400]);
          expect(problemOf(raw).error).toBe('invalid_host');
          expect(raw).not.toMatch(/^location:/im);
        }
      }
    });
  });

  describe('methods and framework refusals', () => {
    it('TRACE is never routed (no echo of injected credentials)', async () => {
      const before = upstream.requests;
      for (const path of [`${T}/x`, '/token-handler/v1/sessions', '/']) {
        const res = await rawRequest(th.base, path, { method: 'TRACE' });
        expect([404, 405]).toContain(res.status);
        expect(res.headers['content-type']).toContain('application/problem+json');
      }
      expect(upstream.requests).toBe(before);
    });

    it('a target configured with TRACE or CONNECT is refused at startup', () => {
      for (const method of ['TRACE', 'CONNECT']) {
        const { problems } = buildTargets(
          [{ entry: { id: 'api', url: 'http://127.0.0.1:1/', methods: ['GET', method] }, at: 'targets[0]', derivedId: false, fields: {} }],
          { basePath: '/token-handler/v1', legacyRoutes: false, clientIds: new Set(['default']) },
        );
        expect(problems.join('\n')).toContain(`${method} is never proxied`);
      }
    });

    it('a URL the router cannot decode is a 400 problem+json (invalid_path)', async () => {
      for (const path of ['/%80', `${T}/%80`, '/token-handler/v1/clients/%ff/auth']) {
        const res = await rawRequest(th.base, path);
        expect(res.status).toBe(400);
        expect(res.headers['content-type']).toContain('application/problem+json');
        expect(JSON.parse(res.body)).toMatchObject({ status: 400, error: 'invalid_path' });
      }
    });

    it('an unsupported media type is a 415 problem+json with a stable error name', async () => {
      const res = await rawRequest(th.base, '/token-handler/v1/clients/default', { method: 'POST', headers: { 'content-type': 'application/x-unknown' }, body: 'x' });
      expect(res.status).toBe(415);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(JSON.parse(res.body)).toMatchObject({ status: 415, title: 'Unsupported Media Type', error: 'unsupported_media_type' });
    });
  });
});
