/** Refresh under faults on a PostgreSQL store (a schema of its own, reached through a TCP proxy the test cuts). */
import { faultSuite } from './faults.ts';
import { PG_URL, postgresNamespace, probePostgres, requireInCi } from './support.ts';

const unavailable = await probePostgres();
requireInCi('PostgreSQL', unavailable);
const url = new URL(PG_URL);

faultSuite({
  name: 'PostgreSQL',
  unavailable,
  namespace: postgresNamespace,
  target: { host: url.hostname, port: Number(url.port || 5432) },
});
