import type { TokenHandlerApp } from '../../src/app.ts';
import { CookieSealer } from '../../src/session/cookieSealer.ts';
import { PayloadCipher } from '../../src/session/payloadCipher.ts';
import { SessionService, type SessionServiceDeps } from '../../src/session/service.ts';
import { eventually } from './reload.ts';

/**
 * Makes the stored access token of the `default` client's session behind `cookie` look expired, as time
 * passing would, and tells every instance; returns once `th` and each of `others` (other instances on the
 * same store) has dropped its cached copy.
 */
export async function expireAccessToken(th: TokenHandlerApp, cookie: string, others: TokenHandlerApp[] = []): Promise<void> {
  const session = await th.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null });
  const record = (await th.ctx.store.get(session!.idHash))!;
  await th.ctx.store.updatePayload(record.idHash, record.version, { payload: record.payload, accessExpiresAt: Date.now() - 1000 });
  await th.ctx.store.publishInvalidation([record.idHash]);
  for (const [index, instance] of [th, ...others].entries()) {
    await eventually(async () => {
      const seen = await instance.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null });
      return seen !== undefined && seen.record.accessExpiresAt !== null && seen.record.accessExpiresAt < Date.now();
    }, `instance ${index} to see the access token expired`);
  }
}

/** A log that writes nothing. */
export const quietLog: SessionServiceDeps['log'] = { info() {}, warn() {}, error() {}, debug() {} };

/**
 * A SessionService for tests that drive it directly, on a real store the test owns: fixed test secrets,
 * the default lifetimes (8 h absolute, 1 h idle, 30 s refresh skew), no session cache, a silent log and a
 * refresher that refuses. `deps` replaces any of these.
 */
export function testSessionService(deps: Partial<SessionServiceDeps> & Pick<SessionServiceDeps, 'store'>): SessionService {
  return new SessionService({
    sealer: new CookieSealer([Buffer.from('test-sessions-auth-secret-0123456789')], [Buffer.from('test-sessions-enc-secret-01234567890')]),
    cipher: new PayloadCipher([Buffer.from('test-sessions-db-key-0123456789abcd')]),
    refresher: () => Promise.reject(new Error('no refresh here')),
    lifetimes: { absoluteLifetimeSec: 8 * 3600, idleLifetimeSec: 3600, refreshSkewSec: 30, sweepBatchSize: 100 },
    cacheTtlMs: 0,
    log: quietLog,
    ...deps,
  });
}
