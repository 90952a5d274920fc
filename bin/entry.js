// Loads one of the package's entry modules from src/ (a checkout) or dist/ (an installed package); see
// bin/token-handler.js for the rule. Imported after ./node-version.js, so Node is recent enough here.
import { existsSync } from 'node:fs';
import { sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** True when this file was installed as a dependency, where Node does not strip TypeScript types. */
export const installed = fileURLToPath(import.meta.url).split(sep).includes('node_modules');

/**
 * Imports `src/<name>.ts` or, in an installed package, `dist/<name>.js`.
 * @param {string} name module path below src/ without extension, e.g. `main` or `demo/run`
 * @returns {Promise<unknown>}
 */
export async function runEntry(name) {
  if (!installed) return import(new URL(`../src/${name}.ts`, import.meta.url).href);
  const compiled = new URL(`../dist/${name}.js`, import.meta.url);
  if (!existsSync(compiled)) {
    process.stderr.write(`token-handler: ${fileURLToPath(compiled)} is missing: this package was published without its build (npm run build).\n`);
    process.exit(1);
  }
  return import(compiled.href);
}
