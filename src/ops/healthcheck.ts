/**
 * The container HEALTHCHECK: `node src/ops/healthcheck.ts` exits 0 when GET /healthz answers 200 on this
 * machine, 1 otherwise. The slim image has no curl or wget. It reads the same environment the service does
 * (LISTEN_ADDR, TLS_CERT), so configure the container with environment variables, not flags.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

const TIMEOUT_MS = 3000;

/** The port of a `host:port`, `:port` or `[::1]:port` listen address (default 9080). */
export function listenPort(addr: string | undefined): number {
  const match = /:(\d+)$/.exec(addr?.trim() ?? '');
  return match ? Number(match[1]) : 9080;
}

function probe(): Promise<number> {
  const port = listenPort(process.env.LISTEN_ADDR);
  const tls = Boolean(process.env.TLS_CERT);
  const request = tls ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    // Loopback to our own process: the certificate names the public host, not 127.0.0.1.
    const req = request({ host: '127.0.0.1', port, path: '/healthz', method: 'GET', timeout: TIMEOUT_MS, rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

if (import.meta.main) {
  probe().then(
    (status) => process.exit(status === 200 ? 0 : 1),
    (err: unknown) => {
      console.error(`healthcheck failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
