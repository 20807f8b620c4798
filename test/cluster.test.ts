import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisBus } from '../src/cluster/redis-bus.js';
import { ALLOW_ALL } from '../src/core/grants.js';
import { Hub, type HubSubscriber } from '../src/core/hub.js';
import { RedisStore } from '../src/store/redis.js';
import type { RunningServer } from '../src/server.js';
import { httpPublish, seqOf, startCluster } from './helpers/cluster.js';
import { mqttClient } from './helpers/mqtt.js';
import { redisMissing, startRedis } from './helpers/redis.js';
import { waitFor, within } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs } from './helpers/ws.js';

interface PollResult {
  messages: Array<{ topic: string; cursor: string; data?: string }>;
  cursor: string;
  gap?: unknown;
}

async function poll(base: string, query: string): Promise<PollResult> {
  const r = await fetch(`${base}/v1/poll?${query}`);
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as PollResult;
}

/** Long-polls in a loop from `since` until stopped, collecting every message. */
function pollLoop(base: string, filter: string, since: string): { got: Array<{ data: string; cursor: string }>; stop(): Promise<void> } {
  const got: Array<{ data: string; cursor: string }> = [];
  let stopped = false;
  let cursor = since;
  const done = (async () => {
    for (let i = 0; i < 10_000 && !stopped; i++) {
      const r = await poll(base, `topic=${encodeURIComponent(filter)}&since=${cursor}&timeout=1`);
      for (const m of r.messages) got.push({ data: m.data!, cursor: m.cursor });
      cursor = r.cursor;
    }
  })();
  return {
    got,
    async stop() {
      stopped = true;
      await within(done, 5_000, 'poll loop to end');
    },
  };
}

async function closeAll(nodes: RunningServer[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.close()));
}

describe('cluster over Redis (three nodes, store and bus on one Redis)', { skip: redisMissing || false }, () => {
  it('delivers across nodes over SSE, WebSocket, long-poll and MQTT, whatever door published', async () => {
    const redis = await startRedis();
    const [a, b, c] = await startCluster(redis, 'x:');
    try {
      const head = a.hub.headCursor();
      const sse = await openRawSse(`${a.http}/v1/sse?topic=x/%23&since=now`);
      const ws = await openWs(b.http);
      await ws.request({ type: 'subscribe', topics: ['x/#'], since: 'now' });
      const mq = await mqttClient(c, { protocolVersion: 5 });
      await mq.subscribeAsync('x/#', { qos: 1 });
      const lp = pollLoop(b.http, 'x/#', head);
      const pubWs = await openWs(c.http);
      const pubMq = await mqttClient(a, { protocolVersion: 4 });

      const sent: string[] = [];
      const cursors: string[] = [];
      for (let i = 0; i < 4; i++) {
        // round the doors and the nodes: HTTP on each node, WS on C, MQTT on A
        cursors.push(await httpPublish([a, b, c][i % 3].http, `x/${i}`, `h${i}`));
        sent.push(`h${i}`);
      }
      const ack = await pubWs.request({ type: 'publish', topic: 'x/ws', data: 'w0' });
      assert.equal(ack.type, 'ack', JSON.stringify(ack));
      cursors.push(ack.cursor as string);
      sent.push('w0');
      await pubMq.publishAsync('x/mq', 'm0', { qos: 1 });
      sent.push('m0');

      await waitFor(() => sse.events().length >= 6 && ws.messages().length >= 6 && mq.received.length >= 6 && lp.got.length >= 6, 'every subscriber to get six messages', 15_000);
      await lp.stop();
      assert.deepEqual(sse.events().map((e) => e.data), sent, 'SSE on A');
      assert.deepEqual(ws.messages().map((m) => m.data), sent, 'WS on B');
      assert.deepEqual(mq.received.map((m) => m.payload), sent, 'MQTT on C');
      assert.deepEqual(lp.got.map((m) => m.data), sent, 'long-poll on B');
      assert.deepEqual(sse.events().slice(0, 5).map((e) => e.id), cursors, 'one cursor space');
      const seqs = ws.messages().map((m) => seqOf(m.cursor as string));
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'ascending seqs');
      sse.close();
      ws.close();
      pubWs.close();
      await mq.endAsync();
      await pubMq.endAsync();
    } finally {
      await closeAll([a, b, c]);
      await redis.remove();
    }
  });

  it('keeps per-topic order under concurrent publishes on all three nodes; every node delivers the same sequence once', async () => {
    const redis = await startRedis();
    const nodes = await startCluster(redis, 'o:');
    try {
      const subs = await Promise.all(nodes.map((n) => openWs(n.http)));
      for (const s of subs) await s.request({ type: 'subscribe', topics: ['ord/#'], since: 'now' });
      const N = 150;
      // three publishers, one per node, each sending in its own order on one topic per node and on a shared one
      const sent = await Promise.all(
        nodes.map(async (n, k) => {
          const out: Array<{ data: string; cursor: string }> = [];
          for (let i = 0; i < N; i++) {
            const topic = i % 2 ? 'ord/shared' : `ord/n${k}`;
            const data = `${k}:${i}`;
            out.push({ data, cursor: await httpPublish(n.http, topic, data) });
          }
          return out;
        }),
      );
      const total = 3 * N;
      await waitFor(() => subs.every((s) => s.messages().length >= total), `each node to deliver ${total}`, 30_000);
      const expected = sent
        .flat()
        .sort((x, y) => seqOf(x.cursor) - seqOf(y.cursor))
        .map((m) => m.data);
      for (const [i, s] of subs.entries()) {
        assert.equal(s.messages().length, total, `node ${i}: no duplicate`);
        assert.deepEqual(s.messages().map((m) => m.data), expected, `node ${i}: seq order`);
      }
      // each publisher's own messages keep its order (seq order is publish order)
      for (let k = 0; k < 3; k++) {
        const mine = subs[0].messages().map((m) => m.data as string).filter((d) => d.startsWith(`${k}:`));
        assert.deepEqual(mine, sent[k].map((m) => m.data));
      }
      for (const s of subs) s.close();
    } finally {
      await closeAll(nodes);
      await redis.remove();
    }
  });

  it('resumes on a different node from a cursor another node served (SSE Last-Event-ID, WS since, long-poll cursor)', async () => {
    const redis = await startRedis();
    const [a, b, c] = await startCluster(redis, 'r:');
    try {
      const first = await openRawSse(`${a.http}/v1/sse?topic=r&since=now`);
      const c1 = await httpPublish(a.http, 'r', 'one');
      await waitFor(() => first.events().length === 1, 'first event on A');
      first.close();
      assert.equal(first.events()[0].id, c1);
      const later = [await httpPublish(b.http, 'r', 'two'), await httpPublish(c.http, 'r', 'three')];

      const sse = await openRawSse(`${b.http}/v1/sse?topic=r`, { 'Last-Event-ID': c1 });
      const ws = await openWs(c.http);
      await ws.request({ type: 'subscribe', topics: ['r'], since: c1 });
      const lp = await poll(a.http, `topic=r&since=${c1}&timeout=5`);
      await waitFor(() => sse.events().length >= 2 && ws.messages().length >= 2, 'replays on B and C');
      const c4 = await httpPublish(a.http, 'r', 'four');
      await waitFor(() => sse.events().length >= 3 && ws.messages().length >= 3, 'live after the replay');
      assert.deepEqual(sse.events().map((e) => [e.data, e.id]), [['two', later[0]], ['three', later[1]], ['four', c4]]);
      assert.deepEqual(ws.messages().map((m) => [m.data, m.cursor]), [['two', later[0]], ['three', later[1]], ['four', c4]]);
      assert.deepEqual(lp.messages.map((m) => m.data), ['two', 'three']);
      assert.equal(lp.gap, undefined);
      const lp2 = await poll(b.http, `topic=r&since=${lp.cursor}&timeout=5`);
      assert.deepEqual(lp2.messages.map((m) => m.data), ['four'], 'the long-poll cursor from A works on B');
      sse.close();
      ws.close();
    } finally {
      await closeAll([a, b, c]);
      await redis.remove();
    }
  });

  it('a node whose bus subscription is killed catches up from the store, nothing lost or repeated', async () => {
    const redis = await startRedis();
    const [a, b] = await startCluster(redis, 'h:', 2);
    const admin = new Redis(redis.url);
    try {
      const ws = await openWs(b.http);
      await ws.request({ type: 'subscribe', topics: ['h'], since: 'now' });
      const cursors: string[] = [];
      const publisher = (async () => {
        for (let i = 0; i < 300; i++) cursors.push(await httpPublish(a.http, 'h', `m${i}`));
      })();
      // kill every pub/sub connection (both nodes' buses) a few times while messages flow
      let kills = 0;
      for (let round = 0; round < 3; round++) {
        const before = cursors.length;
        await waitFor(() => cursors.length >= before + 40 || cursors.length === 300, 'more publishes');
        kills += Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
      }
      await within(publisher, 30_000, 'publisher');
      assert.ok(kills >= 2, `killed pub/sub connections (${kills})`);
      await waitFor(() => ws.messages().length >= 300, 'all 300 on B', 15_000);
      assert.deepEqual(ws.messages().map((m) => m.cursor), cursors, 'every message once, in order');
      // and a quiet spell after a kill: the last message before it still arrives (the audit finds it)
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      const last = await httpPublish(a.http, 'h', 'last');
      await waitFor(() => ws.messages().length === 301, 'the last message', 10_000);
      assert.equal(ws.messages()[300].cursor, last);
      await waitFor(() => !b.bus.unhealthy(), 'B resubscribed');
      assert.equal((b.bus as RedisBus).nextSeq, seqOf(last) + 1);
      ws.close();
    } finally {
      admin.disconnect();
      await closeAll([a, b]);
      await redis.remove();
    }
  });

  it('a replay that loses pages to another node\'s prune ends with a gap signal, never silently', async () => {
    const redis = await startRedis();
    // node B prunes; node A is a hub of its own with small history pages, so its replay spans several reads
    const [b] = await startCluster(redis, 'pr:', 1, { history: { rules: [{ filter: 'pr/#', maxCount: 5 }] } });
    const store = new RedisStore({ url: redis.url, prefix: 'pr:' });
    await store.open();
    const hub = new Hub(store, { historyPageSize: 5, externalFanOut: true });
    const bus = new RedisBus(store);
    await bus.start(hub);
    try {
      const cursors: string[] = [];
      for (let i = 0; i < 30; i++) cursors.push(await httpPublish(b.http, 'pr/x', `p${i}`));
      await waitFor(() => hub.headSeq >= seqOf(cursors[29]), 'A to see every message');
      let release: (() => void) | undefined;
      let held: Promise<void> | null = new Promise<void>((r) => (release = r));
      const got: string[] = [];
      const gaps: string[] = [];
      const sub: HubSubscriber = {
        transport: 'test',
        principal: { id: 'reader', kind: 'anonymous', grants: ALLOW_ALL },
        deliver: (d) => got.push(d.message.payload.toString()),
        gap: (g) => gaps.push(g.reason),
        close: () => undefined,
        // the first delivery stalls the replay (a slow reader) until the test lets it go on
        backpressure: () => held,
      };
      const done = hub.subscribe(sub, hub.checkSubscribe(sub.principal, ['pr/x'], cursors[0]));
      await waitFor(() => got.length === 1, 'the replay to start');
      assert.ok((await b.hub.prune()) >= 25, 'B pruned most of the history mid-replay');
      held = null;
      release!();
      await within(done, 10_000, 'the replay');
      assert.deepEqual(gaps, ['pruned'], 'the lost pages are announced');
      assert.deepEqual(got, [...Array.from({ length: 5 }, (_, i) => `p${i + 1}`), ...Array.from({ length: 5 }, (_, i) => `p${i + 25}`)], 'what could still be read, in order');
      hub.unsubscribe(sub);
    } finally {
      await hub.close();
      await bus.close();
      await store.close();
      await b.close();
      await redis.remove();
    }
  });

  it('refuses a Redis bus without the Redis store, clearly', async () => {
    const { startTestServer } = await import('./helpers/server.js');
    await assert.rejects(startTestServer({ bus: { kind: 'redis' } }), /bus\.kind "redis" needs store\.kind "redis"/);
  });
});
