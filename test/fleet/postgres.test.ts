/** Two token-handler processes on one PostgreSQL store (a schema of their own, via --db_schema). */
import { fleetSuite } from './scenarios.ts';
import { PG_URL, postgresNamespace, probePostgres, requireInCi } from './support.ts';

const unavailable = await probePostgres();
requireInCi('PostgreSQL', unavailable);
const url = new URL(PG_URL);

fleetSuite({
  name: 'PostgreSQL',
  unavailable,
  namespace: postgresNamespace,
  target: { host: url.hostname, port: Number(url.port || 5432) },
});
