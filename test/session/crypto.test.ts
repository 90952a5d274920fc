import { describe, expect, it } from 'vitest';
import { CookieSealer } from '../../src/session/cookieSealer.ts';
import { PayloadCipher, PayloadDecryptError } from '../../src/session/payloadCipher.ts';

const b = (s: string): Buffer => Buffer.from(s);
const AUTH = b('auth-secret-current-0123456789abcdef');
const AUTH_OLD = b('auth-secret-old-0123456789abcdef0000');
const ENC = b('enc-secret-current-0123456789ab');
const ENC_OLD = b('enc-secret-old-0123456789abcdef');
const FUTURE = Date.now() + 3_600_000;

describe('CookieSealer', () => {
  const id = Buffer.alloc(32, 7);

  it('round-trips with the current secrets and is not stale', () => {
    const sealer = new CookieSealer([AUTH], [ENC]);
    const sealed = sealer.seal('session:default', id, FUTURE);
    expect(sealed).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(sealed).not.toContain(id.toString('base64url'));
    const out = sealer.unseal('session:default', sealed);
    expect(out?.data.equals(id)).toBe(true);
    expect(out?.stale).toBe(false);
  });

  it('binds the value to its purpose: a login-state cookie is not a session cookie, nor another client', () => {
    const sealer = new CookieSealer([AUTH], [ENC]);
    const sealed = sealer.seal('login:default', id, FUTURE);
    expect(sealer.unseal('session:default', sealed)).toBeUndefined();
    expect(sealer.unseal('login:other', sealed)).toBeUndefined();
  });

  it('rejects expired values', () => {
    const sealer = new CookieSealer([AUTH], [ENC]);
    const sealed = sealer.seal('p', id, Date.now() - 1);
    expect(sealer.unseal('p', sealed)).toBeUndefined();
  });

  it('fails closed on tampering, truncation, oversize and garbage', () => {
    const sealer = new CookieSealer([AUTH], [ENC]);
    const sealed = sealer.seal('p', id, FUTURE);
    // Flip every bit position's byte in both parts (decoded, so base64 padding bits cannot hide a change).
    const [body, mac] = sealed.split('.') as [string, string];
    for (const [part, other, first] of [[body, mac, true], [mac, body, false]] as const) {
      const bytes = Buffer.from(part, 'base64url');
      for (let i = 0; i < bytes.length; i += 1) {
        const copy = Buffer.from(bytes);
        copy[i] = copy[i]! ^ 0x01;
        const changed = copy.toString('base64url');
        expect(sealer.unseal('p', first ? `${changed}.${other}` : `${other}.${changed}`)).toBeUndefined();
      }
    }
    for (const bad of [sealed.slice(0, -1), sealed.slice(1), '', '.', 'a.b', `${sealed}.x`, 'x'.repeat(5000), sealed.replace('.', '')]) {
      expect(sealer.unseal('p', bad)).toBeUndefined();
    }
  });

  it('rejects values sealed with a foreign key', () => {
    const other = new CookieSealer([b('someone-else-secret-0123456789abcd')], [ENC]);
    expect(new CookieSealer([AUTH], [ENC]).unseal('p', other.seal('p', id, FUTURE))).toBeUndefined();
  });

  it('accepts values sealed with old auth and enc secrets after rotation, and reports them stale', () => {
    const before = new CookieSealer([AUTH_OLD], [ENC_OLD]);
    const sealed = before.seal('p', id, FUTURE);
    const after = new CookieSealer([AUTH, AUTH_OLD], [ENC, ENC_OLD]);
    const out = after.unseal('p', sealed);
    expect(out?.data.equals(id)).toBe(true);
    expect(out?.stale).toBe(true);
    const resealed = after.seal('p', out!.data, FUTURE);
    expect(after.unseal('p', resealed)?.stale).toBe(false);
    // Once the old secrets are dropped, only the re-sealed value survives.
    const dropped = new CookieSealer([AUTH], [ENC]);
    expect(dropped.unseal('p', sealed)).toBeUndefined();
    expect(dropped.unseal('p', resealed)?.data.equals(id)).toBe(true);
  });

  it('rotates the auth secret alone', () => {
    const sealed = new CookieSealer([AUTH_OLD], [ENC]).seal('p', id, FUTURE);
    const out = new CookieSealer([AUTH, AUTH_OLD], [ENC]).unseal('p', sealed);
    expect(out?.stale).toBe(true);
  });

  it('derives a distinct encryption key when no encryption secret is configured', () => {
    const sealer = new CookieSealer([AUTH], []);
    const sealed = sealer.seal('p', id, FUTURE);
    expect(sealer.unseal('p', sealed)?.data.equals(id)).toBe(true);
    expect(new CookieSealer([AUTH], [AUTH]).unseal('p', sealed)).toBeUndefined();
  });

  it('accepts go-token-handler secret sizes (auth 32/64, enc 16/24/32 bytes)', () => {
    for (const authLen of [32, 64]) {
      for (const encLen of [16, 24, 32]) {
        const sealer = new CookieSealer([Buffer.alloc(authLen, 1)], [Buffer.alloc(encLen, 2)]);
        expect(sealer.unseal('p', sealer.seal('p', id, FUTURE))?.data.equals(id)).toBe(true);
      }
    }
  });
});

describe('PayloadCipher', () => {
  const KEY = b('db-key-current-0123456789abcdef!');
  const KEY_OLD = b('db-key-old-0123456789abcdef!!!!!');
  const plaintext = Buffer.from(JSON.stringify({ accessToken: 'secret-token' }));

  it('round-trips, stores a key id, never the plaintext', () => {
    const cipher = new PayloadCipher([KEY]);
    const sealed = cipher.encrypt(plaintext, 'hash-1');
    expect(sealed.startsWith(`v1.${cipher.currentKeyId}.`)).toBe(true);
    expect(sealed).not.toContain('secret-token');
    expect(cipher.decrypt(sealed, 'hash-1')).toEqual({ plaintext, stale: false });
  });

  it('uses a random IV: the same plaintext encrypts differently', () => {
    const cipher = new PayloadCipher([KEY]);
    expect(cipher.encrypt(plaintext, 'h')).not.toBe(cipher.encrypt(plaintext, 'h'));
  });

  it('binds a ciphertext to its record: copied into another record it does not decrypt', () => {
    const cipher = new PayloadCipher([KEY]);
    expect(() => cipher.decrypt(cipher.encrypt(plaintext, 'hash-1'), 'hash-2')).toThrow(PayloadDecryptError);
  });

  it('decrypts with the old key after rotation and reports it stale; re-encryption uses the new key', () => {
    const sealed = new PayloadCipher([KEY_OLD]).encrypt(plaintext, 'h');
    const rotated = new PayloadCipher([KEY, KEY_OLD]);
    const out = rotated.decrypt(sealed, 'h');
    expect(out.plaintext.equals(plaintext)).toBe(true);
    expect(out.stale).toBe(true);
    const again = rotated.encrypt(out.plaintext, 'h');
    expect(new PayloadCipher([KEY]).decrypt(again, 'h').stale).toBe(false);
    expect(() => new PayloadCipher([KEY]).decrypt(sealed, 'h')).toThrow(/unknown key/);
  });

  it('fails closed on tampering and malformed input, with a PayloadDecryptError', () => {
    const cipher = new PayloadCipher([KEY]);
    const sealed = cipher.encrypt(plaintext, 'h');
    const parts = sealed.split('.');
    const tampered = [...parts];
    tampered[3] = Buffer.from(Buffer.from(parts[3]!, 'base64url').map((x, i) => (i === 0 ? x ^ 1 : x))).toString('base64url');
    for (const bad of [tampered.join('.'), sealed.slice(0, -2), 'v2.x.y.z.w', 'garbage', '', `${sealed}.x`]) {
      expect(() => cipher.decrypt(bad, 'h')).toThrow(PayloadDecryptError);
    }
  });
});
