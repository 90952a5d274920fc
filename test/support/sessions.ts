import type { TokenHandlerApp } from '../../src/app.ts';

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
  for (const instance of [th, ...others]) {
    for (let i = 0; i < 100; i += 1) {
      const seen = await instance.ctx.sessions.resolve(cookie, { clientId: 'default', tenant: null });
      if (seen && seen.record.accessExpiresAt !== null && seen.record.accessExpiresAt < Date.now()) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
