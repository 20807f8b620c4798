import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../src/server.js';
import { RawHttpClient as RawClient } from './helpers/raw-http.js';
import { startTestServer, waitFor } from './helpers/server.js';

/**
 * A held poll's connection waits out of node's HTTP machinery (parked; at once, as
 * `longpoll.parkAfter: 0` says) and is handed back to it after the answer. These tests speak raw
 * HTTP/1.1 on one socket, so that what happens to the connection itself (kept, closed, reused) is
 * seen, not hidden by a client's pool.
 */

async function held(server: RunningServer): Promise<number> {
  const text = await (await fetch(`${server.http}/metrics`)).text();
  return Number(/omnipush_connections\{transport="longpoll"\} (\d+)/.exec(text)?.[1] ?? 0);
}

async function answeredPolls(server: RunningServer, status: number): Promise<number> {
  const text = await (await fetch(`${server.http}/metrics`)).text();
  return Number(new RegExp(`omnipush_http_requests_total\\{route="/v1/poll",status="${status}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
}

async function publish(server: RunningServer, topic: string, data: string): Promise<void> {
  const r = await fetch(`${server.http}/v1/topics/${topic}`, { method: 'POST', body: data });
  assert.equal(r.status, 200);
}

describe('long-poll: parked connections', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ longpoll: { parkAfter: 0 } });
  });
  after(() => server.close());

  it('answers a held poll on its connection, which then serves the next requests (keep-alive)', async () => {
    const c = new RawClient(server.http);
    const before = await answeredPolls(server, 200);
    c.get('/v1/poll?topic=park/a&since=now&timeout=30');
    await waitFor(async () => (await held(server)) === 1, 'the poll to be held');
    await publish(server, 'park/a', 'one');
    const r = await c.next();
    assert.equal(r.status, 200);
    assert.equal(r.headers.connection, 'keep-alive');
    assert.equal(r.headers['keep-alive'], 'timeout=5');
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.ok(r.headers.date && r.headers.link, 'the date and the common headers');
    const body = JSON.parse(r.body) as { messages: Array<{ data: string }>; cursor: string };
    assert.deepEqual(
      body.messages.map((m) => m.data),
      ['one'],
    );
    // counted once, by route and status, like any answered request
    await waitFor(async () => (await answeredPolls(server, 200)) === before + 1, 'the answer to be counted');

    c.get('/healthz');
    const h = await c.next();
    assert.equal(h.status, 200);
    assert.deepEqual(JSON.parse(h.body), { status: 'ok' });

    // and holds (and parks) a poll again, from the cursor it was given
    c.get(`/v1/poll?topic=park/a&since=${body.cursor}&timeout=30`);
    await waitFor(async () => (await held(server)) === 1, 'the second poll to be held');
    await publish(server, 'park/a', 'two');
    const r2 = await c.next();
    assert.deepEqual(
      (JSON.parse(r2.body) as { messages: Array<{ data: string }> }).messages.map((m) => m.data),
      ['two'],
    );
    c.socket.destroy();
  });

  it('frees a held poll at once when its client goes away', async () => {
    const c = new RawClient(server.http);
    c.get('/v1/poll?topic=park/gone&since=now&timeout=60');
    await waitFor(async () => (await held(server)) === 1, 'the poll to be held');
    c.socket.destroy();
    await waitFor(async () => (await held(server)) === 0, 'the held poll to be dropped');
    assert.equal(server.registry.size, 0);
  });

  it('refuses pipelining: a request sent while the poll is held is not answered, and the connection closes after the poll', async () => {
    const c = new RawClient(server.http);
    c.get('/v1/poll?topic=park/pipe&since=now&timeout=30');
    await waitFor(async () => (await held(server)) === 1, 'the poll to be held');
    c.get('/healthz');
    await publish(server, 'park/pipe', 'x');
    const r = await c.next();
    assert.equal(r.status, 200);
    assert.equal(r.headers.connection, 'close');
    assert.deepEqual(
      (JSON.parse(r.body) as { messages: Array<{ data: string }> }).messages.map((m) => m.data),
      ['x'],
    );
    assert.equal(await c.closed(), '', 'nothing follows the poll answer');
  });

  it('leaves a poll with node when a pipelined request came with it: both are answered, in order', async () => {
    const c = new RawClient(server.http);
    c.send('GET /v1/poll?topic=park/both&since=now&timeout=30 HTTP/1.1\r\nHost: test\r\n\r\nGET /healthz HTTP/1.1\r\nHost: test\r\n\r\n');
    await waitFor(async () => (await held(server)) === 1, 'the poll to be held');
    await publish(server, 'park/both', 'z');
    const r = await c.next();
    assert.equal(r.status, 200);
    assert.deepEqual(
      (JSON.parse(r.body) as { messages: Array<{ data: string }> }).messages.map((m) => m.data),
      ['z'],
    );
    const h = await c.next();
    assert.deepEqual(JSON.parse(h.body), { status: 'ok' });
    assert.equal(c.ended, false);
    c.socket.destroy();
  });

  it('closes after the answer when the request asked to (Connection: close)', async () => {
    const c = new RawClient(server.http);
    c.get('/v1/poll?topic=park/close&since=now&timeout=30', 'Connection: close\r\n');
    await waitFor(async () => (await held(server)) === 1, 'the poll to be held');
    await publish(server, 'park/close', 'y');
    const r = await c.next();
    assert.equal(r.status, 200);
    assert.equal(r.headers.connection, 'close');
    assert.equal(await c.closed(), '');
  });

  it('answers a timed-out poll and lets the idle connection go on the keep-alive clock', async () => {
    const c = new RawClient(server.http);
    c.get('/v1/poll?topic=park/idle&since=now&timeout=1');
    const r = await c.next();
    assert.equal(r.status, 200);
    assert.deepEqual((JSON.parse(r.body) as { messages: unknown[] }).messages, []);
    const t0 = Date.now();
    await c.closed(15_000);
    const idle = Date.now() - t0;
    assert.ok(idle >= 4000, `closed after ${idle} ms idle, before the 5 s keep-alive timeout`);
  });
});

describe('long-poll: parked connections at shutdown', () => {
  it('answers a parked poll and closes its connection', async () => {
    const server = await startTestServer({ longpoll: { parkAfter: 0 } });
    const c = new RawClient(server.http);
    try {
      c.get('/v1/poll?topic=park/shutdown&since=now&timeout=60');
      await waitFor(async () => (await held(server)) === 1, 'the poll to be held');
    } finally {
      await server.close();
    }
    const r = await c.next();
    assert.equal(r.status, 200);
    assert.equal(r.headers.connection, 'close');
    assert.equal(await c.closed(), '');
  });
});

describe('long-poll: parking later (longpoll.parkAfter)', () => {
  it('leaves a poll answered before parkAfter with node: a request pipelined meanwhile is answered after it', async () => {
    const server = await startTestServer({ longpoll: { parkAfter: 30 } });
    try {
      const c = new RawClient(server.http);
      c.get('/v1/poll?topic=park/later&since=now&timeout=30');
      await waitFor(async () => (await held(server)) === 1, 'the poll to be held');
      c.get('/healthz');
      await publish(server, 'park/later', 'w');
      const r = await c.next();
      assert.equal(r.headers.connection, 'keep-alive');
      assert.deepEqual(
        (JSON.parse(r.body) as { messages: Array<{ data: string }> }).messages.map((m) => m.data),
        ['w'],
      );
      assert.deepEqual(JSON.parse((await c.next()).body), { status: 'ok' });
      c.socket.destroy();
    } finally {
      await server.close();
    }
  });
});
