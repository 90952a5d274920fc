/**
 * Issue 18.13: "the issuer's signing keys could not be fetched" (503 for registration, a retryable
 * refusal for back-channel logout) only when they could not be fetched. A key the issuer does publish but
 * jose refuses, or an error of our own, is not an outage: it was once reported as one, for every error.
 * Against real JWKS endpoints on loopback: one that serves keys, one that answers 503, a closed port.
 */
import { createSign, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, jwtVerify, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAdminToken } from '../../src/oidc/adminToken.ts';
import { isKeySetUnavailable, JwksCache } from '../../src/oidc/jwks.ts';
import { BACKCHANNEL_LOGOUT_EVENT, validateLogoutToken } from '../../src/oidc/logoutToken.ts';
import { closedPort } from '../proxy/support.ts';

const ISSUER = 'https://idp.example';

describe('isKeySetUnavailable', () => {
  let server: Server;
  let base: string;
  /** A 1024-bit RSA key: published by the issuer, refused by jose (too short). */
  let shortKey: KeyObject;
  let goodKey: CryptoKey;
  const jwks = new JwksCache(2000);

  beforeAll(async () => {
    shortKey = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    goodKey = (await generateKeyPair('RS256', { extractable: true })).privateKey;
    const publish = async (key: CryptoKey | KeyObject, kid: string): Promise<JWK> => {
      const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = await exportJWK(key);
      return { ...pub, kid, alg: 'RS256', use: 'sig' };
    };
    const keys = [await publish(shortKey, 'short'), await publish(goodKey, 'good')];
    server = createServer((req, res) => {
      if (req.url === '/down') res.writeHead(503).end();
      else res.setHeader('content-type', 'application/json').end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

  const sign = (key: CryptoKey, kid: string, claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid }).setIssuer(ISSUER).setIssuedAt().setExpirationTime('5m').sign(key);

  /** jose will not sign with a short key; the issuer in this story does, with plain RSASSA-PKCS1-v1_5. */
  function signShort(kid: string, claims: Record<string, unknown>): string {
    const now = Math.floor(Date.now() / 1000);
    const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const input = `${part({ alg: 'RS256', kid })}.${part({ iss: ISSUER, iat: now, exp: now + 300, ...claims })}`;
    return `${input}.${createSign('RSA-SHA256').update(input).sign(shortKey).toString('base64url')}`;
  }

  async function failureOf(token: string, jwksUrl: string): Promise<unknown> {
    try {
      await jwtVerify(token, jwks.get(jwksUrl), { issuer: ISSUER });
    } catch (err) {
      return err;
    }
    throw new Error('verification unexpectedly succeeded');
  }

  it('is true when the key set cannot be fetched: a closed port, a 503', async () => {
    const token = await sign(goodKey, 'good', { sub: 'x' });
    expect(isKeySetUnavailable(await failureOf(token, `http://127.0.0.1:${await closedPort()}/jwks`))).toBe(true);
    expect(isKeySetUnavailable(await failureOf(token, `${base}/down`))).toBe(true);
  });

  it('is false for a key the issuer publishes but that is refused, and for a bad signature', async () => {
    expect(isKeySetUnavailable(await failureOf(signShort('short', { sub: 'x' }), `${base}/jwks`))).toBe(false);
    expect(isKeySetUnavailable(await failureOf(signShort('good', { sub: 'x' }), `${base}/jwks`))).toBe(false);
  });

  it('is false for errors of our own making', () => {
    expect(isKeySetUnavailable(new TypeError("Cannot read properties of undefined (reading 'keys')"))).toBe(false);
    expect(isKeySetUnavailable(new RangeError('Maximum call stack size exceeded'))).toBe(false);
    expect(isKeySetUnavailable(new Error('unexpected'))).toBe(false);
  });

  it('back-channel logout: a refused key is the token\'s fault, not an unreachable issuer', async () => {
    const claims = { aud: 'client', sid: 's', jti: 'j', events: { [BACKCHANNEL_LOGOUT_EVENT]: {} } };
    const refused = await validateLogoutToken(signShort('short', claims), { issuer: ISSUER, clientId: 'client', keys: jwks.get(`${base}/jwks`) }).catch((err: unknown) => err);
    expect(refused).toMatchObject({ name: 'LogoutTokenError', unavailable: false });
    const down = await validateLogoutToken(await sign(goodKey, 'good', claims), { issuer: ISSUER, clientId: 'client', keys: jwks.get(`${base}/down`) }).catch((err: unknown) => err);
    expect(down).toMatchObject({ name: 'LogoutTokenError', unavailable: true });
  });

  it('registration: 401 for a token signed with a refused key, 503 only while the keys cannot be fetched', async () => {
    const claims = { roles: ['token-handler-admin'], aud: 'urn:ads:platform:token-handler' };
    const refused = await verifyAdminToken(signShort('short', claims), { issuer: ISSUER, keys: jwks.get(`${base}/jwks`), policy: undefined, ourClientIds: new Set<string>() });
    expect(refused).toMatchObject({ ok: false, status: 401 });
    const down = await verifyAdminToken(await sign(goodKey, 'good', claims), { issuer: ISSUER, keys: jwks.get(`${base}/down`), policy: undefined, ourClientIds: new Set<string>() });
    expect(down).toMatchObject({ ok: false, status: 503, error: 'idp_unavailable' });
  });
});
