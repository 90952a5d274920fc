import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { deriveKey, keyId } from './keys.ts';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const FORMAT = 'v1';

export class PayloadDecryptError extends Error {
  override readonly name = 'PayloadDecryptError';
}

export interface DecryptedPayload {
  plaintext: Buffer;
  /** Encrypted with an old key: re-encrypt with the current key when next written. */
  stale: boolean;
}

/**
 * Encrypts session payloads (tokens and claims) at rest with AES-256-GCM. The record's id hash is the
 * additional authenticated data, so a ciphertext copied into another record does not decrypt.
 * Format: `v1.<key id>.<iv>.<ciphertext>.<tag>` (base64url parts). SESSION_DB_KEY encrypts;
 * SESSION_OLD_DB_KEY still decrypts.
 */
export class PayloadCipher {
  readonly #keys: { id: string; key: KeyObject }[];

  constructor(dbKeys: Buffer[]) {
    if (dbKeys.length === 0) throw new Error('PayloadCipher needs at least one key');
    this.#keys = dbKeys.map((secret) => {
      const key = deriveKey(secret, 'db-payload');
      // Imported once (a Buffer key is imported again on every cipher created from it).
      return { id: keyId(key), key: createSecretKey(key) };
    });
  }

  get currentKeyId(): string {
    return this.#keys[0]!.id;
  }

  encrypt(plaintext: Buffer, aad: string): string {
    const { id, key } = this.#keys[0]!;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return [FORMAT, id, iv.toString('base64url'), ct.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
  }

  /** Throws PayloadDecryptError for a tampered, foreign or malformed ciphertext, or an unknown key. */
  decrypt(sealed: string, aad: string): DecryptedPayload {
    const parts = sealed.split('.');
    if (parts.length !== 5 || parts[0] !== FORMAT) throw new PayloadDecryptError('unrecognised payload format');
    const [, id, ivB64, ctB64, tagB64] = parts as [string, string, string, string, string];
    const index = this.#keys.findIndex((k) => k.id === id);
    if (index < 0) throw new PayloadDecryptError(`payload encrypted with an unknown key (id ${id})`);
    const iv = Buffer.from(ivB64, 'base64url');
    const tag = Buffer.from(tagB64, 'base64url');
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new PayloadDecryptError('malformed payload');
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#keys[index]!.key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(aad));
      decipher.setAuthTag(tag);
      const plaintext = Buffer.concat([decipher.update(Buffer.from(ctB64, 'base64url')), decipher.final()]);
      return { plaintext, stale: index !== 0 };
    } catch {
      throw new PayloadDecryptError('payload failed authentication');
    }
  }
}
