import { describe, expect, it } from 'vitest';
import {
  prepareResponseHeaders,
  prepareUpstreamHeaders,
  stripOwnCookies,
  type Headers,
  type UpstreamHeaderPolicy,
} from '../../src/security/headers.ts';
import { CookiePolicy } from '../../src/session/cookiePolicy.ts';
import { testConfig } from '../support/config.ts';

const cookies = new CookiePolicy(testConfig());
const isOwnCookie = (name: string): boolean => cookies.isOwnCookie(name);

const policy: UpstreamHeaderPolicy = {
  isOwnCookie,
  xsrfHeader: 'x-xsrf-token',
  extra: [['x-api-key', 'k1']],
  upstreamHost: 'api.internal:8443',
};
const forwarded = { clientAddress: '203.0.113.7', proto: 'https', host: 'app.example.com' };

describe('stripOwnCookies', () => {
  it.each([
    ['session=abc; theme=dark', 'theme=dark'],
    ['theme=dark; session=abc', 'theme=dark'],
    ['__Host-session=abc; theme=dark; XSRF-TOKEN=x', 'theme=dark'],
    ['session-admin=abc;theme=dark;  th-login-0123456789abcdef=s; __Host-th-login-x=1', 'theme=dark'],
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
      cookie: 'session=sealed; XSRF-TOKEN=t; th-login-abcdefabcdefabcd=s; theme=dark',
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

  it('appends to X-Forwarded-For and overrides X-Forwarded-Proto/Host', () => {
    const out = prepareUpstreamHeaders(
      { 'x-forwarded-for': '198.51.100.1, 10.0.0.1', 'x-forwarded-proto': 'gopher', 'x-forwarded-host': 'evil' },
      policy,
      undefined,
      forwarded,
    );
    expect(out['x-forwarded-for']).toBe('198.51.100.1, 10.0.0.1, 203.0.113.7');
    expect(out['x-forwarded-proto']).toBe('https');
    expect(out['x-forwarded-host']).toBe('app.example.com');
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
});
