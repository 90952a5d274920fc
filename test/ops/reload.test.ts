/**
 * Issue 19.7: clients and targets change without a restart. The service runs as a user runs it (a child
 * process reading a config file), in front of real upstreams and a real IdP; the file is rewritten and the
 * change is observed from outside: on SIGHUP, on a file change alone, a bad file refused with the old
 * configuration kept, a request in flight during a reload finishing as it began.
 */
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../../src/demo/idp.ts';
import { eventually, forwardAuthCheck, replaceFile, startService, startUpstream, upstreamOf, type Upstream } from '../support/reload.ts';

const API = '/token-handler/v1';

describe('configuration reload (clients and targets without a restart)', { timeout: 120_000 }, () => {
  let idp: DevIdp;
  let a: Upstream;
  let b: Upstream;
  let dir: string;

  beforeAll(async () => {
    idp = await startDevIdp();
    a = await startUpstream('a');
    b = await startUpstream('b');
    dir = mkdtempSync(join(tmpdir(), 'th-reload-'));
  });
  afterAll(async () => {
    await Promise.all([idp?.close(), a?.close(), b?.close()]);
  });

  const client = (id: string, clientId: string, secretEnv: string) => ({ id, issuer: idp.issuer, clientId, clientSecretEnv: secretEnv });
  const target = (id: string, url: string, extra: Record<string, unknown> = {}) => ({ id, url, mountPath: `/api/${id}`, tokenRequirement: 'none', ...extra });
  const config = (clients: object[], targets: object[], extra: Record<string, unknown> = {}) =>
    JSON.stringify({ oidc_allow_insecure_issuer: true, ...extra, clients, targets }, null, 2);

  /** The client_id a login start of client `id` sends to the IdP, or the status when it does not redirect. */
  async function loginClientId(base: string, id: string): Promise<string | number> {
    const res = await fetch(`${base}${API}/clients/${id}/auth`, { redirect: 'manual' });
    await res.body?.cancel();
    if (res.status !== 302) return res.status;
    return new URL(res.headers.get('location')!).searchParams.get('client_id') ?? 'none';
  }

  it('applies added, changed and removed clients and targets on SIGHUP (file watching off)', async () => {
    const file = join(dir, 'signal.json');
    writeFileSync(file, config([client('one', 'th-one', 'SECRET_ONE')], [target('first', a.url)]));
    const { th, base } = await startService(file, ['--config_watch=false']);
    try {
      expect(await upstreamOf(base, '/api/first/x')).toBe('a');
      expect(await upstreamOf(base, '/api/second/x')).toBe(404);
      expect(await loginClientId(base, 'one')).toBe('th-one');
      expect(await loginClientId(base, 'two')).toBe(404);

      // first moves to upstream b, second is added; client one changes its client_id, two is added.
      replaceFile(file, config([client('one', 'th-one-v2', 'SECRET_ONE'), client('two', 'th-two', 'SECRET_TWO')], [target('first', b.url), target('second', a.url)]));
      // Not watched: nothing changes until the signal.
      expect(await upstreamOf(base, '/api/second/x')).toBe(404);
      th.child.kill('SIGHUP');
      await eventually(async () => (await upstreamOf(base, '/api/second/x')) === 'a', 'the added target');
      expect(await upstreamOf(base, '/api/first/x')).toBe('b');
      expect(await loginClientId(base, 'one')).toBe('th-one-v2');
      expect(await loginClientId(base, 'two')).toBe('th-two');
      expect(th.stdout).toContain(
        '"clients":{"added":["two"],"changed":["one"],"removed":[]},"targets":{"added":["second"],"changed":["first"],"removed":[]},"msg":"configuration reloaded"',
      );
      // The API description lists the target added.
      const doc = (await (await fetch(`${base}${API}/openapi.json`)).json()) as { paths: Record<string, unknown> };
      expect(Object.keys(doc.paths)).toContain('/api/second/{path}');

      // Removed: the target answers 404, the client is unknown.
      replaceFile(file, config([client('one', 'th-one-v2', 'SECRET_ONE')], [target('second', a.url)]));
      th.child.kill('SIGHUP');
      await eventually(async () => (await upstreamOf(base, '/api/first/x')) === 404, 'the removed target');
      expect(await loginClientId(base, 'two')).toBe(404);
      expect(await upstreamOf(base, '/api/second/x')).toBe('a');
    } finally {
      expect((await th.stop()).code).toBe(0);
    }
  });

  it('the forward-auth listener checks against the targets in force: added, changed and removed on SIGHUP', async () => {
    const file = join(dir, 'forward-auth.json');
    writeFileSync(file, config([client('one', 'th-one', 'SECRET_ONE')], [target('first', a.url)]));
    const { th, base, forwardAuthPort } = await startService(file, ['--config_watch=false'], { forwardAuth: true });
    const checkPort = forwardAuthPort!;
    const check = (uri: string): Promise<string> => forwardAuthCheck(checkPort, uri);
    try {
      expect(base).not.toBe(`http://127.0.0.1:${checkPort}`);
      expect(await check('/api/first/x')).toBe('200');
      expect(await check('/api/second/x')).toBe('403 unknown_target');

      // second is added; first now needs a user's token.
      replaceFile(file, config([client('one', 'th-one', 'SECRET_ONE')], [target('first', a.url, { client: 'one', tokenRequirement: 'user' }), target('second', b.url)]));
      th.child.kill('SIGHUP');
      await eventually(async () => (await upstreamOf(base, '/api/second/x')) === 'b', 'the added target');
      expect(await check('/api/second/x')).toBe('200');
      expect(await check('/api/first/x')).toBe('401 login_required');

      // first is removed.
      replaceFile(file, config([client('one', 'th-one', 'SECRET_ONE')], [target('second', b.url)]));
      th.child.kill('SIGHUP');
      await eventually(async () => (await upstreamOf(base, '/api/first/x')) === 404, 'the removed target');
      expect(await check('/api/first/x')).toBe('403 unknown_target');
      expect(await check('/api/second/x')).toBe('200');
    } finally {
      expect((await th.stop()).code).toBe(0);
    }
  });

  it('reloads when the file changes, refuses a bad file keeping the old configuration, and lets a request in flight finish', async () => {
    const file = join(dir, 'watched.yaml');
    writeFileSync(file, config([client('one', 'th-one', 'SECRET_ONE')], [target('first', a.url)]));
    const { th, base } = await startService(file);
    try {
      expect(await upstreamOf(base, '/api/first/x')).toBe('a');

      // A change of the file alone (no signal).
      replaceFile(file, config([client('one', 'th-one', 'SECRET_ONE'), client('two', 'th-two', 'SECRET_TWO')], [target('first', a.url), target('second', b.url)]));
      await eventually(async () => (await upstreamOf(base, '/api/second/x')) === 'b', 'the target added by the file change');
      expect(await loginClientId(base, 'two')).toBe('th-two');

      // Broken YAML, then a target of an unknown client: each refused with one error line, the old one serves on.
      const refusals = () => th.stdout.split('\n').filter((line) => line.includes('configuration reload refused')).length;
      replaceFile(file, 'clients: [\n');
      await eventually(async () => refusals() === 1, 'the refusal of broken YAML');
      replaceFile(file, config([client('one', 'th-one', 'SECRET_ONE')], [target('first', b.url, { client: 'nobody', tokenRequirement: 'user' })]));
      await eventually(async () => refusals() === 2, 'the refusal of an unknown client');
      const refused = th.stdout.split('\n').filter((line) => line.includes('configuration reload refused'));
      expect(refused[0]).toContain(file);
      expect(refused[0]).toContain('invalid YAML/JSON');
      expect(refused[1]).toContain('unknown client');
      expect(await upstreamOf(base, '/api/first/x')).toBe('a');
      expect(await upstreamOf(base, '/api/second/x')).toBe('b');
      expect(await loginClientId(base, 'two')).toBe('th-two');

      // An option that needs a restart: reported, ignored; the clients and targets of the same file apply.
      replaceFile(file, config([client('one', 'th-one', 'SECRET_ONE')], [target('first', a.url), target('second', b.url), target('third', a.url)], { cookie_name: 'other' }));
      await eventually(async () => (await upstreamOf(base, '/api/third/x')) === 'a', 'the target added with a restart-only option');
      expect(th.stdout).toMatch(/"options":\["cookie"\].*only at a restart/);
      expect(await loginClientId(base, 'two')).toBe(404);

      // A slow request in flight while its target moves to another upstream: it finishes with the old one.
      const inFlight = fetch(`${base}/api/first/slow`);
      await a.slowArrived;
      replaceFile(file, config([client('one', 'th-one', 'SECRET_ONE')], [target('first', b.url)]));
      await eventually(async () => (await upstreamOf(base, '/api/first/x')) === 'b', 'the moved target');
      a.releaseSlow();
      const res = await inFlight;
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ upstream: 'a', path: '/slow' });
    } finally {
      expect((await th.stop()).code).toBe(0);
    }
  });

  it('follows a Kubernetes ConfigMap volume update (the ..data symlink swapped to a new directory)', async () => {
    // As the kubelet lays out a ConfigMap volume: the file is a symlink into ..data, itself a symlink to a
    // timestamped directory; an update writes a new directory and renames a new ..data symlink over the old.
    const volume = mkdtempSync(join(dir, 'configmap-'));
    const version = (name: string, text: string): void => {
      mkdirSync(join(volume, name));
      writeFileSync(join(volume, name, 'token-handler.json'), text);
    };
    version('..2026_v1', config([], [target('first', a.url)]));
    symlinkSync('..2026_v1', join(volume, '..data'));
    symlinkSync('..data/token-handler.json', join(volume, 'token-handler.json'));
    // The proxy file, in a directory of its own, is watched too.
    const proxyFile = join(mkdtempSync(join(dir, 'proxy-')), 'proxy.yaml');
    writeFileSync(proxyFile, 'targets: []\n');
    const { th, base } = await startService(join(volume, 'token-handler.json'), ['--proxy_config', proxyFile]);
    try {
      expect(await upstreamOf(base, '/api/first/x')).toBe('a');
      version('..2026_v2', config([], [target('first', b.url)]));
      symlinkSync('..2026_v2', join(volume, '..data_tmp'));
      renameSync(join(volume, '..data_tmp'), join(volume, '..data'));
      await eventually(async () => (await upstreamOf(base, '/api/first/x')) === 'b', 'the ConfigMap update');
      writeFileSync(proxyFile, JSON.stringify({ targets: [target('third', a.url)] }));
      await eventually(async () => (await upstreamOf(base, '/api/third/x')) === 'a', 'the proxy file change');
    } finally {
      expect((await th.stop()).code).toBe(0);
    }
  });
});
