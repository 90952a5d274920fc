/**
 * The private key of a client that authenticates with private_key_jwt (RFC 7523): read from a PEM
 * (PKCS#8, PKCS#1, SEC1) or JWK file when the configuration is loaded, so a missing or unusable key is a
 * configuration problem, not a failed login. The key stays PKCS#8 PEM in memory; openid-client signs the
 * client assertions with it (src/oidc/registry.ts).
 */
import { createHash, createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { errorCode } from './files.ts';
import { fail } from './parsers.ts';
import type { ClientKey } from './types.ts';

/** Reads the key (and certificate) or throws InvalidValue naming what is wrong (never the key). */
export function loadClientKey(keyFile: string, options: { kid?: string; certificateFile?: string } = {}): ClientKey {
  let text: string;
  try {
    text = readFileSync(keyFile, 'utf8');
  } catch (error) {
    return fail(`cannot be read (${errorCode(error)})`);
  }
  let key: KeyObject;
  let jwkKid: string | undefined;
  try {
    if (text.trim().startsWith('{')) {
      const jwk = JSON.parse(text) as { kid?: unknown; d?: unknown };
      if (jwk.d === undefined) return fail('is a public JWK: the private key is needed');
      jwkKid = typeof jwk.kid === 'string' ? jwk.kid : undefined;
      key = createPrivateKey({ key: jwk as never, format: 'jwk' });
    } else {
      key = createPrivateKey(text);
    }
  } catch (error) {
    if (error instanceof Error && error.name === 'InvalidValue') throw error;
    return fail('is not a PEM or JWK private key');
  }
  const alg = algorithmOf(key);
  const publicJwk = createPublicKey(key).export({ format: 'jwk' });
  const clientKey: ClientKey = {
    pkcs8: key.export({ format: 'pem', type: 'pkcs8' }).toString(),
    alg,
    kid: options.kid ?? jwkKid ?? thumbprint(publicJwk),
  };
  if (options.certificateFile !== undefined) {
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(readFileSync(options.certificateFile));
    } catch (error) {
      return fail(`certificate ${JSON.stringify(options.certificateFile)} cannot be read as a PEM certificate (${errorCode(error)})`);
    }
    if (!certificate.checkPrivateKey(key)) return fail('does not match the certificate');
    clientKey.x5t = createHash('sha1').update(certificate.raw).digest('base64url');
    clientKey.x5tS256 = createHash('sha256').update(certificate.raw).digest('base64url');
  }
  return clientKey;
}

/** The JWS algorithm a key signs with: RS256 for RSA (the one every IdP accepts), ES* by curve, EdDSA. */
function algorithmOf(key: KeyObject): string {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'rsa-pss':
      return 'PS256';
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return 'ES256';
      if (curve === 'secp384r1') return 'ES384';
      if (curve === 'secp521r1') return 'ES512';
      return fail(`uses the curve ${curve ?? 'unknown'}; use P-256, P-384 or P-521`);
    }
    case 'ed25519':
      return 'EdDSA';
    default:
      return fail(`is a ${key.asymmetricKeyType ?? 'symmetric'} key; use an RSA, EC or Ed25519 key`);
  }
}

/** RFC 7638 JWK thumbprint (SHA-256) of a public key. */
function thumbprint(jwk: Record<string, unknown>): string {
  const members: Record<string, string[]> = { RSA: ['e', 'kty', 'n'], EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'] };
  const required = members[jwk.kty as string] ?? [];
  const canonical = `{${required.map((name) => `${JSON.stringify(name)}:${JSON.stringify(jwk[name])}`).join(',')}}`;
  return createHash('sha256').update(canonical).digest('base64url');
}
