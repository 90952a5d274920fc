/**
 * Worker thread that checkpoints a SQLite WAL file on its own connection. SQLite's automatic checkpoint
 * runs inside whichever commit crosses the threshold, on the committing thread: with better-sqlite3
 * that is the event loop, and a checkpoint (copying the WAL into the database and an fsync) stalls it
 * for 20-250 ms. A PASSIVE checkpoint from another connection never blocks the writer, so the store
 * turns auto-checkpointing off and this worker does the work off the request path instead.
 */
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

export interface CheckpointerData {
  file: string;
  intervalMs: number;
}

const { file, intervalMs } = workerData as CheckpointerData;
const db = new Database(file, { fileMustExist: true });
// A checkpoint never waits: when the writer holds what it needs, the next round copies the rest.
db.pragma('busy_timeout = 0');

const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (err) {
    // SQLITE_BUSY: another checkpoint is running. Anything else is reported; the store falls back.
    if ((err as { code?: unknown }).code !== 'SQLITE_BUSY') throw err;
  }
}, intervalMs);

parentPort?.on('message', (message: unknown) => {
  if (message !== 'close') return;
  clearInterval(timer);
  db.close();
  parentPort?.close();
});
