import { describe, expect, it } from 'vitest';
import {
  durationSeconds,
  parseCookieName,
  parseDurationMs,
  parseListenAddr,
  parseOrigin,
  parsePathPrefix,
  parseRedirectTarget,
  parseScopes,
  parseSecret,
  parseSize,
  parseTrustProxy,
} from '../../src/config/parsers.ts';

describe('durations', () => {
  it.each([
    ['90s', 90_000],
    ['15m', 900_000],
    ['8h', 28_800_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['250ms', 250],
    ['2m3s', 123_000],
    ['60', 60_000],
    ['0.5', 500],
    [' 10s ', 10_000],
  ])('%s → %i ms', (text, ms) => expect(parseDurationMs(text)).toBe(ms));

  it.each(['', 'forever', '1d', '-5s', '10 s', 's', 'h1', '5m-3s'])('refuses %j', (text) => {
    expect(() => parseDurationMs(text)).toThrow(/must be a duration like 90s/);
  });

  it('insists on whole seconds and minimums where the setting is in seconds', () => {
    expect(durationSeconds(60)('1h')).toBe(3600);
    expect(() => durationSeconds(0)('1500ms')).toThrow(/whole number of seconds/);
    expect(() => durationSeconds(60)('30s')).toThrow(/at least 60s/);
  });
});

describe('sizes', () => {
  it.each([
    ['10mb', 10 * 1024 ** 2],
    ['1gb', 1024 ** 3],
    ['512kb', 512 * 1024],
    ['16KB', 16 * 1024],
    ['1.5mb', 1.5 * 1024 ** 2],
    ['2048', 2048],
    ['100b', 100],
  ])('%s → %i bytes', (text, bytes) => expect(parseSize(text)).toBe(bytes));

  it.each(['', 'huge', '10tb', '-1', '0', 'mb'])('refuses %j', (text) => expect(() => parseSize(text)).toThrow());
});

describe('listen addresses (Go style)', () => {
  it.each([
    [':9080', { host: '0.0.0.0', port: 9080 }],
    ['127.0.0.1:8080', { host: '127.0.0.1', port: 8080 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['[::1]:9080', { host: '::1', port: 9080 }],
    ['[::]:443', { host: '::', port: 443 }],
  ])('%s', (text, address) => expect(parseListenAddr(text)).toEqual(address));

  it.each(['nonsense', '9080', '::1:9080', 'host:', ':99999', '[nope]:80', 'a b:80', 'http://x:80'])('refuses %j', (text) => {
    expect(() => parseListenAddr(text)).toThrow();
  });
});

describe('secrets', () => {
  it('reads utf8 bytes, base64: and hex:', () => {
    expect(parseSecret('my-secret-key-CHANGE-ME-IN-PROD!')?.length).toBe(32);
    expect(parseSecret(`base64:${Buffer.alloc(32, 1).toString('base64')}`)).toEqual(Buffer.alloc(32, 1));
    expect(parseSecret(`base64:${Buffer.alloc(24, 250).toString('base64url')}`)).toEqual(Buffer.alloc(24, 250));
    expect(parseSecret(`hex:${'ab'.repeat(16)}`)).toEqual(Buffer.alloc(16, 0xab));
    expect(parseSecret('')).toBeUndefined();
  });

  it('refuses short and malformed values without repeating them', () => {
    expect(() => parseSecret('fifteen-bytes!!')).toThrow('must be at least 16 bytes, got 15');
    expect(() => parseSecret(`hex:${'ab'.repeat(8)}z`)).toThrow('has the hex: prefix but is not an even number of hex digits');
    expect(() => parseSecret('base64:not base64!')).toThrow('has the base64: prefix but is not valid base64');
    expect(() => parseSecret(`base64:${Buffer.alloc(8).toString('base64')}`)).toThrow('got 8');
  });
});

describe('origins, redirect targets, paths, scopes, names', () => {
  it('normalizes origins and refuses paths', () => {
    expect(parseOrigin('https://App.example.com:443')).toBe('https://app.example.com');
    expect(parseOrigin('http://localhost:5173/')).toBe('http://localhost:5173');
    for (const bad of ['https://a.example.com/app', 'https://a.example.com?x', 'ftp://a.example.com', 'a.example.com', 'https://u:p@a.example.com']) {
      expect(() => parseOrigin(bad), bad).toThrow(/scheme:\/\/host\[:port\]/);
    }
  });

  it('accepts paths and absolute URLs as redirect targets, not protocol-relative ones', () => {
    expect(parseRedirectTarget('/app?tab=1')).toBe('/app?tab=1');
    expect(parseRedirectTarget('https://app.example.com/x?y=1')).toBe('https://app.example.com/x?y=1');
    for (const bad of ['//evil.example.com', '/\\evil.example.com', 'javascript:alert(1)', 'app']) expect(() => parseRedirectTarget(bad), bad).toThrow();
  });

  it('checks path prefixes', () => {
    expect(parsePathPrefix('/token-handler/v1')).toBe('/token-handler/v1');
    for (const bad of ['/', 'api', '/api/', '/a/../b', '/a//b', '/a?b', '/a#b', '/a b']) expect(() => parsePathPrefix(bad), bad).toThrow();
  });

  it('splits scopes on spaces and commas and requires openid', () => {
    expect(parseScopes('openid profile,email  offline_access')).toEqual(['openid', 'profile', 'email', 'offline_access']);
    expect(() => parseScopes('profile email')).toThrow('must include openid');
  });

  it('refuses cookie name prefixes that are added automatically', () => {
    expect(parseCookieName('session')).toBe('session');
    expect(() => parseCookieName('__Host-session')).toThrow(/added automatically/);
    expect(() => parseCookieName('bad name')).toThrow();
  });
});

describe('trust_proxy', () => {
  it('takes booleans or lists of addresses, CIDRs and names', () => {
    expect(parseTrustProxy('false')).toBe(false);
    expect(parseTrustProxy('TRUE')).toBe(true);
    expect(parseTrustProxy('10.0.0.0/8, ::1, fd00::/8, loopback')).toEqual(['10.0.0.0/8', '::1', 'fd00::/8', 'loopback']);
  });
  it.each(['10.0.0.0/33', 'proxy.local', '1.2.3.4/x', '::1/129'])('refuses %j', (text) => expect(() => parseTrustProxy(text)).toThrow(/must be true, false, or a comma list/));
});
