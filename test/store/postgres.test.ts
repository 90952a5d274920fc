import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresStore } from '../../src/store/postgres.ts';
import { checkFailsFastWhenClosed, checkOutageRecovery, runStoreContract } from './contract.ts';
import { closedPort, startTcpProxy } from './net.ts';

import { PG_URL as url, probePostgres as probe } from '../support/services.ts';
const quiet = () => {};


const unavailable = await probe();
const admin = unavailable === undefined ? new pg.Pool({ connectionString: url, max: 2 }) : undefined;
afterAll(() => admin?.end());

const newSchemaName = () => `th_test_${randomBytes(6).toString('hex')}`;
const dropSchema = (schema: string) => admin?.query(`drop schema if exists "${schema}" cascade`);

runStoreContract('postgresql', {
  unavailable,
  async namespace() {
    // Fresh schema per namespace; migrate() creates it.
    const schema = newSchemaName();
    return {
      open: () => createPostgresStore({ connectionString: url, schema, poolSize: 4, onError: quiet }),
      drop: async () => void (await dropSchema(schema)),
    };
  },
});

describe.skipIf(unavailable !== undefined)('postgresql store specifics', () => {
  it('returns BIGINT times as numbers and records the migration once', async () => {
    const schema = newSchemaName();
    const [a, b] = [0, 1].map(() => createPostgresStore({ connectionString: url, schema, onError: quiet }));
    try {
      await Promise.all([a!.migrate(), b!.migrate()]);
      const { rows } = await admin!.query(`select name from "${schema}".token_handler_migration order by name`);
      expect(rows).toStrictEqual([{ name: '0001_initial' }, { name: '0002_active_sessions_index' }, { name: '0003_used_tokens' }, { name: '0004_prefixed_table_names' }]);
      const { rows: indexes } = await admin!.query('select indexname from pg_indexes where schemaname = $1 order by 1', [schema]);
      expect(indexes.map((r: { indexname: string }) => r.indexname)).toEqual(
        expect.arrayContaining([
          'token_handler_sessions_issuer_sub_idx',
          'token_handler_sessions_issuer_sid_idx',
          'token_handler_sessions_expires_at_idx',
          'token_handler_sessions_idle_expires_expires_idx',
        ]),
      );
    } finally {
      await Promise.all([a!.close(), b!.close()]);
      await dropSchema(schema);
    }
  });

  it('fails fast with StoreUnavailableError when nothing listens on the port', async () => {
    const port = await closedPort();
    await checkFailsFastWhenClosed(createPostgresStore({ host: '127.0.0.1', port, database: 'test', user: 'postgres', onError: quiet }));
  });

  it('fails fast while the database is cut off and recovers by itself, listener included', async () => {
    const proxy = await startTcpProxy(new URL(url).port ? Number(new URL(url).port) : 5432, new URL(url).hostname);
    const schema = newSchemaName();
    const viaProxy = new URL(url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const store = createPostgresStore({ connectionString: viaProxy.toString(), schema, onError: quiet });
    const direct = createPostgresStore({ connectionString: url, schema, onError: quiet });
    try {
      await checkOutageRecovery(store, direct, proxy, 15_000);
    } finally {
      await Promise.all([store.close(), direct.close()]);
      await proxy.close();
      await dropSchema(schema);
    }
  });
});
