/**
 * An HTTPS target's certificate is verified: an upstream whose certificate no trusted CA signed gets no
 * request (the TLS handshake fails) and the browser gets 502, never the upstream's answer.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig, testTarget } from '../support/config.ts';
import { hasOpenssl, selfSigned } from '../support/tls.ts';
import { startApp, type RunningApp } from './support.ts';

describe.skipIf(!hasOpenssl)('HTTPS targets', () => {
  let upstream: Server;
  let app: RunningApp;
  let requests = 0;

  beforeAll(async () => {
    const { certFile, keyFile } = selfSigned();
    upstream = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (_req, res) => {
      requests += 1;
      res.end('the untrusted upstream answered');
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const { port } = upstream.address() as AddressInfo;
    app = await startApp(testConfig({ targets: [testTarget({ id: 'tls', url: `https://127.0.0.1:${port}/`, tokenRequirement: 'none' })] }));
  });

  afterAll(async () => {
    await app?.close();
    await new Promise<void>((resolve) => upstream?.close(() => resolve()));
  });

  it('refuses an upstream certificate no trusted CA signed: 502, nothing forwarded', async () => {
    const res = await fetch(`${app.base}/token-handler/v1/targets/tls/anything`);
    expect(res.status).toBe(502);
    expect(await res.json()).toMatchObject({ error: 'upstream_unavailable' });
    expect(requests).toBe(0);
  });
});
