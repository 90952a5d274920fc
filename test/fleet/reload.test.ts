/**
 * Issue 19.7, "every instance of a fleet converges": two real `node src/main.ts` processes on one PostgreSQL
 * store (a schema of their own) read one config file and watch it. The file is replaced (as editors and
 * Kubernetes do) and the change is observed from outside, on each instance: an added target answers on
 * both; an invalid file is refused by both (one error line each), both keep serving the configuration in
 * force and neither exits; the fixed file is then applied by both. Every step polls until it holds.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevIdp } from '../../src/demo/idp.ts';
import type { DemoUpstream, EchoResponse } from '../../src/demo/upstream.ts';
import { tempDir } from '../support/config.ts';
import { eventually, replaceFile } from '../support/reload.ts';
import { probePostgres, requireService } from '../support/services.ts';
import { API, postgresNamespace, startIdpAndUpstream, startInstance, type Instance, type StoreNamespace } from './support.ts';

const available = requireService('PostgreSQL', await probePostgres());

/** A target sending no token (no login needed) to the demo upstream, mounted at API/targets/<id>. */
const target = (id: string, url: string, extra: Record<string, unknown> = {}) => ({ id, url, tokenRequirement: 'none', ...extra });
const config = (targets: object[]): string => JSON.stringify({ targets }, null, 2);

/** What `GET API/targets/<id>/echo/<id>` through `base` gets: the path the upstream saw, or the status when not 200. */
async function via(base: string, id: string): Promise<string | number> {
  const res = await fetch(`${base}${API}/targets/${id}/echo/${id}`);
  if (res.status !== 200) {
    await res.body?.cancel();
    return res.status;
  }
  return ((await res.json()) as EchoResponse).path;
}

describe.skipIf(!available)('a fleet of two processes on one PostgreSQL store reloads one config file', { timeout: 60_000 }, () => {
  let idp: DevIdp;
  let upstream: DemoUpstream;
  let ns: StoreNamespace;
  let file: string;
  const fleet: Instance[] = [];

  beforeAll(async () => {
    ({ idp, upstream } = await startIdpAndUpstream());
    ns = postgresNamespace();
    file = join(tempDir('th-fleet-reload-'), 'token-handler.json');
    writeFileSync(file, config([target('api', upstream.url)]));
    // The first migrates the schema; the second then finds it in place.
    for (let i = 0; i < 2; i++) fleet.push(await startInstance({ issuer: idp.issuer, configFile: file, extra: ns.flags() }));
  });

  afterAll(async () => {
    await Promise.all(fleet.map((instance) => instance.stop()));
    await upstream?.close();
    await idp?.close();
    await ns?.drop();
  });

  /** Polls every instance until `check` holds on each (30 s each). */
  const onEvery = async (check: (instance: Instance) => Promise<boolean>, what: string): Promise<void> => {
    await Promise.all(fleet.map((instance, i) => eventually(() => check(instance), `${what} on instance ${i}`)));
  };
  const lines = (instance: Instance, msg: string): string[] => instance.output().split('\n').filter((line) => line.includes(msg));
  const REFUSED = 'configuration reload refused';
  const RELOADED = '"msg":"configuration reloaded"';

  it('every instance applies an added target, refuses an invalid file keeping the old configuration, then applies the fix', async () => {
    const [a, b] = fleet as [Instance, Instance];
    expect(a.base).not.toBe(b.base);
    for (const { base } of fleet) {
      expect(await via(base, 'api')).toBe('/echo/api');
      expect(await via(base, 'added')).toBe(404);
    }

    // 1. A target is added: both instances converge on it.
    replaceFile(file, config([target('api', upstream.url), target('added', upstream.url)]));
    await onEvery(async ({ base }) => (await via(base, 'added')) === '/echo/added', 'the added target');
    for (const instance of fleet) {
      expect(await via(instance.base, 'api')).toBe('/echo/api');
      expect(lines(instance, RELOADED)).toHaveLength(1);
      expect(lines(instance, RELOADED)[0]).toContain('"targets":{"added":["added"],"changed":[],"removed":[]}');
    }

    // 2. An invalid file (a target of an unknown client, next to a valid new one): refused by both, one
    // error line each; the configuration in force stays (nothing of the new file applies), neither exits.
    const invalid = [target('api', upstream.url), target('third', upstream.url), target('bad', upstream.url, { client: 'nobody', tokenRequirement: 'user' })];
    replaceFile(file, config(invalid));
    await onEvery(async (instance) => lines(instance, REFUSED).length === 1, 'the refusal');
    for (const instance of fleet) {
      const [refused] = lines(instance, REFUSED);
      expect(refused).toContain('"level":50');
      expect(refused).toContain(file);
      expect(refused).toContain('targets[2].client \\"nobody\\": unknown client');
      expect(instance.child.exitCode).toBeNull();
      expect(instance.child.signalCode).toBeNull();
      expect(await via(instance.base, 'api')).toBe('/echo/api');
      expect(await via(instance.base, 'added')).toBe('/echo/added');
      expect(await via(instance.base, 'third')).toBe(404);
      expect(await via(instance.base, 'bad')).toBe(404);
      expect(lines(instance, RELOADED)).toHaveLength(1);
    }

    // 3. The file is fixed (the bad target dropped, so is `added`): both apply it.
    replaceFile(file, config([target('api', upstream.url), target('third', upstream.url)]));
    await onEvery(async ({ base }) => (await via(base, 'third')) === '/echo/third', 'the fixed file');
    for (const instance of fleet) {
      expect(await via(instance.base, 'added')).toBe(404);
      expect(await via(instance.base, 'api')).toBe('/echo/api');
      expect(lines(instance, RELOADED)).toHaveLength(2);
      expect(lines(instance, RELOADED)[1]).toContain('"targets":{"added":["third"],"changed":[],"removed":["added"]}');
      // Still the one refusal: the fix was not refused, nor the invalid file read twice.
      expect(lines(instance, REFUSED)).toHaveLength(1);
    }

    // Both shut down cleanly.
    await Promise.all(fleet.map((instance) => instance.stop()));
    for (const instance of fleet) expect(instance.child.exitCode).toBe(0);
  });
});
