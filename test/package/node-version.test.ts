/**
 * Issue 22.1: on a Node older than 24 every entry point says so in one line (and exits 1) instead of
 * failing with ERR_UNKNOWN_FILE_EXTENSION ".ts". Run with a real old Node: the machine's own (Debian's
 * node is 20), or the one TH_TEST_OLD_NODE names; skipped when there is none.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanEnv, NODE, ROOT, run } from '../support/process.ts';

const REQUIRED = Number(/REQUIRED_NODE_MAJOR = (\d+);/.exec(readFileSync(join(ROOT, 'bin/node-version.js'), 'utf8'))?.[1]);
const MESSAGE = new RegExp(
  `^token-handler needs Node\\.js ${REQUIRED} or newer, but this is Node\\.js (\\d+)\\.\\d+\\.\\d+ \\(.+\\)\\. Install Node\\.js ${REQUIRED}: \`nvm install\` in this directory \\(it reads \\.nvmrc\\), or the official binaries from https://nodejs\\.org/en/download\\n$`,
);

function majorOf(node: string): number | undefined {
  try {
    return Number(execFileSync(node, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8', timeout: 30_000 }).trim());
  } catch {
    return undefined;
  }
}

const oldNode = [process.env.TH_TEST_OLD_NODE, '/usr/bin/node', '/usr/local/bin/node', '/bin/node']
  .filter((path): path is string => path !== undefined && existsSync(path))
  .find((path) => (majorOf(path) ?? REQUIRED) < REQUIRED);
if (!oldNode) console.warn(`[node-version] SKIPPING the old-Node cases: no Node older than ${REQUIRED} on this machine (set TH_TEST_OLD_NODE)`);
/** npm beside the old node, run by it (npm's own `#!/usr/bin/env node` finds the old node first on PATH). */
const npm = oldNode && [join(dirname(oldNode), 'npm'), '/usr/bin/npm'].find((path) => existsSync(path));
const oldPath = oldNode ? { PATH: `${dirname(oldNode)}${delimiter}${process.env.PATH ?? ''}` } : {};

describe('the required Node version', () => {
  it('is one number in bin/node-version.js, package.json engines and .nvmrc', () => {
    expect(REQUIRED).toBeGreaterThanOrEqual(24);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${REQUIRED}`);
    expect(readFileSync(join(ROOT, '.nvmrc'), 'utf8').trim()).toBe(String(REQUIRED));
    // npm install refuses an older Node up front instead of a warning among thirty others.
    expect(readFileSync(join(ROOT, '.npmrc'), 'utf8')).toMatch(/^engine-strict=true$/m);
  });

  it('lets the current Node through', async () => {
    const result = await run(NODE, ['bin/token-handler.js', '--version'], { env: cleanEnv() });
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/^token-handler \d+\.\d+\.\d+/);
  });
});

describe.skipIf(!oldNode)(`every entry point on Node < ${REQUIRED} (${oldNode ?? 'none found'})`, { timeout: 60_000 }, () => {
  it.each([
    ['bin/token-handler.js (npx token-handler)', ['bin/token-handler.js', '--version']],
    ['bin/demo.js', ['bin/demo.js']],
    ['bin/node-version.js (the first step of npm run build)', ['bin/node-version.js']],
  ])('%s: one line and exit 1', async (_name, args) => {
    const result = await run(oldNode!, args, { env: cleanEnv(oldPath) });
    expect(result.stderr).toMatch(MESSAGE);
    expect(MESSAGE.exec(result.stderr)?.[1]).toBe(String(majorOf(oldNode!)));
    expect(result).toMatchObject({ code: 1, stdout: '' });
  });

  it.skipIf(!npm).each(['start', 'demo', 'build'])('npm run %s: the same line, and npm fails', async (script) => {
    const result = await run(npm!, ['run', '--silent', script], { env: cleanEnv(oldPath) });
    expect(result.code).not.toBe(0);
    expect(result.stderr.split('\n').filter((line) => line.startsWith('token-handler needs Node.js'))).toHaveLength(1);
    expect(result.stderr).toMatch(new RegExp(MESSAGE.source.slice(1, -3), 'm'));
    expect(result.stderr).not.toContain('ERR_UNKNOWN_FILE_EXTENSION');
  });
});
