import { describe, expect, it } from 'vitest';
import {
  prepareResponseHeaders,
  prepareUpstreamHeaders,
  stripOwnCookies,
  type Headers,
  type UpstreamHeaderPolicy,
} from '../../src/proxy/headers.ts';
import { CookiePolicy } from '../../src/session/cookiePolicy.ts';
import { testClient, testConfig } from '../support/config.ts';

const cookies = new CookiePolicy(testConfig({ clients: [testClient({ issuer: 'https://idp.example' }), testClient({ id: 'admin', issuer: 'https://idp.example' })] }));
const isOwnCookie = (name: string): boolean => cookies.isOwnCookie(name);

const policy: UpstreamHeaderPolicy = {
  isOwnCookie,
  xsrfHeader: 'x-xsrf-token',
  extra: [['x-api-key', 'k1']],
  upstreamHost: 'api.internal:8443',
  allowMethodOverride: false,
};
const forwarded = { clientAddress: '203.0.113.7', peerTrusted: false, proto: 'https', host: 'app.example.com' };
const fromTrustedProxy = { ...forwarded, peerTrusted: true };

describe('stripOwnCookies', () => {
  it.each([
    ['session=abc; theme=dark', 'theme=dark'],
    ['theme=dark; session=abc', 'theme=dark'],
    ['__Host-session=abc; theme=dark; XSRF-TOKEN=x', 'theme=dark'],
    ['session-admin=abc;theme=dark;  th-login-default=s; __Host-th-login-admin=1; __Host-th-end-session-default=1', 'theme=dark'],
    // Exactly our names: an app's cookie that only starts like one of ours is the app's.
    ['session-prefs=1; th-login-0123456789abcdef=s; __Host-session-other=2; xsrf-token=3', 'session-prefs=1; th-login-0123456789abcdef=s; __Host-session-other=2; xsrf-token=3'],
    ['a=1; b=2', 'a=1; b=2'],
    ['a=1;b=2', 'a=1;b=2'], // untouched headers pass byte for byte
    ['session=abc', undefined],
    ['sessions=1; mysession=2; session_x=3', 'sessions=1; mysession=2; session_x=3'],
    ['', undefined],
    ['; ; a=1 ;', '; ; a=1 ;'],
    ['session=1;;a=1', 'a=1'],
    ['flag; session=1', 'flag'],
  ])('%j → %j', (header, expected) => {
    expect(stripOwnCookies(header, isOwnCookie)).toBe(expected);
  });
});

describe('hop-by-hop headers', () => {
  it('are dropped in both directions: the fixed set and whatever Connection lists', () => {
    const headers: Headers = {
      connection: 'keep-alive, X-Secret, x-other',
      'keep-alive': 'timeout=5',
      'proxy-connection': 'keep-alive',
      te: 'trailers',
      trailer: 'x',
      'transfer-encoding': 'chunked',
      upgrade: 'h2c',
      'x-secret': 's',
      'x-other': 'o',
      accept: '*/*',
    };
    expect(prepareResponseHeaders(headers, { passSetCookie: true, isOwnCookie })).toEqual({ accept: '*/*' });
    expect(prepareUpstreamHeaders(headers, policy, undefined, { ...forwarded, clientAddress: undefined })).toEqual({
      accept: '*/*',
      host: 'api.internal:8443',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'app.example.com',
      'x-api-key': 'k1',
    });
  });
});

describe('prepareUpstreamHeaders', () => {
  function browserHeaders(): Headers {
    return {
      host: 'app.example.com',
      accept: 'application/json',
      authorization: 'Bearer from-the-browser',
      'proxy-authorization': 'Basic eA==',
      cookie: 'session=sealed; XSRF-TOKEN=t; th-login-default=s; theme=dark',
      'x-xsrf-token': 't',
      connection: 'keep-alive, x-drop-me',
      'x-drop-me': '1',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      'transfer-encoding': 'chunked',
      upgrade: 'websocket',
      expect: '100-continue',
      'content-type': 'application/json',
      'content-length': '12',
    };
  }

  it('injects the token and strips the browser credentials for us', () => {
    const out = prepareUpstreamHeaders(browserHeaders(), policy, 'at-123', forwarded);
    expect(out).toEqual({
      host: 'api.internal:8443',
      accept: 'application/json',
      authorization: 'Bearer at-123',
      cookie: 'theme=dark',
      'content-type': 'application/json',
      'content-length': '12',
      'x-forwarded-for': '203.0.113.7',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'app.example.com',
      'x-api-key': 'k1',
    });
  });

  it('forwards anonymously without any Authorization', () => {
    const out = prepareUpstreamHeaders(browserHeaders(), policy, undefined, forwarded);
    expect(out.authorization).toBeUndefined();
    expect('authorization' in out).toBe(false);
  });

  it('drops the Cookie header when only our cookies were in it', () => {
    const out = prepareUpstreamHeaders({ cookie: 'session=1; XSRF-TOKEN=2' }, policy, 'a', forwarded);
    expect('cookie' in out).toBe(false);
  });

  it('from a trusted proxy, appends to X-Forwarded-For; X-Forwarded-Proto/Host are always ours', () => {
    const out = prepareUpstreamHeaders(
      { 'x-forwarded-for': '198.51.100.1, 10.0.0.1', 'x-forwarded-proto': 'gopher', 'x-forwarded-host': 'evil' },
      policy,
      undefined,
      fromTrustedProxy,
    );
    expect(out['x-forwarded-for']).toBe('198.51.100.1, 10.0.0.1, 203.0.113.7');
    expect(out['x-forwarded-proto']).toBe('https');
    expect(out['x-forwarded-host']).toBe('app.example.com');
  });

  const clientChosen = {
    forwarded: 'for=10.0.0.1;host=evil',
    'x-real-ip': '10.0.0.1',
    'true-client-ip': '10.0.0.1',
    'x-client-ip': '10.0.0.1',
    'x-forwarded-port': '8443',
    'x-forwarded-prefix': '/admin',
    'x-forwarded-server': 'evil',
    'x-original-host': 'evil',
    'x-host': 'evil',
    'x-original-url': '/admin/delete',
    'x-rewrite-url': '/admin/delete',
    'x-forwarded-for': '10.0.0.1',
  };

  it('from any other peer, X-Forwarded-For starts at the peer and no forwarding header passes', () => {
    const out = prepareUpstreamHeaders({ ...clientChosen, accept: '*/*' }, policy, undefined, forwarded);
    expect(out).toEqual({
      accept: '*/*',
      host: 'api.internal:8443',
      'x-forwarded-for': '203.0.113.7',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'app.example.com',
      'x-api-key': 'k1',
    });
  });

  it('from a trusted proxy, its forwarding headers pass', () => {
    const out = prepareUpstreamHeaders({ ...clientChosen }, policy, undefined, fromTrustedProxy);
    expect(out).toMatchObject({ ...clientChosen, 'x-forwarded-for': '10.0.0.1, 203.0.113.7' });
  });

  it('removes method-override headers unless the target allows them', () => {
    const headers = { 'x-http-method-override': 'DELETE', 'x-http-method': 'DELETE', 'x-method-override': 'DELETE' };
    const out = prepareUpstreamHeaders({ ...headers }, policy, undefined, forwarded);
    for (const name of Object.keys(headers)) expect(out[name]).toBeUndefined();
    expect(prepareUpstreamHeaders({ ...headers }, { ...policy, allowMethodOverride: true }, undefined, forwarded)).toMatchObject(headers);
  });

  it('lets the token win over a target header of the same name, and target headers over the browser', () => {
    const p: UpstreamHeaderPolicy = { ...policy, extra: [['authorization', 'Basic target'], ['x-tenant', 'fixed']] };
    expect(prepareUpstreamHeaders({ 'x-tenant': 'browser' }, p, 'tok', forwarded)).toMatchObject({ authorization: 'Bearer tok', 'x-tenant': 'fixed' });
    expect(prepareUpstreamHeaders({}, p, undefined, forwarded).authorization).toBe('Basic target');
  });

  it('a browser cannot use Connection to strip headers the proxy adds', () => {
    const out = prepareUpstreamHeaders({ connection: 'authorization, x-forwarded-for, x-api-key' }, policy, 'tok', forwarded);
    expect(out).toMatchObject({ authorization: 'Bearer tok', 'x-forwarded-for': '203.0.113.7', 'x-api-key': 'k1' });
  });
});

describe('prepareResponseHeaders', () => {
  function upstream(): Headers {
    return {
      'content-type': 'application/json',
      'set-cookie': ['upstream=1; Path=/', 'session=forged; Path=/; HttpOnly', '__Host-session=x; Path=/; Secure'],
      connection: 'keep-alive, x-internal',
      'x-internal': 'secret',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      'access-control-allow-origin': '*',
      'access-control-allow-credentials': 'true',
      vary: 'Accept',
    };
  }

  it('drops Set-Cookie, hop-by-hop and the upstream CORS headers', () => {
    expect(prepareResponseHeaders(upstream(), { passSetCookie: false, isOwnCookie })).toEqual({ 'content-type': 'application/json', vary: 'Accept' });
  });

  it('passes Set-Cookie when the target allows it, but never one named like ours', () => {
    const out = prepareResponseHeaders(upstream(), { passSetCookie: true, isOwnCookie });
    expect(out['set-cookie']).toEqual(['upstream=1; Path=/']);
    const single = prepareResponseHeaders({ 'set-cookie': 'XSRF-TOKEN=forged' }, { passSetCookie: true, isOwnCookie });
    expect('set-cookie' in single).toBe(false);
  });

  it("passes an app's Set-Cookie whose name only starts like one of ours", () => {
    const lines = ['session-prefs=compact; Path=/', 'th-login-app=1; Path=/', 'session-admin=forged; Path=/', '__Host-th-login-default=forged; Path=/; Secure'];
    const out = prepareResponseHeaders({ 'set-cookie': lines }, { passSetCookie: true, isOwnCookie });
    expect(out['set-cookie']).toEqual(['session-prefs=compact; Path=/', 'th-login-app=1; Path=/']);
  });
});
