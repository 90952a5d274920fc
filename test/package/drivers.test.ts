/**
 * Issue 22.5: a deployment needs only its own store's driver. The service, run as a user runs it, starts
 * without the other two, and says in one line what to install when its own is missing.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanEnv, NODE, start } from '../support/process.ts';

const HIDE = ['--import', './test/support/hidePackages.ts'];
const BASE_ARGS = ['--listen_addr', '127.0.0.1:0', '--oidc_issuer', 'http://127.0.0.1:9/', '--oidc_client_id', 'app', '--oidc_allow_insecure_issuer', '--log_level', 'info'];

function service(hidden: string[], args: string[]) {
  return start(NODE, [...HIDE, 'bin/token-handler.js', ...BASE_ARGS, ...args], {
    env: cleanEnv({ TH_HIDE_PACKAGES: hidden.join(' '), OIDC_CLIENT_SECRET: 'secret' }),
  });
}

describe('store drivers are loaded when configured', { timeout: 90_000 }, () => {
  it('serves on SQLite without pg and ioredis', async () => {
    const db = join(mkdtempSync(join(tmpdir(), 'th-drivers-')), 'th.db');
    const th = service(['pg', 'ioredis'], ['--db_path', db]);
    try {
      await th.waitFor(/Server listening at http:\/\/127\.0\.0\.1:\d+/);
    } finally {
      expect((await th.stop()).code).toBe(0);
    }
  });

  it.each([
    ['sqlite', 'better-sqlite3', ['--db_path', ':memory:']],
    ['postgresql', 'pg', ['--db_type', 'postgresql', '--db_url', 'postgres://127.0.0.1:9/none']],
    ['redis', 'ioredis', ['--db_type', 'redis', '--redis_url', 'redis://127.0.0.1:9']],
  ])('names the package to install, in one line, when the %s store has no %s', async (type, driver, args) => {
    const result = await service([driver], args).exited;
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `token-handler failed to start: the ${type} store (--db_type ${type}) needs the npm package ${driver}, which is not installed: ` +
        `run \`npm install ${driver}\` (an optional dependency: an install with --omit=optional, or one that removed it, leaves it out)\n`,
    );
  });
});
