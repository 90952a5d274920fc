import { createHash, createSecretKey, hkdfSync, type KeyObject } from 'node:crypto';

/**
 * Every key the service uses is derived from a configured secret with HKDF-SHA256 and a purpose label,
 * so one secret never serves two purposes and secrets of any length (go-token-handler's 16/24/32/64
 * bytes, or longer passphrases) become exactly 32-byte keys.
 */
export function deriveKey(secret: Buffer, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'token-handler/v1', purpose, 32));
}

/**
 * The derived key as a KeyObject, imported once: handing node:crypto a Buffer makes it import the key
 * again on every createHmac/createCipheriv call (measurable on the request path).
 */
export function deriveKeyObject(secret: Buffer, purpose: string): KeyObject {
  return createSecretKey(deriveKey(secret, purpose));
}

/** A short, non-secret identifier of a key (stored beside ciphertext so the right key is tried first). */
export function keyId(key: Buffer): string {
  return createHash('sha256').update('token-handler key id').update(key).digest('hex').slice(0, 8);
}
