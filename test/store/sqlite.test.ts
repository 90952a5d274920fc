import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../src/store/sqlite.ts';
import { makeRecord, runStoreContract } from './contract.ts';

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
