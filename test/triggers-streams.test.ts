import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { RunningServer } from '../src/server.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';

async function history(base: string, filter: string): Promise<Array<{ cursor: string; data: string; event?: string }>> {
  const r = await fetch(`${base}/v1/history?topic=${encodeURIComponent(filter)}&since=all&limit=1000`);
  return ((await r.json()) as { messages: Array<{ cursor: string; data: string; event?: string }> }).messages;
}

describe('Redis Streams consumer', { skip: redisMissing || undefined }, () => {
  let redis: RedisServer;
  let app: Redis;
  before(async () => {
    redis = await startRedis();
    app = new Redis(redis.url);
  });
  after(async () => {
    app?.disconnect();
    await redis?.remove();
  });

  it('an XADD entry reaches an SSE subscriber and is acknowledged in the group', async () => {
    const server = await startTestServer({ triggers: { redisStreams: { url: redis.url, streams: ['app:events'], group: 'push' } } });
    try {
      const sse = await openRawSse(`${server.http}/v1/sse?topic=users/%2B`);
      await app.xadd('app:events', '*', 'topic', 'users/7', 'data', '{"name":"Ada"}', 'event', 'renamed', 'properties', '{"by":"admin"}');
      const ev = await waitFor(() => sse.events().find((e) => e.event === 'renamed'), 'the entry as an SSE event', 5_000);
      sse.close();
      assert.equal(ev.data, '{"name":"Ada"}');
      await waitFor(async () => {
        const p = (await app.xpending('app:events', 'push')) as [number, ...unknown[]];
        return p[0] === 0;
      }, 'the entry acknowledged');
    } finally {
      await server.close();
    }
  });

  it('two consumers of one group publish each entry once; entry keys dedupe repeats', async () => {
    const cfg = (consumer: string) => ({ triggers: { redisStreams: { url: redis.url, streams: ['app:two'], group: 'g2', consumer, batchSize: 10 } } });
    const a = await startTestServer(cfg('a'));
    const b = await startTestServer(cfg('b'));
    const servers: RunningServer[] = [a, b];
    try {
      const N = 300;
      for (let i = 0; i < N; i++) await app.xadd('app:two', '*', 'topic', `two/${i % 5}`, 'data', `e${i}`);
      await app.xadd('app:two', '*', 'topic', 'two/k', 'data', 'keyed', 'idempotencyKey', 'same');
      await app.xadd('app:two', '*', 'topic', 'two/k', 'data', 'keyed again', 'idempotencyKey', 'same');
      await waitFor(async () => {
        const info = (await app.xinfo('GROUPS', 'app:two')) as Array<Array<string | number>>;
        const g = info.find((x) => x[1] === 'g2')!;
        return g[g.indexOf('pending') + 1] === 0 && g[g.indexOf('entries-read') + 1] === N + 2;
      }, 'every entry read and acknowledged', 15_000);
      const seen = new Map<string, number>();
      // a and b have stores of their own: the key is caught when the same node gets both
      for (const s of servers) for (const m of await history(s.http, 'two/+')) if (m.data.startsWith('e')) seen.set(m.data, (seen.get(m.data) ?? 0) + 1);
      assert.equal(seen.size, N);
      assert.ok([...seen.values()].every((n) => n === 1), 'each entry published once');
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  });

  it('a repeated idempotencyKey field stores nothing new', async () => {
    const server = await startTestServer({ triggers: { redisStreams: { url: redis.url, streams: ['app:keys'], group: 'g3' } } });
    try {
      await app.xadd('app:keys', '*', 'topic', 'keys/x', 'data', 'first', 'idempotencyKey', 'order-1');
      await app.xadd('app:keys', '*', 'topic', 'keys/x', 'data', 'again', 'idempotencyKey', 'order-1');
      await app.xadd('app:keys', '*', 'topic', 'keys/x', 'data', 'last');
      await waitFor(async () => (await history(server.http, 'keys/x')).some((m) => m.data === 'last'), 'the last entry');
      assert.deepEqual(
        (await history(server.http, 'keys/x')).map((m) => m.data),
        ['first', 'last'],
      );
    } finally {
      await server.close();
    }
  });
});
