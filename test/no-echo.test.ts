import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { connect, type ClientOptions, type Message, type TransportName } from '../src/client/index.js';
import type { RunningServer } from '../src/server.js';
import { startCluster } from './helpers/cluster.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis.js';
import { startTestServer, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';
import { openWs, type WsClient } from './helpers/ws.js';

const nodeImpls: ClientOptions = { WebSocket, EventSource, backoff: { min: 20, max: 300 }, openTimeout: 3000 };

async function publish(base: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}/v1/publish`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

async function published(base: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<string> {
  const r = await publish(base, body, headers);
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { cursor: string }).cursor;
}

const dataOf = (ws: WsClient): string[] => ws.messages().map((f) => String(f.data));

describe('no echo and exclude', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it('WebSocket: a noEcho subscription skips what its own socket publishes; another socket and a plain subscription get it', async () => {
    const me = await openWs(server.http);
    const other = await openWs(server.http);
    try {
      const sub = await me.request({ type: 'subscribe', topics: ['ne/ws'], noEcho: true });
      assert.equal(sub.type, 'subscribed');
      assert.equal(typeof sub.connection, 'string', 'the reply tells the socket its connection id');
      await other.request({ type: 'subscribe', topics: ['ne/ws'] });
      assert.equal((await me.request({ type: 'publish', topic: 'ne/ws', data: 'mine' })).type, 'ack');
      assert.equal((await other.request({ type: 'publish', topic: 'ne/ws', data: 'theirs' })).type, 'ack');
      await waitFor(() => dataOf(me).includes('theirs'), 'the other socket’s message on mine');
      await waitFor(() => dataOf(other).includes('theirs'), 'its own message on the plain socket');
      assert.deepEqual(dataOf(me), ['theirs'], 'my own message skipped, and nothing else');
      assert.deepEqual(dataOf(other), ['mine', 'theirs']);
    } finally {
      me.close();
      other.close();
    }
  });

  it('WebSocket: without noEcho a socket hears itself, as before', async () => {
    const me = await openWs(server.http);
    try {
      await me.request({ type: 'subscribe', topics: ['ne/plain'] });
      await me.request({ type: 'publish', topic: 'ne/plain', data: 'self' });
      await waitFor(() => dataOf(me).includes('self'), 'its own message');
    } finally {
      me.close();
    }
  });

  it('HTTP exclude: a backend leaves one WebSocket out of a message, on the JSON and the raw publish', async () => {
    const tab = await openWs(server.http);
    const peer = await openWs(server.http);
    try {
      const sub = await tab.request({ type: 'subscribe', topics: ['ne/ex'] });
      await peer.request({ type: 'subscribe', topics: ['ne/ex'] });
      const id = String(sub.connection);
      await published(server.http, { topic: 'ne/ex', data: 'json', exclude: id });
      const raw = await fetch(`${server.http}/v1/topics/ne/ex?exclude=${encodeURIComponent(id)}`, { method: 'POST', body: 'raw' });
      assert.equal(raw.status, 200);
      await published(server.http, { topic: 'ne/ex', data: 'all' });
      await waitFor(() => dataOf(tab).includes('all'), 'the message for everyone');
      await waitFor(() => dataOf(peer).includes('all'), 'the peer’s third message');
      assert.deepEqual(dataOf(tab), ['all']);
      assert.deepEqual(dataOf(peer), ['json', 'raw', 'all']);
      // history still has them: exclude is about live delivery to that connection, not storage
      const h = (await (await fetch(`${server.http}/v1/history?topic=ne/ex`)).json()) as { messages: unknown[] };
      assert.equal(h.messages.length, 3);
    } finally {
      tab.close();
      peer.close();
    }
  });

  it('SSE: a noEcho stream announces its connection id and skips publishes that name it as their sender', async () => {
    const sse = await openRawSse(`${server.http}/v1/sse?topic=ne/sse&noEcho=1`);
    try {
      assert.equal(sse.status, 200);
      const hello = await waitFor(() => sse.events().find((e) => e.event === 'connection'), 'the connection event');
      const id = (JSON.parse(hello.data) as { id: string }).id;
      assert.ok(id.length > 0);
      await published(server.http, { topic: 'ne/sse', data: 'echo' }, { 'omnipush-connection': id });
      await published(server.http, { topic: 'ne/sse', data: 'else' });
      await waitFor(() => sse.events().some((e) => e.data === 'else'), 'the other publish');
      assert.deepEqual(sse.events().filter((e) => e.event !== 'connection').map((e) => e.data), ['else']);
    } finally {
      sse.close();
    }
  });

  it('SSE: a stable client id (client=) is the stream’s id; without noEcho the sender header changes nothing', async () => {
    const sse = await openRawSse(`${server.http}/v1/sse?topic=ne/kept&client=tab-42`);
    try {
      const hello = await waitFor(() => sse.events().find((e) => e.event === 'connection'), 'the connection event');
      assert.equal((JSON.parse(hello.data) as { id: string }).id, 'tab-42');
      await published(server.http, { topic: 'ne/kept', data: 'heard' }, { 'omnipush-connection': 'tab-42' });
      await published(server.http, { topic: 'ne/kept', data: 'left out', exclude: 'tab-42' });
      await published(server.http, { topic: 'ne/kept', data: 'last' });
      await waitFor(() => sse.events().some((e) => e.data === 'last'), 'the last publish');
      assert.deepEqual(sse.events().filter((e) => e.event !== 'connection').map((e) => e.data), ['heard', 'last']);
    } finally {
      sse.close();
    }
  });

  it('long-poll: answers carry the connection id; a kept id with noEcho skips its own publishes across polls', async () => {
    const first = (await (await fetch(`${server.http}/v1/poll?topic=ne/lp&timeout=0`)).json()) as { cursor: string; connection: string };
    assert.equal(typeof first.connection, 'string');
    const id = 'poller-7';
    await published(server.http, { topic: 'ne/lp', data: 'own' }, { 'omnipush-connection': id });
    await published(server.http, { topic: 'ne/lp', data: 'other' });
    const r = (await (await fetch(`${server.http}/v1/poll?topic=ne/lp&since=${first.cursor}&timeout=5&client=${id}&noEcho=1`)).json()) as {
      messages: Array<{ data: string }>;
      connection: string;
      cursor: string;
    };
    assert.equal(r.connection, id);
    assert.deepEqual(r.messages.map((m) => m.data), ['other'], 'the replayed history leaves out its own publish too');
    // a held poll: the live message it published itself does not answer it; the next one does
    const held = fetch(`${server.http}/v1/poll?topic=ne/lp&since=${r.cursor}&timeout=10&client=${id}&noEcho=1`).then((x) => x.json() as Promise<{ messages: Array<{ data: string }> }>);
    await new Promise((res) => setImmediate(res));
    await published(server.http, { topic: 'ne/lp', data: 'own live' }, { 'omnipush-connection': id });
    await published(server.http, { topic: 'ne/lp', data: 'other live' });
    assert.deepEqual((await held).messages.map((m) => m.data), ['other live']);
  });

  it('refuses malformed ids with 400 JSON on every door', async () => {
    const bad = await publish(server.http, { topic: 'ne/bad', data: 'x', exclude: 42 });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'invalid_request');
    const long = await publish(server.http, { topic: 'ne/bad', data: 'x', exclude: 'x'.repeat(129) });
    assert.equal(long.status, 400);
    const header = await publish(server.http, { topic: 'ne/bad', data: 'x' }, { 'omnipush-connection': 'has space' });
    assert.equal(header.status, 400);
    const poll = await fetch(`${server.http}/v1/poll?topic=ne/bad&timeout=0&client=${encodeURIComponent('a b')}`);
    assert.equal(poll.status, 400);
    const sse = await fetch(`${server.http}/v1/sse?topic=ne/bad&noEcho=maybe`);
    assert.equal(sse.status, 400);
    assert.equal(((await sse.json()) as { error: { code: string } }).error.code, 'invalid_request');
    const ws = await openWs(server.http);
    try {
      const r = await ws.request({ type: 'subscribe', topics: ['ne/bad'], noEcho: 'yes' });
      assert.equal(r.type, 'error');
      assert.equal(r.code, 'invalid_request');
    } finally {
      ws.close();
    }
  });

  for (const transport of ['websocket', 'sse', 'longpoll'] as TransportName[]) {
    it(`SDK over ${transport}: noEcho clients hear each other but not themselves; connectionId works as exclude`, async () => {
      const a = await connect(server.http, { ...nodeImpls, transports: [transport], noEcho: true });
      const b = await connect(server.http, { ...nodeImpls, transports: [transport], noEcho: true });
      const topic = `ne/sdk/${transport}`;
      const got: Record<string, string[]> = { a: [], b: [] };
      try {
        assert.match(a.connectionId, /^c_[A-Za-z0-9_-]{22}$/);
        assert.notEqual(a.connectionId, b.connectionId);
        for (const [name, c] of [['a', a], ['b', b]] as const) {
          c.subscribe(topic, (m: Message) => got[name].push(m.data ?? ''));
        }
        // subscribed once a message published by a third party reaches both
        await waitFor(async () => {
          await published(server.http, { topic, data: 'probe' });
          return got.a.includes('probe') && got.b.includes('probe');
        }, 'both subscribed');
        await a.publish(topic, 'from a');
        await b.publish(topic, 'from b');
        await published(server.http, { topic, data: 'not to a', exclude: a.connectionId });
        await published(server.http, { topic, data: 'end' });
        await waitFor(() => got.a.includes('end') && got.b.includes('end'), 'the last message on both');
        const strip = (xs: string[]) => xs.filter((x) => x !== 'probe');
        assert.deepEqual(strip(got.a), ['from b', 'end']);
        assert.deepEqual(strip(got.b), ['from a', 'not to a', 'end']);
      } finally {
        a.close();
        b.close();
      }
    });
  }
});

describe('exclude across a cluster', { skip: redisMissing || false }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.remove();
  });

  it('a publish on one node leaves out a connection on another, named by its id', async () => {
    const [a, b] = await startCluster(redis, 'ne:', 2);
    const there = await openWs(b.http);
    const also = await openWs(b.http);
    try {
      const sub = await there.request({ type: 'subscribe', topics: ['ne/cl'] });
      await also.request({ type: 'subscribe', topics: ['ne/cl'] });
      const id = String(sub.connection);
      assert.ok(id.includes('/'), `a node-qualified id: ${id}`);
      await published(a.http, { topic: 'ne/cl', data: 'skip', exclude: id });
      await published(a.http, { topic: 'ne/cl', data: 'all' });
      await waitFor(() => dataOf(there).includes('all') && dataOf(also).includes('all'), 'the message for all on node B');
      assert.deepEqual(dataOf(there), ['all']);
      assert.deepEqual(dataOf(also), ['skip', 'all']);
    } finally {
      there.close();
      also.close();
      await Promise.all([a.close(), b.close()]);
    }
  });
});
