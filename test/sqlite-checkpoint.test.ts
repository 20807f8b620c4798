import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SqliteStore } from '../src/store/sqlite.js';
import { tempDir } from './helpers/server.js';

/**
 * The WAL's checkpoint sequence number (header bytes 12-15): SQLite adds one each time the WAL
 * starts over from its beginning, which it does only once every frame was copied to the database.
 */
function walRestarts(dir: string): number {
  const fd = openSync(join(dir, 'omnipush.db-wal'), 'r');
  try {
    const b = Buffer.alloc(4);
    return readSync(fd, b, 0, 4, 12) === 4 ? b.readUInt32BE(0) : 0;
  } finally {
    closeSync(fd);
  }
}

/**
 * Frames now in the WAL (mxFrame of the wal-index header at the start of the -shm file, in the
 * machine's byte order): back to 0 when the WAL starts over.
 */
function walFrames(dir: string): number {
  const fd = openSync(join(dir, 'omnipush.db-shm'), 'r');
  try {
    const b = Buffer.alloc(4);
    return readSync(fd, b, 0, 4, 16) === 4 ? (endianness() === 'LE' ? b.readUInt32LE(0) : b.readUInt32BE(0)) : 0;
  } finally {
    closeSync(fd);
  }
}

// about a millisecond between batches: 32 messages a millisecond, a heavy load, yet not a loop that never lets go
const pause = (): Promise<void> => new Promise((r) => setTimeout(r, 1));

/**
 * Appends batches until `enough` says so; a deadline turns a stuck WAL into a failure rather than
 * a hang. Returns the messages appended and the most frames the WAL held.
 */
async function appendUntil(s: SqliteStore, dir: string, enough: () => boolean, deadlineMs = 60_000): Promise<{ appended: number; maxFrames: number }> {
  const payload = Buffer.alloc(300, 'x');
  let appended = 0;
  let maxFrames = 0;
  const end = Date.now() + deadlineMs;
  while (!enough()) {
    if (Date.now() > end) throw new Error(`deadline: ${appended} messages appended, checkpoints ${JSON.stringify(s.checkpointCounts())}, WAL restarts ${walRestarts(dir)}`);
    await s.append(Array.from({ length: 32 }, (_, i) => ({ topic: `c/${i % 4}`, payload, publishedAt: Date.now() })));
    appended += 32;
    maxFrames = Math.max(maxFrames, walFrames(dir));
    await pause();
  }
  return { appended, maxFrames };
}

/** The writer checkpoints itself past 25 000 frames (the backstop), 1000 once the thread is gone. */
const BACKSTOP_FRAMES = 25_000;
const SQLITE_DEFAULT_FRAMES = 1000;

describe('sqlite store: WAL checkpoints on their own thread', () => {
  it('copies the WAL on the thread while appends go on, the WAL starts over (never reaching the backstop), and nothing is lost', async () => {
    const d = tempDir('omnipush-ckpt-');
    const s = new SqliteStore(d.path, { synchronous: 'normal', checkpoints: { intervalMs: 50, commits: 100 } });
    try {
      await s.open();
      await s.append([{ topic: 'c/0', payload: Buffer.from('first'), publishedAt: Date.now() }]);
      const restarts0 = walRestarts(d.path);
      const { appended, maxFrames } = await appendUntil(s, d.path, () => (s.checkpointCounts()?.thread ?? 0) >= 5 && walRestarts(d.path) >= restarts0 + 3);
      const counts = s.checkpointCounts()!;
      assert.equal(counts.fellBack, false);
      assert.ok(counts.catchUp >= 1, `catch-up checkpoints in the writer: ${counts.catchUp}`);
      // a WAL past the backstop could have been started over by the writer's own checkpoint
      assert.ok(maxFrames < BACKSTOP_FRAMES, `the WAL held ${maxFrames} frames`);
      await s.close();
      const again = new SqliteStore(d.path);
      await again.open();
      const all = await again.history({ filters: ['c/#'], afterSeq: 0, toSeq: again.lastSeq(), limit: 1_000_000, now: Date.now() });
      assert.equal(all.length, appended + 1);
      await again.close();
    } finally {
      await s.close();
      d.remove();
    }
  });

  it('when the thread dies, the writer checkpoints again as SQLite does by default', async () => {
    const d = tempDir('omnipush-ckpt-');
    const s = new SqliteStore(d.path, { synchronous: 'normal', checkpoints: { intervalMs: 50, commits: 100 } });
    try {
      await s.open();
      await appendUntil(s, d.path, () => (s.checkpointCounts()?.thread ?? 0) >= 1);
      await s.killCheckpointThread();
      await appendUntil(s, d.path, () => s.checkpointCounts()!.fellBack, 10_000);
      // from the first new start of the WAL on, it holds what SQLite lets it hold by default
      const restarts = walRestarts(d.path);
      await appendUntil(s, d.path, () => walRestarts(d.path) > restarts);
      const { maxFrames } = await appendUntil(s, d.path, () => walRestarts(d.path) >= restarts + 3);
      assert.ok(maxFrames < 2 * SQLITE_DEFAULT_FRAMES, `the WAL held ${maxFrames} frames`);
    } finally {
      await s.close();
      d.remove();
    }
  });

  it('close waits for a checkpoint under way and leaves no WAL behind', async () => {
    const d = tempDir('omnipush-ckpt-');
    const s = new SqliteStore(d.path, { synchronous: 'full', checkpoints: { intervalMs: 10, commits: 1 } });
    try {
      await s.open();
      await appendUntil(s, d.path, () => (s.checkpointCounts()?.thread ?? 0) >= 1);
      // closing twice at once must not close the database under the first
      await Promise.all([s.append([{ topic: 'c/last', payload: Buffer.from('last'), publishedAt: Date.now() }]), s.close(), s.close()]);
      assert.equal(existsSync(join(d.path, 'omnipush.db-wal')), false);
      const again = new SqliteStore(d.path);
      await again.open();
      const [m] = await again.history({ filters: ['c/last'], afterSeq: 0, toSeq: again.lastSeq(), limit: 1, now: Date.now() });
      assert.equal(m?.payload.toString(), 'last');
      await again.close();
    } finally {
      await s.close();
      d.remove();
    }
  });
});
