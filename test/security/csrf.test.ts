import { describe, expect, it } from 'vitest';
import type { TargetCsrfPolicy } from '../../src/config/types.ts';
import { checkCsrf, checkTargetCsrf, safeRequestPasses, type CsrfInput, type TargetCsrfInput } from '../../src/security/csrf.ts';
import { isPlainHost } from '../../src/security/host.ts';

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

const policy = (overrides: Partial<TargetCsrfPolicy> = {}): TargetCsrfPolicy => ({ mode: 'token', allMethods: false, allowCrossSiteGet: false, ...overrides });
const targetBase: TargetCsrfInput = { ...base, policy: policy() };

describe('checkTargetCsrf: safe methods (issue 18 finding 12)', () => {
  it('refuses a cross-site GET/HEAD navigation (a link or <img> on another site) in both modes', () => {
    for (const mode of ['token', 'origin'] as const) {
      for (const method of ['GET', 'HEAD', 'OPTIONS']) {
        const result = checkTargetCsrf({ ...targetBase, method, origin: undefined, secFetchSite: 'cross-site', headerToken: undefined, policy: policy({ mode }) });
        expect(result.ok, `${mode} ${method}`).toBe(false);
      }
    }
  });
  it('passes a cross-site GET from an allowed origin (a CORS fetch), and any cross-site GET on a target that allows them', () => {
    expect(checkTargetCsrf({ ...targetBase, method: 'GET', secFetchSite: 'cross-site' }).ok).toBe(true);
    expect(checkTargetCsrf({ ...targetBase, method: 'GET', origin: undefined, secFetchSite: 'cross-site', policy: policy({ allowCrossSiteGet: true }) }).ok).toBe(true);
  });
  it('passes same-origin, same-site, user-typed and header-less GETs without a token', () => {
    for (const secFetchSite of ['same-origin', 'same-site', 'none', undefined]) {
      expect(checkTargetCsrf({ ...targetBase, method: 'GET', origin: undefined, secFetchSite, headerToken: undefined }).ok, String(secFetchSite)).toBe(true);
    }
  });
  it('with allMethods (Duende BFF), a GET needs what a POST needs', () => {
    const strict = policy({ allMethods: true });
    expect(checkTargetCsrf({ ...targetBase, method: 'GET', policy: strict }).ok).toBe(true);
    expect(checkTargetCsrf({ ...targetBase, method: 'GET', headerToken: undefined, policy: strict }).ok).toBe(false);
    expect(checkTargetCsrf({ ...targetBase, method: 'GET', origin: 'https://evil.example', secFetchSite: 'cross-site', policy: { ...strict, mode: 'origin' } }).ok).toBe(false);
  });
});

describe('checkTargetCsrf: origin mode (issue 21.5)', () => {
  const origin = policy({ mode: 'origin' });
  const post = { ...targetBase, policy: origin, headerToken: undefined, cookieToken: undefined };
  it.each<[string, Partial<TargetCsrfInput>]>([
    ['same-origin fetch without the XSRF header', { secFetchSite: 'same-origin' }],
    ['same-origin fetch without Origin', { secFetchSite: 'same-origin', origin: undefined }],
    ['a user-initiated request (Sec-Fetch-Site: none)', { secFetchSite: 'none', origin: undefined }],
    ['an allowed sibling origin (same-site)', { secFetchSite: 'same-site' }],
    ['an allowed origin elsewhere (cross-site CORS)', { secFetchSite: 'cross-site' }],
    ['an older browser: Origin only, ours', { secFetchSite: undefined }],
    ['a non-browser client: neither header', { secFetchSite: undefined, origin: undefined }],
    ['a request that also carries a matching XSRF header', { headerToken: 'tok-123', cookieToken: 'tok-123' }],
    // Sec-Fetch-Site is the browser's to set, and decides (as in Go's CrossOriginProtection): behind a proxy
    // that terminates TLS, our idea of our origin may be http:// while the page's is https://.
    ['same-origin with an Origin we do not recognise as ours', { secFetchSite: 'same-origin', origin: 'https://app.example.com:8443' }],
  ])('passes %s', (_name, change) => {
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) expect(checkTargetCsrf({ ...post, ...change, method }).ok).toBe(true);
  });
  it.each<[string, Partial<TargetCsrfInput>]>([
    ['a cross-site form post', { secFetchSite: 'cross-site', origin: 'https://evil.example' }],
    ['cross-site without Origin', { secFetchSite: 'cross-site', origin: undefined }],
    ['a sibling site that is not allowed', { secFetchSite: 'same-site', origin: 'https://other.example.com' }],
    ['same-site without Origin', { secFetchSite: 'same-site', origin: undefined }],
    ['an older browser with a foreign Origin', { secFetchSite: undefined, origin: 'https://evil.example' }],
    ['Origin: null (a sandboxed frame)', { secFetchSite: undefined, origin: 'null' }],
    ['a cross-site post even with a matching XSRF header', { secFetchSite: 'cross-site', origin: 'https://evil.example', headerToken: 'x', cookieToken: 'x' }],
  ])('refuses %s', (_name, change) => {
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) expect(checkTargetCsrf({ ...post, ...change, method }).ok).toBe(false);
  });
});

describe('safeRequestPasses: the proxy skips the origins only where checkTargetCsrf would pass anyway', () => {
  it('never says "passes" for a request checkTargetCsrf refuses, over every method, Sec-Fetch-Site and policy', () => {
    let passes = 0;
    for (const method of ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'DELETE', 'TRACE'])
      for (const secFetchSite of [undefined, 'same-origin', 'same-site', 'cross-site', 'none'])
        for (const mode of ['token', 'origin'] as const)
          for (const allMethods of [false, true])
            for (const allowCrossSiteGet of [false, true]) {
              const p = policy({ mode, allMethods, allowCrossSiteGet });
              // The worst case for a skip: no Origin, no token at all.
              const full = checkTargetCsrf({ ...targetBase, method, secFetchSite, origin: undefined, headerToken: undefined, cookieToken: undefined, allowedOrigins: new Set(), policy: p });
              if (safeRequestPasses(method, secFetchSite, p)) {
                passes += 1;
                expect(full.ok, `${method} ${secFetchSite} ${JSON.stringify(p)}`).toBe(true);
              }
            }
    // And it does skip: the same-site GET of every API call among them.
    expect(passes).toBeGreaterThan(0);
    expect(safeRequestPasses('GET', 'same-origin', policy())).toBe(true);
    expect(safeRequestPasses('GET', 'cross-site', policy())).toBe(false);
  });
});

describe('isPlainHost remembers the last plain host, and only that', () => {
  it('answers the same for a repeated value, and a bad value after a good one is still refused', () => {
    expect(isPlainHost('app.example.com:8443')).toBe(true);
    expect(isPlainHost('app.example.com:8443')).toBe(true);
    for (const bad of ['x@evil.example', 'a b', '[::1', 'app.example.com:99999', 'evil/x', '']) {
      expect(isPlainHost(bad), bad).toBe(false);
      expect(isPlainHost(bad), `${bad} again`).toBe(false);
    }
    expect(isPlainHost('app.example.com:8443')).toBe(true);
  });
});
