// `npm run demo` (through bin/demo.js, which checks the Node version first): starts the embedded IdP, the
// demo upstream and token-handler, and prints the URL. Every failure to start is one line, not a stack.
import '../../bin/node-version.js';
import type { DemoServer } from './demo.ts';

/** The environment variable that moves each server, and its default port. */
const PORTS: Record<DemoServer, { variable: string; fallback: number }> = {
  'token-handler': { variable: 'DEMO_PORT', fallback: 9080 },
  idp: { variable: 'DEMO_IDP_PORT', fallback: 9090 },
  upstream: { variable: 'DEMO_UPSTREAM_PORT', fallback: 9081 },
};

function fail(line: string, code = 1): never {
  process.stderr.write(`token-handler demo: ${line}\n`);
  process.exit(code);
}

function portOf(server: DemoServer): number {
  const { variable, fallback } = PORTS[server];
  const raw = process.env[variable];
  if (raw === undefined || raw.trim() === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`${variable}=${JSON.stringify(raw)} is not a port: use 1-65535, or 0 for any free port`);
  return port;
}

const ports = { port: portOf('token-handler'), idpPort: portOf('idp'), upstreamPort: portOf('upstream') };
// Only now the service and the IdP (a second or more on a slow machine): a mistyped port is reported at once.
const { ConfigError, formatConfigError } = await import('../config/errors.ts');
const { DemoPortInUseError, startDemo } = await import('./demo.ts');

let demo;
try {
  demo = await startDemo({
    ...ports,
    extraArgs: process.argv.slice(2),
    env: process.env,
    cwd: process.cwd(),
  });
} catch (err) {
  if (err instanceof DemoPortInUseError) {
    fail(`${err.message}: set ${PORTS[err.server].variable} to a free port, or to 0 to pick one (the URLs are printed)`);
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`${formatConfigError(err)}\n`);
    process.exit(2);
  }
  fail(`could not start: ${err instanceof Error ? err.message : String(err)}`);
}

const line = '-'.repeat(64);
console.log(`\n${line}\n  token-handler demo is running\n\n  Open ${demo.url} and log in as  demo / demo\n\n  IdP (oidc-provider):  ${demo.idp.issuer}\n  Demo upstream API:    ${demo.upstream.url}\n  Stop with Ctrl+C\n${line}\n`);

const stop = (): void => {
  demo.close().then(() => process.exit(0), () => process.exit(1));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
