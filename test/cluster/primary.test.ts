/** The primary of --workers: its crash-loop backoff, and a group that cannot start. */
import { existsSync, lstatSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { backoffMs } from '../../src/cluster/primary.ts';
import { tempDir } from '../support/config.ts';
import { NODE, cleanEnv, run, start } from '../support/process.ts';
import { within } from '../fleet/support.ts';
import { rawRequest } from '../proxy/support.ts';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('the primary of a worker group', () => {
  it('replaces a worker at once, then waits longer while replacements keep dying young', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(backoffMs)).toEqual([0, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  });

  it('exits 1 when a worker fails before the group is up, instead of replacing it forever', async () => {
    const dir = tempDir('th-workers-fail-');
    // A directory where the database file should be: every worker fails to open the store.
    const finished = await run(NODE, ['src/main.ts', '--workers=2', '--listen_addr=127.0.0.1:0', `--db_path=${dir}`], { env: cleanEnv({ HOME: dir }) });
    expect(finished.code).toBe(1);
    expect(finished.stdout).toMatch(/worker \d exited \(code 1\) before all workers were listening; stopping/);
    expect(finished.stdout).not.toMatch(/starting a replacement/);
  }, 60_000);

  it('serves the group\'s metrics on --metrics_listen_addr, whose port every worker shares', async () => {
    const dir = tempDir('th-workers-metrics-');
    const group = start(NODE, ['src/main.ts', '--workers=2', '--listen_addr=127.0.0.1:0', '--metrics_listen_addr=127.0.0.1:0', `--db_path=${join(dir, 'th.db')}`], { env: cleanEnv({ HOME: dir }) });
    try {
      await group.waitFor(/all 2 workers listening/);
      const [, metricsPort] = await group.waitFor(/"listener":"metrics"[^\n]*Server listening at http:\/\/127\.0\.0\.1:(\d+)/);
      const [, mainPort] = await group.waitFor(/"pid":\d+,"hostname":"[^"]*","msg":"Server listening at http:\/\/127\.0\.0\.1:(\d+)/);
      // Scrapes on fresh connections go to either worker; each answers for both.
      for (let i = 0; i < 4; i++) {
        const body = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { headers: { connection: 'close' } })).text();
        expect(body.match(/^token_handler_worker_info\{/gm)).toHaveLength(2);
      }
      expect((await fetch(`http://127.0.0.1:${mainPort}/metrics`)).status).toBe(404);
    } finally {
      await group.stop();
    }
  }, 60_000);

  it('shares one forward-auth Unix socket between its workers, and removes the one a killed group left behind', async () => {
    const dir = tempDir('th-workers-socket-');
    const socket = join(dir, 'forward-auth.sock');
    const args = ['src/main.ts', '--workers=2', '--listen_addr=127.0.0.1:0', `--forward_auth_listen_addr=unix:${socket}`, '--forward_auth_socket_mode=0600', `--db_path=${join(dir, 'th.db')}`];
    // Every check on a fresh connection, answered whichever worker takes it (403: no target is mounted there).
    const checks = async () => {
      for (let i = 0; i < 4; i++) {
        const res = await rawRequest(`unix:${socket}`, '/', { headers: { 'x-original-method': 'GET', 'x-original-uri': '/nowhere' } });
        expect(res.status, res.body).toBe(403);
      }
    };
    const first = start(NODE, args, { env: cleanEnv({ HOME: dir }) });
    try {
      const [, pids] = await first.waitFor(/"pids":\[(\d+,\d+)\][^\n]*all 2 workers listening/);
      expect(statSync(socket).mode & 0o777).toBe(0o600);
      await checks();
      // A second group on the same socket while the first listens: refused before it forks, the socket left alone.
      const second = await run(NODE, args, { env: cleanEnv({ HOME: dir }) });
      expect(second.code).toBe(1);
      expect(second.stdout).toMatch(/forward-auth\.sock is in use: another process listens on it/);
      await checks();
      // Killed outright, the group cannot remove its socket; the next start does.
      first.child.kill('SIGKILL');
      const workers = pids!.split(',').map(Number);
      await within(20_000, async () => !workers.some(alive), 'a worker outlived its primary');
      expect(lstatSync(socket).isSocket()).toBe(true);
    } finally {
      await first.stop();
    }
    const third = start(NODE, args, { env: cleanEnv({ HOME: dir }) });
    try {
      await third.waitFor(/all 2 workers listening/);
      await checks();
    } finally {
      await third.stop();
    }
    // Stopped cleanly, the group leaves no socket behind.
    expect(existsSync(socket)).toBe(false);
  }, 90_000);

  it('leaves no worker behind when the primary itself is killed', async () => {
    const dir = tempDir('th-workers-orphans-');
    const group = start(NODE, ['src/main.ts', '--workers=2', '--listen_addr=127.0.0.1:0', `--db_path=${join(dir, 'th.db')}`], { env: cleanEnv({ HOME: dir }) });
    try {
      const [, pids] = await group.waitFor(/"pids":\[(\d+,\d+)\][^\n]*all 2 workers listening/);
      const workers = pids!.split(',').map(Number);
      expect(workers.every(alive)).toBe(true);
      group.child.kill('SIGKILL');
      await within(20_000, async () => !workers.some(alive), 'a worker outlived its primary');
    } finally {
      await group.stop();
    }
  }, 60_000);
});
