/**
 * The thread that copies the sqlite store's WAL into the database file (see sqlite-checkpoint.ts):
 * its own connection, told when to run a PASSIVE checkpoint, answering with SQLite's figures.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

export interface CheckpointWorkerData {
  file: string;
  synchronous: 'NORMAL' | 'FULL';
}

/** SQLite's answer to `wal_checkpoint`: frames in the WAL and frames now in the database file. */
export interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

const port = parentPort!;
const data = workerData as CheckpointWorkerData;
const db = new Database(data.file, { fileMustExist: true });
// a checkpoint syncs as its connection's `synchronous` says: the same as the writer's
db.pragma(`synchronous = ${data.synchronous}`);
db.pragma('wal_autocheckpoint = 0');

port.on('message', (m: 'checkpoint' | 'close') => {
  if (m === 'close') {
    db.close();
    port.close();
    return;
  }
  const [r] = db.pragma('wal_checkpoint(PASSIVE)') as CheckpointResult[];
  port.postMessage(r);
});
