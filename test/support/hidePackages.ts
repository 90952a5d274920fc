/**
 * `node --import ./test/support/hidePackages.ts ...` with TH_HIDE_PACKAGES="pg ioredis": those packages
 * resolve as if they were not installed (ERR_MODULE_NOT_FOUND, Node's own message), as after an install
 * that left them out. Lets a test run the real service without a driver, without touching node_modules.
 */
import { registerHooks } from 'node:module';

const hidden = new Set((process.env.TH_HIDE_PACKAGES ?? '').split(/\s+/).filter(Boolean));

registerHooks({
  resolve(specifier, context, nextResolve) {
    const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0];
    if (name !== undefined && hidden.has(name)) {
      throw Object.assign(new Error(`Cannot find package '${specifier}' imported from ${context.parentURL ?? 'the command line'}`), { code: 'ERR_MODULE_NOT_FOUND' });
    }
    return nextResolve(specifier, context);
  },
});
