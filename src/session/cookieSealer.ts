import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { deriveKey } from './keys.ts';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const EXPIRY_BYTES = 8;

export interface UnsealedCookie {
  data: Buffer;
  /** Sealed with an old secret: the caller should re-seal it with the current ones. */
  stale: boolean;
}

interface KeyPair {
  auth: Buffer;
  enc: Buffer;
}

/**
 * Seals small values into cookie-safe strings: encrypted (AES-256-GCM, key from SESSION_ENC_SECRET)
 * then authenticated (HMAC-SHA256, key from SESSION_AUTH_SECRET) over the cookie's purpose and content,
 * so a value sealed for one cookie (a login state) is never accepted as another (a session).
 * Old secrets are accepted on read and reported as stale, so secrets rotate without logging anyone out.
 */
export class CookieSealer {
  readonly #authKeys: Buffer[];
  readonly #encKeys: Buffer[];

  /** Secrets are listed current first. Without an encryption secret, one is derived from the auth secret. */
  constructor(authSecrets: Buffer[], encSecrets: Buffer[]) {
    if (authSecrets.length === 0) throw new Error('CookieSealer needs at least one auth secret');
    this.#authKeys = authSecrets.map((s) => deriveKey(s, 'cookie-auth'));
    this.#encKeys =
      encSecrets.length > 0
        ? encSecrets.map((s) => deriveKey(s, 'cookie-enc'))
        : authSecrets.map((s) => deriveKey(s, 'cookie-enc-from-auth'));
  }

  get #current(): KeyPair {
    return { auth: this.#authKeys[0]!, enc: this.#encKeys[0]! };
  }

  /** Seals `data` for the cookie purpose `purpose`, valid until `expiresAt` (ms since epoch). */
  seal(purpose: string, data: Buffer, expiresAt: number): string {
    const { auth, enc } = this.#current;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', enc, iv);
    cipher.setAAD(Buffer.from(purpose));
    const expiry = Buffer.alloc(EXPIRY_BYTES);
    expiry.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(expiresAt))));
    const ct = Buffer.concat([cipher.update(expiry), cipher.update(data), cipher.final()]);
    const body = Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64url');
    return `${body}.${mac(auth, purpose, body).toString('base64url')}`;
  }

  /** The sealed data, or undefined for anything forged, tampered, truncated, foreign or expired. */
  unseal(purpose: string, value: string, now: number = Date.now()): UnsealedCookie | undefined {
    if (value.length > 4096) return undefined;
    const dot = value.indexOf('.');
    if (dot <= 0 || dot !== value.lastIndexOf('.')) return undefined;
    const body = value.slice(0, dot);
    const tag = Buffer.from(value.slice(dot + 1), 'base64url');
    const authIndex = this.#authKeys.findIndex((key) => {
      const expected = mac(key, purpose, body);
      return tag.length === expected.length && timingSafeEqual(tag, expected);
    });
    if (authIndex < 0) return undefined;
    const raw = Buffer.from(body, 'base64url');
    if (raw.length < IV_BYTES + EXPIRY_BYTES + TAG_BYTES) return undefined;
    for (let encIndex = 0; encIndex < this.#encKeys.length; encIndex += 1) {
      const plain = decrypt(this.#encKeys[encIndex]!, purpose, raw);
      if (!plain) continue;
      const expiresAt = Number(plain.readBigUInt64BE(0));
      if (expiresAt <= now) return undefined;
      return { data: plain.subarray(EXPIRY_BYTES), stale: authIndex !== 0 || encIndex !== 0 };
    }
    return undefined;
  }
}

function mac(key: Buffer, purpose: string, body: string): Buffer {
  return createHmac('sha256', key).update(purpose).update('\0').update(body).digest();
}

function decrypt(key: Buffer, purpose: string, raw: Buffer): Buffer | undefined {
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(purpose));
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    return Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]);
  } catch {
    return undefined;
  }
}
