/**
 * Property-based tests (fast-check) of the three parsers an attacker feeds directly: cookie unsealing,
 * joining a request path below a target, and return_to. None may throw; the first never accepts anything
 * it did not seal, the second never yields a path outside the target, the third never a foreign origin.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readLoginAttempts } from '../../src/routes/loginState.ts';
import { joinUpstreamPath, parseUpstreamBase, rawSubPath } from '../../src/proxy/paths.ts';
import { checkReturnTo } from '../../src/security/returnTo.ts';
import { CookieSealer } from '../../src/session/cookieSealer.ts';

const sealer = new CookieSealer([Buffer.from('prop-auth-secret-0123456789abcdef')], [Buffer.from('prop-enc-secret-0123456789abcdef')]);
const PURPOSE = 'session:default';
const LATER = Date.now() + 3600_000;
const sealed = sealer.seal(PURPOSE, randomBytes(32), LATER);
const COOKIE_CHARS = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=%+/ '];

describe('property: cookie unsealing', () => {
  it('never throws and never accepts an arbitrary string', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 600 }), fc.string({ unit: fc.constantFrom(...COOKIE_CHARS), maxLength: 600 }), fc.string({ unit: 'binary', maxLength: 200 })), (value) => {
        expect(sealer.unseal(PURPOSE, value)).toBeUndefined();
        expect(readLoginAttempts(sealer, 'default', value)).toEqual([]);
      }),
      { numRuns: 2000 },
    );
  });

  it('accepts a sealed value only unmodified: every edit, truncation or extension is refused', () => {
    const edit = fc.oneof(
      fc.record({ kind: fc.constant('replace' as const), at: fc.nat(sealed.length - 1), char: fc.constantFrom(...COOKIE_CHARS) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(sealed.length - 1), char: fc.constant('') }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(sealed.length), char: fc.constantFrom(...COOKIE_CHARS) }),
    );
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
        let value = sealed;
        for (const { kind, at, char } of edits) {
          const i = Math.min(at, value.length);
          if (kind === 'replace') value = `${value.slice(0, i)}${char}${value.slice(i + 1)}`;
          else if (kind === 'truncate') value = value.slice(0, i);
          else value = `${value.slice(0, i)}${char}${value.slice(i)}`;
        }
        const result = sealer.unseal(PURPOSE, value);
        // base64url decoding ignores nothing we could add without changing the MAC input: only the original passes.
        if (value === sealed) expect(result).toBeDefined();
        else expect(result).toBeUndefined();
      }),
      { numRuns: 2000 },
    );
  });

  it('binds purpose and keys: another purpose or another key never unseals', () => {
    const other = new CookieSealer([randomBytes(32)], [randomBytes(32)]);
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 40 }), fc.uint8Array({ maxLength: 64 }), (purpose, data) => {
        const value = sealer.seal(purpose, Buffer.from(data), LATER);
        expect(sealer.unseal(purpose, value)?.data.equals(Buffer.from(data))).toBe(true);
        if (purpose !== PURPOSE) expect(sealer.unseal(PURPOSE, value)).toBeUndefined();
        expect(other.unseal(purpose, value)).toBeUndefined();
        expect(sealer.unseal(purpose, value, LATER)).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });
});

/** Path pieces that normalisers and decoders treat specially. */
const PATH_PIECES = [
  '..', '.', '%2e', '%2E', '%2e%2e', '%2E%2e', '.%2e', '%2e.', '...', '..;', '..;x', ';', '%3b', '/', '//', '%2f', '%2F', '%5c', '%5C', '\\',
  '%00', '%0d%0a', '%09', ' ', '%20', '%25', '%252e', '%252f', '%c0%ae', '%c0%af', '%e2%80%ae', '%ff', '%', '%2', '?', '#', '@', ':',
  'http:', 'evil.example', '~', 'a', 'b', 'é', '%C3%A9', 'x.y', '.hidden',
];

describe('property: joining a request path below a target', () => {
  const bases = ['http://api.internal:8080/v1', 'http://api.internal:8080/', 'https://api.internal/a/b/'].map(parseUpstreamBase);

  it('never throws; an accepted path stays on the target origin and below its base path, also once decoded', () => {
    const subPath = fc.array(fc.constantFrom(...PATH_PIECES), { maxLength: 10 }).map((pieces) => `/${pieces.join('')}`);
    const mixed = fc.oneof(subPath, fc.string({ maxLength: 40 }).map((s) => `/${s}`), fc.array(fc.constantFrom(...PATH_PIECES), { maxLength: 6 }).map((p) => `/${p.join('/')}`));
    fc.assert(
      fc.property(fc.constantFrom(...bases), mixed, (base, path) => {
        const result = joinUpstreamPath(base, path);
        if (!result.ok) return;
        // What an HTTP client builds from it (WHATWG URL: dot segments resolved, backslashes as slashes).
        const url = new URL(result.path, `${base.origin}/`);
        expect(url.origin).toBe(base.origin);
        expect(url.pathname === base.basePath || url.pathname.startsWith(`${base.basePath}/`) || (base.basePath === '' && url.pathname.startsWith('/'))).toBe(true);
        expect(result.path.startsWith(base.basePath)).toBe(true);
        // What an upstream that percent-decodes each segment sees: no dot segments, no hidden separators.
        for (const segment of result.path.slice(base.basePath.length).split('/').slice(1)) {
          const decoded = decodeURIComponent(segment.split(';')[0]!);
          expect(decoded === '.' || decoded === '..').toBe(false);
          // eslint-disable-next-line no-control-regex -- control characters are exactly what must not appear
          expect(/[/\\\u0000-\u001f\u007f]/.test(decoded)).toBe(false);
        }
        expect(result.path.includes('//')).toBe(false);
      }),
      { numRuns: 5000 },
    );
  });

  it('rawSubPath never throws and only returns what literally follows the mount path', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), fc.constantFrom('/api', '/token-handler/v1/targets/x', ''), (raw, mount) => {
        const sub = rawSubPath(raw, mount);
        if (sub === undefined) return;
        expect(raw.startsWith(`${mount}${sub}`)).toBe(true);
        expect(sub === '' || sub.startsWith('/')).toBe(true);
        expect(sub.includes('?')).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('property: return_to', () => {
  const OWN = 'https://th.example';
  const allowed = new Set([OWN, 'https://app.example']);
  const RETURN_PIECES = [
    '/', '//', '\\', '/\\', '%2f', '%5c', '%09', '%0a', '%00', 'evil.example', '@', ':', 'javascript:', 'data:', 'https:', 'http:',
    'https://app.example', 'https://th.example', 'https://evil.example', '.', '..', '%2e', 'app', '?x=//evil', '#//evil', ' ', '\t', '%252f', 'é',
  ];

  it('never throws; whatever it accepts, a browser resolves to an allowed origin', () => {
    fc.assert(
      fc.property(fc.oneof(fc.array(fc.constantFrom(...RETURN_PIECES), { minLength: 1, maxLength: 8 }).map((p) => p.join('')), fc.string({ maxLength: 50 })), (value) => {
        const result = checkReturnTo(value, allowed);
        if (!result.ok) return;
        // The Location header value, resolved as a browser does against the callback URL.
        const resolved = new URL(result.url, `${OWN}/token-handler/v1/clients/default/callback`);
        expect(allowed.has(resolved.origin)).toBe(true);
        expect(resolved.protocol === 'https:' || resolved.protocol === 'http:').toBe(true);
        expect(/[\r\n\\]/.test(result.url)).toBe(false);
      }),
      { numRuns: 5000 },
    );
  });
});
