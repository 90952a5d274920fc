import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { joinUpstreamPath, parseUpstreamBase, rawSubPath, type UpstreamBase } from '../../src/proxy/paths.ts';

const echo: UpstreamBase = { origin: 'http://127.0.0.1:8080', basePath: '/echo' };
const root: UpstreamBase = { origin: 'https://api.internal', basePath: '' };

describe('parseUpstreamBase', () => {
  it('splits origin and base path, without trailing slashes', () => {
    expect(parseUpstreamBase('http://127.0.0.1:8080/echo')).toEqual(echo);
    expect(parseUpstreamBase('http://127.0.0.1:8080/echo/')).toEqual(echo);
    expect(parseUpstreamBase('https://api.internal')).toEqual(root);
    expect(parseUpstreamBase('https://api.internal/')).toEqual(root);
  });
  it('refuses URLs we cannot proxy to faithfully', () => {
    expect(() => parseUpstreamBase('ftp://x/')).toThrow(/http or https/);
    expect(() => parseUpstreamBase('http://u:p@x/')).toThrow(/credentials/);
    expect(() => parseUpstreamBase('http://x/a?b=1')).toThrow(/query/);
  });
});

describe('rawSubPath', () => {
  it.each([
    ['/api/orders', '/api/orders', ''],
    ['/api/orders?x=1', '/api/orders', ''],
    ['/api/orders/', '/api/orders', '/'],
    ['/api/orders/1/items?x=/../', '/api/orders', '/1/items'],
    ['/api/ordersX', '/api/orders', undefined],
    ['/api/%6Frders/1', '/api/orders', undefined],
    ['/x', '', '/x'],
  ])('%s below %s → %s', (url, mount, expected) => {
    expect(rawSubPath(url, mount)).toBe(expected);
  });
});

describe('joinUpstreamPath', () => {
  it.each([
    ['', '/echo'],
    ['/', '/echo/'],
    ['/a', '/echo/a'],
    ['/a/b/', '/echo/a/b/'],
    ['/a%20b', '/echo/a%20b'],
    ['/%41%62c', '/echo/%41%62c'],
    ['/file.txt', '/echo/file.txt'],
    ['/.well-known/x', '/echo/.well-known/x'],
    ['/a.b.c/..x.y', undefined], // reply-from refuses a segment starting with `..` too: so do we
    ['/a;b=1', '/echo/a;b=1'],
    ['/%25', '/echo/%25'],
    ['/~user/é', '/echo/~user/é'],
    ['/%C3%A9', '/echo/%C3%A9'],
  ])('joins %j → %j', (sub, expected) => {
    const result = joinUpstreamPath(echo, sub);
    if (expected === undefined) expect(result.ok).toBe(false);
    else expect(result).toEqual({ ok: true, path: expected });
  });

  it('joins below a root base path', () => {
    expect(joinUpstreamPath(root, '')).toEqual({ ok: true, path: '/' });
    expect(joinUpstreamPath(root, '/x')).toEqual({ ok: true, path: '/x' });
  });

  it.each([
    ['/..', 'dot-dot'],
    ['/../admin', 'dot-dot'],
    ['/a/../../admin', 'dot-dot'],
    ['/a/..', 'dot-dot'],
    ['/.', 'dot path'],
    ['/./a', 'dot path'],
    ['/%2e%2e/admin', 'dot-dot'],
    ['/%2E%2E/admin', 'dot-dot'],
    ['/%2e./admin', 'dot-dot'],
    ['/.%2E/admin', 'dot-dot'],
    ['/%2e', 'dot path'],
    ['/..;/admin', 'dot-dot'],
    ['/.;x/admin', 'dot path'],
    ['/..%2fadmin', 'encoded slash'],
    ['/a%2Fb', 'encoded slash'],
    ['/a%5cb', 'encoded slash or backslash'],
    ['/a%5Cb', 'encoded slash or backslash'],
    ['/a\\..\\b', 'backslash'],
    ['/a\\b', 'backslash'],
    ['//evil.com', 'empty path segment'],
    ['//evil.com/x', 'empty path segment'],
    ['/http://evil', 'empty path segment'],
    ['/a//b', 'empty path segment'],
    ['/a%00b', 'encoded control'],
    ['/a%0d%0aX-Injected:1', 'encoded control'],
    ['/a\u0000b', 'control character'],
    ['/a\tb', 'control character'],
    ['/a\u007fb', 'control character'],
    ['/a%7Fb', 'encoded control'],
    ['/a%', 'malformed'],
    ['/a%2', 'malformed'],
    ['/a%zz', 'malformed'],
    ['/a%80', 'not UTF-8'],
    ['/a%c3', 'not UTF-8'],
    ['/a?b', 'query or fragment'],
    ['/a#b', 'query or fragment'],
    ['a', 'must start with /'],
  ])('refuses %j (%s)', (sub, reason) => {
    const result = joinUpstreamPath(echo, sub);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });

  // Pieces that matter to path parsers, mixed with random text.
  const piece = fc.oneof(
    fc.constantFrom('/', '.', '..', '%2e', '%2E', '%2f', '%2F', '%5c', '\\', '%', '%00', '%0a', '?', '#', ';', ':', '@', 'http:', '//', '%25', '%252e', 'evil.com', 'a', 'é', ' ', '\u0000', '\uFF0E'),
    fc.string({ maxLength: 4 }),
    fc.string({ unit: 'grapheme', maxLength: 3 }),
  );
  const subPath = fc.array(piece, { maxLength: 12 }).map((parts) => `/${parts.join('')}`);
  const base = fc.constantFrom<UpstreamBase>(echo, root, { origin: 'http://10.0.0.1:9000', basePath: '/a/b' });

  it('property: never throws, and an accepted path stays below the base on the same origin', () => {
    fc.assert(
      fc.property(base, fc.oneof(subPath, fc.string()), (b, sub) => {
        const result = joinUpstreamPath(b, sub);
        if (!result.ok) return;
        // Resolve it the way an HTTP client (WHATWG URL) would.
        const url = new URL(result.path, `${b.origin}/`);
        expect(url.origin).toBe(b.origin);
        if (b.basePath !== '') expect(url.pathname === b.basePath || url.pathname.startsWith(`${b.basePath}/`)).toBe(true);
        expect(result.path.startsWith(`${b.basePath}/`) || result.path === (b.basePath || '/')).toBe(true);
        // The URL re-parse is skipped for paths without characters a URL parser would encode: for those
        // the parser must give back exactly the path.
        if (!/[ "<>^`{}\u0080-\uffff]/.test(result.path)) expect(url.pathname).toBe(result.path);
        // No dot segment survived to be resolved by anyone downstream.
        const segments = url.pathname.split('/');
        expect(segments.includes('..')).toBe(false);
        // Upstream frameworks decode the path: that must not throw, and must not reveal dot segments.
        const decoded = decodeURIComponent(result.path);
        expect(decoded.split('/').some((s) => s === '..' || s === '.')).toBe(false);
        // ...and must pass a naive traversal test too.
        expect(decoded.includes('/..') || decoded.includes('../')).toBe(false);
      }),
      { numRuns: 20_000 },
    );
  });

  it('property: an accepted path of printable ASCII is exactly what a URL parser makes of it', () => {
    const printable = fc.array(fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), { maxLength: 24 }).map((chars) => `/${chars.join('')}`);
    fc.assert(
      fc.property(base, printable, (b, sub) => {
        const result = joinUpstreamPath(b, sub);
        if (!result.ok) return;
        const url = new URL(result.path, `${b.origin}/`);
        expect(url.origin).toBe(b.origin);
        // Characters the parser percent-encodes take the checked (re-parsed) way; for the rest, the fast way.
        if (!/[ "<>^`{}]/.test(result.path)) expect(url.pathname).toBe(result.path);
      }),
      { numRuns: 20_000 },
    );
  });

  it('property: joining a plain relative path of safe segments is the identity below the base', () => {
    const segment = fc.stringMatching(/^[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,10}$/).filter((s) => !s.startsWith('..') && !s.endsWith('..'));
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), (segments) => {
        const sub = `/${segments.join('/')}`;
        expect(joinUpstreamPath(echo, sub)).toEqual({ ok: true, path: `/echo${sub}` });
      }),
    );
  });
});
