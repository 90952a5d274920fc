import { describe, expect, it } from 'vitest';
import { CookieJar, pathMatches } from '../support/cookie-jar.ts';

const base = 'http://127.0.0.1:8080/token-handler/v1/clients/default/callback';

describe('test cookie jar', () => {
  it('keeps attributes readable and sends Secure cookies over loopback http', () => {
    const jar = new CookieJar();
    const c = jar.setCookie('__Host-th=abc; Path=/; Secure; HttpOnly; SameSite=Strict', base);
    expect(c).toMatchObject({ name: '__Host-th', value: 'abc', secure: true, httpOnly: true, sameSite: 'Strict', hostOnly: true, path: '/' });
    expect(jar.cookieHeader('http://127.0.0.1:9999/anything')).toBe('__Host-th=abc'); // ports are ignored
    expect(jar.cookieHeader('http://localhost:8080/')).toBeUndefined(); // host-only
  });

  it('enforces cookie prefixes and SameSite=None without Secure like browsers do', () => {
    const jar = new CookieJar();
    expect(jar.setCookie('__Host-a=1; Path=/', base)).toBeUndefined();
    expect(jar.setCookie('__Host-b=1; Secure; Path=/x', base)).toBeUndefined();
    expect(jar.setCookie('__Secure-c=1', base)).toBeUndefined();
    expect(jar.setCookie('d=1; SameSite=None', base)).toBeUndefined();
    expect(jar.setCookie('e=1; Secure', 'http://example.test/')).toBeUndefined();
    expect(jar.rejected.map((r) => r.reason)).toHaveLength(5);
  });

  it('applies default path, path matching, Domain, Max-Age/Expires and deletion', () => {
    const jar = new CookieJar();
    jar.setCookie('tx=1', base); // default path = directory of the request path
    expect(jar.all('127.0.0.1')[0]?.path).toBe('/token-handler/v1/clients/default');
    expect(jar.cookieHeader('http://127.0.0.1/token-handler/v1/clients/default/x')).toBe('tx=1');
    expect(jar.cookieHeader('http://127.0.0.1/token-handler/v1/clients/defaultx')).toBeUndefined();
    expect(pathMatches('/a/b', '/a')).toBe(true);
    expect(pathMatches('/ab', '/a')).toBe(false);

    jar.setCookie('tx=1; Max-Age=0', base);
    expect(jar.all()).toHaveLength(0);

    jar.setCookie('d=1; Domain=example.test; Path=/', 'http://app.example.test/');
    expect(jar.cookieHeader('http://api.example.test/')).toBe('d=1');
    expect(jar.setCookie('bad=1; Domain=other.test', 'http://app.example.test/')).toBeUndefined();
    expect(jar.setCookie('ip=1; Domain=0.0.1', 'http://127.0.0.1/')).toBeUndefined();

    const now = Date.now();
    jar.setCookie(`old=1; Path=/; Expires=${new Date(now - 1000).toUTCString()}`, 'http://127.0.0.1/');
    jar.setCookie(`soon=1; Path=/; Expires=${new Date(now + 60_000).toUTCString()}; Max-Age=1`, 'http://127.0.0.1/', now);
    expect(jar.all('127.0.0.1').map((c) => c.name)).toEqual(['soon']);
    expect(jar.cookiesFor('http://127.0.0.1/', now + 1500)).toHaveLength(0); // Max-Age wins over Expires
  });

  it('replaces by name+domain+path and orders longer paths first', () => {
    const jar = new CookieJar();
    jar.setCookie('a=root; Path=/', base);
    jar.setCookie('a=deep; Path=/token-handler', base);
    jar.setCookie('a=root2; Path=/', base);
    expect(jar.cookieHeader('http://127.0.0.1/token-handler/x')).toBe('a=deep; a=root2');
  });
});
