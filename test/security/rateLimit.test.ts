/**
 * Rate limiting of the login endpoints: per client IP (as --trust_proxy decides it), login starts and
 * callbacks counted separately, 429 problem+json with Retry-After beyond `--login_rate_limit`, before any
 * work is done; off at 0.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientKey, FixedWindowRateLimiter } from '../../src/security/rateLimit.ts';
import { testClient, testConfig } from '../support/config.ts';
import { rawRequest, startApp, type RunningApp } from '../proxy/support.ts';
import { startRogueIdp, type RogueIdp } from './support.ts';

const AUTH = '/token-handler/v1/clients/default/auth';
const CALLBACK = `/token-handler/v1/clients/default/callback?state=${'s'.repeat(43)}&code=x`;

describe('FixedWindowRateLimiter', () => {
  it('admits `limit` requests per key and window, then says when to retry', () => {
    let now = 1_000_000;
    const limiter = new FixedWindowRateLimiter({ limit: 3, windowMs: 60_000, now: () => now });
    expect([1, 2, 3].map(() => limiter.take('a').ok)).toEqual([true, true, true]);
    expect(limiter.take('a')).toEqual({ ok: false, retryAfterSec: 60 });
    expect(limiter.take('b').ok).toBe(true);
    now += 59_500;
    expect(limiter.take('a')).toEqual({ ok: false, retryAfterSec: 1 });
    now += 500;
    expect(limiter.take('a').ok).toBe(true);
    expect(limiter.size).toBe(1);
  });

  it('keeps at most maxKeys keys per window', () => {
    const limiter = new FixedWindowRateLimiter({ limit: 1, windowMs: 60_000, maxKeys: 10 });
    for (let i = 0; i < 100; i += 1) limiter.take(`k${i}`);
    expect(limiter.size).toBe(10);
    expect(limiter.take('k1').ok).toBe(false);
  });

  it('keys IPv4 as is (also IPv4-mapped) and IPv6 by /64', () => {
    expect(clientKey('203.0.113.7')).toBe('203.0.113.7');
    expect(clientKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(clientKey('2001:db8::1')).toBe(clientKey('2001:0db8:0000:0000:ffff:ffff:ffff:ffff'));
    expect(clientKey('2001:db8::1')).not.toBe(clientKey('2001:db8:0:1::1'));
    expect(clientKey('::1')).toBe('0:0:0:0::/64');
    expect(clientKey(undefined)).toBe('unknown');
  });
});

describe('login rate limit over HTTP', () => {
  let rogue: RogueIdp;
  let behindProxy: RunningApp;
  let direct: RunningApp;
  let unlimited: RunningApp;

  beforeAll(async () => {
    rogue = await startRogueIdp({ clientId: 'token-handler', clientSecret: 'token-handler-secret' });
    const clients = [testClient({ issuer: rogue.issuer, extraAuthParams: {} })];
    behindProxy = await startApp(testConfig({ clients, trustProxy: ['127.0.0.1'], rateLimit: { loginPerMinute: 3 } }));
    direct = await startApp(testConfig({ clients, rateLimit: { loginPerMinute: 3 } }));
    unlimited = await startApp(testConfig({ clients, rateLimit: { loginPerMinute: 0 } }));
  });
  afterAll(async () => {
    await Promise.all([behindProxy?.close(), direct?.close(), unlimited?.close()]);
    await rogue?.close();
  });

  const from = (ip: string) => ({ 'x-forwarded-for': ip });

  it('429 problem+json with Retry-After after the limit, per client IP behind a trusted proxy; nothing done', async () => {
    for (let i = 0; i < 3; i += 1) expect((await rawRequest(behindProxy.base, AUTH, { headers: from('203.0.113.1') })).status).toBe(302);
    const limited = await rawRequest(behindProxy.base, AUTH, { headers: from('203.0.113.1') });
    expect(limited.status).toBe(429);
    expect(limited.headers['content-type']).toContain('application/problem+json');
    expect(JSON.parse(limited.body)).toMatchObject({ status: 429, title: 'Too Many Requests', error: 'rate_limited' });
    const retryAfter = Number(limited.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(limited.headers['set-cookie']).toBeUndefined();
    // A client cannot pick another key by prepending addresses: the proxy's view (right-most untrusted) counts.
    expect((await rawRequest(behindProxy.base, AUTH, { headers: from('198.51.100.9, 203.0.113.1') })).status).toBe(429);
    // Another client is not affected.
    expect((await rawRequest(behindProxy.base, AUTH, { headers: from('203.0.113.2') })).status).toBe(302);
  });

  it('counts callbacks separately from login starts, and the go-token-handler routes with them', async () => {
    const ip = from('203.0.113.3');
    for (let i = 0; i < 3; i += 1) expect((await rawRequest(behindProxy.base, CALLBACK, { headers: ip })).status).toBe(400);
    expect((await rawRequest(behindProxy.base, CALLBACK, { headers: ip })).status).toBe(429);
    expect((await rawRequest(behindProxy.base, `/callback?state=${'s'.repeat(43)}`, { headers: ip })).status).toBe(429);
    // Login starts of this address still have their own budget.
    expect((await rawRequest(behindProxy.base, AUTH, { headers: ip })).status).toBe(302);
    for (let i = 0; i < 2; i += 1) expect((await rawRequest(behindProxy.base, '/login', { headers: ip })).status).toBe(302);
    expect((await rawRequest(behindProxy.base, '/login', { headers: ip })).status).toBe(429);
    // Other routes are never limited.
    expect((await rawRequest(behindProxy.base, '/token-handler/v1/sessions', { headers: ip })).status).toBe(200);
  });

  it('without --trust_proxy, X-Forwarded-For is ignored: the connection address counts', async () => {
    for (let i = 0; i < 3; i += 1) expect((await rawRequest(direct.base, AUTH, { headers: from(`203.0.113.${10 + i}`) })).status).toBe(302);
    expect((await rawRequest(direct.base, AUTH, { headers: from('203.0.113.99') })).status).toBe(429);
  });

  it('is off with --login_rate_limit 0', async () => {
    for (let i = 0; i < 10; i += 1) expect((await rawRequest(unlimited.base, AUTH)).status).toBe(302);
  });
});
