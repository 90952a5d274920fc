import { describe, expect, it } from 'vitest';
import { checkCsrf, type CsrfInput } from '../../src/security/csrf.ts';

const base: CsrfInput = {
  method: 'POST',
  origin: 'https://app.example.com',
  secFetchSite: 'same-origin',
  headerToken: 'tok-123',
  cookieToken: 'tok-123',
  allowedOrigins: new Set(['https://app.example.com']),
};

describe('checkCsrf', () => {
  it('passes a same-origin request whose header matches the cookie', () => {
    expect(checkCsrf(base)).toEqual({ ok: true });
  });
  it('passes safe methods without any token', () => {
    for (const method of ['GET', 'HEAD', 'OPTIONS']) {
      expect(checkCsrf({ ...base, method, headerToken: undefined, cookieToken: undefined, origin: 'https://evil.example' }).ok).toBe(true);
    }
  });
  it.each<[string, Partial<CsrfInput>]>([
    ['missing header', { headerToken: undefined }],
    ['missing cookie', { cookieToken: undefined }],
    ['mismatched header', { headerToken: 'tok-124' }],
    ['different length header', { headerToken: 'tok-1234' }],
    ['cross-site origin', { origin: 'https://evil.example' }],
    ['null origin', { origin: 'null' }],
    ['Sec-Fetch-Site cross-site', { secFetchSite: 'cross-site' }],
    ['same-site without origin', { secFetchSite: 'same-site', origin: undefined }],
  ])('refuses %s', (_name, change) => {
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      expect(checkCsrf({ ...base, ...change, method }).ok).toBe(false);
    }
  });
  it('does not count TRACE (or an unknown method) as safe: it needs the token like any state-changing method', () => {
    for (const method of ['TRACE', 'trace', 'CONNECT', 'PROPFIND', 'QUERY']) {
      expect(checkCsrf({ ...base, method, headerToken: undefined }).ok).toBe(false);
    }
  });
  it('refuses a cross-site request even with a matching token (a token leak alone is not enough)', () => {
    expect(checkCsrf({ ...base, origin: 'https://evil.example', secFetchSite: 'cross-site' }).ok).toBe(false);
    expect(checkCsrf({ ...base, origin: 'https://app.example.com.evil.example' }).ok).toBe(false);
    expect(checkCsrf({ ...base, origin: 'https://APP.example.com' }).ok).toBe(false);
  });
  it('accepts a request without Origin when the token matches (non-browser clients with the cookie)', () => {
    expect(checkCsrf({ ...base, origin: undefined, secFetchSite: undefined }).ok).toBe(true);
  });
});
