/**
 * Issue 19.6: targets named by an ADSP service URN, resolved through a service directory (a file, and an
 * HTTP directory answering as ADSP's `/directory/v2/namespaces/{namespace}/entries` does), read again
 * periodically. The service runs as a child process in front of real upstreams; every change is polled
 * for from outside.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.ts';
import { loadConfig } from '../../src/config/load.ts';
import { eventually, forwardAuthCheck, replaceFile, startService, startUpstream, upstreamOf, type Upstream } from '../support/reload.ts';

/** An HTTP directory serving its current entries in ADSP's shape, or failing with 500 when `failing`. */
async function startDirectory(): Promise<{ url: string; entries: Record<string, string>; failing: boolean; requests: number; close(): Promise<void> }> {
  const state = { entries: {} as Record<string, string>, failing: false, requests: 0 };
  const server: Server = createServer((req, res) => {
    state.requests += 1;
    if (state.failing || req.url !== '/directory/v2/namespaces/platform/entries') {
      res.statusCode = state.failing ? 500 : 404;
      res.end();
      return;
    }
    const body = Object.entries(state.entries).map(([urn, url]) => ({ namespace: 'platform', service: urn.split(':')[3], urn, url }));
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/directory/v2/namespaces/platform/entries`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

describe('targets by service URN through a directory', { timeout: 120_000 }, () => {
  let a: Upstream;
  let b: Upstream;
  let directory: Awaited<ReturnType<typeof startDirectory>>;
  let dir: string;

  beforeAll(async () => {
    a = await startUpstream('a');
    b = await startUpstream('b');
    directory = await startDirectory();
    dir = mkdtempSync(join(tmpdir(), 'th-directory-'));
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), directory?.close()]);
  });


  it('resolves URNs from a file and an HTTP directory, follows their changes, and answers 503 for an unknown URN', async () => {
    const dirFile = join(dir, 'directory.yaml');
    writeFileSync(dirFile, `urn:ads:platform:from-file: ${a.url}/v1\n`);
    directory.entries = { 'urn:ads:platform:from-http:v1': b.url };
    const file = join(dir, 'config.yaml');
    const target = (id: string, url: string) => ({ id, url, mountPath: `/api/${id}`, tokenRequirement: 'none' });
    writeFileSync(
      file,
      JSON.stringify({
        // The file's path is relative to the config file.
        directory_url: ['directory.yaml', directory.url],
        directory_refresh: '200ms',
        targets: [target('svcfile', 'urn:ads:platform:from-file'), target('svchttp', 'urn:ads:platform:from-http:v1'), target('missing', 'urn:ads:platform:nothing')],
      }),
    );
    // With the forward-auth listener: the gateway's checks see the same targets, resolved or not.
    const { th, base, forwardAuthPort } = await startService(file, [], { forwardAuth: true });
    const check = (uri: string): Promise<string> => forwardAuthCheck(forwardAuthPort!, uri);
    try {
      expect(await upstreamOf(base, '/api/svcfile/x')).toBe('a');
      expect(await check('/api/svcfile/x')).toBe('200');
      expect(await check('/api/missing/x')).toBe('503 target_unresolved');
      const viaFile = await fetch(`${base}/api/svcfile/x`);
      // The directory's URL keeps its path: /v1 + /x.
      expect(await viaFile.json()).toEqual({ upstream: 'a', path: '/v1/x' });
      expect(await upstreamOf(base, '/api/svchttp/x')).toBe('b');

      const missing = await fetch(`${base}/api/missing/x`);
      expect(missing.status).toBe(503);
      expect(missing.headers.get('content-type')).toContain('application/problem+json');
      expect(missing.headers.get('retry-after')).toBe('5');
      expect(await missing.json()).toMatchObject({ error: 'target_unresolved', detail: expect.stringContaining('urn:ads:platform:nothing') });
      expect(th.stdout).toMatch(/"target":"missing".*"msg":"target unresolved/);

      // The file directory changes: the new URL applies to the requests after the next read.
      writeFileSync(dirFile, `urn:ads:platform:from-file: ${b.url}\n`);
      await eventually(async () => (await upstreamOf(base, '/api/svcfile/x')) === 'b', 'the file directory change');

      // The HTTP directory changes, and gets the unknown URN.
      directory.entries = { 'urn:ads:platform:from-http:v1': a.url, 'urn:ads:platform:nothing': b.url };
      await eventually(async () => (await upstreamOf(base, '/api/svchttp/x')) === 'a', 'the HTTP directory change');
      await eventually(async () => (await upstreamOf(base, '/api/missing/x')) === 'b', 'the URN resolved at last');
      expect(await check('/api/missing/x')).toBe('200');

      // The HTTP directory fails: its entries are kept (logged), the targets keep serving.
      directory.failing = true;
      await eventually(async () => th.stdout.includes('service directory could not be read'), 'the failed read logged');
      expect(await upstreamOf(base, '/api/svchttp/x')).toBe('a');
      expect(await upstreamOf(base, '/api/missing/x')).toBe('b');
      directory.failing = false;

      // A config reload keeps resolving through the directory (a URN target added by the file).
      replaceFile(
        file,
        JSON.stringify({
          directory_url: [dirFile, directory.url],
          directory_refresh: '200ms',
          targets: [target('svcfile', 'urn:ads:platform:from-file'), target('added', 'urn:ads:platform:from-http:v1')],
        }),
      );
      await eventually(async () => (await upstreamOf(base, '/api/added/x')) === 'a', 'the URN target added by a reload');
      expect(await upstreamOf(base, '/api/svchttp/x')).toBe(404);
    } finally {
      expect((await th.stop()).code).toBe(0);
    }
  });

  it('refuses a URN target without a directory, and a URN that is not urn:ads:<namespace>:<service>', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'th-directory-config-'));
    writeFileSync(
      join(cwd, 'c.yaml'),
      'targets:\n  - { id: one, url: "urn:ads:platform:svc", tokenRequirement: none }\n  - { id: two, url: "urn:ads:platform", tokenRequirement: none }\n',
    );
    let error: unknown;
    try {
      loadConfig({ argv: ['--config', 'c.yaml', '--db_path', ':memory:'], env: {}, cwd });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      'config file targets[0].url "urn:ads:platform:svc": a service URN needs a service directory to resolve it: set --directory_url (DIRECTORY_URL)',
      'config file targets[1].url "urn:ads:platform": a service URN must look like urn:ads:<namespace>:<service>[:<api>]',
    ]);
    // With a directory, the same URN is accepted (resolved at run time).
    const { config } = loadConfig({ argv: ['--config', 'c.yaml', '--db_path', ':memory:', '--directory_url', 'dir.yaml'], env: {}, cwd: writeTargetsOnly(cwd) });
    expect(config.targets[0]?.url).toBe('urn:ads:platform:svc');
    expect(config.directory).toEqual({ sources: [join(cwd, 'dir.yaml')], refreshMs: 60_000 });
  });
});

function writeTargetsOnly(cwd: string): string {
  writeFileSync(join(cwd, 'c.yaml'), 'targets:\n  - { id: one, url: "urn:ads:platform:svc", tokenRequirement: none }\n');
  return cwd;
}
