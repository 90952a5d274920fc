/** --workers 2 on one SQLite file: the store has no channel between processes; the primary relays. */
import { join } from 'node:path';
import { tempDir } from '../support/config.ts';
import { workersSuite } from './workers.ts';

workersSuite({
  name: 'SQLite',
  unavailable: undefined,
  namespace: () => {
    const file = join(tempDir('th-workers-'), 'token-handler.db');
    return { flags: () => ['--db_type=sqlite', `--db_path=${file}`], drop: async () => undefined };
  },
});
