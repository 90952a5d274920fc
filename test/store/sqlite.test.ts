import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../src/store/sqlite.ts';
import { cleanEnv, NODE, ROOT, run } from '../support/process.ts';
import { eventually, makeRecord, runStoreContract } from './contract.ts';

const dir = await mkdtemp(join(tmpdir(), 'th-store-sqlite-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

let files = 0;
runStoreContract('sqlite', {
  unavailable: undefined,
  async namespace() {
    const path = join(dir, `store-${++files}.db`);
    return {
      open: () => createSqliteStore({ path, onError: () => {} }),
      // The suite closes its stores first; the directory goes in afterAll.
      drop: async () => {},
    };
  },
});

describe('sqlite store specifics', () => {
  it('creates the file (and its directory) on first start, in WAL mode', async () => {
    const path = join(dir, 'nested', 'deeper', 'sessions.db');
    const store = createSqliteStore({ path });
    try {
      await store.migrate();
      expect(existsSync(path)).toBe(true);
      await store.create(makeRecord());
      // A WAL-mode database keeps its write-ahead log next to it while open.
      expect(existsSync(`${path}-wal`)).toBe(true);
    } finally {
      await store.close();
    }
  });

  // The workers of a --workers group open one fresh file at the same instant. Turning it to WAL takes the
  // file alone for a moment, which SQLite does not wait for: before the retry, 46 of 100 such pairs had one
  // process fail with "database is locked". Lined up on a wall-clock instant (a process that arrives late
  // only makes the pair less likely to collide: the test can miss the bug, never fail without it).
  it('opens and migrates a fresh file from several processes starting at the same instant', async () => {
    const script = `
      const { createSqliteStore } = await import(${JSON.stringify(`${ROOT}src/store/sqlite.ts`)});
      const [path, at] = [process.argv[1], Number(process.argv[2])];
      while (Date.now() < at) {}
      const store = createSqliteStore({ path, onError: () => {} });
      await store.migrate();
      console.log('active', await store.countActive(Date.now()));
      await store.close();`;
    for (let round = 0; round < 8; round += 1) {
      const path = join(dir, `together-${round}.db`);
      const at = Date.now() + 1500;
      const started = Array.from({ length: 3 }, () => run(NODE, ['--input-type=module', '-e', script, path, String(at)], { env: cleanEnv() }));
      for (const finished of await Promise.all(started)) {
        expect(finished.stderr + finished.stdout).toBe('active 0\n');
        expect(finished.code).toBe(0);
      }
    }
  }, 120_000);

  it('keeps data across a reopen', async () => {
    const path = join(dir, 'reopen.db');
    const record = makeRecord();
    const first = createSqliteStore({ path });
    await first.migrate();
    await first.create(record);
    await first.close();
    const second = createSqliteStore({ path });
    try {
      await second.migrate();
      expect(await second.get(record.idHash)).toStrictEqual(record);
    } finally {
      await second.close();
    }
  });
});

describe('sqlite store at scale', () => {
  it('counts active sessions slice by slice, ties on a slice boundary counted once', async () => {
    const store = createSqliteStore({ path: join(dir, 'count-slices.db'), countSliceSize: 3 });
    try {
      await store.migrate();
      const now = Date.now();
      const HOUR = 3600_000;
      // Idle ends with many ties, some absolutely expired, some idle-expired, one exactly at now.
      const idleEnds = [now, now + 1, now + 1, now + 1, now + 1, now + 2, now + 5, now + 5, now + 9, now - 1, now - 5];
      let expected = 0;
      for (const [i, idle] of idleEnds.entries()) {
        const expiresAt = i % 4 === 3 ? now - 10 : now + HOUR;
        await store.create(makeRecord({ createdAt: now - HOUR, expiresAt, idleExpiresAt: idle }));
        if (idle >= now && expiresAt >= now) expected += 1;
      }
      expect(expected).toBeGreaterThan(3);
      expect(await store.countActive(now)).toBe(expected);
      const single = createSqliteStore({ path: join(dir, 'count-slices.db'), countSliceSize: 1000 });
      expect(await single.countActive(now)).toBe(expected);
      await single.close();
    } finally {
      await store.close();
    }
  });

  it('checkpoints the WAL from a worker thread, not in a commit on the event loop', async () => {
    const path = join(dir, 'checkpoints.db');
    const store = createSqliteStore({ path, checkpointIntervalMs: 50 });
    try {
      await store.migrate();
      const sizeBefore = statSync(path).size;
      // ~1 MB of sessions: below SQLite's own auto-checkpoint threshold (1000 pages), which is off anyway.
      for (let i = 0; i < 400; i += 1) await store.create(makeRecord({ payload: 'p'.repeat(2500) }));
      // Only a checkpoint moves pages from the WAL into the database file.
      await eventually(() => statSync(path).size > sizeBefore + 800_000, 5000, 50);
    } finally {
      await store.close();
    }
  });
});
