import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { OmnipushError } from '../src/core/errors.js';
import type { AppendInput } from '../src/core/store.js';
import { RedisStore } from '../src/store/redis.js';
import { redisMissing, startRedis } from './helpers/redis.js';
import { REPO_ROOT, waitFor, within } from './helpers/server.js';

const input = (topic: string, data: string, extra: Partial<AppendInput> = {}): AppendInput => ({ topic, payload: Buffer.from(data), publishedAt: 1_000, ...extra });
const texts = (ms: Array<{ payload: Buffer }>) => ms.map((m) => m.payload.toString());
const all = { filters: ['#'], afterSeq: 0, toSeq: Number.MAX_SAFE_INTEGER, limit: 1_000_000, now: 0 };

/** Resolves with the rejection of `p`, failing if it resolves. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  assert.fail('expected a rejection');
}

describe('redis store when Redis goes away', { skip: redisMissing || false }, () => {
  it('rejects appends with unavailable at once while Redis is down, and works again after it is back', async () => {
    const redis = await startRedis({ persist: true });
    const s = new RedisStore({ url: redis.url, prefix: 'down:' });
    try {
      await s.open();
      await s.append([input('d', '1'), input('d', '2')]);
      await redis.stop();
      const t0 = Date.now();
      const err = await within(rejection(s.append([input('d', 'lost')])), 3_000, 'append to fail while Redis is down');
      assert.ok(err instanceof OmnipushError, String(err));
      assert.equal(err.code, 'unavailable');
      assert.match(err.message, /Redis/);
      assert.ok(Date.now() - t0 < 3_000);
      const again = await within(rejection(s.history(all)), 3_000, 'history to fail while Redis is down');
      assert.equal((again as OmnipushError).code, 'unavailable');

      await redis.start();
      await waitFor(() => s.getMeta('x').then(() => true, () => false), 'the store to reconnect', 15_000);
      const [m] = await s.append([input('d', '3')]);
      assert.equal(m.seq, 3, 'seqs continue after the outage');
      assert.deepEqual(texts(await s.history(all)), ['1', '2', '3']);
    } finally {
      await s.close();
      await redis.remove();
    }
  });

  it('never reuses a seq after Redis lost its data under a running server, and reports the loss as a gap', async () => {
    const redis = await startRedis();
    const s = new RedisStore({ url: redis.url, prefix: 'lost:' });
    const admin = new Redis(redis.url);
    try {
      await s.open();
      const epoch = s.epoch;
      await s.append([input('l', '1'), input('l', '2')]);
      await admin.flushall();
      const [m] = await s.append([input('l', '3')]);
      assert.equal(m.seq, 3);
      assert.equal(m.cursor, `${epoch}_3`);
      assert.equal(await s.prunedThrough(['l']), 2, 'clients resuming from before the loss get a gap');
      assert.equal(await s.prunedThrough(['elsewhere/#']), 2);
      const fresh = new RedisStore({ url: redis.url, prefix: 'lost:' });
      await fresh.open();
      assert.equal(fresh.epoch, epoch, 'the epoch was written back');
      assert.equal(fresh.lastSeq(), 3);
      await fresh.close();

      // lost again, and this time a new server opens first: it starts a new history, and the old
      // one refuses to write into it
      await admin.flushall();
      const next = new RedisStore({ url: redis.url, prefix: 'lost:' });
      await next.open();
      assert.notEqual(next.epoch, epoch);
      const err = await rejection(s.append([input('l', 'x')]));
      assert.equal((err as OmnipushError).code, 'internal');
      assert.match((err as OmnipushError).message, /restart/);
      const [n] = await next.append([input('l', 'y')]);
      assert.equal(n.seq, 1);
      await next.close();
    } finally {
      await admin.quit();
      await s.close();
      await redis.remove();
    }
  });

  it('fails a command Redis does not answer after the command timeout, with unavailable', async () => {
    const redis = await startRedis();
    const s = new RedisStore({ url: redis.url, prefix: 'hung:', commandTimeoutMs: 300 });
    try {
      await s.open();
      redis.freeze();
      const err = await within(rejection(s.append([input('h', 'maybe')])), 3_000, 'append to time out');
      assert.equal((err as OmnipushError).code, 'unavailable');
      assert.match((err as OmnipushError).message, /timed out/i);
      redis.thaw();
      // the script reached Redis before it froze, so it ran once Redis went on: the documented
      // "failed, but may have been stored" case; later appends continue after it
      await waitFor(() => s.getMeta('x').then(() => true, () => false), 'Redis to answer after the thaw');
      const [m] = await s.append([input('h', 'next')]);
      assert.deepEqual(texts(await s.history({ ...all, toSeq: m.seq })), ['maybe', 'next']);
      assert.equal(m.seq, 2);
    } finally {
      redis.thaw();
      await s.close();
      await redis.remove();
    }
  });

  it('keeps every acknowledged append when the writing process is killed', async () => {
    const redis = await startRedis();
    const script = `
      import { RedisStore } from ${JSON.stringify(`${REPO_ROOT}dist/src/store/redis.js`)};
      const s = new RedisStore({ url: process.argv[1], prefix: 'kill:' });
      await s.open();
      for (let i = 0; ; i++) {
        const out = await s.append(Array.from({ length: 1 + (i % 20) }, (_, j) => ({ topic: 'k/' + (j % 3), payload: Buffer.from(i + ':' + j), publishedAt: Date.now() })));
        process.stdout.write(out.map((m) => m.seq + ' ' + m.payload.toString()).join('\\n') + '\\n');
      }`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, redis.url], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((r) => child.once('exit', r));
    const acked = new Map<number, string>();
    try {
      const lines = createInterface({ input: child.stdout! });
      await within(
        new Promise<void>((resolve) => {
          lines.on('line', (l) => {
            const [seq, data] = l.split(' ');
            acked.set(Number(seq), data);
            if (acked.size >= 3000) resolve();
          });
        }),
        30_000,
        '3000 acknowledged appends',
      );
      child.kill('SIGKILL');
      await exited;
      const s = new RedisStore({ url: redis.url, prefix: 'kill:' });
      await s.open();
      const stored = new Map((await s.history({ ...all, toSeq: s.lastSeq() })).map((m) => [m.seq, m.payload.toString()]));
      await s.close();
      const lost = [...acked].filter(([seq, data]) => stored.get(seq) !== data);
      assert.equal(lost.length, 0, `${lost.length} of ${acked.size} acknowledged appends lost`);
    } finally {
      child.kill('SIGKILL');
      await redis.remove();
    }
  });

  it('fails open() with unavailable when Redis cannot be reached', async () => {
    const redis = await startRedis();
    const url = redis.url;
    await redis.remove();
    const s = new RedisStore({ url, prefix: 'none:' });
    const err = await within(rejection(s.open()), 10_000, 'open to fail');
    assert.equal((err as OmnipushError).code, 'unavailable');
    await s.close();
  });
});
