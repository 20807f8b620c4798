import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { redisMissing, startRedis } from './helpers/redis.js';
import { openRawSse } from './helpers/sse.js';
import { startTestServer, waitFor } from './helpers/server.js';

async function publish(base: string, topic: string, data: string): Promise<Response> {
  return fetch(`${base}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ topic, data }) });
}

async function published(base: string, topic: string, data: string): Promise<string> {
  const r = await publish(base, topic, data);
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { cursor: string }).cursor;
}

describe('server on a Redis store', { skip: redisMissing || false }, () => {
  it('an EventSource resumes by cursor across a server restart on the same Redis, nothing lost or repeated', async () => {
    const redis = await startRedis();
    const config = (port: number) => ({ http: { port }, store: { kind: 'redis' as const, redis: { url: redis.url, prefix: 'e2e:' } }, sse: { retry: 50 } });
    let server = await startTestServer(config(0));
    const port = Number(new URL(server.http).port);
    const es = new EventSource(`${server.http}/v1/sse?topic=e2e/%2B`);
    const got: Array<{ data: string; id: string }> = [];
    es.addEventListener('message', (e) => got.push({ data: e.data, id: e.lastEventId }));
    try {
      await new Promise<void>((resolve, reject) => {
        es.addEventListener('open', () => resolve(), { once: true });
        es.addEventListener('error', () => reject(new Error('EventSource failed to open')), { once: true });
      });
      const cursors: string[] = [];
      for (let i = 0; i < 3; i++) cursors.push(await published(server.http, `e2e/${i % 2}`, `m${i}`));
      await waitFor(() => got.length === 3, 'three live messages from the first server');
      const epoch = cursors[0].split('_')[0];

      await server.close();
      // m3..m5 go through another server while nothing listens on the EventSource's port, so it
      // can only get them by resuming from its Last-Event-ID on the server that comes back there
      const other = await startTestServer(config(0));
      for (let i = 3; i < 6; i++) cursors.push(await published(other.http, `e2e/${i % 2}`, `m${i}`));
      await other.close();
      server = await startTestServer(config(port));
      await waitFor(() => got.length >= 6, 'the missed messages after the restart', 15_000);
      cursors.push(await published(server.http, 'e2e/0', 'm6'));
      await waitFor(() => got.length >= 7, 'a live message after the restart');
      assert.ok(
        cursors.every((c) => c.startsWith(`${epoch}_`)),
        'the restarted servers continue the same history',
      );
      assert.deepEqual(
        got.map((g) => g.data),
        ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6'],
      );
      assert.deepEqual(
        got.map((g) => g.id),
        cursors,
      );

      // a client that was away since m0 resumes on the new server from its cursor
      const late = await openRawSse(`${server.http}/v1/sse?topic=e2e/%2B`, { 'Last-Event-ID': cursors[0] });
      await waitFor(() => late.events().length >= 6, 'replay from the cursor');
      late.close();
      assert.deepEqual(
        late.events().map((e) => [e.data, e.id]),
        cursors.slice(1).map((c, i) => [`m${i + 1}`, c]),
        'everything after m0, in order',
      );
    } finally {
      es.close();
      await server.close();
      await redis.remove();
    }
  });

  it('answers publishes with 503 unavailable while Redis is down, and accepts them again after', async () => {
    const redis = await startRedis({ persist: true });
    const server = await startTestServer({ store: { kind: 'redis', redis: { url: redis.url, prefix: 'e2e-down:' } } });
    try {
      const c1 = await published(server.http, 'd', 'before');
      await redis.stop();
      const r = await publish(server.http, 'd', 'during');
      assert.equal(r.status, 503);
      assert.equal(r.headers.get('retry-after'), '5');
      const body = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'unavailable');
      assert.match(body.error.message, /Redis/);

      await redis.start();
      const c2 = await waitFor(async () => {
        const res = await publish(server.http, 'd', 'after');
        return res.status === 200 ? ((await res.json()) as { cursor: string }).cursor : undefined;
      }, 'a publish to succeed after Redis is back', 15_000);
      const raw = await openRawSse(`${server.http}/v1/sse?topic=d&since=all`);
      await waitFor(() => raw.events().length >= 2, 'history after the outage');
      raw.close();
      assert.deepEqual(
        raw.events().map((e) => [e.data, e.id]),
        [
          ['before', c1],
          ['after', c2],
        ],
        'the rejected publish was not stored; the others were',
      );
    } finally {
      await server.close();
      await redis.remove();
    }
  });
});
