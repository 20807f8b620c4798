import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import type { CheckpointResult, CheckpointWorkerData } from './sqlite-checkpoint-worker.js';

export interface CheckpointOptions {
  /** How often (ms) the WAL is copied into the database file while the store is written. */
  intervalMs: number;
  /** Commits after which a copy starts before the interval is over (a heavy load's WAL stays small). */
  commits: number;
}

export const DEFAULT_CHECKPOINTS: CheckpointOptions = { intervalMs: 1000, commits: 1000 };

/**
 * WAL frames (4 KiB each) past which the writer checkpoints itself, as SQLite does by default at
 * 1000: only if the thread falls far behind. A history sweep deleting 100k rows writes several
 * thousand frames in a few ms while the thread copies the last second's: at 10 000 frames, the
 * writer's checkpoint (a 60 ms pause) came with every sweep under wrk; at 25 000 the WAL peaked
 * at 46-67 MB.
 */
const BACKSTOP_FRAMES = 25_000;
const SQLITE_DEFAULT_AUTOCHECKPOINT = 1000;

/** What the checkpoints did, for tests and the curious. */
export interface CheckpointCounts {
  /** Checkpoints run on the thread. */
  thread: number;
  /** Checkpoints run by the writer after one on the thread, for the frames committed meanwhile. */
  catchUp: number;
  /** The thread failed: SQLite checkpoints in the writer again. */
  fellBack: boolean;
}

/**
 * Checkpoints the WAL on a thread of its own. SQLite's own checkpoint runs inside the commit that
 * crosses 1000 WAL frames, on the event loop, and waits there for two fsyncs: 60-110 ms pauses of
 * every request under an HTTP publish load, and a few µs of the loop's CPU per publish.
 *
 * A checkpoint on another connection copies the frames that were there when it began; the writer
 * keeps committing meanwhile, and SQLite starts the WAL over only once every frame was copied, so
 * under a steady load the WAL would never start over and would grow without end. The writer
 * therefore copies the frames committed during the thread's checkpoint itself, at once after it:
 * a short checkpoint on the loop (3-10 ms measured under wrk, against 60-110 ms), after which the
 * next commit starts the WAL from its beginning.
 */
export class WalCheckpoints {
  readonly counts: CheckpointCounts = { thread: 0, catchUp: 0, fellBack: false };
  private worker: Worker | null = null;
  private sinceLast = 0;
  private running = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly db: Database.Database,
    private readonly file: string,
    private readonly synchronous: 'NORMAL' | 'FULL',
    private readonly opts: CheckpointOptions = DEFAULT_CHECKPOINTS,
  ) {
    db.pragma(`wal_autocheckpoint = ${BACKSTOP_FRAMES}`);
    this.timer = setInterval(() => this.start(), opts.intervalMs);
    this.timer.unref();
  }

  /** The writer committed a transaction. */
  committed(): void {
    if (++this.sinceLast >= this.opts.commits) this.start();
  }

  private start(): void {
    if (this.sinceLast === 0 || this.running || this.counts.fellBack) return;
    this.sinceLast = 0;
    this.running = true;
    (this.worker ?? this.spawn()).postMessage('checkpoint');
  }

  private spawn(): Worker {
    const data: CheckpointWorkerData = { file: this.file, synchronous: this.synchronous };
    const w = new Worker(new URL('./sqlite-checkpoint-worker.js', import.meta.url), { workerData: data });
    w.unref();
    w.on('message', (r: CheckpointResult) => this.done(r));
    w.on('error', () => this.fallBack(w));
    w.on('exit', () => this.fallBack(w));
    this.worker = w;
    return w;
  }

  private done(r: CheckpointResult): void {
    this.running = false;
    this.counts.thread++;
    // nothing committed since the thread began, and it copied all: the next commit starts the WAL over
    if (!this.db.open || (this.sinceLast === 0 && r.log === r.checkpointed && !r.busy)) return;
    this.db.pragma('wal_checkpoint(PASSIVE)');
    this.counts.catchUp++;
  }

  /** The thread is gone without being asked to: the writer checkpoints again, as SQLite does by default. */
  private fallBack(w: Worker): void {
    if (this.worker !== w) return;
    this.worker = null;
    this.running = false;
    this.counts.fellBack = true;
    if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${SQLITE_DEFAULT_AUTOCHECKPOINT}`);
  }

  /** For tests: ends the thread as a crash would. */
  async killThread(): Promise<void> {
    await this.worker?.terminate();
  }

  /** Stops the thread (after the checkpoint it may be running); the writer then closes the database. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    const w = this.worker;
    if (!w) return;
    this.worker = null;
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    // unref'd so that it never keeps a process alive, but the close is awaited
    w.ref();
    w.postMessage('close');
    await exited;
  }
}
