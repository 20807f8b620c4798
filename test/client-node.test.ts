import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { connect, type ClientOptions, type Message, type TransportName } from '../src/client/index.js';
import type { RunningServer } from '../src/server.js';
import { startProxy } from './helpers/proxy.js';
import { startTestServer, waitFor } from './helpers/server.js';

// the `ws` and `eventsource` classes fit the option types as they are (typecheck covers this file)
const nodeImpls: ClientOptions = {
  WebSocket,
  EventSource,
  backoff: { min: 20, max: 300 },
  openTimeout: 3000,
};

async function httpPublish(base: string, topic: string, data: string): Promise<void> {
  assert.equal((await fetch(`${base}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic, data }) })).status, 200);
}

describe('client SDK in Node', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ sse: { retry: 50 } });
  });
  after(() => server.close());

  for (const transport of ['websocket', 'sse', 'longpoll'] as TransportName[]) {
    it(`over ${transport}: receives, publishes, and resumes after the network cuts it, every message once and in order`, async (t) => {
      const proxy = await startProxy(server.http);
      const client = await connect(proxy.url, { ...nodeImpls, transports: [transport] });
      t.after(async () => {
        client.close();
        await proxy.close();
      });
      assert.equal(client.transport, transport);
      const got: Message[] = [];
      client.subscribe(`sdk/${transport}/#`, (m) => got.push(m), { since: 'now' });
      // let the subscription reach the server before publishing
      await waitFor(async () => /omnipush_connections\{transport="(websocket|sse|longpoll)"\} [1-9]/.test(await (await fetch(`${server.http}/metrics`)).text()), 'subscriber connected');
      const sent: string[] = [];
      for (let i = 0; i < 30; i++) {
        const data = `m${i}`;
        sent.push(data);
        if (i % 2 === 0) await client.publish(`sdk/${transport}/x`, data).catch(() => httpPublish(server.http, `sdk/${transport}/x`, data));
        else await httpPublish(server.http, `sdk/${transport}/x`, data);
        if (i === 9 || i === 19) {
          await waitFor(() => got.length === sent.length, `caught up before cut ${i}`);
          proxy.cutAll();
        }
      }
      await waitFor(() => got.length >= sent.length, 'everything after the cuts', 20_000);
      assert.deepEqual(
        got.map((m) => m.data),
        sent,
      );
      assert.equal(new Set(got.map((m) => m.cursor)).size, sent.length);
    });
  }

  it('falls back to SSE when WebSocket is blocked, and to long-poll when SSE is blocked too', async (t) => {
    const noWs = await startProxy(server.http, (head) => head.startsWith('GET /v1/ws'));
    t.after(() => noWs.close());
    const a = await connect(noWs.url, nodeImpls);
    t.after(() => a.close());
    assert.equal(a.transport, 'sse');
    const got: string[] = [];
    a.subscribe('fb/a', (m) => got.push(m.data!));
    await waitFor(async () => /omnipush_connections\{transport="sse"\} [1-9]/.test(await (await fetch(`${server.http}/metrics`)).text()), 'sse subscriber');
    await a.publish('fb/a', 'over http');
    await waitFor(() => got.length === 1, 'sse delivery');

    const neither = await startProxy(server.http, (head) => head.startsWith('GET /v1/ws') || head.startsWith('GET /v1/sse'));
    t.after(() => neither.close());
    const b = await connect(neither.url, nodeImpls);
    t.after(() => b.close());
    assert.equal(b.transport, 'longpoll');
    const got2: string[] = [];
    b.subscribe('fb/b', (m) => got2.push(m.data!), { since: 'now' });
    await waitFor(async () => /omnipush_connections\{transport="longpoll"\} [1-9]/.test(await (await fetch(`${server.http}/metrics`)).text()), 'a poll held');
    await b.publish('fb/b', 'polled');
    await waitFor(() => got2.length === 1, 'long-poll delivery');
    assert.deepEqual(got2, ['polled']);
  });

  for (const transport of ['websocket', 'sse', 'longpoll'] as TransportName[]) {
    it(`over ${transport}: tells the app about a gap when history after its cursor was pruned, then delivers what is left`, async (t) => {
      const small = await startTestServer({ history: { maxCount: 3 } });
      t.after(() => small.close());
      const first = (await (await fetch(`${small.http}/v1/publish`, { method: 'POST', body: JSON.stringify({ topic: 'gap/t', data: 'g0' }) })).json()) as { cursor: string };
      for (let i = 1; i < 8; i++) await httpPublish(small.http, 'gap/t', `g${i}`);
      assert.ok((await small.hub.prune()) > 0, 'pruning removed something');
      const client = await connect(small.http, { ...nodeImpls, transports: [transport] });
      t.after(() => client.close());
      const gaps: string[] = [];
      client.on('gap', (g) => gaps.push(g.filter));
      const got: string[] = [];
      client.subscribe('gap/t', (m) => got.push(m.data!), { since: first.cursor });
      await waitFor(() => got.length >= 3, 'the retained tail of the history');
      assert.deepEqual(gaps, ['gap/t']);
      assert.deepEqual(got, ['g5', 'g6', 'g7']);
    });
  }
});
