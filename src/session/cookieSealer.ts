import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { deriveKeyObject } from './keys.ts';
import { UnsealCache } from './unsealCache.ts';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const EXPIRY_BYTES = 8;
const MAC_BYTES = 32;
/** The longest cookie value looked at; also the longest a base64url MAC part can be. */
const MAX_VALUE_CHARS = 4096;

export interface UnsealedCookie {
  data: Buffer;
  /** Sealed with an old secret: the caller should re-seal it with the current ones. */
  stale: boolean;
}

export interface CookieSealerOptions {
  /**
   * Which purposes' successful unseals are remembered by exact value (src/session/unsealCache.ts): those
   * sent on every request (session cookies), not one-off ones (login state). Default: none.
   */
  cachePurpose?: (purpose: string) => boolean;
  /** Most values remembered; default 50,000. */
  cacheMaxEntries?: number;
  /** Longest any value is remembered, ms; default 10 minutes (never beyond its sealed expiry). */
  cacheMaxAgeMs?: number;
}

interface KeyPair {
  auth: KeyObject;
  enc: KeyObject;
}

/**
 * Seals small values into cookie-safe strings: encrypted (AES-256-GCM, key from SESSION_ENC_SECRET)
 * then authenticated (HMAC-SHA256, key from SESSION_AUTH_SECRET) over the cookie's purpose and content,
 * so a value sealed for one cookie (a login state) is never accepted as another (a session).
 * Old secrets are accepted on read and reported as stale, so secrets rotate without logging anyone out.
 * Keys are derived and imported once, at construction.
 */
export class CookieSealer {
  readonly #authKeys: KeyObject[];
  readonly #encKeys: KeyObject[];
  readonly #cachePurpose: (purpose: string) => boolean;
  readonly #cache: UnsealCache;
  readonly #purposeBytes = new Map<string, Buffer>();

  /** Secrets are listed current first. Without an encryption secret, one is derived from the auth secret. */
  constructor(authSecrets: Buffer[], encSecrets: Buffer[], options: CookieSealerOptions = {}) {
    if (authSecrets.length === 0) throw new Error('CookieSealer needs at least one auth secret');
    this.#authKeys = authSecrets.map((s) => deriveKeyObject(s, 'cookie-auth'));
    this.#encKeys =
      encSecrets.length > 0
        ? encSecrets.map((s) => deriveKeyObject(s, 'cookie-enc'))
        : authSecrets.map((s) => deriveKeyObject(s, 'cookie-enc-from-auth'));
    this.#cachePurpose = options.cachePurpose ?? (() => false);
    this.#cache = new UnsealCache(options.cacheMaxEntries ?? 50_000, options.cacheMaxAgeMs ?? 10 * 60_000);
  }

  get #current(): KeyPair {
    return { auth: this.#authKeys[0]!, enc: this.#encKeys[0]! };
  }

  /** Entries in the unseal cache (for tests and the memory benchmark). */
  get cachedValues(): number {
    return this.#cache.size;
  }

  /** Seals `data` for the cookie purpose `purpose`, valid until `expiresAt` (ms since epoch). */
  seal(purpose: string, data: Buffer, expiresAt: number): string {
    const { auth, enc } = this.#current;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', enc, iv);
    cipher.setAAD(this.#aad(purpose));
    const expiry = Buffer.alloc(EXPIRY_BYTES);
    expiry.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(expiresAt))));
    const ct = Buffer.concat([cipher.update(expiry), cipher.update(data), cipher.final()]);
    const body = Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64url');
    return `${body}.${mac(auth, purpose, body).toString('base64url')}`;
  }

  /** The sealed data, or undefined for anything forged, tampered, truncated, foreign or expired. */
  unseal(purpose: string, value: string, now: number = Date.now()): UnsealedCookie | undefined {
    if (value.length > MAX_VALUE_CHARS) return undefined;
    const cacheable = this.#cachePurpose(purpose);
    if (cacheable) {
      const hit = this.#cache.get(purpose, value, now);
      if (hit) {
        // Remembered from a full verification of this exact value; its sealed expiry still applies.
        if (hit.expiresAt <= now) return undefined;
        return { data: Buffer.from(hit.data), stale: hit.stale };
      }
    }
    const dot = value.indexOf('.');
    if (dot <= 0 || dot !== value.lastIndexOf('.')) return undefined;
    const body = value.slice(0, dot);
    const tagText = value.slice(dot + 1);
    const tag = Buffer.from(tagText, 'base64url');
    // Node's base64url decoder skips characters outside the alphabet and ignores spare bits: only the
    // canonical spelling of the MAC is accepted, so one sealed value has exactly one cookie string.
    if (tag.toString('base64url') !== tagText) return undefined;
    if (tag.length !== MAC_BYTES) return undefined;
    let authIndex = -1;
    for (let i = 0; i < this.#authKeys.length; i += 1) {
      if (timingSafeEqual(tag, mac(this.#authKeys[i]!, purpose, body))) {
        authIndex = i;
        break;
      }
    }
    if (authIndex < 0) return undefined;
    const raw = Buffer.from(body, 'base64url');
    if (raw.length < IV_BYTES + EXPIRY_BYTES + TAG_BYTES) return undefined;
    const aad = this.#aad(purpose);
    for (let encIndex = 0; encIndex < this.#encKeys.length; encIndex += 1) {
      const plain = decrypt(this.#encKeys[encIndex]!, aad, raw);
      if (!plain) continue;
      const expiresAt = Number(plain.readBigUInt64BE(0));
      if (expiresAt <= now) return undefined;
      const data = plain.subarray(EXPIRY_BYTES);
      const stale = authIndex !== 0 || encIndex !== 0;
      if (cacheable) this.#cache.set(purpose, value, data, stale, expiresAt, now);
      return { data, stale };
    }
    return undefined;
  }

  /** The purpose as AES-GCM additional data; purposes are a handful of fixed strings (one per client). */
  #aad(purpose: string): Buffer {
    let bytes = this.#purposeBytes.get(purpose);
    if (!bytes) {
      bytes = Buffer.from(purpose);
      if (this.#purposeBytes.size < 1024) this.#purposeBytes.set(purpose, bytes);
    }
    return bytes;
  }
}

function mac(key: KeyObject, purpose: string, body: string): Buffer {
  return createHmac('sha256', key).update(purpose).update('\0').update(body).digest();
}

function decrypt(key: KeyObject, aad: Buffer, raw: Buffer): Buffer | undefined {
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    return Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]);
  } catch {
    return undefined;
  }
}
