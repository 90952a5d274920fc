// `npm run build`: compiles src/ to dist/ (what an installed package runs, see bin/token-handler.js) and
// copies what the compiler does not: the demo page's static files. dist/ is emptied first so a source file
// deleted since the last build leaves nothing behind.
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
/** `--outDir <dir>`: build elsewhere (the package test builds into a temporary directory). */
const at = process.argv.indexOf('--outDir');
const outDir = at >= 0 && process.argv[at + 1] ? process.argv[at + 1]! : `${root}dist`;

rmSync(outDir, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', `${root}tsconfig.build.json`, '--outDir', outDir], { stdio: 'inherit' });
cpSync(`${root}src/demo/page`, `${outDir}/demo/page`, { recursive: true });
