#!/usr/bin/env node
// `npm run demo`: the embedded IdP, the demo upstream and token-handler (src/demo/run.ts). The demo is a
// development tool: it needs the development dependencies (oidc-provider, axios, ws), which an install
// with --omit=dev leaves out.
import './node-version.js';
import { installed, runEntry } from './entry.js';

const DEMO_PACKAGES = ['oidc-provider', 'axios', 'ws'];

try {
  await runEntry('demo/run');
} catch (err) {
  const missing = err && err.code === 'ERR_MODULE_NOT_FOUND' && DEMO_PACKAGES.find((name) => String(err.message).includes(`'${name}'`));
  if (!missing) throw err;
  process.stderr.write(
    `token-handler demo: the package ${missing} is not installed: the demo needs the development dependencies (${DEMO_PACKAGES.join(', ')}); ` +
      (installed ? `install them beside token-handler: npm install ${DEMO_PACKAGES.join(' ')}\n` : 'run npm install (without --omit=dev)\n'),
  );
  process.exit(1);
}
