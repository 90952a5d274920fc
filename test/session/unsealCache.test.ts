import { describe, expect, it } from 'vitest';
import { CookieSealer } from '../../src/session/cookieSealer.ts';
import { UnsealCache } from '../../src/session/unsealCache.ts';

const AUTH = Buffer.from('auth-secret-current-0123456789abcdef');
const ENC = Buffer.from('enc-secret-current-0123456789ab');
const id = Buffer.alloc(32, 9);
const cached = (options: { cacheMaxEntries?: number } = {}) => new CookieSealer([AUTH], [ENC], { cachePurpose: (p) => p.startsWith('session:'), ...options });

describe('the unseal cache of CookieSealer', () => {
  it('remembers a value that unsealed, returns a copy of its data, and still honours the sealed expiry', () => {
    const sealer = cached();
    const now = Date.now();
    const sealed = sealer.seal('session:default', id, now + 1000);
    const first = sealer.unseal('session:default', sealed, now);
    expect(first?.data.equals(id)).toBe(true);
    expect(sealer.cachedValues).toBe(1);
    first!.data.fill(0);
    expect(sealer.unseal('session:default', sealed, now + 10)?.data.equals(id)).toBe(true);
    // Past the sealed expiry the cached value is refused (and forgotten).
    expect(sealer.unseal('session:default', sealed, now + 1000)).toBeUndefined();
  });

  it('never answers for another purpose, a changed value or a value that failed', () => {
    const sealer = cached();
    const sealed = sealer.seal('session:a', id, Date.now() + 60_000);
    expect(sealer.unseal('session:a', sealed)).toBeDefined();
    expect(sealer.unseal('session:b', sealed)).toBeUndefined();
    const [body, mac] = sealed.split('.') as [string, string];
    const flipped = Buffer.from(mac, 'base64url');
    flipped[0] = flipped[0]! ^ 1;
    expect(sealer.unseal('session:a', `${body}.${flipped.toString('base64url')}`)).toBeUndefined();
    expect(sealer.cachedValues).toBe(1);
  });

  it('only caches the purposes it is told to, and stays within its bound', () => {
    const sealer = cached({ cacheMaxEntries: 3 });
    sealer.unseal('login:default', sealer.seal('login:default', id, Date.now() + 60_000));
    expect(sealer.cachedValues).toBe(0);
    for (let i = 0; i < 10; i += 1) sealer.unseal('session:default', sealer.seal('session:default', id, Date.now() + 60_000));
    expect(sealer.cachedValues).toBe(3);
  });

  it('forgets entries after their maximum age', () => {
    const cache = new UnsealCache(10, 100);
    cache.set('p', 'v', id, false, 10_000, 0);
    expect(cache.get('p', 'v', 50)).toBeDefined();
    expect(cache.get('p', 'v', 100)).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});
