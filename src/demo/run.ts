// `npm run demo`: starts the embedded IdP, the demo upstream and token-handler, and prints the URL.
import { startDemo } from './demo.ts';

const port = Number(process.env.DEMO_PORT ?? 9080);
const demo = await startDemo({ port, extraArgs: process.argv.slice(2) });
const line = '-'.repeat(64);
console.log(`\n${line}\n  token-handler demo is running\n\n  Open ${demo.url} and log in as  demo / demo\n\n  IdP (oidc-provider):  ${demo.idp.issuer}\n  Demo upstream API:    ${demo.upstream.url}\n  Stop with Ctrl+C\n${line}\n`);

const stop = (): void => {
  demo.close().then(() => process.exit(0), () => process.exit(1));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
