/**
 * The swap behind a configuration reload (TokenHandlerApp.reconfigure), in process: a configuration the
 * running app cannot serve is refused with nothing swapped, and what changes only at a restart is named.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testClient, testConfig, testTarget } from '../support/config.ts';
import { startUpstream, type Upstream } from '../support/reload.ts';
import { startTokenHandler, type Running } from './support.ts';

describe('reconfigure', () => {
  let upstream: Upstream;
  let th: Running;
  const issuer = 'http://127.0.0.1:9/idp';
  const config = () =>
    testConfig({
      clients: [testClient({ issuer })],
      targets: [testTarget({ id: 'first', url: 'http://127.0.0.1:9/', mountPath: '/api/first', tokenRequirement: 'none' })],
    });

  beforeAll(async () => {
    upstream = await startUpstream('up');
    th = await startTokenHandler(config());
  });
  afterAll(async () => {
    await th?.app.close();
    await upstream?.close();
  });

  it('refuses targets it cannot serve (a client that is not configured) and keeps the configuration in force', async () => {
    const before = th.th.ctx.config;
    const bad = { ...config(), targets: [testTarget({ id: 'second', url: upstream.url, mountPath: '/api/second', clientId: 'nobody' })] };
    expect(() => th.th.reconfigure(bad)).toThrow('target "second" needs tokens from client "nobody", which is not configured');
    expect(th.th.ctx.config).toBe(before);
    expect((await fetch(`${th.base}/api/second/x`)).status).toBe(404);
    expect((await fetch(`${th.base}/api/first/x`)).status).toBe(502);
  });

  it('applies clients and targets and names the options that need a restart, the redirect URL path among them', async () => {
    // (testConfig makes a new SQLite path each time: the same store as the running app's.)
    const next = { ...config(), db: th.th.ctx.config.db };
    next.cookie = { ...next.cookie, name: 'other' };
    next.clients = [testClient({ issuer, redirectUrl: 'https://app.example.com/auth/return' })];
    next.targets = [testTarget({ id: 'first', url: upstream.url, mountPath: '/api/first', tokenRequirement: 'none' })];
    const result = th.th.reconfigure(next);
    expect(result).toEqual({ applied: true, needsRestart: ['cookie', 'oidcRedirectUrl (its callback path)'] });
    const res = await fetch(`${th.base}/api/first/x`);
    expect(await res.json()).toEqual({ upstream: 'up', path: '/x' });
    expect(th.th.ctx.config.cookie.name).toBe('session');
  });
});
