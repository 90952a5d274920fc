/** --workers 2 on PostgreSQL (a schema of its own). */
import { postgresNamespace, probePostgres, requireInCi } from '../fleet/support.ts';
import { workersSuite } from './workers.ts';

const unavailable = await probePostgres();
requireInCi('PostgreSQL', unavailable);

workersSuite({ name: 'PostgreSQL', unavailable, namespace: postgresNamespace });
